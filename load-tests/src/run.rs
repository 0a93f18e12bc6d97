//! One load run: fresh topics, a matcher started for it, drops opened, chat lines sent open-loop
//! on the scenario's schedule, every outcome checked and timed from the moment its line was due
//! (so a stalled system cannot hide its backlog: no coordinated omission), then the Redis state
//! checked, and a report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dropline_core::keys::Keyspace;
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{
    drop_trigger, CatalogItem, ChatOrder, DropTrigger, HoldAction, HoldActionKind, OpenDrop,
    ReservationOutcome, ReservationStatus,
};
use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use redis::AsyncCommands;
use tokio::sync::mpsc;

use crate::check::{is_decision, Checker, Fold, Rules};
use crate::inside::matcher_histograms;
pub(crate) use crate::matcher::{free_port, Matcher};
use crate::report::{Latency, Report, Second};
use crate::scenario::Scenario;

/// Longest wait for the last answers after the last line was sent.
const DRAIN: Duration = Duration::from_secs(30);
/// A hold open this long after its expiry was not ended by the sweeper: stuck.
const OVERDUE_GRACE_MS: i64 = 15_000;
/// Longest wait after the load for every hold to end (waitlists drain one hold at a time).
const SETTLE_CAP: Duration = Duration::from_secs(120);

/// Which matcher decides the orders.
#[derive(Debug, Clone)]
pub enum MatcherMode {
    /// Start this binary for the run (its memory is sampled).
    Spawn(PathBuf),
    /// Run one inside this process (tests; no memory figure).
    InProcess,
    /// One is already running on the configured topics (`DROPLINE_TOPIC_PREFIX`).
    External,
}

/// The drops of the run: ids and, per drop, its SKUs with the words a viewer types.
struct Catalog {
    drops: Vec<String>,
    /// (sku, product word) per SKU index.
    skus: Vec<(String, String)>,
}

fn catalog(run: &str, scenario: &Scenario) -> Catalog {
    let drops = (0..scenario.drops.count).map(|d| format!("{run}-d{d}")).collect();
    let skus = (0..scenario.drops.skus).map(|k| (format!("ITEM{k}-M"), format!("item{k}"))).collect();
    Catalog { drops, skus }
}

/// Shared counters the progress line reads.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    orders: AtomicU64,
    decided: AtomicU64,
    producer_errors: AtomicU64,
    /// When the last outcome arrived (ms since the run's start).
    heard_ms: AtomicU64,
}

/// What the consumer folds outcomes into.
struct Tally {
    checker: Checker,
    latency_us: Histogram<u64>,
    per_second: BTreeMap<u64, (u64, Histogram<u64>)>,
    by_status: BTreeMap<String, u64>,
    /// (due, latency) of every first decision, seconds.
    waits: Vec<(f64, f64)>,
}

pub async fn run(scenario: Scenario, matcher: MatcherMode) -> Result<Report> {
    let started_at_ms = kafka::now_ms();
    let run = format!("load-{}-{started_at_ms}", scenario.name);
    let mut settings = Settings::from_env()?;
    if !matches!(matcher, MatcherMode::External) {
        settings.set_topic_prefix(&format!("{run}."))?;
    }
    prepare(&settings).await?;

    let stop_in_process = tokio_util::sync::CancellationToken::new();
    let _stop_guard = stop_in_process.clone().drop_guard();
    let matcher = match matcher {
        MatcherMode::Spawn(binary) => Some(Matcher::start(&binary, &settings, &run).await?),
        MatcherMode::InProcess => {
            let config = dropline_matcher::config::MatcherConfig {
                group: run.clone(),
                admin: "127.0.0.1:0".parse()?,
                ..Default::default()
            };
            tokio::spawn(dropline_matcher::service::run(settings.clone(), config, stop_in_process.clone()));
            None
        }
        MatcherMode::External => None,
    };
    let watch =
        Watch { admin: matcher.as_ref().map(|m| m.admin), pid: matcher.as_ref().map(|m| m.process.id()) };
    let (report, ()) =
        drive(&settings, scenario, &run, started_at_ms, watch, false, |_probe| async { Ok(()) }).await?;
    Ok(report)
}

