//! A pure, in-memory reference model of the `dropline` Redis Function library (`dropline.lua`).
//!
//! [`Model`] holds the state of ONE drop — the same fifteen keys the library keeps in Redis, as Rust
//! maps — and its methods [`Model::apply`], [`Model::sweep`] and [`Model::ack`] /
//! [`Model::ack_if_first`] do what `dropline_apply`, `dropline_sweep` and `dropline_ack` do, step for
//! step: the same [`OpResult`]s (status, SKU, quantity, remaining stock, hold expiry, decision time and
//! reason text, byte for byte), the same outbox events in the same order, and the same stored state.
//! There is no I/O: the model exists so tests can run random interleavings against the real library
//! and compare every answer (see `tests/step_model.rs`).
//!
//! What the model mirrors, as the library does it:
//!
//! * **Replays.** Every operation comes from a source stream with an offset. An offset at or below
//!   the last one applied from that stream is a replay: it changes nothing and answers what the
//!   first delivery answered (an order: its stored first decision, including `decided_at_ms`; a hold
//!   action: its stored lifecycle record; a trigger: `DUPLICATE`).
//! * **Orders.** A known order id answers `DUPLICATE`. Otherwise a drop that is not open answers
//!   `DROP_NOT_OPEN` (even over a verdict the matcher already reached), then the verdict, then an
//!   unknown SKU, then the per-buyer limit (counting units held, sold and waitlisted), then a
//!   reservation with a hold, a place on the waitlist (when on and under the cap) or `SOLD_OUT`.
//!   While anyone waits for the SKU, the line is promoted first (within the call's promotions);
//!   when they ran out before the line did, a new order joins the end of it instead of reserving.
//! * **Waitlist.** Strict FIFO per SKU: when stock comes back (cancel, expiry, restock) or the head
//!   leaves, the oldest waitlisted order of the SKU is promoted while it fits; an order that does not
//!   fit blocks the ones behind it (a new order may still take the units it cannot use). A promotion reserves with a fresh hold window and puts
//!   `RESERVED` "promoted from the waitlist" in the outbox. Closing the drop takes every waitlisted
//!   order off (in `ZRANGE` order of the waitlist members) and puts `SOLD_OUT` in the outbox.
//! * **Holds.** Confirm turns a hold into a sale, cancel returns it to stock; a sweep at time `T`
//!   expires holds due at or before `T` — at most `max_expire` looked at, by expiry tag (the holds
//!   one call made share a tag: by expiry, then by the tag's number), in the order the call made
//!   them — and puts `EXPIRED` in the outbox; holds a tag still has past the budget stay for the
//!   next sweep. A hold is the order's RESERVED record (or a promotion's RESERVED lifecycle
//!   record) until a lifecycle record ends it; `meta.holds` counts the active ones. A confirm after the
//!   hold ended (expired or released) is a **late payment**: the units are taken from stock if the
//!   SKU has them and the buyer's limit allows (`CONFIRMED`, "paid after the hold was …"), else
//!   `REFUND_DUE`; other later hold actions answer `DUPLICATE` from the lifecycle record.
//! * **Reply-to records.** An order that reserves or waitlists keeps where its answers go (at the
//!   end of its record in `decisions`); every later outcome of it (promotion, expiry, close, hold
//!   actions and their replays) carries that record.
//! * **Bounded promotion.** A call promotes at most [`PROMOTE_CHUNK`] orders; each sweep goes on
//!   with every SKU that has orders waiting, in byte order.
//!   Holds are expired only by a sweep: a confirm that arrives after the expiry time but before the
//!   sweep still confirms (as in the library).
//! * **Triggers.** Open (settings, catalog, opening stock of SKUs not seen before, `version` + 1; a
//!   closed drop can be opened again), restock (unknown SKU: `INVALID`), close. A trigger id is
//!   applied once.
//!
//! Not modelled: key TTLs (`EXPIRE`/`PERSIST`, not observable in answers). The library formats numbers
//! with Lua's `%.14g`; the model writes plain integers, which is the same for every value below 10^14
//! (clock values in Unix milliseconds, offsets and counts all are). The decision record of an order
//! (`order_id`), of a hold lifecycle (`h:<order_id>`) and of a trigger (`t:<trigger_id>`) share one
//! Redis hash; the model keeps them apart, so it shows the intended behaviour when ids collide.
//! The model assumes a call never fails half-way (a Lua error keeps the writes made before it).
//!
//! Two behaviours of the model were bugs in the library when it was written and are fixed there: an
//! order leaving the waitlist (cancel, close) is removed from the `waitlist` sorted set (the library
//! used to leave its member behind, and the next promotion of that SKU raised a Lua error), and a
//! hold lifecycle record stores its time, so a replayed hold action answers its original
//! `decided_at_ms` (the library used to answer the replay's clock).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dropline_proto::v1::ReservationStatus;

