//! Clip cutting: our in-process cuts against the ffmpeg CLI, 45 s from the middle of the same
//! hour-long 720p30 H.264/AAC recording (generated once with the CLI into `target/bench-media/`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use dropline_clipper::{cut_copy, cut_exact, Window};

/// The clip: 45 s from just past the middle of the recording (not on a keyframe).
const START: f64 = 1800.3;
const LENGTH: f64 = 45.0;

/// `ffmpeg -v error -y`, ready for more arguments.
fn ffmpeg() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]);
    cmd
}

fn run(mut cmd: Command) {
    let status = cmd.status().expect("the ffmpeg CLI is on PATH");
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// Writes `dir/name` with the command `make(temporary path)` unless it exists; the temporary name
/// keeps an interrupted run from leaving a half file behind.
fn cached(dir: &Path, name: &str, make: impl FnOnce(&Path) -> Command) -> PathBuf {
    let path = dir.join(name);
    if !path.exists() {
        let tmp = dir.join(format!("part-{name}"));
        let started = Instant::now();
        run(make(&tmp));
        fs::rename(&tmp, &path).expect("rename the generated recording");
        println!("generated {} in {:.1?}", path.display(), started.elapsed());
    }
    path
}

/// The hour-long recording, as MP4 and remuxed to MPEG-TS: 1280x720 30 fps H.264 (2 s GOP,
/// B-frames) with AAC audio.
fn recordings() -> (PathBuf, PathBuf) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    let dir = target.join("bench-media");
    fs::create_dir_all(&dir).expect("create target/bench-media");
    let mp4 = cached(&dir, "hour.mp4", |tmp| {
        let mut cmd = ffmpeg();
        cmd.args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3600"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "2", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "128k"])
            .arg(tmp);
        cmd
    });
    let ts = cached(&dir, "hour.ts", |tmp| {
        let mut cmd = ffmpeg();
        cmd.arg("-i").arg(&mp4).args(["-c", "copy"]).arg(tmp);
        cmd
    });
    (mp4, ts)
}

/// The CLI's cut of the window: `ffmpeg -ss START -i input -t LENGTH <codecs> out`.
fn cli(input: &Path, codecs: &[&str], out: &Path) {
    let mut cmd = ffmpeg();
    cmd.args(["-ss", &START.to_string(), "-i"])
        .arg(input)
        .args(["-t", &LENGTH.to_string()])
        .args(codecs)
        .args(["-movflags", "+faststart"])
        .arg(out);
    run(cmd);
}

fn bench_clip(c: &mut Criterion) {
    // The clipper leaves libav's log level (info by default) to its caller, like its CLI does.
    ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Quiet);
    let (mp4, ts) = recordings();
    let window = Window::from_secs(START, LENGTH).expect("window");
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("clip.mp4");
    let reencode = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "copy"];

    let mut group = c.benchmark_group("clip");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    for (ext, input) in [("mp4", &mp4), ("ts", &ts)] {
        group.bench_function(format!("copy/ours/{ext}"), |b| {
            b.iter(|| cut_copy(input, window, &out).expect("cut_copy"));
        });
        group.bench_function(format!("copy/cli/{ext}"), |b| b.iter(|| cli(input, &["-c", "copy"], &out)));
    }

    group.sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(15));
    for (ext, input) in [("mp4", &mp4), ("ts", &ts)] {
        group.bench_function(format!("exact/ours/{ext}"), |b| {
            b.iter(|| cut_exact(input, window, &out).expect("cut_exact"));
        });
    }
    // One run per sample (~9–15 s each): criterion warns that ten of them overrun this target.
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("exact/cli/mp4", |b| b.iter(|| cli(&mp4, &reencode, &out)));
    group.finish();
}

criterion_group!(benches, bench_clip);
criterion_main!(benches);
