//! One drop's event log folded into what its report needs (pure): the catalog and restocks from
//! `drop-triggers`, chat lines seen from `chat-activity`, orders from `chat-orders`, every
//! order's life from `reservations`. Folding is idempotent — an outcome the matcher republished,
//! a trigger sent twice, an order re-sent all change nothing the second time — and independent of
//! how the topics interleave (time series are bucketed by the events' own timestamps), so a
//! console that replays the log after a restart arrives at the same numbers.

use crate::drops::canonical_sku;
use std::collections::{BTreeMap, HashMap};

use dropline_proto::v1::{
    drop_trigger, ChatActivity, ChatOrder, DropTrigger, ReservationOutcome, ReservationStatus,
};

/// Width of a time-series bucket, ms.
pub const BUCKET_MS: i64 = 1_000;

/// A SKU as the drop's open trigger listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub price_cents: i64,
    pub opening_stock: u32,
}

/// What became of one order, from its outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLife {
    pub buyer_id: String,
    pub buyer_name: String,
    pub channel: String,
    pub sku: String,
    pub quantity: u32,
    /// The first decision (`RESERVED`, `WAITLISTED`, `SOLD_OUT`, …).
    pub first: ReservationStatus,
    pub decided_at_ms: i64,
    /// Statuses seen (bit = status number): republished outcomes are recognised by it.
    seen: u32,
    /// When it was paid (the first `CONFIRMED`).
    pub paid_at_ms: Option<i64>,
}

impl OrderLife {
    pub fn had(&self, status: ReservationStatus) -> bool {
        self.seen & bit(status) != 0
    }

    /// A hold was made: reserved at once, or promoted from the waitlist.
    pub fn held(&self) -> bool {
        self.had(ReservationStatus::Reserved)
    }

    /// Its hold has ended (paid, cancelled, lapsed or refused late).
    pub fn ended(&self) -> bool {
        [
            ReservationStatus::Confirmed,
            ReservationStatus::Released,
            ReservationStatus::Expired,
            ReservationStatus::RefundDue,
        ]
        .into_iter()
        .any(|s| self.had(s))
    }

    pub fn promoted(&self) -> bool {
        self.first == ReservationStatus::Waitlisted && self.held()
    }

    /// Paid after its hold had lapsed or been cancelled (the units were still there).
    pub fn paid_late(&self) -> bool {
        self.had(ReservationStatus::Confirmed)
            && (self.had(ReservationStatus::Expired) || self.had(ReservationStatus::Released))
    }

    /// Still waiting for a unit.
    pub fn waiting(&self) -> bool {
        self.first == ReservationStatus::Waitlisted
            && !self.held()
            && !self.had(ReservationStatus::SoldOut)
            && !self.ended()
    }
}

fn bit(status: ReservationStatus) -> u32 {
    1u32 << (status as i32).clamp(0, 31)
}

/// The statuses that are an order's first decision (the rest are its hold's later life, or the
/// answer to a repeat).
fn is_decision(status: ReservationStatus) -> bool {
    use ReservationStatus as S;
    matches!(
        status,
        S::Reserved
            | S::SoldOut
            | S::LimitExceeded
            | S::DropNotOpen
            | S::UnknownSku
            | S::Invalid
            | S::Waitlisted
    )
}

/// A drop's log, folded.
#[derive(Debug, Default)]
pub struct DropLog {
    pub opened_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    /// Channels of the open trigger; the first is the drop's home (its creator's channel).
    pub channels: Vec<String>,
    pub title: String,
    /// SKU (upper case, as the matcher keys it) → how it was listed, in catalog order.
    pub listed: Vec<(String, Listed)>,
    /// Restocks by trigger id: (sent at, SKU, units).
    pub restocks: BTreeMap<String, (i64, String, u32)>,
    /// Chat lines seen per channel (from `chat-activity`).
    pub chat: BTreeMap<String, u64>,
    /// Order id → channel, from `chat-orders` (every order ingest took, decided or not).
    pub chat_orders: HashMap<String, String>,
    /// Order id → its life, from `reservations`.
    pub orders: HashMap<String, OrderLife>,
    /// Outcomes by status, each (order, status) once.
    pub outcomes: BTreeMap<String, u64>,
    /// Per SKU: bucket start (ms) → change of the units for sale in it (restocks included).
    pub stock_moves: BTreeMap<String, BTreeMap<i64, i64>>,
    /// Bucket start (ms) → orders decided in it.
    pub decided_per_bucket: BTreeMap<i64, u64>,
    /// SKU → when the matcher first said none was left.
    pub sold_out_at_ms: BTreeMap<String, i64>,
    /// `OpenDrop`'s trigger was seen (a drop whose open is not in the log has no catalog here).
    pub open_seen: bool,
}

