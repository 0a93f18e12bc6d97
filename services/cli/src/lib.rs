//! The `dropline` operator command: topics, tail, produce. Debian's `kcat` cannot talk to every
//! Kafka-protocol broker, and it shows protobuf as bytes; this shows events as proto3 JSON lines.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use dropline_core::kafka;
use dropline_core::{Settings, TopicKind};
use dropline_proto::v1;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// See and feed what flows through Dropline's topics.
#[derive(Debug, Parser)]
#[command(name = "dropline", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List topics with their partitions and message counts.
    Topics,
    /// Create the contract's topics (existing ones are left alone).
    CreateTopics {
        /// Partitions per topic (default: DROPLINE_PARTITIONS, 4).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
        /// Wait this many seconds for the broker to answer first.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Print a topic's events as JSON lines, decoded by the topic's message type.
    Tail {
        /// Topic name (a contract topic, or any topic with --type).
        topic: String,
        /// Message type, when the topic name is not one of the contract's.
        #[arg(long = "type", value_enum)]
        kind: Option<Kind>,
        /// Start from the oldest retained event instead of the newest.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many events.
        #[arg(short = 'n', long)]
        count: Option<u64>,
        /// Stop after this many seconds without an event (0: wait forever).
        #[arg(long, default_value_t = 0)]
        idle_exit: u64,
        /// Show only events with this key (the drop id, for drop events).
        #[arg(long)]
        key: Option<String>,
        /// One short human line per reservation outcome instead of JSON.
        #[arg(long)]
        brief: bool,
    },
    /// Read events as proto3 JSON lines on stdin, encode them and produce them (key = drop_id).
    Produce {
        /// Topic name.
        topic: String,
        /// Message type, when the topic name is not one of the contract's.
        #[arg(long = "type", value_enum)]
        kind: Option<Kind>,
    },
}

/// Message types, by the contract topic that carries them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    ChatOrders,
    DropTriggers,
    HoldActions,
    Reservations,
    ClipRequests,
    Clips,
    DeadLetters,
    ChatReplies,
    ChatActivity,
}

impl From<Kind> for TopicKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::ChatOrders => TopicKind::ChatOrders,
            Kind::DropTriggers => TopicKind::DropTriggers,
            Kind::HoldActions => TopicKind::HoldActions,
            Kind::Reservations => TopicKind::Reservations,
            Kind::ClipRequests => TopicKind::ClipRequests,
            Kind::Clips => TopicKind::Clips,
            Kind::DeadLetters => TopicKind::DeadLetters,
            Kind::ChatReplies => TopicKind::ChatReplies,
            Kind::ChatActivity => TopicKind::ChatActivity,
        }
    }
}

fn resolve_kind(settings: &Settings, topic: &str, kind: Option<Kind>) -> anyhow::Result<TopicKind> {
    match kind {
        Some(kind) => Ok(kind.into()),
        None => settings.topics.kind_of(topic).with_context(|| {
            format!(
                "{topic:?} is not one of the contract's topics; say which messages it carries with --type"
            )
        }),
    }
}

/// Runs one command until it is done or `shutdown` is cancelled.
pub async fn run(cli: Cli, settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Topics => topics(&settings, &mut out),
        Command::CreateTopics { partitions, replication, wait } => {
            kafka::wait_for_broker(&settings, Duration::from_secs(wait))
                .await
                .with_context(|| format!("broker at {} did not answer within {wait} s", settings.kafka))?;
            let names: Vec<&str> = settings.topics.all().map(|(_, name)| name).collect();
            let partitions = partitions.unwrap_or(settings.partitions);
            let created = kafka::ensure_topics(&settings, &names, partitions, replication).await?;
            for name in &names {
                let state = if created.iter().any(|c| c == name) { "created" } else { "exists" };
                writeln!(out, "{name}\t{state}")?;
            }
            Ok(())
        }
        Command::Tail { topic, kind, from_beginning, count, idle_exit, key, brief } => {
            let options = TailOptions {
                kind: resolve_kind(&settings, &topic, kind)?,
                start: if from_beginning { Offset::Beginning } else { Offset::End },
                count,
                idle: (idle_exit > 0).then(|| Duration::from_secs(idle_exit)),
                key,
                brief,
            };
            tail(&settings, &topic, &options, &shutdown, &mut out).await
        }
        Command::Produce { topic, kind } => {
            let kind = resolve_kind(&settings, &topic, kind)?;
            produce(&settings, &topic, kind, std::io::stdin().lock(), &mut out).await
        }
    }
}

