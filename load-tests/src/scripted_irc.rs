//! A scripted IRC server for the suites: it registers one ingest connection (001 after NICK, the
//! JOIN echoed) and then sends whatever a case wants — lines real servers rarely send, or a
//! steady stream of viewers' orders — and an ingest started against it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use dropline_core::{kafka, Settings};
use dropline_proto::v1::ChatOrder;
use futures::StreamExt;
use rdkafka::consumer::StreamConsumer;

use crate::matcher::free_port;
use crate::process::Process;

/// A scripted IRC server's side of one ingest connection.
pub struct IrcPeer {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl IrcPeer {
    /// Accepts ingest's next connection and registers it: 001 after NICK, its JOIN echoed.
    pub async fn accept(listener: &tokio::net::TcpListener) -> Result<IrcPeer> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .context("ingest did not connect within 30 s")??;
        let (read, mut writer) = stream.into_split();
        let mut reader = tokio::io::BufReader::new(read);
        let mut line = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            line.clear();
            let n =
                tokio::time::timeout_at(deadline, reader.read_line(&mut line)).await.context("no JOIN")??;
            anyhow::ensure!(n > 0, "ingest closed before joining");
            if line.starts_with("NICK ") {
                writer.write_all(b":irc.bad.test 001 justinfan4242 :welcome\r\n").await?;
            }
            if let Some(channel) = line.trim_end().strip_prefix("JOIN ") {
                let echo = format!(":justinfan4242!j@irc.bad.test JOIN {channel}\r\n");
                writer.write_all(echo.as_bytes()).await?;
                return Ok(IrcPeer { reader, writer });
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await?;
        Ok(())
    }

    /// Whether ingest closed this connection within `within`.
    pub async fn closed(&mut self, within: Duration) -> bool {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            line.clear();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// The order a viewer's line became, by its platform message id, within 30 s.
pub async fn order_with_id(orders: &StreamConsumer, message_id: &str) -> Result<ChatOrder> {
    let wanted = format!("twitch:{message_id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut stream = orders.stream();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .with_context(|| format!("no order {wanted} within 30 s"))?
            .context("stream ended")??;
        if let Ok(order) = kafka::decode::<ChatOrder, _>(&next) {
            if order.order_id == wanted {
                return Ok(order);
            }
        }
    }
}

/// An ingest reading channel `#bad` from the scripted server on 127.0.0.1:`irc_port`.
pub fn start_ingest(binary: &Path, settings: &Settings, irc_port: u16) -> Result<Process> {
    let child = crate::process::service(binary, settings)?
        .env("DROPLINE_INGEST_IRC", format!("127.0.0.1:{irc_port}"))
        .env("DROPLINE_INGEST_CHANNELS", "#bad")
        .env("DROPLINE_INGEST_HTTP", format!("127.0.0.1:{}", free_port()?))
        .env("DROPLINE_ADMIN", format!("127.0.0.1:{}", free_port()?))
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Process::new(child))
}
