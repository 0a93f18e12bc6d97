//! Worker mode over the real broker: a `ClipRequest` yields a `ClipReady` and a playable file;
//! a bad request yields `ClipFailed` with the reason; garbage goes to dead-letters; it keeps going.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{clip_event, ClipEvent, ClipReason, ClipRequest, DeadLetter};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;

fn duration_s(path: &Path) -> anyhow::Result<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

fn probe_entry(path: &Path, entries: &str) -> anyhow::Result<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn reader(settings: &Settings, kind: TopicKind) -> anyhow::Result<StreamConsumer> {
    let consumer = kafka::consumer(settings, "test", &format!("reader-{}", uuid::Uuid::new_v4().simple()))?;
    consumer.subscribe(&[settings.topics.name(kind)])?;
    Ok(consumer)
}

/// The next event. Generous: a 9:16 variant is a 45 s x264 encode, and this binary's tests encode
/// at once on two cores (a liveness bound, not a speed check: the benches measure speed).
async fn next<M: prost::Message + Default>(consumer: &StreamConsumer) -> anyhow::Result<M> {
    let message = tokio::time::timeout(Duration::from_secs(180), consumer.stream().next())
        .await
        .context("nothing within 180 s")?
        .context("stream ended")??;
    Ok(kafka::decode(&message)?)
}

/// A world of its own: topics with a unique prefix, a 70 s recording that started 70 s ago, and a
/// worker running in this process.
struct World {
    _dir: tempfile::TempDir,
    settings: Settings,
    started: i64,
    clips: StreamConsumer,
    dead: StreamConsumer,
    token: tokio_util::sync::CancellationToken,
    worker: tokio::task::JoinHandle<Result<(), dropline_clipper::worker::WorkerError>>,
}

/// Settings of this machine with topics of the test's own.
fn test_settings() -> Settings {
    let mut settings = Settings::from_env().expect("settings");
    settings
        .set_topic_prefix(&format!("test-clipper-{}.", uuid::Uuid::new_v4().simple()))
        .expect("namespace");
    settings
}

