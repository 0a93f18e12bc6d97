//! Multi-angle clips over the real broker: a drop recorded by three cameras — different start
//! times, frame rates and GOPs — opens, and its opening moment yields one clip per angle, all of
//! the same moment and the same wall-clock window. Checked by decoding: every recording shows a
//! white flash at the same wall-clock instant, so in every clip the flash must come at the same
//! time from the clip's first picture, within one frame. A camera whose recording is missing, and
//! one whose recording ended before the moment, fail alone, each with its reason.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{clip_event, drop_trigger, Angle, ClipEvent, ClipReady, DropTrigger, OpenDrop};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};

/// One camera: its name, frame rate, GOP (frames) and how much later than the first it started.
struct Camera {
    name: &'static str,
    fps: u32,
    gop: u32,
    started_late_ms: i64,
}

const CAMERAS: [Camera; 3] = [
    Camera { name: "creator", fps: 30, gop: 60, started_late_ms: 0 },
    Camera { name: "product", fps: 25, gop: 37, started_late_ms: 1_300 },
    Camera { name: "screen", fps: 24, gop: 100, started_late_ms: 2_730 },
];
const LENGTH_S: f64 = 70.0;

/// `LENGTH_S` of black with a white flash (150 ms) at `flash_s` in recording time, and a tone.
fn flash_recording(out: &Path, camera: &Camera, flash_s: f64) -> anyhow::Result<()> {
    let video = format!(
        "color=c=black:s=320x180:r={}:d={LENGTH_S},drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(t,{flash_s:.3},{:.3})'",
        camera.fps,
        flash_s + 0.15
    );
    #[rustfmt::skip]
    let args = [
        "-f", "lavfi", "-i", &video,
        "-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={LENGTH_S}"),
        "-c:v", "libx264", "-preset", "ultrafast", "-g", &camera.gop.to_string(),
        "-keyint_min", &camera.gop.to_string(), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-shortest", &out.to_string_lossy(),
    ];
    common::ffmpeg(&args)
}

