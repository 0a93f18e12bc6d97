//! The fault suite: a drop under load while, in turn, a matcher is killed (`kill -9`) and started
//! again, one of two matchers stops (its partitions move to the other), Redis is killed and
//! restarted (AOF, `appendfsync always`), and the broker is killed and restarted. The suite runs
//! its own Redis and broker on free loopback ports (so it can kill them without disturbing
//! anything else) and, after each fault, checks every promise: no unit sold twice or beyond stock,
//! one decision per order, per-buyer limits, every hold ended with its units back on sale.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use dropline_core::{kafka, Settings};

use crate::broker::Broker;
use crate::process::{wait_until, Process};
use crate::run::{self, free_port, Matcher, Probe, Watch};
use crate::scenario::Scenario;

/// When a killed matcher's replacement starts: after the group's `session.timeout.ms`.
const RESTART_AFTER: Duration = Duration::from_secs(7);

/// One fault of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` the only matcher, start a new one (same group) after its session timed out.
    KillMatcher,
    /// Two matchers share the drop; one is stopped (SIGTERM) and the other takes its partitions.
    Rebalance,
    /// `kill -9` Redis, start it again from its append-only file after two seconds.
    RestartRedis,
    /// `kill -9` the broker, start it again from its data after two seconds.
    RestartBroker,
}

impl Fault {
    pub const ALL: [Fault; 4] =
        [Fault::KillMatcher, Fault::Rebalance, Fault::RestartRedis, Fault::RestartBroker];

    /// Name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillMatcher => "kill-matcher",
            Fault::Rebalance => "rebalance",
            Fault::RestartRedis => "restart-redis",
            Fault::RestartBroker => "restart-broker",
        }
    }

    pub fn parse(name: &str) -> Result<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name).with_context(|| {
            let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
            format!("unknown fault {name:?}; faults: {}", names.join(", "))
        })
    }

    fn what(self) -> &'static str {
        match self {
            Fault::KillMatcher => "kill -9 the matcher, start another 7 s later",
            Fault::Rebalance => "two matchers, SIGTERM one",
            Fault::RestartRedis => "kill -9 Redis, restart after 2 s",
            Fault::RestartBroker => "kill -9 the broker, restart after 2 s",
        }
    }
}

/// What the suite needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `dropline-matcher` binary.
    pub matcher: PathBuf,
    /// The `tansu` broker binary.
    pub tansu: PathBuf,
    /// The load each fault happens under.
    pub scenario: Scenario,
    /// Seconds into the load when the fault strikes.
    pub fault_at_s: f64,
    pub faults: Vec<Fault>,
    /// Where Redis and the broker keep their data (a fresh directory per suite).
    pub state: PathBuf,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: Fault,
    pub orders: u64,
    pub decisions: u64,
    /// Orders sent and not yet answered when the fault struck.
    pub in_flight: u64,
    /// Longest an order due from one second before the fault on waited for its answer.
    pub recovery_s: f64,
    /// p99 order → outcome before the fault, for comparison.
    pub p99_before_s: f64,
    /// Outcomes published again, identical, after the fault (replays recognised).
    pub redelivered: u64,
    pub violations: Vec<String>,
}

/// Runs the faults in turn and returns one row per fault.
pub async fn run(options: &Options) -> Result<Vec<Row>> {
    std::fs::create_dir_all(&options.state)?;
    let redis_port = free_port()?;
    let kafka_port = free_port()?;
    let mut redis = RedisServer { port: redis_port, dir: options.state.join("redis"), process: None };
    let mut broker = Broker::new(options.tansu.clone(), kafka_port, options.state.join("broker"));
    redis.start().await?;
    broker.start().await?;
    let mut rows = Vec::new();
    for fault in &options.faults {
        eprintln!("[faults] {}: {} at {:.0} s into the load", fault.name(), fault.what(), options.fault_at_s);
        let row = one(options, *fault, &mut redis, &mut broker).await?;
        eprintln!("[faults] {}: {} violations", fault.name(), row.violations.len());
        rows.push(row);
    }
    Ok(rows)
}

