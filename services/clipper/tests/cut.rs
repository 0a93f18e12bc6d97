//! Stream-copy and frame-accurate cuts of real recordings made with the ffmpeg CLI (MP4, MKV, MPEG-TS, FLV; H.264 +
//! AAC), checked with ffprobe; bad inputs through the library and the `dropline-clipper` binary.

mod common;

use common::{ffmpeg, num, probe_json, run, test_recording, Media};

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use dropline_clipper::{cut_copy, cut_exact, ClipError, CutReport, Window};
use serde_json::Value;

/// Length of the generated recordings, seconds.
const LENGTH: f64 = 70.0;

/// 70 s of 30 fps H.264 (B-frames) + AAC: `gop2.mp4` with a 2 s GOP remuxed into MKV, TS and FLV,
/// `gop5.ts` with a 5 s GOP; plus the bad inputs.
fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| make_media().expect("generating test media"))
}

fn make_media() -> Result<Media> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    test_recording(&dir.join("gop2.mp4"), "320x180", LENGTH, 60)?;
    for ext in ["mkv", "ts", "flv"] {
        ffmpeg(&["-i", &p("gop2.mp4"), "-c", "copy", &p(&format!("gop2.{ext}"))])?;
    }
    test_recording(&dir.join("gop5.ts"), "320x180", LENGTH, 150)?;
    // Bad inputs.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "5",
        "-c:a",
        "aac",
        &p("audio.m4a"),
    ])?;
    std::fs::write(dir.join("notes.txt"), "not a video\n".repeat(100))?;
    // Moov at the end (no faststart), cut in half: no index at all.
    let whole = std::fs::read(dir.join("gop2.mp4"))?;
    std::fs::write(dir.join("truncated.mp4"), &whole[..whole.len() / 2])?;
    Ok(Media { _dir: tmp, dir })
}

/// Keyframe times of the source's video, seconds from the start of the recording.
fn keyframes(path: &Path) -> Result<Vec<f64>> {
    let format = probe_json(path, &["-show_format"])?;
    let origin = num(&format["format"]["start_time"]).unwrap_or(0.0);
    let packets = probe_json(path, &["-select_streams", "v", "-show_entries", "packet=pts_time,flags"])?;
    let mut keys: Vec<f64> = packets["packets"]
        .as_array()
        .context("no packets")?
        .iter()
        .filter(|p| p["flags"].as_str().is_some_and(|f| f.contains('K')))
        .filter_map(|p| num(&p["pts_time"]))
        .map(|t| t - origin)
        .collect();
    keys.sort_by(f64::total_cmp);
    Ok(keys)
}

/// Checks a clip: MP4 with both streams, video at 0, audio within 50 ms, first video packet a
/// keyframe, the moov before the data (faststart), duration within one GOP of `expect_len`.
fn check_clip(clip: &Path, expect_len: f64, gop: f64) -> Result<()> {
    let info = probe_json(clip, &["-show_streams", "-show_format"])?;
    ensure!(info["format"]["format_name"].as_str().is_some_and(|f| f.contains("mp4")), "not mp4: {info}");
    let streams = info["streams"].as_array().context("no streams")?;
    let stream = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind);
    let video = stream("video").context("no video stream")?;
    let audio = stream("audio").context("no audio stream")?;
    ensure!(video["codec_tag_string"] == "avc1" && audio["codec_tag_string"] == "mp4a", "tags: {info}");
    let v0 = num(&video["start_time"]).context("video start")?;
    let a0 = num(&audio["start_time"]).context("audio start")?;
    ensure!(v0.abs() < 0.001, "video starts at {v0}");
    ensure!((a0 - v0).abs() <= 0.050, "audio starts at {a0}, video at {v0}");
    let duration = num(&info["format"]["duration"]).context("duration")?;
    ensure!(
        duration >= expect_len - 0.1 && duration <= expect_len + gop + 0.1,
        "duration {duration} for {expect_len} (GOP {gop})"
    );
    let first = probe_json(clip, &["-show_packets", "-select_streams", "v", "-read_intervals", "%+#1"])?;
    let flags = first["packets"][0]["flags"].as_str().context("no first packet")?;
    ensure!(flags.contains('K'), "first video packet not a keyframe: {flags}");
    let bytes = std::fs::read(clip)?;
    let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag);
    ensure!(find(b"moov") < find(b"mdat"), "moov after mdat: not faststart");
    Ok(())
}