/// Seconds from the clip's first picture to its first white one (decoded, by luma).
fn flash_in(clip: &Path) -> anyhow::Result<f64> {
    let graph = format!("movie={},signalstats", clip.display());
    let out =
        common::run(Command::new("ffprobe").args(["-v", "error", "-f", "lavfi", "-i", &graph]).args([
            "-show_entries",
            "frame=pts_time:frame_tags=lavfi.signalstats.YAVG",
            "-of",
            "csv=p=0",
        ]))?;
    let text = String::from_utf8(out.stdout)?;
    let mut frames = text.lines().filter_map(|l| {
        let (t, y) = l.split_once(',')?;
        Some((t.parse::<f64>().ok()?, y.parse::<f64>().ok()?))
    });
    let first = frames.next().context("no frames")?.0;
    let (flash, _) = frames.find(|(_, y)| *y > 128.0).context("no flash in the clip")?;
    Ok(flash - first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_angle_of_a_moment_is_cut_over_the_same_wall_clock_window() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::from_env()?;
    settings.set_topic_prefix(&format!("test-angles-{}.", uuid::Uuid::new_v4().simple()))?;
    settings.recordings = dir.path().join("recordings");
    settings.clips = dir.path().join("clips");
    std::fs::create_dir_all(&settings.recordings)?;

    // The first camera started 80 s ago; the drop opens 40 s into it; the flash is 5 s before.
    let first_started = kafka::now_ms() - 80_000;
    let opened_at = first_started + 40_000;
    let flash_at = opened_at - 5_000;
    let mut angles = Vec::new();
    for camera in &CAMERAS {
        let started = first_started + camera.started_late_ms;
        let file = format!("{}.mp4", camera.name);
        let path = settings.recordings.join(&file);
        flash_recording(&path, camera, (flash_at - started) as f64 / 1000.0)?;
        std::fs::write(format!("{}.json", path.display()), format!("{{\"started_at_ms\": {started}}}"))?;
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))?;
        angles.push(Angle { name: camera.name.into(), recording: file });
    }
    // A camera whose recording never arrived: its clip fails with the reason, the others are made.
    angles.push(Angle { name: "backstage".into(), recording: "backstage.mp4".into() });
    // A camera that stopped long before the moment: its recording does not cover the window.
    let path = settings.recordings.join("early.mp4");
    common::test_recording(&path, "320x180", 35.0, 60)?;
    std::fs::write(format!("{}.json", path.display()), format!("{{\"started_at_ms\": {first_started}}}"))?;
    std::fs::File::options()
        .write(true)
        .open(&path)?
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))?;
    angles.push(Angle { name: "early".into(), recording: "early.mp4".into() });

    common::with_topics(&settings).await?;
    let clips: StreamConsumer =
        kafka::consumer(&settings, "test", &format!("reader-{}", uuid::Uuid::new_v4().simple()))?;
    clips.subscribe(&[settings.topics.name(TopicKind::Clips)])?;
    let token = tokio_util::sync::CancellationToken::new();
    let config = common::worker_config(None, true)?;
    let worker = tokio::spawn(dropline_clipper::worker::run(settings.clone(), config, token.clone()));

    let producer = kafka::producer(&settings, "test")?;
    let open = DropTrigger {
        drop_id: "drop-angles".into(),
        trigger_id: "open-angles".into(),
        sent_at_ms: opened_at,
        action: Some(drop_trigger::Action::Open(OpenDrop { angles, ..Default::default() })),
    };
    kafka::publish(&producer, settings.topics.name(TopicKind::DropTriggers), "drop-angles", &open).await?;

    let mut ready: HashMap<String, ClipReady> = HashMap::new();
    let mut failed = Vec::new();
    while ready.len() < CAMERAS.len() || failed.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(180), clips.stream().next())
            .await
            .context("not every angle's clip within 180 s")?
            .context("stream ended")??;
        match kafka::decode::<ClipEvent, _>(&message)?.event {
            Some(clip_event::Event::Ready(r)) => {
                ready.insert(r.angle.clone(), r);
            }
            Some(clip_event::Event::Failed(f)) if ["backstage", "early"].contains(&f.angle.as_str()) => {
                failed.push(f)
            }
            Some(clip_event::Event::Failed(f)) => anyhow::bail!("angle {} failed: {}", f.angle, f.reason),
            None => {}
        }
    }

    failed.sort_by(|a, b| a.angle.cmp(&b.angle));
    ensure!(failed[0].angle == "backstage" && failed[0].reason.contains("backstage.mp4"), "{failed:?}");
    ensure!(failed[1].angle == "early" && failed[1].reason.contains("outside the recording"), "{failed:?}");
    let moment_ids: Vec<&str> = ready.values().map(|r| r.moment_id.as_str()).collect();
    ensure!(failed.iter().all(|f| f.moment_id == moment_ids[0]), "the failed angles are of the same moment");
    ensure!(moment_ids.iter().all(|m| *m == moment_ids[0] && !m.is_empty()), "{moment_ids:?}");
    // The slowest camera's frame period: the tolerance of "the same instant".
    let frame_s = 1.0 / f64::from(CAMERAS.iter().map(|c| c.fps).min().unwrap_or(1));
    let mut flashes = Vec::new();
    let mut firsts = Vec::new();
    for camera in &CAMERAS {
        let clip = ready.get(camera.name).with_context(|| format!("no clip of {}", camera.name))?;
        ensure!(clip.clip_id.ends_with(camera.name), "{}", clip.clip_id);
        let flash = flash_in(Path::new(&clip.path))?;
        flashes.push(flash);
        firsts.push(clip.first_picture_at_ms.context("first picture's time")?);
        // The decoded flash agrees with the announced first picture: flash wall time − offset.
        let announced = (flash_at - clip.first_picture_at_ms.unwrap_or(0)) as f64 / 1000.0;
        ensure!(
            (flash - announced).abs() <= 1.0 / f64::from(camera.fps) + 0.002,
            "{}: flash {flash:.3} s into the clip, the announcement says {announced:.3} s",
            camera.name
        );
    }
    let spread =
        flashes.iter().cloned().fold(f64::MIN, f64::max) - flashes.iter().cloned().fold(f64::MAX, f64::min);
    ensure!(spread <= frame_s + 0.002, "flash at {flashes:?} s into the clips: {spread:.3} s apart");
    let first_spread = firsts.iter().max().unwrap_or(&0) - firsts.iter().min().unwrap_or(&0);
    ensure!((first_spread as f64) / 1000.0 <= frame_s + 0.002, "first pictures {firsts:?}");
    eprintln!(
        "angles: flash at {flashes:?} s into the clips (spread {spread:.3} s); first pictures {firsts:?}"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), worker).await???;
    Ok(())
}