async fn one(options: &Options, fault: Fault, redis: &mut RedisServer, broker: &mut Broker) -> Result<Row> {
    let started_at_ms = kafka::now_ms();
    let run_id = format!("faults-{}-{started_at_ms}", fault.name());
    let mut settings = Settings::from_env()?;
    settings.kafka = broker.address();
    settings.redis = format!("redis://127.0.0.1:{}", redis.port);
    settings.set_topic_prefix(&format!("{run_id}."))?;
    run::prepare(&settings).await?;

    let first = Matcher::start(&options.matcher, &settings, &run_id).await?;
    let second = match fault {
        Fault::Rebalance => Some(Matcher::start(&options.matcher, &settings, &run_id).await?),
        _ => None,
    };
    let watch = Watch::default();
    let group = run_id.clone();
    let at = Duration::from_secs_f64(options.fault_at_s);
    let (report, (struck, in_flight, _survivors)) = run::drive(
        &settings,
        options.scenario.clone(),
        &run_id,
        started_at_ms,
        watch,
        true,
        |probe: Probe| {
            let settings = settings.clone();
            async move {
                tokio::time::sleep_until((probe.start + at).into()).await;
                let struck = probe.start.elapsed();
                let in_flight = probe.in_flight();
                let survivors = match fault {
                    Fault::KillMatcher => {
                        first.process.kill();
                        // As an orchestrator's restart backoff would: after the dead member's
                        // session timeout (6 s). The development broker stalls the group if a
                        // newcomer joins before that (ARCHITECTURE.md, Kafka settings).
                        tokio::time::sleep(RESTART_AFTER).await;
                        vec![Matcher::start(&options.matcher, &settings, &group).await?]
                    }
                    Fault::Rebalance => {
                        first.process.stop();
                        second.into_iter().collect()
                    }
                    Fault::RestartRedis => {
                        redis.kill();
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        redis.start().await?;
                        vec![first]
                    }
                    Fault::RestartBroker => {
                        broker.kill();
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        broker.start().await?;
                        vec![first]
                    }
                };
                Ok((struck, in_flight, survivors))
            }
        },
    )
    .await?;
    let from = struck.as_secs_f64() - 1.0;
    let recovery_s = report.waits.iter().filter(|(due, _)| *due >= from).map(|(_, w)| *w).fold(0.0, f64::max);
    let mut before: Vec<f64> = report.waits.iter().filter(|(due, _)| *due < from).map(|(_, w)| *w).collect();
    before.sort_by(f64::total_cmp);
    let p99_before_s = before.get(before.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(0.0);
    Ok(Row {
        fault,
        orders: report.orders_sent,
        decisions: report.decisions,
        in_flight,
        recovery_s,
        p99_before_s,
        redelivered: report.redelivered,
        violations: report.violations,
    })
}

/// The table the suite prints.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>9} {:>10} {:>11} {:>13} {:>12} {:>10}",
        "fault", "orders", "decided", "in flight", "recovery", "p99 before", "redelivered", "violations"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>9} {:>10} {:>9.2} s {:>11.3} s {:>12} {:>10}",
            r.fault.name(),
            r.orders,
            r.decisions,
            r.in_flight,
            r.recovery_s,
            r.p99_before_s,
            r.redelivered,
            r.violations.len()
        );
    }
    out
}

/// The suite's own Redis: append-only file fsynced on every write (`appendfsync always`), so a
/// `kill -9` loses no acknowledged decision.
struct RedisServer {
    port: u16,
    dir: PathBuf,
    process: Option<Process>,
}

impl RedisServer {
    async fn start(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? make stack-up installs it)")?;
        self.process = Some(Process::new(child));
        let url = format!("redis://127.0.0.1:{}", self.port);
        wait_until("Redis", Duration::from_secs(30), || async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            // PING answers while the AOF is still loading; a read does not.
            redis::cmd("DBSIZE").query_async::<i64>(&mut conn).await.ok().map(|_| ())
        })
        .await
    }

    fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}
