//! The IRC chat client (Twitch chat speaks IRC): connect, authenticate with PASS/NICK, ask for
//! IRCv3 tags, JOIN the channels, hand every PRIVMSG on as a `ChatLine`, answer PINGs, write the
//! answers the reply path hands over, and reconnect with backoff when the connection drops.
//! Over TLS when configured (`ircs://`, Twitch's port 6697), so the password never crosses in clear.

use std::time::Duration;

use dropline_core::backoff::Backoff;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::irc::{line, privmsg, Message};
use crate::metrics::Metrics;
use crate::route::{ChatLine, Origin};

/// Longest line accepted from the server (Twitch allows 8 KiB of tags plus 512 bytes of message).
const MAX_LINE: usize = 16 * 1024;
/// A server that says nothing for this long is gone (servers PING every few minutes).
const SILENCE: Duration = Duration::from_secs(360);
/// Reconnect delays: doubling from 1 s up to 30 s; reset after a session that lasted a minute.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where and as whom to chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcConfig {
    /// `host:port` of the IRC server (`DROPLINE_INGEST_IRC`: `ircs://host:port` for TLS, e.g.
    /// `ircs://irc.chat.twitch.tv:6697`; `host:port` in clear).
    pub server: String,
    /// Connect over TLS (the server's certificate checked for its host name against the system's
    /// roots or `SSL_CERT_FILE`'s).
    pub tls: bool,
    /// `DROPLINE_INGEST_IRC_NICK` (Twitch: the bot account; `justinfan…` reads anonymously).
    pub nick: String,
    /// `DROPLINE_INGEST_IRC_PASS` (Twitch: `oauth:<token>`), sent before NICK if set.
    pub pass: Option<dropline_core::secret::Secret>,
    /// Channels to join (`DROPLINE_INGEST_CHANNELS`, comma-separated, e.g. `#creator`).
    pub channels: Vec<String>,
    /// Network name that prefixes channel, order and buyer ids (`DROPLINE_INGEST_NETWORK`).
    pub network: String,
}

/// A message for a channel, written by whichever session is connected.
#[derive(Debug)]
pub struct Outgoing {
    /// `#channel`.
    pub channel: String,
    pub text: String,
    /// The platform message it answers (sent as `reply-parent-msg-id` where the server takes tags).
    pub reply_to: Option<String>,
    /// Not written after this: the sender has given up on it and plans the answers again.
    pub expires: tokio::time::Instant,
    /// Told once the line is written.
    pub written: oneshot::Sender<()>,
}

/// What the reply path needs to know about the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// Registered and joined.
    pub connected: bool,
    /// Bytes the server puts before our text when it relays a message
    /// (`:nick!user@host PRIVMSG #channel :` without the channel), once our JOIN came back.
    pub relay_prefix: Option<usize>,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("server silent for {0:?}")]
    Silent(Duration),
    #[error("server error: {0}")]
    Server(String),
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the ingest pipeline is gone")]
    PipelineGone,
    #[error("tls: {0}")]
    Tls(String),
}

/// The connection a session talks over: plain TCP or TLS on it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Connects to `config.server` (10 s at most), over TLS if configured.
async fn connect(config: &IrcConfig) -> Result<Box<dyn Transport>, SessionError> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&config.server))
        .await
        .map_err(|_| SessionError::Silent(Duration::from_secs(10)))??;
    stream.set_nodelay(true)?;
    if !config.tls {
        return Ok(Box::new(stream));
    }
    let host = config.server.rsplit_once(':').map_or(config.server.as_str(), |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SessionError::Tls(format!("{host:?} is not a server name: {e}")))?;
    let tls = dropline_core::tls::client_config().map_err(|e| SessionError::Tls(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let stream = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, stream))
        .await
        .map_err(|_| SessionError::Silent(Duration::from_secs(10)))?
        .map_err(|e| SessionError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

/// Runs sessions until `shutdown`, reconnecting with backoff. Chat lines go to `lines`.
pub async fn run(
    config: IrcConfig,
    lines: mpsc::Sender<ChatLine>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    link: watch::Sender<Link>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        let result = session(&config, &lines, &mut outgoing, &link, &metrics, &shutdown).await;
        link.send_replace(Link::default());
        metrics.irc_connected.set(0);
        match result {
            Ok(()) => break,
            Err(SessionError::PipelineGone) => break,
            Err(e) => {
                metrics.irc_reconnects.inc();
                if started.elapsed() > Duration::from_secs(60) {
                    backoff.reset();
                }
                let retry_in = backoff.next_delay();
                warn!(server = %config.server, error = %e, retry_in = ?retry_in, "irc session ended");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(retry_in) => {}
                }
            }
        }
    }
}

