//! Thumbnails and 9:16 variants of real media made with the ffmpeg CLI (640x360 testsrc2 H.264 with
//! B-frames + AAC), checked with ffprobe and by comparing decoded pixels.

mod common;

use common::{ffmpeg, num, probe_json, run, test_recording, Media};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use dropline_clipper::{cut_copy, thumbnail, vertical, ClipError, VerticalOptions, Window};
use serde_json::Value;

/// Length of the generated clip, seconds.
const LENGTH: f64 = 10.0;

/// `clip.mp4`: 10 s of 30 fps 640x360 H.264 (2 s GOP, B-frames) + AAC; `short.mp4`: its first 3 s;
/// `clip.ts`: `clip.mp4` remuxed; bad inputs.
fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| make_media().expect("generating test media"))
}

fn make_media() -> Result<Media> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    test_recording(&dir.join("clip.mp4"), "640x360", LENGTH, 60)?;
    test_recording(&dir.join("short.mp4"), "640x360", 3.0, 60)?;
    ffmpeg(&["-i", &p("clip.mp4"), "-c", "copy", &p("clip.ts")])?;
    #[rustfmt::skip]
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3", "-c:a", "aac",
        &p("audio.m4a")])?;
    std::fs::write(dir.join("notes.txt"), "not a video\n".repeat(100))?;
    Ok(Media { _dir: tmp, dir })
}

fn streams(path: &Path) -> Result<Value> {
    probe_json(path, &["-show_streams", "-show_format"])
}

fn stream<'v>(info: &'v Value, kind: &str) -> Result<&'v Value> {
    info["streams"]
        .as_array()
        .context("no streams")?
        .iter()
        .find(|s| s["codec_type"] == kind)
        .with_context(|| format!("no {kind} stream in {info}"))
}

/// The first picture of `path` (at `at` seconds, with an exact seek) as `w`×`h` 8-bit gray pixels.
fn gray(path: &Path, at: f64, w: u32, h: u32) -> Result<Vec<u8>> {
    let size = format!("{w}x{h}");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if at > 0.0 {
        cmd.args(["-ss", &at.to_string()]); // (an image with -ss 0 yields nothing)
    }
    cmd.arg("-i").arg(path);
    let out = run(cmd.args(["-frames:v", "1", "-s", &size, "-pix_fmt", "gray", "-f", "rawvideo", "-"]))?;
    ensure!(out.stdout.len() == (w * h) as usize, "{} bytes of gray from {path:?}", out.stdout.len());
    Ok(out.stdout)
}

/// Mean absolute difference of two gray pictures (0..=255).
fn diff(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.len().max(1) as f64
}

fn dir_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?)
}

