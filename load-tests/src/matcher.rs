//! The matcher a load run starts and watches: a child process on the run's topics, its admin
//! port (latency histograms) and its CPU and memory from `/proc`.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use dropline_core::Settings;

use crate::process::Process;

/// A started matcher process, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Matcher {
    pub process: Process,
    /// Its `/metrics` and `/healthz` port on 127.0.0.1.
    pub admin: u16,
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Matcher {
    /// Starts `binary` on `settings`' broker, Redis and topics, in consumer group `group`, and
    /// waits (30 s at most) until its admin endpoint answers.
    pub(crate) async fn start(binary: &std::path::Path, settings: &Settings, group: &str) -> Result<Matcher> {
        let admin = free_port()?;
        let child = crate::process::service(binary, settings)?
            .env("DROPLINE_MATCHER_GROUP", group)
            .env("DROPLINE_ADMIN", format!("127.0.0.1:{admin}"))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let matcher = Matcher { process: Process::new(child), admin };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", admin)).await.is_ok() {
                return Ok(matcher);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the matcher did not start within 30 s")
    }

    /// CPU time (user + system) process `pid` has used so far, seconds (Linux `/proc`).
    pub(crate) fn cpu_of(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // utime and stime are in clock ticks: USER_HZ, 100 on Linux x86-64 and arm64.
        Some(ticks / 100.0)
    }

    /// Resident memory of process `pid` now, MiB (Linux `/proc`).
    pub(crate) fn rss_of(pid: u32) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 =
            status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}
