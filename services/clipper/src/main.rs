//! `dropline-clipper`: cuts clips out of recordings from the command line (`cut`: stream copy or
//! frame-accurate smart cut), or runs the clip worker.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dropline_clipper::{cut_copy, cut_exact, VerticalOptions, Window};
use ffmpeg_next::log;

#[derive(Debug, Parser)]
#[command(name = "dropline-clipper", version, about = "Cuts highlight clips out of live-stream recordings")]
struct Cli {
    /// Let libav log warnings to stderr (quiet by default: errors come as one line).
    #[arg(long, global = true)]
    verbose: bool,
    /// Without a command: the worker (consumes clip-requests, publishes clips).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cut into an MP4 by stream copy (no re-encoding) from the video keyframe at or before
    /// --start, or with --exact from --start itself; for --duration seconds (clamped to the end
    /// of the recording).
    Cut {
        /// The recording (MP4, MKV, MPEG-TS, FLV; H.264/H.265 video, AAC/Opus audio).
        recording: PathBuf,
        /// Start of the clip, seconds from the start of the recording.
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
        start: f64,
        /// Length of the clip in seconds.
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
        duration: f64,
        /// The MP4 file to write (written under a temporary name, then renamed).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Start exactly at --start (smart cut: re-encodes up to the next keyframe; H.264 only)
        /// instead of at the keyframe before it.
        #[arg(long)]
        exact: bool,
        /// Also write the 9:16 variant (720x1280) of the clip here.
        #[arg(long, value_name = "FILE")]
        vertical: Option<PathBuf>,
        /// Also write a JPEG thumbnail of the requested start (at most 640 wide) here.
        #[arg(long, value_name = "FILE")]
        thumbnail: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's first line names the problem.
            let text = e.render().to_string();
            eprintln!("dropline-clipper: {}", text.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    log::set_level(if cli.verbose { log::Level::Warning } else { log::Level::Quiet });
    let result = match cli.command {
        Some(command) => run(command),
        None => worker(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dropline-clipper: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Worker mode: settings from `DROPLINE_*`, telemetry, run until SIGTERM/SIGINT.
fn worker() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let settings = dropline_core::Settings::from_env()?;
        dropline_core::telemetry::init(&settings)?;
        let config = dropline_clipper::worker::WorkerConfig::from_env(settings.admin)?;
        dropline_clipper::worker::run(settings, config, dropline_core::shutdown::on_signals()).await?;
        anyhow::Ok(())
    })
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Cut { recording, start, duration, out, exact, vertical, thumbnail } => {
            let window = Window::from_secs(start, duration)?;
            let cut = if exact { cut_exact } else { cut_copy };
            let report = cut(&recording, window, &out)?;
            // The thumbnail shows the requested start: the clip may begin at the keyframe before it.
            let lead_in = window.start.saturating_sub(std::time::Duration::from_millis(report.start_ms));
            let extras = (|| -> Result<_, dropline_clipper::ClipError> {
                let thumb = match &thumbnail {
                    Some(path) => Some(dropline_clipper::thumbnail(&out, lead_in, path, 640)?),
                    None => None,
                };
                let variant = match &vertical {
                    Some(path) => Some(dropline_clipper::vertical(&out, path, VerticalOptions::default())?),
                    None => None,
                };
                Ok((thumb, variant))
            })();
            let (thumb, variant) = match extras {
                Ok(extras) => extras,
                Err(e) => {
                    // All or nothing: no clip without the variants that were asked for.
                    for path in [Some(&out), thumbnail.as_ref(), vertical.as_ref()].into_iter().flatten() {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(e.into());
                }
            };
            // stdout stays machine-readable: one JSON object.
            let mut stdout = std::io::stdout().lock();
            let line = serde_json::json!({
                "out": out.display().to_string(),
                "start_ms": report.start_ms,
                "duration_ms": report.duration_ms,
                "size_bytes": report.size_bytes,
                "thumbnail": thumbnail.map(|p| p.display().to_string()),
                "thumbnail_bytes": thumb.map(|t| t.size_bytes),
                "vertical": vertical.map(|p| p.display().to_string()),
                "vertical_bytes": variant.map(|v| v.size_bytes),
            });
            writeln!(stdout, "{line}")?;
            Ok(())
        }
    }
}
