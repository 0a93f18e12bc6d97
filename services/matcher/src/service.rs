//! The matcher service: consume a batch → parse and validate → decide in Redis (one atomic call
//! per drop, pipelined) → hand outcomes to the producer → commit offsets once the broker has
//! acknowledged them. Beside it, the sweeper expires due holds and publishes the outcomes the
//! step produced on its own (expiry, promotion, close).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dropline_core::admin::{self, Health};
use dropline_core::claim::ClaimSecret;
use dropline_core::kafka::{self, now_ms};
use dropline_core::redis::Conn;
use dropline_core::{Settings, TopicKind};
use dropline_proto::v1::{
    self, drop_trigger, ChatOrder, DropTrigger, HoldAction, HoldActionKind, OpenDrop, ReservationOutcome,
    ReservationStatus,
};
use futures::FutureExt;
use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::chat::{self, BuyerId, CatalogIndex, ChatLine, Quantity, Sku};
use crate::config::MatcherConfig;
use crate::metrics::Metrics;
use crate::split;
use crate::step::{self, DropKeys, Op, OpResult, ReplyTo, Source};

/// Registry of drops to sweep, one per triggers topic (deployments sharing a Redis stay apart):
/// drop id → partition of its triggers, so only the matcher that owns that partition sweeps it.
fn drops_key(settings: &Settings) -> String {
    dropline_core::keys::sweep_registry(settings.topics.name(TopicKind::DropTriggers))
}
const SERVICE: &str = "matcher";

/// The matcher could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// Kafka client error.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Redis error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Metrics registration.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Admin endpoint.
    #[error("admin endpoint: {0}")]
    Io(#[from] std::io::Error),
}

/// A drop's catalog as this matcher last saw it.
#[derive(Debug, Clone)]
struct CachedDrop {
    /// Catalog version in Redis (-1: taken from an open trigger not yet confirmed by Redis).
    version: i64,
    index: Option<Arc<CatalogIndex>>,
    max_quantity: u32,
    /// Shards of a split drop (1: not split).
    shards: u32,
}

/// What one consumed message turned into.
// Items live for one batch in one Vec; boxing the large variant would cost an allocation per order.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Work {
    /// Chat that is not an order: counted, nothing published.
    Ignore,
    /// Not decodable or not valid: goes to dead-letters with the reason.
    Dead(String),
    /// Operations for the step — one, or one per shard of a split drop (`calls`: the drop whose
    /// keys it runs on, and the operation) — with what the outcome needs that the step does not
    /// return. `drop_id` is the drop the outcome names.
    Step { drop_id: String, calls: Vec<(String, Op)>, reply: Reply },
}

#[derive(Debug)]
enum Reply {
    /// Publish a `ReservationOutcome` for this order / hold action. `reply_to` is the order's
    /// (empty for a hold action: the step answers with the one it kept).
    Outcome { order_id: String, reply_to: ReplyTo, sent_at_ms: i64 },
    /// A trigger: logged; refused triggers go to dead-letters.
    Trigger { what: &'static str },
}

struct Item {
    msg: OwnedMessage,
    received: Instant,
    work: Work,
}

/// What the consume loop and the sweeper share (cheap clones of handles).
#[derive(Clone)]
struct Shared {
    settings: Settings,
    config: MatcherConfig,
    metrics: Metrics,
    health: Health,
    producer: FutureProducer,
    consumer: Arc<StreamConsumer>,
    redis: Conn,
    latency_us: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    /// Held from a step until its outcomes are handed to the producer, and by the sweeper from
    /// reading the outbox until its events are handed over: outcomes leave in the order Redis
    /// decided them (a promotion never overtakes the waitlisting it ends).
    publish_order: Arc<tokio::sync::Mutex<()>>,
    /// Per source stream (`o3`: topic letter + partition), the highest offset whose outcomes this
    /// matcher has published and seen acknowledged.
    acked: Arc<Mutex<HashMap<String, i64>>>,
    /// Key of the orders' claim codes.
    claim: ClaimSecret,
}

struct Matcher {
    shared: Shared,
    catalogs: HashMap<String, CachedDrop>,
    shutdown: CancellationToken,
    /// Batches handed to the producer, waiting for the broker's acks before their commit.
    committer: tokio::sync::mpsc::Sender<Handed>,
}

/// A decided batch on its way out: its outcomes' deliveries and the offsets to commit after them.
struct Handed {
    deliveries: Vec<(DeliveryFuture, String, String, Vec<u8>)>,
    offsets: BTreeMap<(String, i32), i64>,
}

/// Batches decided but not yet acknowledged by the broker: the matcher decides the next batch
/// while the previous ones are in flight (commits still happen in order, each after its acks).
const IN_FLIGHT_BATCHES: usize = 8;

/// Runs the matcher until `shutdown` is cancelled, then drains within the grace period.
pub async fn run(
    settings: Settings,
    config: MatcherConfig,
    shutdown: CancellationToken,
) -> Result<(), MatcherError> {
    let metrics = Metrics::new()?;
    let health = Health::default();
    health.set("redis", false, "connecting");
    health.set("kafka", false, "connecting");
    let admin_stop = CancellationToken::new();
    let (admin_addr, admin_task) = admin::serve(
        config.admin,
        admin::router(metrics.registry.clone(), health.clone()),
        admin_stop.clone(),
    )
    .await?;

    let Some(mut redis) = connect_redis(&settings, &health, &metrics, &shutdown).await else {
        admin_stop.cancel();
        return Ok(());
    };
    step::load(&mut redis).await?;
    let claim = match config.claim_secret.clone() {
        Some(secret) => secret,
        None => ClaimSecret::shared(&mut redis).await?,
    };
    health.set("redis", true, "connected");

    let producer = kafka::producer(&settings, "dropline-matcher")?;
    let consumer: Arc<StreamConsumer> =
        Arc::new(kafka::consumer(&settings, "dropline-matcher", &config.group)?);
    let topics = [
        settings.topics.name(TopicKind::DropTriggers),
        settings.topics.name(TopicKind::ChatOrders),
        settings.topics.name(TopicKind::HoldActions),
    ];
    consumer.subscribe(&topics)?;
    health.set("kafka", true, "subscribed");
    info!(group = %config.group, admin = %admin_addr, topics = ?topics, "matcher running");

    let latency_us = Arc::new(Mutex::new(
        hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| MatcherError::Io(std::io::Error::other(format!("histogram: {e}"))))?,
    ));
    let shared = Shared {
        settings,
        config,
        metrics,
        health,
        producer,
        consumer,
        redis,
        latency_us,
        publish_order: Arc::default(),
        acked: Arc::default(),
        claim,
    };
    let sweeper_stop = CancellationToken::new();
    let sweeper = tokio::spawn(sweep_loop(Sweeper {
        shared: shared.clone(),
        stop: sweeper_stop.clone(),
        committed: HashMap::new(),
        transfers: 0,
    }));
    let grace = shared.settings.shutdown_grace;
    let (committer, handed) = tokio::sync::mpsc::channel(IN_FLIGHT_BATCHES);
    let commits = tokio::spawn(commit_loop(shared.clone(), handed, shutdown.clone()));
    let mut matcher = Matcher { shared, catalogs: HashMap::new(), shutdown: shutdown.clone(), committer };
    matcher.consume_loop().await;

