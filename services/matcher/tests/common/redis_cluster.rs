//! A Redis Cluster of three primaries on free loopback ports, in clear or over TLS (a throwaway
//! CA from `deploy/local/test-certs.sh`), and the scenario both cluster tests run on it: drops
//! land on different primaries (one hash tag per drop), a batch spanning several drops is decided,
//! and every drop keeps its stock exact.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dropline_core::TopicKind;
use dropline_proto::v1::{OpenDrop, ReservationStatus};

use super::{catalog, collect, status, unique, World};

/// The test's redis-server processes, killed when it ends.
pub struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port whose cluster bus port (port + 10000) exists and is free too.
fn free_port() -> anyhow::Result<u16> {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
}

/// How the tests reach the cluster: in clear, or over TLS with the certificates in a directory
/// (`ca.pem`, `server.pem`, `server.key`) whose CA the process trusts (`SSL_CERT_FILE`).
#[derive(Clone, Copy)]
pub enum Link<'a> {
    Plain,
    Tls(&'a Path),
}

impl Link<'_> {
    fn node(&self, port: u16) -> String {
        match self {
            Link::Plain => format!("redis://127.0.0.1:{port}"),
            Link::Tls(_) => format!("rediss://127.0.0.1:{port}"),
        }
    }

    /// The `DROPLINE_REDIS` URL for a cluster with these seed ports.
    pub fn cluster_url(&self, ports: &[u16]) -> String {
        let scheme = match self {
            Link::Plain => dropline_core::redis::CLUSTER_SCHEME,
            Link::Tls(_) => dropline_core::redis::CLUSTER_TLS_SCHEME,
        };
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("{scheme}{}", nodes.join(","))
    }

    /// redis-server's arguments for serving on `port` (the cluster bus over TLS too).
    fn server_args(&self, port: u16) -> Vec<String> {
        match self {
            Link::Plain => vec!["--port".into(), port.to_string()],
            Link::Tls(certs) => {
                let file = |name: &str| certs.join(name).display().to_string();
                [
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                    "--tls-cert-file",
                    &file("server.pem"),
                    "--tls-key-file",
                    &file("server.key"),
                    "--tls-ca-cert-file",
                    &file("ca.pem"),
                    "--tls-auth-clients",
                    "no",
                ]
                .map(String::from)
                .to_vec()
            }
        }
    }

    fn cli_args(&self) -> Vec<String> {
        match self {
            Link::Plain => Vec::new(),
            Link::Tls(certs) => {
                vec!["--tls".into(), "--cacert".into(), certs.join("ca.pem").display().to_string()]
            }
        }
    }
}

/// Three cluster-enabled primaries, joined into one cluster by `redis-cli --cluster create`.
pub async fn cluster(dir: &Path, link: Link<'_>) -> anyhow::Result<(Servers, Vec<u16>)> {
    let ports = vec![free_port()?, free_port()?, free_port()?];
    let mut servers = Servers(Vec::new());
    for port in &ports {
        servers.0.push(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(link.server_args(*port))
                .args(["--cluster-enabled", "yes", "--cluster-config-file", &format!("nodes-{port}.conf")])
                .current_dir(dir)
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    for port in &ports {
        let client = redis::Client::open(link.node(*port))?;
        let mut up = false;
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok() {
                    up = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(up, "redis-server on {port} did not start");
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    // redis-cli waits for the nodes to meet without end; a cluster that cannot form fails here.
    let created = Command::new("timeout")
        .args(["60", "redis-cli"])
        .args(link.cli_args())
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(created.success(), "redis-cli --cluster create failed");
    for port in &ports {
        let client = redis::Client::open(link.node(*port))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut ok = false;
        for _ in 0..200 {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await?;
            if info.contains("cluster_state:ok") {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(ok, "the cluster did not become ok on {port}");
    }
    Ok((servers, ports))
}

/// The matcher on a cluster reached over `link`: the library reaches every primary, six drops
/// spread over more than one primary, three buyers for two units in each, decided exactly.
pub async fn drops_spread_and_decided(link: Link<'_>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_servers, ports) = cluster(dir.path(), link).await?;
    let mut world = World::new("cluster", 2).await?;
    world.settings.redis = link.cluster_url(&ports);
    let (stop, matcher) = world.spawn_matcher(&unique("group"));
    let reader = world.reader(TopicKind::Reservations)?;

    // Enough drops that their slots fall on more than one primary.
    let drops: Vec<String> = (0..6).map(|_| unique("drop")).collect();
    for drop_id in &drops {
        world
            .open_and_wait(
                drop_id,
                OpenDrop { items: catalog(2, 2, 2), hold_seconds: 60, ..Default::default() },
            )
            .await?;
    }
    let mut owners = HashSet::new();
    for port in &ports {
        let client = redis::Client::open(link.node(*port))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        for drop_id in &drops {
            let key = world.settings.keyspace.drop_key(drop_id, "stock");
            let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query_async(&mut conn).await?;
            let here: i64 =
                redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query_async(&mut conn).await?;
            if here > 0 {
                owners.insert(*port);
            }
        }
        // The function library is on every primary.
        let libs: redis::Value = redis::cmd("FUNCTION").arg("LIST").query_async(&mut conn).await?;
        anyhow::ensure!(format!("{libs:?}").contains("dropline"), "no library on {port}");
    }
    assert!(owners.len() >= 2, "all six drops landed on one primary: {owners:?}");

    // Three buyers per drop for two hoodies in L, sent together so batches span drops.
    for drop_id in &drops {
        for b in 0..3 {
            world.order(drop_id, &format!("{drop_id}-o{b}"), &format!("buyer{b}"), "!buy hoodie L").await?;
        }
    }
    let outcomes = collect(&reader, Duration::from_secs(60), |seen| seen.len() >= drops.len() * 3).await?;
    for drop_id in &drops {
        let mine: Vec<_> = outcomes.iter().filter(|o| &o.drop_id == drop_id).collect();
        let reserved = mine.iter().filter(|o| status(o) == ReservationStatus::Reserved).count();
        let sold_out = mine.iter().filter(|o| status(o) == ReservationStatus::SoldOut).count();
        assert_eq!((reserved, sold_out), (2, 1), "{drop_id}: {mine:#?}");
        assert!(mine.iter().all(|o| o.remaining >= 0));
    }

    stop.cancel();
    matcher.await?;
    Ok(())
}
