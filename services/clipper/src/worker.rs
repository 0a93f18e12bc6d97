//! Worker mode: consume `clip-requests`, cut each clip on a blocking thread (several at once,
//! bounded), publish `ClipReady` or `ClipFailed` on `clips`, then commit.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use dropline_core::admin::{self, Health};
use dropline_core::backoff::Backoff;
use dropline_core::kafka::{self, now_ms};
use dropline_core::settings::{SettingsError, Vars};
use dropline_core::{Settings, TopicKind};
use dropline_proto::v1::{clip_event, ClipEvent, ClipFailed, ClipReady, ClipRequest};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cut::{cut_copy, cut_exact, Window};
use crate::growing::{is_growing, wait_until_recorded, WaitLimits};
use crate::probe::probe;
use crate::rules::{to_recording_time, ClipRules, Wanted};
use crate::thumbnail::thumbnail;
use crate::vertical::{vertical, VerticalOptions};

/// How the worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Consumer group (`DROPLINE_CLIPPER_GROUP`, default `dropline-clipper`).
    pub group: String,
    /// Clips cut at once (`DROPLINE_CLIPPER_WORKERS`, default 2).
    pub workers: usize,
    /// `/metrics` and `/healthz` (`DROPLINE_ADMIN`, default `127.0.0.1:9102`).
    pub admin: SocketAddr,
    /// Window rules.
    pub rules: ClipRules,
    /// The 9:16 variant made after each clip (`DROPLINE_CLIPPER_VERTICAL`: `720`, `1080` or `off`;
    /// default 720).
    pub vertical: Option<VerticalOptions>,
    /// Waiting for windows not yet recorded in a growing recording (`DROPLINE_CLIPPER_WAIT`,
    /// seconds, default 90).
    pub wait: WaitLimits,
    /// Request clips of drops' moments automatically (`DROPLINE_CLIPPER_MOMENTS`: `on`/`off`, default on).
    pub moments: bool,
    /// Clip files older than this are deleted (`DROPLINE_CLIPPER_RETENTION`, e.g. `30d`; `off`, the
    /// default, keeps them).
    pub retention: Option<Duration>,
}

impl WorkerConfig {
    /// Reads `DROPLINE_CLIPPER_*` (and the shared admin address).
    pub fn from_env(admin: Option<SocketAddr>) -> Result<Self, SettingsError> {
        let mut config = Self {
            group: "dropline-clipper".into(),
            workers: 2,
            admin: admin.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9102))),
            rules: ClipRules::default(),
            wait: WaitLimits::default(),
            vertical: Some(VerticalOptions::default()),
            moments: true,
            retention: None,
        };
        let vars = Vars::new(|var| std::env::var(var).ok());
        if let Some(on) = vars.switch("DROPLINE_CLIPPER_MOMENTS")? {
            config.moments = on;
        }
        if vars.get("DROPLINE_CLIPPER_RETENTION").is_some_and(|v| v != "off") {
            config.retention = vars.duration("DROPLINE_CLIPPER_RETENTION")?;
        }
        if let Some(group) = vars.get("DROPLINE_CLIPPER_GROUP") {
            config.group = group;
        }
        if let Some(n) = vars.number("DROPLINE_CLIPPER_WORKERS", 1..=64)? {
            config.workers = n;
        }
        if let Some(secs) = vars.number("DROPLINE_CLIPPER_WAIT", 0..=3600)? {
            config.wait.max_wait = Duration::from_secs(secs);
        }
        if let Ok(v) = std::env::var("DROPLINE_CLIPPER_VERTICAL") {
            config.vertical = match v.trim() {
                "off" | "no" | "0" => None,
                "720" => Some(VerticalOptions { width: 720, ..VerticalOptions::default() }),
                "1080" => Some(VerticalOptions { width: 1080, ..VerticalOptions::default() }),
                _ => {
                    return Err(SettingsError {
                        var: "DROPLINE_CLIPPER_VERTICAL".into(),
                        value: v,
                        expected: "`720`, `1080` or `off`".into(),
                    })
                }
            };
        }
        Ok(config)
    }
}

/// The worker could not start.
pub type WorkerError = dropline_core::StartError;

