//! Shared by the matcher's integration tests: per-test topics and consumer groups on the real
//! broker, a matcher run in-process or as a child process, and an outcome collector.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use dropline_core::{kafka, Settings, TopicKind, Topics};
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
        settings.topics = Topics::with_prefix(&prefix);
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
        let token = CancellationToken::new();
        let config = dropline_matcher::config::MatcherConfig {
            group: group.to_owned(),
            sweep_interval: Duration::from_millis(50),
            admin: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        };
        let settings = self.settings.clone();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = dropline_matcher::service::run(settings, config, stop).await {
                panic!("matcher failed: {e}");
            }
        });
        (token, task)
    }

    /// Environment for a matcher child process in this world.
    pub fn child_env(&self, group: &str) -> Vec<(String, String)> {
        vec![
            ("DROPLINE_TOPIC_PREFIX".into(), self.prefix.clone()),
            ("DROPLINE_MATCHER_GROUP".into(), group.into()),
            ("DROPLINE_MATCHER_SWEEP".into(), "50ms".into()),
            ("DROPLINE_ADMIN".into(), "127.0.0.1:0".into()),
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

    /// A consumer of `kind` from the beginning, in a fresh group.
    pub fn reader(&self, kind: TopicKind) -> anyhow::Result<StreamConsumer> {
        let consumer = kafka::consumer(&self.settings, "test-reader", &unique("reader"))?;
        consumer.subscribe(&[&self.topic(kind)])?;
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
        .arg(format!("dl:{{drop:{drop_id}}}:{hash}"))
        .arg(field)
        .query_async(&mut conn)
        .await?;
    Ok(value.unwrap_or(0))
}