    info!("draining");
    // No more batches: the commit loop ends once the ones in flight are committed.
    drop(matcher.committer);
    let drained = dropline_core::shutdown::drain(grace, async {
        // Batches already handed out are acknowledged and committed first.
        let _ = commits.await;
        sweeper_stop.cancel();
        let _ = sweeper.await;
        let _ = matcher.shared.producer.flush(Duration::from_secs(5));
        if let Err(e) = matcher.shared.consumer.commit_consumer_state(CommitMode::Sync) {
            if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
                warn!(error = %e, "final commit failed");
            }
        }
        matcher.shared.consumer.unsubscribe();
    })
    .await;
    if let Err(e) = drained {
        warn!(error = %e, "drain cut short");
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    info!("matcher stopped");
    Ok(())
}

impl Shared {
    /// An outcome of `order_id` with its addressing filled in: the drop it names, where the
    /// answers go and the order's claim code.
    fn addressed(&self, drop_id: &str, order_id: &str, reply_to: &ReplyTo) -> ReservationOutcome {
        ReservationOutcome {
            order_id: order_id.to_owned(),
            drop_id: drop_id.to_owned(),
            buyer_id: reply_to.buyer.clone(),
            channel: reply_to.channel.clone(),
            buyer_name: reply_to.name.clone(),
            origin: reply_to.origin.clone(),
            platform_message_id: reply_to.message_id.clone(),
            claim_code: self.claim.code(drop_id, order_id).to_string(),
            ..Default::default()
        }
    }