use crate::step::{Applied, Op, OpResult, OutboxEvent, ReplyTo, Source, Swept};

pub use crate::step::{KEY_NAMES, SEP};

/// Status numbers as the library returns them (`dropline.v1.ReservationStatus`).
/// Waitlisted orders a closing drop answers per call (`CLOSE_CHUNK` in the library); the sweeps
/// answer the rest.
pub const CLOSE_CHUNK: usize = 100;
/// Waitlisted orders promoted per call (`PROMOTE_CHUNK` in the library); the sweeps go on.
pub const PROMOTE_CHUNK: usize = 100;

pub const RESERVED: i32 = ReservationStatus::Reserved as i32;
pub const SOLD_OUT: i32 = ReservationStatus::SoldOut as i32;
pub const LIMIT_EXCEEDED: i32 = ReservationStatus::LimitExceeded as i32;
pub const DUPLICATE: i32 = ReservationStatus::Duplicate as i32;
pub const DROP_NOT_OPEN: i32 = ReservationStatus::DropNotOpen as i32;
pub const UNKNOWN_SKU: i32 = ReservationStatus::UnknownSku as i32;
pub const INVALID: i32 = ReservationStatus::Invalid as i32;
pub const WAITLISTED: i32 = ReservationStatus::Waitlisted as i32;
pub const CONFIRMED: i32 = ReservationStatus::Confirmed as i32;
pub const RELEASED: i32 = ReservationStatus::Released as i32;
pub const EXPIRED: i32 = ReservationStatus::Expired as i32;
pub const REFUND_DUE: i32 = ReservationStatus::RefundDue as i32;

/// The library's status names (`NAMES` in the Lua), used in reasons and as `stats` fields.
const NAMES: [&str; 12] = [
    "RESERVED",
    "SOLD_OUT",
    "LIMIT_EXCEEDED",
    "DUPLICATE",
    "DROP_NOT_OPEN",
    "UNKNOWN_SKU",
    "INVALID",
    "WAITLISTED",
    "CONFIRMED",
    "RELEASED",
    "EXPIRED",
    "REFUND_DUE",
];

/// The library's name of a status (1..=12). Other numbers never reach a name: 0 means "no verdict"
/// and the `ReservationStatus` enum has nothing above 12.
pub fn status_name(status: i32) -> &'static str {
    usize::try_from(status)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("")
}

/// Lifecycle state of a drop (`meta.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DropState {
    /// Never opened (no `state` field).
    #[default]
    None,
    /// Taking orders.
    Open,
    /// Closed: orders answer `DROP_NOT_OPEN`; holds still run their course.
    Closed,
}

impl DropState {
    /// The name the library uses (`none`, `open`, `closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropState::None => "none",
            DropState::Open => "open",
            DropState::Closed => "closed",
        }
    }
}

