//! Redis connection helper: a reconnecting, multiplexed connection checked with PING.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;

/// Opens a connection manager to `url` (reconnecting on failure) and checks it with PING.
pub async fn connect(url: &str) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3);
    let mut conn = ConnectionManager::new_with_config(client, config).await?;
    ping(&mut conn).await?;
    Ok(conn)
}

/// Sends PING and expects PONG.
pub async fn ping(conn: &mut ConnectionManager) -> Result<(), RedisError> {
    let pong: String = redis::cmd("PING").query_async(conn).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(RedisError::from((redis::ErrorKind::UnexpectedReturnType, "PING did not answer PONG", pong)))
    }
}
