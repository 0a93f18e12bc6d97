//! The live view: every `ReservationOutcome` on `reservations` (replayed from the start, so a
//! restarted console knows past drops) folded into per-drop numbers — outcomes by status and
//! channel, decisions per second, decision latency, sell-out times, the last outcomes — pushed to
//! browsers over Server-Sent Events at most ten times a second, however fast outcomes arrive.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use dropline_core::kafka::{self, Followed};
use dropline_core::TopicKind;
use dropline_proto::v1::{ReservationOutcome, ReservationStatus};
use futures::Stream;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::drops::{load, read_state, DropState};
use crate::error::ApiError;
use crate::state::AppState;

/// Fastest push rate of the live view.
pub const PUSH_EVERY: Duration = Duration::from_millis(100);
/// Outcomes kept for the scrolling list.
const RECENT: usize = 20;
/// Window of the decisions-per-second figure.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// One outcome as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OutcomeView {
    pub order_id: String,
    pub buyer_id: String,
    /// The buyer's display name.
    pub buyer_name: String,
    pub sku: String,
    pub quantity: u32,
    pub status: String,
    pub reason: String,
    pub decided_at_ms: i64,
}

/// Per-drop numbers folded from its outcomes.
#[derive(Debug)]
pub struct DropStats {
    pub by_status: BTreeMap<String, u64>,
    /// SKU → decision time of the first outcome that left it with nothing for sale.
    pub sold_out_at_ms: BTreeMap<String, i64>,
    pub first_decision_ms: Option<i64>,
    latency_ms: Histogram<u64>,
    recent: VecDeque<OutcomeView>,
    /// When outcomes arrived here (for the rate).
    arrivals: VecDeque<Instant>,
}

impl DropStats {
    fn new() -> Self {
        DropStats {
            by_status: BTreeMap::new(),
            sold_out_at_ms: BTreeMap::new(),
            first_decision_ms: None,
            latency_ms: Histogram::new_with_bounds(1, 3_600_000, 2)
                .expect("1 ms to 1 h at 2 digits is a valid histogram"),
            recent: VecDeque::with_capacity(RECENT),
            arrivals: VecDeque::new(),
        }
    }

    fn add(&mut self, outcome: &ReservationOutcome, now: Instant, replayed: bool) {
        let status = ReservationStatus::try_from(outcome.status).unwrap_or(ReservationStatus::Unspecified);
        let name = status.label().to_owned();
        *self.by_status.entry(name.clone()).or_default() += 1;
        let is_order = !matches!(
            status,
            ReservationStatus::Confirmed | ReservationStatus::Released | ReservationStatus::Expired
        );
        let leaves_none = matches!(status, ReservationStatus::Reserved | ReservationStatus::SoldOut)
            && outcome.remaining <= 0
            && !outcome.sku.is_empty();
        if leaves_none {
            self.sold_out_at_ms.entry(outcome.sku.clone()).or_insert(outcome.decided_at_ms);
        }
        if self.first_decision_ms.is_none_or(|first| outcome.decided_at_ms < first)
            && outcome.decided_at_ms > 0
        {
            self.first_decision_ms = Some(outcome.decided_at_ms);
        }
        if outcome.sent_at_ms > 0 && outcome.decided_at_ms >= outcome.sent_at_ms && is_order {
            let _ = self
                .latency_ms
                .record(u64::try_from(outcome.decided_at_ms - outcome.sent_at_ms).unwrap_or(0).max(1));
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(OutcomeView {
            order_id: outcome.order_id.clone(),
            buyer_id: outcome.buyer_id.clone(),
            buyer_name: outcome.buyer_name.clone(),
            sku: outcome.sku.clone(),
            quantity: outcome.quantity,
            status: name,
            reason: outcome.reason.clone(),
            decided_at_ms: outcome.decided_at_ms,
        });
        if !replayed {
            self.arrivals.push_back(now);
        }
        while self.arrivals.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
            self.arrivals.pop_front();
        }
    }

    fn rate(&self, now: Instant) -> f64 {
        let recent = self.arrivals.iter().filter(|t| now.duration_since(**t) <= RATE_WINDOW).count();
        recent as f64 / RATE_WINDOW.as_secs_f64()
    }
}

/// All drops' numbers, and a version that changes with every outcome.
#[derive(Debug)]
pub struct Live {
    drops: Mutex<HashMap<String, DropStats>>,
    version: watch::Sender<u64>,
}

impl Default for Live {
    fn default() -> Self {
        Live { drops: Mutex::new(HashMap::new()), version: watch::channel(0).0 }
    }
}

impl Live {
    pub fn add(&self, outcome: &ReservationOutcome, replayed: bool) {
        let mut drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        drops.entry(outcome.drop_id.clone()).or_insert_with(DropStats::new).add(
            outcome,
            Instant::now(),
            replayed,
        );
        drop(drops);
        self.version.send_modify(|v| *v += 1);
    }

    /// A receiver that sees every new outcome (as a changed version).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Runs `f` on the drop's numbers (fresh ones if nothing was decided yet).
    pub fn with<R>(&self, drop_id: &str, f: impl FnOnce(&DropStats) -> R) -> R {
        let drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        match drops.get(drop_id) {
            Some(stats) => f(stats),
            None => f(&DropStats::new()),
        }
    }
}