/// The drop's settings, from the latest open (all 0/off before the first one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropSettings {
    /// Units one buyer may hold, buy or wait for across the drop (0 = no limit).
    pub limit: u32,
    /// Payment window in milliseconds.
    pub hold_ms: u64,
    /// Waitlist on.
    pub waitlist: bool,
    /// Waitlisted orders per SKU (0 = no cap).
    pub cap: u32,
}

impl DropSettings {
    fn hold_ms(&self) -> i64 {
        i64::try_from(self.hold_ms).unwrap_or(i64::MAX)
    }
}

/// The first decision of an order (`decisions[order_id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Status number.
    pub status: i32,
    /// SKU ordered (empty when the order had none).
    pub sku: String,
    /// Units ordered.
    pub quantity: u32,
    /// Units left for sale when decided.
    pub remaining: i64,
    /// Hold expiry (0 when no hold).
    pub hold_expires_at_ms: i64,
    /// When it was decided.
    pub decided_at_ms: i64,
    /// Where the order came from.
    pub source: Source,
    /// Why.
    pub reason: String,
    /// WAITLISTED: the place on the waitlist when decided (0 otherwise).
    pub waitlist_position: u32,
    /// Who ordered (what a hold and a late payment count against the per-buyer limit).
    pub buyer: String,
}

/// How a hold (or a place on the waitlist) ended (`decisions["h" SEP order_id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    /// `CONFIRMED`, `RELEASED`, `EXPIRED` or `REFUND_DUE`.
    pub status: i32,
    /// The hold action's source; `sweep`/-1 for an expiry.
    pub source: Source,
    /// Why (as stored; an expiry stores "payment window ended").
    pub reason: String,
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Units of the SKU left for sale right after.
    pub remaining: i64,
    /// When it happened.
    pub decided_at_ms: i64,
}

impl HoldRecord {
    /// What the hold action it records answered.
    fn answer(&self) -> OpResult {
        result(self.status, &self.sku, self.quantity, self.remaining, 0, self.decided_at_ms, &self.reason)
    }
}

/// An active hold: the order's RESERVED record, or a promotion's lifecycle record (RESERVED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// SKU.
    pub sku: String,
    /// Units held.
    pub quantity: u32,
    /// Buyer.
    pub buyer: String,
    /// Expiry (Unix ms).
    pub expires_at_ms: i64,
}

/// A waitlisted order (`wlinfo[order_id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitEntry {
    /// SKU.
    pub sku: String,
    /// Units wanted.
    pub quantity: u32,
    /// Buyer.
    pub buyer: String,
    /// Its member in the `waitlist` sorted set: `sku SEP seq(12 digits) SEP order_id`.
    pub member: String,
}

/// A trigger that was applied (`decisions["t" SEP trigger_id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRecord {
    /// What it answered (0 applied, `DUPLICATE`, `INVALID`).
    pub status: i32,
    /// Where it came from.
    pub source: Source,
}

/// What one of the drop's keys holds, rendered the way the library stores it in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyContents {
    /// A hash: field -> value (an empty map is a key that does not exist).
    Hash(BTreeMap<String, String>),
    /// A sorted set in `ZRANGE` order (score, then member bytes): (member, score).
    SortedSet(Vec<(String, i64)>),
    /// A list, head first.
    List(Vec<String>),
}