/// One connection: returns `Ok` only when `shutdown` ended it.
async fn session(
    config: &IrcConfig,
    lines: &mpsc::Sender<ChatLine>,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    link: &watch::Sender<Link>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let (read, mut write) = tokio::io::split(connect(config).await?);
    let mut reader = BufReader::new(read);
    let mut hello = line("CAP", &["REQ"], Some("twitch.tv/tags twitch.tv/commands"));
    if let Some(pass) = &config.pass {
        hello.push_str(&line("PASS", &[&pass.expose_str()], None));
    }
    hello.push_str(&line("NICK", &[&config.nick], None));
    hello.push_str(&line("USER", &[&config.nick, "0", "*"], Some(&config.nick)));
    // Servers that negotiate capabilities hold registration until CAP END (Twitch does not care).
    hello.push_str(&line("CAP", &["END"], None));
    write.write_all(hello.as_bytes()).await?;

    let mut buf = Vec::with_capacity(1024);
    // Whether the server took IRCv3 tags (Twitch: `twitch.tv/tags`), so replies may carry one.
    let mut tags = false;
    let mut registered = false;
    let mut no_replies = false;
    loop {
        buf.clear();
        let read = tokio::select! {
            () = shutdown.cancelled() => {
                let _ = write.write_all(line("QUIT", &[], Some("shutting down")).as_bytes()).await;
                return Ok(());
            }
            out = outgoing.recv(), if registered && !no_replies => {
                let Some(out) = out else {
                    no_replies = true; // nobody will hand over answers (replies are off)
                    continue;
                };
                if tokio::time::Instant::now() < out.expires {
                    let reply_to = out.reply_to.as_deref().filter(|_| tags);
                    write.write_all(privmsg(&out.channel, &out.text, reply_to).as_bytes()).await?;
                    let _ = out.written.send(());
                }
                continue;
            }
            read = tokio::time::timeout(SILENCE, read_line(&mut reader, &mut buf)) => read,
        };
        match read {
            Err(_) => return Err(SessionError::Silent(SILENCE)),
            Ok(Err(SessionError::TooLong)) => {
                warn!(server = %config.server, max = MAX_LINE, "a line longer than the limit was skipped");
                continue;
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => return Err(SessionError::Closed),
            Ok(Ok(_)) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let Some(message) = Message::parse(&text) else { continue };
        match message.command.as_str() {
            "PING" => {
                let token = message.params.first().map_or("", String::as_str);
                write.write_all(line("PONG", &[], Some(token)).as_bytes()).await?;
            }
            // Welcome: registered, join the channels.
            "001" => {
                metrics.irc_connected.set(1);
                info!(server = %config.server, nick = %config.nick, channels = ?config.channels, "irc connected");
                for channel in &config.channels {
                    write.write_all(line("JOIN", &[channel], None).as_bytes()).await?;
                }
                registered = true;
                link.send_modify(|l| l.connected = true);
            }
            "CAP" if message.params.get(1).map(String::as_str) == Some("ACK") => {
                let granted = message.params.get(2).map_or("", String::as_str);
                tags = granted.split(' ').any(|c| c == "twitch.tv/tags" || c == "message-tags");
            }
            // Our own JOIN, echoed with the prefix the server will put before what we say.
            "JOIN" if message.nick().is_some_and(|n| n.eq_ignore_ascii_case(&config.nick)) => {
                let prefix = message.prefix.as_deref().map_or(0, str::len);
                // `:` prefix ` PRIVMSG ` … ` :`: the channel is added by the sender per message.
                let relay = 1 + prefix + " PRIVMSG ".len() + " :".len();
                link.send_modify(|l| l.relay_prefix = Some(relay));
            }
            "PRIVMSG" => {
                let Some(chat) = chat_line(&message, &config.network) else { continue };
                lines.send(chat).await.map_err(|_| SessionError::PipelineGone)?;
            }
            // Twitch asks clients to reconnect before maintenance.
            "RECONNECT" => return Err(SessionError::Server("server asked to reconnect".into())),
            "ERROR" => return Err(SessionError::Server(message.params.join(" "))),
            // Nick in use, bad password (464), banned: nothing will get better by waiting here.
            "433" | "464" | "465" => return Err(SessionError::Server(message.params.join(" "))),
            _ => {}
        }
    }
}

/// Reads one line (up to LF) into `buf` without the line end; 0 at the end of the stream. A line
/// longer than [`MAX_LINE`] is read to its end and dropped ([`SessionError::TooLong`]): the lines
/// after it are read as usual.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<usize, SessionError> {
    let mut overflow = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if overflow { Err(SessionError::TooLong) } else { Ok(buf.len()) };
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if overflow || buf.len() + take > MAX_LINE {
            overflow = true;
            buf.clear();
            reader.consume(take);
            if done {
                return Err(SessionError::TooLong);
            }
            continue;
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            // An empty line is not the end of the stream: report at least 1.
            return Ok(buf.len().max(1));
        }
    }
}