    /// With `wait_replicas` set, returns once that many replicas acknowledged every write made on
    /// this connection so far (`WAIT`), so a decision is never published before it would survive
    /// a failover to a replica. Keeps waiting (outcomes held back, health degraded) while replicas
    /// lag or are missing. `Ok(false)` at shutdown; an error means the connection broke and the
    /// caller repeats its step (a replay where Redis kept it, a fresh decision where it did not:
    /// nothing was published yet either way).
    async fn await_replicas(&self, stop: &CancellationToken) -> Result<bool, redis::RedisError> {
        let wanted = i64::from(self.config.wait_replicas);
        if wanted == 0 {
            return Ok(true);
        }
        let timeout_ms = u64::try_from(self.config.wait_timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut redis = self.redis.clone();
        loop {
            let acked: i64 = redis::cmd("WAIT").arg(wanted).arg(timeout_ms).query_async(&mut redis).await?;
            if acked >= wanted {
                return Ok(true);
            }
            self.metrics.replica_waits.inc();
            if self.metrics.replica_waits.get() % 100 == 1 {
                warn!(acked, wanted, "redis replicas behind; outcomes held back");
            }
            self.health.set(
                "redis",
                false,
                format!("{acked} of {wanted} replicas acknowledged; outcomes held back"),
            );
            if stop.is_cancelled() {
                return Ok(false);
            }
        }
    }
}

async fn connect_redis(
    settings: &Settings,
    health: &Health,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<Conn> {
    let mut backoff = Backoff::new();
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

/// Exponential backoff from 50 ms to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(50))
    }

    /// Sleeps; false when shutdown came first.
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

impl Matcher {
    async fn consume_loop(&mut self) {
        loop {
            let first = tokio::select! {
                () = self.shutdown.cancelled() => return,
                message = self.shared.consumer.recv() => message.map(|m| m.detach()),
            };
            let first = match first {
                Ok(message) => message,
                Err(e) => {
                    self.shared.health.set("kafka", false, e.to_string());
                    warn!(error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let received = Instant::now();
            let mut batch = vec![(first, received)];
            // Take only what has already arrived: one order when idle, up to max_batch under load.
            while batch.len() < self.shared.config.max_batch {
                match self.shared.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push((message.detach(), Instant::now())),
                    _ => break,
                }
            }
            self.shared.metrics.batch_size.observe(batch.len() as f64);
            if !self.process(batch).await {
                return;
            }
        }
    }

    /// Decides a batch and commits it. False when shutdown interrupted it (nothing committed).
    async fn process(&mut self, batch: Vec<(OwnedMessage, Instant)>) -> bool {
        self.load_catalogs(&batch).await;
        // Triggers first: the step applies a drop's opens before its other operations of the batch,
        // so an order consumed a moment before the open (another topic) parses against its catalog
        // too, instead of being answered as an unknown SKU.
        let triggers = self.shared.settings.topics.name(TopicKind::DropTriggers).to_owned();
        let mut works: Vec<Option<Work>> =
            batch.iter().map(|(msg, _)| (msg.topic() == triggers).then(|| self.classify(msg))).collect();
        let mut items: Vec<Item> = Vec::with_capacity(batch.len());
        for ((msg, received), work) in batch.into_iter().zip(works.iter_mut()) {
            let work = work.take().unwrap_or_else(|| self.classify(&msg));
            items.push(Item { msg, received, work });
        }

        // Group step operations by drop (by shard for a split drop), in consumption order.
        #[allow(clippy::type_complexity)]
        let mut groups: Vec<(String, DropKeys, Vec<Op>, Vec<(usize, usize)>)> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let Work::Step { calls, .. } = &item.work else { continue };
            for (c, (keys_of, op)) in calls.iter().enumerate() {
                let g = *group_of.entry(keys_of.clone()).or_insert_with(|| {
                    groups.push((keys_of.clone(), DropKeys::new(keys_of), Vec::new(), Vec::new()));
                    groups.len() - 1
                });
                // An open goes before the drop's other operations of the batch: orders and
                // triggers travel on different topics, and an order consumed a moment before
                // the open that made it possible should not be turned away.
                let (_, _, ops, indices) = &mut groups[g];
                let at = if matches!(op, Op::Open { .. }) {
                    ops.iter().position(|o| !matches!(o, Op::Open { .. })).unwrap_or(ops.len())
                } else {
                    ops.len()
                };
                ops.insert(at, op.clone());
                indices.insert(at, (i, c));
            }
        }

        let publish_order = Arc::clone(&self.shared.publish_order);
        let _in_order = publish_order.lock().await;
        let applied = if groups.is_empty() {
            Vec::new()
        } else {
            let calls: Vec<(&DropKeys, &[Op])> =
                groups.iter().map(|(_, k, ops, _)| (k, ops.as_slice())).collect();
            let mut backoff = Backoff::new();
            loop {
                let applied = match apply_batch(&self.shared.redis, now_ms(), &calls).await {
                    Ok(applied) => {
                        self.shared.await_replicas(&self.shutdown).await.map(|held| (applied, held))
                    }
                    Err(e) => Err(e),
                };
                match applied {
                    Ok((_, false)) => return false,
                    Ok((applied, true)) => {
                        self.shared.health.set("redis", true, "ok");
                        break applied;
                    }
                    Err(e) => {
                        self.shared.metrics.redis_errors.inc();
                        self.shared.health.set("redis", false, e.to_string());
                        warn!(error = %e, "reservation step failed; retrying");
                        if !backoff.wait(&self.shutdown).await {
                            return false;
                        }
                    }
                }
            }
        };

        let mut per_call: Vec<Vec<Option<OpResult>>> = items
            .iter()
            .map(|item| match &item.work {
                Work::Step { calls, .. } => vec![None; calls.len()],
                _ => Vec::new(),
            })
            .collect();
        for ((drop_id, _, _, indices), applied) in groups.iter().zip(applied) {
            let items_here: Vec<usize> = indices.iter().map(|(i, _)| *i).collect();
            self.note_version(drop_id, applied.version, &items, &items_here);
            for ((i, c), result) in indices.iter().zip(applied.results) {
                per_call[*i][*c] = Some(result);
            }
        }
        let results: Vec<Option<OpResult>> = per_call
            .into_iter()
            .zip(&items)
            .map(|(results, item)| {
                combine(results, matches!(&item.work, Work::Step { reply: Reply::Trigger { .. }, .. }))
            })
            .collect();

        let mut deliveries: Vec<(DeliveryFuture, String, String, Vec<u8>)> = Vec::new();
        let mut registered: Vec<(String, i32)> = Vec::new();
        for (item, result) in items.iter().zip(results) {
            let (topic, key, payload) = match (&item.work, result) {
                (Work::Ignore, _) => {
                    self.shared.metrics.ignored.inc();
                    continue;
                }
                (Work::Dead(reason), _) => self.dead_letter(&item.msg, reason),
                (
                    Work::Step { drop_id, reply: Reply::Outcome { order_id, reply_to, sent_at_ms }, .. },
                    Some(r),
                ) => {
                    let kept = if reply_to.buyer.is_empty() { &r.reply_to } else { reply_to };
                    let outcome = ReservationOutcome {
                        order_id: order_id.clone(),
                        drop_id: drop_id.clone(),
                        sku: r.sku,
                        quantity: r.quantity,
                        status: r.status,
                        remaining: r.remaining,
                        hold_expires_at_ms: r.hold_expires_at_ms,
                        decided_at_ms: r.decided_at_ms,
                        reason: r.reason,
                        sent_at_ms: *sent_at_ms,
                        waitlist_position: r.waitlist_position,
                        ..self.shared.addressed(drop_id, order_id, kept)
                    };
                    self.count(outcome.status);
                    (
                        self.shared.settings.topics.name(TopicKind::Reservations).to_owned(),
                        drop_id.clone(),
                        outcome.encode_to_vec(),
                    )
                }
                (Work::Step { drop_id, reply: Reply::Trigger { what }, calls }, Some(r)) => {
                    if r.status == ReservationStatus::Invalid as i32 {
                        warn!(drop_id = %drop_id, trigger = what, reason = %r.reason, "trigger refused");
                        self.dead_letter(&item.msg, &r.reason)
                    } else {
                        info!(drop_id = %drop_id, trigger = what, outcome = %r.reason, "drop trigger");
                        for (keys_of, op) in calls {
                            if matches!(op, Op::Open { .. }) {
                                registered.push((keys_of.clone(), item.msg.partition()));
                            }
                        }
                        continue;
                    }
                }
                (Work::Step { .. }, None) => {
                    error!("no step result for an operation; the batch is not committed");
                    return false;
                }
            };
            match self.hand_off(&topic, &key, &payload).await {
                Some(delivery) => {
                    self.record_latency(item.received.elapsed());
                    deliveries.push((delivery, topic, key, payload));
                }
                None => return false,
            }
        }

        if !registered.is_empty() {
            let mut pipe = redis::pipe();
            for (drop_id, partition) in &registered {
                pipe.hset(drops_key(&self.shared.settings), drop_id, partition).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut self.shared.redis).await {
                warn!(error = %e, "could not register drops for sweeping; the next open trigger retries");
            }
        }

        let handed = Handed { deliveries, offsets: next_offsets(&items) };
        // Waits only when IN_FLIGHT_BATCHES are already unacknowledged (back-pressure).
        self.committer.send(handed).await.is_ok()
    }

    /// Loads catalogs of drops this batch orders from and this matcher has not cached.
    async fn load_catalogs(&mut self, batch: &[(OwnedMessage, Instant)]) {
        if self.catalogs.len() > 100_000 {
            self.catalogs.clear();
        }
        // Orders parse against the catalog; triggers and hold actions need a split drop's shards.
        let missing: HashSet<String> = batch
            .iter()
            .filter_map(|(m, _)| m.key().and_then(|k| std::str::from_utf8(k).ok()))
            .filter(|drop_id| !self.catalogs.contains_key(*drop_id))
            .map(str::to_owned)
            .collect();
        if missing.is_empty() {
            return;
        }
        let missing: Vec<String> = missing.into_iter().collect();
        let rows: Vec<(Option<i64>, Option<Vec<u8>>)> = match read_metas(&self.shared.redis, &missing).await {
            Ok(rows) => rows,
            Err(e) => {
                // Orders parsed without a catalog are answered by the step from the drop's state.
                warn!(error = %e, "could not load catalogs");
                return;
            }
        };
        for (drop_id, (version, catalog)) in missing.into_iter().zip(rows) {
            let open = catalog.and_then(|bytes| OpenDrop::decode(bytes.as_slice()).ok());
            let cached = self.cache_entry(version.unwrap_or(0), open.as_ref());
            self.catalogs.insert(drop_id, cached);
        }
    }

    fn cache_entry(&self, version: i64, open: Option<&OpenDrop>) -> CachedDrop {
        let index = open.and_then(|o| CatalogIndex::new(&o.items).ok()).map(Arc::new);
        let max_quantity = open
            .map(|o| o.max_quantity_per_order)
            .filter(|n| *n > 0)
            .unwrap_or(self.shared.config.max_quantity)
            .min(Quantity::MAX);
        let shards = open.map_or(1, |o| o.shards.clamp(1, split::MAX_SHARDS));
        CachedDrop { version, index, max_quantity, shards }
    }

    /// After a step call: a catalog version other than the one parsed against means the cache
    /// is stale (the drop was opened or reopened elsewhere): forget it, reload next time.
    fn note_version(&mut self, drop_id: &str, version: i64, items: &[Item], indices: &[usize]) {
        let opened_here = indices.iter().any(|i| match &items[*i].work {
            Work::Step { calls, .. } => calls.iter().any(|(_, op)| matches!(op, Op::Open { .. })),
            _ => false,
        });
        match self.catalogs.get_mut(drop_id) {
            Some(cached) if cached.version == version => {}
            Some(cached) if opened_here && cached.version == -1 => cached.version = version,
            _ => {
                self.catalogs.remove(drop_id);
            }
        }
    }

    fn classify(&mut self, msg: &OwnedMessage) -> Work {
        let Some(kind) = self.shared.settings.topics.kind_of(msg.topic()) else {
            return Work::Dead(format!("the matcher does not consume topic {}", msg.topic()));
        };
        let partition = msg.partition();
        let offset = msg.offset();
        match kind {
            TopicKind::ChatOrders => match kafka::decode::<ChatOrder, _>(msg) {
                Ok(order) => self.order_work(order, Source::new('o', partition, offset)),
                Err(e) => Work::Dead(e.reason),
            },
            TopicKind::DropTriggers => match kafka::decode::<DropTrigger, _>(msg) {
                Ok(trigger) => self.trigger_work(trigger, Source::new('t', partition, offset)),
                Err(e) => Work::Dead(e.reason),
            },
            TopicKind::HoldActions => match kafka::decode::<HoldAction, _>(msg) {
                Ok(action) => self.hold_work(action, Source::new('h', partition, offset)),
                Err(e) => Work::Dead(e.reason),
            },
            other => Work::Dead(format!("the matcher does not consume {}", other.default_name())),
        }
    }

    fn order_work(&mut self, order: ChatOrder, source: Source) -> Work {
        if let Err(reason) = check_id("order_id", &order.order_id).and(check_drop_id(&order.drop_id)) {
            return Work::Dead(reason);
        }
        let buyer = match BuyerId::parse(&order.buyer_id) {
            Ok(buyer) => buyer,
            Err(e) => return Work::Dead(format!("invalid buyer_id: {e}")),
        };
        let cached = self.catalogs.get(&order.drop_id);
        let max_quantity = cached.map_or(self.shared.config.max_quantity, |c| c.max_quantity);
        let (item, verdict) = match (&order.sku, cached.and_then(|c| c.index.as_deref())) {
            (Some(sku), _) => {
                let quantity = order.quantity.unwrap_or(1);
                match (Sku::parse(sku), Quantity::at_most(quantity, max_quantity)) {
                    (Ok(sku), Ok(quantity)) => (Some((sku, quantity)), None),
                    (Err(e), _) => (None, Some((ReservationStatus::UnknownSku, e.to_string()))),
                    (_, Err(e)) => (None, Some((ReservationStatus::Invalid, e.to_string()))),
                }
            }
            (None, Some(index)) => match index.parse(&order.text, max_quantity) {
                ChatLine::NotAnOrder => return Work::Ignore,
                ChatLine::Order { sku, quantity } => (Some((sku, quantity)), None),
                ChatLine::UnknownSku { reason } => (None, Some((ReservationStatus::UnknownSku, reason))),
                ChatLine::Invalid { reason } => (None, Some((ReservationStatus::Invalid, reason))),
            },
            // No catalog here: the drop is not open (the step says so), or the line is just chat.
            (None, None) if chat::is_command(&order.text) => (None, None),
            (None, None) => return Work::Ignore,
        };
        // A split drop decides each buyer in their own shard.
        let shards = cached.map_or(1, |c| c.shards);
        let keys_of = if shards > 1 {
            split::shard_id(&order.drop_id, split::shard_of(buyer.as_str(), shards))
        } else {
            order.drop_id.clone()
        };
        let reply_to = ReplyTo {
            buyer: buyer.as_str().to_owned(),
            channel: order.channel,
            name: order.buyer_name,
            origin: order.origin,
            message_id: order.platform_message_id,
        };
        Work::Step {
            drop_id: order.drop_id.clone(),
            calls: vec![(
                keys_of,
                Op::Order {
                    source,
                    order_id: order.order_id.clone(),
                    buyer: buyer.clone(),
                    item,
                    verdict,
                    reply_to: reply_to.clone(),
                },
            )],
            reply: Reply::Outcome { order_id: order.order_id, reply_to, sent_at_ms: order.sent_at_ms },
        }
    }

    fn trigger_work(&mut self, trigger: DropTrigger, source: Source) -> Work {
        if let Err(reason) = check_drop_id(&trigger.drop_id) {
            return Work::Dead(reason);
        }
        // Without a trigger id, the Kafka position identifies the trigger.
        let trigger_id = if trigger.trigger_id.is_empty() {
            format!("{}@{}", source.stream, source.offset)
        } else if let Err(reason) = check_id("trigger_id", &trigger.trigger_id) {
            return Work::Dead(reason);
        } else {
            trigger.trigger_id.clone()
        };
        let drop_id = &trigger.drop_id;
        let (calls, what) = match trigger.action {
            None => return Work::Dead("drop trigger without an action (open, close or restock)".into()),
            Some(drop_trigger::Action::Open(open)) => {
                if let Err(e) = CatalogIndex::new(&open.items) {
                    return Work::Dead(format!("invalid catalog: {e}"));
                }
                let mut stock = Vec::with_capacity(open.items.len());
                for item in &open.items {
                    match Sku::parse(&item.sku) {
                        Ok(sku) => stock.push((sku, item.stock)),
                        Err(e) => return Work::Dead(format!("invalid catalog: {e}")),
                    }
                }
                let hold_ms = if open.hold_seconds > 0 {
                    u64::from(open.hold_seconds) * 1000
                } else {
                    u64::try_from(self.shared.config.default_hold.as_millis()).unwrap_or(u64::MAX)
                };
                if open.shards > split::MAX_SHARDS {
                    return Work::Dead(format!("invalid open: shards must be at most {}", split::MAX_SHARDS));
                }
                // Orders later in this batch parse against the new catalog.
                let cached = CachedDrop { version: -1, ..self.cache_entry(-1, Some(&open)) };
                let shards = cached.shards;
                self.catalogs.insert(drop_id.clone(), cached);
                let open_op = |trigger_id: String, stock, cap, catalog| Op::Open {
                    source: source.clone(),
                    trigger_id,
                    stock,
                    limit_per_buyer: open.limit_per_buyer,
                    hold_ms,
                    waitlist: open.waitlist,
                    waitlist_cap: cap,
                    catalog,
                };
                let catalog = open.encode_to_vec();
                let calls = if shards == 1 {
                    vec![(drop_id.clone(), open_op(trigger_id, stock, open.waitlist_cap, catalog))]
                } else {
                    // A split drop: the drop itself keeps the catalog (no stock), each shard its share.
                    let none = stock.iter().map(|(sku, _)| (sku.clone(), 0)).collect();
                    let cap = open.waitlist_cap.div_ceil(shards);
                    let mut calls = vec![(drop_id.clone(), open_op(trigger_id.clone(), none, 0, catalog))];
                    calls.extend(to_shards(drop_id, shards, |k| {
                        let part =
                            stock.iter().map(|(sku, n)| (sku.clone(), split::share(*n, shards, k))).collect();
                        Some(open_op(format!("{trigger_id}#{k}"), part, cap, Vec::new()))
                    }));
                    calls
                };
                (calls, "open")
            }
            Some(drop_trigger::Action::Close(_)) => {
                let close = |trigger_id: String| Op::Close { source: source.clone(), trigger_id };
                let mut calls = vec![(drop_id.clone(), close(trigger_id.clone()))];
                calls.extend(to_shards(drop_id, self.shards_of(drop_id), |k| {
                    Some(close(format!("{trigger_id}#{k}")))
                }));
                (calls, "close")
            }
            Some(drop_trigger::Action::Restock(restock)) => {
                let sku = match Sku::parse(&restock.sku) {
                    Ok(sku) => sku,
                    Err(e) => return Work::Dead(format!("invalid restock: {e}")),
                };
                if restock.quantity == 0 {
                    return Work::Dead("invalid restock: quantity must be at least 1".into());
                }
                let restock_op = |trigger_id: String, quantity| Op::Restock {
                    source: source.clone(),
                    trigger_id,
                    sku: sku.clone(),
                    quantity,
                };
                let shards = self.shards_of(drop_id);
                let calls = if shards == 1 {
                    vec![(drop_id.clone(), restock_op(trigger_id, restock.quantity))]
                } else {
                    // A split drop: the units go to the shards, shared out as at the open.
                    to_shards(drop_id, shards, |k| {
                        let quantity = split::share(restock.quantity, shards, k);
                        (quantity > 0).then(|| restock_op(format!("{trigger_id}#{k}"), quantity))
                    })
                };
                (calls, "restock")
            }
        };
        Work::Step { drop_id: trigger.drop_id, calls, reply: Reply::Trigger { what } }
    }

    /// Shards of a drop as cached: more than 1 for a split drop; 1 when not split or not known here.
    fn shards_of(&self, drop_id: &str) -> u32 {
        self.catalogs.get(drop_id).map_or(1, |c| c.shards)
    }

    /// A payment or cancel: on a split drop the hold is in the buyer's shard, which the action does
    /// not name; it goes to every shard and the one holding the order answers.
    fn hold_work(&self, action: HoldAction, source: Source) -> Work {
        if let Err(reason) = check_id("order_id", &action.order_id).and(check_drop_id(&action.drop_id)) {
            return Work::Dead(reason);
        }
        let op = match HoldActionKind::try_from(action.action) {
            Ok(HoldActionKind::Confirm) => Op::Confirm { source, order_id: action.order_id.clone() },
            Ok(HoldActionKind::Cancel) => Op::Cancel { source, order_id: action.order_id.clone() },
            _ => return Work::Dead(format!("hold action {} is neither confirm nor cancel", action.action)),
        };
        let shards = self.shards_of(&action.drop_id);
        let calls = if shards > 1 {
            to_shards(&action.drop_id, shards, |_| Some(op.clone()))
        } else {
            vec![(action.drop_id.clone(), op)]
        };
        Work::Step {
            drop_id: action.drop_id,
            calls,
            reply: Reply::Outcome {
                order_id: action.order_id,
                reply_to: ReplyTo::default(),
                sent_at_ms: action.sent_at_ms,
            },
        }
    }

    fn dead_letter(&self, msg: &OwnedMessage, reason: &str) -> (String, String, Vec<u8>) {
        self.shared.metrics.dead_letters.inc();
        warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason, "dead letter");
        let letter = kafka::dead_letter(msg, reason, SERVICE);
        let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        (self.shared.settings.topics.name(TopicKind::DeadLetters).to_owned(), key, letter.encode_to_vec())
    }

    fn count(&self, status: i32) {
        self.shared.metrics.orders.with_label_values(&[status_label(status)]).inc();
    }

    fn record_latency(&self, elapsed: Duration) {
        self.shared.metrics.decision_latency.observe(elapsed.as_secs_f64());
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut hist = self.shared.latency_us.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = hist.record(micros.min(60_000_000));
    }

    /// Enqueues a record in the producer (waiting while its queue is full).
    async fn hand_off(&self, topic: &str, key: &str, payload: &[u8]) -> Option<DeliveryFuture> {
        hand_off(&self.shared.producer, &self.shared.metrics, &self.shutdown, topic, key, payload).await
    }
}

/// Applies a batch's step calls: one pipeline on a single Redis; on a Redis Cluster, one pipeline
/// per drop (a pipeline must stay in one slot), all in flight at once.
async fn apply_batch(
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

/// `version` and `catalog` of each drop's meta: one pipeline, or one request per drop on a cluster.
async fn read_metas(
    redis: &Conn,
    drops: &[String],
) -> Result<Vec<(Option<i64>, Option<Vec<u8>>)>, redis::RedisError> {
    let meta = |drop_id: &str| {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(DropKeys::new(drop_id).meta()).arg("version").arg("catalog");
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

/// The step's source stream of a consumed partition (`o3`), as `step::Source` names it.
fn stream_of(settings: &Settings, topic: &str, partition: i32) -> Option<String> {
    let letter = match settings.topics.kind_of(topic)? {
        TopicKind::ChatOrders => 'o',
        TopicKind::DropTriggers => 't',
        TopicKind::HoldActions => 'h',
        _ => return None,
    };
    Some(step::Source::new(letter, partition, 0).stream)
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

/// Takes decided batches in order: waits for the broker to acknowledge each batch's outcomes,
/// then commits its offsets. Stops at shutdown with the batches it could not confirm uncommitted
/// (they are replayed and recognised after a restart).
async fn commit_loop(
    shared: Shared,
    mut handed: tokio::sync::mpsc::Receiver<Handed>,
    shutdown: CancellationToken,
) {
    while let Some(batch) = handed.recv().await {
        if !await_deliveries(&shared.producer, &shared.metrics, &shared.health, &shutdown, batch.deliveries)
            .await
        {
            return;
        }
        {
            let mut acked = shared.acked.lock().unwrap_or_else(PoisonError::into_inner);
            for ((topic, partition), next) in &batch.offsets {
                if let Some(stream) = stream_of(&shared.settings, topic, *partition) {
                    let at = acked.entry(stream).or_insert(-1);
                    *at = (*at).max(next - 1);
                }
            }
        }
        commit(&shared, batch.offsets);
    }
}

/// Stores and commits (asynchronously) the offsets of an acknowledged batch.
fn commit(shared: &Shared, offsets: BTreeMap<(String, i32), i64>) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
            warn!(error = %e, "cannot build commit");
            return;
        }
    }
    // Stored offsets are what the final synchronous commit at shutdown commits.
    if let Err(e) = shared.consumer.store_offsets(&tpl) {
        // A partition moved to another member meanwhile: it replays, and recognises, from there.
        warn!(error = %e, "cannot store offsets");
        return;
    }
    if let Err(e) = shared.consumer.commit_consumer_state(CommitMode::Async) {
        // Not fatal: a later commit covers these offsets; a replay would be recognised.
        warn!(error = %e, "commit failed");
    }
}

/// `RESERVED`, `SOLD_OUT`, ...: the status label of `dropline_orders_total`.
fn status_label(status: i32) -> &'static str {
    ReservationStatus::label_of(status)
}

/// One operation per shard of a split drop (`op(k)`; `None` leaves shard `k` out). Empty when the
/// drop is not split (`shards` = 1).
fn to_shards(drop_id: &str, shards: u32, op: impl Fn(u32) -> Option<Op>) -> Vec<(String, Op)> {
    if shards < 2 {
        return Vec::new();
    }
    (0..shards).filter_map(|k| Some((split::shard_id(drop_id, k), op(k)?))).collect()
}

/// A drop id: an id that is not a shard's (`#` separates a split drop from its shard number).
fn check_drop_id(value: &str) -> Result<(), String> {
    check_id("drop_id", value)?;
    if value.contains('#') {
        return Err("drop_id contains '#' (reserved for the shards of a split drop)".into());
    }
    Ok(())
}

/// One answer for an operation sent to several shards. A payment or cancel: the first that is not
/// `INVALID` (the shard holding the order), else the first. A trigger (`all_must_apply`): the first
/// `INVALID` if any shard refused it (it goes to dead letters with that reason), else the first.
fn combine(results: Vec<Option<OpResult>>, all_must_apply: bool) -> Option<OpResult> {
    if results.iter().any(Option::is_none) {
        return None;
    }
    let results: Vec<OpResult> = results.into_iter().flatten().collect();
    let invalid = ReservationStatus::Invalid as i32;
    let pick = if all_must_apply {
        results.iter().find(|r| r.status == invalid)
    } else {
        results.iter().find(|r| r.status != invalid)
    };
    pick.or(results.first()).cloned()
}

/// Ids become parts of Redis keys and fields: non-empty, bounded, no control characters.
fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err(format!("{field} is empty"))
    } else if value.len() > 200 {
        Err(format!("{field} is longer than 200 bytes"))
    } else if value.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        Err(format!("{field} contains a control character or a brace"))
    } else {
        Ok(())
    }
}

