//! Shared by the matcher's integration tests: per-test topics and consumer groups on the real
//! broker, a matcher run in-process or as a child process, and an outcome collector.
#![allow(dead_code)]

pub mod redis_cluster;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{
    drop_trigger, CatalogItem, ChatOrder, CloseDrop, DeadLetter, DropTrigger, HoldAction, HoldActionKind,
    OpenDrop, ReservationOutcome, ReservationStatus, Restock,
};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

/// An isolated world: its own topic prefix (so its own topics, registry and groups).
pub struct World {
    pub settings: Settings,
    pub prefix: String,
    pub producer: FutureProducer,
}

pub fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

impl World {
    pub async fn new(name: &str, partitions: i32) -> anyhow::Result<Self> {
        let mut settings = Settings::from_env()?;
        let prefix = format!("{}.", unique(&format!("test-matcher-{name}")));
        settings.set_topic_prefix(&prefix)?;
        settings.shutdown_grace = Duration::from_secs(5);
        kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
        let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
        kafka::ensure_topics(&settings, &names, partitions, 1).await?;
        let producer = kafka::producer(&settings, "test")?;
        Ok(Self { settings, prefix, producer })
    }

    pub fn topic(&self, kind: TopicKind) -> String {
        self.settings.topics.name(kind).to_owned()
    }

    /// Starts a matcher in this process; cancel the token to stop it.
    pub fn spawn_matcher(&self, group: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        self.spawn_matcher_with(self.settings.clone(), group)
    }

