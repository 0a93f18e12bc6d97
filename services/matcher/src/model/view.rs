//! What the model holds: read accessors for tests, and its state rendered as the library's
//! fifteen Redis keys (`contents`) for comparing with a real drop field by field.

use super::*;

impl Model {
    /// `none`, `open` or `closed`.
    pub fn state(&self) -> DropState {
        self.state
    }

    /// Settings of the latest open.
    pub fn settings(&self) -> DropSettings {
        self.settings
    }

    /// How many times the drop was opened (the `version` `apply` returns).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Every SKU of the drop (those with a total), in byte order.
    pub fn skus(&self) -> impl Iterator<Item = &str> + '_ {
        self.total.keys().map(String::as_str)
    }

    /// Units of `sku` for sale now (0 when unknown).
    pub fn stock(&self, sku: &str) -> i64 {
        self.stock.get(sku).copied().unwrap_or(0)
    }

    /// Units of `sku` held, waiting for payment.
    pub fn held(&self, sku: &str) -> i64 {
        self.held.get(sku).copied().unwrap_or(0)
    }

    /// Units of `sku` sold (confirmed).
    pub fn sold(&self, sku: &str) -> i64 {
        self.sold.get(sku).copied().unwrap_or(0)
    }

    /// Units of `sku` ever put on sale.
    pub fn total(&self, sku: &str) -> i64 {
        self.total.get(sku).copied().unwrap_or(0)
    }

    /// Units `buyer` holds, bought or waits for (what the per-buyer limit counts).
    pub fn buyer_units(&self, buyer: &str) -> i64 {
        self.buyers.get(buyer).copied().unwrap_or(0)
    }

    /// Every buyer with a count, and the count.
    pub fn buyers(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        self.buyers.iter().map(|(b, n)| (b.as_str(), *n))
    }

    /// Number of active holds.
    pub fn active_holds(&self) -> usize {
        self.holds.len()
    }

    /// Active holds by order id.
    pub fn holds(&self) -> impl Iterator<Item = (&str, &Hold)> + '_ {
        self.holds.iter().map(|(id, h)| (id.as_str(), h))
    }

    /// The active hold of `order_id`.
    pub fn hold(&self, order_id: &str) -> Option<&Hold> {
        self.holds.get(order_id)
    }

    /// Orders waitlisted for `sku` (the `waiting` counter).
    pub fn waiting(&self, sku: &str) -> i64 {
        self.waiting.get(sku).copied().unwrap_or(0)
    }

    /// Order ids waitlisted for `sku`, first in line first.
    pub fn waitlist(&self, sku: &str) -> Vec<&str> {
        let prefix = format!("{sku}{SEP}");
        self.waitlist
            .range(prefix.clone()..)
            .take_while(|m| m.starts_with(&prefix))
            .filter_map(|m| m.get(prefix.len() + 13..))
            .collect()
    }

    /// The waitlist entry of `order_id`.
    pub fn wait_entry(&self, order_id: &str) -> Option<&WaitEntry> {
        self.wlinfo.get(order_id)
    }

    /// The first decision of `order_id`.
    pub fn decision(&self, order_id: &str) -> Option<&Decision> {
        self.decisions.get(order_id)
    }

    /// How the hold (or waitlist place) of `order_id` ended.
    pub fn hold_record(&self, order_id: &str) -> Option<&HoldRecord> {
        self.hold_log.get(order_id)
    }

    /// The record of trigger `trigger_id`, once applied.
    pub fn trigger(&self, trigger_id: &str) -> Option<&TriggerRecord> {
        self.triggers.get(trigger_id)
    }

    /// Last offset applied from `stream`.
    pub fn offset(&self, stream: &str) -> Option<i64> {
        self.offsets.get(stream).copied()
    }

    /// Outbox events not yet acknowledged, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = &OutboxEvent> + '_ {
        self.outbox.iter()
    }

    /// Promotions (in a sweep: budget) the last call had left when it ended.
    pub fn promotions_left(&self) -> usize {
        self.promote_left
    }

    /// Decisions counted under a status name (`stats`).
    pub fn stat(&self, name: &str) -> i64 {
        self.stats.get(name).copied().unwrap_or(0)
    }

    /// The fifteen keys as the library stores them, in [`KEY_NAMES`] order, for comparing the
    /// model with a real drop field by field.
    pub fn contents(&self) -> [KeyContents; 15] {
        let counters = |m: &BTreeMap<String, i64>| {
            KeyContents::Hash(m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
        };
        let mut meta = BTreeMap::new();
        if self.state != DropState::None {
            meta.insert("state".to_owned(), self.state.as_str().to_owned());
        }
        if self.opened {
            let s = &self.settings;
            meta.insert("limit".to_owned(), s.limit.to_string());
            meta.insert("hold_ms".to_owned(), s.hold_ms.to_string());
            meta.insert("waitlist".to_owned(), if s.waitlist { "1" } else { "0" }.to_owned());
            meta.insert("cap".to_owned(), s.cap.to_string());
            meta.insert("catalog".to_owned(), String::from_utf8_lossy(&self.catalog).into_owned());
            meta.insert("opened_at".to_owned(), self.opened_at.to_string());
            meta.insert("version".to_owned(), self.version.to_string());
        }
        if let Some(at) = self.closed_at {
            meta.insert("closed_at".to_owned(), at.to_string());
        }
        if self.wl_seq > 0 {
            meta.insert("wl_seq".to_owned(), self.wl_seq.to_string());
        }
        if let Some(n) = self.active {
            meta.insert("holds".to_owned(), n.to_string());
        }
        if self.exp_seq > 0 {
            meta.insert("exp_seq".to_owned(), self.exp_seq.to_string());
        }
        let mut decisions = BTreeMap::new();
        for (id, d) in &self.decisions {
            let fields = [
                d.status.to_string(),
                d.sku.clone(),
                d.quantity.to_string(),
                d.remaining.to_string(),
                d.hold_expires_at_ms.to_string(),
                d.decided_at_ms.to_string(),
                d.source.stream.clone(),
                d.source.offset.to_string(),
                d.reason.clone(),
                d.waitlist_position.to_string(),
                d.buyer.clone(),
            ];
            let mut record = fields.join(&SEP.to_string());
            let who = self.reply_to_of(id);
            if !who.is_empty() {
                record.push(SEP);
                record.push_str(who);
            }
            decisions.insert(id.clone(), record);
        }
        for (id, h) in &self.hold_log {
            let fields = [
                h.status.to_string(),
                h.source.stream.clone(),
                h.source.offset.to_string(),
                h.reason.clone(),
                h.sku.clone(),
                h.quantity.to_string(),
                h.remaining.to_string(),
                h.decided_at_ms.to_string(),
            ];
            decisions.insert(format!("h{SEP}{id}"), fields.join(&SEP.to_string()));
        }
        for ((stream, offset), a) in &self.answers {
            let fields = [
                a.status.to_string(),
                a.sku.clone(),
                a.quantity.to_string(),
                a.remaining.to_string(),
                a.decided_at_ms.to_string(),
                a.reason.clone(),
            ];
            decisions.insert(format!("a{SEP}{stream}{SEP}{offset}"), fields.join(&SEP.to_string()));
        }
        for (id, t) in &self.triggers {
            let fields = [t.status.to_string(), t.source.stream.clone(), t.source.offset.to_string()];
            decisions.insert(format!("t{SEP}{id}"), fields.join(&SEP.to_string()));
        }
        let holds = self.tagged.iter().map(|(tag, ids)| (tag.clone(), ids.join(&SEP.to_string()))).collect();
        let wlinfo = self
            .wlinfo
            .iter()
            .map(|(id, w)| (id.clone(), join(&[&w.sku, &w.quantity.to_string(), &w.buyer, &w.member])))
            .collect();
        [
            KeyContents::Hash(meta),
            counters(&self.stock),
            counters(&self.held),
            counters(&self.sold),
            counters(&self.total),
            counters(&self.buyers),
            KeyContents::Hash(decisions),
            KeyContents::Hash(holds),
            KeyContents::SortedSet(self.expiry.iter().map(|(at, tag)| (tag.clone(), *at)).collect()),
            counters(&self.offsets),
            KeyContents::SortedSet(self.waitlist.iter().map(|m| (m.clone(), 0)).collect()),
            counters(&self.waiting),
            KeyContents::Hash(wlinfo),
            KeyContents::List(self.outbox.iter().map(outbox_entry).collect()),
            KeyContents::Hash(self.stats.iter().map(|(k, v)| ((*k).to_owned(), v.to_string())).collect()),
        ]
    }
}