/// Cuts with the library and checks the clip and the start keyframe against the source's.
fn cut_and_check(source: &str, start: f64, duration: f64, gop: f64) -> Result<CutReport> {
    let media = media();
    let input = media.path(source);
    let out_dir = tempfile::tempdir()?;
    let clip = out_dir.path().join("clip.mp4");
    let report = cut_copy(&input, Window::from_secs(start, duration)?, &clip)
        .with_context(|| format!("cutting {source} at {start}"))?;
    let keys = keyframes(&input)?;
    // The last keyframe at or before the start; the first one if the video starts later.
    let first = *keys.first().context("no keyframe")?;
    let expected = keys.iter().copied().rfind(|k| *k <= start + 1e-6).unwrap_or(first);
    let actual = report.start_ms as f64 / 1000.0;
    ensure!(
        (actual - expected).abs() <= 0.002,
        "{source} at {start}: clip starts at {actual}, last keyframe at or before is {expected}"
    );
    let expect_len = (start + duration).min(LENGTH) - start;
    check_clip(&clip, expect_len, gop).with_context(|| format!("{source} at {start} for {duration}"))?;
    ensure!(report.size_bytes == std::fs::metadata(&clip)?.len(), "size");
    ensure!(
        (report.duration_ms as f64 / 1000.0 - expect_len) >= -0.1,
        "report duration {} for {expect_len}",
        report.duration_ms
    );
    let left: Vec<_> = std::fs::read_dir(out_dir.path())?.collect();
    ensure!(left.len() == 1, "temporary files left: {left:?}");
    Ok(report)
}

#[test]
fn cuts_every_container_from_the_keyframe_at_or_before_the_start() -> Result<()> {
    for source in ["gop2.mp4", "gop2.mkv", "gop2.ts", "gop2.flv"] {
        for (start, duration) in [(0.0, 30.0), (10.0, 45.0), (33.3, 30.0), (21.95, 60.0 - 21.95)] {
            cut_and_check(source, start, duration, 2.0)?;
        }
    }
    Ok(())
}

#[test]
fn ts_with_long_gop_starts_at_a_real_keyframe() -> Result<()> {
    for start in [0.5, 7.3, 24.9, 44.99] {
        cut_and_check("gop5.ts", start, 45.0_f64.min(LENGTH - start), 5.0)?;
    }
    Ok(())
}

#[test]
fn window_partly_past_the_end_is_clamped() -> Result<()> {
    for source in ["gop2.mp4", "gop5.ts", "gop2.flv"] {
        let report = cut_and_check(source, 55.0, 45.0, if source.contains("gop5") { 5.0 } else { 2.0 })?;
        ensure!(report.duration_ms < 21_000, "{source}: {report:?}");
    }
    Ok(())
}

/// Frames per second of the generated recordings.
const FPS: f64 = 30.0;

/// Picture number `index` (display order, decoded from the start) of `path` as 64×36 grey, by the
/// ffmpeg CLI.
fn picture(path: &Path, index: usize) -> Result<Vec<u8>> {
    let filter = format!("select=eq(n\\,{index}),scale=64:36");
    let out = run(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args([
        "-vf",
        &filter,
        "-frames:v",
        "1",
        "-pix_fmt",
        "gray",
        "-f",
        "rawvideo",
        "-",
    ]))?;
    ensure!(out.stdout.len() == 64 * 36, "{path:?}: no picture {index}");
    Ok(out.stdout)
}

/// Display times of every picture of `path`, seconds from the start of the recording.
fn picture_times(path: &Path) -> Result<Vec<f64>> {
    let format = probe_json(path, &["-show_format"])?;
    let origin = num(&format["format"]["start_time"]).unwrap_or(0.0);
    let frames =
        probe_json(path, &["-select_streams", "v", "-show_entries", "frame=best_effort_timestamp_time"])?;
    let times: Vec<f64> = frames["frames"]
        .as_array()
        .context("no frames")?
        .iter()
        .filter_map(|f| num(&f["best_effort_timestamp_time"]))
        .map(|t| t - origin)
        .collect();
    Ok(times)
}

/// Mean absolute difference of two grey pictures.
fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.len() as f64
}

