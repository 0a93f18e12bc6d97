//! The matcher's Redis: connecting, the batch's step calls (pipelined, or one per drop on a
//! cluster), catalog reads, bounded sweeps, the sweep registry, and waiting for replicas.

use std::collections::HashMap;
use std::time::Duration;

use dropline_core::admin::Health;
use dropline_core::backoff::Backoff;
use dropline_core::keys::Keyspace;
use dropline_core::redis::Conn;
use dropline_core::Settings;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics::Metrics;
use crate::step::{self, DropKeys, Op};

use crate::step::{SWEEP_BUDGET, SWEEP_OUTBOX};

/// Connects, retrying with backoff until `shutdown`.
pub(crate) async fn connect(
    settings: &Settings,
    health: &Health,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<Conn> {
    let mut backoff = Backoff::fast();
    loop {
        match dropline_core::redis::connect(&settings.redis).await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                metrics.redis_errors.inc();
                health.set("redis", false, e.to_string());
                warn!(error = %e, "redis unavailable; retrying");
                if !backoff.wait(shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Applies a batch's step calls: one pipeline on a single Redis; on a Redis Cluster, one pipeline
/// per drop (a pipeline must stay in one slot), all in flight at once.
pub(crate) async fn apply_batch(
    redis: &Conn,
    now: i64,
    calls: &[(&DropKeys, &[Op])],
) -> Result<Vec<step::Applied>, redis::RedisError> {
    if !redis.is_cluster() || calls.len() < 2 {
        return step::apply(&mut redis.clone(), now, calls).await;
    }
    futures::future::try_join_all(calls.iter().map(|call| {
        let mut conn = redis.clone();
        async move {
            let mut applied = step::apply(&mut conn, now, std::slice::from_ref(call)).await?;
            applied.pop().ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "no result for a drop's step",
                ))
            })
        }
    }))
    .await
}

/// Sweeps drops (bounded calls, see [`SWEEP_BUDGET`]): one pipeline, or one call per drop on a cluster.
pub(crate) async fn sweep_many(
    redis: &Conn,
    keyspace: &Keyspace,
    drops: &[String],
    now: i64,
    settled: &[(String, i64)],
) -> Result<Vec<step::Swept>, redis::RedisError> {
    if redis.is_cluster() {
        return futures::future::try_join_all(drops.iter().map(|drop_id| {
            let mut conn = redis.clone();
            async move {
                step::sweep(&mut conn, &keyspace.drop_keys(drop_id), now, SWEEP_BUDGET, SWEEP_OUTBOX, settled)
                    .await
            }
        }))
        .await;
    }
    let keys: Vec<DropKeys> = drops.iter().map(|d| keyspace.drop_keys(d)).collect();
    step::sweep_pipelined(&mut redis.clone(), &keys, now, SWEEP_BUDGET, SWEEP_OUTBOX, settled).await
}

/// `version` and `catalog` of each drop's meta: one pipeline, or one request per drop on a cluster.
pub(crate) async fn read_metas(
    redis: &Conn,
    keyspace: &Keyspace,
    drops: &[String],
) -> Result<Vec<(Option<i64>, Option<Vec<u8>>)>, redis::RedisError> {
    let meta = |drop_id: &str| {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(keyspace.drop_keys(drop_id).meta()).arg("version").arg("catalog");
        cmd
    };
    if redis.is_cluster() {
        return futures::future::try_join_all(drops.iter().map(|drop_id| {
            let mut conn = redis.clone();
            let cmd = meta(drop_id);
            async move { cmd.query_async(&mut conn).await }
        }))
        .await;
    }
    let mut pipe = redis::pipe();
    for drop_id in drops {
        pipe.add_command(meta(drop_id));
    }
    pipe.query_async(&mut redis.clone()).await
}

/// The sweep registry of a deployment: drop id → partition of its triggers, so only the matcher
/// that owns that partition sweeps it.
#[derive(Clone)]
pub(crate) struct Registry {
    key: String,
}

impl Registry {
    pub fn new(settings: &Settings) -> Self {
        Self { key: settings.keyspace.sweep_registry() }
    }

    /// Registers opened drops (and shards) under the partition of their trigger.
    pub async fn register(&self, redis: &Conn, drops: &[(String, i32)]) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        for (drop_id, partition) in drops {
            pipe.hset(&self.key, drop_id, partition).ignore();
        }
        pipe.query_async::<()>(&mut redis.clone()).await
    }

    pub async fn all(&self, redis: &Conn) -> Result<HashMap<String, i32>, redis::RedisError> {
        redis::cmd("HGETALL").arg(&self.key).query_async(&mut redis.clone()).await
    }

    /// Forgets drops that are done (closed, no holds left).
    pub async fn forget(&self, redis: &Conn, drops: &[String]) -> Result<(), redis::RedisError> {
        if drops.is_empty() {
            return Ok(());
        }
        redis::cmd("HDEL").arg(&self.key).arg(drops).query_async(&mut redis.clone()).await
    }
}

/// With `wanted` replicas, returns once that many acknowledged every write made on this
/// connection so far (`WAIT`), so a decision is never published before it would survive a failover
/// to a replica. Keeps waiting (outcomes held back, health degraded) while replicas lag or are
/// missing. `Ok(false)` at shutdown; an error means the connection broke and the caller repeats its
/// step (a replay where Redis kept it, a fresh decision where it did not: nothing was published yet).
pub(crate) async fn await_replicas(
    redis: &Conn,
    wanted: u32,
    timeout: Duration,
    health: &Health,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<bool, redis::RedisError> {
    if wanted == 0 {
        return Ok(true);
    }
    let wanted = i64::from(wanted);
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut redis = redis.clone();
    loop {
        let acked: i64 = redis::cmd("WAIT").arg(wanted).arg(timeout_ms).query_async(&mut redis).await?;
        if acked >= wanted {
            return Ok(true);
        }
        metrics.replica_waits.inc();
        if metrics.replica_waits.get() % 100 == 1 {
            warn!(acked, wanted, "redis replicas behind; outcomes held back");
        }
        health.set("redis", false, format!("{acked} of {wanted} replicas acknowledged; outcomes held back"));
        if stop.is_cancelled() {
            return Ok(false);
        }
    }
}
