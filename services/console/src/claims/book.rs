//! The claim book: every RESERVED or WAITLISTED order, found by its claim code, with where it
//! stands now — folded from `reservations` (replayed from the start, like the live view): its
//! status as later outcomes change it, its live place on the waitlist, and how many orders of the
//! drop were decided before it. Pure: no I/O, unit-tested.

use std::collections::{HashMap, VecDeque};

use dropline_proto::v1::{ReservationOutcome, ReservationStatus as S};

/// One claimable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub code: String,
    pub drop_id: String,
    pub order_id: String,
    pub buyer_name: String,
    pub channel: String,
    pub sku: String,
    pub quantity: u32,
    pub status: S,
    pub reason: String,
    /// When the hold lapses (0 when there is none).
    pub hold_expires_at_ms: i64,
    /// When the buyer typed the order (platform time).
    pub ordered_at_ms: i64,
    /// When it was first decided.
    pub decided_at_ms: i64,
    /// Orders of the drop decided before this one.
    pub orders_before: u64,
    /// Changes with every outcome of the order (pushes go out only when it moved).
    pub version: u64,
}

/// All claims.
#[derive(Debug, Default)]
pub struct ClaimBook {
    claims: HashMap<String, Claim>,
    /// (drop, order) → code.
    by_order: HashMap<(String, String), String>,
    /// Order → codes (for payments that name only the order).
    by_order_id: HashMap<String, Vec<String>>,
    /// First decisions seen per drop.
    decided: HashMap<String, u64>,
    /// (drop, sku) → waitlisted orders, first in line first.
    lines: HashMap<(String, String), VecDeque<String>>,
    version: u64,
}

/// Statuses that are an order's first decision (not a hold's later life).
fn is_first_decision(status: S) -> bool {
    !matches!(status, S::Confirmed | S::Released | S::Expired | S::RefundDue | S::Duplicate | S::Unspecified)
}

impl ClaimBook {
    /// Folds one outcome in; returns whether a claim changed.
    pub fn add(&mut self, o: &ReservationOutcome) -> bool {
        let Ok(status) = S::try_from(o.status) else { return false };
        if status == S::Duplicate {
            return false;
        }
        let key = (o.drop_id.clone(), o.order_id.clone());
        let Some(code) = self.by_order.get(&key).cloned() else {
            if !is_first_decision(status) {
                return false;
            }
            let before = self.decided.entry(o.drop_id.clone()).or_default();
            let orders_before = *before;
            *before += 1;
            if !matches!(status, S::Reserved | S::Waitlisted) || o.claim_code.is_empty() {
                return false;
            }
            self.version += 1;
            let claim = Claim {
                code: o.claim_code.clone(),
                drop_id: o.drop_id.clone(),
                order_id: o.order_id.clone(),
                buyer_name: o.buyer_name.clone(),
                channel: o.channel.clone(),
                sku: o.sku.clone(),
                quantity: o.quantity,
                status,
                reason: o.reason.clone(),
                hold_expires_at_ms: o.hold_expires_at_ms,
                ordered_at_ms: o.sent_at_ms,
                decided_at_ms: o.decided_at_ms,
                orders_before,
                version: self.version,
            };
            if status == S::Waitlisted {
                self.lines
                    .entry((o.drop_id.clone(), o.sku.clone()))
                    .or_default()
                    .push_back(o.order_id.clone());
            }
            self.by_order.insert(key, claim.code.clone());
            self.by_order_id.entry(o.order_id.clone()).or_default().push(claim.code.clone());
            self.claims.insert(claim.code.clone(), claim);
            return true;
        };
        let Some(claim) = self.claims.get_mut(&code) else { return false };
        if claim.status == status
            && claim.reason == o.reason
            && claim.hold_expires_at_ms == o.hold_expires_at_ms
        {
            return false; // the same outcome again
        }
        if claim.status == S::Waitlisted && status != S::Waitlisted {
            if let Some(line) = self.lines.get_mut(&(claim.drop_id.clone(), claim.sku.clone())) {
                line.retain(|id| *id != claim.order_id);
            }
        }
        self.version += 1;
        claim.status = status;
        claim.reason = o.reason.clone();
        if status == S::Reserved {
            claim.hold_expires_at_ms = o.hold_expires_at_ms;
        } else if status != S::Waitlisted {
            claim.hold_expires_at_ms = 0;
        }
        claim.version = self.version;
        true
    }

    /// The claim of `code`.
    pub fn get(&self, code: &str) -> Option<&Claim> {
        self.claims.get(code)
    }

    /// The claim of an order, in `drop_id` when given.
    pub fn of_order(&self, order_id: &str, drop_id: Option<&str>) -> Option<&Claim> {
        self.by_order_id
            .get(order_id)?
            .iter()
            .filter_map(|c| self.claims.get(c))
            .find(|c| drop_id.is_none_or(|d| c.drop_id == d))
    }

    /// A waitlisted claim's place in line now (1 = next), else 0.
    pub fn position(&self, claim: &Claim) -> u32 {
        if claim.status != S::Waitlisted {
            return 0;
        }
        self.lines
            .get(&(claim.drop_id.clone(), claim.sku.clone()))
            .and_then(|line| line.iter().position(|id| *id == claim.order_id))
            .map_or(0, |i| u32::try_from(i + 1).unwrap_or(u32::MAX))
    }

    /// Changes with every change of any claim.
    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(order: &str, status: S, expires: i64) -> ReservationOutcome {
        ReservationOutcome {
            order_id: order.into(),
            drop_id: "d".into(),
            buyer_name: format!("name-{order}"),
            sku: "TEE".into(),
            quantity: 1,
            status: status as i32,
            hold_expires_at_ms: expires,
            decided_at_ms: 10,
            sent_at_ms: 7,
            claim_code: format!("code-{order}"),
            ..Default::default()
        }
    }

    #[test]
    fn claims_follow_their_orders() {
        let mut book = ClaimBook::default();
        assert!(!book.add(&o("x", S::SoldOut, 0)), "a sold-out order has no claim");
        assert!(book.add(&o("a", S::Reserved, 60_000)));
        assert!(book.add(&o("w1", S::Waitlisted, 0)));
        assert!(book.add(&o("w2", S::Waitlisted, 0)));
        let a = book.get("code-a").expect("claim").clone();
        assert_eq!((a.orders_before, a.status, a.hold_expires_at_ms), (1, S::Reserved, 60_000));
        assert_eq!(book.position(book.get("code-w2").unwrap()), 2);
        assert!(!book.add(&o("a", S::Reserved, 60_000)), "a redelivery changes nothing");
        // a's hold expires; w1 is promoted; w2 moves up.
        assert!(book.add(&o("a", S::Expired, 0)));
        assert!(book.add(&o("w1", S::Reserved, 90_000)));
        assert_eq!(book.get("code-a").unwrap().status, S::Expired);
        assert_eq!(book.get("code-w1").unwrap().hold_expires_at_ms, 90_000);
        assert_eq!(book.position(book.get("code-w2").unwrap()), 1);
        assert!(book.add(&o("a", S::RefundDue, 0)), "a late payment's answer");
        assert_eq!(book.of_order("w1", Some("d")).map(|c| c.code.as_str()), Some("code-w1"));
        assert_eq!(book.of_order("w1", Some("other")), None);
        assert!(book.get("code-x").is_none() && book.get("nope").is_none());
    }
}