async fn world(moments: bool) -> anyhow::Result<World> {
    let dir = tempfile::tempdir()?;
    let mut settings = test_settings();
    settings.recordings = dir.path().join("recordings");
    settings.clips = dir.path().join("clips");
    std::fs::create_dir_all(&settings.recordings)?;
    let recording = settings.recordings.join("stream.mp4");
    common::test_recording(&recording, "320x180", 70.0, 60)?;
    let started = kafka::now_ms() - 70_000;
    std::fs::write(recording.with_extension("mp4.json"), format!("{{\"started_at_ms\": {started}}}"))?;
    // A finished recording: last written when the stream ended, not just now.
    std::fs::File::options()
        .write(true)
        .open(&recording)?
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))?;

    common::with_topics(&settings).await?;
    let clips = reader(&settings, TopicKind::Clips)?;
    let dead = reader(&settings, TopicKind::DeadLetters)?;

    let token = tokio_util::sync::CancellationToken::new();
    let config = common::worker_config((!moments).then(dropline_clipper::VerticalOptions::default), moments)?;
    let worker = tokio::spawn(dropline_clipper::worker::run(settings.clone(), config, token.clone()));
    Ok(World { _dir: dir, settings, started, clips, dead, token, worker })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_requests_become_clips_or_reasons() -> anyhow::Result<()> {
    let World { _dir, settings, started, clips, dead, token, worker } = world(false).await?;
    let producer = kafka::producer(&settings, "test")?;
    let topic = settings.topics.name(TopicKind::ClipRequests).to_owned();
    let sold_out = ClipRequest {
        clip_id: "sold-out-1".into(),
        drop_id: "drop-a".into(),
        recording: "stream.mp4".into(),
        at_ms: Some(started + 40_000),
        reason: ClipReason::SoldOut as i32,
        note: "HOODIE-L sold out".into(),
        ..Default::default()
    };
    kafka::publish(&producer, &topic, "drop-a", &sold_out).await?;
    let ClipEvent { event: Some(clip_event::Event::Ready(ready)) } = next::<ClipEvent>(&clips).await? else {
        anyhow::bail!("expected a ClipReady");
    };
    assert_eq!((ready.clip_id.as_str(), ready.drop_id.as_str()), ("sold-out-1", "drop-a"));
    assert_eq!(ready.reason, ClipReason::SoldOut as i32);
    // 20 s before the moment at 40 s: from the keyframe at or before 20 s, 45 s long.
    assert!((18_000..=20_000).contains(&ready.start_ms), "{ready:?}");
    let path = Path::new(&ready.path);
    assert!(path.starts_with(&settings.clips), "{}", ready.path);
    let length = duration_s(path)?;
    assert!((44.0..=48.0).contains(&length), "clip lasts {length} s");
    assert_eq!(ready.size_bytes, std::fs::metadata(path)?.len());
    assert_eq!(probe_entry(Path::new(&ready.thumbnail_path), "stream=codec_name")?, "mjpeg");
    assert!(ready.vertical_path.is_empty(), "the clip is announced before its vertical variant");

    // Then the same clip again, with its 9:16 variant.
    let ClipEvent { event: Some(clip_event::Event::Ready(again)) } = next::<ClipEvent>(&clips).await? else {
        anyhow::bail!("expected the vertical variant's ClipReady");
    };
    assert_eq!(again.clip_id, "sold-out-1");
    let vertical = Path::new(&again.vertical_path);
    assert_eq!(probe_entry(vertical, "stream=width,height")?, "720\n1280");
    let vertical_length = duration_s(vertical)?;
    assert!((length - vertical_length).abs() < 0.2, "{vertical_length} vs {length}");

    for (clip_id, recording) in [("missing-1", "nope.mp4"), ("escape-1", "../stream.mp4")] {
        let request = ClipRequest {
            clip_id: clip_id.into(),
            drop_id: "drop-a".into(),
            recording: recording.into(),
            start_ms: Some(1_000),
            duration_ms: Some(40_000),
            ..Default::default()
        };
        kafka::publish(&producer, &topic, "drop-a", &request).await?;
        let ClipEvent { event: Some(clip_event::Event::Failed(failed)) } = next::<ClipEvent>(&clips).await?
        else {
            anyhow::bail!("expected a ClipFailed for {clip_id}");
        };
        assert_eq!(failed.clip_id, clip_id);
        assert!(!failed.reason.is_empty());
    }

    producer
        .send(
            FutureRecord::to(&topic).key("drop-a").payload(&[0xffu8, 0xff, 0x01][..]),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let letter: DeadLetter = next(&dead).await?;
    assert_eq!(letter.payload.as_ref(), [0xff, 0xff, 0x01]);
    assert!(letter.reason.contains("invalid protobuf"), "{}", letter.reason);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), worker).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moments_of_a_drop_become_clip_requests_and_clips() -> anyhow::Result<()> {
    use dropline_proto::v1::{drop_trigger, DropTrigger, OpenDrop};
    let World { _dir, settings, started, clips, token, worker, .. } = world(true).await?;
    let requests = reader(&settings, TopicKind::ClipRequests)?;
    let producer = kafka::producer(&settings, "test")?;

    let opened_at = started + 40_000;
    let open = DropTrigger {
        drop_id: "drop-m".into(),
        sent_at_ms: opened_at,
        trigger_id: "open-m".into(),
        action: Some(drop_trigger::Action::Open(OpenDrop {
            recording: "stream.mp4".into(),
            ..Default::default()
        })),
    };
    kafka::publish(&producer, settings.topics.name(TopicKind::DropTriggers), "drop-m", &open).await?;
    let request: ClipRequest = next(&requests).await?;
    assert_eq!(request.reason, ClipReason::DropOpened as i32);
    assert_eq!((request.at_ms, request.recording.as_str()), (Some(opened_at), "stream.mp4"));
    let ClipEvent { event: Some(clip_event::Event::Ready(ready)) } = next::<ClipEvent>(&clips).await? else {
        anyhow::bail!("expected the opening clip");
    };
    assert_eq!(ready.clip_id, request.clip_id);
    assert!(Path::new(&ready.path).exists());

    // The last hoodie goes a few minutes later: a sold-out moment (its own clip request).
    let last = last_hoodie("drop-m", opened_at + 180_000);
    kafka::publish(&producer, settings.topics.name(TopicKind::Reservations), "drop-m", &last).await?;
    let sold_out: ClipRequest = next(&requests).await?;
    assert_eq!(sold_out.reason, ClipReason::SoldOut as i32);
    assert!(sold_out.note.contains("HOODIE-L"), "{}", sold_out.note);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), worker).await???;
    Ok(())
}

