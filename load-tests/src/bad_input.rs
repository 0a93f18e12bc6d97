//! The bad-input suite: what an outside tester would throw at a deployment — hostile HTTP
//! (oversized and deep bodies, hostile ids, SKUs, numbers and tokens, odd ranges) and hostile
//! Kafka messages (near the size limit, without a key or with a wrong one, random bytes on every
//! input topic) and hostile IRC from a scripted server (lines over the limit, odd tags, NUL and
//! CR inside a line, RECONNECT) — against a matcher, a console and an ingest of its own (own topics
//! and keyspace on the local Redis and broker, 127.0.0.1 only). After every case a control drop must still decide a
//! fresh order, and every message sent must be answered (an outcome or a dead letter with its
//! reason). Prints case / expected / got; any miss fails the run.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{
    clip_event, drop_trigger, CatalogItem, ChatOrder, ClipEvent, ClipReady, DeadLetter, DropTrigger,
    OpenDrop, ReservationOutcome,
};
use futures::StreamExt;
use rand::RngCore;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::matcher::{free_port, Matcher};
use crate::process::Process;
use crate::scripted_irc::{order_with_id, start_ingest, IrcPeer};

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub expected: String,
    pub got: String,
    pub passed: bool,
}

/// The deployment under test and the means to poke it.
struct Rig {
    settings: Settings,
    producer: FutureProducer,
    outcomes: StreamConsumer,
    dead: StreamConsumer,
    http: reqwest::Client,
    base: String,
    creator: String,
    control: String,
    sent: u64,
    _clips: tempfile::TempDir,
    _matcher: Matcher,
    _console: Process,
}

const CONTROL_STOCK: u32 = 100_000;

pub(crate) fn control_open(drop_id: &str) -> DropTrigger {
    DropTrigger {
        drop_id: drop_id.into(),
        trigger_id: format!("{drop_id}-open"),
        sent_at_ms: kafka::now_ms(),
        action: Some(drop_trigger::Action::Open(OpenDrop {
            items: vec![CatalogItem {
                sku: "TEE".into(),
                name: "tee".into(),
                stock: CONTROL_STOCK,
                price_cents: 2000,
                ..Default::default()
            }],
            limit_per_buyer: 0,
            hold_seconds: 600,
            ..Default::default()
        })),
    }
}

