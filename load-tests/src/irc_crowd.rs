//! Viewers as real IRC clients (the demo's): they join a channel on an IRC server, wait for the
//! Dropline bot, type their `!buy` lines over a few seconds, and a watcher in the channel counts
//! what the bot answered, as the server relayed it — messages, buyers mentioned, the most in any
//! window of the budget, the longest message; the `chat-replies` topic gives each answer's delay
//! (decided → sent).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dropline_core::kafka::now_ms;
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::ChatReply;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the viewers do.
#[derive(Debug, Clone)]
pub struct IrcCrowd {
    /// `host:port` of the IRC server.
    pub server: String,
    /// `#channel`.
    pub channel: String,
    /// The bot's nick.
    pub bot: String,
    /// The drop the answers are about (for the delays on `chat-replies`).
    pub drop_id: String,
    /// One line per viewer, in order (viewer `v000` types the first).
    pub lines: Vec<String>,
    /// Typing is spread over this long.
    pub spread: Duration,
    /// How long to wait for every viewer's answer.
    pub wait: Duration,
    /// The bot's budget window (for "most messages in any window").
    pub window: Duration,
}

/// What the watcher saw.
#[derive(Debug, Clone, Default)]
pub struct IrcSummary {
    pub viewers: usize,
    pub bot_messages: usize,
    pub mentioned: usize,
    pub most_in_one_message: usize,
    pub most_in_window: usize,
    pub longest_bytes: usize,
    pub answers: u64,
    pub delay_p50_ms: u64,
    pub delay_p99_ms: u64,
}

/// A viewer's nick (`v000`, …; IRC servers allow 9 characters).
pub fn nick(i: usize) -> String {
    format!("v{i:03}")
}

async fn register(
    server: &str,
    nick: &str,
    channel: &str,
) -> Result<(BufReader<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf)> {
    let (read, mut write) =
        TcpStream::connect(server).await.with_context(|| format!("IRC server {server}"))?.into_split();
    write
        .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channel}\r\n").as_bytes())
        .await?;
    Ok((BufReader::new(read), write))
}

/// Whether `text` mentions `@name` as a whole mention.
fn mentions(text: &str, name: &str) -> bool {
    let at = format!("@{name}");
    text.match_indices(&at)
        .any(|(i, _)| text[i + at.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_')))
}

pub async fn run(settings: &Settings, crowd: &IrcCrowd) -> Result<IrcSummary> {
    let seen: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let bot_here = Arc::new(tokio::sync::Notify::new());
    let (mut reader, mut writer) = register(&crowd.server, "watcher", &crowd.channel).await?;
    let (kept, here, bot) = (seen.clone(), bot_here.clone(), crowd.bot.to_lowercase());
    let watcher = tokio::spawn(async move {
        let mut line = String::new();
        while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            let l = line.trim_end().to_owned();
            line.clear();
            if let Some(token) = l.strip_prefix("PING ") {
                let _ = writer.write_all(format!("PONG {token}\r\n").as_bytes()).await;
            }
            let from_bot = l.to_lowercase().starts_with(&format!(":{bot}!"));
            // NAMES (353) lists the bot when it was there first; its JOIN when it comes later.
            let names = l.split(' ').nth(1) == Some("353")
                && l.to_lowercase().split([' ', ':', '@', '+']).any(|w| w == bot);
            if names || (from_bot && l.contains(" JOIN ")) {
                here.notify_one();
            }
            if let (true, Some((_, rest))) = (from_bot, l.split_once(" PRIVMSG ")) {
                let text = rest.split_once(" :").map_or("", |(_, t)| t).to_owned();
                kept.lock().unwrap_or_else(PoisonError::into_inner).push((now_ms(), text));
            }
        }
    });
    if tokio::time::timeout(Duration::from_secs(30), bot_here.notified()).await.is_err() {
        watcher.abort();
        bail!("{} never joined {}", crowd.bot, crowd.channel);
    }
    let mut viewers = Vec::with_capacity(crowd.lines.len());
    for i in 0..crowd.lines.len() {
        let (mut reader, writer) = register(&crowd.server, &nick(i), &crowd.channel).await?;
        // Registered and joined once the server lists the channel's names to us.
        let mut line = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            line.clear();
            let n = tokio::time::timeout_at(deadline, reader.read_line(&mut line))
                .await
                .context("IRC join")??;
            if n == 0 || line.split(' ').nth(1) == Some("366") {
                break;
            }
        }
        viewers.push((reader, writer));
    }
    let pause = crowd.spread / u32::try_from(crowd.lines.len().max(1)).unwrap_or(1);
    for ((_, writer), text) in viewers.iter_mut().zip(&crowd.lines) {
        writer.write_all(format!("PRIVMSG {} :{text}\r\n", crowd.channel).as_bytes()).await?;
        tokio::time::sleep(pause).await;
    }
    let names: Vec<String> = (0..crowd.lines.len()).map(nick).collect();
    let deadline = tokio::time::Instant::now() + crowd.wait;
    loop {
        let all = {
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            names.iter().all(|n| seen.iter().any(|(_, t)| mentions(t, n)))
        };
        if all || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watcher.abort();
    drop(viewers);
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let window = i64::try_from(crowd.window.as_millis()).unwrap_or(i64::MAX);
    let most_in_window = (0..seen.len())
        .map(|i| seen[i..].iter().take_while(|(t, _)| t - seen[i].0 < window).count())
        .max()
        .unwrap_or(0);
    let mentioned: HashSet<&String> =
        names.iter().filter(|n| seen.iter().any(|(_, t)| mentions(t, n))).collect();
    let mut summary = IrcSummary {
        viewers: names.len(),
        bot_messages: seen.len(),
        mentioned: mentioned.len(),
        most_in_one_message: seen.iter().map(|(_, t)| t.matches('@').count()).max().unwrap_or(0),
        most_in_window,
        longest_bytes: seen.iter().map(|(_, t)| t.len()).max().unwrap_or(0),
        ..IrcSummary::default()
    };
    let (answers, p50, p99) = reply_delays(settings, &crowd.drop_id).await?;
    (summary.answers, summary.delay_p50_ms, summary.delay_p99_ms) = (answers, p50, p99);
    Ok(summary)
}

/// Every answer of `drop_id` on `chat-replies`: how many, and their delay (decided → sent) p50/p99.
pub async fn reply_delays(settings: &Settings, drop_id: &str) -> Result<(u64, u64, u64)> {
    let consumer = kafka::reader(settings, "dropline-load", settings.topics.name(TopicKind::ChatReplies))?;
    let mut delays = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut stream = consumer.stream();
    // Until the topic has been quiet for 3 s.
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await {
        let Ok(reply) = kafka::decode::<ChatReply, _>(&message?) else { continue };
        if reply.drop_id != drop_id {
            continue;
        }
        for decided in &reply.decided_at_ms {
            delays.record(u64::try_from(reply.sent_at_ms - decided).unwrap_or(0).max(1))?;
        }
    }
    Ok((delays.len(), delays.value_at_quantile(0.5), delays.value_at_quantile(0.99)))
}
