//! The console binary started with no tokens configured: it makes one per role, prints the login
//! URLs once, and the next start reuses them without printing (against the real stack).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

/// The console process, stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(state: &std::path::Path, clips: &std::path::Path, port: u16, prefix: &str) -> Result<Running> {
    let child = Command::new(env!("CARGO_BIN_EXE_dropline-console"))
        .env_remove("DROPLINE_CONSOLE_TOKENS")
        .env_remove("DROPLINE_CONSOLE_TOKENS_FILE")
        .env("DROPLINE_CONSOLE_STATE", state)
        .env("DROPLINE_CLIPS", clips)
        .env("DROPLINE_HTTP", format!("127.0.0.1:{port}"))
        .env("DROPLINE_TOPIC_PREFIX", prefix)
        .env("DROPLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dropline-console")?;
    Ok(Running(child))
}

async fn wait_up(client: &reqwest::Client, port: u16) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the console did not start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_and_printed_once_then_reused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (state, clips) = (dir.path().join("state"), dir.path().join("clips"));
    let prefix = format!("test-first-start-{}.", uuid::Uuid::new_v4().simple());
    let client = reqwest::Client::new();

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut first = start(&state, &clips, port, &prefix)?;
    // The login lines come right after the listener is bound.
    let stdout = first.0.stdout.take().context("stdout")?;
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).take(4).collect::<Vec<String>>()
    });
    let lines =
        tokio::time::timeout(Duration::from_secs(30), lines).await.context("no login URLs printed")??;
    ensure!(lines[0].contains("made one per role"), "{lines:?}");
    let creator = lines
        .iter()
        .find(|l| l.trim_start().starts_with("creator"))
        .and_then(|l| l.split("?token=").nth(1))
        .context("the creator's login URL")?
        .to_owned();
    ensure!(
        lines.iter().any(|l| l.contains(&format!("http://127.0.0.1:{port}/gallery?token="))),
        "{lines:?}"
    );
    wait_up(&client, port).await?;
    let status =
        client.get(format!("http://127.0.0.1:{port}/api/drops")).bearer_auth(&creator).send().await?.status();
    ensure!(status == 200, "the made creator token is accepted: {status}");
    drop(first);

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut second = start(&state, &clips, port, &prefix)?;
    wait_up(&client, port).await?;
    let status =
        client.get(format!("http://127.0.0.1:{port}/api/drops")).bearer_auth(&creator).send().await?.status();
    ensure!(status == 200, "the next start reuses the token: {status}");
    let mut out = second.0.stdout.take().context("stdout")?;
    drop(second);
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut out, &mut printed)?;
    ensure!(printed.is_empty(), "printed again: {printed:?}");
    Ok(())
}
