//! The matcher service, wired: the decider consumes a batch → the planner turns it into one
//! atomic call per drop → the store applies them in Redis → the publisher hands the outcomes to the
//! producer and commits offsets once the broker has acknowledged them. Beside it, the sweeper
//! works out which due holds may expire and which split drops to rebalance.
//!
//! Drain order at shutdown: the decider stops taking messages; the sweeper stops; the publisher
//! sends what it was handed, waits for the acknowledgements and commits; the consumer leaves the
//! group. Whatever the grace period cuts short stays uncommitted and is replayed — and recognised —
//! after a restart.

mod catalogs;
mod decider;
mod group;
mod outcome;
mod plan;
mod publisher;
mod rebalance;
mod store;
mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use dropline_core::admin::{self, Health};
use dropline_core::kafka;
use dropline_core::{Settings, TopicKind};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::MatcherConfig;
use crate::metrics::Metrics;
use crate::step;

pub use plan::{plan_raw, RawMessage};

/// The matcher could not start or had to stop.
pub type MatcherError = dropline_core::StartError;

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

    let Some(mut redis) = store::connect(&settings, &health, &metrics, &shutdown).await else {
        admin_stop.cancel();
        return Ok(());
    };
    step::load(&mut redis).await?;
    let claim = match config.claim_secret.clone() {
        Some(secret) => secret,
        None => dropline_core::claim::ClaimSecret::shared(&mut redis, &settings.keyspace).await?,
    };
    // The sweeper and the publisher's outbox removals go on their own connection, so they never
    // queue behind a batch's step calls.
    let Some(side) = store::connect(&settings, &health, &metrics, &shutdown).await else {
        admin_stop.cancel();
        return Ok(());
    };
    health.set("redis", true, "connected");

    let producer = kafka::producer(&settings, "dropline-matcher")?;
    let context = group::GroupContext::default();
    let membership = Arc::clone(&context.membership);
    let consumer: Arc<StreamConsumer<group::GroupContext>> =
        Arc::new(kafka::consumer_with(&settings, "dropline-matcher", &config.group, context)?);
    let topics = [
        settings.topics.name(TopicKind::DropTriggers),
        settings.topics.name(TopicKind::ChatOrders),
        settings.topics.name(TopicKind::HoldActions),
    ];
    consumer.subscribe(&topics)?;
    health.set("kafka", true, "subscribed");
    info!(group = %config.group, admin = %admin_addr, topics = ?topics, "matcher running");

    let progress = Arc::new(publisher::Progress::default());
    let registry = store::Registry::new(&settings);
    // Cancelled when the grace period is over: the publisher stops waiting for acknowledgements.
    let publish_stop = CancellationToken::new();
    let (publisher, publishing) = publisher::start(publisher::PublisherParts {
        producer: producer.clone(),
        consumer: Arc::clone(&consumer),
        redis: side.clone(),
        dead_letters: settings.topics.name(TopicKind::DeadLetters).to_owned(),
        topics: settings.topics.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        progress: Arc::clone(&progress),
        stop: publish_stop.clone(),
    });
    let (requests, sweeps) = tokio::sync::mpsc::channel(1);
    let sweeper_stop = CancellationToken::new();
    let sweeping = tokio::spawn(
        sweeper::Sweeper {
            settings: settings.clone(),
            interval: config.sweep_interval,
            metrics: metrics.clone(),
            health: health.clone(),
            redis: side,
            consumer: Arc::clone(&consumer),
            membership,
            progress: Arc::clone(&progress),
            registry: registry.clone(),
            requests,
            stop: sweeper_stop.clone(),
        }
        .run(),
    );
    let grace = settings.shutdown_grace;
    let decider = decider::Decider {
        catalogs: catalogs::Catalogs::new(config.max_quantity),
        outcomes: outcome::Outcomes { topics: settings.topics.clone(), claim },
        settings,
        config,
        metrics,
        health,
        consumer: Arc::clone(&consumer),
        redis,
        publisher,
        progress,
        registry,
        sweeps,
        shutdown: shutdown.clone(),
    };
    // The consume loop is a task of its own, not the caller's future: the runtime's workers run it.
    let _ = tokio::spawn(decider.run()).await;

    info!("draining");
    let drained = dropline_core::shutdown::drain(grace, async {
        sweeper_stop.cancel();
        let _ = sweeping.await;
        // Every handle is gone: the publisher ends once what it holds is acknowledged and committed.
        let _ = publishing.await;
    })
    .await;
    if let Err(e) = drained {
        warn!(error = %e, "drain cut short");
        publish_stop.cancel();
    }
    let _ = producer.flush(Duration::from_secs(5));
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
            warn!(error = %e, "final commit failed");
        }
    }
    consumer.unsubscribe();
    admin_stop.cancel();
    let _ = admin_task.await;
    info!("matcher stopped");
    Ok(())
}
