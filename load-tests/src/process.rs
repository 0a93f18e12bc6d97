//! Child processes a run starts (matchers, and for the fault suite its own Redis and broker):
//! stopped with SIGTERM (then SIGKILL after 5 s) when dropped, or killed outright with SIGKILL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that does not outlive its owner.
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    pub fn new(child: Child) -> Self {
        Process { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// `kill -9`: no chance to drain, commit or flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to 5 s for it to finish draining (SIGKILL after that).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Dropline service binary on `settings`' broker, Redis, topics and keyspace (every topic name
/// and the namespace passed explicitly), logging errors only unless `DROPLINE_LOG` says otherwise;
/// the caller adds the service's own variables and spawns it.
pub fn service(binary: &std::path::Path, settings: &dropline_core::Settings) -> anyhow::Result<Command> {
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it too (cargo build --workspace)",
        binary.display()
    );
    let mut command = Command::new(binary);
    for (kind, name) in settings.topics.all() {
        command.env(kind.env_var(), name);
    }
    command
        .env("DROPLINE_KAFKA", &settings.kafka)
        .env("DROPLINE_REDIS", &settings.redis)
        .env("DROPLINE_NAMESPACE", settings.keyspace.namespace())
        .env("DROPLINE_LOG", std::env::var("DROPLINE_LOG").unwrap_or_else(|_| "error".into()))
        .stdin(Stdio::null());
    Ok(command)
}

/// Polls `ready` every 100 ms until it yields `Some`, failing after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready().await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{what} did not answer within {limit:?}")
}
