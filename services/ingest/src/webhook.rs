//! `POST /ingest/chat`: chat pushed by a platform, EventSub style. Every request is verified with
//! HMAC-SHA256 over message id + timestamp + raw body (`Twitch-Eventsub-Message-Signature:
//! sha256=<hex>`); messages older (or newer) than 10 minutes are refused as replays. A
//! `channel.chat.message` notification becomes a chat line; the answer comes after the broker took
//! the order, so a failure makes the platform retry (the order id deduplicates the retry).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::route::{ChatLine, Origin};
use crate::service::Pipeline;

const ID: &str = "twitch-eventsub-message-id";
const TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
const SIGNATURE: &str = "twitch-eventsub-message-signature";
const KIND: &str = "twitch-eventsub-message-type";

/// Messages whose timestamp is further than this from now are refused.
pub const MAX_AGE: Duration = Duration::from_secs(600);

#[derive(Clone)]
struct WebhookState {
    secret: Arc<dropline_core::secret::Secret>,
    pipeline: Pipeline,
    seen: Arc<std::sync::Mutex<Seen>>,
}

/// Most message ids remembered (the oldest are forgotten first; ten minutes of 300 messages a
/// second).
const REMEMBERED: usize = 200_000;

/// Message ids taken within the replay window: a signed request sent again — by the platform
/// (it retries) or by someone who captured it — is answered 2xx and published once. Pure;
/// per process (ingest runs as one replica; a restart forgets, and the matcher still decides an
/// order id once).
#[derive(Debug, Default)]
pub struct Seen {
    at: std::collections::HashMap<String, std::time::Instant>,
    order: std::collections::VecDeque<(std::time::Instant, String)>,
}

impl Seen {
    /// Takes `id` at `now` unless it was taken within `window`; `false` for a repeat.
    pub fn take(&mut self, id: &str, now: std::time::Instant, window: std::time::Duration) -> bool {
        while let Some((at, old)) = self.order.front() {
            if now.duration_since(*at) <= window && self.order.len() < REMEMBERED {
                break;
            }
            if self.at.get(old) == Some(at) {
                self.at.remove(old);
            }
            self.order.pop_front();
        }
        if self.at.contains_key(id) {
            return false;
        }
        self.at.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }

    /// Forgets `id` (its order could not be published: the platform's retry must get through).
    pub fn forget(&mut self, id: &str) {
        self.at.remove(id);
    }
}

/// The webhook route, verifying with `secret`.
pub fn router(secret: dropline_core::secret::Secret, pipeline: Pipeline) -> Router {
    Router::new().route("/ingest/chat", post(receive)).with_state(WebhookState {
        secret: Arc::new(secret),
        pipeline,
        seen: Arc::default(),
    })
}

/// `sha256=<hex>` of HMAC-SHA256(secret, id ‖ timestamp ‖ body): what a sender puts in the
/// signature header.
pub fn sign(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, id, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(timestamp.as_bytes());
    mac.update(body);
    mac
}

#[derive(Debug, serde::Deserialize)]
struct Envelope {
    subscription: Subscription,
    #[serde(default)]
    challenge: Option<String>,
    #[serde(default)]
    event: Option<ChatEvent>,
}

#[derive(Debug, serde::Deserialize)]
struct Subscription {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, serde::Deserialize)]
struct ChatEvent {
    broadcaster_user_login: String,
    chatter_user_id: String,
    chatter_user_login: String,
    #[serde(default)]
    chatter_user_name: Option<String>,
    message_id: String,
    message: ChatText,
}

#[derive(Debug, serde::Deserialize)]
struct ChatText {
    text: String,
}

fn reject(state: &WebhookState, status: StatusCode, reason: &'static str, message: String) -> Response {
    state.pipeline.metrics.webhook_rejected.with_label_values(&[reason]).inc();
    (status, message).into_response()
}

