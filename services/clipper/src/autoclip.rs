//! Automatic clip requests: watches `drop-triggers` (opens, and each drop's recording) and
//! `reservations` (sell-outs, order rate), and publishes a `ClipRequest` for every moment the
//! [`Detector`] keeps. Clip ids are derived from the moment, so a replay asks for the same clip.
//! Which drop is recorded where is read from `drop-triggers` from its beginning before anything
//! else, so a restarted clipper still knows the recordings of drops opened before it started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dropline_core::admin::Health;
use dropline_core::clips;
use dropline_core::kafka::{self, now_ms, Followed};
use dropline_core::{Settings, TopicKind};
use dropline_proto::v1::{
    drop_trigger, Angle, ClipReason, ClipRequest, DropTrigger, OpenDrop, ReservationOutcome,
    ReservationStatus,
};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::moments::{Detector, Moment, RushRule};
use crate::rules::ClipRules;
use crate::worker::WorkerError;

/// Decisions that count as order activity (hold lifecycle events do not).
const DECISIONS: [ReservationStatus; 7] = [
    ReservationStatus::Reserved,
    ReservationStatus::SoldOut,
    ReservationStatus::LimitExceeded,
    ReservationStatus::Waitlisted,
    ReservationStatus::Duplicate,
    ReservationStatus::UnknownSku,
    ReservationStatus::Invalid,
];

/// The requests for `moment`, one per angle of its drop: the moment id names the moment's kind and
/// time, so a replay asks for the same clips.
pub fn requests_for(moment: &Moment, angles: &[Angle]) -> Vec<ClipRequest> {
    let kind = match moment.reason {
        ClipReason::DropOpened => "open",
        ClipReason::SoldOut => "soldout",
        ClipReason::Rush => "rush",
        ClipReason::Marker => "marker",
        ClipReason::Unspecified => "moment",
    };
    let spec = clips::Moment {
        moment_id: format!("{}-{kind}-{}", moment.drop_id, moment.at_ms),
        drop_id: &moment.drop_id,
        at_ms: moment.at_ms,
        reason: moment.reason,
        note: moment.note.clone(),
        exact: false,
        requested_at_ms: now_ms(),
    };
    clips::requests(&spec, angles)
}

/// Drop → the angles its open named, shared with the follower that reads them from the start.
pub type Recordings = Arc<Mutex<HashMap<String, Vec<Angle>>>>;

/// Remembers the angles `open` names for `drop_id` (a reopen naming none keeps what was known).
fn remember(recordings: &Recordings, drop_id: &str, open: &OpenDrop) {
    let angles = clips::angles_of(open);
    if !angles.is_empty() {
        recordings.lock().unwrap_or_else(PoisonError::into_inner).insert(drop_id.to_owned(), angles);
    }
}

/// What the watcher makes of each event it reads, free of I/O: moments from the [`Detector`],
/// and the clip requests of a moment, one per angle of its drop.
#[derive(Debug)]
pub struct Watcher {
    detector: Detector,
    recordings: Recordings,
}

impl Watcher {
    pub fn new(rules: ClipRules, recordings: Recordings) -> Self {
        Watcher { detector: Detector::new(rules, RushRule::default()), recordings }
    }

    /// An open remembers the drop's recording and is a moment; other triggers are not.
    pub fn trigger(&mut self, trigger: DropTrigger) -> Option<Moment> {
        let DropTrigger { drop_id, sent_at_ms, action: Some(drop_trigger::Action::Open(open)), .. } = trigger
        else {
            return None;
        };
        remember(&self.recordings, &drop_id, &open);
        let at = if sent_at_ms > 0 { sent_at_ms } else { now_ms() };
        self.detector.opened(&drop_id, at)
    }