async fn hand_off(
    producer: &FutureProducer,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Option<DeliveryFuture> {
    loop {
        match kafka::enqueue(producer, topic, key, payload, shutdown).await {
            Ok(delivery) => return Some(delivery),
            Err(KafkaError::Canceled) => return None,
            Err(e) => {
                metrics.publish_errors.inc();
                warn!(error = %e, topic, "cannot enqueue; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        }
    }
}

async fn await_deliveries(
    producer: &FutureProducer,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
    deliveries: Vec<(DeliveryFuture, String, String, Vec<u8>)>,
) -> bool {
    for (delivery, topic, key, payload) in deliveries {
        let mut pending = delivery;
        let mut backoff = Backoff::new();
        loop {
            match pending.await {
                Ok(Ok(_)) => break,
                Ok(Err((e, _))) => {
                    metrics.publish_errors.inc();
                    health.set("kafka", false, e.to_string());
                    warn!(error = %e, topic = %topic, "publish failed; re-sending");
                }
                Err(_) => {
                    metrics.publish_errors.inc();
                    warn!(topic = %topic, "delivery report lost; re-sending");
                }
            }
            if !backoff.wait(shutdown).await {
                return false;
            }
            match hand_off(producer, metrics, shutdown, &topic, &key, &payload).await {
                Some(again) => pending = again,
                None => return false,
            }
        }
    }
    health.set("kafka", true, "ok");
    true
}

struct Sweeper {
    shared: Shared,
    stop: CancellationToken,
    /// Per source stream this matcher is assigned, the group's committed offset (the next to
    /// read) when the assignment was first seen: what earlier owners published for sure.
    committed: HashMap<String, i64>,
    /// Transfers this sweeper started (part of their ids).
    transfers: u64,
}

async fn sweep_loop(mut s: Sweeper) {
    let mut tick = tokio::time::interval(s.shared.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_log = Instant::now();
    let mut last_lag = Instant::now();
    loop {
        tokio::select! {
            () = s.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = s.sweep_owned().await {
            s.shared.metrics.redis_errors.inc();
            s.shared.health.set("redis", false, e.to_string());
            warn!(error = %e, "sweep failed");
        }
        if last_lag.elapsed() >= Duration::from_secs(2) {
            last_lag = Instant::now();
            s.refresh_lag();
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            s.log_latency();
        }
    }
}

impl Sweeper {
    /// Partitions of the triggers topic this matcher owns now.
    fn owned_partitions(&self) -> HashSet<i32> {
        let topic = self.shared.settings.topics.name(TopicKind::DropTriggers);
        self.shared
            .consumer
            .assignment()
            .map(|tpl| tpl.elements_for_topic(topic).iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }

    /// Refreshes `committed` when the assignment changed (a blocking broker call, off the runtime).
    /// False while the committed offsets of the assignment are unknown: no sweeping meanwhile.
    async fn note_assignment(&mut self) -> bool {
        let consumer = Arc::clone(&self.shared.consumer);
        let Ok(assignment) = consumer.assignment() else { return false };
        let streams: HashSet<String> = assignment
            .elements()
            .iter()
            .filter_map(|e| stream_of(&self.shared.settings, e.topic(), e.partition()))
            .collect();
        if streams.len() == self.committed.len() && streams.iter().all(|s| self.committed.contains_key(s)) {
            return true;
        }
        let settings = self.shared.settings.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(assignment, Duration::from_secs(5)).map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| {
                        let next = match e.offset() {
                            Offset::Offset(at) => at,
                            _ => 0,
                        };
                        Some((stream_of(&settings, e.topic(), e.partition())?, next))
                    })
                    .collect::<HashMap<String, i64>>()
            })
        })
        .await;
        match fetched {
            Ok(Ok(committed)) if committed.len() == streams.len() => {
                info!(streams = committed.len(), "sweeper: assignment changed");
                self.committed = committed;
                true
            }
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                warn!(error = %e, "sweeper: committed offsets unavailable; retrying");
                false
            }
            Err(e) => {
                warn!(error = %e, "sweeper: committed offsets task failed");
                false
            }
        }
    }

    /// Per stream of this matcher's assignment, the highest offset whose outcomes are out for
    /// sure: committed by an earlier owner, or published and acknowledged by this matcher.
    fn settled(&self) -> Vec<(String, i64)> {
        let acked = self.shared.acked.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed
            .iter()
            .map(|(stream, next)| (stream.clone(), (next - 1).max(acked.get(stream).copied().unwrap_or(-1))))
            .collect()
    }

    async fn sweep_owned(&mut self) -> Result<(), redis::RedisError> {
        let owned = self.owned_partitions();
        if owned.is_empty() {
            return Ok(());
        }
        if !self.note_assignment().await {
            return Ok(());
        }
        let drops: HashMap<String, i32> = redis::cmd("HGETALL")
            .arg(drops_key(&self.shared.settings))
            .query_async(&mut self.shared.redis)
            .await?;
        // A hold whose reservation is not out yet (replayed after a crash, re-sent after a broker
        // failure) does not expire yet: its EXPIRED must not overtake it. (Read once per tick:
        // acknowledgements only move forward, so an older reading only holds back more.)
        let settled = self.settled();
        let mut holds = 0;
        let mut waiting = 0;
        let mut split_drops: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (drop_id, partition) in drops {
            if !owned.contains(&partition) {
                continue;
            }
            if split::parent_of(&drop_id) != drop_id {
                split_drops.entry(split::parent_of(&drop_id).to_owned()).or_default().push(drop_id.clone());
            }
            let keys = DropKeys::new(&drop_id);
            let publish_order = Arc::clone(&self.shared.publish_order);
            let in_order = publish_order.lock().await;
            let swept = step::sweep(&mut self.shared.redis, &keys, now_ms(), 1000, 1000, &settled).await?;
            holds += swept.active_holds;
            let counts: Vec<i64> =
                redis::cmd("HVALS").arg(keys.waiting()).query_async(&mut self.shared.redis).await?;
            waiting += counts.iter().sum::<i64>();
            if !swept.events.is_empty() {
                if !self.shared.await_replicas(&self.stop).await? {
                    return Ok(());
                }
                let n = swept.events.len();
                let first = swept.events.first().map(step::OutboxEvent::raw);
                // A shard's outcomes name (and are keyed by) the drop it belongs to.
                let Some(deliveries) = self.hand_off_events(split::parent_of(&drop_id), swept.events).await
                else {
                    return Ok(());
                };
                drop(in_order);
                if !await_deliveries(
                    &self.shared.producer,
                    &self.shared.metrics,
                    &self.shared.health,
                    &self.stop,
                    deliveries,
                )
                .await
                {
                    return Ok(());
                }
                step::ack(&mut self.shared.redis, &keys, n, first.as_deref()).await?;
            } else if swept.state != "open" && swept.active_holds == 0 {
                debug!(drop_id = %drop_id, "drop done: no longer swept");
                let _: () = redis::cmd("HDEL")
                    .arg(drops_key(&self.shared.settings))
                    .arg(&drop_id)
                    .query_async(&mut self.shared.redis)
                    .await?;
            }
        }
        for (parent, mut shards) in split_drops {
            shards.sort_by_key(|id| id.rsplit_once('#').and_then(|(_, k)| k.parse::<u32>().ok()));
            self.rebalance(&parent, &shards).await?;
        }
        self.shared.metrics.holds_active.set(holds);
        self.shared.metrics.waitlist_length.set(waiting);
        self.shared.health.set("redis", true, "ok");
        Ok(())
    }

    /// The rebalancing step of a split drop: first finishes transfers a crash interrupted (give is
    /// idempotent), then moves units toward shards whose buyers wait or that run low
    /// (`split::plan`): take from the donor, give to the recipient, settle.
    async fn rebalance(&mut self, parent: &str, shards: &[String]) -> Result<(), redis::RedisError> {
        let mut redis = self.shared.redis.clone();
        let mut stock = Vec::with_capacity(shards.len());
        let mut waiting = Vec::with_capacity(shards.len());
        let mut interrupted = false;
        for shard in shards {
            // One round trip per shard (its keys share one slot): journal, stock, waiting.
            let keys = DropKeys::new(shard);
            #[allow(clippy::type_complexity)]
            let (meta, s, w): (
                Vec<(String, String)>,
                BTreeMap<String, i64>,
                BTreeMap<String, i64>,
            ) = redis::pipe()
                .hgetall(keys.meta())
                .hgetall(keys.stock())
                .hgetall(keys.waiting())
                .query_async(&mut redis)
                .await?;
            for transfer in step::pending_in(meta) {
                step::give(&mut redis, &DropKeys::new(&transfer.to), &transfer, now_ms()).await?;
                step::settle(&mut redis, &keys, &transfer.id).await?;
                info!(drop_id = %parent, from = %shard, to = %transfer.to, units = transfer.units, "interrupted transfer finished");
                interrupted = true;
            }
            stock.push(s);
            waiting.push(w);
        }
        if interrupted {
            // The numbers just read predate those transfers: plan on fresh ones next tick.
            return Ok(());
        }
        for planned in split::plan(&stock, &waiting) {
            self.transfers += 1;
            let id = format!("{}-{}-{}", now_ms(), std::process::id(), self.transfers);
            let (from, to) = (&shards[planned.from], &shards[planned.to]);
            let donor = DropKeys::new(from);
            let units = step::take(&mut redis, &donor, &id, &planned.sku, planned.units, to).await?;
            if units == 0 {
                continue;
            }
            let transfer = step::Pending { id, to: to.clone(), sku: planned.sku.clone(), units };
            step::give(&mut redis, &DropKeys::new(to), &transfer, now_ms()).await?;
            step::settle(&mut redis, &donor, &transfer.id).await?;
            debug!(drop_id = %parent, sku = %planned.sku, from = %from, to = %to, units, "stock rebalanced");
        }
        Ok(())
    }

    /// Hands the outbox events to the producer, in order; `None` at shutdown.
    #[allow(clippy::type_complexity)]
    async fn hand_off_events(
        &self,
        drop_id: &str,
        events: Vec<step::OutboxEvent>,
    ) -> Option<Vec<(DeliveryFuture, String, String, Vec<u8>)>> {
        let topic = self.shared.settings.topics.name(TopicKind::Reservations);
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let outcome = v1::ReservationOutcome {
                sku: event.sku,
                quantity: event.quantity,
                status: event.status,
                remaining: event.remaining,
                hold_expires_at_ms: event.hold_expires_at_ms,
                decided_at_ms: event.decided_at_ms,
                reason: event.reason,
                buyer_id: event.buyer_id,
                ..self.shared.addressed(drop_id, &event.order_id, &event.reply_to)
            };
            self.shared.metrics.orders.with_label_values(&[status_label(outcome.status)]).inc();
            let payload = outcome.encode_to_vec();
            match hand_off(&self.shared.producer, &self.shared.metrics, &self.stop, topic, drop_id, &payload)
                .await
            {
                Some(d) => deliveries.push((d, topic.to_owned(), drop_id.to_owned(), payload)),
                None => return None,
            }
        }
        Some(deliveries)
    }

    /// Logs exact latency percentiles (hdrhistogram) of the last period.
    fn log_latency(&self) {
        let mut hist = self.shared.latency_us.lock().unwrap_or_else(PoisonError::into_inner);
        if !hist.is_empty() {
            info!(
                decisions = hist.len(),
                p50_us = hist.value_at_quantile(0.5),
                p99_us = hist.value_at_quantile(0.99),
                max_us = hist.max(),
                "decision latency (received → handed to producer), last 10 s"
            );
            hist.reset();
        }
    }

    /// Refreshes the consumer-lag gauges (high watermark − position, per assigned partition).
    fn refresh_lag(&self) {
        let consumer = Arc::clone(&self.shared.consumer);
        let lag = self.shared.metrics.consumer_lag.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: ReservationStatus, reason: &str) -> Option<OpResult> {
        Some(OpResult { status: status as i32, reason: reason.into(), ..OpResult::default() })
    }

    #[test]
    fn one_answer_from_many_shards() {
        let none = answer(ReservationStatus::Invalid, "order o1 has no hold in this drop");
        let held = answer(ReservationStatus::Confirmed, "paid");
        // A payment: the shard holding the order answers.
        let got = combine(vec![none.clone(), held.clone(), none.clone()], false);
        assert_eq!(got.map(|r| r.status), Some(ReservationStatus::Confirmed as i32));
        // Nobody holds it: the refusal.
        assert_eq!(
            combine(vec![none.clone(), none.clone()], false).map(|r| r.status),
            none.clone().map(|r| r.status)
        );
        // A trigger one shard refused is refused.
        let applied = Some(OpResult::default());
        let got = combine(vec![applied.clone(), none.clone(), applied], true);
        assert_eq!(got.map(|r| r.status), Some(ReservationStatus::Invalid as i32));
        // Not all answers in: no answer.
        assert!(combine(vec![held, None], false).is_none());
        assert!(combine(Vec::new(), false).is_none());
    }
}
