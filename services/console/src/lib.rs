//! `dropline-console`: the producers' live view, the editors' clip gallery and the HTTP API. Writes
//! publish events (`drop-triggers`, `hold-actions`, `clip-requests`); reads come from Redis (the
//! matcher's keys, read only) and from the `reservations` and `clips` topics.

pub mod auth;
pub mod bundle;
pub mod claims;
pub mod clips;
pub mod config;
pub mod drops;
pub mod error;
pub mod first_start;
pub mod import;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod overlay;
pub mod payout;
pub mod report;
pub mod service;
pub mod state;
pub mod streams;
pub mod stripe;

pub use config::ConsoleConfig;
pub use service::{router, run, ConsoleError};
