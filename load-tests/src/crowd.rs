//! A chat crowd for one existing drop (the demo's): a few thousand viewers on one or more channels
//! typing `!buy` lines — sizes, aliases, typos — between ordinary chat, on a steady schedule;
//! buyers pay for some of their reservations and let others expire. It stands where ingest stands:
//! `!buy` lines become `ChatOrder`s, every line is counted in `ChatActivity`. Then a summary:
//! per channel lines, orders and payments, sell-out times, outcomes, latency.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{ChatOrder, HoldAction, HoldActionKind, ReservationOutcome, ReservationStatus};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::Consumer;

use crate::check::is_decision;

/// What the crowd does.
#[derive(Debug, Clone)]
pub struct Crowd {
    pub drop_id: String,
    pub viewers: u32,
    pub seconds: u64,
    /// Chat lines per second.
    pub rate: f64,
    /// Share of reservations paid for (the rest expire).
    pub confirm: f64,
    /// After the chat, how long to keep watching (holds expiring, waitlists moving).
    pub linger: Duration,
    pub seed: u64,
    /// The channels the viewers chat on (viewer `n` on channel `n mod len`).
    pub channels: Vec<String>,
}

/// Chat templates, `weight<TAB>text`, `#` comments: what the crowd types.
pub fn load_lines(path: &Path) -> Result<Vec<(u32, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (weight, chat) = line
            .split_once('\t')
            .with_context(|| format!("{}:{}: expected weight<TAB>text", path.display(), n + 1))?;
        let weight: u32 =
            weight.trim().parse().with_context(|| format!("{}:{}: weight", path.display(), n + 1))?;
        lines.push((weight, chat.to_owned()));
    }
    if lines.is_empty() {
        bail!("{}: no chat lines", path.display());
    }
    Ok(lines)
}

/// What the crowd saw.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub lines: u64,
    pub orders: u64,
    pub decided: u64,
    pub outcomes: BTreeMap<String, u64>,
    /// SKU → seconds from the first decision to the one that left none for sale.
    pub sold_out_after_s: BTreeMap<String, f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub paid: u64,
    /// Per channel: what the crowd typed there and what its buyers paid for.
    pub per_channel: BTreeMap<String, ChannelCount>,
}

/// One channel's counts, as the crowd keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCount {
    /// Chat lines typed.
    pub lines: u64,
    /// `!buy` lines (orders handed over).
    pub orders: u64,
    /// Orders decided.
    pub decided: u64,
    /// Holds paid for (confirmations sent).
    pub paid: u64,
}

