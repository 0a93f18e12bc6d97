//! The buyer's claim page: `/c/{code}` (the code is the only credential, for that one order; no
//! account) and its API — the claim as JSON, its changes pushed as Server-Sent Events, **Pay**
//! (a checkout link with `client_reference_id=<code>` when the SKU has one; otherwise, where test
//! payments are on — by default when Stripe is not configured — a clearly marked test-mode payment
//! that confirms directly) and **Cancel**
//! (releases the units; the waitlist head is promoted). A wrong or altered code is a 404.

pub mod book;

use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use dropline_core::claim::ClaimCode;
use dropline_core::kafka::{self, now_ms};
use dropline_core::TopicKind;
use dropline_proto::v1::{HoldAction, HoldActionKind, ReservationOutcome, ReservationStatus as S};
use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use self::book::{Claim, ClaimBook};
use crate::drops::{load, DropRecord};
use crate::error::ApiError;
use crate::state::AppState;

/// Fastest push rate of a claim page.
const PUSH_EVERY: Duration = Duration::from_millis(250);

/// The claim book and a version that moves with it (claim pages wait on it).
#[derive(Debug)]
pub struct Claims {
    book: Mutex<ClaimBook>,
    version: watch::Sender<u64>,
}

impl Default for Claims {
    fn default() -> Self {
        Claims { book: Mutex::new(ClaimBook::default()), version: watch::channel(0).0 }
    }
}

impl Claims {
    pub fn add(&self, outcome: &ReservationOutcome) {
        let mut book = self.book();
        if book.add(outcome) {
            let v = book.version();
            drop(book);
            self.version.send_replace(v);
        }
    }

    pub fn book(&self) -> MutexGuard<'_, ClaimBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the buyer can pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayMode {
    /// Through the SKU's checkout link (`pay_url`).
    Checkout,
    /// No checkout link and test payments on: a test payment confirms directly.
    Test,
    /// No checkout link for this SKU and test payments off.
    Unavailable,
}

/// A claim as its page shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimView {
    pub code: String,
    pub drop_id: String,
    pub drop_title: String,
    pub buyer_name: String,
    pub sku: String,
    pub item: String,
    pub size: String,
    pub quantity: u32,
    pub price_cents: i64,
    pub total_cents: i64,
    /// `RESERVED`, `WAITLISTED`, `CONFIRMED`, `EXPIRED`, `RELEASED`, `REFUND_DUE`, `SOLD_OUT`.
    pub status: String,
    pub reason: String,
    /// When the hold lapses (0: no hold).
    pub hold_expires_at_ms: i64,
    /// The server's clock, so the countdown does not depend on the phone's.
    pub now_ms: i64,
    pub ordered_at_ms: i64,
    pub decided_at_ms: i64,
    /// How long the decision took after the order was typed.
    pub decision_ms: i64,
    pub orders_before: u64,
    /// Place on the waitlist now (0 when not waiting).
    pub waitlist_position: u32,
    pub pay: PayMode,
    /// Where Pay goes (checkout mode).
    pub pay_url: Option<String>,
    pub can_pay: bool,
    pub can_cancel: bool,
    pub version: u64,
}

/// `url` with `client_reference_id=<code>` appended.
pub fn checkout_link(url: &str, code: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}client_reference_id={code}")
}

fn view(state: &AppState, record: &DropRecord, claim: &Claim, position: u32) -> ClaimView {
    let item = record.items.iter().find(|i| i.sku == claim.sku);
    let price = item.map_or(0, |i| i.price_cents);
    let checkout = item.map(|i| i.checkout_url.clone()).filter(|u| !u.is_empty());
    let pay = match (&checkout, state.test_payments) {
        (Some(_), _) => PayMode::Checkout,
        (None, true) => PayMode::Test,
        (None, false) => PayMode::Unavailable,
    };
    // Paying after the hold ended is a late payment (the matcher's rule decides), not refused.
    let payable = matches!(claim.status, S::Reserved | S::Expired | S::Released);
    ClaimView {
        code: claim.code.clone(),
        drop_id: claim.drop_id.clone(),
        drop_title: record.title.clone(),
        buyer_name: claim.buyer_name.clone(),
        sku: claim.sku.clone(),
        item: item.map_or_else(
            || claim.sku.clone(),
            |i| if i.product.is_empty() { i.name.clone() } else { i.product.clone() },
        ),
        size: item.map(|i| i.size.clone()).unwrap_or_default(),
        quantity: claim.quantity,
        price_cents: price,
        total_cents: price.saturating_mul(i64::from(claim.quantity)),
        status: claim.status.label().to_owned(),
        reason: claim.reason.clone(),
        hold_expires_at_ms: claim.hold_expires_at_ms,
        now_ms: now_ms(),
        ordered_at_ms: claim.ordered_at_ms,
        decided_at_ms: claim.decided_at_ms,
        decision_ms: (claim.decided_at_ms - claim.ordered_at_ms).max(0),
        orders_before: claim.orders_before,
        waitlist_position: position,
        pay_url: checkout.map(|u| checkout_link(&u, &claim.code)),
        can_pay: payable && pay != PayMode::Unavailable,
        can_cancel: matches!(claim.status, S::Reserved | S::Waitlisted),
        pay,
        version: claim.version,
    }
}

