//! The promises checked from the outcomes alone: no outcome ever leaves negative stock (each
//! carries the stock left, computed atomically with the decision: this is the oversell check on
//! the way), one decision per order, and at the end, with every outcome in, no SKU with more units
//! out than were put on sale and no buyer over the limit. (Outcomes of expiring holds come from
//! the sweeper, a second publisher, so a later reservation of the returned unit can arrive first;
//! running sums are only meaningful once everything has arrived.) An outcome delivered again,
//! byte for byte (a matcher restarted before committing republishes what it had decided), is a
//! redelivery, not a second decision. Pure.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use dropline_proto::v1::{ReservationOutcome, ReservationStatus as S};
use prost::Message as _;

/// What the checker needs to know about the drops.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Units per SKU at the open (no restocks during load).
    pub stock: u32,
    /// 0 = no limit.
    pub limit_per_buyer: u32,
}

/// Running state of the checks.
#[derive(Debug, Default)]
pub struct Checker {
    rules: Option<Rules>,
    /// (drop, sku) → units reserved or paid now.
    out: HashMap<(String, String), i64>,
    /// (drop, buyer) → units held, paid or waitlisted now.
    buyer: HashMap<(String, String), i64>,
    /// Orders with their first decision.
    decided: HashSet<String>,
    /// Orders waiting on a waitlist (their promotion is a second RESERVED).
    waiting: HashSet<String>,
    /// Orders with an active hold (to be confirmed, cancelled or expired), and when it lapses.
    holding: HashMap<String, i64>,
    /// Orders whose hold or place in line ended by expiry or release.
    ended: HashSet<String>,
    /// Buyer of each reserved or waitlisted order (later outcomes of a hold may not name them).
    buyer_of: HashMap<String, String>,
    /// Fingerprints of every outcome seen (redeliveries repeat one exactly).
    seen: HashSet<u64>,
    /// Statuses each order got, in arrival order (named in violations).
    history: HashMap<String, Vec<S>>,
    redelivered: u64,
    violations: Vec<String>,
}

/// What one outcome was to the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// The order's first decision.
    First,
    /// A later outcome of the order (its hold's life, a duplicate's answer).
    Later,
    /// The same outcome again, byte for byte: nothing new.
    Redelivered,
}

/// Whether a status is an order's first decision (not a hold's later life).
pub fn is_decision(status: S) -> bool {
    !matches!(status, S::Confirmed | S::Released | S::Expired | S::RefundDue | S::Duplicate | S::Unspecified)
}

impl Checker {
    pub fn new(rules: Rules) -> Self {
        Checker { rules: Some(rules), ..Checker::default() }
    }

