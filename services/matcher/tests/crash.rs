//! A matcher killed with SIGKILL in the middle of a drop, then started again: no unit sold
//! twice, no order without a decision, no second decision for any order.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{check_promises, collect_all, open_for, traffic, unique, World};
use dropline_core::TopicKind;

/// Kills the matcher process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_drop_then_restart_keeps_every_promise() -> anyhow::Result<()> {
    let world = World::new("crash", 4).await?;
    let group = unique("group");
    let drops: Vec<String> = (0..3).map(|_| unique("drop")).collect();
    let (stock, limit) = (20, 3);
    let sent = traffic(&drops, 900);
    let reader = world.reader(TopicKind::Reservations)?;

    let admin = common::free_addr()?;
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_dropline-matcher"))
            .envs(world.child_env(&group, admin))
            .env("DROPLINE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Killed)
    };
    let mut first = spawn()?;
    for drop in &drops {
        world.open_and_wait(drop, open_for(stock, limit)).await?;
    }

    // Orders arrive while the matcher works; it is killed a third of the way in.
    let producer_world = &world;
    let send_all = async {
        for (i, (drop, order, buyer, text)) in sent.iter().enumerate() {
            producer_world.order(drop, order, buyer, text).await?;
            if i % 5 == 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        anyhow::Ok(())
    };
    let kill = async {
        let seen = common::collect(&reader, Duration::from_secs(60), |seen| seen.len() >= 250).await?;
        first.0.kill()?; // SIGKILL: no drain, no commit, no goodbye to the group
        first.0.wait()?;
        anyhow::Ok(seen)
    };
    let (sent_ok, early) = tokio::join!(send_all, kill);
    sent_ok?;
    let early = early?;

    // The killed member still holds its partitions until its session times out (6 s). The
    // development broker (tansu 0.6) never expires a dead member that a newcomer's rebalance made
    // the group leader, so restart only after the session timeout, as an orchestrator's restart
    // backoff would (Apache Kafka expires it either way).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let second = spawn()?;
    let outcomes = collect_all(&reader, &sent, early, Duration::from_secs(120)).await?;

    // The restarted matcher reports itself healthy and counts its decisions.
    let client = reqwest::Client::new();
    let health = client.get(format!("http://{admin}/healthz")).send().await?;
    assert_eq!(health.status(), 200, "{}", health.text().await?);
    let metrics = client.get(format!("http://{admin}/metrics")).send().await?.text().await?;
    for name in [
        "dropline_orders_total{status=",
        "dropline_decision_latency_seconds_bucket",
        "dropline_batch_size_bucket",
        "dropline_consumer_lag",
        "dropline_holds_active",
        "dropline_waitlist_length",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    drop(second);
    let republished = outcomes.len()
        - outcomes.iter().map(|o| (&o.order_id, o.status)).collect::<std::collections::HashSet<_>>().len();
    eprintln!("{} outcomes, {republished} republished after the crash", outcomes.len());
    check_promises(&world.settings, &sent, &outcomes, stock, limit).await
}
