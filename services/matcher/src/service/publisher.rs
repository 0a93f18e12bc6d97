//! The publisher: the one task that hands outcomes to the producer — in the order the decider
//! passes them, which is the order Redis decided them — waits for the broker's acknowledgements,
//! then commits the consumed offsets behind them (periodically, not per batch) and removes
//! published entries from the drops' outboxes.
//!
//! Back-pressure is counted in outcomes: the decider waits for room when [`IN_FLIGHT_OUTCOMES`]
//! are handed over and not yet acknowledged. A record the broker refuses for good (too large,
//! invalid) is dead-lettered — truncated, with the SHA-256 of the whole — and the rest go on;
//! anything else is sent again until it is acknowledged or the drain's deadline passes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dropline_core::admin::Health;
use dropline_core::backoff::Backoff;
use dropline_core::kafka;
use dropline_core::redis::Conn;
use futures::stream::{FuturesOrdered, StreamExt};
use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use dropline_core::Topics;

use super::group::GroupContext;
use super::outcome::SERVICE;
use super::plan::stream_of;
use crate::metrics::Metrics;
use crate::step::{self, DropKeys};

/// Outcomes handed over and not yet acknowledged before the decider waits.
pub(crate) const IN_FLIGHT_OUTCOMES: u32 = 20_000;

/// How often acknowledged offsets are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(20);

/// One record to publish.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    /// A reservation outcome's status (counted in `dropline_orders_total` when handed over).
    pub status: Option<i32>,
    /// When the message it answers arrived (decision latency).
    pub received: Option<Instant>,
}

/// Entries of a drop's outbox these records are: removed once the broker has them.
#[derive(Debug, Clone)]
pub(crate) struct OutboxAck {
    pub keys_of: String,
    /// The keys of `keys_of`, in the deployment's keyspace.
    pub keys: DropKeys,
    pub count: usize,
    /// The first entry, as stored: nothing is removed unless the outbox still starts with it.
    pub first: String,
}

/// What the decider hands over after a step or a sweep.
#[derive(Debug, Default)]
pub(crate) struct Publication {
    pub records: Vec<Record>,
    /// Per consumed partition, the offset after the last message these records answer.
    pub offsets: BTreeMap<(String, i32), i64>,
    pub outbox: Option<OutboxAck>,
}

/// What the publisher tells the rest of the matcher.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Per source stream (`o3`), the highest offset whose outcomes are acknowledged.
    acked: Mutex<HashMap<String, i64>>,
    /// Drops whose outbox entries are on their way: not swept again until they are removed.
    outbox_in_flight: Mutex<HashSet<String>>,
}

impl Progress {
    pub fn acked(&self) -> HashMap<String, i64> {
        self.acked.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Marks a drop's outbox as on its way; false when it already was.
    pub fn outbox_leaving(&self, keys_of: &str) -> bool {
        self.outbox_in_flight.lock().unwrap_or_else(PoisonError::into_inner).insert(keys_of.to_owned())
    }

    pub fn outbox_busy(&self, keys_of: &str) -> bool {
        self.outbox_in_flight.lock().unwrap_or_else(PoisonError::into_inner).contains(keys_of)
    }

    fn outbox_done(&self, keys_of: &str) {
        self.outbox_in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(keys_of);
    }

    fn note_acked(&self, streams: impl Iterator<Item = (String, i64)>) {
        let mut acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        for (stream, last) in streams {
            let at = acked.entry(stream).or_insert(-1);
            *at = (*at).max(last);
        }
    }
}

/// The handle the decider hands publications to.
#[derive(Clone)]
pub(crate) struct Publisher {
    tx: mpsc::Sender<(Publication, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
}

impl Publisher {
    /// Hands a publication over, waiting while [`IN_FLIGHT_OUTCOMES`] are unacknowledged. False
    /// when the publisher has stopped.
    pub async fn send(&self, publication: Publication) -> bool {
        let n = u32::try_from(publication.records.len()).unwrap_or(u32::MAX).clamp(1, IN_FLIGHT_OUTCOMES);
        let Ok(permit) = Arc::clone(&self.room).acquire_many_owned(n).await else { return false };
        self.tx.send((publication, permit)).await.is_ok()
    }
}

/// What the publisher task needs.
pub(crate) struct PublisherParts {
    pub producer: FutureProducer,
    pub consumer: Arc<StreamConsumer<GroupContext>>,
    pub redis: Conn,
    pub dead_letters: String,
    /// The deployment's topics (naming the source streams of consumed partitions).
    pub topics: Topics,
    pub metrics: Metrics,
    pub health: Health,
    pub progress: Arc<Progress>,
    /// Cancelled when the drain's time is up: whatever is not acknowledged stays uncommitted
    /// (replayed and recognised after a restart).
    pub stop: CancellationToken,
}

/// Starts the publisher; it ends once every [`Publisher`] handle is dropped and what they handed
/// over is acknowledged and committed, or at `stop`.
pub(crate) fn start(parts: PublisherParts) -> (Publisher, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4096);
    let room = Arc::new(Semaphore::new(IN_FLIGHT_OUTCOMES as usize));
    let task = tokio::spawn(run(parts, rx));
    (Publisher { tx, room }, task)
}

/// A publication's records handed to the producer, with what follows their acknowledgement.
struct Handed {
    deliveries: Vec<(DeliveryFuture, Record)>,
    offsets: BTreeMap<(String, i32), i64>,
    outbox: Option<OutboxAck>,
    permit: OwnedSemaphorePermit,
}

async fn run(parts: PublisherParts, mut rx: mpsc::Receiver<(Publication, OwnedSemaphorePermit)>) {
    let sender = Sender {
        producer: parts.producer.clone(),
        dead_letters: parts.dead_letters.clone(),
        metrics: parts.metrics.clone(),
        health: parts.health.clone(),
        stop: parts.stop.clone(),
    };
    let mut pending = FuturesOrdered::new();
    let mut to_commit: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latency = Latency::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            biased;
            done = pending.next(), if !pending.is_empty() => {
                let Some(Some(done)) = done else { break };
                let done: Delivered = done;
                // In order: everything up to these offsets is out, so expiring their holds is safe.
                parts.progress.note_acked(done.offsets.iter().filter_map(|((topic, partition), next)| {
                    Some((stream_of(&parts.topics, topic, *partition)?, next - 1))
                }));
                for ((topic, partition), next) in done.offsets {
                    let at = to_commit.entry((topic, partition)).or_insert(next);
                    *at = (*at).max(next);
                }
                for micros in done.acked {
                    Latency::record(&mut latency.acked, micros);
                }
                drop(done.permit);
            }
            next = rx.recv(), if open => match next {
                Some((publication, permit)) => {
                    let Some(handed) = sender.hand(publication, permit, &mut latency).await else { break };
                    pending.push_back(deliver(sender.clone(), handed, parts.redis.clone(), Arc::clone(&parts.progress)));
                }
                None => open = false,
            },
            _ = tick.tick() => {
                commit(&parts, &mut to_commit, CommitMode::Async);
                latency.log_every(Duration::from_secs(10));
            }
        }
    }
    commit(&parts, &mut to_commit, CommitMode::Async);
}