    /// Folds one outcome in.
    pub fn add(&mut self, o: &ReservationOutcome) -> Fold {
        let mut hasher = DefaultHasher::new();
        o.encode_to_vec().hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            self.redelivered += 1;
            return Fold::Redelivered;
        }
        let status = S::try_from(o.status).unwrap_or(S::Unspecified);
        self.history.entry(o.order_id.clone()).or_default().push(status);
        let qty = i64::from(o.quantity);
        let sku_key = (o.drop_id.clone(), o.sku.clone());
        let buyer = match status {
            S::Reserved | S::Waitlisted if !o.buyer_id.is_empty() => {
                self.buyer_of.entry(o.order_id.clone()).or_insert_with(|| o.buyer_id.clone()).clone()
            }
            _ => self.buyer_of.get(&o.order_id).cloned().unwrap_or_else(|| o.buyer_id.clone()),
        };
        let buyer_key = (o.drop_id.clone(), buyer.clone());
        if o.remaining < 0 {
            self.violate(format!(
                "{}: {} left stock of {} at {}",
                o.order_id,
                status.label(),
                o.sku,
                o.remaining
            ));
        }
        let mut first = false;
        match status {
            S::Reserved if self.waiting.remove(&o.order_id) => {
                // Promotion from the waitlist: units go out; the buyer's count already had them.
                *self.out.entry(sku_key.clone()).or_default() += qty;
                self.holding.insert(o.order_id.clone(), o.hold_expires_at_ms);
            }
            S::Reserved => {
                first = self.first(&o.order_id);
                *self.out.entry(sku_key.clone()).or_default() += qty;
                *self.buyer.entry(buyer_key.clone()).or_default() += qty;
                self.holding.insert(o.order_id.clone(), o.hold_expires_at_ms);
            }
            S::Waitlisted => {
                first = self.first(&o.order_id);
                *self.buyer.entry(buyer_key.clone()).or_default() += qty;
                self.waiting.insert(o.order_id.clone());
            }
            // The answer to a payment or cancel that came after the hold had already ended (the
            // matcher was down meanwhile): it repeats that the hold is over, nothing moves.
            S::Released | S::Expired
                if self.ended.contains(&o.order_id)
                    && !self.holding.contains_key(&o.order_id)
                    && !self.waiting.contains(&o.order_id) => {}
            S::Released | S::Expired => {
                self.ended.insert(o.order_id.clone());
                if self.holding.remove(&o.order_id).is_some() {
                    *self.out.entry(sku_key.clone()).or_default() -= qty;
                } else if !self.waiting.remove(&o.order_id) {
                    self.violate(format!(
                        "{}: {} without a hold or a place in line ({})",
                        o.order_id,
                        status.label(),
                        self.story(&o.order_id)
                    ));
                }
                *self.buyer.entry(buyer_key.clone()).or_default() -= qty;
            }
            // Paid after the hold ended, with units still in stock: they go out again (late payment).
            S::Confirmed if self.ended.remove(&o.order_id) && !self.holding.contains_key(&o.order_id) => {
                *self.out.entry(sku_key.clone()).or_default() += qty;
                *self.buyer.entry(buyer_key.clone()).or_default() += qty;
            }
            // Paid after the hold ended with nothing left: a refund is due, nothing moves.
            S::RefundDue => {}
            S::Confirmed => {
                if self.holding.remove(&o.order_id).is_none() {
                    self.violate(format!(
                        "{}: CONFIRMED without an active hold ({})",
                        o.order_id,
                        self.story(&o.order_id)
                    ));
                }
            }
            S::Duplicate | S::Unspecified => {}
            _ => first = self.first(&o.order_id),
        }
        if first {
            Fold::First
        } else {
            Fold::Later
        }
    }

    fn first(&mut self, order_id: &str) -> bool {
        if self.decided.insert(order_id.to_owned()) {
            true
        } else {
            self.violate(format!("{order_id}: decided twice ({})", self.story(order_id)));
            false
        }
    }

    /// The statuses an order got so far, e.g. `RESERVED → CONFIRMED`.
    fn story(&self, order_id: &str) -> String {
        let statuses = self.history.get(order_id).map(Vec::as_slice).unwrap_or_default();
        statuses.iter().map(|s| s.label()).collect::<Vec<_>>().join(" → ")
    }

    fn violate(&mut self, what: String) {
        if self.violations.len() < 1000 {
            self.violations.push(what);
        }
    }

    /// The end-of-run checks: with every outcome in, units out per SKU and per buyer.
    pub fn finish(&mut self) {
        let Some(rules) = self.rules.clone() else { return };
        let mut found = Vec::new();
        for ((drop_id, sku), out) in &self.out {
            if *out > i64::from(rules.stock) || *out < 0 {
                found.push(format!("oversold: {drop_id} {sku} has {out} units out of {}", rules.stock));
            }
        }
        if rules.limit_per_buyer > 0 {
            for ((drop_id, buyer), held) in &self.buyer {
                if *held > i64::from(rules.limit_per_buyer) {
                    found.push(format!(
                        "limit broken: {buyer} has {held} units of {drop_id} (limit {})",
                        rules.limit_per_buyer
                    ));
                }
            }
        }
        found.sort();
        for what in found {
            self.violate(what);
        }
    }

    /// Outcomes that arrived more than once (identical).
    pub fn redelivered(&self) -> u64 {
        self.redelivered
    }

    /// Holds neither paid, cancelled nor expired yet.
    pub fn open_holds(&self) -> usize {
        self.holding.len()
    }

    /// Orders waiting in line (waitlisted, neither promoted nor gone).
    pub fn in_line(&self) -> usize {
        self.waiting.len()
    }

    /// Holds still open more than `grace_ms` after they should have lapsed: the sweeper did not
    /// end them. (A hold that is merely open may be a fresh promotion from the waitlist: after the
    /// load, every unpaid hold that expires hands its unit to the next buyer in line.)
    pub fn overdue_holds(&self, now_ms: i64, grace_ms: i64) -> usize {
        self.holding.values().filter(|expires| **expires + grace_ms < now_ms).count()
    }

    /// Orders decided so far.
    pub fn decided(&self) -> usize {
        self.decided.len()
    }

    pub fn is_decided(&self, order_id: &str) -> bool {
        self.decided.contains(order_id)
    }

    /// Adds a violation found elsewhere (missing answers, Redis state).
    pub fn report(&mut self, what: String) {
        self.violate(what);
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

/// How long no outcome may arrive before "no hold is open" is believed: a hold's EXPIRED (or
/// RELEASED) and the promotion it causes come from one atomic call and are published one after
/// the other, so for a moment after the first the checker sees no hold open although the next
/// buyer's is on its way.
pub const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the wait after the load for every hold to end is over: no hold open and nothing heard
/// for [`SETTLE_QUIET`], or every open hold overdue (stuck: waiting longer changes nothing).
pub fn holds_settled(open: usize, overdue: usize, quiet: std::time::Duration) -> bool {
    (open == 0 && quiet >= SETTLE_QUIET) || (open > 0 && overdue == open)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the test's holds lapse.
    const HOLD: i64 = 60_000;

    fn o(id: &str, buyer: &str, status: S, qty: u32, remaining: i64) -> ReservationOutcome {
        ReservationOutcome {
            order_id: id.into(),
            drop_id: "d".into(),
            buyer_id: buyer.into(),
            sku: "TEE".into(),
            quantity: qty,
            status: status as i32,
            remaining,
            hold_expires_at_ms: if status == S::Reserved { HOLD } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn a_fair_drop_has_no_violations() {
        let mut c = Checker::new(Rules { stock: 2, limit_per_buyer: 2 });
        // A returned unit reserved again before the expiry that returned it arrives: fine.
        c.add(&o("0", "x", S::Reserved, 1, 1));
        c.add(&o("0", "x", S::Expired, 1, 2));
        assert_eq!(c.add(&o("1", "a", S::Reserved, 1, 1)), Fold::First);
        assert_eq!(c.add(&o("2", "b", S::Reserved, 1, 0)), Fold::First);
        assert_eq!(c.add(&o("3", "c", S::Waitlisted, 1, 0)), Fold::First);
        assert_eq!(c.add(&o("2", "b", S::Duplicate, 1, 0)), Fold::Later);
        // A matcher restarted before its commit publishes the same decision again.
        assert_eq!(c.add(&o("2", "b", S::Reserved, 1, 0)), Fold::Redelivered);
        assert_eq!(c.add(&o("1", "", S::Expired, 1, 1)), Fold::Later); // may not name the buyer
        assert_eq!(c.add(&o("5", "a", S::Reserved, 1, 0)), Fold::First); // a's unit came back
        assert_eq!(c.add(&o("5", "", S::Released, 1, 1)), Fold::Later);
        assert_eq!(c.add(&o("3", "c", S::Reserved, 1, 0)), Fold::Later); // promoted
        assert_eq!(c.open_holds(), 2);
        assert_eq!(c.overdue_holds(0, 15_000), 0);
        assert_eq!(c.overdue_holds(HOLD + 15_001, 15_000), 2, "both lapse at {HOLD}");
        assert_eq!(c.add(&o("3", "c", S::Confirmed, 1, 0)), Fold::Later);
        assert_eq!(c.add(&o("4", "a", S::SoldOut, 1, 0)), Fold::First);
        assert_eq!(c.add(&o("2", "", S::Expired, 1, 1)), Fold::Later);
        assert_eq!(c.open_holds(), 0);
        // A payment that arrived after the hold expired: a refund when nothing is left ...
        assert_eq!(c.add(&o("2", "", S::RefundDue, 1, 0)), Fold::Later);
        // ... and a sale when the unit is still there (it goes out again).
        assert_eq!(c.add(&o("1", "", S::Confirmed, 1, 0)), Fold::Later);
        c.finish();
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert_eq!(c.decided(), 6);
        assert_eq!(c.redelivered(), 1);
    }

    #[test]
    fn overselling_double_decisions_and_broken_limits_are_caught() {
        let mut c = Checker::new(Rules { stock: 1, limit_per_buyer: 1 });
        c.add(&o("1", "a", S::Reserved, 1, 0));
        c.add(&o("2", "b", S::Reserved, 1, -1));
        c.add(&o("1", "a", S::SoldOut, 1, 0)); // a different answer is no redelivery
        c.add(&o("3", "b", S::Waitlisted, 1, 0));
        c.add(&o("9", "z", S::Confirmed, 1, 0));
        c.finish();
        let all = c.violations().join("\n");
        for needle in ["oversold", "left stock", "decided twice", "limit broken", "without an active hold"] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }

    /// The fault suite's "1 hold neither paid, cancelled nor expired … after the load" with a
    /// hold due in the future: the wait ended the moment the last hold expired, before the
    /// promotion that expiry made arrived (from the same call, one message later).
    #[test]
    fn the_last_expiry_is_not_the_end_while_its_promotion_may_follow() {
        use std::time::Duration;
        assert!(
            !holds_settled(0, 0, Duration::from_millis(50)),
            "an expiry just arrived: its promotion may follow"
        );
        assert!(holds_settled(0, 0, SETTLE_QUIET), "quiet for long enough: settled");
        assert!(!holds_settled(2, 1, SETTLE_QUIET), "one hold still within its window");
        assert!(holds_settled(2, 2, Duration::ZERO), "every open hold overdue: stuck, stop waiting");
    }
}
