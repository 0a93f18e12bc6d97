//! Holds and the waitlist in the model: reserving, expiry, promotion (FIFO, bounded per call),
//! confirm and cancel, late payments and replayed hold actions.

use super::*;

impl Model {
    /// Holds `qty` of `sku` for order `id` until now + the hold window. Returns (remaining, expiry).
    pub(super) fn reserve(&mut self, now: i64, id: &str, buyer: &str, sku: &str, qty: u32) -> (i64, i64) {
        let remaining = bump(&mut self.stock, sku.to_owned(), -i64::from(qty));
        bump(&mut self.held, sku.to_owned(), i64::from(qty));
        *self.active.get_or_insert(0) += 1;
        let expires = now.saturating_add(self.settings.hold_ms());
        self.holds.insert(
            id.to_owned(),
            Hold { sku: sku.to_owned(), quantity: qty, buyer: buyer.to_owned(), expires_at_ms: expires },
        );
        match self.untagged.last_mut() {
            Some((at, ids)) if *at == expires => ids.push(id.to_owned()),
            _ => self.untagged.push((expires, vec![id.to_owned()])),
        }
        (remaining, expires)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &mut self,
        id: &str,
        buyer: &str,
        sku: &str,
        qty: u32,
        status: i32,
        remaining: i64,
        expires: i64,
        now: i64,
        reason: &str,
    ) {
        self.outbox.push_back(OutboxEvent {
            order_id: id.to_owned(),
            buyer_id: buyer.to_owned(),
            sku: sku.to_owned(),
            quantity: qty,
            status,
            remaining,
            hold_expires_at_ms: expires,
            decided_at_ms: now,
            reason: reason.to_owned(),
            reply_to: ReplyTo::decode(self.reply_to_of(id)),
        });
        bump(&mut self.stats, status_name(status), 1);
    }

    /// The stored reply-to record of `id` ('' when none).
    pub(super) fn reply_to_of(&self, id: &str) -> &str {
        self.reply_to.get(id).map_or("", String::as_str)
    }

    /// Returned stock goes to the oldest waitlisted order of the SKU first (strict FIFO: an order
    /// that wants more than is back waits, and so do the ones behind it).
    pub(super) fn promote(&mut self, now: i64, sku: &str) {
        // A closed drop's waitlist is being answered SOLD_OUT: nobody is promoted.
        if self.state != DropState::Open {
            return;
        }
        let prefix = format!("{sku}{SEP}");
        while self.promote_left > 0 {
            let avail = self.stock(sku);
            if avail <= 0 {
                return;
            }
            // ZRANGEBYLEX [sku SEP .. [sku SEP \xff LIMIT 0 1 (members continue with digits after the prefix)
            let Some(member) =
                self.waitlist.range(prefix.clone()..).next().filter(|m| m.starts_with(&prefix)).cloned()
            else {
                return;
            };
            let id = member.get(sku.len() + 14..).unwrap_or_default().to_owned();
            let Some(entry) = self.wlinfo.get(&id).cloned() else { return };
            if i64::from(entry.quantity) > avail {
                return;
            }
            self.promote_left -= 1;
            self.waitlist.remove(&member);
            self.wlinfo.remove(&id);
            bump(&mut self.waiting, sku.to_owned(), -1);
            let (remaining, expires) = self.reserve(now, &id, &entry.buyer, sku, entry.quantity);
            self.hold_log.insert(
                id.clone(),
                HoldRecord {
                    status: RESERVED,
                    source: Source { stream: "promote".into(), offset: -1 },
                    reason: String::new(),
                    sku: sku.to_owned(),
                    quantity: entry.quantity,
                    remaining,
                    decided_at_ms: now,
                },
            );
            self.emit(
                &id,
                &entry.buyer,
                sku,
                entry.quantity,
                RESERVED,
                remaining,
                expires,
                now,
                "promoted from the waitlist",
            );
        }
    }