/// The state of one drop, as the library keeps it in its fifteen keys.
#[derive(Debug, Clone, Default)]
pub struct Model {
    // meta
    state: DropState,
    settings: DropSettings,
    opened: bool,
    catalog: Vec<u8>,
    opened_at: i64,
    closed_at: Option<i64>,
    version: i64,
    wl_seq: i64,
    // per SKU / per buyer counters (a field that reached 0 stays, as with HINCRBY)
    stock: BTreeMap<String, i64>,
    held: BTreeMap<String, i64>,
    sold: BTreeMap<String, i64>,
    total: BTreeMap<String, i64>,
    buyers: BTreeMap<String, i64>,
    // decisions
    decisions: BTreeMap<String, Decision>,
    hold_log: BTreeMap<String, HoldRecord>,
    /// Answers of hold actions that changed nothing, by Kafka position (`decisions["a" SEP stream SEP offset]`).
    answers: BTreeMap<(String, i64), OpResult>,
    triggers: BTreeMap<String, TriggerRecord>,
    /// Where an order's answers go (the end of its record in `decisions`), as stored.
    reply_to: BTreeMap<String, String>,
    // holds + expiry
    holds: BTreeMap<String, Hold>,
    /// `meta.holds`: active holds (the field exists once a hold was made).
    active: Option<i64>,
    /// `meta.exp_seq`: the last expiry tag.
    exp_seq: i64,
    /// `holds`: expiry tag -> the orders whose holds one call made.
    tagged: BTreeMap<String, Vec<String>>,
    /// `expiry`: (expiry time, tag).
    expiry: BTreeSet<(i64, String)>,
    /// The call's holds not yet tagged, grouped by expiry time, in order.
    untagged: Vec<(i64, Vec<String>)>,
    /// Promotions the current call may still make.
    promote_left: usize,
    offsets: BTreeMap<String, i64>,
    // waitlist
    waitlist: BTreeSet<String>,
    waiting: BTreeMap<String, i64>,
    wlinfo: BTreeMap<String, WaitEntry>,
    outbox: VecDeque<OutboxEvent>,
    stats: BTreeMap<&'static str, i64>,
}

/// Control characters would break the library's field separator; `step` replaces them in verdict
/// reasons before they reach Redis, and so does the model.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn result(
    status: i32,
    sku: &str,
    quantity: u32,
    remaining: i64,
    expires: i64,
    now: i64,
    reason: &str,
) -> OpResult {
    OpResult {
        status,
        sku: sku.to_owned(),
        quantity,
        remaining,
        hold_expires_at_ms: expires,
        decided_at_ms: now,
        reason: reason.to_owned(),
        waitlist_position: 0,
        reply_to: ReplyTo::default(),
    }
}

/// `r` carrying the order's reply-to record (as the library's hold actions answer).
fn to(r: OpResult, reply_to: &str) -> OpResult {
    OpResult { reply_to: ReplyTo::decode(reply_to), ..r }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, i64>, key: K, by: i64) -> i64 {
    let v = map.entry(key).or_insert(0);
    *v += by;
    *v
}

fn source_of(op: &Op) -> &Source {
    match op {
        Op::Order { source, .. }
        | Op::Open { source, .. }
        | Op::Restock { source, .. }
        | Op::Close { source, .. }
        | Op::Confirm { source, .. }
        | Op::Cancel { source, .. } => source,
    }
}

/// An outbox entry as the library stores it: the ten fields joined by [`SEP`] (the last, the
/// reply-to record, has separators of its own).
pub fn outbox_entry(e: &OutboxEvent) -> String {
    join(&[
        &e.order_id,
        &e.buyer_id,
        &e.sku,
        &e.quantity.to_string(),
        &e.status.to_string(),
        &e.remaining.to_string(),
        &e.hold_expires_at_ms.to_string(),
        &e.decided_at_ms.to_string(),
        &e.reason,
        &e.reply_to.encode(),
    ])
}

fn join(fields: &[&str]) -> String {
    fields.join(&SEP.to_string())
}

impl Model {
    /// A drop nobody has touched (every key missing).
    pub fn new() -> Self {
        Self::default()
    }

    // ---------------------------------------------------------------- the library's three calls

    /// `dropline_apply`: applies `ops` in order at `now_ms`, as one atomic call.
    pub fn apply(&mut self, now_ms: i64, ops: &[Op]) -> Applied {
        self.promote_left = PROMOTE_CHUNK;
        let results = ops.iter().map(|op| self.apply_one(now_ms, op)).collect();
        self.flush_tags();
        Applied { version: self.version, results }
    }