pub(crate) fn reader(settings: &Settings, kind: TopicKind) -> Result<StreamConsumer> {
    let consumer: StreamConsumer =
        kafka::consumer(settings, "bad-input", &format!("bad-input-{}", uuid::Uuid::new_v4().simple()))?;
    let topic = settings.topics.name(kind);
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

impl Rig {
    async fn start() -> Result<Rig> {
        let mut settings = Settings::from_env()?;
        let run = format!("bad-input-{}", kafka::now_ms());
        settings.set_topic_prefix(&format!("{run}."))?;
        crate::run::prepare(&settings).await?;
        let producer = kafka::producer(&settings, "dropline-bad-input")?;
        let clips = tempfile::tempdir()?;
        settings.clips = clips.path().to_owned();

        let dir = std::env::current_exe()?.parent().context("the tool's directory")?.to_owned();
        let matcher =
            Matcher::start(&dir.join("dropline-matcher"), &settings, &format!("{run}-matcher")).await?;
        let port = free_port()?;
        let creator = format!("bad-input-creator-{}", uuid::Uuid::new_v4().simple());
        let console = start_console(&dir.join("dropline-console"), &settings, port, &creator, clips.path())?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        for _ in 0..150 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let control = format!("{run}-control");
        kafka::publish(
            &producer,
            settings.topics.name(TopicKind::DropTriggers),
            &control,
            &control_open(&control),
        )
        .await?;
        let outcomes = reader(&settings, TopicKind::Reservations)?;
        let dead = reader(&settings, TopicKind::DeadLetters)?;
        Ok(Rig {
            settings,
            producer,
            outcomes,
            dead,
            http,
            base,
            creator,
            control,
            sent: 0,
            _clips: clips,
            _matcher: matcher,
            _console: console,
        })
    }

    fn topic(&self, kind: TopicKind) -> &str {
        self.settings.topics.name(kind)
    }

    async fn send_raw(&self, kind: TopicKind, key: Option<&str>, payload: &[u8]) -> Result<()> {
        let mut record = FutureRecord::<str, [u8]>::to(self.topic(kind)).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e)?;
        Ok(())
    }

    fn order(&mut self, drop_id: &str, text: &str) -> (String, ChatOrder) {
        self.sent += 1;
        let order_id = format!("bad-{}-{}", self.sent, uuid::Uuid::new_v4().simple());
        let order = ChatOrder {
            order_id: order_id.clone(),
            drop_id: drop_id.into(),
            buyer_id: format!("buyer-{}", self.sent),
            channel: "twitch:#bad-input".into(),
            text: text.into(),
            sent_at_ms: kafka::now_ms(),
            ..Default::default()
        };
        (order_id, order)
    }

    /// The first outcome of `order_id` within 30 s.
    async fn outcome_of(&self, order_id: &str) -> Result<ReservationOutcome> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut stream = self.outcomes.stream();
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .with_context(|| format!("no outcome for {order_id} within 30 s"))?
                .context("stream ended")??;
            // The suite puts random bytes on this topic too: those are not outcomes.
            match kafka::decode::<ReservationOutcome, _>(&next) {
                Ok(outcome) if outcome.order_id == order_id => return Ok(outcome),
                _ => {}
            }
        }
    }

    /// The next `n` dead letters published after those already read.
    async fn dead_letters(&self, n: usize) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        let mut stream = self.dead.stream();
        while out.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .with_context(|| format!("{} of {n} dead letters within 30 s", out.len()))?
                .context("stream ended")??;
            out.push(kafka::decode::<DeadLetter, _>(&next)?);
        }
        Ok(out)
    }

    /// A fresh order of the control drop is still decided (RESERVED).
    async fn control_decides(&mut self) -> String {
        let control = self.control.clone();
        let (id, order) = self.order(&control, "!buy tee");
        if let Err(e) =
            kafka::publish(&self.producer, self.topic(TopicKind::ChatOrders), &control, &order).await
        {
            return format!("control order not sent: {e}");
        }
        match self.outcome_of(&id).await {
            Ok(o) if o.status == dropline_proto::v1::ReservationStatus::Reserved as i32 => {
                "control decided".into()
            }
            Ok(o) => format!("control answered status {}", o.status),
            Err(e) => format!("control not decided: {e:#}"),
        }
    }

    async fn http(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, text)
            }
            Err(e) => (0, format!("no answer: {e}")),
        }
    }
}

fn start_console(
    binary: &Path,
    settings: &Settings,
    port: u16,
    creator: &str,
    clips: &Path,
) -> Result<Process> {
    let state = clips.join("console-state");
    let child = crate::process::service(binary, settings)?
        .env("DROPLINE_HTTP", format!("127.0.0.1:{port}"))
        .env("DROPLINE_ADMIN", format!("127.0.0.1:{}", free_port()?))
        .env("DROPLINE_CONSOLE_TOKENS", format!("creator:{creator},producer:bad-input-producer-token-0001"))
        .env("DROPLINE_CONSOLE_STATE", state)
        .env("DROPLINE_CONSOLE_WRITE_RATE", "10000")
        .env("DROPLINE_CLIPS", clips)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Process::new(child))
}

/// `{"error": "…"}` naming `needle` (case-insensitive).
fn names(body: &str, needle: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_lowercase))
        .is_some_and(|e| e.contains(&needle.to_lowercase()))
}

fn drop_json(id: &str, item: serde_json::Value, extra: serde_json::Value) -> Vec<u8> {
    let mut body = serde_json::json!({ "id": id, "title": "Bad input", "items": [item] });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body.to_string().into_bytes()
}

fn tee(sku: &str) -> serde_json::Value {
    serde_json::json!({ "sku": sku, "name": "tee", "stock": 5, "price_cents": 2000 })
}