#[test]
fn thumbnail_is_a_scaled_jpeg_of_the_picture_at_the_time() -> Result<()> {
    let media = media();
    let input = media.path("clip.mp4");
    let dir = tempfile::tempdir()?;
    let at = |name: &str| dir.path().join(name);

    let started = Instant::now();
    let report = thumbnail(&input, Duration::from_millis(3000), &at("3s.jpg"), 320)?;
    let took = started.elapsed();
    ensure!((report.width, report.height) == (320, 180), "{report:?}");
    ensure!((3000..3034).contains(&report.at_ms), "{report:?}");
    ensure!(report.size_bytes == std::fs::metadata(at("3s.jpg"))?.len(), "{report:?}");
    let info = streams(&at("3s.jpg"))?;
    let video = stream(&info, "video")?;
    ensure!(video["codec_name"] == "mjpeg", "{info}");
    ensure!(video["width"] == 320 && video["height"] == 180, "{info}");
    ensure!(video["pix_fmt"] == "yuvj420p", "{info}");

    // Not enlarged; aspect kept.
    let big = thumbnail(&input, Duration::from_millis(3000), &at("big.jpg"), 1000)?;
    ensure!((big.width, big.height) == (640, 360), "{big:?}");
    let odd = thumbnail(&input, Duration::from_millis(3000), &at("odd.jpg"), 101)?;
    ensure!((odd.width, odd.height) == (101, 57), "{odd:?}");

    // The picture at 3 s: like the CLI's exact seek to 3 s, unlike the one at 7.5 s.
    let ours = gray(&at("3s.jpg"), 0.0, 320, 180)?;
    let cli = gray(&input, 3.0, 320, 180)?;
    let later = thumbnail(&input, Duration::from_millis(7500), &at("7s.jpg"), 320)?;
    ensure!((7500..7534).contains(&later.at_ms), "{later:?}");
    let other = gray(&at("7s.jpg"), 0.0, 320, 180)?;
    let same = diff(&ours, &cli);
    let different = diff(&ours, &other);
    ensure!(same < 4.0, "thumbnail at 3 s differs from the CLI's picture at 3 s by {same}");
    ensure!(different > 3.0 * same.max(1.0), "3 s and 7.5 s differ by only {different} (same: {same})");

    // MPEG-TS: no index, same picture.
    thumbnail(&media.path("clip.ts"), Duration::from_millis(3000), &at("ts.jpg"), 320)?;
    let from_ts = gray(&at("ts.jpg"), 0.0, 320, 180)?;
    ensure!(diff(&from_ts, &ours) < 1.0, "TS thumbnail differs by {}", diff(&from_ts, &ours));

    let mut names: Vec<_> =
        dir_entries(dir.path())?.into_iter().filter_map(|p| p.file_name().map(|n| n.to_owned())).collect();
    names.sort();
    ensure!(names == ["3s.jpg", "7s.jpg", "big.jpg", "odd.jpg", "ts.jpg"], "files: {names:?}");
    eprintln!(
        "thumbnail of a 640x360 clip took {took:?}, {} bytes; pixel diff vs CLI {same:.2}, vs 7.5 s {different:.2}",
        report.size_bytes
    );
    Ok(())
}

#[test]
fn thumbnail_failures_leave_nothing() -> Result<()> {
    let media = media();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("thumb.jpg");
    let input = media.path("clip.mp4");
    for at in [Duration::from_secs(30), Duration::from_millis(9990)] {
        let err = thumbnail(&input, at, &out, 320).err().context("past the end succeeded")?;
        ensure!(matches!(err, ClipError::PastEnd { .. }), "{at:?}: {err:?}");
        ensure!(err.to_string().contains("past the end"), "{err}");
    }
    let err = thumbnail(&media.path("missing.mp4"), Duration::ZERO, &out, 320).err().context("missing")?;
    ensure!(matches!(err, ClipError::NotFound { .. }), "{err:?}");
    let err = thumbnail(&media.path("notes.txt"), Duration::ZERO, &out, 320).err().context("text")?;
    ensure!(matches!(err, ClipError::NotMedia { .. }), "{err:?}");
    let err = thumbnail(&media.path("audio.m4a"), Duration::ZERO, &out, 320).err().context("audio")?;
    ensure!(matches!(err, ClipError::NoVideo { .. }), "{err:?}");
    let err = thumbnail(&input, Duration::ZERO, &out, 0).err().context("width 0")?;
    ensure!(matches!(err, ClipError::InvalidWindow(_)), "{err:?}");
    let left = dir_entries(dir.path())?;
    ensure!(left.is_empty(), "files left: {left:?}");
    Ok(())
}