    /// Every SKU with orders waiting, in byte order: a sweep goes on with promotions a call left.
    pub(super) fn promote_all(&mut self, now: i64) {
        let mut skus: Vec<String> =
            self.wlinfo.values().map(|w| w.sku.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        skus.reverse();
        while self.promote_left > 0 && self.state == DropState::Open {
            let Some(sku) = skus.pop() else { return };
            self.promote(now, &sku);
        }
    }

    /// A sweep's expiry of `id`, if its hold is still active: units back, `EXPIRED` in the outbox,
    /// the SKU's line promoted.
    pub(super) fn expire(&mut self, now: i64, id: &str) {
        if let Some((sku, qty, buyer, remaining)) = self.release_hold(id) {
            self.hold_log.insert(
                id.to_owned(),
                HoldRecord {
                    status: EXPIRED,
                    source: Source { stream: "sweep".into(), offset: -1 },
                    reason: "payment window ended".into(),
                    sku: sku.clone(),
                    quantity: qty,
                    remaining,
                    decided_at_ms: now,
                },
            );
            self.emit(id, &buyer, &sku, qty, EXPIRED, remaining, 0, now, "the payment window ended");
            self.promote(now, &sku);
        }
    }

    /// Ends an active hold and returns its units to stock: (sku, qty, buyer, remaining).
    pub(super) fn release_hold(&mut self, id: &str) -> Option<(String, u32, String, i64)> {
        let h = self.holds.remove(id)?;
        if let Some(n) = self.active.as_mut() {
            *n -= 1;
        }
        bump(&mut self.held, h.sku.clone(), -i64::from(h.quantity));
        let remaining = bump(&mut self.stock, h.sku.clone(), i64::from(h.quantity));
        bump(&mut self.buyers, h.buyer.clone(), -i64::from(h.quantity));
        Some((h.sku, h.quantity, h.buyer, remaining))
    }

    /// Takes an order off the waitlist: (sku, qty, buyer).
    pub(super) fn leave_waitlist(&mut self, id: &str) -> Option<(String, u32, String)> {
        let w = self.wlinfo.remove(id)?;
        self.waitlist.remove(&w.member);
        bump(&mut self.waiting, w.sku.clone(), -1);
        bump(&mut self.buyers, w.buyer.clone(), -i64::from(w.quantity));
        Some((w.sku, w.quantity, w.buyer))
    }

    /// Records the answer of a hold action that changed nothing, so a redelivery repeats it.
    pub(super) fn answer(&mut self, source: &Source, r: OpResult) -> OpResult {
        self.answers.insert((source.stream.clone(), source.offset), r.clone());
        r
    }

    pub(super) fn hold_action(&mut self, now: i64, source: &Source, id: &str, confirm: bool) -> OpResult {
        let who = self.reply_to_of(id).to_owned();
        let r = self.hold_action_inner(now, source, id, confirm);
        to(r, &who)
    }

    /// A confirm for a hold that ended: stock and limit allowing, a sale; else a refund is due.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn late_payment(
        &mut self,
        now: i64,
        source: &Source,
        id: &str,
        sku: &str,
        qty: u32,
        was: i32,
    ) -> OpResult {
        let buyer = self.decisions.get(id).map(|d| d.buyer.clone()).unwrap_or_default();
        let avail = self.stock(sku);
        let have = if buyer.is_empty() { 0 } else { self.buyer_units(&buyer) };
        let limit = i64::from(self.settings.limit);
        let late = format!("paid after the hold was {}", status_name(was));
        let q = i64::from(qty);
        let (status, remaining, reason) = if avail >= q && (limit == 0 || have + q <= limit) {
            bump(&mut self.stock, sku.to_owned(), -q);
            bump(&mut self.sold, sku.to_owned(), q);
            if !buyer.is_empty() {
                bump(&mut self.buyers, buyer, q);
            }
            (CONFIRMED, avail - q, format!("{late}; the units were still in stock"))
        } else if avail < q {
            (REFUND_DUE, avail, format!("{late} and {sku} is sold out: refund due"))
        } else {
            (
                REFUND_DUE,
                avail,
                format!("{late} and the buyer already has {have} of the limit of {limit}: refund due"),
            )
        };
        self.hold_log.insert(
            id.to_owned(),
            HoldRecord {
                status,
                source: source.clone(),
                reason: reason.clone(),
                sku: sku.to_owned(),
                quantity: qty,
                remaining,
                decided_at_ms: now,
            },
        );
        bump(&mut self.stats, status_name(status), 1);
        result(status, sku, qty, remaining, 0, now, &reason)
    }

