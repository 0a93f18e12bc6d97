//! The reply path: every outcome of an order that came in through ingest is answered to the buyer
//! where they ordered — on the IRC channel, or POSTed to the reply webhook — within the
//! platform's sending budget, and published as a `ChatReply` on `chat-replies`.
//!
//! Outcomes are read in a consumer group of their own (`DROPLINE_INGEST_REPLY_GROUP`) and
//! committed only past outcomes whose answer is finished (sent, merged into a sent message,
//! dropped because its hold lapsed, or needing none); what was sent is also recorded in Redis, so
//! after a restart the outcomes re-read behind the commit point are not answered twice.

pub mod budget;
pub mod outlet;
pub mod plan;
pub mod progress;
pub mod text;

use std::collections::HashMap;
use std::time::Duration;

use dropline_core::kafka::{self, now_ms};
use dropline_core::redis::Conn;
use dropline_core::{Settings, TopicKind};
use dropline_proto::v1::{ChatReply, ReservationOutcome};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::budget::Rate;
use self::outlet::{IrcOutlet, WebhookOutlet};
use self::plan::{Planned, Planner, Queued};
use self::progress::Progress;
use self::text::{Answer, MAX_MESSAGE};
use crate::metrics::Metrics;
use crate::route::Origin;

/// How often finished offsets are committed.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long a record of a sent answer is kept (longer than any drop's outcomes are re-read).
const SENT_TTL_SECS: i64 = 7 * 86_400;

/// How the reply path runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyConfig {
    /// Budget per channel and per connection (`DROPLINE_INGEST_REPLY_RATE`, default `20/30s`).
    pub rate: Rate,
    /// Consumer group (`DROPLINE_INGEST_REPLY_GROUP`, default `dropline-ingest-replies`).
    pub group: String,
    /// Webhook answers go to (`DROPLINE_INGEST_REPLY_WEBHOOK`, an http URL).
    pub webhook: Option<String>,
}

/// Where answers can go.
#[derive(Debug, Clone, Default)]
pub struct Outlets {
    pub irc: Option<IrcOutlet>,
    pub webhook: Option<WebhookOutlet>,
}

struct Replier {
    settings: Settings,
    config: ReplyConfig,
    outlets: Outlets,
    producer: FutureProducer,
    consumer: StreamConsumer,
    redis: Option<Conn>,
    metrics: Metrics,
    planners: HashMap<Origin, Planner>,
    progress: Progress,
}

/// Runs until `shutdown`. Answers still waiting then are answered after the next start.
pub async fn run(
    settings: Settings,
    config: ReplyConfig,
    outlets: Outlets,
    producer: FutureProducer,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), rdkafka::error::KafkaError> {
    let consumer = kafka::consumer(&settings, "dropline-ingest-replies", &config.group)?;
    consumer.subscribe(&[settings.topics.name(TopicKind::Reservations)])?;
    let redis = match dropline_core::redis::connect(&settings.redis).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            warn!(error = %e, "redis unavailable: answers re-read after a restart may be sent again");
            None
        }
    };
    let mut planners = HashMap::new();
    if let Some(irc) = &outlets.irc {
        planners.insert(Origin::Irc, Planner::new(config.rate, irc.max_text()));
    }
    if outlets.webhook.is_some() {
        planners.insert(Origin::Webhook, Planner::new(config.rate, MAX_MESSAGE));
    }
    info!(group = %config.group, rate = ?config.rate, irc = outlets.irc.is_some(), webhook = outlets.webhook.is_some(), "answering buyers");
    let mut r = Replier {
        settings,
        config,
        outlets,
        producer,
        consumer,
        redis,
        metrics,
        planners,
        progress: Progress::default(),
    };
    r.serve(&shutdown).await;
    let waiting: usize = r.planners.values().map(Planner::waiting).sum();
    r.commit(CommitMode::Sync);
    info!(waiting, "reply path stopped; waiting answers are sent after the restart");
    Ok(())
}

impl Replier {
    async fn serve(&mut self, shutdown: &CancellationToken) {
        let mut last_commit = tokio::time::Instant::now();
        loop {
            let wake = self.drive().await;
            let sleep = match wake {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                None => COMMIT_EVERY,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        let at = (message.partition(), message.offset());
                        self.progress.take(at.0, at.1);
                        match kafka::decode::<ReservationOutcome, _>(&message) {
                            Ok(outcome) => self.take(outcome, at).await,
                            Err(e) => {
                                // The matcher wrote it; nothing to answer. Counted, skipped.
                                warn!(error = %e, "undecodable outcome skipped");
                                self.progress.finish(at.0, at.1);
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "reading outcomes"),
                },
                () = tokio::time::sleep(sleep.min(COMMIT_EVERY)) => {}
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                self.commit(CommitMode::Async);
                last_commit = tokio::time::Instant::now();
            }
        }
    }

    /// An outcome read: queued as an answer, or finished at once (nothing to say, not ours, sent before).
    async fn take(&mut self, outcome: ReservationOutcome, at: (i32, i64)) {
        let answer = Answer::from_outcome(&outcome, &self.settings.public_url);
        let Some(answer) = answer.filter(|a| self.can_answer(a)) else {
            self.progress.finish(at.0, at.1);
            return;
        };
        if self.was_sent(&answer).await {
            self.metrics.reply_answers.with_label_values(&["repeat"]).inc();
            self.progress.finish(at.0, at.1);
            return;
        }
        if let Some(planner) = self.planners.get_mut(&answer.origin) {
            planner.push(answer, at);
        }
    }