    /// [`World::spawn_matcher`] with settings of the test's own (client properties, for instance).
    pub fn spawn_matcher_with(
        &self,
        settings: Settings,
        group: &str,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let token = CancellationToken::new();
        let config = dropline_matcher::config::MatcherConfig {
            group: group.to_owned(),
            sweep_interval: Duration::from_millis(50),
            admin: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        };
        let stop = token.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = dropline_matcher::service::run(settings, config, stop).await {
                panic!("matcher failed: {e}");
            }
        });
        (token, task)
    }

    /// Environment for a matcher child process in this world.
    pub fn child_env(&self, group: &str, admin: std::net::SocketAddr) -> Vec<(String, String)> {
        vec![
            ("DROPLINE_TOPIC_PREFIX".into(), self.prefix.clone()),
            ("DROPLINE_MATCHER_GROUP".into(), group.into()),
            ("DROPLINE_MATCHER_SWEEP".into(), "50ms".into()),
            ("DROPLINE_ADMIN".into(), admin.to_string()),
            ("DROPLINE_KAFKA".into(), self.settings.kafka.clone()),
            ("DROPLINE_REDIS".into(), self.settings.redis.clone()),
        ]
    }

    pub async fn send<M: prost::Message>(&self, kind: TopicKind, key: &str, event: &M) -> anyhow::Result<()> {
        kafka::publish(&self.producer, &self.topic(kind), key, event).await?;
        Ok(())
    }

    pub async fn send_raw(&self, kind: TopicKind, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.producer
            .send(FutureRecord::to(&self.topic(kind)).key(key).payload(payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    pub async fn open(&self, drop_id: &str, open: OpenDrop) -> anyhow::Result<()> {
        let trigger = DropTrigger {
            drop_id: drop_id.into(),
            sent_at_ms: kafka::now_ms(),
            trigger_id: unique("open"),
            action: Some(drop_trigger::Action::Open(open)),
        };
        self.send(TopicKind::DropTriggers, drop_id, &trigger).await
    }

    /// Opens the drop and waits until a matcher has applied it (orders on another topic could
    /// otherwise overtake the trigger).
    pub async fn open_and_wait(&self, drop_id: &str, open: OpenDrop) -> anyhow::Result<()> {
        self.open(drop_id, open).await?;
        let mut conn = dropline_core::redis::connect(&self.settings.redis).await?;
        let meta = self.settings.keyspace.drop_key(drop_id, "meta");
        for _ in 0..300 {
            let state: Option<String> =
                redis::cmd("HGET").arg(&meta).arg("state").query_async(&mut conn).await?;
            if state.as_deref() == Some("open") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("drop {drop_id} was not opened within 15 s")
    }

    pub async fn restock(&self, drop_id: &str, sku: &str, quantity: u32) -> anyhow::Result<()> {
        let trigger = DropTrigger {
            drop_id: drop_id.into(),
            sent_at_ms: kafka::now_ms(),
            trigger_id: unique("restock"),
            action: Some(drop_trigger::Action::Restock(Restock { sku: sku.into(), quantity })),
        };
        self.send(TopicKind::DropTriggers, drop_id, &trigger).await
    }

    pub async fn close(&self, drop_id: &str) -> anyhow::Result<()> {
        let trigger = DropTrigger {
            drop_id: drop_id.into(),
            sent_at_ms: kafka::now_ms(),
            trigger_id: unique("close"),
            action: Some(drop_trigger::Action::Close(CloseDrop { reason: "test".into() })),
        };
        self.send(TopicKind::DropTriggers, drop_id, &trigger).await
    }

    pub async fn order(&self, drop_id: &str, order_id: &str, buyer: &str, text: &str) -> anyhow::Result<()> {
        let order = ChatOrder {
            order_id: order_id.into(),
            drop_id: drop_id.into(),
            buyer_id: buyer.into(),
            channel: "twitch:#test".into(),
            text: text.into(),
            sent_at_ms: kafka::now_ms(),
            ..Default::default()
        };
        self.send(TopicKind::ChatOrders, drop_id, &order).await
    }

    pub async fn hold(&self, drop_id: &str, order_id: &str, confirm: bool) -> anyhow::Result<()> {
        let kind = if confirm { HoldActionKind::Confirm } else { HoldActionKind::Cancel };
        let action = HoldAction {
            order_id: order_id.into(),
            drop_id: drop_id.into(),
            action: kind as i32,
            sent_at_ms: kafka::now_ms(),
        };
        self.send(TopicKind::HoldActions, drop_id, &action).await
    }

    /// A reader of `kind` from the beginning: partitions assigned directly (no group join to
    /// wait for), so it sees outcomes as soon as they are published.
    pub fn reader(&self, kind: TopicKind) -> anyhow::Result<StreamConsumer> {
        let consumer: StreamConsumer = kafka::consumer(&self.settings, "test-reader", &unique("reader"))?;
        let topic = self.topic(kind);
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        for topic_meta in metadata.topics() {
            for partition in topic_meta.partitions() {
                assignment.add_partition_offset(&topic, partition.id(), rdkafka::Offset::Beginning)?;
            }
        }
        anyhow::ensure!(assignment.count() > 0, "topic {topic} has no partitions");
        consumer.assign(&assignment)?;
        Ok(consumer)
    }
}

/// Hoodies in M and L and a cap.
pub fn catalog(stock_m: u32, stock_l: u32, cap_stock: u32) -> Vec<CatalogItem> {
    let hoodie = |size: &str, stock| CatalogItem {
        sku: format!("HOODIE-{size}"),
        name: "Logo hoodie".into(),
        aliases: vec!["hoodie".into(), "hoody".into()],
        stock,
        price_cents: 5500,
        product: "hoodie".into(),
        size: size.into(),
        item_number: 1,
    };
    vec![
        hoodie("M", stock_m),
        hoodie("L", stock_l),
        CatalogItem {
            sku: "CAP".into(),
            name: "Dad cap".into(),
            aliases: vec!["cap".into(), "hat".into()],
            stock: cap_stock,
            price_cents: 2000,
            product: "cap".into(),
            size: String::new(),
            item_number: 2,
        },
    ]
}

/// Reads outcomes until `done` says so or `timeout` passes.
pub async fn collect(
    reader: &StreamConsumer,
    timeout: Duration,
    mut done: impl FnMut(&[ReservationOutcome]) -> bool,
) -> anyhow::Result<Vec<ReservationOutcome>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = reader.stream();
    while !done(&seen) {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .with_context(|| format!("timed out with {} outcomes: {seen:#?}", seen.len()))?
            .context("stream ended")??;
        seen.push(kafka::decode::<ReservationOutcome, _>(&next)?);
    }
    Ok(seen)
}

/// Dead letters read until `n` arrived.
pub async fn dead_letters(reader: &StreamConsumer, n: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut out = Vec::new();
    let mut stream = reader.stream();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("no dead letter within 30 s")?
            .context("stream ended")??;
        out.push(kafka::decode::<DeadLetter, _>(&next)?);
        let _ = next.offset();
    }
    Ok(out)
}

pub fn status(outcome: &ReservationOutcome) -> ReservationStatus {
    ReservationStatus::try_from(outcome.status).unwrap_or(ReservationStatus::Unspecified)
}

/// Outcomes by order id, in arrival order.
pub fn by_order(outcomes: &[ReservationOutcome]) -> HashMap<String, Vec<ReservationStatus>> {
    let mut map: HashMap<String, Vec<ReservationStatus>> = HashMap::new();
    for o in outcomes {
        map.entry(o.order_id.clone()).or_default().push(status(o));
    }
    map
}

/// Reads a hash field of a drop as a number.
pub async fn drop_field(settings: &Settings, drop_id: &str, hash: &str, field: &str) -> anyhow::Result<i64> {
    let mut conn = dropline_core::redis::connect(&settings.redis).await?;
    let value: Option<i64> = redis::cmd("HGET")
        .arg(settings.keyspace.drop_key(drop_id, hash))
        .arg(field)
        .query_async(&mut conn)
        .await?;
    Ok(value.unwrap_or(0))
}

/// A loopback address with a port nobody listens on right now.
pub fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A stream of orders over several drops: mixed lines, repeated buyers, re-sent messages.
/// Returns (drop, order id, buyer, text) in sending order.
pub fn traffic(drops: &[String], n: usize) -> Vec<(String, String, String, String)> {
    const LINES: [&str; 7] =
        ["!buy hoodie m", "!buy hoodie L 2", "!buy cap", "!buy 2", "gg", "!buy hoodie", "!BUY HOODIE-L"];
    let mut out: Vec<(String, String, String, String)> = Vec::with_capacity(n);
    for i in 0..n {
        if i % 10 == 9 {
            // The platform re-sends an earlier message: same order id, same everything.
            let again = out[i / 2].clone();
            out.push(again);
            continue;
        }
        let drop = drops[i % drops.len()].clone();
        out.push((
            drop,
            format!("order-{i}"),
            format!("buyer-{}", i % 53),
            LINES[i % LINES.len()].to_owned(),
        ));
    }
    out
}

/// The promises, checked on everything published: every order got a decision; all decisions of
/// one order are the same decision (a replay republishes it, it never decides again); no SKU sold
/// beyond its stock; no buyer beyond the limit; Redis agrees with itself per SKU.
pub async fn check_promises(
    settings: &Settings,
    sent: &[(String, String, String, String)],
    outcomes: &[ReservationOutcome],
    stock: u32,
    limit: u32,
) -> anyhow::Result<()> {
    use std::collections::{HashMap, HashSet};
    let decisions = [
        ReservationStatus::Reserved,
        ReservationStatus::SoldOut,
        ReservationStatus::LimitExceeded,
        ReservationStatus::DropNotOpen,
        ReservationStatus::UnknownSku,
        ReservationStatus::Invalid,
        ReservationStatus::Waitlisted,
    ];
    let mut first: HashMap<(String, String), &ReservationOutcome> = HashMap::new();
    for o in outcomes.iter().filter(|o| decisions.contains(&status(o))) {
        let key = (o.drop_id.clone(), o.order_id.clone());
        match first.get(&key) {
            None => {
                first.insert(key, o);
            }
            Some(prev) => anyhow::ensure!(
                (prev.status, &prev.sku, prev.quantity, prev.decided_at_ms)
                    == (o.status, &o.sku, o.quantity, o.decided_at_ms),
                "order {:?} decided twice: {prev:?} then {o:?}",
                key
            ),
        }
    }
    let orders: HashSet<(String, String)> = sent
        .iter()
        .filter(|(_, _, _, text)| text.starts_with('!'))
        .map(|(d, o, _, _)| (d.clone(), o.clone()))
        .collect();
    for order in &orders {
        anyhow::ensure!(first.contains_key(order), "order {order:?} got no decision");
    }
    let mut units: HashMap<(String, String), u32> = HashMap::new();
    let mut per_buyer: HashMap<(String, String), u32> = HashMap::new();
    for o in first.values().filter(|o| status(o) == ReservationStatus::Reserved) {
        *units.entry((o.drop_id.clone(), o.sku.clone())).or_default() += o.quantity;
        *per_buyer.entry((o.drop_id.clone(), o.buyer_id.clone())).or_default() += o.quantity;
    }
    for ((drop, sku), n) in &units {
        anyhow::ensure!(*n <= stock, "{drop}/{sku}: {n} units reserved of {stock}");
        let total = drop_field(settings, drop, "total", sku).await?;
        let left = drop_field(settings, drop, "stock", sku).await?;
        let held = drop_field(settings, drop, "held", sku).await?;
        let sold = drop_field(settings, drop, "sold", sku).await?;
        anyhow::ensure!(
            left >= 0 && left + held + sold == total,
            "{drop}/{sku}: {left}+{held}+{sold} != {total}"
        );
        anyhow::ensure!(
            held + sold == i64::from(*n),
            "{drop}/{sku}: Redis holds {held}+{sold}, outcomes say {n}"
        );
    }
    for ((drop, buyer), n) in &per_buyer {
        anyhow::ensure!(*n <= limit, "{drop}/{buyer} got {n} units, limit {limit}");
    }
    Ok(())
}

/// Reads outcomes (after `seen`, already read) until every order in `sent` has one and nothing
/// new came for 2 s. Returns `seen` and what followed.
pub async fn collect_all(
    reader: &StreamConsumer,
    sent: &[(String, String, String, String)],
    seen: Vec<ReservationOutcome>,
    timeout: Duration,
) -> anyhow::Result<Vec<ReservationOutcome>> {
    let wanted: std::collections::HashSet<&str> =
        sent.iter().filter(|(_, _, _, t)| t.starts_with('!')).map(|(_, o, _, _)| o.as_str()).collect();
    let mut have: std::collections::HashSet<String> = seen.iter().map(|o| o.order_id.clone()).collect();
    let mut out = seen;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = reader.stream();
    loop {
        let complete = wanted.iter().all(|o| have.contains(*o));
        let wait = if complete { Duration::from_secs(2) } else { Duration::from_secs(30) };
        let next = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(message)) => message?,
            Ok(None) => anyhow::bail!("stream ended"),
            Err(_) if complete => return Ok(out),
            Err(_) => anyhow::bail!("{} of {} orders decided; stalled", have.len(), wanted.len()),
        };
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out");
        let outcome: ReservationOutcome = kafka::decode(&next)?;
        have.insert(outcome.order_id.clone());
        out.push(outcome);
    }
}

pub fn open_for(stock: u32, limit: u32) -> OpenDrop {
    OpenDrop {
        items: catalog(stock, stock, stock),
        limit_per_buyer: limit,
        hold_seconds: 600,
        waitlist: false,
        ..Default::default()
    }
}