/// A PRIVMSG as a chat line: channel, text, and whatever ids the tags carry.
pub fn chat_line(message: &Message, network: &str) -> Option<ChatLine> {
    let channel = message.params.first()?.clone();
    let text = message.params.get(1)?.clone();
    let nick = message.nick()?.to_owned();
    Some(ChatLine {
        origin: Origin::Irc,
        network: network.to_owned(),
        channel,
        message_id: message.tag("id").map(str::to_owned),
        user_id: message.tag("user-id").map(str::to_owned),
        display_name: message.tag("display-name").map(str::to_owned),
        nick,
        text,
        sent_at_ms: message.tag("tmi-sent-ts").and_then(|t| t.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privmsg_becomes_a_chat_line() {
        let m =
            Message::parse("@id=abc;user-id=42;tmi-sent-ts=7 :ada!a@h PRIVMSG #creator :!buy tee M").unwrap();
        let chat = chat_line(&m, "twitch").unwrap();
        assert_eq!(chat.channel, "#creator");
        assert_eq!(chat.text, "!buy tee M");
        assert_eq!(
            (chat.message_id.as_deref(), chat.user_id.as_deref(), chat.sent_at_ms),
            (Some("abc"), Some("42"), Some(7))
        );
        let plain = Message::parse(":bob!b@h PRIVMSG #creator :hi").unwrap();
        let chat = chat_line(&plain, "irc").unwrap();
        assert_eq!((chat.nick.as_str(), chat.message_id), ("bob", None));
        assert!(chat_line(&Message::parse("PRIVMSG #c").unwrap(), "irc").is_none());
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let data: &[u8] = b"PING :a\r\n\r\nlast";
        let mut reader = tokio::io::BufReader::new(data);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut reader, &mut buf).await.unwrap(), 7);
        assert_eq!(buf, b"PING :a");
        buf.clear();
        assert_eq!(read_line(&mut reader, &mut buf).await.unwrap(), 1);
        assert!(buf.is_empty());
        buf.clear();
        assert_eq!(read_line(&mut reader, &mut buf).await.unwrap(), 4);
        buf.clear();
        assert_eq!(read_line(&mut reader, &mut buf).await.unwrap(), 0);
        let mut long = vec![b'a'; MAX_LINE + 10];
        long.extend_from_slice(b"\r\nPING :after\r\n");
        let mut reader = tokio::io::BufReader::with_capacity(1024, &long[..]);
        buf.clear();
        assert!(matches!(read_line(&mut reader, &mut buf).await, Err(SessionError::TooLong)));
        buf.clear();
        assert_eq!(
            read_line(&mut reader, &mut buf).await.unwrap(),
            11,
            "the line after an overlong one is read"
        );
        assert_eq!(buf, b"PING :after");
    }
}
