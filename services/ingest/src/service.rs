//! The ingest service: learns which drop is live on which channel from `drop-triggers`, then turns
//! chat from IRC and the webhook into `ChatOrder`s on `chat-orders` (keyed by drop id).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dropline_core::admin::{self, Health};
use dropline_core::backoff::Backoff;
use dropline_core::kafka::{self, now_ms, Followed};
use dropline_core::{Settings, TopicKind};
use dropline_proto::v1::{ChatOrder, DropTrigger};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client::Link;
use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::reply::outlet::{IrcOutlet, WebhookOutlet};
use crate::reply::Outlets;
use crate::route::{ChatLine, LiveDrops, Routed};

/// Chat lines waiting for the publisher (IRC reading pauses when it is full).
const QUEUE: usize = 10_000;
/// Orders handed to the producer and not yet acknowledged.
const IN_FLIGHT: usize = 1_000;
/// Answers handed to the IRC session and not yet written.
const OUTGOING: usize = 16;

/// Could not start.
pub type IngestError = dropline_core::StartError;

/// What every source shares: routing and publishing.
#[derive(Clone)]
pub struct Pipeline {
    producer: FutureProducer,
    topic: String,
    live: Arc<RwLock<LiveDrops>>,
    activity: dropline_core::activity::Shared,
    /// True once the live drops are known (drop-triggers read up to where it ended at start).
    caught_up: watch::Receiver<bool>,
    pub(crate) metrics: Metrics,
    pub(crate) network: String,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("topic", &self.topic).field("network", &self.network).finish()
    }
}

impl Pipeline {
    /// Whether the live drops are known: before, a line cannot be routed (it would count as "no
    /// drop" and be lost), so the webhook answers 503 and the platform retries.
    pub fn ready(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Routes `line` (counting it for the funnel): an order, ordinary chat, or no live drop.
    fn route(&self, source: &str, line: &ChatLine) -> Routed {
        let now = now_ms();
        let routed = {
            let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(drop_id) = live.drop_for(line) {
                let command = dropline_core::domain::is_command(&line.text);
                let at = line.sent_at_ms.unwrap_or(now);
                let mut tally = self.activity.lock().unwrap_or_else(PoisonError::into_inner);
                tally.count(drop_id, &line.channel_id(), command, at);
            }
            live.route(line, now, || uuid::Uuid::new_v4().simple().to_string())
        };
        self.metrics.lines.with_label_values(&[source, routed.label()]).inc();
        routed
    }

    /// Hands `order` to the producer (in call order, so orders keep their chat order within a
    /// drop). The future resolves when the broker has it.
    async fn send(&self, order: &ChatOrder) -> Result<DeliveryFuture, KafkaError> {
        let payload = order.encode_to_vec();
        kafka::enqueue(&self.producer, &self.topic, &order.drop_id, &payload, &CancellationToken::new())
            .await
            .inspect_err(|_| self.metrics.publish_errors.inc())
    }

    /// Routes `line` and, if it is an order, hands it to the producer.
    async fn enqueue(
        &self,
        source: &str,
        line: &ChatLine,
    ) -> Result<(Routed, Option<DeliveryFuture>), KafkaError> {
        let routed = self.route(source, line);
        let Routed::Order(order) = &routed else { return Ok((routed, None)) };
        let delivery = self.send(order).await?;
        Ok((routed, Some(delivery)))
    }

    /// Publishes an IRC order until the broker has it: IRC does not resend, so an order the
    /// broker did not take (a broker away longer than the producer's own retries) is sent again
    /// with backoff — unless the broker refuses it for good. Ends early only at `stop`.
    async fn deliver(
        &self,
        order: ChatOrder,
        first: Result<DeliveryFuture, KafkaError>,
        stop: CancellationToken,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = first;
        loop {
            let failed = match attempt {
                Ok(delivery) => match self.confirm(delivery).await {
                    Ok(()) => return,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if kafka::is_permanent(&failed) {
                warn!(error = %failed, order_id = %order.order_id, "the broker refuses this order for good; dropped");
                return;
            }
            warn!(error = %failed, order_id = %order.order_id, "order not published; sending it again");
            if !backoff.wait(&stop).await {
                return;
            }
            attempt = self.send(&order).await;
        }
    }

    /// Routes and publishes `line`, waiting for the broker.
    pub async fn handle(&self, source: &str, line: ChatLine) -> Result<Routed, KafkaError> {
        let (routed, delivery) = self.enqueue(source, &line).await?;
        if let Some(delivery) = delivery {
            self.confirm(delivery).await?;
        }
        Ok(routed)
    }

    async fn confirm(&self, delivery: DeliveryFuture) -> Result<(), KafkaError> {
        let result = match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        };
        if result.is_err() {
            self.metrics.publish_errors.inc();
        }
        result
    }
}

/// Runs until `shutdown`: triggers first (to know the live drops), then IRC and the webhook.
pub async fn run(
    settings: Settings,
    config: IngestConfig,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let metrics = Metrics::new()?;
    let health = Health::default();
    let admin_router = admin::router(metrics.registry.clone(), health.clone());
    let (admin_addr, admin_task) = admin::serve(config.admin, admin_router, shutdown.clone()).await?;
    info!(addr = %admin_addr, "ingest admin endpoint");

    let producer = kafka::producer(&settings, "dropline-ingest")?;
    let (caught_up_tx, caught_up) = watch::channel(false);
    let pipeline = Pipeline {
        producer,
        topic: settings.topics.name(TopicKind::ChatOrders).to_owned(),
        live: Arc::new(RwLock::new(LiveDrops::with_fallback(config.fallback_drop.clone()))),
        activity: dropline_core::activity::Shared::default(),
        caught_up: caught_up.clone(),
        metrics: metrics.clone(),
        network: config.network.clone(),
    };

    health.set("live-drops", false, "reading drop-triggers: the live drops are not known yet");
    let triggers = tokio::spawn(follow_triggers(
        settings.clone(),
        pipeline.live.clone(),
        caught_up_tx,
        health.clone(),
        shutdown.clone(),
    ));
    // Chat before the live drops are known would be "no drop": the webhook answers 503 until
    // then (the platform retries), IRC is joined only then — however long the replay takes.
    let mut tasks = Vec::new();
    let activity_stop = CancellationToken::new();
    let activity = tokio::spawn(dropline_core::activity::publish(
        pipeline.activity.clone(),
        pipeline.producer.clone(),
        settings.topics.name(TopicKind::ChatActivity).to_owned(),
        activity_stop.clone(),
    ));
    if let Some(secret) = config.webhook_secret.clone() {
        let router = crate::webhook::router(secret, pipeline.clone());
        let listener = tokio::net::TcpListener::bind(config.http).await?;
        info!(addr = %listener.local_addr()?, "webhook listening on /ingest/chat");
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await
            {
                warn!(error = %e, "webhook server failed");
            }
        }));
    }
    let mut outlets = Outlets::default();
    if let Some(irc) = config.irc.clone() {
        let (lines_tx, lines_rx) = mpsc::channel(QUEUE);
        let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING);
        let (link_tx, link_rx) = watch::channel(Link::default());
        if config.replies.as_ref().is_some_and(|r| r.irc) {
            outlets.irc = Some(IrcOutlet {
                outgoing: outgoing_tx,
                link: link_rx,
                network: irc.network.clone(),
                channels: irc.channels.clone(),
                nick: irc.nick.clone(),
            });
        }
        let (mut known, client_metrics, stop) = (caught_up.clone(), metrics.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let known = tokio::select! {
                known = known.wait_for(|done| *done) => known.is_ok(),
                () = stop.cancelled() => false,
            };
            if known {
                crate::client::run(irc, lines_tx, outgoing_rx, link_tx, client_metrics, stop).await;
            }
        }));
        tasks.push(tokio::spawn(publish_lines(pipeline.clone(), lines_rx, shutdown.clone())));
    }
    if let Some(replies) = config.replies.clone() {
        if let (Some(url), Some(secret)) = (replies.config.webhook.clone(), config.webhook_secret.clone()) {
            outlets.webhook = Some(WebhookOutlet { url, secret, client: reqwest::Client::new() });
        }
        let task = crate::reply::run(
            settings.clone(),
            replies.config,
            outlets,
            pipeline.producer.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                warn!(error = %e, "reply path could not start");
            }
        }));
    }

    shutdown.cancelled().await;
    let drained = dropline_core::shutdown::drain(settings.shutdown_grace, async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        warn!("shutdown grace expired with chat lines unpublished");
    }
    // The last second's counts, after the last line was read.
    activity_stop.cancel();
    let _ = activity.await;
    triggers.abort();
    let _ = admin_task.await;
    info!("ingest stopped");
    Ok(())
}

