//! `POST /webhooks/stripe`: payments from Stripe Checkout (Payment Links) confirm holds.
//!
//! The `Stripe-Signature` header is checked exactly as Stripe documents it: `t=<unix seconds>`
//! and one or more `v1=<hex>`; the signed payload is `"{t}.{raw body}"`, HMAC-SHA256 with the
//! endpoint secret (`DROPLINE_STRIPE_WEBHOOK_SECRET`), compared in constant time against every
//! `v1`; timestamps more than 300 s away are refused. Only then is the JSON read.
//! `checkout.session.completed` with `payment_status: "paid"` and
//! `checkout.session.async_payment_succeeded` find the order by the claim code in
//! `client_reference_id` (or by `metadata.order_id`), check `amount_total` against price ×
//! quantity, and publish the `HoldAction` confirm; the answer is 2xx only after the broker has it
//! (so Stripe retries otherwise). An event id seen before changes nothing.
//!
//! Answers: 400 bad signature, timestamp or body; 404 no such order (yet: the console may still
//! be catching up, Stripe retries); 503 broker or Redis unavailable (Stripe retries); 200 with
//! `confirmed`, `duplicate` or `ignored` (why: another event type, unpaid, wrong amount — a wrong
//! amount is logged and counted for a person to look at, never confirmed).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dropline_core::claim::ClaimCode;
use dropline_core::kafka::now_ms;
use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use tracing::{info, warn};

use crate::drops::{load, records_key};
use crate::error::ApiError;
use crate::state::AppState;

/// Stripe's default tolerance for the signature timestamp.
pub const TOLERANCE_S: i64 = 300;
/// How long a handled event id is remembered (Stripe retries for up to three days).
const SEEN_TTL_S: i64 = 30 * 86_400;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("Stripe-Signature has no t=<timestamp>")]
    NoTimestamp,
    #[error("Stripe-Signature has no v1=<signature>")]
    NoSignature,
    #[error("no v1 signature matches the payload (wrong secret, or the body was changed)")]
    Mismatch,
    #[error("timestamp {age} s away from now: more than the {TOLERANCE_S} s tolerance")]
    OutsideTolerance { age: i64 },
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a `Stripe-Signature` header for `body` at `now_s`.
pub fn verify(header: &str, body: &[u8], secret: &[u8], now_s: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.trim()),
            Some(("v1", v)) => signatures.extend(hex::decode(v.trim()).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::NoTimestamp)?;
    let at: i64 = timestamp.parse().map_err(|_| SignatureError::NoTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let expected = mac(secret, timestamp, body);
    // `verify_slice` compares in constant time; every v1 is tried (Stripe sends several while a
    // secret is being rolled).
    if !signatures.iter().any(|s| expected.clone().verify_slice(s).is_ok()) {
        return Err(SignatureError::Mismatch);
    }
    let age = (now_s - at).abs();
    if age > TOLERANCE_S {
        return Err(SignatureError::OutsideTolerance { age });
    }
    Ok(())
}

/// The header Stripe would send for `body` at `timestamp` (what its test helpers build).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t},v1={}", hex::encode(mac(secret, &t, body).finalize().into_bytes()))
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Session,
}