    pub(super) fn hold_action_inner(
        &mut self,
        now: i64,
        source: &Source,
        id: &str,
        confirm: bool,
    ) -> OpResult {
        let (status, sku, qty, remaining, reason);
        if let Some(h) = self.holds.get(id).cloned() {
            sku = h.sku;
            qty = h.quantity;
            if confirm {
                self.holds.remove(id);
                if let Some(n) = self.active.as_mut() {
                    *n -= 1;
                }
                bump(&mut self.held, sku.clone(), -i64::from(qty));
                bump(&mut self.sold, sku.clone(), i64::from(qty));
                (status, remaining, reason) = (CONFIRMED, self.stock(&sku), "");
            } else {
                remaining = self.release_hold(id).map_or(0, |(_, _, _, r)| r);
                (status, reason) = (RELEASED, "cancelled at checkout");
            }
        } else if let Some(w) = self.wlinfo.get(id).cloned() {
            if confirm {
                let reason = format!("order {id} is waitlisted; there is no hold to confirm yet");
                let r = result(INVALID, &w.sku, w.quantity, self.stock(&w.sku), 0, now, &reason);
                return self.answer(source, r);
            }
            self.leave_waitlist(id);
            sku = w.sku;
            qty = w.quantity;
            (status, remaining, reason) = (RELEASED, self.stock(&sku), "left the waitlist");
        } else {
            if let Some(done) = self.hold_log.get(id).cloned() {
                if confirm && (done.status == EXPIRED || done.status == RELEASED) {
                    // The lifecycle record is replaced: the cancel it records keeps its answer.
                    if done.source.stream != "sweep" {
                        self.answers.insert((done.source.stream.clone(), done.source.offset), done.answer());
                    }
                    return self.late_payment(now, source, id, &done.sku, done.quantity, done.status);
                }
                let reason = format!("the hold of order {id} was already {}", status_name(done.status));
                let r = result(DUPLICATE, &done.sku, done.quantity, self.stock(&done.sku), 0, now, &reason);
                return self.answer(source, r);
            }
            let r = result(INVALID, "", 0, 0, 0, now, &format!("order {id} has no hold in this drop"));
            return self.answer(source, r);
        }
        self.hold_log.insert(
            id.to_owned(),
            HoldRecord {
                status,
                source: source.clone(),
                reason: reason.to_owned(),
                sku: sku.clone(),
                quantity: qty,
                remaining,
                decided_at_ms: now,
            },
        );
        bump(&mut self.stats, status_name(status), 1);
        if status == RELEASED {
            self.promote(now, &sku);
        }
        result(status, &sku, qty, remaining, 0, now, reason)
    }

    pub(super) fn replay_hold_action(&self, now: i64, source: &Source, id: &str) -> OpResult {
        to(self.replay_hold_action_inner(now, source, id), self.reply_to_of(id))
    }

    pub(super) fn replay_hold_action_inner(&self, now: i64, source: &Source, id: &str) -> OpResult {
        match self.hold_log.get(id) {
            Some(done) if done.source == *source => done.answer(),
            _ => match self.answers.get(&(source.stream.clone(), source.offset)) {
                Some(a) => OpResult { hold_expires_at_ms: 0, ..a.clone() },
                None => result(DUPLICATE, "", 0, 0, 0, now, &format!("replayed hold action for order {id}")),
            },
        }
    }
}
