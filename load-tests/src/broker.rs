//! A Kafka-protocol broker of a suite's own (tansu on a free loopback port, its data in SQLite
//! so it survives a restart), for suites that kill the broker without disturbing anything else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{wait_until, Process};

/// The suite's own broker, its data in a SQLite file that survives a restart.
#[derive(Debug)]
pub struct Broker {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    process: Option<Process>,
}

impl Broker {
    /// A broker (not yet started) of `binary` on 127.0.0.1:`port`, its data and log in `dir`.
    pub fn new(binary: PathBuf, port: u16, dir: PathBuf) -> Broker {
        Broker { binary, port, dir, process: None }
    }

    /// Its `host:port`, for `DROPLINE_KAFKA`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Broker {
    /// Starts it and waits (30 s at most) until it accepts connections.
    pub async fn start(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("tansu.log"))?;
        // The SQLite path is relative to the working directory.
        let child = Command::new(&self.binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.process = Some(Process::new(child));
        let port = self.port;
        wait_until("the broker", Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

/// The tansu binary: `DROPLINE_TANSU`, else `tansu` on the PATH, else cargo's bin directory
/// (where `make stack-up` installs it).
pub fn find_tansu() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("DROPLINE_TANSU") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|p| p.join("tansu")).find(|p| p.is_file()));
    if let Some(Some(path)) = on_path {
        return Ok(path);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    match cargo_home.map(|c| c.join("bin/tansu")) {
        Some(path) if path.is_file() => Ok(path),
        _ => bail!("the tansu broker is not installed: run `make stack-up` (or set DROPLINE_TANSU)"),
    }
}