    /// A decision counts towards a rush, and a RESERVED of the last unit is a sell-out.
    pub fn outcome(&mut self, o: &ReservationOutcome) -> Option<Moment> {
        let status = ReservationStatus::try_from(o.status).unwrap_or(ReservationStatus::Unspecified);
        if !DECISIONS.contains(&status) {
            return None;
        }
        let sold_out = (status == ReservationStatus::Reserved && o.remaining == 0).then_some(o.sku.as_str());
        self.detector.decided(&o.drop_id, o.decided_at_ms, sold_out)
    }

    /// The clip requests of `moment`, one per angle; none if its drop names no recording.
    pub fn requests(&self, moment: &Moment) -> Vec<ClipRequest> {
        let recordings = self.recordings.lock().unwrap_or_else(PoisonError::into_inner);
        recordings.get(&moment.drop_id).map(|angles| requests_for(moment, angles)).unwrap_or_default()
    }
}

/// Runs until `shutdown`: consumes in group `group`, publishes to `clip-requests`.
pub async fn run(
    settings: Settings,
    group: String,
    rules: ClipRules,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let producer = kafka::producer(&settings, "dropline-clipper-moments")?;
    let consumer = kafka::consumer(&settings, "dropline-clipper-moments", &group)?;
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    let reservations = settings.topics.name(TopicKind::Reservations).to_owned();
    consumer.subscribe(&[&triggers, &reservations])?;
    let requests = settings.topics.name(TopicKind::ClipRequests).to_owned();
    // Drop → recording, from every open trigger since the topic's beginning (the group's offsets
    // start after the opens a restarted clipper already handled).
    let recordings: Recordings = Arc::default();
    let mut watcher = Watcher::new(rules, recordings.clone());
    let (known_tx, mut known) = tokio::sync::watch::channel(false);
    let follower = {
        let (recordings, settings, triggers, stop) =
            (recordings.clone(), settings.clone(), triggers.clone(), shutdown.clone());
        tokio::spawn(async move {
            let health = Health::default();
            kafka::follow_from_start(
                &settings,
                "dropline-clipper-recordings",
                &triggers,
                &health,
                "recordings",
                &stop,
                |f: Followed<DropTrigger>| match f {
                    Followed::Message { event: Ok(trigger), .. } => {
                        if let Some(drop_trigger::Action::Open(open)) = trigger.action {
                            remember(&recordings, &trigger.drop_id, &open);
                        }
                    }
                    Followed::Message { event: Err(_), .. } => {}
                    Followed::CaughtUp => {
                        let _ = known_tx.send(true);
                    }
                },
            )
            .await;
        })
    };
    let caught_up = tokio::select! {
        known = known.wait_for(|done| *done) => known.is_ok(),
        () = shutdown.cancelled() => false,
    };
    if !caught_up {
        follower.abort();
        return Ok(());
    }
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let moment = if message.topic() == triggers {
            // Undecodable triggers say nothing here (the matcher dead-letters them).
            kafka::decode::<DropTrigger, _>(&message).ok().and_then(|t| watcher.trigger(t))
        } else {
            kafka::decode::<ReservationOutcome, _>(&message).ok().and_then(|o| watcher.outcome(&o))
        };
        if let Some(moment) = moment {
            let wanted = watcher.requests(&moment);
            if wanted.is_empty() {
                info!(drop_id = %moment.drop_id, note = %moment.note, "moment without a recording: no clip");
            }
            for request in wanted {
                info!(drop_id = %moment.drop_id, clip_id = %request.clip_id, angle = %request.angle, note = %moment.note, "moment: clip requested");
                while let Err(e) = kafka::publish(&producer, &requests, &moment.drop_id, &request).await {
                    warn!(error = %e, "cannot request the clip; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
        if let Err(e) = consumer.store_offset(message.topic(), message.partition(), message.offset() + 1) {
            warn!(error = %e, "cannot store offset");
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            warn!(error = %e, "commit failed");
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    consumer.unsubscribe();
    follower.abort();
    Ok(())
}
