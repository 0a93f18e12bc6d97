//! The decider: consumes a batch, plans it, decides it in Redis (one atomic call per drop,
//! pipelined) and hands the outcomes to the publisher; between batches it runs the sweeps the
//! sweeper asks for. Every call that produces outcomes goes out from this one task on one
//! connection, so the publisher receives outcomes in the order Redis decided them — a promotion
//! never overtakes the waitlisting it ends, an expiry never the reservation — without a lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use dropline_core::admin::Health;
use dropline_core::backoff::Backoff;
use dropline_core::kafka::{self, now_ms};
use dropline_core::redis::Conn;
use dropline_core::Settings;
use dropline_proto::v1::ReservationStatus;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::catalogs::Catalogs;
use super::group::GroupContext;
use super::outcome::Outcomes;
use super::plan::{self, Item, Planner, Reply, Work};
use super::publisher::{OutboxAck, Progress, Publication, Publisher, Record};
use super::store::{self, Registry};
use crate::config::MatcherConfig;
use crate::metrics::Metrics;
use crate::split;
use crate::step::{DropKeys, Op, OutboxEvent, Swept};

/// The sweeper's request: sweep these drops (or shards), holding back holds not yet settled.
pub(crate) struct SweepRequest {
    pub drops: Vec<String>,
    pub settled: Vec<(String, i64)>,
    pub report: oneshot::Sender<Vec<SweptDrop>>,
}

/// What a sweep found in one drop.
#[derive(Debug)]
pub(crate) struct SweptDrop {
    pub drop_id: String,
    /// `open`, `closed` or `none`.
    pub state: String,
    pub active_holds: i64,
    pub waitlisted: i64,
    /// Outcomes handed over from its outbox.
    pub published: usize,
}

pub(crate) struct Decider {
    pub settings: Settings,
    pub config: MatcherConfig,
    pub metrics: Metrics,
    pub health: Health,
    pub consumer: Arc<StreamConsumer<GroupContext>>,
    pub redis: Conn,
    pub catalogs: Catalogs,
    pub outcomes: Outcomes,
    pub publisher: Publisher,
    pub progress: Arc<Progress>,
    pub registry: Registry,
    pub sweeps: mpsc::Receiver<SweepRequest>,
    pub shutdown: CancellationToken,
}

