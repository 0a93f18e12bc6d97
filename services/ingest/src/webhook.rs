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
/// How long a webhook request waits for the broker to take its order before answering 503: a
/// platform gives up on a slow endpoint and sends again anyway; the producer keeps trying for
/// longer (`message.timeout.ms`).
pub const WEBHOOK_WAIT: Duration = Duration::from_secs(10);

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

/// A chat message of a `channel.chat.message` notification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChatEvent {
    /// The channel's login (without `#`).
    pub broadcaster_user_login: String,
    /// The chatter's stable user id.
    pub chatter_user_id: String,
    /// The chatter's login.
    pub chatter_user_login: String,
    /// The chatter's display name.
    #[serde(default)]
    pub chatter_user_name: Option<String>,
    /// The platform's id of the message (the order id).
    pub message_id: String,
    /// What was typed.
    pub message: ChatText,
}

/// The text of a chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChatText {
    /// The line as typed.
    pub text: String,
}

/// Why a request was refused: the status, a metric label and the message the sender reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// The `reason` label of `dropline_ingest_webhook_rejected_total`.
    pub reason: &'static str,
    /// What the sender is told.
    pub message: String,
}

fn refuse(status: StatusCode, reason: &'static str, message: String) -> Refusal {
    Refusal { status, reason, message }
}

/// The headers a signed request carries.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `Twitch-Eventsub-Message-Id`.
    pub id: &'a str,
    /// `Twitch-Eventsub-Message-Timestamp` (RFC 3339).
    pub timestamp: &'a str,
    /// `Twitch-Eventsub-Message-Signature` (`sha256=<hex>`).
    pub signature: &'a str,
}

/// Checks a request's signature and age (pure: `now` is given). `Ok` is the time it was sent.
pub fn verify(
    secret: &[u8],
    signed: Signed<'_>,
    body: &[u8],
    now: std::time::SystemTime,
) -> Result<std::time::SystemTime, Refusal> {
    let Some(given) = signed.signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_signature_format",
            format!("{SIGNATURE} must be sha256=<hex>"),
        ));
    };
    if mac(secret, signed.id, signed.timestamp, body).verify_slice(&given).is_err() {
        return Err(refuse(StatusCode::FORBIDDEN, "bad_signature", "signature does not match".into()));
    }
    let Ok(sent) = humantime::parse_rfc3339_weak(signed.timestamp.trim_end_matches('Z')) else {
        let message = format!("{TIMESTAMP} is not an RFC 3339 time: {:?}", signed.timestamp);
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_timestamp", message));
    };
    let skew = match now.duration_since(sent) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_AGE {
        let message =
            format!("message timestamp {} is more than 10 minutes from now (replay?)", signed.timestamp);
        return Err(refuse(StatusCode::FORBIDDEN, "stale", message));
    }
    Ok(sent)
}

/// What a verified request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Subscription verification: answer the challenge.
    Challenge(String),
    /// A chat message.
    Chat(ChatEvent),
    /// Revocations and other subscriptions: nothing to do.
    Ignored,
}

/// Reads a verified request's body (`kind`: the `Twitch-Eventsub-Message-Type` header). Pure.
pub fn notification(kind: Option<&str>, body: &[u8]) -> Result<Notification, Refusal> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_body", format!("invalid body: {e}")))?;
    match kind {
        Some("webhook_callback_verification") => {
            return envelope.challenge.map(Notification::Challenge).ok_or_else(|| {
                refuse(StatusCode::BAD_REQUEST, "bad_body", "verification without challenge".into())
            });
        }
        Some("revocation") => return Ok(Notification::Ignored),
        _ => {}
    }
    if envelope.subscription.kind != "channel.chat.message" {
        return Ok(Notification::Ignored);
    }
    envelope
        .event
        .map(Notification::Chat)
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "bad_body", "notification without event".into()))
}

fn reject(state: &WebhookState, refusal: Refusal) -> Response {
    state.pipeline.metrics.webhook_rejected.with_label_values(&[refusal.reason]).inc();
    (refusal.status, refusal.message).into_response()
}

async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.pipeline.ready() {
        // Which drop a line belongs to is not known yet: taking it now would lose it.
        let message = "catching up with drop-triggers: the live drops are not known yet; retry".into();
        return reject(&state, refuse(StatusCode::SERVICE_UNAVAILABLE, "catching_up", message));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(id), Some(timestamp), Some(signature)) = (header(ID), header(TIMESTAMP), header(SIGNATURE))
    else {
        let message = format!("missing header: {ID}, {TIMESTAMP} and {SIGNATURE} are required");
        return reject(&state, refuse(StatusCode::BAD_REQUEST, "missing_header", message));
    };
    let signed = Signed { id, timestamp, signature };
    let sent = match verify(state.secret.expose(), signed, &body, std::time::SystemTime::now()) {
        Ok(sent) => sent,
        Err(refusal) => return reject(&state, refusal),
    };
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
    let event = match notification(header(KIND), &body) {
        Ok(Notification::Chat(event)) => event,
        Ok(Notification::Challenge(challenge)) => {
            return (StatusCode::OK, [("content-type", "text/plain")], challenge).into_response();
        }
        Ok(Notification::Ignored) => return StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => return reject(&state, refusal),
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
    let refused = match tokio::time::timeout(WEBHOOK_WAIT, state.pipeline.handle("webhook", line)).await {
        Ok(Ok(_)) => return StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => format!("cannot publish the order, retry: {e}"),
        Err(_) => format!("the broker has not taken the order within {WEBHOOK_WAIT:?}, retry"),
    };
    // Sent again, it is taken again; if the first copy reaches the broker after all, the matcher
    // answers the second as a replay of the same order id.
    forget(&state);
    (StatusCode::SERVICE_UNAVAILABLE, refused).into_response()
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
