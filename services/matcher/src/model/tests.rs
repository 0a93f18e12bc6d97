//! The model on its own: statuses, the waitlist, sweeps and hold lifecycles.

use super::*;
use crate::chat::{BuyerId, Quantity, Sku};

const T0: i64 = 1_800_000_000_000;

struct Ops {
    next: i64,
}

impl Ops {
    fn src(&mut self, letter: char) -> Source {
        self.next += 1;
        Source::new(letter, 0, self.next)
    }
    fn open(&mut self, id: &str, stock: &[(&str, u32)], limit: u32, waitlist: bool, cap: u32) -> Op {
        Op::Open {
            source: self.src('t'),
            trigger_id: id.into(),
            stock: stock.iter().map(|(s, n)| (Sku::parse(s).expect("sku"), *n)).collect(),
            limit_per_buyer: limit,
            hold_ms: 1000,
            waitlist,
            waitlist_cap: cap,
            catalog: b"catalog".to_vec(),
        }
    }
    fn order(&mut self, id: &str, buyer: &str, sku: &str, qty: u32) -> Op {
        Op::Order {
            source: self.src('o'),
            order_id: id.into(),
            buyer: BuyerId::parse(buyer).expect("buyer"),
            item: Some((Sku::parse(sku).expect("sku"), Quantity::new(qty).expect("qty"))),
            verdict: None,
            reply_to: ReplyTo { buyer: buyer.into(), ..ReplyTo::default() },
        }
    }
    fn confirm(&mut self, id: &str) -> Op {
        Op::Confirm { source: self.src('h'), order_id: id.into() }
    }
    fn cancel(&mut self, id: &str) -> Op {
        Op::Cancel { source: self.src('h'), order_id: id.into() }
    }
    fn restock(&mut self, id: &str, sku: &str, qty: u32) -> Op {
        Op::Restock {
            source: self.src('t'),
            trigger_id: id.into(),
            sku: Sku::parse(sku).expect("sku"),
            quantity: qty,
        }
    }
    fn close(&mut self, id: &str) -> Op {
        Op::Close { source: self.src('t'), trigger_id: id.into() }
    }
}

fn statuses(applied: &Applied) -> Vec<i32> {
    applied.results.iter().map(|r| r.status).collect()
}

#[test]
fn orders_before_open_are_not_open_and_open_counts_versions() {
    let (mut m, mut o) = (Model::new(), Ops { next: 0 });
    let early = m.apply(T0, &[o.order("a", "b1", "CAP", 1)]);
    assert_eq!(early.version, 0);
    assert_eq!(early.results[0].status, DROP_NOT_OPEN);
    assert_eq!(early.results[0].reason, "the drop is not open");
    let opened =
        m.apply(T0, &[o.open("t1", &[("CAP", 2)], 0, false, 0), o.open("t2", &[("CAP", 9)], 0, false, 0)]);
    assert_eq!(opened.version, 1);
    assert_eq!(statuses(&opened), vec![0, DUPLICATE]);
    assert_eq!(opened.results[1].reason, "the drop is already open");
    assert_eq!(m.stock("CAP"), 2);
    let again = m.apply(T0, &[o.order("a", "b1", "CAP", 1)]);
    assert_eq!(again.results[0].reason, "order a was already decided: DROP_NOT_OPEN");
}

#[test]
fn reserve_limit_sold_out_and_unknown_sku() {
    let (mut m, mut o) = (Model::new(), Ops { next: 0 });
    m.apply(T0, &[o.open("t1", &[("CAP", 3), ("TEE", 0)], 2, false, 0)]);
    let r = m.apply(
        T0 + 5,
        &[
            o.order("a", "b1", "CAP", 2),
            o.order("b", "b1", "CAP", 1),
            o.order("c", "b2", "CAP", 2),
            o.order("d", "b2", "MUG", 1),
            o.order("e", "b3", "TEE", 1),
        ],
    );
    assert_eq!(statuses(&r), vec![RESERVED, LIMIT_EXCEEDED, SOLD_OUT, UNKNOWN_SKU, SOLD_OUT]);
    assert_eq!(r.results[0].remaining, 1);
    assert_eq!(r.results[0].hold_expires_at_ms, T0 + 5 + 1000);
    assert_eq!(r.results[1].reason, "the limit is 2 per buyer and you already have 2");
    assert_eq!(r.results[2].reason, "only 1 left");
    assert_eq!(r.results[3].reason, "no SKU MUG in this drop");
    assert_eq!(r.results[4].reason, "");
    assert_eq!((m.stock("CAP"), m.held("CAP"), m.total("CAP")), (1, 2, 3));
    assert_eq!(m.buyer_units("b1"), 2);
    assert_eq!(m.stat("SOLD_OUT"), 2);
}

