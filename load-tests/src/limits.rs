//! The limits, side by side in one run (`make bench-limits`): what one machine can do at each
//! layer, so the matcher's numbers can be read against them.
//!
//! (a) `redis-benchmark` calling the project's own reservation function once per order, pipelined
//!     (the best one-order-at-a-time use of Redis); (b) a naive WATCH/MULTI/EXEC transaction per
//!     order, one client, as hand-written flash sales do; (c) the matcher's batched step alone (256
//!     orders per call, [`STEP_IN_FLIGHT`] calls in flight so Redis never idles while the client
//!     builds the next, as (a)'s 50 clients keep it busy); (d) a bare consume → produce passthrough over the same broker; (e) the
//!     matcher end to end, draining a backlog through the broker and Redis (the span between its
//!     first and last outcome, by the outcomes' timestamps).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dropline_core::domain::{BuyerId, Quantity, Sku};
use dropline_core::{kafka, Settings, TopicKind};
use dropline_matcher::step::{self, DropKeys, Op, ReplyTo, Source};
use dropline_proto::v1::{drop_trigger, CatalogItem, ChatOrder, DropTrigger, OpenDrop, ReservationOutcome};
use futures::StreamExt;
use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::Message as _;
use redis::AsyncCommands;

/// How long the Redis measures run, and how many messages the broker measures move.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub redis_for: Duration,
    pub messages: u64,
}

/// Step calls each shard keeps in flight in (c).
pub const STEP_IN_FLIGHT: usize = 3;

/// One line of numbers, orders (or messages) per second, and Redis CPU per order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub evalsha: f64,
    pub naive: f64,
    pub step: f64,
    pub passthrough: f64,
    pub matcher: f64,
    /// µs of Redis CPU per order in (a) and (c), from `INFO commandstats` (`cmdstat_fcall`).
    pub evalsha_redis_us: f64,
    pub step_redis_us: f64,
}

impl Limits {
    /// The last line of `make bench-limits`, for machines to read.
    pub fn line(&self) -> String {
        format!(
            "limits: evalsha={:.0}/s naive={:.0}/s step={:.0}/s passthrough={:.0}/s matcher={:.0}/s redis_us_per_order: evalsha={:.2} step={:.2} step/evalsha={:.2} step/naive={:.2} matcher/passthrough={:.2}",
            self.evalsha,
            self.naive,
            self.step,
            self.passthrough,
            self.matcher,
            self.evalsha_redis_us,
            self.step_redis_us,
            self.step / self.evalsha.max(1e-9),
            self.step / self.naive.max(1e-9),
            self.matcher / self.passthrough.max(1e-9),
        )
    }
}

const SKU: &str = "HOODIE-L";

fn open_op(trigger: &str) -> Result<Op> {
    Ok(Op::Open {
        source: Source::new('t', 0, 0),
        trigger_id: trigger.into(),
        stock: vec![(Sku::parse(SKU)?, 2_000_000_000)],
        limit_per_buyer: 0,
        hold_ms: 3_600_000,
        waitlist: false,
        waitlist_cap: 0,
        catalog: Vec::new(),
    })
}

/// Order `n` of lane `lane` (each lane its own stream letter and ids).
fn order_op(stream: char, lane: usize, n: u64) -> Result<Op> {
    Ok(Op::Order {
        source: Source::new(stream, 0, i64::try_from(n)?),
        order_id: format!("o{lane}-{n}"),
        buyer: BuyerId::parse(&format!("b{}", n % 10_000))?,
        item: Some((Sku::parse(SKU)?, Quantity::ONE)),
        verdict: None,
        reply_to: ReplyTo::default(),
    })
}

async fn clean(conn: &mut dropline_core::redis::Conn, keys: &DropKeys) {
    let _: Result<i64, _> = redis::cmd("DEL").arg(keys.all().as_slice()).query_async(conn).await;
}

/// Redis's own count of `FCALL`s and the CPU they took (µs), from `INFO commandstats`.
async fn fcall_cpu(conn: &mut dropline_core::redis::Conn) -> Result<(u64, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    let line = info.lines().find_map(|l| l.strip_prefix("cmdstat_fcall:")).unwrap_or("calls=0,usec=0");
    let field = |name: &str| -> u64 {
        line.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap_or(0)
    };
    Ok((field("calls"), field("usec")))
}

