//! Redis helper and admin endpoint against real sockets: Redis at DROPLINE_REDIS, the admin
//! server on an ephemeral loopback port.

use std::time::Duration;

use dropline_core::admin::{self, Health};
use dropline_core::{redis as dredis, Settings};
use prometheus::{IntCounter, Opts};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn redis_helper_connects_and_round_trips() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let mut conn = dredis::connect(&settings.redis).await?;
    let key = format!("test:{{core-{}}}:value", uuid::Uuid::new_v4().simple());
    let () = conn.set_ex(&key, "hoodie", 60).await?;
    let value: String = conn.get(&key).await?;
    assert_eq!(value, "hoodie");
    let () = conn.del(&key).await?;
    dredis::ping(&mut conn).await?;
    Ok(())
}

#[tokio::test]
async fn redis_helper_reports_an_unreachable_server() {
    let result = tokio::time::timeout(Duration::from_secs(20), dredis::connect("redis://127.0.0.1:1")).await;
    let inner = result.expect("connect must give up on its own, not hang");
    assert!(inner.is_err());
}

#[tokio::test]
async fn admin_endpoint_serves_metrics_and_health() -> anyhow::Result<()> {
    let registry = admin::registry("core-test");
    let counter = IntCounter::with_opts(Opts::new("dropline_test_events_total", "Events seen by the test."))?;
    registry.register(Box::new(counter.clone()))?;
    counter.inc_by(3);
    let health = Health::default();
    health.set("kafka", true, "connected");

    let shutdown = CancellationToken::new();
    let router = admin::router(registry, health.clone());
    let (addr, server) = admin::serve("127.0.0.1:0".parse()?, router, shutdown.clone()).await?;
    let client = reqwest::Client::new();

    let metrics = client.get(format!("http://{addr}/metrics")).send().await?;
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str()?.starts_with("text/plain"));
    let body = metrics.text().await?;
    assert!(body.contains("dropline_test_events_total 3"), "{body}");
    assert!(body.contains(r#"dropline_build_info{service="core-test""#), "{body}");

    let ok = client.get(format!("http://{addr}/healthz")).send().await?;
    assert_eq!(ok.status(), 200);
    let json: serde_json::Value = ok.json().await?;
    assert_eq!(json["status"], "ok");

    health.set("redis", false, "connection refused");
    let bad = client.get(format!("http://{addr}/healthz")).send().await?;
    assert_eq!(bad.status(), 503);
    let json: serde_json::Value = bad.json().await?;
    assert_eq!(json["status"], "unhealthy");
    assert_eq!(json["components"]["redis"]["detail"], "connection refused");
    assert_eq!(json["components"]["kafka"]["healthy"], true);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert!(client.get(format!("http://{addr}/healthz")).send().await.is_err(), "server stopped");
    Ok(())
}