impl Decider {
    /// Runs until shutdown (or until a step cannot be completed: nothing more is committed).
    pub async fn run(mut self) {
        loop {
            let next = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                request = self.sweeps.recv() => {
                    if let Some(request) = request {
                        if !self.sweep(request).await {
                            return;
                        }
                    }
                    continue;
                }
                message = self.consumer.recv() => message.map(|m| m.detach()),
            };
            let first = match next {
                Ok(message) => message,
                Err(e) => {
                    self.health.set("kafka", false, e.to_string());
                    warn!(error = %e, "consume error");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let batch = kafka::arrived(&self.consumer, first, self.config.max_batch);
            self.metrics.batch_size.observe(batch.len() as f64);
            if !self.decide(batch).await {
                return;
            }
        }
    }

    /// Decides a batch and hands its outcomes over. False when shutdown interrupted it.
    async fn decide(&mut self, batch: Vec<(OwnedMessage, Instant)>) -> bool {
        if !self.load_catalogs(&batch).await {
            return false;
        }
        let default_hold_ms = u64::try_from(self.config.default_hold.as_millis()).unwrap_or(u64::MAX);
        let items = Planner { topics: &self.settings.topics, catalogs: &mut self.catalogs, default_hold_ms }
            .classify_batch(batch);
        let calls = plan::group(&items, &self.settings.keyspace);
        let applied = if calls.is_empty() {
            Vec::new()
        } else {
            let refs: Vec<(&DropKeys, &[Op])> = calls.iter().map(|c| (&c.keys, c.ops.as_slice())).collect();
            let mut backoff = Backoff::fast();
            loop {
                match self.apply(&refs).await {
                    Ok(Some(applied)) => break applied,
                    Ok(None) => return false,
                    Err(e) => {
                        if !self.redis_failed(&e, "reservation step failed", &mut backoff).await {
                            return false;
                        }
                    }
                }
            }
        };
        let mut results = Vec::with_capacity(applied.len());
        for (call, applied) in calls.iter().zip(applied) {
            self.catalogs.note_version(&call.keys_of, applied.version, plan::opened_here(&items, call));
            results.push(applied.results);
        }
        let answers = plan::answers(&items, &calls, results);

        let mut records = Vec::with_capacity(items.len());
        let mut opened: Vec<(String, i32)> = Vec::new();
        for (item, answer) in items.iter().zip(answers) {
            let mut record = match (&item.work, answer) {
                (Work::Ignore, _) => {
                    self.metrics.ignored.inc();
                    continue;
                }
                (Work::Dead(reason), _) => self.dead_letter(&item.msg, reason),
                (
                    Work::Step { drop_id, reply: Reply::Outcome { order_id, reply_to, sent_at_ms }, .. },
                    Some(r),
                ) => self.outcomes.record(&self.outcomes.answer(drop_id, order_id, reply_to, *sent_at_ms, r)),
                (Work::Step { drop_id, reply: Reply::Trigger { what }, calls }, Some(r)) => {
                    if r.status == ReservationStatus::Invalid as i32 {
                        warn!(drop_id = %drop_id, trigger = what, reason = %r.reason, "trigger refused");
                        self.dead_letter(&item.msg, &r.reason)
                    } else {
                        info!(drop_id = %drop_id, trigger = what, outcome = %r.reason, "drop trigger");
                        let opens = calls.iter().filter(|(_, op)| matches!(op, Op::Open { .. }));
                        opened.extend(opens.map(|(keys_of, _)| (keys_of.clone(), item.msg.partition())));
                        continue;
                    }
                }
                (Work::Step { .. }, None) => {
                    error!("no step result for an operation; the batch is not handed over");
                    return false;
                }
            };
            record.received = Some(item.received);
            records.push(record);
        }
        if !opened.is_empty() {
            if let Err(e) = self.registry.register(&self.redis, &opened).await {
                warn!(error = %e, "could not register drops for sweeping; the next open trigger retries");
            }
        }
        self.publisher.send(Publication { records, offsets: next_offsets(&items), outbox: None }).await
    }

    /// A Redis call of the batch failed: counted, reported unhealthy, then the backoff's wait.
    /// False at shutdown.
    async fn redis_failed(&self, e: &redis::RedisError, what: &str, backoff: &mut Backoff) -> bool {
        self.metrics.redis_errors.inc();
        self.health.set("redis", false, e.to_string());
        warn!(error = %e, "{what}; retrying");
        backoff.wait(&self.shutdown).await
    }

    /// One attempt at the batch's calls, then the replicas' acknowledgement. `Ok(None)` at shutdown.
    async fn apply(
        &self,
        calls: &[(&DropKeys, &[Op])],
    ) -> Result<Option<Vec<crate::step::Applied>>, redis::RedisError> {
        let applied = store::apply_batch(&self.redis, now_ms(), calls).await?;
        if !self.replicated().await? {
            return Ok(None);
        }
        self.health.set("redis", true, "ok");
        Ok(Some(applied))
    }

    async fn replicated(&self) -> Result<bool, redis::RedisError> {
        let (wanted, timeout) = (self.config.wait_replicas, self.config.wait_timeout);
        store::await_replicas(&self.redis, wanted, timeout, &self.health, &self.metrics, &self.shutdown).await
    }

    /// Loads catalogs of drops this batch names (by the drop ids in the payloads, whatever the
    /// keys say) and this matcher has not cached: orders and triggers need them, hold actions a
    /// split drop's shards. A failed read is retried with backoff — deciding without the catalog
    /// would answer an open drop's orders as not understood. False at shutdown.
    async fn load_catalogs(&mut self, batch: &[(OwnedMessage, Instant)]) -> bool {
        let topics = &self.settings.topics;
        let ids: Vec<String> = batch
            .iter()
            .filter_map(|(m, _)| plan::drop_id_of(topics.kind_of(m.topic())?, m.payload()?))
            .collect();
        let missing = self.catalogs.missing(ids.iter().map(String::as_str));
        if missing.is_empty() {
            return true;
        }
        let mut backoff = Backoff::fast();
        loop {
            match store::read_metas(&self.redis, &self.settings.keyspace, &missing).await {
                Ok(rows) => {
                    for (drop_id, (version, catalog)) in missing.into_iter().zip(rows) {
                        self.catalogs.loaded(drop_id, version.unwrap_or(0), catalog.as_deref());
                    }
                    return true;
                }
                Err(e) => {
                    if !self.redis_failed(&e, "could not load catalogs", &mut backoff).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Sweeps the drops asked for whose earlier outbox entries are not still on their way, hands
    /// over what they return and reports back. False at shutdown.
    async fn sweep(&mut self, request: SweepRequest) -> bool {
        let drops: Vec<String> =
            request.drops.into_iter().filter(|d| !self.progress.outbox_busy(d)).collect();
        if drops.is_empty() {
            let _ = request.report.send(Vec::new());
            return true;
        }
        let swept =
            match store::sweep_many(&self.redis, &self.settings.keyspace, &drops, now_ms(), &request.settled)
                .await
            {
                Ok(swept) => swept,
                Err(e) => {
                    self.metrics.redis_errors.inc();
                    self.health.set("redis", false, e.to_string());
                    warn!(error = %e, "sweep failed");
                    let _ = request.report.send(Vec::new());
                    return true;
                }
            };
        let with_events = swept.iter().any(|s| !s.events.is_empty());
        if with_events {
            match self.replicated().await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    // Nothing handed over: the entries stay in the outboxes for the next sweep.
                    warn!(error = %e, "sweep not replicated");
                    let _ = request.report.send(Vec::new());
                    return true;
                }
            }
        }
        let mut report = Vec::with_capacity(drops.len());
        for (drop_id, swept) in drops.into_iter().zip(swept) {
            let Swept { state, active_holds, waitlisted, events } = swept;
            let published = events.len();
            if let Some(first) = events.first().map(OutboxEvent::raw) {
                if self.progress.outbox_leaving(&drop_id) {
                    // A shard's outcomes name (and are keyed by) the drop it belongs to.
                    let parent = split::parent_of(&drop_id);
                    let records = events
                        .into_iter()
                        .map(|e| self.outcomes.record(&self.outcomes.event(parent, e)))
                        .collect();
                    let outbox = Some(OutboxAck {
                        keys: self.settings.keyspace.drop_keys(&drop_id),
                        keys_of: drop_id.clone(),
                        count: published,
                        first,
                    });
                    if !self.publisher.send(Publication { records, offsets: BTreeMap::new(), outbox }).await {
                        return false;
                    }
                }
            }
            report.push(SweptDrop { drop_id, state, active_holds, waitlisted, published });
        }
        let _ = request.report.send(report);
        true
    }

    fn dead_letter(&self, msg: &OwnedMessage, reason: &str) -> Record {
        self.metrics.dead_letters.inc();
        warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason, "dead letter");
        self.outcomes.dead_letter(msg, reason)
    }
}

/// Per partition, the offset after the last message of the batch.
fn next_offsets(items: &[Item]) -> BTreeMap<(String, i32), i64> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for item in items {
        let entry = next.entry((item.msg.topic().to_owned(), item.msg.partition())).or_insert(0);
        *entry = (*entry).max(item.msg.offset() + 1);
    }
    next
}