/// An exact cut, checked: MP4 with both streams from 0 (audio within 50 ms); video as long as asked
/// (±1 frame, clamped to the recording); decodes without a single error; its first picture is the
/// recording's first picture shown at or after `start` (as the ffmpeg CLI decodes it) and not its
/// neighbour; the pictures from the next keyframe on are the recording's own, bit for bit (copied,
/// not re-encoded).
fn exact_and_check(source: &str, start: f64, duration: f64) -> Result<CutReport> {
    let media = media();
    let input = media.path(source);
    let out_dir = tempfile::tempdir()?;
    let clip = out_dir.path().join("exact.mp4");
    let what = format!("{source} exact at {start} for {duration}");
    let report = cut_exact(&input, Window::from_secs(start, duration)?, &clip).context(what.clone())?;
    let frame = 1.0 / FPS;
    let actual = report.start_ms as f64 / 1000.0;
    ensure!((actual - start).abs() <= frame, "{what}: clip starts at {actual}");

    let info = probe_json(&clip, &["-show_streams", "-show_format"])?;
    let streams = info["streams"].as_array().context("no streams")?;
    let stream = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind);
    let video = stream("video").context("no video stream")?;
    let audio = stream("audio").context("no audio stream")?;
    ensure!(video["codec_tag_string"] == "avc1" && audio["codec_tag_string"] == "mp4a", "{what}: {info}");
    let v0 = num(&video["start_time"]).context("video start")?;
    let a0 = num(&audio["start_time"]).context("audio start")?;
    ensure!(v0.abs() < 0.001 && (a0 - v0).abs() <= 0.050, "{what}: video at {v0}, audio at {a0}");
    let expect_len = (start + duration).min(LENGTH) - start;
    let video_len = num(&video["duration"]).context("video duration")?;
    ensure!((video_len - expect_len).abs() <= frame + 0.001, "{what}: video lasts {video_len}");

    let decode =
        run(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&clip).args(["-f", "null", "-"]))?;
    ensure!(decode.stderr.is_empty(), "{what}: decode errors: {}", String::from_utf8_lossy(&decode.stderr));

    let times = picture_times(&input)?;
    let wanted = times.iter().position(|t| *t >= start - 1e-6).context("no picture after the start")?;
    let first = picture(&clip, 0)?;
    let (requested, next) = (picture(&input, wanted)?, picture(&input, wanted + 1)?);
    ensure!(mad(&requested, &next) > 1.0, "{what}: the test pattern does not change between frames");
    ensure!(
        mad(&first, &requested) < 1.0 && mad(&first, &requested) < mad(&first, &next),
        "{what}: first picture differs from picture {wanted} by {:.2} (from the next: {:.2})",
        mad(&first, &requested),
        mad(&first, &next)
    );

    let keys = keyframes(&input)?;
    if let Some(splice) = keys.iter().copied().find(|k| *k > start + 0.001 && *k < start + duration - frame) {
        let at = times.iter().position(|t| (t - splice).abs() < 0.001).context("splice picture")?;
        let copied = picture(&clip, at - wanted)?;
        ensure!(
            mad(&copied, &picture(&input, at)?) < 0.01,
            "{what}: picture at the splice ({splice}) differs"
        );
    }
    let left: Vec<_> = std::fs::read_dir(out_dir.path())?.collect();
    ensure!(left.len() == 1, "temporary files left: {left:?}");
    Ok(report)
}

#[test]
fn exact_cuts_start_at_the_requested_frame_in_every_container() -> Result<()> {
    for source in ["gop2.mp4", "gop2.mkv", "gop2.ts", "gop2.flv"] {
        for (start, duration) in [(7.3, 30.0), (33.5, 36.5)] {
            exact_and_check(source, start, duration)?;
        }
    }
    for start in [0.5, 24.9, 44.99] {
        exact_and_check("gop5.ts", start, 45.0_f64.min(LENGTH - start))?;
    }
    Ok(())
}

#[test]
fn exact_cut_on_a_keyframe_or_inside_one_gop() -> Result<()> {
    // On a keyframe: nothing to re-encode, the copy is exact.
    let report = exact_and_check("gop2.mp4", 10.0, 30.0)?;
    ensure!(report.start_ms == 10_000, "{report:?}");
    // A window that ends before the next keyframe: all of it re-encoded.
    exact_and_check("gop5.ts", 5.5, 3.0)?;
    Ok(())
}