fn bucket(at_ms: i64) -> i64 {
    at_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

impl DropLog {
    /// The price a SKU (canonical) was listed at; 0 for a SKU the open did not list.
    pub fn price_of(&self, sku: &str) -> i64 {
        self.listed.iter().find(|(k, _)| k == sku).map_or(0, |(_, l)| l.price_cents)
    }

    fn move_stock(&mut self, sku: &str, at_ms: i64, units: i64) {
        *self.stock_moves.entry(canonical_sku(sku)).or_default().entry(bucket(at_ms)).or_default() += units;
    }

    pub fn trigger(&mut self, trigger: &DropTrigger) {
        match &trigger.action {
            Some(drop_trigger::Action::Open(open)) => {
                if self.open_seen {
                    return; // the same drop opened twice is the first open (the matcher's rule)
                }
                self.open_seen = true;
                self.opened_at_ms = Some(trigger.sent_at_ms);
                self.title = open.title.clone();
                self.channels = open.channels.iter().map(|c| c.trim().to_lowercase()).collect();
                for item in &open.items {
                    let key = canonical_sku(&item.sku);
                    if self.listed.iter().any(|(k, _)| *k == key) {
                        continue;
                    }
                    self.listed.push((
                        key.clone(),
                        Listed {
                            name: item.name.clone(),
                            price_cents: item.price_cents,
                            opening_stock: item.stock,
                        },
                    ));
                    self.move_stock(&key, trigger.sent_at_ms, i64::from(item.stock));
                }
            }
            Some(drop_trigger::Action::Restock(restock)) => {
                let id = if trigger.trigger_id.is_empty() {
                    format!("{}:{}:{}", trigger.sent_at_ms, restock.sku, restock.quantity)
                } else {
                    trigger.trigger_id.clone()
                };
                if self.restocks.contains_key(&id) || self.closed_at_ms.is_some() {
                    return;
                }
                self.restocks.insert(id, (trigger.sent_at_ms, canonical_sku(&restock.sku), restock.quantity));
                self.move_stock(&restock.sku, trigger.sent_at_ms, i64::from(restock.quantity));
            }
            Some(drop_trigger::Action::Close(_)) => {
                self.closed_at_ms.get_or_insert(trigger.sent_at_ms);
            }
            None => {}
        }
    }

    pub fn activity(&mut self, activity: &ChatActivity) {
        *self.chat.entry(activity.channel.to_lowercase()).or_default() += activity.lines;
    }

    pub fn chat_order(&mut self, order: &ChatOrder) {
        self.chat_orders.entry(order.order_id.clone()).or_insert_with(|| order.channel.to_lowercase());
    }

    pub fn outcome(&mut self, outcome: &ReservationOutcome) {
        let status = ReservationStatus::try_from(outcome.status).unwrap_or(ReservationStatus::Unspecified);
        let q = i64::from(outcome.quantity);
        let at = outcome.decided_at_ms;
        let life = match self.orders.get_mut(&outcome.order_id) {
            Some(life) if life.had(status) => return, // republished
            Some(life) => life,
            None if is_decision(status) => {
                let life = OrderLife {
                    buyer_id: outcome.buyer_id.clone(),
                    buyer_name: outcome.buyer_name.clone(),
                    channel: outcome.channel.to_lowercase(),
                    sku: canonical_sku(&outcome.sku),
                    quantity: outcome.quantity,
                    first: status,
                    decided_at_ms: at,
                    seen: 0,
                    paid_at_ms: None,
                };
                *self.decided_per_bucket.entry(bucket(at)).or_default() += 1;
                self.orders.entry(outcome.order_id.clone()).or_insert(life)
            }
            None => {
                // A repeat's answer, or the later life of an order decided before the log began.
                *self.outcomes.entry(status.label().to_owned()).or_default() += 1;
                return;
            }
        };
        let was_held = life.held() && !life.ended();
        life.seen |= bit(status);
        *self.outcomes.entry(status.label().to_owned()).or_default() += 1;
        let sku = life.sku.clone();
        let units = match status {
            ReservationStatus::Reserved => -q,
            // A payment on time turns held units into sold ones; a late one takes units for sale.
            ReservationStatus::Confirmed => {
                life.paid_at_ms.get_or_insert(at);
                if was_held {
                    0
                } else {
                    -q
                }
            }
            ReservationStatus::Released | ReservationStatus::Expired if was_held => q,
            _ => 0,
        };
        if units != 0 {
            self.move_stock(&sku, at, units);
        }
        let none_left = matches!(status, ReservationStatus::Reserved | ReservationStatus::SoldOut)
            && outcome.remaining <= 0
            && !sku.is_empty();
        if none_left {
            self.sold_out_at_ms.entry(sku).or_insert(at);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dropline_proto::v1::{CatalogItem, OpenDrop, Restock};
    use ReservationStatus as S;

    pub(crate) fn open(at: i64, items: &[(&str, u32, i64)]) -> DropTrigger {
        DropTrigger {
            drop_id: "d".into(),
            sent_at_ms: at,
            trigger_id: "open-d".into(),
            action: Some(drop_trigger::Action::Open(OpenDrop {
                title: "Drop".into(),
                channels: vec!["twitch:#home".into(), "twitch:#friend".into()],
                items: items
                    .iter()
                    .map(|(sku, stock, price)| CatalogItem {
                        sku: (*sku).into(),
                        name: sku.to_lowercase(),
                        stock: *stock,
                        price_cents: *price,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
        }
    }

    pub(crate) fn outcome(
        order: &str,
        status: S,
        sku: &str,
        q: u32,
        remaining: i64,
        at: i64,
    ) -> ReservationOutcome {
        ReservationOutcome {
            order_id: order.into(),
            drop_id: "d".into(),
            buyer_id: format!("b-{order}"),
            sku: sku.into(),
            quantity: q,
            status: status as i32,
            remaining,
            decided_at_ms: at,
            channel: "twitch:#home".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_orders_life_moves_stock_once_however_often_it_is_published() {
        let mut log = DropLog::default();
        log.trigger(&open(1_000, &[("TEE", 2, 2_500)]));
        let events = [
            outcome("a", S::Reserved, "TEE", 1, 1, 1_100),
            outcome("b", S::Reserved, "TEE", 1, 0, 1_200),
            outcome("c", S::Waitlisted, "TEE", 1, 0, 1_300),
            outcome("a", S::Confirmed, "TEE", 1, 0, 2_100),
            outcome("b", S::Expired, "TEE", 1, 1, 3_100),
            outcome("c", S::Reserved, "TEE", 1, 0, 3_100),
            outcome("b", S::RefundDue, "TEE", 1, 0, 3_500), // paid late, the unit went to c
            outcome("e", S::SoldOut, "TEE", 1, 0, 3_600),   // nothing left
        ];
        for e in &events {
            log.outcome(e);
        }
        for e in &events {
            log.outcome(e); // republished after a restart of the matcher
        }
        let left: i64 = log.stock_moves["TEE"].values().sum();
        assert_eq!(left, 0, "2 on sale: a paid, b's lapsed unit went to c");
        assert_eq!(log.outcomes["RESERVED"], 3);
        assert_eq!(log.outcomes["SOLD_OUT"], 1);
        assert_eq!(log.outcomes["CONFIRMED"], 1);
        assert_eq!(log.outcomes["REFUND_DUE"], 1);
        assert!(log.orders["c"].promoted());
        assert!(log.orders["b"].ended() && !log.orders["b"].paid_late());
        assert!(!log.orders["c"].waiting());
        assert_eq!(log.sold_out_at_ms["TEE"], 1_200);
        assert_eq!(log.decided_per_bucket[&1_000], 3);
    }

    #[test]
    fn triggers_count_once_and_restocks_after_the_close_do_not_count() {
        let mut log = DropLog::default();
        log.trigger(&open(1_000, &[("tee", 5, 100)]));
        log.trigger(&open(9_000, &[("TEE", 50, 100)]));
        let restock = DropTrigger {
            drop_id: "d".into(),
            sent_at_ms: 2_000,
            trigger_id: "r1".into(),
            action: Some(drop_trigger::Action::Restock(Restock { sku: "TEE".into(), quantity: 3 })),
        };
        log.trigger(&restock);
        log.trigger(&restock);
        log.outcome(&outcome("a", S::Reserved, "TEE", 2, 6, 2_500));
        log.outcome(&outcome("a", S::Expired, "TEE", 2, 8, 3_000));
        log.outcome(&outcome("a", S::Confirmed, "TEE", 2, 6, 3_200)); // late, the units still there
        assert!(log.orders["a"].paid_late());
        log.trigger(&DropTrigger {
            action: Some(drop_trigger::Action::Close(Default::default())),
            ..restock.clone()
        });
        log.trigger(&DropTrigger { trigger_id: "r2".into(), ..restock });
        assert_eq!(log.opened_at_ms, Some(1_000));
        assert_eq!(log.closed_at_ms, Some(2_000));
        assert_eq!(log.stock_moves["TEE"].values().sum::<i64>(), 8 - 2 + 2 - 2);
        assert_eq!(log.listed[0].0, "TEE", "the matcher's key for a SKU is upper case");
    }
}
