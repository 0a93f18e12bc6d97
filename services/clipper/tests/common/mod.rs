//! Shared by the clipper's media tests: a directory of generated recordings and running the
//! ffmpeg/ffprobe CLIs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};

/// Recordings generated once per test file, in a temporary directory.
pub struct Media {
    pub _dir: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Media {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Runs a command; its stderr in the error when it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out)
}

/// The ffmpeg CLI, quiet, overwriting.
pub fn ffmpeg(args: &[&str]) -> Result<()> {
    run(Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args)).map(|_| ())
}
