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

/// Waitlisted orders a closing drop answers per call (`CLOSE_CHUNK` in the library); the sweeps
/// answer the rest.
pub const CLOSE_CHUNK: usize = 100;
/// Waitlisted orders promoted per call (`PROMOTE_CHUNK` in the library); the sweeps go on.
pub const PROMOTE_CHUNK: usize = 100;

/// Status numbers as the library returns them (`dropline.v1.ReservationStatus`).
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
}

mod holds;
mod orders;
mod triggers;
mod view;

#[cfg(test)]
mod tests;
