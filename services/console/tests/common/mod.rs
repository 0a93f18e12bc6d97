//! Shared by the console's tests: a console and a matcher in this process over the real broker
//! and Redis, with their own topics, and helpers to call the API.
#![allow(dead_code)]

pub mod browser;

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{ensure, Result};
use dropline_core::{kafka, Settings, TopicKind};
use rdkafka::consumer::StreamConsumer;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const CREATOR: &str = "creator-token-0123456789";
pub const PRODUCER: &str = "producer-token-0123456789";
pub const EDITOR: &str = "editor-token-0123456789";
pub const BURST: &str = "burst-creator-token-0123456789";

pub struct Console {
    pub base: String,
    pub settings: Settings,
    pub client: Client,
    /// Stops the console and the matcher.
    pub token: CancellationToken,
    /// Stops the console alone (a child of `token`).
    console_stop: CancellationToken,
    console_task: Option<tokio::task::JoinHandle<Result<(), dropline_console::ConsoleError>>>,
    extra: Vec<(String, String)>,
    pub _clips: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn console_config(extra: &[(String, String)]) -> Result<dropline_console::ConsoleConfig> {
    let spec = format!("creator:{CREATOR},producer:{PRODUCER},editor:{EDITOR},creator:{BURST}");
    Ok(dropline_console::ConsoleConfig::from_lookup(|name| match name {
        "DROPLINE_CONSOLE_TOKENS" => Some(spec.clone()),
        "DROPLINE_CONSOLE_WRITE_RATE" => Some("5".into()),
        other => extra.iter().find(|(k, _)| k == other).map(|(_, v)| v.clone()),
    })?)
}

impl Console {
    /// Stops the console (the matcher goes on) and starts a fresh one on the same port, topics
    /// and Redis: everything it knows it must read again from the log and Redis.
    pub async fn restart(&mut self) -> Result<()> {
        self.console_stop.cancel();
        if let Some(task) = self.console_task.take() {
            tokio::time::timeout(Duration::from_secs(30), task).await???;
        }
        self.console_stop = self.token.child_token();
        let run = dropline_console::run(
            self.settings.clone(),
            console_config(&self.extra)?,
            self.console_stop.clone(),
        );
        self.console_task = Some(tokio::spawn(run));
        wait_healthy(&self.client, &self.base).await
    }
}

async fn wait_healthy(client: &Client, base: &str) -> Result<()> {
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("console did not start")
}

pub async fn console() -> Result<Console> {
    console_with(&[]).await
}

/// A console with more settings (`DROPLINE_STRIPE_WEBHOOK_SECRET`, …).
pub async fn console_with(extra: &[(&str, &str)]) -> Result<Console> {
    let mut settings = Settings::from_env()?;
    settings.set_topic_prefix(&format!("test-console-{}.", uuid::Uuid::new_v4().simple()))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    settings.http = format!("127.0.0.1:{port}").parse()?;
    let clips = tempfile::tempdir()?;
    settings.clips = clips.path().to_path_buf();
    kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(&settings, &names, 2, 1).await?;

    let extra: Vec<(String, String)> =
        extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let token = CancellationToken::new();
    let console_stop = token.child_token();
    let console_task = Some(tokio::spawn(dropline_console::run(
        settings.clone(),
        console_config(&extra)?,
        console_stop.clone(),
    )));
    let matcher = dropline_matcher::config::MatcherConfig {
        group: format!("matcher-{}", uuid::Uuid::new_v4().simple()),
        admin: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    tokio::spawn(dropline_matcher::service::run(settings.clone(), matcher, token.clone()));
    let base = format!("http://{}", settings.http);
    let client = Client::new();
    wait_healthy(&client, &base).await?;
    Ok(Console { base, settings, client, token, console_stop, console_task, extra, _clips: clips })
}

impl Console {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: u16,
        needle: &str,
    ) -> Result<Value> {
        let (got, body) = self.call(method.clone(), path, token, body).await?;
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        ensure!(got.as_u16() == status, "{method} {path}: expected {status}, got {got}: {body}");
        ensure!(message.contains(needle), "{method} {path}: {message:?} does not mention {needle:?}");
        Ok(body)
    }
}

impl Console {
    /// Creates the drop `body` describes and opens it.
    pub async fn create_and_open(&self, body: Value) -> Result<()> {
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        self.expect(Method::POST, "/api/drops", Some(CREATOR), Some(body), 201, "").await?;
        self.expect(Method::POST, &format!("/api/drops/{id}/open"), Some(CREATOR), None, 202, "").await?;
        Ok(())
    }
}

pub fn drop_body(id: &str, stock: u32) -> Value {
    json!({
        "id": id, "title": "Fall hoodies",
        "items": [
            {"sku": "HOODIE-L", "name": "hoodie", "product": "hoodie", "size": "L", "stock": stock, "price_cents": 6500},
            {"sku": "TEE-M", "name": "tee", "product": "tee", "size": "M", "stock": 10, "price_cents": 2500}
        ],
        "limit_per_buyer": 2, "hold_seconds": 300, "channels": ["twitch:#creator"], "recording": "stream.ts"
    })
}

pub fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

pub async fn reader(settings: &Settings, kind: TopicKind) -> Result<StreamConsumer> {
    Ok(kafka::reader(settings, "test", settings.topics.name(kind))?)
}

pub async fn next<M: prost::Message + Default>(consumer: &StreamConsumer) -> Result<M> {
    Ok(kafka::next_event(consumer, Duration::from_secs(30)).await?)
}

/// Polls `GET path` until `done` holds (30 s at most).
pub async fn until(c: &Console, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, body) = c.call(Method::GET, path, Some(token), None).await?;
        if status == StatusCode::OK && done(&body) {
            return Ok(body);
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{path} never got there: {last}")
}

/// A chat order of `buyer` (display name = buyer) in drop `drop_id`, as ingest publishes it.
pub fn chat_order(drop_id: &str, n: u32, buyer: &str, text: &str) -> dropline_proto::v1::ChatOrder {
    dropline_proto::v1::ChatOrder {
        order_id: format!("{drop_id}-o{n}"),
        drop_id: drop_id.to_owned(),
        buyer_id: format!("twitch:{}", buyer.to_lowercase()),
        buyer_name: buyer.to_owned(),
        channel: "twitch:#creator".into(),
        text: text.into(),
        sent_at_ms: kafka::now_ms(),
        origin: "webhook".into(),
        platform_message_id: format!("m{n}"),
        ..Default::default()
    }
}

/// Publishes `orders` and returns each one's first outcome, in order.
pub async fn place(
    c: &Console,
    orders: &[dropline_proto::v1::ChatOrder],
) -> Result<Vec<dropline_proto::v1::ReservationOutcome>> {
    let outcomes = reader(&c.settings, TopicKind::Reservations).await?;
    let producer = kafka::producer(&c.settings, "test")?;
    let topic = c.settings.topics.name(TopicKind::ChatOrders).to_owned();
    for order in orders {
        kafka::publish(&producer, &topic, &order.drop_id, order).await?;
    }
    let mut got: std::collections::HashMap<String, dropline_proto::v1::ReservationOutcome> =
        Default::default();
    while got.len() < orders.len() {
        let o: dropline_proto::v1::ReservationOutcome = next(&outcomes).await?;
        if orders.iter().any(|order| order.order_id == o.order_id) {
            got.entry(o.order_id.clone()).or_insert(o);
        }
    }
    Ok(orders.iter().filter_map(|o| got.remove(&o.order_id)).collect())
}

/// Polls a claim (no token: the code is the credential) until its status is `status`.
pub async fn claim_until(c: &Console, code: &str, status: &str) -> Result<Value> {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (got, body) = c.call(Method::GET, &format!("/api/claims/{code}"), None, None).await?;
        if got == StatusCode::OK && body["status"] == status {
            return Ok(body);
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("claim {code} never became {status}: {last}")
}