/// The fields of a Checkout Session that matter here.
#[derive(Debug, Deserialize)]
struct Session {
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn seen_key(state: &AppState, event_id: &str) -> String {
    format!("{}:stripe-events:{event_id}", records_key(state))
}

pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let count = |result: &str| state.metrics.payments.with_label_values(&["stripe", result]).inc();
    let Some(secret) = state.stripe_secret.as_deref() else {
        count("refused");
        return ApiError::not_found("Stripe payments are not set up (DROPLINE_STRIPE_WEBHOOK_SECRET)")
            .into_response();
    };
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let checked = if header.is_empty() {
        Err(SignatureError::Missing)
    } else {
        verify(header, &body, secret, now_ms() / 1000)
    };
    if let Err(e) = checked {
        count("refused");
        return ApiError::bad_request(format!("Stripe-Signature: {e}")).into_response();
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            count("refused");
            return ApiError::bad_request(format!("body: not a Stripe event: {e}")).into_response();
        }
    };
    let session = &event.data.object;
    match (event.kind.as_str(), session.payment_status.as_deref()) {
        ("checkout.session.completed", Some("paid")) | ("checkout.session.async_payment_succeeded", _) => {}
        ("checkout.session.completed", other) => {
            count("ignored");
            let why = format!("payment_status {other:?}: the hold is confirmed when the payment succeeds");
            return answer(StatusCode::OK, json!({ "ignored": why }));
        }
        (kind, _) => {
            count("ignored");
            return answer(
                StatusCode::OK,
                json!({ "ignored": format!("event type {kind} is not a payment") }),
            );
        }
    }
    let mut redis = state.redis.clone();
    match redis.exists::<_, bool>(seen_key(&state, &event.id)).await {
        Ok(true) => {
            count("duplicate");
            return answer(StatusCode::OK, json!({ "duplicate": event.id }));
        }
        Ok(false) => {}
        Err(e) => return ApiError::unavailable(format!("redis: {e}")).into_response(),
    }
    let claim = {
        let reference = session.client_reference_id.as_deref().and_then(|r| ClaimCode::parse(r).ok());
        let book = state.claims.book();
        match (&reference, session.metadata.get("order_id")) {
            (Some(code), _) => book.get(code.as_str()).cloned(),
            (None, Some(order)) => {
                book.of_order(order, session.metadata.get("drop_id").map(String::as_str)).cloned()
            }
            (None, None) => None,
        }
    };
    let Some(claim) = claim else {
        count("unknown_order");
        let named = session.client_reference_id.clone().or_else(|| session.metadata.get("order_id").cloned());
        return ApiError::not_found(format!(
            "client_reference_id / metadata.order_id: no order for {named:?} (yet); Stripe will retry"
        ))
        .into_response();
    };
    let record = match load(&state, &claim.drop_id).await {
        Ok(record) => record,
        Err(e) => return e.into_response(),
    };
    let price = record.items.iter().find(|i| i.sku == claim.sku).map_or(0, |i| i.price_cents);
    let due = price.saturating_mul(i64::from(claim.quantity));
    if session.amount_total != Some(due) {
        count("amount_mismatch");
        warn!(event = %event.id, order_id = %claim.order_id, paid = ?session.amount_total, due, "payment amount does not match; not confirmed");
        let why =
            format!("amount_total {:?} is not price × quantity = {due}: not confirmed", session.amount_total);
        return answer(StatusCode::OK, json!({ "ignored": why }));
    }
    if let Err(e) = crate::claims::confirm(&state, &claim).await {
        return e.into_response();
    }
    let _: Result<(), _> = redis.set_ex(seen_key(&state, &event.id), now_ms(), SEEN_TTL_S as u64).await;
    count("confirmed");
    info!(event = %event.id, order_id = %claim.order_id, drop_id = %claim.drop_id, "payment confirms the hold");
    answer(StatusCode::OK, json!({ "confirmed": claim.order_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_0123456789";

    #[test]
    fn signatures_as_stripe_makes_them() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(SECRET, 1_800_000_000, body);
        assert_eq!(verify(&header, body, SECRET, 1_800_000_100), Ok(()));
        // Several v1 (a secret being rolled): any one matching is enough.
        let rolled = format!("t=1800000000,v1={},{}", "00".repeat(32), header.split_once(',').unwrap().1);
        assert_eq!(verify(&rolled, body, SECRET, 1_800_000_000), Ok(()));
        assert_eq!(
            verify(&header, br#"{"id":"evt_2"}"#, SECRET, 1_800_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&header, body, b"whsec_other", 1_800_000_000), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(&header, body, SECRET, 1_800_000_301),
            Err(SignatureError::OutsideTolerance { age: 301 })
        );
        assert_eq!(verify("v1=abcd", body, SECRET, 0), Err(SignatureError::NoTimestamp));
        assert_eq!(verify("t=5", body, SECRET, 5), Err(SignatureError::NoSignature));
        assert_eq!(verify("t=5,v0=abcd", body, SECRET, 5), Err(SignatureError::NoSignature));
        // The timestamp is part of what is signed: changing it breaks the signature.
        let moved = header.replace("t=1800000000", "t=1800000001");
        assert_eq!(verify(&moved, body, SECRET, 1_800_000_001), Err(SignatureError::Mismatch));
    }
}