/// µs of Redis CPU per order between two [`fcall_cpu`] readings.
fn per_order(before: (u64, u64), after: (u64, u64), orders: u64) -> f64 {
    after.1.saturating_sub(before.1) as f64 / orders.max(1) as f64
}

/// (a) `redis-benchmark`: one `FCALL dropline_apply` per order (a fresh order id and Kafka stream
/// each time, so every call takes the full decision path), 50 clients, pipelines of 16. Orders/s
/// and µs of Redis CPU per order.
pub async fn evalsha(settings: &Settings, run: &str, sizes: Sizes) -> Result<(f64, f64)> {
    let mut conn = dropline_core::redis::connect(&settings.redis).await?;
    step::load(&mut conn).await?;
    let keys = settings.keyspace.drop_keys(&format!("{run}-evalsha"));
    step::apply(&mut conn, 0, &[(&keys, &[open_op("open")?])]).await?;
    let template = Op::Order {
        source: Source { stream: "o__rand_int__".into(), offset: 1 },
        order_id: "o__rand_int__".into(),
        buyer: BuyerId::parse("b__rand_int__")?,
        item: Some((Sku::parse(SKU)?, Quantity::ONE)),
        verdict: None,
        reply_to: ReplyTo::default(),
    };
    let cmd = step::apply_cmd(&keys, 1, std::slice::from_ref(&template));
    let mut args: Vec<String> = Vec::new();
    for arg in cmd.args_iter() {
        match arg {
            redis::Arg::Simple(bytes) => {
                args.push(String::from_utf8(bytes.to_vec()).context("a printable argument")?)
            }
            _ => bail!("unexpected non-byte argument"),
        }
    }
    if args.iter().any(|a| a.contains('\u{1f}') || a.contains(' ')) {
        bail!("the order's arguments cannot be passed on a command line");
    }
    let url = redis::IntoConnectionInfo::into_connection_info(settings.redis.as_str())?;
    let (host, port) = match url.addr().clone() {
        redis::ConnectionAddr::Tcp(host, port) => (host, port),
        _ => bail!("redis-benchmark needs a TCP Redis"),
    };
    let requests = (sizes.redis_for.as_secs_f64() * 40_000.0) as u64;
    let cpu_before = fcall_cpu(&mut conn).await?;
    let output = Command::new("redis-benchmark")
        .args(["-h", &host, "-p", &port.to_string(), "-c", "50", "-P", "16", "-r", "1000000000"])
        .args(["-n", &requests.max(10_000).to_string(), "-q", "--csv"])
        .args(&args)
        .output()
        .context("running redis-benchmark (Debian package redis-tools)")?;
    let cpu_after = fcall_cpu(&mut conn).await?;
    // Every call must have taken the full path: a unit reserved per request.
    let left: i64 = conn.hget(keys.stock(), SKU).await?;
    let reserved = 2_000_000_000 - left;
    clean(&mut conn, &keys).await;
    let requests = requests.max(10_000);
    if (reserved as f64) < requests as f64 * 0.99 {
        bail!("redis-benchmark's calls reserved {reserved} units for {requests} requests: they did not run the step");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // --csv: "test","rps",… ; the data line's second field is requests per second.
    let rps = text
        .lines()
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|f| f.trim_matches('"').parse::<f64>().ok())
        .next_back()
        .with_context(|| {
            format!("no rate in redis-benchmark's output: {text} {}", String::from_utf8_lossy(&output.stderr))
        })?;
    Ok((rps, per_order(cpu_before, cpu_after, requests)))
}