    fn can_answer(&self, answer: &Answer) -> bool {
        match answer.origin {
            Origin::Irc => {
                self.outlets.irc.as_ref().is_some_and(|irc| irc.channel_of(&answer.channel).is_some())
            }
            Origin::Webhook => self.outlets.webhook.is_some(),
        }
    }

    /// Sends whatever the budgets allow now; returns when to look again.
    async fn drive(&mut self) -> Option<i64> {
        let mut wake: Option<i64> = None;
        let origins: Vec<Origin> = self.planners.keys().copied().collect();
        for origin in origins {
            loop {
                let now = now_ms();
                let next = {
                    let Some(planner) = self.planners.get_mut(&origin) else { break };
                    if let (Origin::Irc, Some(irc)) = (origin, &self.outlets.irc) {
                        planner.set_max_text(irc.max_text());
                    }
                    planner.next(now)
                };
                for q in next.dropped {
                    self.metrics.reply_answers.with_label_values(&["dropped"]).inc();
                    debug!(order_id = %q.answer.order_id, "reservation answer dropped: its hold lapsed first");
                    self.progress.finish(q.at.0, q.at.1);
                }
                let Some(planned) = next.send else {
                    if let Some(at) = next.wake_at {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    break;
                };
                if let Err(e) = self.send(origin, &planned).await {
                    warn!(error = %e, channel = %planned.channel, "answer not sent; trying again");
                    if let Some(planner) = self.planners.get_mut(&origin) {
                        planner.requeue(planned.answers);
                    }
                    wake = Some(now + 1_000);
                    break;
                }
            }
        }
        wake
    }

    async fn send(&mut self, origin: Origin, planned: &Planned) -> Result<(), outlet::SendError> {
        let sent_at = now_ms();
        let reply = ChatReply {
            channel: planned.channel.clone(),
            text: planned.text.clone(),
            order_ids: planned.answers.iter().map(|q| q.answer.order_id.clone()).collect(),
            reply_to_message_id: planned.reply_to.clone().unwrap_or_default(),
            via: origin.as_str().to_owned(),
            sent_at_ms: sent_at,
            decided_at_ms: planned.answers.iter().map(|q| q.answer.decided_at_ms).collect(),
            buyer_ids: planned.answers.iter().map(|q| q.answer.buyer_id.clone()).collect(),
            drop_id: planned.answers.first().map(|q| q.answer.drop_id.clone()).unwrap_or_default(),
        };
        match origin {
            Origin::Irc => {
                let irc = self.outlets.irc.as_ref().ok_or(outlet::SendError::NotConnected)?;
                let channel = irc.channel_of(&planned.channel).ok_or(outlet::SendError::NotConnected)?;
                irc.send(&channel, &planned.text, planned.reply_to.as_deref()).await?;
            }
            Origin::Webhook => {
                let webhook = self.outlets.webhook.as_ref().ok_or(outlet::SendError::NotConnected)?;
                webhook.send(&reply).await?;
            }
        }
        let m = &self.metrics;
        m.replies_sent.with_label_values(&[origin.as_str()]).inc();
        m.reply_answers.with_label_values(&["sent"]).inc();
        m.reply_answers.with_label_values(&["merged"]).inc_by(planned.answers.len().saturating_sub(1) as u64);
        m.reply_mentions.observe(planned.answers.len() as f64);
        for q in &planned.answers {
            m.reply_delay.observe((sent_at - q.answer.decided_at_ms).max(0) as f64 / 1000.0);
        }
        self.record_sent(&planned.answers).await;
        for q in &planned.answers {
            self.progress.finish(q.at.0, q.at.1);
        }
        let topic = self.settings.topics.name(TopicKind::ChatReplies).to_owned();
        let producer = self.producer.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = kafka::publish(&producer, &topic, &reply.channel, &reply).await {
                metrics.publish_errors.inc();
                warn!(error = %e, "chat reply sent but not published on chat-replies");
            }
        });
        Ok(())
    }

    async fn was_sent(&mut self, answer: &Answer) -> bool {
        let Some(redis) = self.redis.as_mut() else { return false };
        let key = self.settings.keyspace.replies_sent(&self.config.group, &answer.drop_id);
        match redis::cmd("HEXISTS").arg(&key).arg(&answer.key).query_async::<bool>(redis).await {
            Ok(sent) => sent,
            Err(e) => {
                warn!(error = %e, "cannot tell whether an answer was sent; answering");
                false
            }
        }
    }

    async fn record_sent(&mut self, answers: &[Queued]) {
        let Some(redis) = self.redis.as_mut() else { return };
        let mut pipe = redis::pipe();
        for q in answers {
            let key = self.settings.keyspace.replies_sent(&self.config.group, &q.answer.drop_id);
            pipe.hset(&key, &q.answer.key, now_ms()).ignore();
            pipe.expire(&key, SENT_TTL_SECS).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(redis).await {
            warn!(error = %e, "sent answers not recorded; after a restart they may be sent again");
        }
    }

    fn commit(&mut self, mode: CommitMode) {
        let topic = self.settings.topics.name(TopicKind::Reservations);
        let mut tpl = TopicPartitionList::new();
        let assigned = self.consumer.assignment().unwrap_or_default();
        for (partition, offset) in self.progress.committable() {
            if assigned.find_partition(topic, partition).is_none() {
                self.progress.forget(partition);
                continue;
            }
            if tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).is_err() {
                continue;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            debug!(error = %e, "reply offsets not committed yet");
        }
    }
}
