//! The sweeper: on each tick, works out which drops this matcher sweeps (registered under a
//! triggers partition it owns) and which holds are safe to expire (their reservation is out:
//! committed by an earlier owner or acknowledged here), asks the decider to sweep them, keeps the
//! hold and waitlist gauges, forgets drops that are done, rebalances split drops, and refreshes
//! the consumer-lag gauges. It has its own Redis connection; the sweeps themselves run in the
//! decider, so their outcomes are published in decision order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dropline_core::admin::Health;
use dropline_core::redis::Conn;
use dropline_core::{Settings, TopicKind};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::decider::{SweepRequest, SweptDrop};
use super::group::{GroupContext, Membership};
use super::plan::stream_of;
use super::publisher::Progress;
use super::rebalance::rebalance;
use super::store::Registry;
use crate::metrics::Metrics;
use crate::split;

pub(crate) struct Sweeper {
    pub settings: Settings,
    pub interval: Duration,
    pub metrics: Metrics,
    pub health: Health,
    pub redis: Conn,
    pub consumer: Arc<StreamConsumer<GroupContext>>,
    pub membership: Arc<Membership>,
    pub progress: Arc<Progress>,
    pub registry: Registry,
    pub requests: mpsc::Sender<SweepRequest>,
    pub stop: CancellationToken,
}

/// Per source stream of the assignment, the group's committed offset (the next to read) when the
/// assignment was first seen: what earlier owners published for sure.
struct Committed {
    generation: u64,
    next: HashMap<String, i64>,
}

impl Sweeper {
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut committed: Option<Committed> = None;
        let mut transfers = 0;
        let mut last_lag = Instant::now();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (generation, assigned) = self.membership.assigned();
            if committed.as_ref().is_none_or(|c| c.generation != generation) {
                committed = self.committed(generation, &assigned).await;
            }
            if let Some(committed) = &committed {
                if let Err(e) = self.sweep(&assigned, committed, &mut transfers).await {
                    self.metrics.redis_errors.inc();
                    self.health.set("redis", false, e.to_string());
                    warn!(error = %e, "sweep failed");
                }
            }
            if last_lag.elapsed() >= Duration::from_secs(2) {
                last_lag = Instant::now();
                self.refresh_lag();
            }
        }
    }

    /// The committed offsets of the assignment (a blocking broker call, off the runtime). `None`
    /// while they are unknown: no sweeping meanwhile.
    async fn committed(&self, generation: u64, assigned: &HashSet<(String, i32)>) -> Option<Committed> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in assigned {
            tpl.add_partition(topic, *partition);
        }
        let consumer = Arc::clone(&self.consumer);
        let fetched =
            tokio::task::spawn_blocking(move || consumer.committed_offsets(tpl, Duration::from_secs(5)))
                .await;
        match fetched {
            Ok(Ok(tpl)) => {
                let next: HashMap<String, i64> = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| {
                        let next = if let Offset::Offset(at) = e.offset() { at } else { 0 };
                        Some((stream_of(&self.settings.topics, e.topic(), e.partition())?, next))
                    })
                    .collect();
                info!(streams = next.len(), "sweeper: assignment changed");
                Some(Committed { generation, next })
            }
            Ok(Err(e)) => {
                warn!(error = %e, "sweeper: committed offsets unavailable; retrying");
                None
            }
            Err(e) => {
                warn!(error = %e, "sweeper: committed offsets task failed");
                None
            }
        }
    }

    async fn sweep(
        &self,
        assigned: &HashSet<(String, i32)>,
        committed: &Committed,
        transfers: &mut u64,
    ) -> Result<(), redis::RedisError> {
        let triggers = self.settings.topics.name(TopicKind::DropTriggers);
        let owned: HashSet<i32> = assigned.iter().filter(|(t, _)| t == triggers).map(|(_, p)| *p).collect();
        if owned.is_empty() {
            return Ok(());
        }
        let drops: Vec<String> = self
            .registry
            .all(&self.redis)
            .await?
            .into_iter()
            .filter(|(_, partition)| owned.contains(partition))
            .map(|(drop_id, _)| drop_id)
            .collect();
        if drops.is_empty() {
            self.metrics.holds_active.set(0);
            self.metrics.waitlist_length.set(0);
            return Ok(());
        }
        // A hold whose reservation is not out yet (replayed after a crash, re-sent after a broker
        // failure) does not expire yet: its EXPIRED must not overtake it. (Read once per tick:
        // acknowledgements only move forward, so an older reading only holds back more.)
        let acked = self.progress.acked();
        let settled: Vec<(String, i64)> = committed
            .next
            .iter()
            .map(|(stream, next)| (stream.clone(), (next - 1).max(acked.get(stream).copied().unwrap_or(-1))))
            .collect();
        let (report, swept) = oneshot::channel();
        let request = SweepRequest { drops, settled, report };
        tokio::select! {
            () = self.stop.cancelled() => return Ok(()),
            sent = self.requests.send(request) => if sent.is_err() { return Ok(()) },
        }
        let swept: Vec<SweptDrop> = tokio::select! {
            () = self.stop.cancelled() => return Ok(()),
            swept = swept => swept.unwrap_or_default(),
        };
        let (mut holds, mut waiting) = (0, 0);
        let mut done = Vec::new();
        let mut split_drops: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in swept {
            holds += s.active_holds;
            waiting += s.waitlisted;
            let parent = split::parent_of(&s.drop_id);
            if parent != s.drop_id {
                split_drops.entry(parent.to_owned()).or_default().push(s.drop_id.clone());
            }
            if s.state != "open" && s.active_holds == 0 && s.waitlisted == 0 && s.published == 0 {
                debug!(drop_id = %s.drop_id, "drop done: no longer swept");
                done.push(s.drop_id);
            }
        }
        self.registry.forget(&self.redis, &done).await?;
        for (parent, mut shards) in split_drops {
            shards.sort_by_key(|id| id.rsplit_once('#').and_then(|(_, k)| k.parse::<u32>().ok()));
            rebalance(&self.redis, &self.settings.keyspace, &parent, &shards, transfers).await?;
        }
        self.metrics.holds_active.set(holds);
        self.metrics.waitlist_length.set(waiting);
        self.health.set("redis", true, "ok");
        Ok(())
    }

    /// Refreshes the consumer-lag gauges (high watermark − position, per assigned partition).
    fn refresh_lag(&self) {
        let consumer = Arc::clone(&self.consumer);
        let lag = self.metrics.consumer_lag.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(position) = consumer.position() else { return };
            let mut now = Vec::new();
            for element in position.elements() {
                let Offset::Offset(at) = element.offset() else { continue };
                if let Ok((_, high)) =
                    consumer.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(1))
                {
                    now.push((
                        element.topic().to_owned(),
                        element.partition().to_string(),
                        (high - at).max(0),
                    ));
                }
            }
            // Only the partitions assigned now: one that moved to another matcher after a
            // rebalance must not keep reporting its last lag from here.
            lag.reset();
            for (topic, partition, value) in now {
                lag.with_label_values(&[&topic, &partition]).set(value);
            }
        });
    }
}