/// Checks a vertical variant of `input`: H.264 `w`×`h` yuv420p + AAC MP4 with faststart, as long as
/// the input (±0.1 s), video and audio starting together (±50 ms), every frame kept.
fn check_vertical(input: &Path, output: &Path, w: u32, h: u32) -> Result<()> {
    let src = streams(input)?;
    let info = streams(output)?;
    let video = stream(&info, "video")?;
    let audio = stream(&info, "audio")?;
    ensure!(video["codec_name"] == "h264" && video["pix_fmt"] == "yuv420p", "{info}");
    ensure!(video["width"] == w && video["height"] == h, "{info}");
    ensure!(audio["codec_name"] == "aac", "{info}");
    let len_in = num(&src["format"]["duration"]).context("input duration")?;
    let len_out = num(&info["format"]["duration"]).context("output duration")?;
    ensure!((len_in - len_out).abs() <= 0.1, "duration {len_out} for {len_in}");
    let v0 = num(&video["start_time"]).context("video start")?;
    let a0 = num(&audio["start_time"]).context("audio start")?;
    ensure!(v0.abs() <= 0.05 && (a0 - v0).abs() <= 0.05, "video starts at {v0}, audio at {a0}");
    let frames_in = num(&stream(&src, "video")?["nb_frames"]).context("frames")?;
    let frames_out = num(&video["nb_frames"]).context("frames")?;
    ensure!(frames_in == frames_out, "{frames_out} frames for {frames_in}");
    let bytes = std::fs::read(output)?;
    let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag);
    ensure!(find(b"moov") < find(b"mdat"), "moov after mdat: not faststart");
    Ok(())
}

#[test]
fn vertical_720_keeps_length_sync_and_frames() -> Result<()> {
    let media = media();
    let input = media.path("clip.mp4");
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("vertical.mp4");
    let started = Instant::now();
    let report = vertical(&input, &out, VerticalOptions::default())?;
    eprintln!("vertical 720x1280 of a {LENGTH} s 640x360 clip took {:?}", started.elapsed());
    ensure!((report.width, report.height, report.frames) == (720, 1280, 300), "{report:?}");
    ensure!((report.duration_ms as f64 / 1000.0 - LENGTH).abs() <= 0.1, "{report:?}");
    ensure!(report.size_bytes == std::fs::metadata(&out)?.len(), "{report:?}");
    check_vertical(&input, &out, 720, 1280)?;
    ensure!(dir_entries(dir.path())? == [out], "temporary files left");
    Ok(())
}

#[test]
fn vertical_crop_follows_the_centre_and_1080_works() -> Result<()> {
    let media = media();
    let input = media.path("short.mp4");
    let dir = tempfile::tempdir()?;
    let make = |name: &str, width: u32, center_x: f64| -> Result<PathBuf> {
        let out = dir.path().join(name);
        vertical(&input, &out, VerticalOptions { width, center_x })?;
        Ok(out)
    };
    let left = make("left.mp4", 720, 0.0)?;
    let right = make("right.mp4", 720, 1.0)?;
    let started = Instant::now();
    let big = make("big.mp4", 1080, 0.5)?;
    eprintln!("vertical 1080x1920 of a 3 s clip took {:?}", started.elapsed());
    check_vertical(&input, &big, 1080, 1920)?;
    check_vertical(&input, &left, 720, 1280)?;

    // The left and right crops show the left and right edges of the source.
    let (l, r) = (gray(&left, 1.0, 90, 160)?, gray(&right, 1.0, 90, 160)?);
    ensure!(diff(&l, &r) > 10.0, "left and right crops differ by only {}", diff(&l, &r));
    let source_left =
        run(Command::new("ffmpeg").args(["-v", "error", "-ss", "1", "-i"]).arg(&input).args([
            "-frames:v",
            "1",
            "-vf",
            "crop=202:360:0:0,scale=90:160",
            "-pix_fmt",
            "gray",
            "-f",
            "rawvideo",
            "-",
        ]))?
        .stdout;
    ensure!(
        diff(&l, &source_left) < 4.0,
        "left crop is not the source's left edge: {}",
        diff(&l, &source_left)
    );
    ensure!(diff(&r, &source_left) > 10.0, "right crop looks like the left edge");
    Ok(())
}

