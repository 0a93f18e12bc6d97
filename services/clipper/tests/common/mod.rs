//! Shared by the clipper's media tests: a directory of generated recordings and running the
//! ffmpeg/ffprobe CLIs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

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

/// `seconds` of a moving test picture (`testsrc2` at `size`, 30 fps, H.264 with a `gop`-frame GOP
/// and B-frames) with a 440 Hz tone (AAC), written to `out` by the ffmpeg CLI.
pub fn test_recording(out: &Path, size: &str, seconds: f64, gop: u32) -> Result<()> {
    let out = out.to_string_lossy();
    #[rustfmt::skip]
    let args = [
        "-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=30"),
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", &seconds.to_string(), "-c:v", "libx264", "-preset", "ultrafast", "-g", &gop.to_string(),
        "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", &out,
    ];
    ffmpeg(&args)
}

/// `ffprobe -of json` of `path` with `extra` arguments.
pub fn probe_json(path: &Path, extra: &[&str]) -> Result<Value> {
    let out = run(Command::new("ffprobe").args(["-v", "error"]).args(extra).args(["-of", "json"]).arg(path))?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A number ffprobe printed (as a string or a number).
pub fn num(v: &Value) -> Option<f64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_f64())
}

/// A worker's configuration for a test: a consumer group of its own, two workers, an ephemeral
/// admin port, the default rules and waits.
pub fn worker_config(
    vertical: Option<dropline_clipper::VerticalOptions>,
    moments: bool,
) -> Result<dropline_clipper::worker::WorkerConfig> {
    Ok(dropline_clipper::worker::WorkerConfig {
        group: format!("clipper-{}", uuid::Uuid::new_v4().simple()),
        workers: 2,
        admin: "127.0.0.1:0".parse()?,
        rules: Default::default(),
        wait: Default::default(),
        vertical,
        moments,
        retention: None,
    })
}

/// Waits for the broker and creates the settings' topics.
pub async fn with_topics(settings: &dropline_core::Settings) -> Result<()> {
    use dropline_core::kafka;
    kafka::wait_for_broker(settings, std::time::Duration::from_secs(30)).await?;
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(settings, &names, 2, 1).await?;
    Ok(())
}
