//! The failover guard (`DROPLINE_MATCHER_WAIT_REPLICAS`): with a replica required, nothing the
//! matcher decided is published until a replica holds it — so a primary failover cannot take
//! back an answer a buyer already saw.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{catalog, collect, status, unique, World};
use dropline_core::TopicKind;
use dropline_proto::v1::{OpenDrop, ReservationStatus};

/// A redis-server of this test, killed when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn redis_server(port: u16, extra: &[String]) -> anyhow::Result<Server> {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server(child);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    for _ in 0..100 {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok() {
                return Ok(server);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("redis-server on port {port} did not start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_wait_for_a_replica_when_one_is_required() -> anyhow::Result<()> {
    let primary_port = free_port()?;
    let _primary = redis_server(primary_port, &[]).await?;
    let mut world = World::new("replicas", 1).await?;
    world.settings.redis = format!("redis://127.0.0.1:{primary_port}");

    let stop = tokio_util::sync::CancellationToken::new();
    let config = dropline_matcher::config::MatcherConfig {
        group: unique("group"),
        admin: "127.0.0.1:0".parse()?,
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(20),
        ..Default::default()
    };
    let matcher = tokio::spawn(dropline_matcher::service::run(world.settings.clone(), config, stop.clone()));
    let reader = world.reader(TopicKind::Reservations)?;

    let drop_id = unique("drop");
    world
        .open_and_wait(&drop_id, OpenDrop { items: catalog(5, 5, 5), hold_seconds: 60, ..Default::default() })
        .await?;
    world.order(&drop_id, "o1", "ann", "!buy hoodie L").await?;

    // Nothing is published while no replica holds the decisions (the open's included).
    let early = collect(&reader, Duration::from_secs(2), |seen| !seen.is_empty()).await;
    assert!(early.is_err(), "published before any replica acknowledged: {early:?}");

    // A replica attaches: the held-back outcome goes out.
    let replica_port = free_port()?;
    let _replica =
        redis_server(replica_port, &["--replicaof".into(), "127.0.0.1".into(), primary_port.to_string()])
            .await?;
    let outcomes = collect(&reader, Duration::from_secs(30), |seen| !seen.is_empty()).await?;
    assert_eq!(outcomes[0].order_id, "o1");
    assert_eq!(status(&outcomes[0]), ReservationStatus::Reserved);
    assert_eq!(outcomes[0].sku, "HOODIE-L");

    // The replica really holds the decision.
    let key = world.settings.keyspace.drop_key(&drop_id, "decisions");
    let mut replica = redis::Client::open(format!("redis://127.0.0.1:{replica_port}"))?
        .get_multiplexed_async_connection()
        .await?;
    let copied: Option<String> = redis::cmd("HGET").arg(&key).arg("o1").query_async(&mut replica).await?;
    assert!(copied.is_some(), "the replica lacks the published decision");

    stop.cancel();
    matcher.await??;
    Ok(())
}
