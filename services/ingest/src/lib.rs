//! `dropline-ingest`: chat from the platforms into `chat-orders`, and the answers back to the
//! buyers. IRC (the protocol of Twitch chat) and an EventSub-style webhook; each `!buy` line on a
//! channel where a drop is live becomes a `ChatOrder` whose id comes from the platform's message
//! id; each outcome of such an order is answered where it was typed (`reply`).

pub mod client;
pub mod config;
pub mod irc;
pub mod metrics;
pub mod reply;
pub mod route;
pub mod service;
pub mod webhook;

pub use config::IngestConfig;
pub use service::{run, IngestError};
