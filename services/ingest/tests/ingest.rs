//! Ingest over real parts: a real IRC server (ngircd on a free loopback port) where a viewer types
//! `!buy` lines, the real broker, and the matcher deciding the orders ingest publishes; and the
//! signed webhook, including every way a request is refused.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use dropline_core::{kafka, TopicKind};
use dropline_proto::v1::{ChatActivity, ChatOrder, ReservationOutcome, ReservationStatus};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_chat_becomes_orders_the_matcher_decides() -> Result<()> {
    let World { settings, producer } = world().await?;
    let server = irc_server().await?;
    let drop_id = format!("irc-{}", uuid::Uuid::new_v4().simple());
    // The drop is live on #creator before ingest starts: ingest learns it by replaying triggers.
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(&producer, &triggers, &drop_id, &open_drop(&drop_id, &["irc:#creator"])).await?;

    let orders = reader(&settings, TopicKind::ChatOrders)?;
    let outcomes = reader(&settings, TopicKind::Reservations)?;
    let activity = reader(&settings, TopicKind::ChatActivity)?;
    let token = CancellationToken::new();
    let matcher = dropline_matcher::config::MatcherConfig {
        group: format!("matcher-{}", uuid::Uuid::new_v4().simple()),
        admin: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    let matcher = tokio::spawn(dropline_matcher::service::run(settings.clone(), matcher, token.clone()));
    let config = irc_ingest(server.port, false)?;
    let ingest = tokio::spawn(dropline_ingest::run(settings.clone(), config, token.clone()));

    let mut viewer = Viewer::connect(server.port, "ada", "#creator").await?;
    viewer.wait_for(|l| l.starts_with(":dropline!") && l.contains(" JOIN ")).await?;
    viewer.send("PRIVMSG #creator :hello chat\r\nPRIVMSG #creator :!buy hoodie L\r\n").await?;
    viewer.send("PRIVMSG #creator :!buy tee M 2\r\n").await?;

    let mut got: Vec<ChatOrder> = Vec::new();
    while got.len() < 2 {
        got.push(next(&orders).await?);
    }
    for order in &got {
        ensure!(order.drop_id == drop_id, "{order:?}");
        ensure!(order.buyer_id == "irc:ada" && order.buyer_name == "ada", "{order:?}");
        ensure!(order.channel == "irc:#creator" && order.order_id.starts_with("irc:"), "{order:?}");
    }
    ensure!(got[0].text == "!buy hoodie L" && got[1].text == "!buy tee M 2", "chat order kept: {got:?}");

    let mut decided: HashMap<String, ReservationOutcome> = HashMap::new();
    while decided.len() < 2 {
        let outcome: ReservationOutcome = next(&outcomes).await?;
        decided.insert(outcome.order_id.clone(), outcome);
    }
    for order in &got {
        let outcome = decided.get(&order.order_id).context("no decision for an order")?;
        ensure!(outcome.status == ReservationStatus::Reserved as i32, "{outcome:?}");
    }
    ensure!(decided[&got[1].order_id].quantity == 2 && decided[&got[1].order_id].sku == "TEE-M");
    // Every line on the drop's channel is counted for the funnel, orders or not.
    let (mut lines, mut commands) = (0, 0);
    while lines < 3 {
        let counted: ChatActivity = next(&activity).await?;
        ensure!(counted.drop_id == drop_id && counted.channel == "irc:#creator", "{counted:?}");
        ensure!(counted.from_ms <= counted.to_ms && counted.lines >= counted.commands, "{counted:?}");
        (lines, commands) = (lines + counted.lines, commands + counted.commands);
    }
    ensure!((lines, commands) == (3, 2), "chat activity: {lines} lines, {commands} commands");

    // The IRC server goes away and comes back: ingest reconnects (with backoff), joins again and
    // keeps taking orders.
    let port = server.port;
    drop(viewer);
    drop(server);
    let _server = irc_server_on(port).await?;
    let mut viewer = Viewer::connect(port, "bob", "#creator").await?;
    viewer.wait_for(|l| l.starts_with(":dropline!") && l.contains(" JOIN ")).await?;
    viewer.send("PRIVMSG #creator :!buy hoodie L\r\n").await?;
    let order: ChatOrder = next(&orders).await?;
    ensure!(order.buyer_id == "irc:bob" && order.drop_id == drop_id, "after the reconnect: {order:?}");

    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    tokio::time::timeout(Duration::from_secs(20), matcher).await???;
    Ok(())
}

/// An ingest serving only the chat webhook on a free port, and what a test needs to call it.
struct Hook {
    ingest: tokio::task::JoinHandle<Result<(), dropline_ingest::IngestError>>,
    token: CancellationToken,
    url: String,
    client: reqwest::Client,
    /// The requests' timestamp (RFC 3339).
    now: String,
}

fn webhook_ingest(settings: &dropline_core::Settings) -> Result<Hook> {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let token = CancellationToken::new();
    let ingest =
        tokio::spawn(dropline_ingest::run(settings.clone(), ingest_config(None, http), token.clone()));
    Ok(Hook {
        ingest,
        token,
        url: format!("http://{http}/ingest/chat"),
        client: reqwest::Client::new(),
        now: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    })
}

/// A signed EventSub-style request.
fn signed(
    client: &reqwest::Client,
    url: &str,
    kind: &str,
    timestamp: &str,
    body: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    let id = uuid::Uuid::new_v4().to_string();
    let signature = dropline_ingest::webhook::sign(secret.as_bytes(), &id, timestamp, body.as_bytes());
    raw(client, url, kind, timestamp, body, &id, &signature)
}

fn raw(
    client: &reqwest::Client,
    url: &str,
    kind: &str,
    timestamp: &str,
    body: &str,
    id: &str,
    signature: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Twitch-Eventsub-Message-Id", id)
        .header("Twitch-Eventsub-Message-Timestamp", timestamp)
        .header("Twitch-Eventsub-Message-Signature", signature)
        .header("Twitch-Eventsub-Message-Type", kind)
        .body(body.to_owned())
}

fn chat_event(broadcaster: &str, message_id: &str, text: &str) -> String {
    serde_json::json!({
        "subscription": {"type": "channel.chat.message", "version": "1"},
        "event": {
            "broadcaster_user_login": broadcaster,
            "chatter_user_id": "4242",
            "chatter_user_login": "bob",
            "chatter_user_name": "Bob",
            "message_id": message_id,
            "message": {"text": text}
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_orders_are_verified() -> Result<()> {
    let World { settings, producer } = world().await?;
    let drop_id = format!("hook-{}", uuid::Uuid::new_v4().simple());
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(&producer, &triggers, &drop_id, &open_drop(&drop_id, &["twitch:#maker"])).await?;
    let orders = reader(&settings, TopicKind::ChatOrders)?;
    let Hook { ingest, token, url, client, now } = webhook_ingest(&settings)?;

    // Up once it takes chat: it answers 503 until it knows the live drops.
    let challenge = r#"{"subscription":{"type":"channel.chat.message"},"challenge":"up"}"#;
    let mut up = false;
    for _ in 0..100 {
        let probe =
            signed(&client, &url, "webhook_callback_verification", &now, challenge, SECRET).send().await;
        if probe.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(up, "webhook never took chat");

    let body = chat_event("maker", "msg-1", "!buy hoodie L");
    let response = signed(&client, &url, "notification", &now, &body, SECRET).send().await?;
    ensure!(response.status() == 204, "{:?}", response.text().await?);
    let order: ChatOrder = next(&orders).await?;
    ensure!(order.order_id == "twitch:msg-1" && order.drop_id == drop_id, "{order:?}");
    ensure!(order.buyer_id == "twitch:4242" && order.buyer_name == "Bob", "{order:?}");
    ensure!(order.channel == "twitch:#maker", "{order:?}");

    // The same signed request again — the platform retrying, or someone who captured it: 2xx,
    // nothing published (checked below).
    let replayed = chat_event("maker", "msg-9", "!buy hoodie L");
    let signature = dropline_ingest::webhook::sign(SECRET.as_bytes(), "evt-9", &now, replayed.as_bytes());
    for _ in 0..2 {
        let response =
            raw(&client, &url, "notification", &now, &replayed, "evt-9", &signature).send().await?;
        ensure!(response.status() == 204, "{:?}", response.text().await?);
    }
    let order: ChatOrder = next(&orders).await?;
    ensure!(order.order_id == "twitch:msg-9", "{order:?}");

    // Ordinary chat and other channels: accepted, nothing published (checked below).
    for body in [chat_event("maker", "msg-2", "nice hoodie"), chat_event("elsewhere", "msg-3", "!buy tee")] {
        let response = signed(&client, &url, "notification", &now, &body, SECRET).send().await?;
        ensure!(response.status() == 204);
    }

    // Verification handshake echoes the challenge.
    let challenge = r#"{"subscription":{"type":"channel.chat.message"},"challenge":"pogchamp-kappa-360"}"#;
    let response =
        signed(&client, &url, "webhook_callback_verification", &now, challenge, SECRET).send().await?;
    ensure!(response.status() == 200);
    ensure!(response.text().await? == "pogchamp-kappa-360");

    // Refusals: each a 4xx whose message names the problem.
    let stale =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() - Duration::from_secs(700)).to_string();
    let cases = [
        (signed(&client, &url, "notification", &now, &body, "wrong-secret-123"), 403, "signature"),
        (signed(&client, &url, "notification", &stale, &body, SECRET), 403, "10 minutes"),
        (client.post(&url).body(body.clone()), 400, "missing header"),
        (raw(&client, &url, "notification", &now, &body, "id-1", "md5=abc"), 400, "sha256="),
        (signed(&client, &url, "notification", &now, "{not json", SECRET), 400, "invalid body"),
        (signed(&client, &url, "notification", "yesterday", &body, SECRET), 400, "RFC 3339"),
    ];
    for (request, status, needle) in cases {
        let response = request.send().await?;
        let code = response.status().as_u16();
        let text = response.text().await?;
        ensure!(
            code == status && text.contains(needle),
            "expected {status} with {needle:?}, got {code}: {text}"
        );
    }

    // A second order from the webhook is the next message: nothing was published in between.
    let body = chat_event("maker", "msg-4", "!buy tee M");
    ensure!(signed(&client, &url, "notification", &now, &body, SECRET).send().await?.status() == 204);
    let order: ChatOrder = next(&orders).await?;
    ensure!(order.order_id == "twitch:msg-4", "something else was published first: {order:?}");

    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_waits_until_the_live_drops_are_known() -> Result<()> {
    // A broker that does not answer: drop-triggers cannot be read, so no line can be routed yet.
    let World { mut settings, .. } = world().await?;
    settings.kafka = format!("127.0.0.1:{}", free_port()?);
    let Hook { ingest, token, url, client, now } = webhook_ingest(&settings)?;
    let body = chat_event("maker", "msg-early", "!buy hoodie L");
    // Not "no drop" and 204 (the order would be lost): 503, so the platform sends it again later.
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(response) = signed(&client, &url, "notification", &now, &body, SECRET).send().await {
            answer = Some((response.status(), response.text().await?));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, text) = answer.context("the webhook never listened")?;
    ensure!(status == 503 && text.contains("catching up with drop-triggers"), "{status}: {text}");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    Ok(())
}

/// librdkafka's mock cluster with every topic of a prefix of its own, and settings on it.
fn mock_world() -> Result<(
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    dropline_core::Settings,
)> {
    let mock = rdkafka::mocking::MockCluster::new(1)?;
    let mut settings = dropline_core::Settings::from_env()?;
    settings.kafka = mock.bootstrap_servers();
    settings.set_topic_prefix(&format!("mock-{}.", uuid::Uuid::new_v4().simple()))?;
    for (_, name) in settings.topics.all() {
        mock.create_topic(name, 1, 1)?;
    }
    Ok((mock, settings))
}

/// IRC does not send a line twice: an order the broker did not take in time (the broker is down
/// longer than the producer's 1.5 s of patience) is sent again until it is taken. On librdkafka's
/// mock cluster, so the shared broker is never taken down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_order_the_broker_did_not_take_is_sent_again() -> Result<()> {
    let (mock, mut settings) = mock_world()?;
    settings.kafka_config.0.push(("message.timeout.ms".into(), "1500".into()));
    let producer = kafka::producer(&settings, "test")?;
    let server = irc_server().await?;
    let drop_id = format!("late-{}", uuid::Uuid::new_v4().simple());
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(&producer, &triggers, &drop_id, &open_drop(&drop_id, &["irc:#creator"])).await?;
    let token = CancellationToken::new();
    let ingest =
        tokio::spawn(dropline_ingest::run(settings.clone(), irc_ingest(server.port, false)?, token.clone()));
    let mut viewer = Viewer::connect(server.port, "ada", "#creator").await?;
    viewer.wait_for(|l| l.starts_with(":dropline!") && l.contains(" JOIN ")).await?;
    mock.broker_down(1)?;
    viewer.send("PRIVMSG #creator :!buy hoodie L\r\n").await?;
    // Longer than the producer's own patience: its first delivery fails.
    tokio::time::sleep(Duration::from_secs(3)).await;
    mock.broker_up(1)?;
    let orders = kafka::reader(&settings, "test", settings.topics.name(TopicKind::ChatOrders))?;
    let order: ChatOrder = next(&orders).await?;
    ensure!(order.drop_id == drop_id && order.buyer_id == "irc:ada", "{order:?}");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    Ok(())
}

/// A webhook order the broker cannot take is answered 503 within `WEBHOOK_WAIT` (a platform gives
/// up on a slow endpoint), not after the producer's whole delivery timeout; sent again once the
/// broker is back, it is taken. librdkafka's mock cluster, so the shared broker is never down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_order_waits_for_the_broker_only_so_long() -> Result<()> {
    let (mock, settings) = mock_world()?;
    let producer = kafka::producer(&settings, "test")?;
    let drop_id = format!("slow-{}", uuid::Uuid::new_v4().simple());
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(&producer, &triggers, &drop_id, &open_drop(&drop_id, &["twitch:#maker"])).await?;
    let Hook { ingest, token, url, client, now } = webhook_ingest(&settings)?;
    let body = chat_event("maker", "msg-slow", "!buy hoodie L");
    // Ready first: a 204 for a line that is not an order.
    let chatter = chat_event("maker", "msg-hello", "hello");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = signed(&client, &url, "notification", &now, &chatter, SECRET).send().await {
            if r.status() == 204 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(ready, "ingest never took chat");

    mock.broker_down(1)?;
    let asked = std::time::Instant::now();
    let response = signed(&client, &url, "notification", &now, &body, SECRET).send().await?;
    let waited = asked.elapsed();
    let (status, text) = (response.status(), response.text().await?);
    ensure!(status == 503 && text.contains("retry"), "{status}: {text}");
    let bound = dropline_ingest::webhook::WEBHOOK_WAIT;
    ensure!(waited >= bound && waited < bound + Duration::from_secs(5), "answered after {waited:?}");

    mock.broker_up(1)?;
    let again = signed(&client, &url, "notification", &now, &body, SECRET).send().await?;
    ensure!(again.status() == 204, "the resend once the broker is back: {}", again.status());
    let orders = kafka::reader(&settings, "test", settings.topics.name(TopicKind::ChatOrders))?;
    let order: ChatOrder = next(&orders).await?;
    ensure!(order.order_id == "twitch:msg-slow", "{order:?}");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    Ok(())
}
