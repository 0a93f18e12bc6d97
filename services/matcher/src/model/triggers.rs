//! The model's drop triggers: open, restock, close (and the closed drop's waitlist answers).

use super::*;

impl Model {
    pub(super) fn open_drop(
        &mut self,
        now: i64,
        stock: &[(&str, u32)],
        settings: DropSettings,
        catalog: &[u8],
    ) -> OpResult {
        if self.state == DropState::Open {
            return result(DUPLICATE, "", 0, 0, 0, now, "the drop is already open");
        }
        self.state = DropState::Open;
        self.settings = settings;
        self.opened = true;
        self.catalog = catalog.to_vec();
        self.opened_at = now;
        self.version += 1;
        for (sku, n) in stock {
            if !self.total.contains_key(*sku) {
                self.total.insert((*sku).to_owned(), i64::from(*n));
                self.stock.insert((*sku).to_owned(), i64::from(*n));
                self.held.entry((*sku).to_owned()).or_insert(0);
                self.sold.entry((*sku).to_owned()).or_insert(0);
            }
        }
        result(0, "", 0, 0, 0, now, "opened")
    }

    pub(super) fn restock(&mut self, now: i64, sku: &str, qty: u32) -> OpResult {
        if !self.total.contains_key(sku) {
            let reason = format!("cannot restock {sku}: no such SKU in this drop");
            return result(INVALID, sku, qty, 0, 0, now, &reason);
        }
        bump(&mut self.total, sku.to_owned(), i64::from(qty));
        let remaining = bump(&mut self.stock, sku.to_owned(), i64::from(qty));
        self.promote(now, sku);
        result(0, sku, qty, remaining, 0, now, "restocked")
    }

    pub(super) fn close_drop(&mut self, now: i64) -> OpResult {
        if self.state != DropState::Open {
            return result(DUPLICATE, "", 0, 0, 0, now, "the drop is not open");
        }
        self.state = DropState::Closed;
        self.closed_at = Some(now);
        self.close_chunk(now, CLOSE_CHUNK);
        result(0, "", 0, 0, 0, now, "closed")
    }

    /// Answers up to `n` of a closed drop's waitlisted orders SOLD_OUT, oldest first.
    pub(super) fn close_chunk(&mut self, now: i64, n: usize) {
        let members: Vec<String> = self.waitlist.iter().take(n).cloned().collect();
        for member in members {
            let id = member.split(SEP).nth(2).unwrap_or_default().to_owned();
            if let Some((sku, qty, buyer)) = self.leave_waitlist(&id) {
                let remaining = self.stock(&sku);
                let reason = "the drop closed before stock came back";
                self.emit(&id, &buyer, &sku, qty, SOLD_OUT, remaining, 0, now, reason);
            }
        }
    }
}