/// Waits for the broker and creates the run's topics.
pub(crate) async fn prepare(settings: &Settings) -> Result<()> {
    kafka::wait_for_broker(settings, Duration::from_secs(30)).await.context("the broker does not answer")?;
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(settings, &names, settings.partitions, 1).await?;
    Ok(())
}

/// The matcher a run watches: its admin port (inside latency) and process (memory).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Watch {
    pub admin: Option<u16>,
    pub pid: Option<u32>,
}

/// What a task running beside the load can see: the run's clock and how many orders are in flight.
#[derive(Clone)]
pub(crate) struct Probe {
    pub start: Instant,
    counters: Arc<Counters>,
}

impl Probe {
    /// Orders sent and not yet decided.
    pub fn in_flight(&self) -> u64 {
        let orders = self.counters.orders.load(Ordering::Relaxed);
        orders.saturating_sub(self.counters.decided.load(Ordering::Relaxed))
    }
}

/// One run on `settings`' topics, with matchers already started for them: opens the drops, sends
/// the scenario's lines while `beside` runs (a fault, for the fault suite), waits for every
/// decision, then (with `settle_holds`) for every hold to be paid, cancelled or expired, checks
/// the promises and Redis, and reports.
pub(crate) async fn drive<F, Fut, T>(
    settings: &Settings,
    scenario: Scenario,
    run: &str,
    started_at_ms: i64,
    watch: Watch,
    settle_holds: bool,
    beside: F,
) -> Result<(Report, T)>
where
    F: FnOnce(Probe) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut redis = dropline_core::redis::connect(&settings.redis).await.context("Redis does not answer")?;
    // Outcomes are read from the start of the run's topic.
    let outcomes = kafka::consumer(settings, "dropline-load", &format!("{run}-reader"))?;
    outcomes.subscribe(&[settings.topics.name(TopicKind::Reservations)])?;
    let producer = kafka::producer(settings, "dropline-load")?;

    let catalog = catalog(run, &scenario);
    open_drops(settings, &producer, &scenario, &catalog).await?;
    for drop_id in &catalog.drops {
        let key = settings.keyspace.drop_key(drop_id, "meta");
        let mut open = false;
        for _ in 0..300 {
            let state: Option<String> = redis.hget(&key, "state").await?;
            if state.as_deref() == Some("open") {
                open = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !open {
            bail!("drop {drop_id} was not opened within 30 s: is a matcher running on these topics?");
        }
    }

    let cpu_before = watch.pid.and_then(Matcher::cpu_of);
    // The matcher's histograms count from its start: the run's share is the difference.
    let inside_before = match watch.admin {
        Some(port) => matcher_histograms(port).await,
        None => None,
    };
    let counters = Arc::new(Counters::default());
    let tally = Arc::new(Mutex::new(Tally {
        checker: Checker::new(Rules {
            stock: scenario.drops.stock,
            limit_per_buyer: scenario.drops.limit_per_buyer,
        }),
        latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        per_second: BTreeMap::new(),
        by_status: BTreeMap::new(),
        waits: Vec::new(),
    }));
    let start = Instant::now();
    let (deliveries_tx, deliveries_rx) = mpsc::channel::<DeliveryFuture>(100_000);
    let confirmer = tokio::spawn(await_deliveries(deliveries_rx, counters.clone()));
    let consumer = tokio::spawn(consume(
        outcomes,
        producer.clone(),
        settings.topics.name(TopicKind::HoldActions).to_owned(),
        scenario.clone(),
        run.to_owned(),
        start,
        tally.clone(),
        counters.clone(),
        deliveries_tx.clone(),
    ));

    // Progress, and the matcher's memory, once a second.
    let rss_max = Arc::new(Mutex::new(0.0f64));
    let progress = {
        let (counters, tally, rss_max) = (counters.clone(), tally.clone(), rss_max.clone());
        let total = scenario.due(scenario.duration_s as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let rss = watch.pid.and_then(Matcher::rss_of);
                if let Some(rss) = rss {
                    let mut max = rss_max.lock().unwrap_or_else(PoisonError::into_inner);
                    *max = max.max(rss);
                }
                let p99 =
                    tally.lock().unwrap_or_else(PoisonError::into_inner).latency_us.value_at_quantile(0.99);
                eprintln!(
                    "[load] {:>5.1} s  sent {:>8}/{total}  orders {:>8}  decided {:>8}  p99 {:>8.2} ms  matcher {}",
                    start.elapsed().as_secs_f64(),
                    counters.sent.load(Ordering::Relaxed),
                    counters.orders.load(Ordering::Relaxed),
                    counters.decided.load(Ordering::Relaxed),
                    p99 as f64 / 1000.0,
                    rss.map_or_else(|| "-".to_owned(), |r| format!("{r:.0} MiB")),
                );
            }
        })
    };

    let probe = Probe { start, counters: counters.clone() };
    let (sent, beside) = tokio::join!(
        generate(settings, &producer, &scenario, run, &catalog, start, &counters, &deliveries_tx),
        beside(probe)
    );
    let (sent, beside) = (sent?, beside?);
    let send_time = start.elapsed();
    drop(deliveries_tx);

    // Drain: wait for every order's decision (bounded).
    let drained_by = Instant::now() + DRAIN;
    while counters.decided.load(Ordering::Relaxed) < sent.orders.len() as u64 && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = start.elapsed();
    if settle_holds {
        // Every hold ends: paid, cancelled, or expired by the sweeper (its stock back on sale). A
        // hold still open may be a fresh promotion — after the load each unpaid hold that expires
        // hands its unit to the next buyer in line, so a waitlist drains hold by hold — so wait
        // while any open hold is within its window (+ grace), up to SETTLE_CAP.
        let cap = Instant::now() + SETTLE_CAP;
        // Every 10 s, how the drain goes: holds open, in line, and the outcomes since the last line
        // (a drain that never ends shows here whether units keep cycling, and how).
        let mut said =
            (Instant::now(), tally.lock().unwrap_or_else(PoisonError::into_inner).by_status.clone());
        loop {
            let (open, overdue, waiting, by_status) = {
                let t = tally.lock().unwrap_or_else(PoisonError::into_inner);
                let (open, overdue) =
                    (t.checker.open_holds(), t.checker.overdue_holds(kafka::now_ms(), OVERDUE_GRACE_MS));
                (open, overdue, t.checker.in_line(), t.by_status.clone())
            };
            let heard = Duration::from_millis(counters.heard_ms.load(Ordering::Relaxed));
            if crate::check::holds_settled(open, overdue, start.elapsed().saturating_sub(heard))
                || Instant::now() >= cap
            {
                break;
            }
            if said.0.elapsed() >= Duration::from_secs(10) {
                let since: Vec<String> = by_status
                    .iter()
                    .filter_map(|(k, n)| {
                        let d = n - said.1.get(k).copied().unwrap_or(0);
                        (d > 0).then(|| format!("{k} {d}"))
                    })
                    .collect();
                eprintln!(
                    "[load] draining: {open} holds open ({overdue} overdue), {waiting} in line; last 10 s: {}",
                    since.join(", ")
                );
                said = (Instant::now(), by_status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Outcomes of holds expiring right now come from the sweeper: give them a moment to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    consumer.abort();
    progress.abort();
    let _ = confirmer.await;

    // The consumer and progress tasks are aborted: take what they folded.
    let mut tally =
        std::mem::replace(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner), Tally::empty());
    let missing: Vec<&String> = sent.orders.iter().filter(|id| !tally.checker.is_decided(id)).collect();
    if !missing.is_empty() {
        tally.checker.report(format!(
            "{} of {} orders never answered within {DRAIN:?} (first: {})",
            missing.len(),
            sent.orders.len(),
            missing[0]
        ));
    }
    if settle_holds && tally.checker.open_holds() > 0 {
        let overdue = tally.checker.overdue_holds(kafka::now_ms(), OVERDUE_GRACE_MS);
        tally.checker.report(format!(
            "{} holds neither paid, cancelled nor expired after the load ({overdue} of them more than {} s \
             past their expiry; waited at most {SETTLE_CAP:?} for the waitlists to drain)",
            tally.checker.open_holds(),
            OVERDUE_GRACE_MS / 1000,
        ));
    }
    tally.checker.finish();
    check_redis(&mut redis, &settings.keyspace, &scenario, &catalog, settle_holds, &mut tally.checker)
        .await?;
    let inside = match watch.admin {
        Some(port) => matcher_histograms(port).await.and_then(|after| after.since(inside_before.as_ref())),
        None => None,
    };

    let decided = tally.checker.decided() as u64;
    let hist = &tally.latency_us;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let per_second = tally
        .per_second
        .iter()
        .map(|(t, (n, h))| Second {
            t: *t,
            decided: *n,
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        })
        .collect();
    let rss = *rss_max.lock().unwrap_or_else(PoisonError::into_inner);
    let cpu = watch.pid.and_then(Matcher::cpu_of).map(|used| used - cpu_before.unwrap_or(0.0));
    let report = Report {
        scenario,
        run_id: run.to_owned(),
        started_at_ms,
        send_s: send_time.as_secs_f64(),
        total_s: finished.as_secs_f64(),
        lines_sent: counters.sent.load(Ordering::Relaxed),
        orders_sent: sent.orders.len() as u64,
        duplicates_sent: sent.duplicates,
        noise_sent: sent.noise,
        garbage_sent: sent.garbage,
        producer_errors: counters.producer_errors.load(Ordering::Relaxed),
        decisions: decided,
        decisions_per_s: decided as f64 / finished.as_secs_f64().max(1e-9),
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: hist.max() as f64 / 1000.0,
            mean: hist.mean() / 1000.0,
        },
        outcomes: tally.by_status,
        redelivered: tally.checker.redelivered(),
        matcher_rss_max_mib: (rss > 0.0).then_some(rss),
        matcher_cpu_s: cpu,
        matcher_inside_ms: inside,
        per_second,
        waits: tally.waits,
        violations: tally.checker.violations().to_vec(),
    };
    Ok((report, beside))
}

impl Tally {
    fn empty() -> Self {
        Tally {
            checker: Checker::default(),
            latency_us: Histogram::new(3).expect("3 significant digits is a valid histogram"),
            per_second: BTreeMap::new(),
            by_status: BTreeMap::new(),
            waits: Vec::new(),
        }
    }
}

async fn open_drops(
    settings: &Settings,
    producer: &FutureProducer,
    scenario: &Scenario,
    catalog: &Catalog,
) -> Result<()> {
    let topic = settings.topics.name(TopicKind::DropTriggers);
    for drop_id in &catalog.drops {
        let items = catalog
            .skus
            .iter()
            .enumerate()
            .map(|(k, (sku, word))| CatalogItem {
                sku: sku.clone(),
                name: word.clone(),
                product: word.clone(),
                size: "M".into(),
                stock: scenario.drops.stock,
                price_cents: 2_500,
                item_number: u32::try_from(k + 1).unwrap_or(u32::MAX),
                ..Default::default()
            })
            .collect();
        let open = DropTrigger {
            drop_id: drop_id.clone(),
            sent_at_ms: kafka::now_ms(),
            trigger_id: format!("open-{drop_id}"),
            action: Some(drop_trigger::Action::Open(OpenDrop {
                items,
                limit_per_buyer: scenario.drops.limit_per_buyer,
                hold_seconds: scenario.drops.hold_s,
                waitlist: scenario.drops.waitlist,
                waitlist_cap: scenario.drops.waitlist_cap,
                shards: scenario.drops.shards,
                title: format!("load {drop_id}"),
                ..Default::default()
            })),
        };
        kafka::publish(producer, topic, drop_id, &open).await?;
    }
    Ok(())
}

/// What the generator sent.
struct Sent {
    /// Ids of the orders that must each get one decision.
    orders: Vec<String>,
    duplicates: u64,
    noise: u64,
    garbage: u64,
}

const NOISE: [&str; 6] =
    ["lets gooo", "W drop", "how much is shipping?", "first!", "love the colors", "!help"];

#[allow(clippy::too_many_arguments)]
async fn generate(
    settings: &Settings,
    producer: &FutureProducer,
    scenario: &Scenario,
    run: &str,
    catalog: &Catalog,
    start: Instant,
    counters: &Counters,
    deliveries: &mpsc::Sender<DeliveryFuture>,
) -> Result<Sent> {
    let topic = settings.topics.name(TopicKind::ChatOrders);
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let zipf = Zipf::new(u64::from(scenario.drops.skus), scenario.drops.zipf_s.max(1e-9))
        .map_err(|e| anyhow::anyhow!("zipf: {e:?}"))?;
    let total = scenario.due(scenario.duration_s as f64);
    let mut sent = Sent { orders: Vec::new(), duplicates: 0, noise: 0, garbage: 0 };
    let mut recent: Vec<ChatOrder> = Vec::new();
    let mut n: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while n < total {
        tick.tick().await;
        let due = scenario.due(start.elapsed().as_secs_f64()).min(total);
        while n < due {
            let drop_index = rng.gen_range(0..catalog.drops.len());
            let drop_id = &catalog.drops[drop_index];
            let roll: f64 = rng.gen();
            let (key, payload) = if roll < scenario.mix.garbage {
                sent.garbage += 1;
                let len = rng.gen_range(1..64);
                (drop_id.clone(), (0..len).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>())
            } else if roll < scenario.mix.garbage + scenario.mix.duplicate && !recent.is_empty() {
                sent.duplicates += 1;
                let again = &recent[rng.gen_range(0..recent.len())];
                (again.drop_id.clone(), again.encode_to_vec())
            } else {
                let buyer = rng.gen_range(0..scenario.buyers.count);
                let noise = roll < scenario.mix.garbage + scenario.mix.duplicate + scenario.mix.noise;
                let text = if noise {
                    NOISE[rng.gen_range(0..NOISE.len())].to_owned()
                } else {
                    let k = (zipf.sample(&mut rng) as usize).clamp(1, catalog.skus.len()) - 1;
                    let word = &catalog.skus[k].1;
                    match rng.gen_range(0..10) {
                        0 => format!("!buy {} m 2", word.to_uppercase()),
                        1 => format!("!BUY {word} M"),
                        _ => format!("!buy {word} m"),
                    }
                };
                let order = ChatOrder {
                    order_id: format!("{run}:{n}"),
                    drop_id: drop_id.clone(),
                    buyer_id: format!("viewer{buyer}"),
                    channel: "twitch:#load".into(),
                    text,
                    sent_at_ms: kafka::now_ms(),
                    ..Default::default()
                };
                if noise {
                    sent.noise += 1;
                } else {
                    sent.orders.push(order.order_id.clone());
                    counters.orders.fetch_add(1, Ordering::Relaxed);
                    if recent.len() < 1000 {
                        recent.push(order.clone());
                    } else {
                        let slot = rng.gen_range(0..recent.len());
                        recent[slot] = order.clone();
                    }
                }
                (drop_id.clone(), order.encode_to_vec())
            };
            enqueue(producer, topic, &key, &payload, counters, deliveries).await;
            counters.sent.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
    }
    Ok(sent)
}

/// Hands one message to the producer (waiting while its local queue is full).
async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    counters: &Counters,
    deliveries: &mpsc::Sender<DeliveryFuture>,
) {
    match kafka::enqueue(producer, topic, key, payload, &tokio_util::sync::CancellationToken::new()).await {
        Ok(delivery) => {
            let _ = deliveries.send(delivery).await;
        }
        Err(_) => {
            counters.producer_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn await_deliveries(mut deliveries: mpsc::Receiver<DeliveryFuture>, counters: Arc<Counters>) {
    let mut pending = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            delivery = deliveries.recv() => match delivery {
                Some(delivery) => pending.push(delivery),
                None => break,
            },
            Some(result) = pending.next(), if !pending.is_empty() => {
                if !matches!(result, Ok(Ok(_))) {
                    counters.producer_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    while let Some(result) = pending.next().await {
        if !matches!(result, Ok(Ok(_))) {
            counters.producer_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads outcomes: checks them, times first decisions from their line's due time, and pays for
/// (or cancels) a share of the reservations.
#[allow(clippy::too_many_arguments)]
async fn consume(
    consumer: StreamConsumer,
    producer: FutureProducer,
    hold_topic: String,
    scenario: Scenario,
    run: String,
    start: Instant,
    tally: Arc<Mutex<Tally>>,
    counters: Arc<Counters>,
    deliveries: mpsc::Sender<DeliveryFuture>,
) {
    let mut rng = StdRng::seed_from_u64(scenario.seed ^ 0x5eed);
    let prefix = format!("{run}:");
    let mut stream = consumer.stream();
    while let Some(message) = stream.next().await {
        let Ok(message) = message else { continue };
        let Ok(outcome) = kafka::decode::<ReservationOutcome, _>(&message) else { continue };
        let Some(n) = outcome.order_id.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let now = start.elapsed();
        counters.heard_ms.store(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let status = ReservationStatus::try_from(outcome.status).unwrap_or(ReservationStatus::Unspecified);
        let fold = {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            *tally.by_status.entry(status.label().to_owned()).or_default() += 1;
            let fold = tally.checker.add(&outcome);
            if fold == Fold::First && is_decision(status) {
                let due = Duration::from_secs_f64(scenario.due_at(n));
                let latency = now.saturating_sub(due).as_micros().max(1);
                let latency = u64::try_from(latency).unwrap_or(u64::MAX);
                let _ = tally.latency_us.record(latency);
                tally.waits.push((due.as_secs_f64(), latency as f64 / 1e6));
                let second = tally.per_second.entry(now.as_secs()).or_insert_with(|| {
                    (0, Histogram::new(3).expect("3 significant digits is a valid histogram"))
                });
                second.0 += 1;
                let _ = second.1.record(latency);
            }
            fold
        };
        match fold {
            Fold::First => {
                counters.decided.fetch_add(1, Ordering::Relaxed);
            }
            // Paid for (or cancelled) the first time it arrived.
            Fold::Redelivered => continue,
            Fold::Later => {}
        }
        // Payment: a share of the reservations is paid, a few cancelled, the rest expire.
        if status == ReservationStatus::Reserved {
            let roll: f64 = rng.gen();
            let kind = if roll < scenario.mix.confirm {
                Some(HoldActionKind::Confirm)
            } else if roll < scenario.mix.confirm + (1.0 - scenario.mix.confirm) / 4.0 {
                Some(HoldActionKind::Cancel)
            } else {
                None
            };
            if let Some(kind) = kind {
                let action = HoldAction {
                    order_id: outcome.order_id.clone(),
                    drop_id: outcome.drop_id.clone(),
                    action: kind as i32,
                    sent_at_ms: kafka::now_ms(),
                };
                enqueue(
                    &producer,
                    &hold_topic,
                    &outcome.drop_id,
                    &action.encode_to_vec(),
                    &counters,
                    &deliveries,
                )
                .await;
            }
        }
    }
}

/// The drops' keys after the run: no negative stock, every unit accounted for (for sale + held +
/// sold = put on sale, over a split drop's shards and the units in transit between them) and,
/// once holds have settled, none held.
async fn check_redis(
    redis: &mut dropline_core::redis::Conn,
    keyspace: &Keyspace,
    scenario: &Scenario,
    catalog: &Catalog,
    settled: bool,
    checker: &mut Checker,
) -> Result<()> {
    type Hash = std::collections::HashMap<String, i64>;
    for drop_id in &catalog.drops {
        let mut sums: BTreeMap<&str, (i64, i64, i64, i64)> = BTreeMap::new();
        for id in dropline_core::shards::key_ids(drop_id, scenario.drops.shards) {
            let key = |name: &str| keyspace.drop_key(&id, name);
            let mut pipe = redis::pipe();
            pipe.hgetall(key("stock")).hgetall(key("held")).hgetall(key("sold")).hgetall(key("total"));
            pipe.cmd("HGETALL").arg(key("meta"));
            // Redis may have just been restarted (the fault suite): the connection comes back.
            let mut attempt = 0;
            #[allow(clippy::type_complexity)]
            let (stock, held, sold, total, meta): (
                Hash,
                Hash,
                Hash,
                Hash,
                Vec<(Vec<u8>, Vec<u8>)>,
            ) = loop {
                match pipe.query_async(redis).await {
                    Ok(hashes) => break hashes,
                    Err(e) if attempt < 20 => {
                        attempt += 1;
                        eprintln!("[load] reading the final state: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            // Units leaving this shard in a transfer not yet settled (journal: to SEP sku SEP units).
            // (taken from this shard, not yet given to the recipient: journal `to SEP sku SEP units`).
            let mut in_transit: Hash = Hash::new();
            for (field, value) in &meta {
                let Some(transfer) = field.strip_prefix(b"xfer\x1f") else { continue };
                let value = String::from_utf8_lossy(value);
                let fields: Vec<&str> = value.split('\u{1f}').collect();
                let [to, sku, units] = fields.as_slice() else { continue };
                let mut marker = b"x\x1f".to_vec();
                marker.extend_from_slice(transfer);
                let given: bool = redis::cmd("HEXISTS")
                    .arg(keyspace.drop_key(to, "decisions"))
                    .arg(marker)
                    .query_async(redis)
                    .await?;
                if !given {
                    *in_transit.entry((*sku).to_owned()).or_default() += units.parse::<i64>().unwrap_or(0);
                }
            }
            for (sku, _) in &catalog.skus {
                let get = |h: &Hash| h.get(sku).copied().unwrap_or(0);
                let (s, h, d, t) = (get(&stock), get(&held), get(&sold), get(&total));
                if s < 0 || h < 0 || d < 0 {
                    checker.report(format!(
                        "{id} {sku}: negative count in Redis (stock {s}, held {h}, sold {d})"
                    ));
                }
                if s + h + d != t {
                    checker
                        .report(format!("{id} {sku}: {s} for sale + {h} held + {d} sold != {t} put on sale"));
                }
                if settled && h != 0 {
                    let why =
                        stuck_holds(redis, keyspace, &id, sku).await.unwrap_or_else(|e| format!("({e})"));
                    checker.report(format!("{id} {sku}: {h} units still held after every hold ended: {why}"));
                }
                let sum = sums.entry(sku.as_str()).or_default();
                *sum = (sum.0 + s, sum.1 + h, sum.2 + d, sum.3 + t + get(&in_transit));
            }
        }
        for (sku, (_, _, _, t)) in sums {
            if t != i64::from(scenario.drops.stock) {
                checker.report(format!(
                    "{drop_id} {sku}: {t} units in Redis (and in transit), {} put on sale",
                    scenario.drops.stock
                ));
            }
        }
    }
    Ok(())
}

/// What a shard says about its holds of `sku` that never ended: each hold's decision (source
/// stream and offset), its expiry, and the shard's applied offsets per stream — what the sweeper's
/// "expire only once the reservation is out" rule compares.
async fn stuck_holds(
    redis: &mut dropline_core::redis::Conn,
    keyspace: &Keyspace,
    id: &str,
    sku: &str,
) -> Result<String> {
    let keys = keyspace.drop_keys(id);
    let holds = dropline_matcher::step::holds(redis, &keys, 50).await?;
    let offsets: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(keyspace.drop_key(id, "offsets")).query_async(redis).await?;
    let now = kafka::now_ms();
    let out: Vec<String> = holds
        .iter()
        .filter(|h| h.sku == sku)
        .map(|h| {
            format!(
                "hold {} ({} x{} for {}) decided from {}@{}, due {} ms ago",
                h.order_id,
                h.sku,
                h.quantity,
                h.buyer,
                h.source.stream,
                h.source.offset,
                now - h.expires_at_ms
            )
        })
        .collect();
    let mut offsets: Vec<String> = offsets.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    offsets.sort();
    Ok(format!("{}; applied offsets {}", out.join("; "), offsets.join(",")))
}
