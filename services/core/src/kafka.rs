//! Kafka plumbing: producers and consumers with low-latency defaults, topic creation through the
//! admin API, and decoding that turns bad payloads into errors (and dead letters), never panics.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dropline_proto::v1;
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::settings::Settings;

/// Low-latency producer properties. Idempotence makes the broker drop duplicates of a retried
/// send; `linger.ms=1` batches what arrives together without making a lone message wait.
/// `message.timeout.ms` is Kafka's own delivery timeout (120 s): a broker away for less than that
/// gets every queued message, in order, from the producer's own retries; a longer outage ends in
/// an error the caller decides about (ingest sends an IRC order again, the webhook answers 503
/// sooner, see `WEBHOOK_WAIT`). At 30 s, a one-minute outage turned every queued order into a
/// resend with a bumped producer epoch, which the development broker (tansu 0.6) cannot take: its
/// storage panicked and it stopped serving (bad-input suite, broker-outage case).
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "1"),
    ("batch.num.messages", "10000"),
    ("message.timeout.ms", "120000"),
    ("socket.nagle.disable", "true"),
    ("compression.type", "none"),
];

/// Low-latency consumer properties. `fetch.wait.max.ms` bounds how long the broker may hold a
/// fetch (brokers that wait most of it would otherwise add hundreds of milliseconds); offsets are
/// committed by the service, explicitly, after its output is acknowledged; a crashed member's
/// partitions move after `session.timeout.ms` (6 s), not the 45 s default.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("fetch.wait.max.ms", "5"),
    ("fetch.min.bytes", "1"),
    ("session.timeout.ms", "6000"),
    // A member learns of a rebalance at its next heartbeat: at 1 s, a matcher joining the group
    // stalled decisions ~2 s (fault suite, p99 before the fault 2.1–2.4 s); at 250 ms, 0.13–0.17 s.
    ("heartbeat.interval.ms", "250"),
    ("socket.nagle.disable", "true"),
    ("enable.partition.eof", "false"),
];

/// Base client configuration: bootstrap servers, a client id, then `DROPLINE_KAFKA_CONFIG` on top
/// of `defaults` so operators can override anything (security, tuning).
pub fn client_config(settings: &Settings, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.kafka).set("client.id", client_id);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &settings.kafka_config.0 {
        config.set(key, value);
    }
    config
}

/// An idempotent, low-latency producer.
pub fn producer(settings: &Settings, client_id: &str) -> Result<FutureProducer, KafkaError> {
    client_config(settings, client_id, PRODUCER_DEFAULTS).create()
}

/// A consumer in `group` with manual commits and low-latency fetches. Not yet subscribed.
pub fn consumer(settings: &Settings, client_id: &str, group: &str) -> Result<StreamConsumer, KafkaError> {
    consumer_with(settings, client_id, group, DefaultConsumerContext)
}

/// [`consumer`] with a context of the caller's (rebalance callbacks, for instance).
pub fn consumer_with<C: ConsumerContext + 'static>(
    settings: &Settings,
    client_id: &str,
    group: &str,
    context: C,
) -> Result<StreamConsumer<C>, KafkaError> {
    let mut config = client_config(settings, client_id, CONSUMER_DEFAULTS);
    config.set("group.id", group);
    config.create_with_context(context)
}

/// `first` and whatever else has already arrived, up to `max` messages: one message when idle (no
/// waiting for a batch to fill), up to `max` under load — the one "take a batch" of every consumer.
pub fn arrived<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    first: OwnedMessage,
    max: usize,
) -> Vec<(OwnedMessage, std::time::Instant)> {
    let mut batch = vec![(first, std::time::Instant::now())];
    while batch.len() < max {
        match futures::FutureExt::now_or_never(consumer.recv()) {
            Some(Ok(message)) => batch.push((message.detach(), std::time::Instant::now())),
            _ => break,
        }
    }
    batch
}

/// An admin client.
pub fn admin(settings: &Settings) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    client_config(settings, "dropline-admin", &[]).create()
}