async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.pipeline.ready() {
        // Which drop a line belongs to is not known yet: taking it now would lose it.
        return reject(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "catching_up",
            "catching up with drop-triggers: the live drops are not known yet; retry".into(),
        );
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(id), Some(timestamp), Some(signature)) = (header(ID), header(TIMESTAMP), header(SIGNATURE))
    else {
        let message = format!("missing header: {ID}, {TIMESTAMP} and {SIGNATURE} are required");
        return reject(&state, StatusCode::BAD_REQUEST, "missing_header", message);
    };
    let Some(given) = signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        let message = format!("{SIGNATURE} must be sha256=<hex>");
        return reject(&state, StatusCode::BAD_REQUEST, "bad_signature_format", message);
    };
    if mac(state.secret.expose(), id, timestamp, &body).verify_slice(&given).is_err() {
        return reject(&state, StatusCode::FORBIDDEN, "bad_signature", "signature does not match".into());
    }
    let Ok(sent) = humantime::parse_rfc3339_weak(timestamp.trim_end_matches('Z')) else {
        let message = format!("{TIMESTAMP} is not an RFC 3339 time: {timestamp:?}");
        return reject(&state, StatusCode::BAD_REQUEST, "bad_timestamp", message);
    };
    let now = std::time::SystemTime::now();
    let skew = match now.duration_since(sent) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_AGE {
        let message = format!("message timestamp {timestamp} is more than 10 minutes from now (replay?)");
        return reject(&state, StatusCode::FORBIDDEN, "stale", message);
    }
    // A message id is taken once within the window the timestamp check allows (+ the clock skew
    // it tolerates): a replay of a captured request changes nothing.
    let fresh = state.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(
        id,
        std::time::Instant::now(),
        MAX_AGE * 2,
    );
    if !fresh {
        state.pipeline.metrics.webhook_rejected.with_label_values(&["repeat"]).inc();
        return StatusCode::NO_CONTENT.into_response();
    }
    let forget = |state: &WebhookState| {
        state.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).forget(id)
    };
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(e) => return reject(&state, StatusCode::BAD_REQUEST, "bad_body", format!("invalid body: {e}")),
    };
    match header(KIND) {
        Some("webhook_callback_verification") => {
            let Some(challenge) = envelope.challenge else {
                return reject(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "verification without challenge".into(),
                );
            };
            return (StatusCode::OK, [("content-type", "text/plain")], challenge).into_response();
        }
        Some("revocation") => return StatusCode::NO_CONTENT.into_response(),
        _ => {}
    }
    if envelope.subscription.kind != "channel.chat.message" {
        return StatusCode::NO_CONTENT.into_response(); // other subscriptions: nothing to do
    }
    let Some(event) = envelope.event else {
        return reject(&state, StatusCode::BAD_REQUEST, "bad_body", "notification without event".into());
    };
    let sent_at_ms =
        sent.duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_millis()).ok());
    let line = ChatLine {
        origin: Origin::Webhook,
        network: state.pipeline.network.clone(),
        channel: format!("#{}", event.broadcaster_user_login),
        message_id: Some(event.message_id),
        user_id: Some(event.chatter_user_id),
        nick: event.chatter_user_login,
        display_name: event.chatter_user_name,
        text: event.message.text,
        sent_at_ms,
    };
    match state.pipeline.handle("webhook", line).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            forget(&state);
            (StatusCode::SERVICE_UNAVAILABLE, format!("cannot publish the order, retry: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_message_id_is_taken_once_within_the_window() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(1_200);
        assert!(seen.take("a", t0, window));
        assert!(!seen.take("a", t0 + Duration::from_secs(600), window), "a replay");
        assert!(seen.take("b", t0, window));
        seen.forget("b");
        assert!(seen.take("b", t0 + Duration::from_secs(1), window), "forgotten after a failed publish");
        assert!(
            seen.take("a", t0 + Duration::from_secs(1_300), window),
            "outside the window the timestamp check refuses it"
        );
        assert!(seen.at.len() <= 2);
    }
}
