//! The matcher: turns chat lines into orders against a drop's catalog and decides each one with
//! one atomic step in Redis (stock, holds, per-buyer limits, idempotency, waitlist), publishing
//! exactly one decision per order.

pub mod chat;
pub mod config;
pub mod metrics;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod service;
pub mod split;
pub mod step;
