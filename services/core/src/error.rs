//! Why a service could not start or had to stop: the one start-up error every service returns
//! from `run`.

use rdkafka::error::KafkaError;

/// A service could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Kafka client error.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Redis error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Metrics registration.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// An endpoint, a directory or a file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