pub async fn run(settings: &Settings, crowd: &Crowd, templates: &[(u32, String)]) -> Result<Summary> {
    let producer = kafka::producer(settings, "dropline-crowd")?;
    let outcomes =
        kafka::consumer(settings, "dropline-crowd", &format!("crowd-{}", uuid::Uuid::new_v4().simple()))?;
    outcomes.subscribe(&[settings.topics.name(TopicKind::Reservations)])?;
    let chat = settings.topics.name(TopicKind::ChatOrders).to_owned();
    let holds = settings.topics.name(TopicKind::HoldActions).to_owned();
    let total_weight: u32 = templates.iter().map(|(w, _)| w).sum();
    let mut rng = StdRng::seed_from_u64(crowd.seed);
    let mut summary = Summary::default();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut first_decision_ms: Option<i64> = None;
    let mut holding: HashSet<String> = HashSet::new();
    let mut channel_of: HashMap<String, String> = HashMap::new();
    anyhow::ensure!(!crowd.channels.is_empty(), "a crowd chats on at least one channel");
    let tally = dropline_core::activity::Shared::default();
    let counting = tokio_util::sync::CancellationToken::new();
    let activity = tokio::spawn(dropline_core::activity::publish(
        tally.clone(),
        producer.clone(),
        settings.topics.name(TopicKind::ChatActivity).to_owned(),
        counting.clone(),
    ));
    let prefix = format!("{}-crowd-", crowd.drop_id);
    let start = Instant::now();
    let total = (crowd.rate * crowd.seconds as f64) as u64;
    let end = start + Duration::from_secs(crowd.seconds) + crowd.linger;
    let mut stream = outcomes.stream();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    let mut n = 0u64;
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {
                let due = ((start.elapsed().as_secs_f64() * crowd.rate) as u64).min(total);
                while n < due {
                    let mut pick = rng.gen_range(0..total_weight);
                    let text = templates
                        .iter()
                        .find(|(w, _)| if pick < *w { true } else { pick -= w; false })
                        .map_or("", |(_, t)| t.as_str());
                    let viewer = rng.gen_range(0..crowd.viewers);
                    let channel = &crowd.channels[viewer as usize % crowd.channels.len()];
                    let command = dropline_core::domain::is_command(text);
                    let now = kafka::now_ms();
                    tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).count(&crowd.drop_id, channel, command, now);
                    let count = summary.per_channel.entry(channel.clone()).or_default();
                    count.lines += 1;
                    summary.lines += 1;
                    n += 1;
                    if !command {
                        continue; // small talk: counted, not an order (as ingest does)
                    }
                    let order = ChatOrder {
                        order_id: format!("{prefix}{n}"),
                        drop_id: crowd.drop_id.clone(),
                        buyer_id: format!("twitch:{viewer}"),
                        buyer_name: format!("viewer{viewer}"),
                        channel: channel.clone(),
                        text: text.to_owned(),
                        sent_at_ms: now,
                        ..Default::default()
                    };
                    count.orders += 1;
                    summary.orders += 1;
                    sent_at.insert(order.order_id.clone(), Instant::now());
                    channel_of.insert(order.order_id.clone(), channel.clone());
                    kafka::publish(&producer, &chat, &crowd.drop_id, &order).await?;
                }
            }
            _ = progress.tick() => {
                eprintln!("  {:>4.0} s: {} chat lines, {} orders decided", start.elapsed().as_secs_f64(), summary.lines, summary.decided);
            }
            message = stream.next() => {
                let Some(Ok(message)) = message else { continue };
                let Ok(outcome) = kafka::decode::<ReservationOutcome, _>(&message) else { continue };
                if outcome.drop_id != crowd.drop_id {
                    continue;
                }
                let status = ReservationStatus::try_from(outcome.status).unwrap_or(ReservationStatus::Unspecified);
                *summary.outcomes.entry(status.label().to_owned()).or_default() += 1;
                if is_decision(status) {
                    if let Some(sent) = sent_at.remove(&outcome.order_id) {
                        summary.decided += 1;
                        if let Some(channel) = channel_of.get(&outcome.order_id) {
                            summary.per_channel.entry(channel.clone()).or_default().decided += 1;
                        }
                        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                        let _ = latency.record(us);
                    }
                    first_decision_ms.get_or_insert(outcome.decided_at_ms);
                }
                if matches!(status, ReservationStatus::Reserved | ReservationStatus::SoldOut) && outcome.remaining <= 0 {
                    let after = (outcome.decided_at_ms - first_decision_ms.unwrap_or(outcome.decided_at_ms)) as f64 / 1000.0;
                    summary.sold_out_after_s.entry(outcome.sku.clone()).or_insert(after);
                }
                // Reservations of the crowd: some are paid within a few seconds, the rest expire.
                if status == ReservationStatus::Reserved
                    && outcome.order_id.starts_with(&prefix)
                    && holding.insert(outcome.order_id.clone())
                    && rng.gen_bool(crowd.confirm)
                {
                    let pay = HoldAction {
                        order_id: outcome.order_id.clone(),
                        drop_id: crowd.drop_id.clone(),
                        action: HoldActionKind::Confirm as i32,
                        sent_at_ms: kafka::now_ms(),
                    };
                    kafka::publish(&producer, &holds, &crowd.drop_id, &pay).await?;
                    summary.paid += 1;
                    if let Some(channel) = channel_of.get(&outcome.order_id) {
                        summary.per_channel.entry(channel.clone()).or_default().paid += 1;
                    }
                }
            }
        }
    }
    counting.cancel();
    activity.await?;
    summary.p50_ms = latency.value_at_quantile(0.5) as f64 / 1000.0;
    summary.p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
    summary.max_ms = latency.max() as f64 / 1000.0;
    Ok(summary)
}