/// The service's chain: a stream-copy cut of the recording, then its vertical variant; and a clip
/// without audio.
#[test]
fn vertical_of_a_cut_and_of_a_silent_clip() -> Result<()> {
    let media = media();
    let dir = tempfile::tempdir()?;
    let cut = dir.path().join("cut.mp4");
    let report = cut_copy(&media.path("clip.ts"), Window::from_secs(4.5, 3.0)?, &cut)?;
    ensure!((3950..=4050).contains(&report.start_ms), "{report:?}");
    let out = dir.path().join("cut-vertical.mp4");
    vertical(&cut, &out, VerticalOptions { width: 720, center_x: 0.3 })?;
    check_vertical(&cut, &out, 720, 1280)?;

    let silent = dir.path().join("silent.mp4");
    let p = |path: &Path| path.to_string_lossy().into_owned();
    ffmpeg(&["-i", &p(&media.path("short.mp4")), "-an", "-c", "copy", &p(&silent)])?;
    let out = dir.path().join("silent-vertical.mp4");
    let report = vertical(&silent, &out, VerticalOptions::default())?;
    ensure!(report.frames == 90 && (2950..=3050).contains(&report.duration_ms), "{report:?}");
    let info = streams(&out)?;
    let kinds: Vec<_> =
        info["streams"].as_array().context("streams")?.iter().map(|s| &s["codec_type"]).collect();
    ensure!(kinds == ["video"], "{info}");
    Ok(())
}

#[test]
fn vertical_failures_leave_nothing() -> Result<()> {
    let media = media();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("vertical.mp4");
    let opts = VerticalOptions::default();
    let err = vertical(&media.path("missing.mp4"), &out, opts).err().context("missing")?;
    ensure!(matches!(err, ClipError::NotFound { .. }), "{err:?}");
    let err = vertical(&media.path("notes.txt"), &out, opts).err().context("text")?;
    ensure!(matches!(err, ClipError::NotMedia { .. }), "{err:?}");
    let err = vertical(&media.path("audio.m4a"), &out, opts).err().context("audio only")?;
    ensure!(matches!(err, ClipError::NoVideo { .. }), "{err:?}");
    // Cut in half with its moov at the end (no faststart): no index at all.
    let whole = std::fs::read(media.path("short.mp4"))?;
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, &whole[..whole.len() / 2])?;
    let err = vertical(&broken, &out, opts).err().context("truncated")?;
    std::fs::remove_file(&broken)?;
    ensure!(matches!(err, ClipError::NotMedia { .. } | ClipError::Read { .. }), "{err:?}");
    for bad in [VerticalOptions { width: 640, center_x: 0.5 }, VerticalOptions { width: 720, center_x: 1.5 }]
    {
        let err = vertical(&media.path("short.mp4"), &out, bad).err().context("bad options")?;
        ensure!(matches!(err, ClipError::InvalidWindow(_)), "{err:?}");
    }
    let err = vertical(&media.path("short.mp4"), Path::new("/nonexistent-dir-for-dropline/v.mp4"), opts)
        .err()
        .context("missing output dir")?;
    ensure!(matches!(err, ClipError::Io { .. }), "{err:?}");
    let left = dir_entries(dir.path())?;
    ensure!(left.is_empty(), "files left: {left:?}");
    Ok(())
}

/// Wall time of a 45 s 1280x720 30 fps clip → 720x1280 (`cargo test --release --test variants --
/// --ignored --nocapture`), next to the ffmpeg CLI doing the same.
#[test]
#[ignore = "benchmark: about a minute"]
fn bench_vertical_45s_720p() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("720p.mp4");
    let p = |path: &Path| path.to_string_lossy().into_owned();
    #[rustfmt::skip]
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", "45", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", &p(&input),
    ])?;
    let out = dir.path().join("vertical.mp4");
    let started = Instant::now();
    let report = vertical(&input, &out, VerticalOptions::default())?;
    let ours = started.elapsed();
    check_vertical(&input, &out, 720, 1280)?;
    let cli_out = dir.path().join("cli.mp4");
    let started = Instant::now();
    #[rustfmt::skip]
    ffmpeg(&[
        "-i", &p(&input), "-vf", "crop=trunc(ih*9/16/2)*2:ih,scale=720:1280,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "copy",
        "-movflags", "+faststart", &p(&cli_out),
    ])?;
    let cli = started.elapsed();
    eprintln!("45 s 720p → 720x1280: in-process {ours:?}, ffmpeg CLI {cli:?}; {report:?}");
    Ok(())
}
