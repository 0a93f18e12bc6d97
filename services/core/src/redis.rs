//! Redis connection helper: one reconnecting, multiplexed connection — to a single server, or to
//! a Redis Cluster (`redis-cluster://host:port,host:port,…`, or `rediss-cluster://` over TLS) —
//! checked with PING.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// The scheme that names a Redis Cluster: the seed nodes follow, comma-separated.
pub const CLUSTER_SCHEME: &str = "redis-cluster://";
/// The same over TLS: every node, seed or learnt from the cluster, is reached with `rediss://`.
pub const CLUSTER_TLS_SCHEME: &str = "rediss-cluster://";

/// A connection to a single Redis (reconnecting) or to a Redis Cluster (routing each command to the
/// primary of its keys' slot; `FUNCTION LOAD` reaches every primary). Cheap to clone: clones share
/// the underlying connections.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_cluster() { "Conn::Cluster" } else { "Conn::Single" })
    }
}

impl Conn {
    /// Whether commands for different slots must go in different pipelines.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The seed nodes of a `redis-cluster://[user:password@]host:port,host:port` URL, as `redis://`
/// URLs (`rediss://` for `rediss-cluster://`); `None` for any other URL.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = match url.strip_prefix(CLUSTER_SCHEME) {
        Some(rest) => ("redis", rest),
        None => ("rediss", url.strip_prefix(CLUSTER_TLS_SCHEME)?),
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    Some(
        hosts
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}"))
            .collect(),
    )
}

/// Opens a connection to `url` (a Redis URL, or `redis-cluster://` with seed nodes) and checks it
/// with PING.
pub async fn connect(url: &str) -> Result<Conn, RedisError> {
    let mut conn = match cluster_nodes(url) {
        Some(nodes) => {
            let client = ClusterClient::builder(nodes)
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(5))
                .retries(3)
                .build()?;
            Conn::Cluster(client.get_async_connection().await?)
        }
        None => {
            let client = redis::Client::open(url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(5)))
                .set_number_of_retries(3);
            Conn::Single(ConnectionManager::new_with_config(client, config).await?)
        }
    };
    ping(&mut conn).await?;
    Ok(conn)
}

/// Sends PING and expects PONG.
pub async fn ping(conn: &mut Conn) -> Result<(), RedisError> {
    let pong: String = redis::cmd("PING").query_async(conn).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(RedisError::from((redis::ErrorKind::UnexpectedReturnType, "PING did not answer PONG", pong)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(
            cluster_nodes("redis-cluster://10.0.0.1:7000,10.0.0.2:7000"),
            Some(vec!["redis://10.0.0.1:7000".to_owned(), "redis://10.0.0.2:7000".to_owned()])
        );
        assert_eq!(
            cluster_nodes("redis-cluster://app:s3cret@a:1, b:2/"),
            Some(vec!["redis://app:s3cret@a:1".to_owned(), "redis://app:s3cret@b:2".to_owned()])
        );
        assert_eq!(
            cluster_nodes("rediss-cluster://a:1,b:2"),
            Some(vec!["rediss://a:1".to_owned(), "rediss://b:2".to_owned()])
        );
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), None);
        assert_eq!(cluster_nodes("rediss://127.0.0.1:6379"), None);
    }
}