/// Runs every case, the last with the broker away for `outage`; the table's rows in order.
pub async fn run(outage: Duration) -> Result<Vec<Case>> {
    let mut rig = Rig::start().await?;
    let mut cases = Vec::new();
    let first = rig.control_decides().await;
    if first != "control decided" {
        bail!("the control drop does not decide before any bad input: {first}");
    }
    let mut row = |name: &str, expected: &str, got: String, passed: bool| {
        cases.push(Case { name: name.into(), expected: expected.into(), got, passed });
    };
    let post = reqwest::Method::POST;
    let creator = rig.creator.clone();

    // HTTP bodies.
    let huge = vec![b' '; 3 * 1024 * 1024];
    let (s, b) = rig.http(post.clone(), "/api/drops", Some(&creator), Some(huge)).await;
    row(
        "POST /api/drops, 3 MiB body",
        "413, JSON error",
        format!("{s} {}", excerpt(&b)),
        s == 413 && names(&b, ""),
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let (s, b) = rig.http(post.clone(), "/api/drops", Some(&creator), Some(deep)).await;
    row(
        "POST /api/drops, JSON 100k deep",
        "4xx, JSON error",
        format!("{s} {}", excerpt(&b)),
        (400..500).contains(&s) && names(&b, ""),
    );

    // Hostile ids and SKUs.
    for id in ["../../etc/passwd", "a{b}", "drop\u{0}x", "ドロップ", &"x".repeat(300), "..", ""] {
        let (s, b) = rig
            .http(
                post.clone(),
                "/api/drops",
                Some(&creator),
                Some(drop_json(id, tee("TEE"), serde_json::json!({}))),
            )
            .await;
        row(
            &format!("drop id {:?}", short(id)),
            "400 naming id",
            format!("{s} {}", excerpt(&b)),
            s == 400 && names(&b, "id"),
        );
    }
    for sku in ["HOODIE.L", "", "💥", &"S".repeat(65), "A B", "{x}"] {
        let id = format!("bad-sku-{}", uuid::Uuid::new_v4().simple());
        let (s, b) = rig
            .http(
                post.clone(),
                "/api/drops",
                Some(&creator),
                Some(drop_json(&id, tee(sku), serde_json::json!({}))),
            )
            .await;
        row(
            &format!("SKU {:?}", short(sku)),
            "400 naming items[0].sku",
            format!("{s} {}", excerpt(&b)),
            s == 400 && names(&b, "items[0].sku"),
        );
    }
    let aliases: Vec<String> = (0..5000).map(|i| format!("alias-{i}-{}", "x".repeat(200))).collect();
    let id = format!("bad-aliases-{}", uuid::Uuid::new_v4().simple());
    let item = serde_json::json!({ "sku": "TEE", "name": "tee", "stock": 5, "aliases": aliases });
    let (s, b) = rig
        .http(post.clone(), "/api/drops", Some(&creator), Some(drop_json(&id, item, serde_json::json!({}))))
        .await;
    row(
        "5000 aliases of 200 bytes",
        "4xx naming aliases",
        format!("{s} {}", excerpt(&b)),
        (400..500).contains(&s) && names(&b, "alias"),
    );

    // Extreme numbers.
    let numbers: [(&str, serde_json::Value, serde_json::Value, &str); 4] = [
        (
            "stock 2^32",
            serde_json::json!({ "sku": "TEE", "name": "tee", "stock": 4_294_967_296_u64 }),
            serde_json::json!({}),
            "stock",
        ),
        (
            "stock -1",
            serde_json::json!({ "sku": "TEE", "name": "tee", "stock": -1 }),
            serde_json::json!({}),
            "stock",
        ),
        ("hold_seconds 0", tee("TEE"), serde_json::json!({ "hold_seconds": 0 }), "hold_seconds"),
        ("shards 1e9", tee("TEE"), serde_json::json!({ "shards": 1_000_000_000 }), "shards"),
    ];
    for (name, item, extra, field) in numbers {
        let id = format!("bad-num-{}", uuid::Uuid::new_v4().simple());
        let (s, b) =
            rig.http(post.clone(), "/api/drops", Some(&creator), Some(drop_json(&id, item, extra))).await;
        row(
            name,
            &format!("4xx naming {field}"),
            format!("{s} {}", excerpt(&b)),
            (400..500).contains(&s) && names(&b, field),
        );
    }
    let id = format!("bad-price-{}", uuid::Uuid::new_v4().simple());
    let item = serde_json::json!({ "sku": "TEE", "name": "tee", "stock": 4_000_000_000_u32, "price_cents": i64::MAX });
    let (s, b) = rig
        .http(post.clone(), "/api/drops", Some(&creator), Some(drop_json(&id, item, serde_json::json!({}))))
        .await;
    row(
        "price i64::MAX × 4e9 units",
        "201 or 400, never 5xx",
        format!("{s} {}", excerpt(&b)),
        s == 201 || (s == 400 && names(&b, "price")),
    );

    // Hostile tokens.
    let long = "t".repeat(64 * 1024);
    for (name, token) in
        [("token of 64 KiB", long.as_str()), ("token with # and unicode", "abc#ドロ"), ("empty bearer", "")]
    {
        let (s, b) = rig.http(reqwest::Method::GET, "/api/drops", Some(token), None).await;
        row(
            name,
            "401 or 431, JSON error",
            format!("{s} {}", excerpt(&b)),
            (s == 401 && names(&b, "")) || s == 431,
        );
    }
    let (s, b) = rig.http(reqwest::Method::GET, "/api/drops?access_token=%ZZ%00", None, None).await;
    row("?access_token=%ZZ%00", "401, JSON error", format!("{s} {}", excerpt(&b)), s == 401 && names(&b, ""));

    // Range headers on a clip the console knows.
    let clip_path = rig.settings.clips.join("bad-input.mp4");
    std::fs::write(&clip_path, vec![7u8; 10_000])?;
    let ready = ClipEvent {
        event: Some(clip_event::Event::Ready(ClipReady {
            clip_id: "bad-input-clip".into(),
            drop_id: rig.control.clone(),
            path: clip_path.display().to_string(),
            size_bytes: 10_000,
            ready_at_ms: kafka::now_ms(),
            ..Default::default()
        })),
    };
    kafka::publish(&rig.producer, rig.topic(TopicKind::Clips), &rig.control, &ready).await?;
    let mut listed = false;
    for _ in 0..100 {
        let (s, _) = rig.http(reqwest::Method::GET, "/api/clips/bad-input-clip", Some(&creator), None).await;
        if s == 200 {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (range, want) in [
        ("bytes=999999-", "416"),
        ("bytes=5-1", "200 or 416"),
        ("bytes=0-0,5-9,-1", "200, 206 or 416"),
        ("bytes=-0", "200 or 416"),
        ("furlongs=1-2", "200"),
    ] {
        let response = rig
            .http
            .get(format!("{}/clips/bad-input-clip/video", rig.base))
            .header("authorization", format!("Bearer {creator}"))
            .header("range", range)
            .send()
            .await;
        let (status, body) = match response {
            Ok(r) => (r.status().as_u16().to_string(), r.text().await.unwrap_or_default()),
            Err(e) => (format!("no answer: {e}"), String::new()),
        };
        // A refusal names the problem like every other; a 416 says so in JSON.
        let named = status != "416" || names(&body, "range");
        let got = format!("{status} {}", excerpt(&body));
        let passed = listed && want.contains(status.as_str()) && named;
        row(
            &format!("Range: {range}"),
            want,
            if listed { got } else { format!("clip not listed; {got}") },
            passed,
        );
    }

    // Kafka: near the size limit, no key, wrong key, random bytes everywhere.
    let mut noise = vec![0u8; 900 * 1024];
    rand::thread_rng().fill_bytes(&mut noise);
    noise[0] = 0xff;
    let sent = rig.send_raw(TopicKind::ChatOrders, Some(&rig.control.clone()), &noise).await;
    let got = match (sent, rig.dead_letters(1).await) {
        (Err(e), _) => format!("not sent: {e}"),
        (_, Err(e)) => format!("{e:#}"),
        (_, Ok(d)) => format!(
            "dead letter: {} payload bytes kept, reason {:?}",
            d[0].payload.len(),
            excerpt(&d[0].reason)
        ),
    };
    let kept_ok = got.starts_with("dead letter") && !got.contains("payload bytes kept, reason \"\"");
    let control = rig.control_decides().await;
    row(
        "chat-orders: 900 KiB of random bytes",
        "dead letter (≤ 64 KiB kept), control decided",
        format!("{got}; {control}"),
        kept_ok && control == "control decided",
    );

    let control_id = rig.control.clone();
    let (id, order) = rig.order(&control_id, &format!("!buy tee {}", "x".repeat(800 * 1024)));
    let sent =
        rig.send_raw(TopicKind::ChatOrders, Some(&control_id), &prost::Message::encode_to_vec(&order)).await;
    let got = match sent {
        Err(e) => format!("not sent: {e}"),
        Ok(()) => match rig.outcome_of(&id).await {
            Ok(o) => format!("answered status {} (reason {:?})", o.status, excerpt(&o.reason)),
            Err(e) => format!("{e:#}"),
        },
    };
    let control = rig.control_decides().await;
    row(
        "order with 800 KiB of text",
        "one answer, control decided",
        format!("{got}; {control}"),
        got.starts_with("answered") && control == "control decided",
    );

    let (id, order) = rig.order(&control_id, "!buy tee");
    rig.send_raw(TopicKind::ChatOrders, None, &prost::Message::encode_to_vec(&order)).await?;
    let got = rig
        .outcome_of(&id)
        .await
        .map_or_else(|e| format!("{e:#}"), |o| format!("status {} for {}", o.status, o.drop_id));
    row(
        "order without a key",
        "decided for its drop",
        got.clone(),
        got == format!("status 1 for {control_id}"),
    );

    let (id, order) = rig.order(&control_id, "!buy tee");
    rig.send_raw(TopicKind::ChatOrders, Some("some-other-drop"), &prost::Message::encode_to_vec(&order))
        .await?;
    let got = rig
        .outcome_of(&id)
        .await
        .map_or_else(|e| format!("{e:#}"), |o| format!("status {} for {}", o.status, o.drop_id));
    row(
        "order keyed for another drop",
        "decided for the drop it names",
        got.clone(),
        got == format!("status 1 for {control_id}"),
    );

    let consumed = [TopicKind::ChatOrders, TopicKind::DropTriggers, TopicKind::HoldActions];
    for kind in TopicKind::ALL {
        if matches!(kind, TopicKind::DeadLetters | TopicKind::Reservations) {
            continue;
        }
        let mut bytes = vec![0u8; 64];
        rand::thread_rng().fill_bytes(&mut bytes);
        bytes[0] = 0xff;
        rig.send_raw(kind, Some(&control_id), &bytes).await?;
        let letter = if consumed.contains(&kind) {
            match rig.dead_letters(1).await {
                Ok(d) => format!("dead letter ({})", excerpt(&d[0].reason)),
                Err(e) => format!("{e:#}"),
            }
        } else {
            "not the matcher's".into()
        };
        let control = rig.control_decides().await;
        let (s, _) =
            rig.http(reqwest::Method::GET, &format!("/api/drops/{control_id}"), Some(&creator), None).await;
        let expected = if consumed.contains(&kind) {
            "dead letter with reason, control decided, console up"
        } else {
            "ignored, control decided, console up"
        };
        let passed = (!consumed.contains(&kind) || letter.starts_with("dead letter ("))
            && control == "control decided"
            && (s == 200 || s == 404);
        row(
            &format!("{}: 64 random bytes", kind.default_name()),
            expected,
            format!("{letter}; {control}; console {s}"),
            passed,
        );
    }
    // Random bytes on reservations reach the console's ledger and ingest: the console must stay up.
    let mut bytes = vec![0u8; 64];
    rand::thread_rng().fill_bytes(&mut bytes);
    rig.send_raw(TopicKind::Reservations, Some(&control_id), &bytes).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _) = rig.http(reqwest::Method::GET, "/healthz", None, None).await;
    let control = rig.control_decides().await;
    row(
        "reservations: 64 random bytes",
        "console up, control decided",
        format!("healthz {s}; {control}"),
        s == 200 && control == "control decided",
    );

    for (name, expected, got, passed) in irc_cases(&rig).await? {
        row(name, expected, got, passed);
    }
    cases.push(crate::outage::broker_down(outage).await?);
    Ok(cases)
}

/// What became of the good line sent after a hostile one.
async fn next_ordered(orders: &StreamConsumer, message_id: &str, drop_id: &str) -> (String, bool) {
    match order_with_id(orders, message_id).await {
        Ok(o) => (format!("next order published for {}", o.drop_id), o.drop_id == drop_id),
        Err(e) => (format!("{e:#}"), false),
    }
}

/// Hostile lines from the IRC server ingest reads chat from (a scripted one here: real servers
/// rarely send these, which is why they go untested), each followed by a good order that must
/// come through.
async fn irc_cases(rig: &Rig) -> Result<Vec<(&'static str, &'static str, String, bool)>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let drop_id = format!("{}-irc", rig.control);
    let mut open = control_open(&drop_id);
    if let Some(drop_trigger::Action::Open(o)) = open.action.as_mut() {
        o.channels = vec!["twitch:#bad".into()];
    }
    kafka::publish(&rig.producer, rig.topic(TopicKind::DropTriggers), &drop_id, &open).await?;
    let dir = std::env::current_exe()?.parent().context("the tool's directory")?.to_owned();
    let _ingest = start_ingest(&dir.join("dropline-ingest"), &rig.settings, port)?;
    let orders = reader(&rig.settings, TopicKind::ChatOrders)?;
    let mut peer = IrcPeer::accept(&listener).await?;
    let good =
        |id: &str| format!("@id={id};user-id=u-{id} :v{id}!v@h PRIVMSG #bad :!buy tee\r\n").into_bytes();
    let mut cases = Vec::new();

    let long =
        format!("@id=long;user-id=u-long :vlong!v@h PRIVMSG #bad :!buy tee {}\r\n", "x".repeat(20 * 1024));
    peer.send(long.as_bytes()).await?;
    peer.send(&good("after-long")).await?;
    let (got, passed) = next_ordered(&orders, "after-long", &drop_id).await;
    cases.push(("IRC line of 20 KiB", "skipped, the next line ordered", got, passed));

    peer.send(b"@id=;user-id=\\s\\:;=x;;display-name=\\ ;tmi-sent-ts=-99999999999999999999 :odd!o@h PRIVMSG #bad :!buy tee\r\n").await?;
    peer.send(b"@@@ :::: PRIVMSG\r\n:x PRIVMSG\r\n\r\n").await?;
    peer.send(&good("after-tags")).await?;
    let (got, passed) = next_ordered(&orders, "after-tags", &drop_id).await;
    cases.push(("IRC odd tags and broken lines", "no crash, the next line ordered", got, passed));

    peer.send(b"@id=nul;user-id=u-nul :nul!n@h PRIVMSG #bad :!buy\0tee\rmore\r\n").await?;
    peer.send(&good("after-nul")).await?;
    let (got, passed) = next_ordered(&orders, "after-nul", &drop_id).await;
    cases.push(("IRC NUL and CR inside a line", "no crash, the next line ordered", got, passed));

    peer.send(b":tmi.twitch.tv RECONNECT\r\n").await?;
    let closed = peer.closed(Duration::from_secs(10)).await;
    let (got, passed) = match IrcPeer::accept(&listener).await {
        Ok(mut again) => {
            again.send(&good("after-reconnect")).await?;
            next_ordered(&orders, "after-reconnect", &drop_id).await
        }
        Err(e) => (format!("{e:#}"), false),
    };
    cases.push((
        "IRC RECONNECT",
        "reconnects, the next line ordered",
        format!("closed: {closed}; {got}"),
        closed && passed,
    ));
    Ok(cases)
}

fn short(s: &str) -> String {
    if s.len() > 24 {
        format!("{}… ({} bytes)", s.chars().take(12).collect::<String>(), s.len())
    } else {
        s.to_owned()
    }
}

fn excerpt(s: &str) -> String {
    let one_line: String = s.chars().filter(|c| !c.is_control()).take(70).collect();
    if s.chars().count() > 70 {
        format!("{one_line}…")
    } else {
        one_line
    }
}

/// The table, one row per case.
pub fn table(cases: &[Case]) -> String {
    let mut out = format!("{:<38} {:<48} {}\n", "case", "expected", "got");
    for c in cases {
        let mark = if c.passed { "ok  " } else { "MISS" };
        out.push_str(&format!("{mark} {:<33} {:<48} {}\n", short_to(&c.name, 33), c.expected, c.got));
    }
    let missed = cases.iter().filter(|c| !c.passed).count();
    out.push_str(&format!("{} cases, {missed} missed\n", cases.len()));
    out
}

fn short_to(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
