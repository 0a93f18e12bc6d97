//! The model's `dropline_apply`, one operation at a time: replays by source offset, orders and
//! their decisions.

use super::*;

impl Model {
    pub(super) fn apply_one(&mut self, now: i64, op: &Op) -> OpResult {
        let source = source_of(op);
        let last = self.offsets.get(&source.stream).copied().unwrap_or(-1);
        let replay = source.offset <= last;
        let r = match op {
            Op::Order { order_id, buyer, item, verdict, reply_to, .. } => {
                if replay {
                    self.replay_order(now, source, order_id)
                } else {
                    let (sku, qty) = item.as_ref().map_or(("", 0), |(s, q)| (s.as_str(), q.get()));
                    let (pre, why) =
                        verdict.as_ref().map_or((0, String::new()), |(s, r)| (*s as i32, clean(r)));
                    let r = self.decide_order(now, source, order_id, buyer.as_str(), sku, qty, pre, &why);
                    if r.status == RESERVED || r.status == WAITLISTED {
                        self.reply_to.insert(order_id.clone(), reply_to.encode());
                    }
                    r
                }
            }
            Op::Confirm { order_id, .. } | Op::Cancel { order_id, .. } => {
                if replay {
                    self.replay_hold_action(now, source, order_id)
                } else {
                    self.hold_action(now, source, order_id, matches!(op, Op::Confirm { .. }))
                }
            }
            Op::Open { trigger_id: id, .. }
            | Op::Restock { trigger_id: id, .. }
            | Op::Close { trigger_id: id, .. } => {
                if replay || self.triggers.contains_key(id) {
                    result(DUPLICATE, "", 0, 0, 0, now, &format!("trigger {id} was already applied"))
                } else {
                    let r = match op {
                        Op::Open {
                            stock, limit_per_buyer, hold_ms, waitlist, waitlist_cap, catalog, ..
                        } => {
                            let settings = DropSettings {
                                limit: *limit_per_buyer,
                                hold_ms: *hold_ms,
                                waitlist: *waitlist,
                                cap: *waitlist_cap,
                            };
                            let stock: Vec<(&str, u32)> =
                                stock.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                            self.open_drop(now, &stock, settings, catalog)
                        }
                        Op::Restock { sku, quantity, .. } => self.restock(now, sku.as_str(), *quantity),
                        _ => self.close_drop(now),
                    };
                    self.triggers
                        .insert(id.clone(), TriggerRecord { status: r.status, source: source.clone() });
                    r
                }
            }
        };
        if !replay {
            self.offsets.insert(source.stream.clone(), source.offset);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_order(
        &mut self,
        now: i64,
        source: &Source,
        id: &str,
        buyer: &str,
        sku: &str,
        qty: u32,
        pre: i32,
        why: &str,
    ) -> OpResult {
        if let Some(prev) = self.decisions.get(id) {
            let reason = format!("order {id} was already decided: {}", status_name(prev.status));
            return result(DUPLICATE, &prev.sku, prev.quantity, self.stock(&prev.sku), 0, now, &reason);
        }
        let (status, remaining, expires, reason) = if self.state != DropState::Open {
            let reason =
                if self.state == DropState::Closed { "the drop is closed" } else { "the drop is not open" };
            (DROP_NOT_OPEN, 0, 0, reason.to_owned())
        } else if pre != 0 {
            (pre, 0, 0, why.to_owned())
        } else if !self.stock.contains_key(sku) {
            (UNKNOWN_SKU, 0, 0, format!("no SKU {sku} in this drop"))
        } else {
            self.decide_available(now, id, buyer, sku, qty)
        };
        let position = if status == WAITLISTED { u32::try_from(self.waiting(sku)).unwrap_or(0) } else { 0 };
        self.decisions.insert(
            id.to_owned(),
            Decision {
                status,
                sku: sku.to_owned(),
                quantity: qty,
                remaining,
                hold_expires_at_ms: expires,
                decided_at_ms: now,
                source: source.clone(),
                reason: reason.clone(),
                waitlist_position: position,
                buyer: buyer.to_owned(),
            },
        );
        bump(&mut self.stats, status_name(status), 1);
        OpResult { waitlist_position: position, ..result(status, sku, qty, remaining, expires, now, &reason) }
    }

    /// The open-drop, known-SKU part of a decision: limit, reservation, waitlist or sold out.
    /// Returns (status, remaining, hold expiry, reason).
    pub(super) fn decide_available(
        &mut self,
        now: i64,
        id: &str,
        buyer: &str,
        sku: &str,
        qty: u32,
    ) -> (i32, i64, i64, String) {
        // While anyone waits for the SKU, stock goes to the line first (within this call's
        // promotions); when the promotions ran out before the line did, a new order waits behind
        // it. (A head that wants more than is left does not hold back units others can take.)
        let mut waiting = self.waiting(sku);
        let mut behind = false;
        if waiting > 0 {
            self.promote(now, sku);
            waiting = self.waiting(sku);
            behind = waiting > 0 && self.promote_left == 0 && self.stock(sku) > 0;
        }
        let avail = self.stock(sku);
        let have = self.buyer_units(buyer);
        let limit = i64::from(self.settings.limit);
        if limit > 0 && have + i64::from(qty) > limit {
            let reason = format!("the limit is {limit} per buyer and you already have {have}");
            return (LIMIT_EXCEEDED, avail, 0, reason);
        }
        if !behind && avail >= i64::from(qty) {
            bump(&mut self.buyers, buyer.to_owned(), i64::from(qty));
            let (remaining, expires) = self.reserve(now, id, buyer, sku, qty);
            return (RESERVED, remaining, expires, String::new());
        }
        let cap = i64::from(self.settings.cap);
        if self.settings.waitlist && (cap == 0 || waiting < cap) {
            self.wl_seq += 1;
            let member = format!("{sku}{SEP}{:012}{SEP}{id}", self.wl_seq);
            self.waitlist.insert(member.clone());
            let entry = WaitEntry { sku: sku.to_owned(), quantity: qty, buyer: buyer.to_owned(), member };
            self.wlinfo.insert(id.to_owned(), entry);
            bump(&mut self.waiting, sku.to_owned(), 1);
            bump(&mut self.buyers, buyer.to_owned(), i64::from(qty));
            return (
                WAITLISTED,
                avail,
                0,
                format!("sold out; you are number {} on the waitlist", waiting + 1),
            );
        }
        let reason = if behind {
            format!("the last {avail} go to the waitlist")
        } else if avail > 0 {
            format!("only {avail} left")
        } else {
            String::new()
        };
        (SOLD_OUT, avail, 0, reason)
    }

    pub(super) fn replay_order(&self, now: i64, source: &Source, id: &str) -> OpResult {
        let Some(d) = self.decisions.get(id) else {
            return result(DUPLICATE, "", 0, 0, 0, now, "replayed order; its decision is no longer stored");
        };
        if d.source == *source {
            let r = result(
                d.status,
                &d.sku,
                d.quantity,
                d.remaining,
                d.hold_expires_at_ms,
                d.decided_at_ms,
                &d.reason,
            );
            return OpResult { waitlist_position: d.waitlist_position, ..r };
        }
        let reason = format!("order {id} was already decided: {}", status_name(d.status));
        result(DUPLICATE, &d.sku, d.quantity, self.stock(&d.sku), 0, now, &reason)
    }
}