/// Creates `names` with `partitions` partitions (replication `replication`), treating topics that
/// already exist as success. Returns the names that were newly created.
pub async fn ensure_topics(
    settings: &Settings,
    names: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    let admin = admin(settings)?;
    // A contract topic is created with its retention (`TopicKind::retention_ms`), said out loud
    // rather than left to the broker's default.
    let retention: Vec<Option<String>> = names
        .iter()
        .map(|name| settings.topics.kind_of(name).map(|kind| kind.retention_ms().to_string()))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .zip(&retention)
        .map(|(name, retention)| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
            match retention {
                Some(ms) => topic.set("retention.ms", ms),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(new_topics.iter(), &options).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "topic creation failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(created)
}

/// Waits until the broker answers a metadata request, or `timeout` passes.
pub async fn wait_for_broker(settings: &Settings, timeout: Duration) -> Result<(), KafkaError> {
    let probe: Arc<BaseConsumer> = Arc::new(client_config(settings, "dropline-probe", &[]).create()?);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let client = Arc::clone(&probe);
        let attempt = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(None, Duration::from_millis(500)).map(drop)
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled));
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A consumer reading every partition of `topic` from its beginning, outside any consumer group
/// (assigned, never joined, never committing): for services that rebuild their view from a topic
/// at start. Comes with a [`CatchUp`] of where each partition ended when it was made. Blocking
/// (metadata requests, up to 5 s each).
pub fn replay_from_start(
    settings: &Settings,
    client_id: &str,
    topic: &str,
) -> Result<(StreamConsumer, CatchUp), KafkaError> {
    let consumer = consumer(settings, client_id, client_id)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
    }
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut ends = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
        assignment.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)?;
        if high > 0 {
            ends.push((partition, high));
        }
    }
    consumer.assign(&assignment)?;
    Ok((consumer, CatchUp { ends }))
}

/// Tracks a replay up to the ends its partitions had when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// `(partition, end offset)` still to reach.
    ends: Vec<(i32, i64)>,
}

impl CatchUp {
    /// Records that the message at `offset` of `partition` was read.
    pub fn seen(&mut self, partition: i32, offset: i64) {
        self.ends.retain(|(p, end)| !(*p == partition && offset + 1 >= *end));
    }

    /// Whether everything that was in the topic at the start has been read.
    pub fn done(&self) -> bool {
        self.ends.is_empty()
    }
}

/// What [`follow_from_start`] hands over.
#[derive(Debug)]
pub enum Followed<M> {
    /// A message of the topic, decoded (or why not); `replayed` when it was already in the topic
    /// when following started.
    Message { event: Result<M, DecodeError>, replayed: bool },
    /// Everything that was in the topic at the start has been read (sent once, first thing when
    /// the topic was empty).
    CaughtUp,
}

/// Follows `topic` from its beginning, outside any consumer group (see [`replay_from_start`]),
/// until `shutdown`: retries each second until the broker answers, reporting `component` on
/// `health`, then hands every message to `each`. Read errors are logged and skipped.
pub async fn follow_from_start<M, F>(
    settings: &Settings,
    client_id: &str,
    topic: &str,
    health: &Health,
    component: &str,
    shutdown: &CancellationToken,
    mut each: F,
) where
    M: prost::Message + Default,
    F: FnMut(Followed<M>),
{
    let (consumer, mut catch_up) = loop {
        let (s, c, t) = (settings.clone(), client_id.to_owned(), topic.to_owned());
        let replay = tokio::task::spawn_blocking(move || replay_from_start(&s, &c, &t)).await;
        match replay.unwrap_or(Err(KafkaError::Canceled)) {
            Ok(replay) => break replay,
            Err(e) => health.set(component, false, format!("cannot read {topic}: {e}")),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    health.set(component, true, format!("following {topic}"));
    if catch_up.done() {
        each(Followed::CaughtUp);
    }
    let mut stream = consumer.stream();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = stream.next() => message,
        };
        let message = match message {
            None => return,
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "read error");
                continue;
            }
        };
        let replayed = !catch_up.done();
        each(Followed::Message { event: decode(&message), replayed });
        if replayed {
            catch_up.seen(message.partition(), message.offset());
            if catch_up.done() {
                each(Followed::CaughtUp);
            }
        }
    }
}

/// A message whose payload is not what its topic promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {topic}[{partition}]@{offset}: {reason}")]
pub struct DecodeError {
    /// Topic the message was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the bad message.
    pub offset: i64,
    /// What was wrong.
    pub reason: String,
}

/// Decodes a message's payload as `M`. A missing or malformed payload is a [`DecodeError`] that
/// carries the message's position.
pub fn decode<M, K>(message: &K) -> Result<M, DecodeError>
where
    M: prost::Message + Default,
    K: Message,
{
    let error = |reason: String| DecodeError {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        reason,
    };
    let payload = message.payload().ok_or_else(|| error("empty payload".into()))?;
    M::decode(payload).map_err(|e| error(format!("invalid protobuf: {e}")))
}

