//! Plumbing every Dropline service shares — settings, telemetry, metrics and health, graceful
//! shutdown, retry backoff, Kafka and Redis connections, the naming of a split drop's shards, claim codes, the domain's values and their validators, the Redis key layout
//! — and no business rules.

pub mod activity;
pub mod admin;
pub mod backoff;
pub mod claim;
pub mod clips;
pub mod domain;
pub mod error;
pub mod kafka;
pub mod keys;
pub mod redis;
pub mod secret;
pub mod settings;
pub mod shards;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod topics;

pub use error::StartError;
pub use settings::Settings;
pub use topics::{TopicKind, Topics};
