//! Worker mode over the real broker: a `ClipRequest` yields a `ClipReady` and a playable file;
//! a bad request yields `ClipFailed` with the reason; garbage goes to dead-letters; it keeps going.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use dropline_core::{kafka, Settings, TopicKind, Topics};
use dropline_proto::v1::{clip_event, ClipEvent, ClipReason, ClipRequest, DeadLetter};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;

fn make_recording(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-f", "lavfi"])
        .args(["-i", "sine=frequency=440:sample_rate=48000", "-t", "70", "-c:v", "libx264", "-preset"])
        .args(["ultrafast", "-g", "60", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the test recording");
    Ok(())
}

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

async fn next<M: prost::Message + Default>(consumer: &StreamConsumer) -> anyhow::Result<M> {
    let message = tokio::time::timeout(Duration::from_secs(60), consumer.stream().next())
        .await
        .context("nothing within 60 s")?
        .context("stream ended")??;
    Ok(kafka::decode(&message)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_requests_become_clips_or_reasons() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::from_env()?;
    settings.topics = Topics::with_prefix(&format!("test-clipper-{}.", uuid::Uuid::new_v4().simple()));
    settings.recordings = dir.path().join("recordings");
    settings.clips = dir.path().join("clips");
    std::fs::create_dir_all(&settings.recordings)?;
    let recording = settings.recordings.join("stream.mp4");
    make_recording(&recording)?;
    let started = kafka::now_ms() - 70_000;
    std::fs::write(recording.with_extension("mp4.json"), format!("{{\"started_at_ms\": {started}}}"))?;

    kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
    let names: Vec<&str> = settings.topics.all().map(|(_, n)| n).collect();
    kafka::ensure_topics(&settings, &names, 2, 1).await?;
    let clips = reader(&settings, TopicKind::Clips)?;
    let dead = reader(&settings, TopicKind::DeadLetters)?;

    let token = tokio_util::sync::CancellationToken::new();
    let config = dropline_clipper::worker::WorkerConfig {
        group: format!("clipper-{}", uuid::Uuid::new_v4().simple()),
        workers: 2,
        admin: "127.0.0.1:0".parse()?,
        rules: Default::default(),
        vertical: Some(dropline_clipper::VerticalOptions::default()),
    };
    let worker = tokio::spawn(dropline_clipper::worker::run(settings.clone(), config, token.clone()));

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
