//! Child processes a run starts (matchers, and for the fault suite its own Redis and broker):
//! stopped with SIGTERM (then SIGKILL after 5 s) when dropped, or killed outright with SIGKILL.

use std::process::{Child, Command};
use std::time::Duration;

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