/// The clipper's metrics, in one place.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry served on `/metrics`.
    pub registry: Registry,
    /// `dropline_clips_total{result}`: `ready` or `failed`.
    pub clips: IntCounterVec,
    /// `dropline_clip_cut_seconds`: request taken → clip file written.
    pub cut_seconds: Histogram,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = admin::registry("clipper");
        let clips =
            IntCounterVec::new(Opts::new("dropline_clips_total", "Clip requests answered."), &["result"])?;
        let cut_seconds = Histogram::with_opts(
            HistogramOpts::new("dropline_clip_cut_seconds", "Time to cut one clip.")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )?;
        registry.register(Box::new(clips.clone()))?;
        registry.register(Box::new(cut_seconds.clone()))?;
        Ok(Self { registry, clips, cut_seconds })
    }
}

/// Runs the worker until `shutdown`; clips being cut are finished first (within the grace period).
pub async fn run(
    settings: Settings,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // libav's own chatter (x264 statistics, deprecation notes) stays out of the service's logs.
    ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Error);
    let metrics = Metrics::new()?;
    let health = Health::default();
    let admin_stop = CancellationToken::new();
    let (addr, admin_task) = admin::serve(
        config.admin,
        admin::router(metrics.registry.clone(), health.clone()),
        admin_stop.clone(),
    )
    .await?;
    std::fs::create_dir_all(&settings.clips)?;
    let producer = kafka::producer(&settings, "dropline-clipper")?;
    let consumer = kafka::consumer(&settings, "dropline-clipper", &config.group)?;
    consumer.subscribe(&[settings.topics.name(TopicKind::ClipRequests)])?;
    health.set("kafka", true, "subscribed");
    info!(admin = %addr, workers = config.workers, "clipper worker running");
    let (verticals, vertical_task) = match config.vertical {
        Some(opts) => {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let task = tokio::spawn(vertical_loop(rx, opts, producer.clone(), settings.clone()));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let retention = config.retention.map(|max_age| {
        // Hourly, or more often for short retentions (a tenth of the age, at least a minute).
        let every = (max_age / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600));
        tokio::spawn(crate::retention::run(settings.clips.clone(), max_age, every, shutdown.clone()))
    });
    let moments = config.moments.then(|| {
        let group = format!("{}-moments", config.group);
        tokio::spawn(crate::autoclip::run(settings.clone(), group, config.rules, shutdown.clone()))
    });

    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            m = consumer.recv() => m.map(|m| m.detach()),
        };
        let first = match first {
            Ok(m) => {
                health.set("kafka", true, "ok");
                m
            }
            Err(e) => {
                health.set("kafka", false, e.to_string());
                warn!(error = %e, "consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let batch: Vec<_> =
            kafka::arrived(&consumer, first, config.workers).into_iter().map(|(m, _)| m).collect();
        // Cut the batch's clips at once, each on its own blocking thread.
        let jobs: Vec<_> = batch
            .iter()
            .map(|m| {
                let (settings, rules, wait) = (settings.clone(), config.rules, config.wait);
                let msg = m.clone();
                tokio::task::spawn_blocking(move || answer(&settings, rules, wait, &msg))
            })
            .collect();
        let mut answers = Vec::with_capacity(jobs.len());
        for (job, msg) in jobs.into_iter().zip(&batch) {
            let answer = job.await.unwrap_or_else(|e| Answer::Dead(format!("clip job panicked: {e}")));
            answers.push((msg, answer));
        }
        let mut ok = true;
        let mut readies = Vec::new();
        for (msg, answer) in answers {
            let (topic, key, payload) = match answer {
                Answer::Event { event, drop_id, elapsed } => {
                    if let Some(clip_event::Event::Ready(ready)) = &event.event {
                        readies.push(ready.clone());
                    }
                    let result = if matches!(event.event, Some(clip_event::Event::Ready(_))) {
                        "ready"
                    } else {
                        "failed"
                    };
                    metrics.clips.with_label_values(&[result]).inc();
                    metrics.cut_seconds.observe(elapsed.as_secs_f64());
                    (
                        settings.topics.name(TopicKind::Clips).to_owned(),
                        drop_id,
                        prost::Message::encode_to_vec(&event),
                    )
                }
                Answer::Dead(reason) => {
                    warn!(offset = msg.offset(), reason = %reason, "dead letter");
                    let letter = kafka::dead_letter(msg, &reason, "clipper");
                    let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                    (
                        settings.topics.name(TopicKind::DeadLetters).to_owned(),
                        key,
                        prost::Message::encode_to_vec(&letter),
                    )
                }
            };
            // Retried until the broker takes it: a later batch's commit would otherwise skip
            // this request. Only shutdown stops the retries (the batch is then not committed and
            // is redone after a restart). A record the broker refuses for good (too large) is
            // replaced by its dead letter, and that is not retried forever either.
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            let (mut topic, mut payload) = (topic, payload);
            loop {
                match publish_raw(&producer, &topic, &key, &payload).await {
                    Ok(()) => {
                        health.set("kafka", true, "ok");
                        break;
                    }
                    Err(e) if kafka::is_permanent(&e) => {
                        let dead_letters = settings.topics.name(TopicKind::DeadLetters);
                        if topic == dead_letters {
                            warn!(error = %e, size = payload.len(), "dead letter refused by the broker; dropped");
                            break;
                        }
                        warn!(error = %e, topic = %topic, size = payload.len(), "record refused for good; dead-lettered");
                        let reason = format!("the broker refused this {topic} record for good: {e}");
                        let letter =
                            kafka::refused_letter(&topic, key.as_bytes(), &payload, &reason, "clipper");
                        (topic, payload) = (dead_letters.to_owned(), prost::Message::encode_to_vec(&letter));
                    }
                    Err(e) => {
                        health.set("kafka", false, e.to_string());
                        warn!(error = %e, "cannot publish; retrying");
                        if !backoff.wait(&shutdown).await {
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if !ok {
                break;
            }
        }
        // The 9:16 variant takes seconds (a re-encode): it is made in the background, one at a
        // time, and announced as a second ClipReady for the same clip_id, so new clips never wait.
        if let Some(verticals) = &verticals {
            for ready in readies {
                if verticals.try_send(ready).is_err() {
                    warn!("vertical variants are backed up; this clip gets none");
                }
            }
        }
        if ok {
            for msg in &batch {
                if let Err(e) = consumer.store_offset(msg.topic(), msg.partition(), msg.offset() + 1) {
                    warn!(error = %e, "cannot store offset");
                }
            }
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                warn!(error = %e, "commit failed");
            }
        }
    }
    let _ = dropline_core::shutdown::drain(settings.shutdown_grace, async {
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
        consumer.unsubscribe();
    })
    .await;
    drop(verticals);
    if let Some(task) = vertical_task {
        // Queued and running variants get the grace period to finish; the rest are dropped.
        let _ = tokio::time::timeout(settings.shutdown_grace, task).await;
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    if let Some(moments) = moments {
        match moments.await {
            Ok(Err(e)) => warn!(error = %e, "moment watcher stopped with an error"),
            Err(e) => warn!(error = %e, "moment watcher panicked"),
            Ok(Ok(())) => {}
        }
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    Ok(())
}

async fn publish_raw(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Result<(), KafkaError> {
    let record = rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload);
    producer.send(record, Duration::from_secs(30)).await.map(drop).map_err(|(e, _)| e)
}

enum Answer {
    Event { event: Box<ClipEvent>, drop_id: String, elapsed: Duration },
    Dead(String),
}

/// Decodes and serves one request (blocking: libav work).
fn answer(settings: &Settings, rules: ClipRules, wait: WaitLimits, msg: &OwnedMessage) -> Answer {
    let request: ClipRequest = match kafka::decode(msg) {
        Ok(request) => request,
        Err(e) => return Answer::Dead(e.reason),
    };
    let started = Instant::now();
    let drop_id = request.drop_id.clone();
    let event = match cut_request(settings, rules, wait, &request) {
        Ok(ready) => {
            info!(clip_id = %ready.clip_id, path = %ready.path, duration_ms = ready.duration_ms, "clip ready");
            ClipEvent { event: Some(clip_event::Event::Ready(ready)) }
        }
        Err(reason) => {
            warn!(clip_id = %request.clip_id, reason = %reason, "clip failed");
            ClipEvent {
                event: Some(clip_event::Event::Failed(ClipFailed {
                    clip_id: request.clip_id.clone(),
                    drop_id: request.drop_id.clone(),
                    reason,
                    moment: request.reason,
                    failed_at_ms: now_ms(),
                    angle: request.angle.clone(),
                    moment_id: request.moment_id.clone(),
                })),
            }
        }
    };
    Answer::Event { event: Box::new(event), drop_id, elapsed: started.elapsed() }
}

/// Ids become file names: the shared check of names.
fn safe_name(what: &str, id: &str) -> Result<(), String> {
    dropline_core::domain::check_name(what, id)
}

/// The suffix of a clip's 9:16 file next to its main file (`<clip>.vertical.mp4`).
const VERTICAL_SUFFIX: &str = ".vertical";

/// A clip id usable as the stem of its files: a file name, and not `<another clip>.vertical`,
/// whose main file would be that clip's 9:16 file.
fn clip_name(id: &str) -> Result<(), String> {
    safe_name("clip_id", id)?;
    if id.to_ascii_lowercase().ends_with(VERTICAL_SUFFIX) {
        return Err(format!(
            "clip_id {id:?} ends in {VERTICAL_SUFFIX:?}: its file would be another clip's 9:16 file"
        ));
    }
    Ok(())
}

/// The recording's path inside `DROPLINE_RECORDINGS`; never outside it.
fn recording_path(root: &Path, recording: &str) -> Result<PathBuf, String> {
    let relative = Path::new(recording);
    if recording.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("recording {recording:?} must be a path inside DROPLINE_RECORDINGS"));
    }
    Ok(root.join(relative))
}

/// The checks a request passes before any file is touched: the clip and drop ids are file names
/// (and the clip's not another clip's 9:16 file), the recording a path inside `root`. The
/// recording's path.
pub fn admit(root: &Path, request: &ClipRequest) -> Result<PathBuf, String> {
    clip_name(&request.clip_id)?;
    safe_name("drop_id", &request.drop_id)?;
    recording_path(root, &request.recording)
}

/// What `request` asks of `input`, in its recording time: an explicit window, or a moment placed
/// by the recording's start (`started_at_ms`, wall clock), which must then be known.
pub fn wanted(request: &ClipRequest, started_at_ms: Option<i64>, input: &Path) -> Result<Wanted, String> {
    match (request.start_ms, request.at_ms) {
        (Some(start_ms), _) => {
            Ok(Wanted::Window { start_ms, duration_ms: request.duration_ms.unwrap_or(45_000) })
        }
        (None, Some(at_ms)) => {
            let started = started_at_ms.ok_or_else(|| {
                format!(
                    "cannot place the moment: the start time of {} is unknown (no creation_time, no {})",
                    request.recording,
                    crate::probe::sidecar_path(input).display()
                )
            })?;
            Ok(Wanted::Moment { at_ms: to_recording_time(at_ms, started) })
        }
        (None, None) => Err("the request has neither at_ms nor start_ms".into()),
    }
}

fn cut_request(
    settings: &Settings,
    rules: ClipRules,
    wait: WaitLimits,
    request: &ClipRequest,
) -> Result<ClipReady, String> {
    let input = admit(&settings.recordings, request)?;
    let growing = is_growing(&input, wait.stall);
    if growing {
        // Just started: wait until there is something to read.
        wait_until_recorded(&input, 1, wait).map_err(|e| e.to_string())?;
    }
    let recording = probe(&input).map_err(|e| e.to_string())?;
    let wanted = wanted(request, recording.started_at_ms, &input)?;
    // A recording still being written is not clamped at its current end: the window is planned as
    // if it were all there, then waited for (bounded); if the recording stops first, re-planned.
    let planned = if growing {
        let planned = rules.plan(wanted, i64::MAX / 4).map_err(|e| e.0)?;
        let end_ms = planned.start_ms.saturating_add(planned.duration_ms);
        let reached = wait_until_recorded(&input, end_ms, wait).map_err(|e| e.to_string())?;
        if reached.length_ms >= end_ms {
            planned
        } else {
            rules.plan(wanted, reached.length_ms).map_err(|e| e.0)?
        }
    } else {
        rules.plan(wanted, recording.length_ms).map_err(|e| e.0)?
    };
    let dir = settings.clips.join(&request.drop_id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let out = dir.join(format!("{}.mp4", request.clip_id));
    let window = Window::from_secs(planned.start_ms as f64 / 1000.0, planned.duration_ms as f64 / 1000.0)
        .map_err(|e| e.to_string())?;
    let cut = if request.exact { cut_exact } else { cut_copy };
    let report = cut(&input, window, &out).map_err(|e| e.to_string())?;
    // The thumbnail shows the moment itself (or the clip's first second for explicit windows).
    let moment_in_clip = match wanted {
        Wanted::Moment { at_ms } => at_ms.saturating_sub(i64::try_from(report.start_ms).unwrap_or(0)).max(0),
        Wanted::Window { .. } => 1_000,
    };
    let thumb = dir.join(format!("{}.jpg", request.clip_id));
    let thumbnail_path =
        match thumbnail(&out, Duration::from_millis(moment_in_clip.unsigned_abs()), &thumb, 640) {
            Ok(_) => thumb.display().to_string(),
            Err(e) => {
                warn!(clip_id = %request.clip_id, error = %e, "no thumbnail");
                String::new()
            }
        };
    let first_picture_at_ms = recording
        .started_at_ms
        .map(|started| started.saturating_add(i64::try_from(report.start_ms).unwrap_or(i64::MAX)));
    let mut note = request.note.clone();
    if let Some(adjusted) = planned.adjusted {
        note = if note.is_empty() { adjusted } else { format!("{note} ({adjusted})") };
    }
    Ok(ClipReady {
        clip_id: request.clip_id.clone(),
        drop_id: request.drop_id.clone(),
        path: out.display().to_string(),
        thumbnail_path,
        vertical_path: String::new(),
        start_ms: i64::try_from(report.start_ms).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(report.duration_ms).unwrap_or(i64::MAX),
        size_bytes: report.size_bytes,
        reason: request.reason,
        at_ms: request.at_ms,
        recording: request.recording.clone(),
        ready_at_ms: now_ms(),
        note,
        angle: request.angle.clone(),
        moment_id: request.moment_id.clone(),
        first_picture_at_ms,
    })
}

/// Makes the vertical variants queued by the worker, one at a time (x264 wants the cores), and
/// announces each as a `ClipReady` with `vertical_path`. Best effort: a crash loses queued variants,
/// never a clip.
async fn vertical_loop(
    mut queue: tokio::sync::mpsc::Receiver<ClipReady>,
    opts: VerticalOptions,
    producer: FutureProducer,
    settings: Settings,
) {
    while let Some(ready) = queue.recv().await {
        let job = tokio::task::spawn_blocking(move || with_vertical(ready, opts));
        let Ok(Some(ready)) = job.await else { continue };
        let drop_id = ready.drop_id.clone();
        let event = ClipEvent { event: Some(clip_event::Event::Ready(ready)) };
        let topic = settings.topics.name(TopicKind::Clips);
        if let Err(e) = publish_raw(&producer, topic, &drop_id, &prost::Message::encode_to_vec(&event)).await
        {
            warn!(error = %e, "cannot publish the vertical variant");
        }
    }
}

/// Makes the 9:16 variant of a ready clip; the clip with `vertical_path` set, or `None` on failure.
fn with_vertical(mut ready: ClipReady, opts: VerticalOptions) -> Option<ClipReady> {
    let clip = PathBuf::from(&ready.path);
    let out = clip.with_extension(format!("{}.mp4", &VERTICAL_SUFFIX[1..]));
    match vertical(&clip, &out, opts) {
        Ok(_) => {
            ready.vertical_path = out.display().to_string();
            ready.ready_at_ms = now_ms();
            Some(ready)
        }
        Err(e) => {
            warn!(clip_id = %ready.clip_id, error = %e, "no vertical variant");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_stay_inside_their_directory() {
        let root = Path::new("/srv/recordings");
        assert_eq!(
            recording_path(root, "stream/today.ts"),
            Ok(PathBuf::from("/srv/recordings/stream/today.ts"))
        );
        for bad in ["", "/etc/passwd", "../secret.mp4", "a/../../b.mp4", "./x.mp4"] {
            assert!(recording_path(root, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_must_be_file_names() {
        assert!(safe_name("clip_id", "clip-1.open_2").is_ok());
        for bad in ["", "..", "a/b", "a b", "x\0"] {
            assert!(safe_name("clip_id", bad).is_err(), "{bad:?}");
        }
        assert!(
            clip_name("marker-1.vertical").is_err_and(|e| e.contains("9:16")),
            "would overwrite marker-1's"
        );
        assert!(clip_name("marker-1.Vertical").is_err());
        assert!(clip_name("marker-1.verticals").is_ok() && clip_name("drop.v2-rush-1").is_ok());
    }
}