    /// The call's holds become one tag per expiry time: `holds[tag]` and its `expiry` member.
    fn flush_tags(&mut self) {
        for (at, ids) in std::mem::take(&mut self.untagged) {
            self.exp_seq += 1;
            let tag = format!("{:012}", self.exp_seq);
            self.tagged.insert(tag.clone(), ids);
            self.expiry.insert((at, tag));
        }
    }

    /// `dropline_sweep`: expires at most `max_expire` holds due at or before `now_ms` (returning their
    /// units and promoting waitlisted orders), then returns the state, the number of active holds, of
    /// waitlisted orders and up to `max_outbox` outbox events, oldest first. As in the library (`LRANGE 0 max-1`),
    /// `max_outbox == 0` returns the whole outbox.
    pub fn sweep(&mut self, now_ms: i64, max_expire: usize, max_outbox: usize) -> Swept {
        // max_expire is the call's budget: holds looked at, promotions and a closed drop's
        // waitlist answers all spend from it.
        self.promote_left = max_expire;
        let due: Vec<(i64, String)> =
            self.expiry.iter().take_while(|(at, _)| *at <= now_ms).take(max_expire).cloned().collect();
        for (at, tag) in due {
            if self.promote_left == 0 {
                break;
            }
            let ids = self.tagged.remove(&tag).unwrap_or_default();
            let mut rest = Vec::new();
            for id in ids {
                if self.promote_left == 0 {
                    rest.push(id);
                    continue;
                }
                self.promote_left -= 1;
                self.expire(now_ms, &id);
            }
            if rest.is_empty() {
                self.expiry.remove(&(at, tag));
            } else {
                self.tagged.insert(tag, rest);
            }
        }
        self.promote_all(now_ms);
        if self.state == DropState::Closed {
            self.close_chunk(now_ms, self.promote_left);
        }
        self.flush_tags();
        let take = if max_outbox == 0 { self.outbox.len() } else { max_outbox };
        Swept {
            state: self.state.as_str().to_owned(),
            active_holds: self.active.unwrap_or(0),
            waitlisted: i64::try_from(self.waitlist.len()).unwrap_or(i64::MAX),
            events: self.outbox.iter().take(take).cloned().collect(),
        }
    }

    /// `dropline_ack` without `first`: removes the first `n` outbox events; returns how many are left.
    pub fn ack(&mut self, n: usize) -> i64 {
        let n = n.min(self.outbox.len());
        self.outbox.drain(..n);
        i64::try_from(self.outbox.len()).unwrap_or(i64::MAX)
    }

    /// `dropline_ack` with `first`: removes the first `n` events only if the outbox still starts
    /// with the entry `first` (as stored, see [`outbox_entry`]); otherwise removes nothing and
    /// returns -1.
    pub fn ack_if_first(&mut self, n: usize, first: Option<&str>) -> i64 {
        if let Some(first) = first {
            if self.outbox.front().map(outbox_entry).as_deref() != Some(first) {
                return -1;
            }
        }
        self.ack(n)
    }

    // ---------------------------------------------------------------- read accessors

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

    // ---------------------------------------------------------------- apply, one operation