/// Latencies of the last period (exact, hdrhistogram), logged every 10 s.
struct Latency {
    handed: hdrhistogram::Histogram<u64>,
    acked: hdrhistogram::Histogram<u64>,
    since: Instant,
}

impl Latency {
    fn new() -> Self {
        let hist = || {
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("1 µs to 60 s at 3 significant digits are valid bounds")
        };
        Self { handed: hist(), acked: hist(), since: Instant::now() }
    }

    fn record(hist: &mut hdrhistogram::Histogram<u64>, micros: u64) {
        let _ = hist.record(micros.clamp(1, 60_000_000));
    }

    fn log_every(&mut self, period: Duration) {
        if self.since.elapsed() < period {
            return;
        }
        self.since = Instant::now();
        if !self.handed.is_empty() {
            info!(
                decisions = self.handed.len(),
                handed_p50_us = self.handed.value_at_quantile(0.5),
                handed_p99_us = self.handed.value_at_quantile(0.99),
                handed_max_us = self.handed.max(),
                acked_p50_us = self.acked.value_at_quantile(0.5),
                acked_p99_us = self.acked.value_at_quantile(0.99),
                "decision latency (received → handed to the producer, → acknowledged), last 10 s"
            );
        }
        self.handed.reset();
        self.acked.reset();
    }
}

/// A publication acknowledged.
struct Delivered {
    offsets: BTreeMap<(String, i32), i64>,
    acked: Vec<u64>,
    permit: OwnedSemaphorePermit,
}

/// Waits for a publication's acknowledgements (sending again what failed), then removes its
/// outbox entries and reports its offsets as acknowledged. `None` at `stop`.
async fn deliver(
    sender: Sender,
    handed: Handed,
    mut redis: Conn,
    progress: Arc<Progress>,
) -> Option<Delivered> {
    let Handed { deliveries, offsets, outbox, permit } = handed;
    let mut acked = Vec::with_capacity(deliveries.len());
    for (delivery, record) in deliveries {
        if !sender.until_acked(delivery, &record).await {
            return None;
        }
        if let Some(received) = record.received {
            let elapsed = received.elapsed();
            sender.metrics.decision_acked.observe(elapsed.as_secs_f64());
            acked.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        }
    }
    sender.health.set("kafka", true, "ok");
    if let Some(outbox) = outbox {
        if let Err(e) = step::ack(&mut redis, &outbox.keys, outbox.count, Some(&outbox.first)).await {
            // The entries stay and are published again by a later sweep (at least once).
            warn!(error = %e, drop_id = %outbox.keys_of, "cannot remove published outbox entries");
        }
        progress.outbox_done(&outbox.keys_of);
    }
    Some(Delivered { offsets, acked, permit })
}