/// Publishes the lines IRC hands over, in order, with up to `IN_FLIGHT` awaiting the broker; an
/// order the broker did not take is sent again (`Pipeline::deliver`). Ends when the IRC client is
/// gone and everything handed over is acknowledged (or `stop`).
async fn publish_lines(pipeline: Pipeline, mut lines: mpsc::Receiver<ChatLine>, stop: CancellationToken) {
    let mut pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            line = lines.recv(), if pending.len() < IN_FLIGHT => {
                let Some(line) = line else { break };
                if let Routed::Order(order) = pipeline.route("irc", &line) {
                    let sent = pipeline.send(&order).await;
                    pending.push(pipeline.deliver(*order, sent, stop.clone()));
                }
            }
            Some(()) = pending.next(), if !pending.is_empty() => {}
        }
    }
    while pending.next().await.is_some() {}
}

/// Reads `drop-triggers` from the beginning (all partitions, no consumer group membership, no
/// commits) and keeps `live` current; flips `caught_up` once the end seen at start is reached.
async fn follow_triggers(
    settings: Settings,
    live: Arc<RwLock<LiveDrops>>,
    caught_up: watch::Sender<bool>,
    health: Health,
    shutdown: CancellationToken,
) {
    let topic = settings.topics.name(TopicKind::DropTriggers);
    kafka::follow_from_start(&settings, "dropline-ingest", topic, &health, "drop-triggers", &shutdown, |f| {
        match f {
            Followed::Message { event: Ok(trigger), .. } => {
                live.write().unwrap_or_else(PoisonError::into_inner).apply(&trigger);
            }
            Followed::Message::<DropTrigger> { event: Err(e), .. } => {
                warn!(error = %e, "undecodable drop trigger skipped (the matcher dead-letters it)");
            }
            Followed::CaughtUp => {
                health.set("live-drops", true, "live drops known");
                let _ = caught_up.send(true);
            }
        }
    })
    .await;
}