/// Folds `reservations` into `live` until `shutdown` (from the beginning, outside any group).
pub async fn follow(state: AppState, shutdown: CancellationToken) {
    let topic = state.settings.topics.name(TopicKind::Reservations);
    let health = &state.health;
    kafka::follow_from_start(
        &state.settings,
        "dropline-console-live",
        topic,
        health,
        "reservations",
        &shutdown,
        |f| match f {
            Followed::Message { event: Ok(outcome), replayed } => {
                state.metrics.outcomes.inc();
                state.live.add(&outcome, replayed);
                state.ledger.outcome(&outcome);
                state.claims.add(&outcome);
            }
            Followed::Message { event: Err(e), .. } => warn!(error = %e, "undecodable outcome skipped"),
            Followed::CaughtUp => state.ledger.caught_up(TopicKind::Reservations),
        },
    )
    .await;
}

/// What the live page shows, pushed as one SSE `snapshot` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Snapshot {
    #[serde(flatten)]
    pub state: DropState,
    /// Decisions per second over the last 5 s.
    pub rate_per_s: f64,
    /// Chat-to-decision latency of this drop's orders, ms.
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    pub by_status: BTreeMap<String, u64>,
    /// How long each sold-out SKU took to sell out from the open, ms.
    pub sold_out_after_ms: BTreeMap<String, i64>,
    /// Newest last.
    pub recent: Vec<OutcomeView>,
}

pub async fn snapshot(state: &AppState, drop_id: &str) -> Result<Snapshot, ApiError> {
    state.metrics.snapshots.inc();
    let record = load(state, drop_id).await?;
    let opened = record.opened_at_ms;
    let drop_state = read_state(state, record).await?;
    let now = Instant::now();
    Ok(state.live.with(drop_id, |stats| Snapshot {
        state: drop_state,
        rate_per_s: stats.rate(now),
        latency_p50_ms: stats.latency_ms.value_at_quantile(0.5),
        latency_p99_ms: stats.latency_ms.value_at_quantile(0.99),
        by_status: stats.by_status.clone(),
        sold_out_after_ms: stats
            .sold_out_at_ms
            .iter()
            .map(|(sku, at)| (sku.clone(), at - opened.or(stats.first_decision_ms).unwrap_or(*at)))
            .collect(),
        recent: stats.recent.iter().cloned().collect(),
    }))
}

/// The drop's live numbers as Server-Sent Events: a `snapshot` at once, then one at most every
/// 100 ms while outcomes arrive (and a keep-alive comment otherwise).
#[utoipa::path(get, path = "/api/drops/{id}/live", tag = "live", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream of `snapshot` events", body = Snapshot), (status = 403)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // The last outcomes name buyers: the producers' and creators' view, not the editors'.
    caller.require(&[crate::auth::Role::Producer, crate::auth::Role::Creator], "watch the live view")?;
    load(&state, &id).await?; // 404 before the stream starts
    snapshots(state, id, "snapshot", |s| s)
}

/// A drop's snapshots as SSE events named `name` (mapped by `view`): the latest at once, then
/// each new one — built once per tick for every stream of the drop (`streams`) — and a keep-alive
/// comment otherwise. 503 when the console has as many streams open as it takes.
pub fn snapshots<T: Serialize + Send + 'static>(
    state: AppState,
    id: String,
    name: &'static str,
    view: fn(Snapshot) -> T,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.streams.admit()?;
    let latest = state.streams.subscribe(&state, &id);
    let clients = state.metrics.sse_clients.clone();
    clients.inc();
    struct Guard(prometheus::IntGauge, #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let guard = Guard(clients, permit);
    let events =
        futures::stream::unfold((latest, true, guard), move |(mut latest, first, guard)| async move {
            // The first event is whatever is there now (or the first snapshot built); then each new one.
            if !(first && latest.borrow().is_some()) {
                loop {
                    latest.changed().await.ok()?;
                    if latest.borrow_and_update().is_some() {
                        break;
                    }
                }
            }
            let current = latest.borrow_and_update().clone()?;
            let event = match current.as_ref() {
                Ok(snapshot) => Event::default()
                    .event(name)
                    .json_data(view(snapshot.clone()))
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string())),
                Err(message) => Event::default().event("error").data(message.clone()),
            };
            Some((Ok(event), (latest, false, guard)))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: ReservationStatus, sku: &str, remaining: i64, decided: i64) -> ReservationOutcome {
        ReservationOutcome {
            order_id: format!("o-{decided}"),
            drop_id: "d".into(),
            buyer_id: "b".into(),
            sku: sku.into(),
            quantity: 1,
            status: status as i32,
            remaining,
            decided_at_ms: decided,
            sent_at_ms: decided - 3,
            channel: "twitch:#c".into(),
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_fold_into_numbers() {
        let mut stats = DropStats::new();
        let now = Instant::now();
        stats.add(&outcome(ReservationStatus::Reserved, "TEE", 1, 1_000), now, false);
        stats.add(&outcome(ReservationStatus::Reserved, "TEE", 0, 1_500), now, false);
        stats.add(&outcome(ReservationStatus::SoldOut, "TEE", 0, 1_600), now, true);
        stats.add(&outcome(ReservationStatus::Confirmed, "TEE", 0, 2_000), now, false);
        assert_eq!(stats.by_status["RESERVED"], 2);
        assert_eq!(stats.by_status["SOLD_OUT"], 1);
        assert_eq!(stats.sold_out_at_ms["TEE"], 1_500);
        assert_eq!(stats.first_decision_ms, Some(1_000));
        assert_eq!(stats.latency_ms.value_at_quantile(0.5), 3);
        assert!((stats.rate(now) - 3.0 / 5.0).abs() < 1e-9, "replayed outcomes do not count as now");
        assert_eq!(stats.recent.len(), 4);
    }
}