/// Most payload bytes a dead letter keeps: a message near the broker's size limit still yields a
/// dead letter that fits (the whole is named by its size and SHA-256).
pub const DEAD_LETTER_PAYLOAD_MAX: usize = 64 * 1024;

/// The dead letter for a message a service gave up on: raw key and payload kept (the payload up to
/// [`DEAD_LETTER_PAYLOAD_MAX`]), with the reason.
pub fn dead_letter<K: Message>(message: &K, reason: &str, service: &str) -> v1::DeadLetter {
    let at = Position { topic: message.topic(), partition: message.partition(), offset: message.offset() };
    letter(at, message.key().unwrap_or_default(), message.payload().unwrap_or_default(), reason, service)
}

/// The dead letter for output the broker refused for good ([`is_permanent`]): the topic it was
/// for, partition and offset -1.
pub fn refused_letter(
    topic: &str,
    key: &[u8],
    payload: &[u8],
    reason: &str,
    service: &str,
) -> v1::DeadLetter {
    letter(Position { topic, partition: -1, offset: -1 }, key, payload, reason, service)
}

struct Position<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

fn letter(at: Position<'_>, key: &[u8], payload: &[u8], reason: &str, service: &str) -> v1::DeadLetter {
    use sha2::Digest as _;
    let kept = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_MAX)];
    let key = &key[..key.len().min(DEAD_LETTER_PAYLOAD_MAX)];
    v1::DeadLetter {
        topic: at.topic.to_owned(),
        partition: at.partition,
        offset: at.offset,
        key: key.to_vec().into(),
        payload: kept.to_vec().into(),
        reason: reason.chars().take(4096).collect(),
        service: service.to_owned(),
        failed_at_ms: now_ms(),
        payload_size: payload.len() as u64,
        payload_sha256: sha2::Sha256::digest(payload).to_vec().into(),
    }
}

/// Whether a produce error can never succeed however often the message is sent again: too large
/// for the broker or the client, or refused as invalid. Such a message is dead-lettered; any other
/// error (broker down, leader moving, timeouts) is worth retrying.
pub fn is_permanent(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        other => match other.rdkafka_error_code() {
            Some(code) => code,
            None => return false,
        },
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage
    )
}

/// Publishes `event` to `topic` keyed by `key` and waits for the broker's acknowledgement.
/// Returns the partition and offset it was written at.
pub async fn publish<M: prost::Message>(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    event: &M,
) -> Result<(i32, i64), KafkaError> {
    let payload = event.encode_to_vec();
    let record = FutureRecord::to(topic).key(key).payload(&payload);
    let delivery = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e)?;
    Ok((delivery.partition, delivery.offset))
}

/// A consumer of `topic` in a fresh group of its own — it reads from the beginning and moves
/// nobody's offsets — for tools and tests that watch a topic.
pub fn reader(settings: &Settings, client_id: &str, topic: &str) -> Result<StreamConsumer, KafkaError> {
    static READERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let group = format!("{client_id}-reader-{}-{}-{n}", std::process::id(), now_ms());
    let consumer = consumer(settings, client_id, &group)?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Why [`next_event`] has no event.
#[derive(Debug, thiserror::Error)]
pub enum NextError {
    #[error("nothing within {0:?}")]
    Quiet(Duration),
    #[error("the consumer's stream ended")]
    Ended,
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The next message on `consumer`, decoded, within `wait`.
pub async fn next_event<M: prost::Message + Default>(
    consumer: &StreamConsumer,
    wait: Duration,
) -> Result<M, NextError> {
    let message = tokio::time::timeout(wait, consumer.stream().next())
        .await
        .map_err(|_| NextError::Quiet(wait))?
        .ok_or(NextError::Ended)??;
    Ok(decode(&message)?)
}

/// How long to wait for room when the producer's local queue is full.
const ROOM_WAIT: Duration = Duration::from_millis(2);

/// Hands a message to the producer, waiting (asynchronously) while its local queue is full — the
/// one "send while the queue is full" of every service and tool. Any other error is returned at
/// once, for the caller to decide (a message too large will never fit); `stop` cancelled while
/// waiting is `KafkaError::Canceled`. The returned future resolves when the broker has it.
pub async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    stop: &CancellationToken,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::select! {
                    () = stop.cancelled() => return Err(KafkaError::Canceled),
                    () = tokio::time::sleep(ROOM_WAIT) => {}
                }
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