    fn apply_one(&mut self, now: i64, op: &Op) -> OpResult {
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

    // ---------------------------------------------------------------- orders

    #[allow(clippy::too_many_arguments)]
    fn decide_order(
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
    fn decide_available(
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

    fn replay_order(&self, now: i64, source: &Source, id: &str) -> OpResult {
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

    // ---------------------------------------------------------------- holds and the waitlist

    /// Holds `qty` of `sku` for order `id` until now + the hold window. Returns (remaining, expiry).
    fn reserve(&mut self, now: i64, id: &str, buyer: &str, sku: &str, qty: u32) -> (i64, i64) {
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
    fn emit(
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
    fn reply_to_of(&self, id: &str) -> &str {
        self.reply_to.get(id).map_or("", String::as_str)
    }

    /// Returned stock goes to the oldest waitlisted order of the SKU first (strict FIFO: an order
    /// that wants more than is back waits, and so do the ones behind it).
    fn promote(&mut self, now: i64, sku: &str) {
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
    fn promote_all(&mut self, now: i64) {
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
    fn expire(&mut self, now: i64, id: &str) {
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
    fn release_hold(&mut self, id: &str) -> Option<(String, u32, String, i64)> {
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
    fn leave_waitlist(&mut self, id: &str) -> Option<(String, u32, String)> {
        let w = self.wlinfo.remove(id)?;
        self.waitlist.remove(&w.member);
        bump(&mut self.waiting, w.sku.clone(), -1);
        bump(&mut self.buyers, w.buyer.clone(), -i64::from(w.quantity));
        Some((w.sku, w.quantity, w.buyer))
    }

    /// Records the answer of a hold action that changed nothing, so a redelivery repeats it.
    fn answer(&mut self, source: &Source, r: OpResult) -> OpResult {
        self.answers.insert((source.stream.clone(), source.offset), r.clone());
        r
    }

    fn hold_action(&mut self, now: i64, source: &Source, id: &str, confirm: bool) -> OpResult {
        let who = self.reply_to_of(id).to_owned();
        let r = self.hold_action_inner(now, source, id, confirm);
        to(r, &who)
    }

    /// A confirm for a hold that ended: stock and limit allowing, a sale; else a refund is due.
    #[allow(clippy::too_many_arguments)]
    fn late_payment(
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

    fn hold_action_inner(&mut self, now: i64, source: &Source, id: &str, confirm: bool) -> OpResult {
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

    fn replay_hold_action(&self, now: i64, source: &Source, id: &str) -> OpResult {
        to(self.replay_hold_action_inner(now, source, id), self.reply_to_of(id))
    }

    fn replay_hold_action_inner(&self, now: i64, source: &Source, id: &str) -> OpResult {
        match self.hold_log.get(id) {
            Some(done) if done.source == *source => done.answer(),
            _ => match self.answers.get(&(source.stream.clone(), source.offset)) {
                Some(a) => OpResult { hold_expires_at_ms: 0, ..a.clone() },
                None => result(DUPLICATE, "", 0, 0, 0, now, &format!("replayed hold action for order {id}")),
            },
        }
    }

    // ---------------------------------------------------------------- triggers

    fn open_drop(
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

    fn restock(&mut self, now: i64, sku: &str, qty: u32) -> OpResult {
        if !self.total.contains_key(sku) {
            let reason = format!("cannot restock {sku}: no such SKU in this drop");
            return result(INVALID, sku, qty, 0, 0, now, &reason);
        }
        bump(&mut self.total, sku.to_owned(), i64::from(qty));
        let remaining = bump(&mut self.stock, sku.to_owned(), i64::from(qty));
        self.promote(now, sku);
        result(0, sku, qty, remaining, 0, now, "restocked")
    }

    fn close_drop(&mut self, now: i64) -> OpResult {
        if self.state != DropState::Open {
            return result(DUPLICATE, "", 0, 0, 0, now, "the drop is not open");
        }
        self.state = DropState::Closed;
        self.closed_at = Some(now);
        self.close_chunk(now, CLOSE_CHUNK);
        result(0, "", 0, 0, 0, now, "closed")
    }

    /// Answers up to `n` of a closed drop's waitlisted orders SOLD_OUT, oldest first.
    fn close_chunk(&mut self, now: i64, n: usize) {
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

#[cfg(test)]
mod tests {
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
        let opened = m
            .apply(T0, &[o.open("t1", &[("CAP", 2)], 0, false, 0), o.open("t2", &[("CAP", 9)], 0, false, 0)]);
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
        let r =
            m.apply(T0 + 3, &[o.order("w3", "b4", "CAP", 1), o.close("t3"), o.order("z", "b5", "CAP", 1)]);
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
}