#[test]
fn waitlist_is_strict_fifo_and_close_answers_sold_out() {
    let (mut m, mut o) = (Model::new(), Ops { next: 0 });
    m.apply(T0, &[o.open("t1", &[("CAP", 1)], 0, true, 0)]);
    let r = m.apply(
        T0,
        &[o.order("a", "b1", "CAP", 1), o.order("w1", "b2", "CAP", 2), o.order("w2", "b3", "CAP", 1)],
    );
    assert_eq!(statuses(&r), vec![RESERVED, WAITLISTED, WAITLISTED]);
    assert_eq!(r.results[2].reason, "sold out; you are number 2 on the waitlist");
    assert_eq!(m.waitlist("CAP"), vec!["w1", "w2"]);
    // One unit back: w1 wants 2, so w1 and w2 behind it wait.
    let r = m.apply(T0 + 1, &[o.cancel("a")]);
    assert_eq!((r.results[0].status, r.results[0].remaining), (RELEASED, 1));
    assert_eq!(m.outbox().count(), 0);
    let r = m.apply(T0 + 2, &[o.restock("t2", "CAP", 2)]);
    assert_eq!((r.results[0].status, r.results[0].remaining), (0, 3));
    let promoted: Vec<(String, i64)> = m.outbox().map(|e| (e.order_id.clone(), e.remaining)).collect();
    assert_eq!(promoted, vec![("w1".to_owned(), 1), ("w2".to_owned(), 0)]);
    assert!(m.outbox().all(|e| e.status == RESERVED && e.hold_expires_at_ms == T0 + 2 + 1000));
    assert_eq!(m.ack(2), 0);
    // Waitlist again, then close.
    let r = m.apply(T0 + 3, &[o.order("w3", "b4", "CAP", 1), o.close("t3"), o.order("z", "b5", "CAP", 1)]);
    assert_eq!(statuses(&r), vec![WAITLISTED, 0, DROP_NOT_OPEN]);
    assert_eq!(r.results[2].reason, "the drop is closed");
    let swept = m.sweep(T0 + 3, 10, 10);
    assert_eq!(swept.state, "closed");
    assert_eq!(swept.events.len(), 1);
    assert_eq!(swept.events[0].status, SOLD_OUT);
    assert_eq!(swept.events[0].reason, "the drop closed before stock came back");
    assert_eq!(m.buyer_units("b4"), 0);
}

#[test]
fn sweep_expires_in_the_order_the_holds_were_made_and_promotes() {
    let (mut m, mut o) = (Model::new(), Ops { next: 0 });
    m.apply(T0, &[o.open("t1", &[("CAP", 2)], 0, true, 0)]);
    m.apply(
        T0,
        &[o.order("zz", "b1", "CAP", 1), o.order("aa", "b2", "CAP", 1), o.order("w", "b3", "CAP", 1)],
    );
    let swept = m.sweep(T0 + 1000, 2, 10);
    // Both expire at T0 + 1000 under one tag; "zz" was made first, its unit goes to "w" (the
    // budget of 2: one expiry, one promotion).
    let got: Vec<(&str, i32)> = swept.events.iter().map(|e| (e.order_id.as_str(), e.status)).collect();
    assert_eq!(got, vec![("zz", EXPIRED), ("w", RESERVED)]);
    assert_eq!(swept.active_holds, 2);
    let swept = m.sweep(T0 + 1000, 5, 0);
    assert_eq!(swept.events.len(), 3, "max_outbox 0 returns the whole outbox, like LRANGE 0 -1");
    assert_eq!(m.ack_if_first(1, Some("nope")), -1);
    let first = swept.events.first().map(outbox_entry);
    assert_eq!(m.ack_if_first(3, first.as_deref()), 0);
    assert_eq!((m.stock("CAP"), m.held("CAP")), (1, 1));
}

#[test]
fn hold_lifecycle_answers_and_replays() {
    let (mut m, mut o) = (Model::new(), Ops { next: 0 });
    m.apply(T0, &[o.open("t1", &[("CAP", 2)], 0, true, 0)]);
    let order = o.order("a", "b1", "CAP", 1);
    let first = m.apply(T0, &[order.clone(), o.order("b", "b2", "CAP", 1), o.order("w", "b3", "CAP", 1)]);
    let confirm = o.confirm("a");
    let r = m.apply(T0 + 10, &[confirm.clone(), o.confirm("a"), o.confirm("w"), o.cancel("ghost")]);
    assert_eq!(statuses(&r), vec![CONFIRMED, DUPLICATE, INVALID, INVALID]);
    assert_eq!(r.results[1].reason, "the hold of order a was already CONFIRMED");
    assert_eq!(r.results[2].reason, "order w is waitlisted; there is no hold to confirm yet");
    assert_eq!(r.results[3].reason, "order ghost has no hold in this drop");
    m.sweep(T0 + 1000, 10, 10);
    // b expired and its unit went to w: paying b now is too late, and nothing is left.
    let r = m.apply(T0 + 2000, &[o.confirm("b"), o.cancel("b")]);
    assert_eq!(statuses(&r), vec![REFUND_DUE, DUPLICATE]);
    assert_eq!(r.results[0].reason, "paid after the hold was EXPIRED and CAP is sold out: refund due");
    assert_eq!(r.results[1].reason, "the hold of order b was already REFUND_DUE");
    assert_eq!(r.results[0].reply_to.buyer, "b2", "a late answer still reaches the buyer");
    // w cancels (its unit is back), then pays after all: paid late, the unit is still there.
    let r = m.apply(T0 + 2001, &[o.cancel("w"), o.confirm("w"), o.confirm("w")]);
    assert_eq!(statuses(&r), vec![RELEASED, CONFIRMED, DUPLICATE]);
    assert_eq!(r.results[1].reason, "paid after the hold was RELEASED; the units were still in stock");
    assert_eq!((m.stock("CAP"), m.held("CAP"), m.sold("CAP"), m.buyer_units("b3")), (0, 0, 2, 1));
    // Replays answer what they answered the first time, and change nothing.
    let before = m.contents();
    let replayed = m.apply(T0 + 5000, &[order, confirm]);
    assert_eq!(replayed.results[0], first.results[0]);
    assert_eq!(replayed.results[1], r_confirm_a());
    assert_eq!(m.contents(), before);

    fn r_confirm_a() -> OpResult {
        let who = ReplyTo { buyer: "b1".into(), ..ReplyTo::default() };
        to(result(CONFIRMED, "CAP", 1, 0, 0, T0 + 10, ""), &who.encode())
    }
}
