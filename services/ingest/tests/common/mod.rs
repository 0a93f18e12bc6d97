//! What the ingest tests share: ngircd on a free loopback port, IRC viewers, the broker with
//! topics of the test's own, readers of a topic, and the drop and ingest settings they use.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use dropline_core::{kafka, Settings, TopicKind};
use dropline_ingest::client::IrcConfig;
use dropline_ingest::IngestConfig;
use dropline_proto::v1::{drop_trigger, CatalogItem, DropTrigger, OpenDrop};
use rdkafka::consumer::StreamConsumer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const SECRET: &str = "test-webhook-secret-0123";

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// ngircd on a free loopback port, stopped when dropped.
pub struct IrcServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for IrcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn irc_server() -> Result<IrcServer> {
    irc_server_on(free_port()?).await
}

pub async fn irc_server_on(port: u16) -> Result<IrcServer> {
    start_ngircd(port, None).await
}

/// ngircd with a TLS port too (`tls_port`), its certificate from `deploy/local/test-certs.sh`
/// in `certs` (the CA is `certs/ca.pem`).
pub async fn irc_server_tls(tls_port: u16, certs: &std::path::Path) -> Result<IrcServer> {
    start_ngircd(free_port()?, Some((tls_port, certs))).await
}

/// Writes the directory of throwaway certificates the TLS tests use (`ca.pem`, `server.pem`,
/// `server.key`), with the one script that makes them.
pub fn test_certs(dir: &std::path::Path) -> Result<()> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/test-certs.sh");
    let status = std::process::Command::new(script).arg(dir).status().context("running test-certs.sh")?;
    anyhow::ensure!(status.success(), "test-certs.sh failed (is openssl installed? `make stack-up`)");
    Ok(())
}

async fn start_ngircd(port: u16, tls: Option<(u16, &std::path::Path)>) -> Result<IrcServer> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("ngircd.conf");
    let ssl = tls.map_or_else(String::new, |(tls_port, certs)| {
        format!(
            "[SSL]\nCertFile = {}\nKeyFile = {}\nPorts = {tls_port}\n",
            certs.join("server.pem").display(),
            certs.join("server.key").display()
        )
    });
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.dropline.test\nInfo = Dropline test\nListen = 127.0.0.1\nPorts = {port}\n\
             PidFile = {pid}\nMotdPhrase = test\n[Limits]\nMaxConnectionsIP = 0\nPingTimeout = 120\nMaxPenaltyTime = 0\n\
             [Options]\nPAM = no\nIdent = no\nDNS = no\n{ssl}",
            pid = dir.path().join("ngircd.pid").display()
        ),
    )?;
    let child = Command::new("ngircd")
        .args(["--nodaemon", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ngircd (Debian package ngircd; `make stack-up` installs it)")?;
    for _ in 0..100 {
        let plain = TcpStream::connect(("127.0.0.1", port)).await.is_ok();
        let tls = match tls {
            Some((tls_port, _)) => TcpStream::connect(("127.0.0.1", tls_port)).await.is_ok(),
            None => true,
        };
        if plain && tls {
            return Ok(IrcServer { child, port, _dir: dir });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("ngircd did not listen on {port}")
}

/// A viewer in the chat: registers, joins, waits for ingest to join, then types.
pub struct Viewer {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Viewer {
    pub async fn connect(port: u16, nick: &str, channel: &str) -> Result<Self> {
        let (read, writer) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
        let mut viewer = Viewer { reader: BufReader::new(read), writer };
        viewer.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")).await?;
        viewer.wait_for(|l| l.split(' ').nth(1) == Some("001")).await?;
        viewer.send(&format!("JOIN {channel}\r\n")).await?;
        Ok(viewer)
    }

    pub async fn send(&mut self, text: &str) -> Result<()> {
        self.writer.write_all(text.as_bytes()).await?;
        Ok(())
    }

    pub async fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await;
            let n = read.context("IRC: nothing wanted within 30 s")??;
            ensure!(n > 0, "IRC server closed the connection");
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {token}")).await?;
            }
            if wanted(line.trim_end()) {
                return Ok(line);
            }
        }
    }
}

pub struct World {
    pub settings: Settings,
    pub producer: rdkafka::producer::FutureProducer,
}

pub async fn world() -> Result<World> {
    let mut settings = Settings::from_env()?;
    settings.set_topic_prefix(&format!("test-ingest-{}.", uuid::Uuid::new_v4().simple()))?;
    settings.shutdown_grace = Duration::from_secs(5);
    kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(&settings, &names, 2, 1).await?;
    let producer = kafka::producer(&settings, "test")?;
    Ok(World { settings, producer })
}

pub fn reader(settings: &Settings, kind: TopicKind) -> Result<StreamConsumer> {
    Ok(kafka::reader(settings, "test", settings.topics.name(kind))?)
}

pub async fn next<M: prost::Message + Default>(consumer: &StreamConsumer) -> Result<M> {
    Ok(kafka::next_event(consumer, Duration::from_secs(30)).await?)
}

pub fn open_drop(drop_id: &str, channels: &[&str]) -> DropTrigger {
    let item = |sku: &str, name: &str, size: &str| CatalogItem {
        sku: sku.into(),
        name: name.into(),
        product: name.into(),
        size: size.into(),
        stock: 5,
        ..Default::default()
    };
    DropTrigger {
        drop_id: drop_id.into(),
        trigger_id: format!("open-{drop_id}"),
        sent_at_ms: kafka::now_ms(),
        action: Some(drop_trigger::Action::Open(OpenDrop {
            items: vec![item("HOODIE-L", "hoodie", "L"), item("TEE-M", "tee", "M")],
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        })),
    }
}

pub fn ingest_config(irc: Option<IrcConfig>, http: SocketAddr) -> IngestConfig {
    IngestConfig {
        irc,
        http,
        webhook_secret: Some(dropline_core::secret::Secret::new(SECRET)),
        network: "twitch".into(),
        fallback_drop: None,
        admin: "127.0.0.1:0".parse().expect("addr"),
        replies: None,
    }
}

/// Ingest reading `#creator` as `dropline` on the IRC server at 127.0.0.1:`port` (over TLS if
/// `tls`) as network `irc`.
pub fn irc_ingest(port: u16, tls: bool) -> Result<IngestConfig> {
    let irc = IrcConfig {
        server: format!("127.0.0.1:{port}"),
        tls,
        nick: "dropline".into(),
        pass: None,
        channels: vec!["#creator".into()],
        network: "irc".into(),
    };
    let mut config = ingest_config(Some(irc), format!("127.0.0.1:{}", free_port()?).parse()?);
    config.network = "irc".into();
    Ok(config)
}