fn topics(settings: &Settings, out: &mut impl Write) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka::client_config(settings, "dropline-cli", &[]).create()?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .with_context(|| format!("cannot read metadata from {}", settings.kafka))?;
    let mut topics: Vec<_> = metadata.topics().iter().collect();
    topics.sort_by_key(|t| t.name());
    writeln!(out, "{:<40} {:>10} {:>12}  type", "topic", "partitions", "messages")?;
    for topic in topics {
        let mut messages = 0i64;
        for partition in topic.partitions() {
            let (low, high) =
                consumer.fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(5))?;
            messages += high - low;
        }
        let kind = settings.topics.kind_of(topic.name()).map_or("-", TopicKind::message_name);
        writeln!(out, "{:<40} {:>10} {:>12}  {kind}", topic.name(), topic.partitions().len(), messages)?;
    }
    Ok(())
}

/// What `tail` shows and when it stops.
#[derive(Debug)]
struct TailOptions {
    kind: TopicKind,
    start: Offset,
    count: Option<u64>,
    idle: Option<Duration>,
    key: Option<String>,
    brief: bool,
}

async fn tail(
    settings: &Settings,
    topic: &str,
    options: &TailOptions,
    shutdown: &CancellationToken,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // A private group that never commits: tailing must not move anyone's offsets.
    let group = format!("dropline-tail-{}-{}", std::process::id(), kafka::now_ms());
    let consumer = kafka::consumer(settings, "dropline-tail", &group)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let Some(meta) = metadata.topics().first().filter(|t| !t.partitions().is_empty()) else {
        bail!("topic {topic:?} does not exist on {}", settings.kafka);
    };
    let mut assignment = TopicPartitionList::new();
    for partition in meta.partitions() {
        assignment.add_partition_offset(topic, partition.id(), options.start)?;
    }
    consumer.assign(&assignment)?;

    let mut stream = consumer.stream();
    let mut seen = 0u64;
    while options.count.is_none_or(|n| seen < n) {
        let next = async {
            match options.idle {
                Some(idle) => tokio::time::timeout(idle, stream.next()).await.ok().flatten(),
                None => stream.next().await,
            }
        };
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = next => match message {
                Some(message) => message?,
                None => break,
            },
        };
        if let Some(wanted) = &options.key {
            if message.key() != Some(wanted.as_bytes()) {
                continue;
            }
        }
        if options.brief && options.kind == TopicKind::Reservations {
            let line = message.payload().map_or_else(|| "(empty payload)".to_owned(), brief_outcome);
            writeln!(out, "{line}")?;
            out.flush()?;
            seen += 1;
            continue;
        }
        let value = match message.payload().map(|p| options.kind.decode_json(p)) {
            Some(Ok(value)) => serde_json::json!({ "value": value }),
            Some(Err(e)) => serde_json::json!({ "error": e.to_string() }),
            None => serde_json::json!({ "error": "empty payload" }),
        };
        let mut line = serde_json::json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "timestamp_ms": message.timestamp().to_millis(),
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), value.as_object()) {
            line.extend(extra.clone());
        }
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
    }
    Ok(())
}

/// `order  STATUS  SKU xN  left R  reason`, for people watching a drop.
fn brief_outcome(payload: &[u8]) -> String {
    use prost::Message as _;
    let Ok(o) = v1::ReservationOutcome::decode(payload) else {
        return "(not a ReservationOutcome)".to_owned();
    };
    let status = v1::ReservationStatus::try_from(o.status).map_or("?", v1::ReservationStatus::label);
    format!(
        "{:<24} {status:<15} {:<12} x{:<2} left {:>4}  {}",
        o.order_id, o.sku, o.quantity, o.remaining, o.reason
    )
}

async fn produce(
    settings: &Settings,
    topic: &str,
    kind: TopicKind,
    input: impl BufRead,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    /// Deliveries in flight before we wait for the oldest: keeps order of output, bounds memory.
    const IN_FLIGHT: usize = 5_000;
    let producer = kafka::producer(settings, "dropline-cli")?;
    let mut pending = std::collections::VecDeque::new();
    let mut sent = 0u64;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (payload, key) = kind.encode_json(&line).with_context(|| format!("line {}", index + 1))?;
        let key = key.unwrap_or_default();
        let delivery = kafka::enqueue(&producer, topic, &key, &payload, &CancellationToken::new())
            .await
            .with_context(|| format!("line {}: cannot produce", index + 1))?;
        pending.push_back((index + 1, delivery));
        if pending.len() >= IN_FLIGHT {
            report(topic, pending.pop_front(), out).await?;
        }
        sent += 1;
    }
    while !pending.is_empty() {
        report(topic, pending.pop_front(), out).await?;
    }
    tracing::info!(topic, sent, "produced");
    Ok(())
}

/// Waits for one delivery and prints where it landed.
async fn report(
    topic: &str,
    pending: Option<(usize, rdkafka::producer::DeliveryFuture)>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let Some((line, delivery)) = pending else { return Ok(()) };
    let delivery = delivery
        .await
        .map_err(|_| anyhow::anyhow!("line {line}: delivery report lost"))?
        .map_err(|(e, _)| e)
        .with_context(|| format!("line {line}: cannot produce to {topic}"))?;
    writeln!(out, "{topic}[{}]@{}", delivery.partition, delivery.offset)?;
    Ok(())
}