/// A recorder writing `path` (MPEG-TS or FLV, by extension) at four times real time: 120 s of
/// stream in about 30 s.
fn live_recorder(path: &Path) -> anyhow::Result<std::process::Child> {
    Ok(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-readrate", "4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-readrate", "4", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "120"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "2", "-c:a", "aac"])
        .arg(path)
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_of_recordings_still_being_written_are_waited_for() -> anyhow::Result<()> {
    let World { _dir, settings, clips, token, worker, .. } = world(false).await?;
    let producer = kafka::producer(&settings, "test")?;
    let topic = settings.topics.name(TopicKind::ClipRequests).to_owned();
    let mut recorders = Vec::new();
    for name in ["live.ts", "live.flv"] {
        recorders.push(live_recorder(&settings.recordings.join(name))?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 5–35 s of each stream: not recorded yet when asked (about 1 s in, so ~4 s of stream).
    for (clip_id, recording) in [("live-ts", "live.ts"), ("live-flv", "live.flv")] {
        let request = ClipRequest {
            clip_id: clip_id.into(),
            drop_id: "drop-live".into(),
            recording: recording.into(),
            start_ms: Some(5_000),
            duration_ms: Some(30_000),
            exact: true,
            ..Default::default()
        };
        kafka::publish(&producer, &topic, "drop-live", &request).await?;
    }
    let mut ready = Vec::new();
    while ready.len() < 2 {
        match next::<ClipEvent>(&clips).await? {
            ClipEvent { event: Some(clip_event::Event::Ready(clip)) } if clip.vertical_path.is_empty() => {
                // The stream is still being recorded: the clip did not wait for its end.
                for recorder in &mut recorders {
                    assert!(recorder.try_wait()?.is_none(), "{}: the recording already ended", clip.clip_id);
                }
                ready.push(clip);
            }
            ClipEvent { event: Some(clip_event::Event::Ready(_)) } => {} // a vertical variant
            other => anyhow::bail!("expected clips, got {other:?}"),
        }
    }
    for clip in &ready {
        assert!(clip.start_ms.abs_diff(5_000) <= 34, "{clip:?}");
        let length = duration_s(Path::new(&clip.path))?;
        assert!((length - 30.0).abs() <= 0.1, "{}: {length} s", clip.clip_id);
    }
    for mut recorder in recorders {
        let _ = recorder.kill();
        let _ = recorder.wait();
    }
    token.cancel();
    tokio::time::timeout(Duration::from_secs(60), worker).await???;
    Ok(())
}

/// A clipper restarted after a drop opened still knows the drop's recording: a moment after the
/// restart is requested as a clip of it (before, it was "a moment without a recording").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_clipper_remembers_which_recording_a_drop_is_in() -> anyhow::Result<()> {
    use dropline_proto::v1::{drop_trigger, DropTrigger, OpenDrop};
    let settings = test_settings();
    common::with_topics(&settings).await?;
    let requests = reader(&settings, TopicKind::ClipRequests)?;
    let producer = kafka::producer(&settings, "test")?;
    let group = format!("moments-{}", uuid::Uuid::new_v4().simple());
    let start = |settings: &Settings| {
        let token = tokio_util::sync::CancellationToken::new();
        let run = dropline_clipper::autoclip::run(
            settings.clone(),
            group.clone(),
            Default::default(),
            token.clone(),
        );
        (token, tokio::spawn(run))
    };
    let (token, moments) = start(&settings);
    let opened_at = kafka::now_ms();
    let open = DropTrigger {
        drop_id: "drop-r".into(),
        sent_at_ms: opened_at,
        trigger_id: "open-r".into(),
        action: Some(drop_trigger::Action::Open(OpenDrop {
            recording: "stream.mp4".into(),
            ..Default::default()
        })),
    };
    kafka::publish(&producer, settings.topics.name(TopicKind::DropTriggers), "drop-r", &open).await?;
    let opening: ClipRequest = next(&requests).await?;
    assert_eq!(opening.reason, ClipReason::DropOpened as i32);
    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), moments).await???;

    let (token, moments) = start(&settings);
    let last = last_hoodie("drop-r", opened_at + 180_000);
    kafka::publish(&producer, settings.topics.name(TopicKind::Reservations), "drop-r", &last).await?;
    let sold_out: ClipRequest = next(&requests).await?;
    assert_eq!((sold_out.reason, sold_out.recording.as_str()), (ClipReason::SoldOut as i32, "stream.mp4"));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), moments).await???;
    Ok(())
}

/// The reservation of a drop's last hoodie at `at_ms`: a sold-out moment.
fn last_hoodie(drop_id: &str, at_ms: i64) -> dropline_proto::v1::ReservationOutcome {
    dropline_proto::v1::ReservationOutcome {
        order_id: "o-last".into(),
        drop_id: drop_id.into(),
        sku: "HOODIE-L".into(),
        quantity: 1,
        status: dropline_proto::v1::ReservationStatus::Reserved as i32,
        remaining: 0,
        decided_at_ms: at_ms,
        ..Default::default()
    }
}
