//! Buyers are answered in the chat they ordered in, over real parts: ngircd (penalties off, so what
//! an observer in the channel sees is when the bot sent), the broker, the matcher deciding, and
//! ingest answering. Counted at the server: every viewer is mentioned once in an answer matching
//! their outcome, the bot never sends more than its budget in any window nor a message over 500
//! bytes, reservations are answered before anything else, answers with one meaning are merged; a
//! restart of ingest neither repeats nor loses an answer; webhook orders are answered by a signed
//! POST; every answer is also on `chat-replies`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use axum::body::Bytes;
use axum::http::HeaderMap;
use common::*;
use dropline_core::kafka::now_ms;
use dropline_core::{kafka, Settings, TopicKind};
use dropline_ingest::client::IrcConfig;
use dropline_ingest::config::Replies;
use dropline_ingest::reply::budget::Rate;
use dropline_ingest::reply::ReplyConfig;
use dropline_ingest::IngestConfig;
use dropline_proto::v1::{drop_trigger, ChatReply, ReservationOutcome, ReservationStatus as S};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const BOT: &str = "dropbot";

/// A client in the channel that writes down every message of the bot, with when it arrived.
struct Observer {
    seen: Arc<Mutex<Vec<(i64, String)>>>,
    joined: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Observer {
    async fn connect(port: u16, channel: &str) -> Result<Self> {
        let (read, mut write) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
        write
            .write_all(format!("NICK watcher\r\nUSER watcher 0 * :w\r\nJOIN {channel}\r\n").as_bytes())
            .await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let joined = Arc::new(Mutex::new(0));
        let (s, j) = (seen.clone(), joined.clone());
        let task = tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            let mut line = String::new();
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                let l = line.trim_end().to_owned();
                line.clear();
                if let Some(token) = l.strip_prefix("PING ") {
                    let _ = write.write_all(format!("PONG {token}\r\n").as_bytes()).await;
                }
                let from_bot = l.starts_with(&format!(":{BOT}!"));
                if from_bot && l.contains(" JOIN ") {
                    *j.lock().expect("lock") += 1;
                }
                if let (true, Some((_, text))) = (from_bot, l.split_once(" PRIVMSG ")) {
                    let text = text.split_once(" :").map_or("", |(_, t)| t).to_owned();
                    s.lock().expect("lock").push((now_ms(), text));
                }
            }
        });
        Ok(Observer { seen, joined, task })
    }

    fn messages(&self) -> Vec<(i64, String)> {
        self.seen.lock().expect("lock").clone()
    }

    async fn wait_for_bot_join(&self, times: u32) -> Result<()> {
        for _ in 0..300 {
            if *self.joined.lock().expect("lock") >= times {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the bot did not join")
    }
}

/// Whether `text` mentions `@name` (as a whole mention).
fn mentions(text: &str, name: &str) -> bool {
    let at = format!("@{name}");
    text.match_indices(&at)
        .any(|(i, _)| text[i + at.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_')))
}

fn replying_ingest(port: u16, group: &str, rate: Rate) -> Result<IngestConfig> {
    let irc = IrcConfig {
        server: format!("127.0.0.1:{port}"),
        tls: false,
        nick: BOT.into(),
        pass: None,
        channels: vec!["#creator".into()],
        network: "irc".into(),
    };
    let mut config = ingest_config(Some(irc), format!("127.0.0.1:{}", free_port()?).parse()?);
    config.network = "irc".into();
    config.replies =
        Some(Replies { config: ReplyConfig { rate, group: group.into(), webhook: None }, irc: true });
    Ok(config)
}

fn matcher(
    settings: &Settings,
    token: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), dropline_matcher::service::MatcherError>> {
    let config = dropline_matcher::config::MatcherConfig {
        group: format!("matcher-{}", uuid::Uuid::new_v4().simple()),
        admin: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    tokio::spawn(dropline_matcher::service::run(settings.clone(), config, token.clone()))
}

/// A drop on `irc:#creator`: HOODIE-L and TEE-M, 10 each, one per buyer, waitlist of 10 each.
async fn open(
    settings: &Settings,
    producer: &rdkafka::producer::FutureProducer,
    drop_id: &str,
) -> Result<()> {
    let mut trigger = open_drop(drop_id, &["irc:#creator"]);
    if let Some(drop_trigger::Action::Open(open)) = trigger.action.as_mut() {
        for item in &mut open.items {
            item.stock = 10;
        }
        open.limit_per_buyer = 1;
        open.hold_seconds = 120;
        open.waitlist = true;
        open.waitlist_cap = 10;
    }
    let topic = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(producer, &topic, drop_id, &trigger).await?;
    Ok(())
}

/// `n` viewers, each typing one line: hoodie, tee or something we do not sell, in turn.
async fn crowd(port: u16, n: usize) -> Result<Vec<Viewer>> {
    let mut viewers = Vec::with_capacity(n);
    for i in 0..n {
        viewers.push(Viewer::connect(port, &format!("v{i:02}"), "#creator").await?);
    }
    for (i, viewer) in viewers.iter_mut().enumerate() {
        let line = ["!buy hoodie L", "!buy tee M", "!buy jacket"][i % 3];
        viewer.send(&format!("PRIVMSG #creator :{line}\r\n")).await?;
    }
    Ok(viewers)
}

/// The first decision of every order of `drop_id`, by buyer name, once there are `n`.
async fn decisions(
    settings: &Settings,
    drop_id: &str,
    n: usize,
) -> Result<HashMap<String, ReservationOutcome>> {
    let outcomes = reader(settings, TopicKind::Reservations)?;
    let mut by_name = HashMap::new();
    while by_name.len() < n {
        let o: ReservationOutcome = next(&outcomes).await?;
        if o.drop_id == drop_id
            && matches!(S::try_from(o.status), Ok(S::Reserved | S::Waitlisted | S::UnknownSku))
        {
            by_name.entry(o.buyer_name.clone()).or_insert(o);
        }
    }
    Ok(by_name)
}

/// Waits until every name is mentioned (or 90 s pass).
async fn until_all_mentioned(observer: &Observer, names: &[String]) -> Vec<(i64, String)> {
    for _ in 0..900 {
        let seen = observer.messages();
        if names.iter().all(|n| seen.iter().any(|(_, t)| mentions(t, n))) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    observer.messages()
}

fn check_budget(seen: &[(i64, String)], rate: Rate) -> Result<()> {
    let per = i64::try_from(rate.per.as_millis())?;
    for (i, (start, _)) in seen.iter().enumerate() {
        let within = seen[i..].iter().take_while(|(t, _)| t - start < per).count();
        ensure!(
            within <= rate.messages as usize,
            "{within} messages within {per} ms from {start}: {seen:#?}"
        );
    }
    for (_, text) in seen {
        ensure!(text.len() <= 500, "a message of {} bytes: {text}", text.len());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_irc_buyer_is_answered_within_the_budget() -> Result<()> {
    let World { settings, producer } = world().await?;
    let server = irc_server().await?;
    let drop_id = format!("reply-{}", uuid::Uuid::new_v4().simple());
    open(&settings, &producer, &drop_id).await?;
    let token = CancellationToken::new();
    let matcher = matcher(&settings, &token);
    let rate = Rate { messages: 6, per: Duration::from_secs(10) };
    let group = format!("replies-{}", uuid::Uuid::new_v4().simple());
    let replies = reader(&settings, TopicKind::ChatReplies)?;
    let observer = Observer::connect(server.port, "#creator").await?;
    let ingest = tokio::spawn(dropline_ingest::run(
        settings.clone(),
        replying_ingest(server.port, &group, rate)?,
        token.clone(),
    ));
    observer.wait_for_bot_join(1).await?;

    let n = 60;
    let _viewers = crowd(server.port, n).await?;
    let decided = decisions(&settings, &drop_id, n).await?;
    let names: Vec<String> = decided.keys().cloned().collect();
    let seen = until_all_mentioned(&observer, &names).await;
    for (at, text) in &seen {
        eprintln!("{at} {text}");
    }

    // Every viewer: mentioned in exactly one message, which says what their outcome was.
    for (name, o) in &decided {
        let theirs: Vec<&String> = seen.iter().map(|(_, t)| t).filter(|t| mentions(t, name)).collect();
        ensure!(theirs.len() == 1, "{name} ({}) mentioned {} times: {theirs:?}", o.status, theirs.len());
        let text = theirs[0];
        let link = format!("/c/{}", o.claim_code);
        let fits = match S::try_from(o.status)? {
            S::Reserved => text.contains("reserved") && text.contains(&link),
            S::Waitlisted => text.contains("waitlist") && text.contains(&link),
            _ => text.contains("didn't understand"),
        };
        ensure!(fits, "{name}'s outcome {:?} answered with: {text}", S::try_from(o.status)?);
    }
    check_budget(&seen, rate)?;
    // Reservations first: when a message answered anything else, no reservation decided a second
    // before it was still waiting.
    let reserved_at: HashMap<&str, i64> = decided
        .iter()
        .filter(|(_, o)| o.status == S::Reserved as i32)
        .filter_map(|(n, o)| {
            seen.iter().find(|(_, t)| mentions(t, n)).map(|(at, _)| (o.order_id.as_str(), *at))
        })
        .collect();
    for (at, text) in seen.iter().filter(|(_, t)| !t.contains("reserved")) {
        for o in decided.values().filter(|o| o.status == S::Reserved as i32 && o.decided_at_ms < at - 1_000) {
            let answered = reserved_at.get(o.order_id.as_str()).copied().unwrap_or(i64::MAX);
            ensure!(
                answered <= *at,
                "{} waited for a reservation answer while this went: {text}",
                o.buyer_name
            );
        }
    }
    let most = seen.iter().map(|(_, t)| names.iter().filter(|n| mentions(t, n)).count()).max().unwrap_or(0);
    ensure!(most >= 3, "answers were merged: at most {most} buyers in a message");
    ensure!(seen.len() < n / 2, "{} messages for {n} buyers", seen.len());

    // Every message is on chat-replies, with the orders it answered.
    let mut published: HashSet<String> = HashSet::new();
    while published.len() < n {
        let reply: ChatReply = next(&replies).await?;
        ensure!(
            reply.via == "irc" && reply.channel == "irc:#creator" && reply.text.len() <= 500,
            "{reply:?}"
        );
        ensure!(seen.iter().any(|(_, t)| *t == reply.text), "published but not seen: {}", reply.text);
        published.extend(reply.order_ids);
    }
    ensure!(decided.values().all(|o| published.contains(&o.order_id)));

    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    tokio::time::timeout(Duration::from_secs(20), matcher).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ingest_neither_repeats_nor_loses_an_answer() -> Result<()> {
    let World { settings, producer } = world().await?;
    let server = irc_server().await?;
    let drop_id = format!("restart-{}", uuid::Uuid::new_v4().simple());
    open(&settings, &producer, &drop_id).await?;
    let token = CancellationToken::new();
    let matcher = matcher(&settings, &token);
    // A small budget keeps answers waiting when the first ingest stops.
    let rate = Rate { messages: 2, per: Duration::from_secs(6) };
    let group = format!("replies-{}", uuid::Uuid::new_v4().simple());
    let observer = Observer::connect(server.port, "#creator").await?;
    let first = CancellationToken::new();
    let ingest = tokio::spawn(dropline_ingest::run(
        settings.clone(),
        replying_ingest(server.port, &group, rate)?,
        first.clone(),
    ));
    observer.wait_for_bot_join(1).await?;
    let n = 30;
    let _viewers = crowd(server.port, n).await?;
    let decided = decisions(&settings, &drop_id, n).await?;
    // Mid-drop: some answers out, others waiting.
    for _ in 0..200 {
        if observer.messages().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    let before = observer.messages();
    let answered_before = decided.keys().filter(|name| before.iter().any(|(_, t)| mentions(t, name))).count();
    ensure!(
        answered_before > 0 && answered_before < n,
        "{answered_before} of {n} answered before the restart"
    );

    let second = CancellationToken::new();
    let ingest = tokio::spawn(dropline_ingest::run(
        settings.clone(),
        replying_ingest(server.port, &group, rate)?,
        second.clone(),
    ));
    let names: Vec<String> = decided.keys().cloned().collect();
    let seen = until_all_mentioned(&observer, &names).await;
    for name in &names {
        let times = seen.iter().filter(|(_, t)| mentions(t, name)).count();
        ensure!(times == 1, "{name} was answered {times} times across the restart: {seen:#?}");
    }
    check_budget(&seen[before.len()..], rate)?;
    second.cancel();
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    tokio::time::timeout(Duration::from_secs(20), matcher).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_orders_are_answered_by_a_signed_post() -> Result<()> {
    let World { settings, producer } = world().await?;
    let drop_id = format!("hookreply-{}", uuid::Uuid::new_v4().simple());
    let mut trigger = open_drop(&drop_id, &["twitch:#maker"]);
    if let Some(drop_trigger::Action::Open(open)) = trigger.action.as_mut() {
        open.hold_seconds = 120;
    }
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(&producer, &triggers, &drop_id, &trigger).await?;
    let token = CancellationToken::new();
    let matcher = matcher(&settings, &token);

    // The platform adapter: takes the answers, checks their signatures.
    let posts: Arc<Mutex<Vec<(bool, serde_json::Value)>>> = Arc::default();
    let kept = posts.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let adapter = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/replies",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let expected = dropline_ingest::webhook::sign(
                    SECRET.as_bytes(),
                    &h("dropline-message-id"),
                    &h("dropline-message-timestamp"),
                    &body,
                );
                let json = serde_json::from_slice(&body).unwrap_or_default();
                kept.lock().expect("lock").push((expected == h("dropline-message-signature"), json));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut config = ingest_config(None, http);
    config.replies = Some(Replies {
        config: ReplyConfig {
            rate: Rate::TWITCH,
            group: format!("replies-{}", uuid::Uuid::new_v4().simple()),
            webhook: Some(format!("http://{adapter}/replies")),
        },
        irc: false,
    });
    let ingest = tokio::spawn(dropline_ingest::run(settings.clone(), config, token.clone()));
    let client = reqwest::Client::new();
    let url = format!("http://{http}/ingest/chat");
    let body = serde_json::json!({
        "subscription": {"type": "channel.chat.message", "version": "1"},
        "event": {"broadcaster_user_login": "maker", "chatter_user_id": "4242", "chatter_user_login": "bob",
                  "chatter_user_name": "Bob", "message_id": "m-hook-1", "message": {"text": "!buy hoodie L"}}
    })
    .to_string();
    let mut accepted = false;
    // Ingest takes chat once it has replayed the triggers (503 until then): retry until 204.
    for _ in 0..450 {
        let id = uuid::Uuid::new_v4().to_string();
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let signature = dropline_ingest::webhook::sign(SECRET.as_bytes(), &id, &ts, body.as_bytes());
        let sent = client
            .post(&url)
            .header("Twitch-Eventsub-Message-Id", id)
            .header("Twitch-Eventsub-Message-Timestamp", ts)
            .header("Twitch-Eventsub-Message-Signature", signature)
            .header("Twitch-Eventsub-Message-Type", "notification")
            .body(body.clone())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 204) {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(accepted, "the webhook never took the order");
    let mut answer = None;
    for _ in 0..300 {
        if let Some(first) = posts.lock().expect("lock").first().cloned() {
            answer = Some(first);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (signed, json) = answer.context("no answer was POSTed")?;
    ensure!(signed, "the answer's signature does not verify");
    let text = json["text"].as_str().unwrap_or_default();
    ensure!(text.starts_with("@Bob HOODIE-L reserved: pay within"), "{json}");
    ensure!(json["orderIds"][0] == "twitch:m-hook-1" && json["replyToMessageId"] == "m-hook-1", "{json}");
    ensure!(json["via"] == "webhook" && json["channel"] == "twitch:#maker", "{json}");

    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    tokio::time::timeout(Duration::from_secs(20), matcher).await???;
    server.abort();
    Ok(())
}