/// (f) The longest single calls, which bound how long Redis is blocked: a drop with `waiting`
/// orders in line is restocked with as many units at once, swept, swept again once the new holds'
/// payment window is over (each expiry promotes the next in line), closed, and swept once more.
/// Redis CPU of each call, ms, from `INFO commandstats`.
pub async fn bounded_calls(settings: &Settings, run: &str, waiting: u32) -> Result<Vec<(&'static str, f64)>> {
    let mut conn = dropline_core::redis::connect(&settings.redis).await?;
    step::load(&mut conn).await?;
    let keys = settings.keyspace.drop_keys(&format!("{run}-bounded"));
    let sku = Sku::parse(SKU)?;
    let hold_ms = 3_000;
    let open = Op::Open {
        source: Source::new('t', 0, 0),
        trigger_id: "open".into(),
        stock: vec![(sku.clone(), 0)],
        limit_per_buyer: 0,
        hold_ms,
        waitlist: true,
        waitlist_cap: 0,
        catalog: Vec::new(),
    };
    step::apply(&mut conn, 1, &[(&keys, &[open])]).await?;
    let orders: Vec<Op> = (0..u64::from(waiting)).map(|n| order_op('o', 0, n + 1)).collect::<Result<_>>()?;
    for chunk in orders.chunks(256) {
        step::apply(&mut conn, 2, &[(&keys, chunk)]).await?;
    }
    let t = 1_000;
    let restock =
        Op::Restock { source: Source::new('t', 0, 1), trigger_id: "restock".into(), sku, quantity: waiting };
    let close = Op::Close { source: Source::new('t', 0, 2), trigger_id: "close".into() };
    let (budget, outbox) = (step::SWEEP_BUDGET, step::SWEEP_OUTBOX);
    let mut out = Vec::new();
    let after_window = t + i64::try_from(hold_ms)?;
    // Each call: an operation to apply, or none for a sweep.
    let calls = [
        ("restock", t, Some(&restock)),
        ("sweep", t + 1, None),
        ("expiry-sweep", after_window + 2, None),
        ("close", after_window + 3, Some(&close)),
        ("closed-sweep", after_window + 4, None),
    ];
    for (what, at, op) in calls {
        let before = fcall_cpu(&mut conn).await?;
        match op {
            Some(op) => drop(step::apply(&mut conn, at, &[(&keys, std::slice::from_ref(op))]).await?),
            None => drop(step::sweep(&mut conn, &keys, at, budget, outbox, &[]).await?),
        }
        let after = fcall_cpu(&mut conn).await?;
        out.push((what, after.1.saturating_sub(before.1) as f64 / 1000.0));
    }
    clean(&mut conn, &keys).await;
    Ok(out)
}