/// Hands records to the producer and sees them acknowledged.
#[derive(Clone)]
struct Sender {
    producer: FutureProducer,
    dead_letters: String,
    metrics: Metrics,
    health: Health,
    stop: CancellationToken,
}

impl Sender {
    /// Hands a publication's records to the producer, in order. `None` at `stop`.
    async fn hand(
        &self,
        publication: Publication,
        permit: OwnedSemaphorePermit,
        latency: &mut Latency,
    ) -> Option<Handed> {
        let mut deliveries = Vec::with_capacity(publication.records.len());
        for record in publication.records {
            let delivery = self.enqueue(&record).await?;
            if let Some(status) = record.status {
                self.metrics
                    .orders
                    .with_label_values(&[dropline_proto::v1::ReservationStatus::label_of(status)])
                    .inc();
            }
            if let Some(received) = record.received {
                let elapsed = received.elapsed();
                self.metrics.decision_latency.observe(elapsed.as_secs_f64());
                Latency::record(&mut latency.handed, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
            }
            deliveries.push((delivery, record));
        }
        Some(Handed { deliveries, offsets: publication.offsets, outbox: publication.outbox, permit })
    }

    /// Enqueues a record, waiting while the producer's queue is full and retrying what may pass
    /// later; a record refused for good becomes its dead letter. `None` at `stop`.
    async fn enqueue(&self, record: &Record) -> Option<DeliveryFuture> {
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
        let mut record = std::borrow::Cow::Borrowed(record);
        loop {
            let started = Instant::now();
            let sent =
                kafka::enqueue(&self.producer, &record.topic, &record.key, &record.payload, &self.stop).await;
            self.metrics.producer_blocked.inc_by(started.elapsed().as_secs_f64());
            match sent {
                Ok(delivery) => return Some(delivery),
                Err(KafkaError::Canceled) => return None,
                Err(e) if kafka::is_permanent(&e) => {
                    record = std::borrow::Cow::Owned(self.refused(&record, &e)?)
                }
                Err(e) => {
                    self.metrics.publish_errors.inc();
                    warn!(error = %e, topic = %record.topic, "cannot enqueue; retrying");
                    if !backoff.wait(&self.stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The dead letter of a record the broker refuses for good. `None` when the record already
    /// was a dead letter (it is logged and dropped: there is nowhere left to keep it).
    fn refused(&self, record: &Record, error: &KafkaError) -> Option<Record> {
        self.metrics.publish_errors.inc();
        if record.topic == self.dead_letters {
            warn!(error = %error, size = record.payload.len(), "dead letter refused by the broker; dropped");
            return None;
        }
        self.metrics.dead_letters.inc();
        warn!(error = %error, topic = %record.topic, size = record.payload.len(), "record refused for good; dead-lettered");
        let reason = format!("the broker refused this {} record for good: {error}", record.topic);
        let letter =
            kafka::refused_letter(&record.topic, record.key.as_bytes(), &record.payload, &reason, SERVICE);
        Some(Record {
            topic: self.dead_letters.clone(),
            key: record.key.clone(),
            payload: letter.encode_to_vec(),
            status: None,
            received: None,
        })
    }

    /// Waits until the broker has the record, sending it again after a failure (its dead letter
    /// after a permanent one). False at `stop`.
    async fn until_acked(&self, delivery: DeliveryFuture, record: &Record) -> bool {
        let mut pending = delivery;
        let mut current = std::borrow::Cow::Borrowed(record);
        let mut backoff = Backoff::fast();
        loop {
            let failed = match pending.await {
                Ok(Ok(_)) => return true,
                Ok(Err((e, _))) => e,
                Err(_) => KafkaError::MessageProduction(RDKafkaErrorCode::Unknown),
            };
            self.metrics.publish_errors.inc();
            if kafka::is_permanent(&failed) {
                match self.refused(&current, &failed) {
                    Some(letter) => current = std::borrow::Cow::Owned(letter),
                    None => return true,
                }
            } else {
                self.health.set("kafka", false, failed.to_string());
                warn!(error = %failed, topic = %current.topic, "publish failed; re-sending");
                if !backoff.wait(&self.stop).await {
                    return false;
                }
            }
            match self.enqueue(&current).await {
                Some(again) => pending = again,
                None => return false,
            }
        }
    }
}

/// Stores and commits the acknowledged offsets.
fn commit(parts: &PublisherParts, to_commit: &mut BTreeMap<(String, i32), i64>, mode: CommitMode) {
    if to_commit.is_empty() {
        return;
    }
    let offsets = std::mem::take(to_commit);
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
            warn!(error = %e, "cannot build commit");
            return;
        }
    }
    // Stored offsets are what the final synchronous commit at shutdown commits.
    if let Err(e) = parts.consumer.store_offsets(&tpl) {
        // A partition moved to another member meanwhile: it replays, and recognises, from there.
        warn!(error = %e, "cannot store offsets");
        return;
    }
    if let Err(e) = parts.consumer.commit_consumer_state(mode) {
        if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
            // Not fatal: a later commit covers these offsets; a replay would be recognised.
            warn!(error = %e, "commit failed");
        }
    }
}