/// The claim of `code` (404 for anything that is not a known code).
fn find(state: &AppState, code: &str) -> Result<(Claim, u32), ApiError> {
    let unknown = || ApiError::not_found("no such claim (check the link)");
    let code = ClaimCode::parse(code).map_err(|_| unknown())?;
    let book = state.claims.book();
    let claim = book.get(code.as_str()).ok_or_else(unknown)?;
    Ok((claim.clone(), book.position(claim)))
}

async fn current(state: &AppState, code: &str) -> Result<ClaimView, ApiError> {
    let (claim, position) = find(state, code)?;
    let record = load(state, &claim.drop_id).await?;
    Ok(view(state, &record, &claim, position))
}

/// The claim page (HTML); 404 page for an unknown code.
pub async fn page(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    match find(&state, &code) {
        Ok(_) => Html(include_str!("../../assets/claim.html")).into_response(),
        Err(_) => {
            (StatusCode::NOT_FOUND, Html(include_str!("../../assets/claim-missing.html"))).into_response()
        }
    }
}

/// A claim.
#[utoipa::path(get, path = "/api/claims/{code}", tag = "claims", params(("code" = String, Path)),
    responses((status = 200, body = ClaimView), (status = 404, description = "no such claim")))]
pub async fn get(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<ClaimView>, ApiError> {
    current(&state, &code).await.map(Json)
}

/// A claim's changes as Server-Sent Events (`claim`), at most four a second.
#[utoipa::path(get, path = "/api/claims/{code}/events", tag = "claims", params(("code" = String, Path)),
    responses((status = 200, description = "text/event-stream of `claim` events", body = ClaimView), (status = 404)))]
pub async fn events(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let first = current(&state, &code).await?;
    let record = load(&state, &first.drop_id).await?;
    let changes = state.claims.version.subscribe();
    // Pushed when the claim itself or its place on the waitlist changed (other claims moving do
    // not wake the page), and every 15 s regardless (the countdown's clock).
    let shown = (first.version, first.waitlist_position);
    let stream = futures::stream::unfold(
        (state, code, record, changes, Some(first), shown),
        |(state, code, record, mut changes, first, mut shown)| async move {
            let view = match first {
                Some(view) => view,
                None => loop {
                    let quiet =
                        tokio::time::timeout(Duration::from_secs(15), changes.changed()).await.is_err();
                    tokio::time::sleep(PUSH_EVERY).await;
                    changes.borrow_and_update();
                    if let Ok((claim, position)) = find(&state, &code) {
                        if quiet || (claim.version, position) != shown {
                            break view(&state, &record, &claim, position);
                        }
                    }
                },
            };
            shown = (view.version, view.waitlist_position);
            let event = Event::default().event("claim").json_data(&view).unwrap_or_default();
            Some((Ok(event), (state, code, record, changes, None, shown)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Publishes the hold action of a claim (after the broker has it).
async fn act(state: &AppState, claim: &Claim, kind: HoldActionKind) -> Result<(), ApiError> {
    let action = HoldAction {
        order_id: claim.order_id.clone(),
        drop_id: claim.drop_id.clone(),
        action: kind as i32,
        sent_at_ms: now_ms(),
    };
    let topic = state.settings.topics.name(TopicKind::HoldActions);
    kafka::publish(&state.producer, topic, &claim.drop_id, &action).await?;
    Ok(())
}

/// A payment arrived for `claim`: confirm its hold.
pub async fn confirm(state: &AppState, claim: &Claim) -> Result<(), ApiError> {
    act(state, claim, HoldActionKind::Confirm).await
}

/// Test-mode payment (no checkout configured): confirms the hold directly.
#[utoipa::path(post, path = "/api/claims/{code}/pay", tag = "claims", params(("code" = String, Path)),
    responses((status = 202), (status = 404), (status = 409, description = "pay through checkout, or nothing to pay")))]
pub async fn pay(State(state): State<AppState>, Path(code): Path<String>) -> Result<StatusCode, ApiError> {
    let (claim, position) = find(&state, &code)?;
    let record = load(&state, &claim.drop_id).await?;
    let v = view(&state, &record, &claim, position);
    if v.pay != PayMode::Test {
        return Err(ApiError::conflict("this drop takes payment through checkout (pay_url), not test mode"));
    }
    if !v.can_pay {
        return Err(ApiError::conflict(format!("nothing to pay: the order is {}", v.status)));
    }
    state.metrics.payments.with_label_values(&["test", "confirmed"]).inc();
    confirm(&state, &claim).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The buyer gives the units back (or leaves the waitlist).
#[utoipa::path(post, path = "/api/claims/{code}/cancel", tag = "claims", params(("code" = String, Path)),
    responses((status = 202), (status = 404), (status = 409, description = "nothing to cancel")))]
pub async fn cancel(State(state): State<AppState>, Path(code): Path<String>) -> Result<StatusCode, ApiError> {
    let (claim, _) = find(&state, &code)?;
    if !matches!(claim.status, S::Reserved | S::Waitlisted) {
        return Err(ApiError::conflict(format!("nothing to cancel: the order is {}", claim.status.label())));
    }
    act(&state, &claim, HoldActionKind::Cancel).await?;
    Ok(StatusCode::ACCEPTED)
}