#[test]
fn cli_cuts_exactly() -> Result<()> {
    let media = media();
    let out_dir = tempfile::tempdir()?;
    let clip = out_dir.path().join("clip.mp4");
    let input = media.path("gop2.flv");
    let path = |p: &Path| p.to_str().map(str::to_owned).context("path");
    let out = cli(&[
        "cut",
        &path(&input)?,
        "--start",
        "12.5",
        "--duration",
        "45",
        "--exact",
        "--out",
        &path(&clip)?,
    ])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(report["start_ms"].as_u64().is_some_and(|ms| ms.abs_diff(12_500) <= 34), "{report}");
    Ok(())
}

fn cli(args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_dropline-clipper")).args(args).output().context("running the binary")
}

#[test]
fn cli_cuts_and_prints_a_report() -> Result<()> {
    let media = media();
    for source in ["gop2.ts", "gop2.flv"] {
        let out_dir = tempfile::tempdir()?;
        let clip = out_dir.path().join("clip.mp4");
        let input = media.path(source);
        let out = cli(&[
            "cut",
            input.to_str().context("path")?,
            "--start",
            "12.5",
            "--duration",
            "45",
            "--out",
            clip.to_str().context("path")?,
        ])?;
        ensure!(out.status.success(), "{source}: {}", String::from_utf8_lossy(&out.stderr));
        ensure!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout)?;
        ensure!(report["start_ms"].as_u64().is_some_and(|ms| (10_000..=12_500).contains(&ms)), "{report}");
        check_clip(&clip, 45.0, 2.0)?;
    }
    Ok(())
}

#[test]
fn cli_writes_the_thumbnail_and_the_vertical_variant_too() -> Result<()> {
    let media = media();
    let out_dir = tempfile::tempdir()?;
    let (clip, thumb, tall) =
        (out_dir.path().join("clip.mp4"), out_dir.path().join("clip.jpg"), out_dir.path().join("tall.mp4"));
    let input = media.path("gop2.mp4");
    let path = |p: &Path| p.to_str().map(str::to_owned).context("path");
    let out = cli(&[
        "cut",
        &path(&input)?,
        "--start",
        "20",
        "--duration",
        "8",
        "--out",
        &path(&clip)?,
        "--thumbnail",
        &path(&thumb)?,
        "--vertical",
        &path(&tall)?,
    ])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(report["thumbnail_bytes"].as_u64() == Some(std::fs::metadata(&thumb)?.len()), "{report}");
    ensure!(report["vertical_bytes"].as_u64() == Some(std::fs::metadata(&tall)?.len()), "{report}");
    let probe = |file: &Path| -> Result<String> {
        let out = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height",
            ])
            .args(["-of", "csv=p=0"])
            .arg(file))?;
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    ensure!(probe(&thumb)?.starts_with("mjpeg,"), "{}", probe(&thumb)?);
    ensure!(probe(&tall)? == "h264,720,1280", "{}", probe(&tall)?);

    // A variant that cannot be written takes the clip with it: all or nothing.
    let missing_dir = out_dir.path().join("nope").join("tall.mp4");
    let clip2 = out_dir.path().join("clip2.mp4");
    let out = cli(&[
        "cut",
        &path(&input)?,
        "--start",
        "20",
        "--duration",
        "8",
        "--out",
        &path(&clip2)?,
        "--vertical",
        &path(&missing_dir)?,
    ])?;
    ensure!(!out.status.success());
    ensure!(!clip2.exists(), "the clip was left behind");
    Ok(())
}

/// Runs a failing cut through the CLI and the library: a one-line error naming `needle`, non-zero
/// exit, nothing left in the output directory.
fn expect_failure(input: &Path, start: &str, duration: &str, needle: &str) -> Result<ClipError> {
    let out_dir = tempfile::tempdir()?;
    let clip = out_dir.path().join("clip.mp4");
    let out = cli(&[
        "cut",
        input.to_str().context("path")?,
        "--start",
        start,
        "--duration",
        duration,
        "--out",
        clip.to_str().context("path")?,
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "{input:?}: succeeded");
    ensure!(stderr.lines().count() == 1, "not one line: {stderr:?}");
    ensure!(stderr.contains(needle), "{stderr:?} does not mention {needle:?}");
    ensure!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));

    let start: f64 = start.parse()?;
    let duration: f64 = duration.parse()?;
    let err = match Window::from_secs(start, duration) {
        Err(e) => e,
        Ok(window) => match cut_copy(input, window, &clip) {
            Err(e) => e,
            Ok(report) => anyhow::bail!("library cut succeeded: {report:?}"),
        },
    };
    ensure!(err.to_string().contains(needle), "{err} does not mention {needle:?}");
    let left: Vec<_> = std::fs::read_dir(out_dir.path())?.collect::<Result<_, _>>()?;
    ensure!(left.is_empty(), "files left behind: {left:?}");
    Ok(err)
}

