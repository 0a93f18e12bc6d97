//! TLS to Redis and the broker, against local TLS endpoints made with a throwaway CA
//! (`deploy/local/test-certs.sh`): `rediss://` to a redis-server TLS port through the connect
//! every service uses (the certificate checked against `SSL_CERT_FILE`'s CA), and
//! `security.protocol=SSL` through `DROPLINE_KAFKA_CONFIG` to a broker of its own behind a TLS
//! terminator (socat), with `SASL_SSL` accepted by the librdkafka we build.
//! Its own test binary: it sets `SSL_CERT_FILE` for the process before anything reads it.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

/// A process the test started (Redis, the broker, the TLS terminator), stopped when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory of throwaway certificates.
fn certs() -> Result<tempfile::TempDir> {
    let certs = tempfile::tempdir()?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/test-certs.sh");
    ensure!(Command::new(script).arg(certs.path()).status()?.success(), "test-certs.sh failed (openssl?)");
    Ok(certs)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(port: u16) -> Result<()> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing listens on {port}")
}

#[tokio::test]
async fn rediss_urls_reach_a_tls_redis() -> Result<()> {
    let certs = certs()?;
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.pem"));
    let port = free_port()?;
    let file = |name: &str| certs.path().join(name).display().to_string();
    let _server = Stopped(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &file("server.pem"), "--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem"), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--dir", &certs.path().display().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (`make stack-up` installs it)")?,
    );
    wait_for_port(port).await?;

    let url = format!("rediss://127.0.0.1:{port}");
    let settings =
        dropline_core::Settings::from_lookup(|var| Ok((var == "DROPLINE_REDIS").then(|| url.clone())))?;
    let mut conn = dropline_core::redis::connect(&settings.redis).await?;
    let key = dropline_core::keys::Keyspace::new("tls-test")?.drop_key("d", "meta");
    redis::cmd("SET").arg(&key).arg("over tls").query_async::<()>(&mut conn).await?;
    let back: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    assert_eq!(back, "over tls");

    // The same port in clear is refused, not silently downgraded.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        dropline_core::redis::connect(&format!("redis://127.0.0.1:{port}")),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain connection to the TLS port must fail");
    Ok(())
}

/// The tansu binary, as the stack installs it.
fn tansu() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("DROPLINE_TANSU") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("tansu")).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))
            .unwrap_or_default();
        home.join("bin/tansu")
    })
}

#[tokio::test]
async fn the_broker_is_reached_over_ssl_and_sasl_ssl_is_built_in() -> Result<()> {
    use dropline_core::{kafka, Settings, TopicKind};
    let certs = certs()?;
    let (plain, tls) = (free_port()?, free_port()?);
    // A broker of its own that tells clients to come back through the TLS port.
    let data = tempfile::tempdir()?;
    let _broker = Stopped(
        Command::new(tansu())
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{plain}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{tls}")])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tansu (`make stack-up` installs it)")?,
    );
    let file = |name: &str| certs.path().join(name).display().to_string();
    let _terminator = Stopped(
        Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                file("server.pem"),
                file("server.key")
            ))
            .arg(format!("TCP:127.0.0.1:{plain}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting socat (`make stack-up` installs it)")?,
    );
    wait_for_port(plain).await?;
    wait_for_port(tls).await?;

    let vars = [
        ("DROPLINE_KAFKA".to_owned(), format!("127.0.0.1:{tls}")),
        (
            "DROPLINE_KAFKA_CONFIG".to_owned(),
            format!("security.protocol=SSL;ssl.ca.location={}", file("ca.pem")),
        ),
        ("DROPLINE_TOPIC_PREFIX".to_owned(), format!("tls-{}.", uuid::Uuid::new_v4().simple())),
    ];
    let lookup = |vars: Vec<(String, String)>| {
        move |var: &str| Ok(vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()))
    };
    let settings = Settings::from_lookup(lookup(vars.to_vec()))?;
    kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
    let topic = settings.topics.name(TopicKind::DeadLetters).to_owned();
    kafka::ensure_topics(&settings, &[topic.as_str()], 1, 1).await?;
    let producer = kafka::producer(&settings, "tls-test")?;
    let letter = dropline_proto::v1::DeadLetter { reason: "over tls".into(), ..Default::default() };
    kafka::publish(&producer, &topic, "k", &letter).await?;
    let reader = kafka::reader(&settings, "tls-test", &topic)?;
    let back: dropline_proto::v1::DeadLetter = kafka::next_event(&reader, Duration::from_secs(30)).await?;
    assert_eq!(back.reason, "over tls");

    // SASL over SSL: librdkafka takes the configuration (a build without SSL refuses it at once).
    let mut sasl = vars.to_vec();
    sasl[1].1 = format!(
        "security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;sasl.username=dropline;sasl.password=secret;ssl.ca.location={}",
        file("ca.pem")
    );
    let settings = Settings::from_lookup(lookup(sasl))?;
    let _sasl = kafka::producer(&settings, "tls-test").context("a SASL_SSL producer")?;
    Ok(())
}