/// (b) The naive way: per order WATCH stock, read it, MULTI, take a unit and record the order,
/// EXEC (retrying when another client raced it); one client, one order at a time.
pub async fn naive(settings: &Settings, run: &str, sizes: Sizes) -> Result<f64> {
    let client = redis::Client::open(settings.redis.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let stock = format!("{run}:naive:stock");
    let decisions = format!("{run}:naive:decisions");
    let _: () = conn.set(&stock, 2_000_000_000_i64).await?;
    // WATCH is connection state: this connection is used by nothing else.
    let mut tx = client.get_multiplexed_async_connection().await?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < sizes.redis_for {
        loop {
            let _: () = redis::cmd("WATCH").arg(&stock).query_async(&mut tx).await?;
            let left: i64 = tx.get(&stock).await?;
            if left <= 0 {
                let _: () = redis::cmd("UNWATCH").query_async(&mut tx).await?;
                break;
            }
            let done: Option<(i64, i64)> = redis::pipe()
                .atomic()
                .decr(&stock, 1)
                .hset(&decisions, format!("o{n}"), "RESERVED")
                .query_async(&mut tx)
                .await?;
            if done.is_some() {
                break;
            }
        }
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _: () = conn.del(&[&stock, &decisions]).await?;
    Ok(rate)
}

/// (c) The matcher's step alone: `dropline_apply` with 256 orders per call, [`STEP_IN_FLIGHT`]
/// calls in flight. Orders/s and µs of Redis CPU per order.
pub async fn batched_step(settings: &Settings, run: &str, sizes: Sizes) -> Result<(f64, f64)> {
    let mut conn = dropline_core::redis::connect(&settings.redis).await?;
    let before = fcall_cpu(&mut conn).await?;
    let (rate, orders) = step_lanes(settings, run, 1, STEP_IN_FLIGHT, sizes.redis_for).await?;
    let after = fcall_cpu(&mut conn).await?;
    Ok((rate, per_order(before, after, orders)))
}

/// One drop's batched step with its stock split over `shards` shards, each shard driven by
/// [`STEP_IN_FLIGHT`] loops of `dropline_apply` calls (256 orders each) for `time`: orders/s over
/// all shards. On a Redis Cluster the shards' slots spread over the primaries
/// (`load-tests/split-cluster.sh`).
pub async fn split_step(settings: &Settings, run: &str, shards: u32, time: Duration) -> Result<f64> {
    Ok(step_lanes(settings, run, shards, STEP_IN_FLIGHT, time).await?.0)
}

/// `lanes` loops per shard, each its own Kafka stream (so its offsets rise call after call whatever
/// order the calls run in): orders/s and orders decided.
async fn step_lanes(
    settings: &Settings,
    run: &str,
    shards: u32,
    lanes: usize,
    time: Duration,
) -> Result<(f64, u64)> {
    let conn = dropline_core::redis::connect(&settings.redis).await?;
    step::load(&mut conn.clone()).await?;
    let drop_id = format!("{run}-split{shards}");
    let ids = dropline_core::shards::key_ids(&drop_id, shards);
    for id in &ids {
        step::apply(&mut conn.clone(), 0, &[(&settings.keyspace.drop_keys(id), &[open_op("open")?])]).await?;
    }
    let started = Instant::now();
    let loops = ids.iter().flat_map(|id| (0..lanes).map(move |lane| (id.clone(), lane))).map(|(id, lane)| {
        let mut conn = conn.clone();
        let keys = settings.keyspace.drop_keys(&id);
        async move {
            let stream = char::from(b'a' + u8::try_from(lane).unwrap_or(0));
            let mut n = 0u64;
            while started.elapsed() < time {
                let ops: Vec<Op> =
                    (n..n + 256).map(|i| order_op(stream, lane, i + 1)).collect::<Result<_>>()?;
                step::apply(&mut conn, 1, &[(&keys, ops.as_slice())]).await?;
                n += 256;
            }
            anyhow::Ok(n)
        }
    });
    let counts = futures::future::try_join_all(loops).await?;
    let elapsed = started.elapsed();
    for id in &ids {
        clean(&mut conn.clone(), &settings.keyspace.drop_keys(id)).await;
    }
    let orders = counts.iter().sum::<u64>();
    Ok((orders as f64 / elapsed.as_secs_f64(), orders))
}

fn world(settings: &Settings, name: &str) -> Settings {
    let mut settings = settings.clone();
    settings.set_topic_prefix(&format!("{name}.")).expect("a run name is a namespace");
    settings
}

async fn produce_orders(settings: &Settings, drops: &[String], messages: u64) -> Result<()> {
    let producer = kafka::producer(settings, "dropline-limits")?;
    let topic = settings.topics.name(TopicKind::ChatOrders);
    let mut pending = futures::stream::FuturesUnordered::new();
    for n in 0..messages {
        let drop_id = &drops[(n % drops.len() as u64) as usize];
        let order = ChatOrder {
            order_id: format!("o{n}"),
            drop_id: drop_id.clone(),
            buyer_id: format!("b{}", n % 10_000),
            text: "!buy hoodie L".into(),
            sent_at_ms: kafka::now_ms(),
            ..Default::default()
        };
        let payload = order.encode_to_vec();
        loop {
            match producer.send_result(FutureRecord::to(topic).key(drop_id.as_str()).payload(&payload)) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err(_) => {
                    // Queue full: let deliveries complete.
                    if let Some(result) = pending.next().await {
                        result.map_err(|_| anyhow::anyhow!("delivery canceled"))?.map_err(|(e, _)| e)?;
                    }
                }
            }
        }
    }
    while let Some(result) = pending.next().await {
        result.map_err(|_| anyhow::anyhow!("delivery canceled"))?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// (d) A bare service over the same broker: consume `chat-orders`, produce one outcome per order
/// to `reservations`, commit; throughput from the first message consumed to the last one acked.
pub async fn passthrough(settings: &Settings, run: &str, sizes: Sizes) -> Result<f64> {
    let settings = world(settings, &format!("{run}-pass"));
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(&settings, &names, settings.partitions, 1).await?;
    let drops: Vec<String> = (0..8).map(|d| format!("{run}-pass-d{d}")).collect();
    produce_orders(&settings, &drops, sizes.messages).await?;
    let consumer = kafka::consumer(&settings, "dropline-limits", &format!("{run}-pass"))?;
    consumer.subscribe(&[settings.topics.name(TopicKind::ChatOrders)])?;
    let producer = kafka::producer(&settings, "dropline-limits")?;
    let out = settings.topics.name(TopicKind::Reservations).to_owned();
    let mut stream = consumer.stream();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut first: Option<Instant> = None;
    let mut seen = 0u64;
    while seen < sizes.messages {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .context("passthrough: no message within 60 s")?
            .context("stream ended")??;
        first.get_or_insert_with(Instant::now);
        let order: ChatOrder = kafka::decode(&message)?;
        let outcome = ReservationOutcome {
            order_id: order.order_id,
            drop_id: order.drop_id.clone(),
            ..Default::default()
        };
        let payload = outcome.encode_to_vec();
        let record = FutureRecord::to(&out).key(order.drop_id.as_str()).payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => bail!("passthrough produce: {e}"),
        }
        seen += 1;
        if pending.len() > 10_000 {
            while pending.len() > 5_000 {
                let _ = pending.next().await;
            }
        }
        if seen % 1_000 == 0 {
            consumer.commit_message(&message, CommitMode::Async)?;
        }
    }
    while pending.next().await.is_some() {}
    let elapsed = first.map_or(Duration::from_secs(1), |f| f.elapsed());
    Ok(seen as f64 / elapsed.as_secs_f64())
}

/// (e) The matcher end to end: a backlog of orders over 8 drops, decided by a fresh matcher (the
/// binary beside this one); throughput from the first outcome to the last.
pub async fn matcher(settings: &Settings, run: &str, sizes: Sizes, binary: &std::path::Path) -> Result<f64> {
    let settings = world(settings, &format!("{run}-match"));
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(&settings, &names, settings.partitions, 1).await?;
    let drops: Vec<String> = (0..8).map(|d| format!("{run}-m-d{d}")).collect();
    let producer = kafka::producer(&settings, "dropline-limits")?;
    for drop_id in &drops {
        let open = DropTrigger {
            drop_id: drop_id.clone(),
            trigger_id: format!("open-{drop_id}"),
            sent_at_ms: kafka::now_ms(),
            action: Some(drop_trigger::Action::Open(OpenDrop {
                items: vec![CatalogItem {
                    sku: SKU.into(),
                    name: "hoodie".into(),
                    product: "hoodie".into(),
                    size: "L".into(),
                    stock: 2_000_000_000,
                    ..Default::default()
                }],
                hold_seconds: 3600,
                ..Default::default()
            })),
        };
        kafka::publish(&producer, settings.topics.name(TopicKind::DropTriggers), drop_id, &open).await?;
    }
    produce_orders(&settings, &drops, sizes.messages).await?;
    let reader = kafka::consumer(&settings, "dropline-limits", &format!("{run}-match-reader"))?;
    reader.subscribe(&[settings.topics.name(TopicKind::Reservations)])?;
    let matcher = crate::run::Matcher::start(binary, &settings, &format!("{run}-match")).await?;
    let mut stream = reader.stream();
    // The span is read off the outcomes' own timestamps (set by the matcher's producer), not off
    // the clock when this reader sees them: the reader joins its group while the matcher already
    // works, then reads a backlog at its own pace.
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut seen = 0u64;
    let result = async {
        while seen < sizes.messages {
            let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .context("matcher: no outcome within 60 s")?
                .context("stream ended")??;
            if message.payload().is_some() {
                let at = message.timestamp().to_millis().context("an outcome without a timestamp")?;
                (first, last) = (first.min(at), last.max(at));
                seen += 1;
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(matcher);
    result?;
    let span_ms = (last - first).max(1);
    Ok(seen as f64 * 1000.0 / span_ms as f64)
}