#[test]
fn bad_inputs_fail_cleanly() -> Result<()> {
    let media = media();
    let err = expect_failure(&media.path("missing.mp4"), "0", "30", "not found")?;
    ensure!(matches!(err, ClipError::NotFound { .. }), "{err:?}");
    let err = expect_failure(&media.path("notes.txt"), "0", "30", "not a readable media file")?;
    ensure!(matches!(err, ClipError::NotMedia { .. }), "{err:?}");
    let err = expect_failure(&media.path("truncated.mp4"), "0", "30", "truncated.mp4")?;
    ensure!(matches!(err, ClipError::NotMedia { .. } | ClipError::Read { .. }), "{err:?}");
    let err = expect_failure(&media.path("audio.m4a"), "0", "3", "no video stream")?;
    ensure!(matches!(err, ClipError::NoVideo { .. }), "{err:?}");
    for source in ["gop2.mp4", "gop2.ts", "gop2.flv", "gop2.mkv"] {
        let err = expect_failure(&media.path(source), "75", "30", "past the end")?;
        ensure!(matches!(err, ClipError::PastEnd { .. }), "{err:?}");
    }
    let err = expect_failure(&media.path("gop2.mp4"), "10", "0", "duration must be positive")?;
    ensure!(matches!(err, ClipError::InvalidWindow(_)), "{err:?}");
    let err = expect_failure(&media.path("gop2.mp4"), "-1", "10", "start")?;
    ensure!(matches!(err, ClipError::InvalidWindow(_)), "{err:?}");
    Ok(())
}

#[test]
fn output_into_a_missing_directory_is_an_io_error() -> Result<()> {
    let media = media();
    let out = Path::new("/nonexistent-dir-for-dropline/clip.mp4");
    let window = Window { start: Duration::from_secs(1), duration: Duration::from_secs(5) };
    let err = cut_copy(&media.path("gop2.mp4"), window, out).err().context("succeeded")?;
    ensure!(matches!(err, ClipError::Io { .. }), "{err:?}");
    ensure!(err.to_string().contains("nonexistent-dir-for-dropline"), "{err}");
    Ok(())
}

#[test]
fn hevc_with_opus_is_copied_too() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mkv = dir.path().join("hevc.mkv");
    let ts = dir.path().join("hevc.ts");
    let p = |path: &Path| path.to_string_lossy().into_owned();
    #[rustfmt::skip]
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", "20", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
        "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "libopus", &p(&mkv),
    ])?;
    ffmpeg(&["-i", &p(&mkv), "-c", "copy", &p(&ts)])?;
    for source in [&mkv, &ts] {
        let clip = dir.path().join("clip.mp4");
        let report = cut_copy(source, Window::from_secs(5.0, 10.0)?, &clip)?;
        ensure!((3_000..=5_000).contains(&report.start_ms), "{source:?}: {report:?}");
        let info = probe_json(&clip, &["-show_streams"])?;
        let codecs: Vec<_> = info["streams"]
            .as_array()
            .context("streams")?
            .iter()
            .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
            .collect();
        ensure!(codecs == ["hevc", "opus"], "{source:?}: {codecs:?}");
        let decode =
            run(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&clip).args(["-f", "null", "-"]))?;
        ensure!(decode.stderr.is_empty(), "{source:?}: {}", String::from_utf8_lossy(&decode.stderr));
        let err = cut_exact(source, Window::from_secs(5.5, 10.0)?, &clip).err().context("exact HEVC")?;
        ensure!(matches!(err, ClipError::ExactUnsupported { .. }), "{err:?}");
        ensure!(err.to_string().contains("hevc"), "{err}");
        let first = probe_json(&clip, &["-show_packets", "-select_streams", "v", "-read_intervals", "%+#1"])?;
        ensure!(first["packets"][0]["flags"].as_str().is_some_and(|f| f.contains('K')), "{first}");
    }
    Ok(())
}
