//! What the matcher publishes, built from what the step answered: reservation outcomes addressed to
//! the buyer (channel, display name, claim code) and dead letters for messages it gave up on.

use dropline_core::claim::ClaimSecret;
use dropline_core::{kafka, TopicKind, Topics};
use dropline_proto::v1::ReservationOutcome;
use prost::Message as _;
use rdkafka::message::{Message, OwnedMessage};

use super::publisher::Record;
use crate::step::{OpResult, OutboxEvent, ReplyTo};

pub(crate) const SERVICE: &str = "matcher";

/// Builds the records a decision publishes.
#[derive(Clone)]
pub(crate) struct Outcomes {
    pub topics: Topics,
    /// Key of the orders' claim codes.
    pub claim: ClaimSecret,
}

impl Outcomes {
    /// An outcome of `order_id` with its addressing filled in: the drop it names, where the
    /// answers go and the order's claim code.
    fn addressed(&self, drop_id: &str, order_id: &str, reply_to: &ReplyTo) -> ReservationOutcome {
        ReservationOutcome {
            order_id: order_id.to_owned(),
            drop_id: drop_id.to_owned(),
            buyer_id: reply_to.buyer.clone(),
            channel: reply_to.channel.clone(),
            buyer_name: reply_to.name.clone(),
            origin: reply_to.origin.clone(),
            platform_message_id: reply_to.message_id.clone(),
            claim_code: self.claim.code(drop_id, order_id).to_string(),
            ..Default::default()
        }
    }

    /// The answer to an order or hold action. `reply_to` is the order's own (empty for a hold
    /// action: the one the step kept is used).
    pub fn answer(
        &self,
        drop_id: &str,
        order_id: &str,
        reply_to: &ReplyTo,
        sent_at_ms: i64,
        r: OpResult,
    ) -> ReservationOutcome {
        let kept = if reply_to.buyer.is_empty() { &r.reply_to } else { reply_to };
        ReservationOutcome {
            sku: r.sku,
            quantity: r.quantity,
            status: r.status,
            remaining: r.remaining,
            hold_expires_at_ms: r.hold_expires_at_ms,
            decided_at_ms: r.decided_at_ms,
            reason: r.reason,
            sent_at_ms,
            waitlist_position: r.waitlist_position,
            ..self.addressed(drop_id, order_id, kept)
        }
    }

    /// An outcome the step made on its own (expiry, promotion, close) for drop `drop_id`.
    pub fn event(&self, drop_id: &str, event: OutboxEvent) -> ReservationOutcome {
        ReservationOutcome {
            sku: event.sku,
            quantity: event.quantity,
            status: event.status,
            remaining: event.remaining,
            hold_expires_at_ms: event.hold_expires_at_ms,
            decided_at_ms: event.decided_at_ms,
            reason: event.reason,
            buyer_id: event.buyer_id,
            ..self.addressed(drop_id, &event.order_id, &event.reply_to)
        }
    }

    /// An outcome as a record of the reservations topic, keyed by its drop.
    pub fn record(&self, outcome: &ReservationOutcome) -> Record {
        Record {
            topic: self.topics.name(TopicKind::Reservations).to_owned(),
            key: outcome.drop_id.clone(),
            payload: outcome.encode_to_vec(),
            status: Some(outcome.status),
            received: None,
        }
    }

    /// The dead letter of a consumed message, keyed as it was.
    pub fn dead_letter(&self, msg: &OwnedMessage, reason: &str) -> Record {
        let letter = kafka::dead_letter(msg, reason, SERVICE);
        Record {
            topic: self.topics.name(TopicKind::DeadLetters).to_owned(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            payload: letter.encode_to_vec(),
            status: None,
            received: None,
        }
    }
}
