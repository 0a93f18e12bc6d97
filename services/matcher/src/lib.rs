//! The matcher: turns chat lines into orders against a drop's catalog and decides each one with
//! one atomic step in Redis (stock, holds, per-buyer limits, idempotency, waitlist).

pub mod chat;
