//! The Redis side of a decision: builds the calls of the `dropline` function library
//! (`dropline.lua`), sends one atomic call per drop — several drops pipelined in one round trip —
//! and reads the answers back into typed results.

use dropline_proto::v1::ReservationStatus;
use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError};

use crate::chat::{BuyerId, Quantity, Sku};

/// The function library, loaded with `FUNCTION LOAD REPLACE`.
pub const LIBRARY: &str = include_str!("dropline.lua");

/// A drop's keys (`dl:<ns>:{drop:<id>}:<name>`), as the library takes them: the layout lives in the core.
pub use dropline_core::keys::{DropKeys, DROP_KEY_NAMES as KEY_NAMES};

/// Where a Kafka message came from: topic letter + partition (e.g. `o3`), and its offset.
/// The step records the highest offset applied per source so a redelivered message is
/// recognised as a replay and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `o` chat orders, `t` drop triggers, `h` hold actions; then the partition.
    pub stream: String,
    /// Kafka offset.
    pub offset: i64,
}

impl Source {
    /// Source for `topic_letter` (`o`, `t`, `h`) and a partition/offset.
    pub fn new(topic_letter: char, partition: i32, offset: i64) -> Self {
        Self { stream: format!("{topic_letter}{partition}"), offset }
    }
}

/// One operation on one drop, in the order its messages were consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A chat order. `verdict` is set when the matcher already knows the answer
    /// (`UNKNOWN_SKU`/`INVALID` from parsing, or `DROP_NOT_OPEN` with no catalog): the step still
    /// records it for idempotency, and `DROP_NOT_OPEN` takes precedence.
    Order {
        /// Kafka position.
        source: Source,
        /// Idempotency key.
        order_id: String,
        /// Buyer.
        buyer: BuyerId,
        /// What was ordered, when parsing found it.
        item: Option<(Sku, Quantity)>,
        /// Decided without Redis: status and reason.
        verdict: Option<(ReservationStatus, String)>,
        /// Where its answers go, kept with a hold or a place on the waitlist (see [`ReplyTo`]).
        reply_to: ReplyTo,
    },
    /// Open the drop with its catalog.
    Open {
        /// Kafka position.
        source: Source,
        /// Trigger id (applied once).
        trigger_id: String,
        /// Opening stock per SKU.
        stock: Vec<(Sku, u32)>,
        /// Per-buyer limit across the drop (0 = none).
        limit_per_buyer: u32,
        /// Payment window in milliseconds.
        hold_ms: u64,
        /// Waitlist on.
        waitlist: bool,
        /// Waitlist cap per SKU (0 = none).
        waitlist_cap: u32,
        /// The encoded `OpenDrop`, so any matcher can rebuild the catalog.
        catalog: Vec<u8>,
    },
    /// Add units of a SKU.
    Restock {
        /// Kafka position.
        source: Source,
        /// Trigger id.
        trigger_id: String,
        /// SKU.
        sku: Sku,
        /// Units added.
        quantity: u32,
    },
    /// Close the drop: no new orders; waitlisted orders are answered SOLD_OUT.
    Close {
        /// Kafka position.
        source: Source,
        /// Trigger id.
        trigger_id: String,
    },
    /// Payment went through: the hold becomes a sale.
    Confirm {
        /// Kafka position.
        source: Source,
        /// The order whose hold it is.
        order_id: String,
    },
    /// The buyer gave up: the hold's units return to stock.
    Cancel {
        /// Kafka position.
        source: Source,
        /// The order whose hold it is.
        order_id: String,
    },
}

/// The step's answer to one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpResult {
    /// A `ReservationStatus` number; 0 for a trigger that was applied.
    pub status: i32,
    /// SKU the answer is about (empty when none).
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Units of the SKU left for sale.
    pub remaining: i64,
    /// Hold expiry (Unix ms), 0 when no hold.
    pub hold_expires_at_ms: i64,
    /// When the decision was made (Unix ms); a replay returns the original time.
    pub decided_at_ms: i64,
    /// Why.
    pub reason: String,
    /// WAITLISTED: the place on the SKU's waitlist (1 = next); 0 otherwise.
    pub waitlist_position: u32,
    /// A hold action's answer: where the order's answers go (empty when the order is unknown here).
    pub reply_to: ReplyTo,
}

/// Where an order's answers go: the buyer, the chat channel, the display name, how the line
/// arrived and the platform's message id. The step keeps it in the order's record (`decisions`)
/// for orders that reserved or waitlisted, so the outcomes it makes later — promotion, expiry,
/// payment, cancel, close — reach the buyer where they ordered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyTo {
    /// Buyer id (also what a late payment counts against the per-buyer limit).
    pub buyer: String,
    /// `network:#channel`.
    pub channel: String,
    /// Display name.
    pub name: String,
    /// `irc`, `webhook`, or empty.
    pub origin: String,
    /// The platform's id of the chat message, or empty.
    pub message_id: String,
}

impl ReplyTo {
    /// The record as the library stores it: five fields joined by [`SEP`], control characters
    /// replaced (they would break the separator).
    /// The empty record (an unknown order) is the empty string, as the library answers it.
    pub fn encode(&self) -> String {
        if *self == ReplyTo::default() {
            return String::new();
        }
        [&self.buyer, &self.channel, &self.name, &self.origin, &self.message_id]
            .map(|f| clean(f))
            .join(&SEP.to_string())
    }

    /// Reads a stored record; missing fields are empty (an empty record is an unknown order).
    pub fn decode(raw: &str) -> Self {
        let mut f = raw.split(SEP).map(str::to_owned);
        let mut next = || f.next().unwrap_or_default();
        ReplyTo { buyer: next(), channel: next(), name: next(), origin: next(), message_id: next() }
    }
}

/// The answer to one `dropline_apply` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Catalog version of the drop after the call (changes when the drop is opened).
    pub version: i64,
    /// One result per operation, in order.
    pub results: Vec<OpResult>,
}

/// An outcome the step produced on its own (expiry, promotion from the waitlist, close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Order.
    pub order_id: String,
    /// Buyer.
    pub buyer_id: String,
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// A `ReservationStatus` number.
    pub status: i32,
    /// Units left for sale.
    pub remaining: i64,
    /// Hold expiry (Unix ms), 0 when none.
    pub hold_expires_at_ms: i64,
    /// When it happened.
    pub decided_at_ms: i64,
    /// Why.
    pub reason: String,
    /// Where the order's answers go.
    pub reply_to: ReplyTo,
}

/// What a sweep found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// `open`, `closed` or `none`.
    pub state: String,
    /// Holds still waiting for payment.
    pub active_holds: i64,
    /// Orders on the waitlist.
    pub waitlisted: i64,
    /// Outcomes to publish (then acknowledge with [`ack`]).
    pub events: Vec<OutboxEvent>,
}

/// The library's field separator (ASCII unit separator); ids never contain control characters.
pub const SEP: char = '\u{1f}';

/// Control characters would break the library's field separator; ids are checked at the
/// boundary, reasons and display names are cleaned here.
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn push_op(cmd: &mut redis::Cmd, op: &Op) {
    let (kind, source) = match op {
        Op::Order { verdict: None, source, .. } => ("o", source),
        Op::Order { source, .. } => ("v", source),
        Op::Open { source, .. } => ("O", source),
        Op::Restock { source, .. } => ("R", source),
        Op::Close { source, .. } => ("C", source),
        Op::Confirm { source, .. } => ("c", source),
        Op::Cancel { source, .. } => ("x", source),
    };
    cmd.arg(kind).arg(&source.stream).arg(source.offset);
    // What follows depends on the kind (the library's ARITY): only what the operation needs.
    match op {
        Op::Order { order_id, buyer, item, verdict, reply_to, .. } => {
            let (sku, qty) = item.as_ref().map_or(("", 0), |(sku, qty)| (sku.as_str(), qty.get()));
            cmd.arg(order_id).arg(buyer.as_str()).arg(sku).arg(qty);
            if let Some((status, reason)) = verdict {
                cmd.arg(*status as i32).arg(clean(reason));
            }
            cmd.arg(reply_to.encode());
        }
        Op::Open { trigger_id, stock, limit_per_buyer, hold_ms, waitlist, waitlist_cap, catalog, .. } => {
            let skus: Vec<String> = stock.iter().map(|(sku, n)| format!("{sku}={n}")).collect();
            let settings = format!(
                "{limit_per_buyer}{SEP}{hold_ms}{SEP}{}{SEP}{waitlist_cap}",
                if *waitlist { 1 } else { 0 }
            );
            cmd.arg(trigger_id).arg(skus.join(&SEP.to_string())).arg(settings).arg(catalog);
        }
        Op::Restock { trigger_id, sku, quantity, .. } => {
            cmd.arg(trigger_id).arg(sku.as_str()).arg(*quantity);
        }
        Op::Close { trigger_id, .. } => {
            cmd.arg(trigger_id);
        }
        Op::Confirm { order_id, .. } | Op::Cancel { order_id, .. } => {
            cmd.arg(order_id);
        }
    }
}

/// The `FCALL dropline_apply` command for one drop's operations (what `apply` pipelines; public so
/// benchmarks can replay it with other tools).
pub fn apply_cmd(keys: &DropKeys, now_ms: i64, ops: &[Op]) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("dropline_apply").arg(keys.all().len()).arg(keys.all()).arg(now_ms).arg(ops.len());
    for op in ops {
        push_op(&mut cmd, op);
    }
    cmd
}

/// The matcher's budget for one sweep call (holds looked at + promotions + a closed drop's
/// waitlist answers) and the most outbox entries it returns: a call stays within ~2 ms of Redis
/// time (`make bench-limits`, (f); 100 expiries that each promoted, with 500 entries read, took
/// 3.6 ms when expiries and promotions had budgets of their own); the rest waits for the next tick.
pub const SWEEP_BUDGET: usize = 100;
/// See [`SWEEP_BUDGET`].
pub const SWEEP_OUTBOX: usize = 200;

/// Fields per operation in `dropline_apply`'s flat reply.
const RESULT_FIELDS: usize = 9;

fn to_applied((version, flat): (i64, Vec<redis::Value>)) -> Result<Applied, RedisError> {
    if flat.len() % RESULT_FIELDS != 0 {
        return Err(RedisError::from((ErrorKind::UnexpectedReturnType, "a step reply of uneven length")));
    }
    let results = flat
        .chunks_exact(RESULT_FIELDS)
        .map(|f| {
            let int = |v: &redis::Value| redis::from_redis_value_ref::<i64>(v);
            let text = |v: &redis::Value| redis::from_redis_value_ref::<String>(v);
            Ok(OpResult {
                status: i32::try_from(int(&f[0])?).unwrap_or(0),
                sku: text(&f[1])?,
                quantity: u32::try_from(int(&f[2])?).unwrap_or(0),
                remaining: int(&f[3])?,
                hold_expires_at_ms: int(&f[4])?,
                decided_at_ms: int(&f[5])?,
                reason: text(&f[6])?,
                waitlist_position: u32::try_from(int(&f[7])?).unwrap_or(0),
                reply_to: ReplyTo::decode(&text(&f[8])?),
            })
        })
        .collect::<Result<Vec<_>, redis::ParsingError>>()?;
    Ok(Applied { version, results })
}

fn is_missing_library(e: &RedisError) -> bool {
    let text = e.to_string();
    text.contains("Function not found") || text.contains("NOSCRIPT")
}

/// Loads (or replaces) the function library.
pub async fn load<C: ConnectionLike>(conn: &mut C) -> Result<(), RedisError> {
    let _: String = redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(LIBRARY).query_async(conn).await?;
    Ok(())
}

/// Runs a command, loading the library first if Redis lost it (e.g. restarted without persistence).
async fn with_library<C, T, F>(conn: &mut C, run: F) -> Result<T, RedisError>
where
    C: ConnectionLike,
    F: Fn() -> redis::Pipeline,
    T: redis::FromRedisValue,
{
    match run().query_async(conn).await {
        Err(e) if is_missing_library(&e) => {
            load(conn).await?;
            run().query_async(conn).await
        }
        other => other,
    }
}

/// Applies each drop's operations atomically: one `dropline_apply` per drop, all pipelined in one
/// round trip. Results come back in the order of `batches`.
pub async fn apply<C: ConnectionLike>(
    conn: &mut C,
    now_ms: i64,
    batches: &[(&DropKeys, &[Op])],
) -> Result<Vec<Applied>, RedisError> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<(i64, Vec<redis::Value>)> = with_library(conn, || {
        let mut pipe = redis::pipe();
        for (keys, ops) in batches {
            pipe.add_command(apply_cmd(keys, now_ms, ops));
        }
        pipe
    })
    .await?;
    raw.into_iter().map(to_applied).collect()
}

/// Expires the drop's due holds (at most `max_expire`) and returns up to `max_outbox` outcomes
/// waiting to be published.
///
/// `settled`: per source stream (`o3`), the highest offset whose outcome is published and
/// acknowledged; a due hold decided at a later offset of one of these streams is not expired yet
/// (its reservation is not out). Streams not named are not held back.
pub async fn sweep<C: ConnectionLike>(
    conn: &mut C,
    keys: &DropKeys,
    now_ms: i64,
    max_expire: usize,
    max_outbox: usize,
    settled: &[(String, i64)],
) -> Result<Swept, RedisError> {
    let mut swept =
        sweep_pipelined(conn, std::slice::from_ref(keys), now_ms, max_expire, max_outbox, settled).await?;
    swept.pop().ok_or_else(|| RedisError::from((ErrorKind::UnexpectedReturnType, "no sweep result")))
}

/// [`sweep`] of several drops in one round trip (one atomic call each).
pub async fn sweep_pipelined<C: ConnectionLike>(
    conn: &mut C,
    drops: &[DropKeys],
    now_ms: i64,
    max_expire: usize,
    max_outbox: usize,
    settled: &[(String, i64)],
) -> Result<Vec<Swept>, RedisError> {
    if drops.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<(String, i64, Vec<String>, i64)> = with_library(conn, || {
        let mut pipe = redis::pipe();
        for keys in drops {
            let call = pipe
                .cmd("FCALL")
                .arg("dropline_sweep")
                .arg(keys.all().len())
                .arg(keys.all())
                .arg(now_ms)
                .arg(max_expire)
                .arg(max_outbox)
                .arg(settled.len());
            for (stream, offset) in settled {
                call.arg(stream).arg(offset);
            }
        }
        pipe
    })
    .await?;
    raw.into_iter()
        .map(|(state, active_holds, entries, waitlisted)| {
            let events = entries.iter().map(|e| parse_event(e)).collect::<Result<Vec<_>, _>>()?;
            Ok(Swept { state, active_holds, waitlisted, events })
        })
        .collect()
}

/// Removes the first `count` outbox entries (they were published). With `first` (the
/// [`OutboxEvent::raw`] form of the first event published), nothing is removed unless the outbox
/// still starts with it — so two matchers that swept the same drop during a rebalance cannot
/// remove entries that neither published. Returns the entries left, or -1 when `first` did not match.
pub async fn ack<C: ConnectionLike>(
    conn: &mut C,
    keys: &DropKeys,
    count: usize,
    first: Option<&str>,
) -> Result<i64, RedisError> {
    let (left,): (i64,) = with_library(conn, || {
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL").arg("dropline_ack").arg(keys.all().len()).arg(keys.all()).arg(count);
        if let Some(first) = first {
            pipe.arg(first);
        }
        pipe
    })
    .await?;
    Ok(left)
}

/// An active hold, as [`holds`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHold {
    /// The order whose hold it is.
    pub order_id: String,
    /// SKU.
    pub sku: String,
    /// Units held.
    pub quantity: u32,
    /// Buyer.
    pub buyer: String,
    /// When the payment window ends (Unix ms).
    pub expires_at_ms: i64,
    /// Where the order's decision came from (what the sweeper's "expire only once the reservation
    /// is out" rule compares with the settled offsets).
    pub source: Source,
}

/// The drop's active holds, soonest expiry first (at most `max`): for operators and checks, not
/// for the hot path (it reads every expiry tag of the drop).
pub async fn holds<C: ConnectionLike>(
    conn: &mut C,
    keys: &DropKeys,
    max: usize,
) -> Result<Vec<ActiveHold>, RedisError> {
    let (flat,): (Vec<redis::Value>,) = with_library(conn, || {
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL_RO").arg("dropline_holds").arg(keys.all().len()).arg(keys.all()).arg(max);
        pipe
    })
    .await?;
    if flat.len() % 7 != 0 {
        return Err(RedisError::from((ErrorKind::UnexpectedReturnType, "a holds reply of uneven length")));
    }
    flat.chunks_exact(7)
        .map(|f| {
            let int = |v: &redis::Value| redis::from_redis_value_ref::<i64>(v);
            let text = |v: &redis::Value| redis::from_redis_value_ref::<String>(v);
            Ok(ActiveHold {
                order_id: text(&f[0])?,
                sku: text(&f[1])?,
                quantity: u32::try_from(int(&f[2])?).unwrap_or(0),
                buyer: text(&f[3])?,
                expires_at_ms: int(&f[4])?,
                source: Source { stream: text(&f[5])?, offset: text(&f[6])?.parse().unwrap_or(-1) },
            })
        })
        .collect::<Result<Vec<_>, redis::ParsingError>>()
        .map_err(RedisError::from)
}

/// A transfer between the shards of a split drop, journalled in the donor until settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    /// The recipient shard's drop id.
    pub to: String,
    pub sku: String,
    pub units: i64,
}

/// Takes up to `units` of `sku` out of the donor shard for transfer `id` to shard `to`, journalled
/// in the donor; returns the units taken (0 when it has none).
pub async fn take<C: ConnectionLike>(
    conn: &mut C,
    donor: &DropKeys,
    id: &str,
    sku: &str,
    units: i64,
    to: &str,
) -> Result<i64, RedisError> {
    let (taken,): (i64,) = with_library(conn, || {
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL").arg("dropline_take").arg(donor.all().len()).arg(donor.all());
        pipe.arg(id).arg(sku).arg(units).arg(to);
        pipe
    })
    .await?;
    Ok(taken)
}

/// Adds transfer `id`'s units to the recipient shard, once (a repeat changes nothing), and promotes
/// its waitlisted orders; true when given by this call.
pub async fn give<C: ConnectionLike>(
    conn: &mut C,
    recipient: &DropKeys,
    transfer: &Pending,
    now_ms: i64,
) -> Result<bool, RedisError> {
    let (given,): (i64,) = with_library(conn, || {
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL").arg("dropline_give").arg(recipient.all().len()).arg(recipient.all());
        pipe.arg(&transfer.id).arg(&transfer.sku).arg(transfer.units).arg(now_ms);
        pipe
    })
    .await?;
    Ok(given == 1)
}

/// Forgets a transfer the recipient has received.
pub async fn settle<C: ConnectionLike>(conn: &mut C, donor: &DropKeys, id: &str) -> Result<(), RedisError> {
    let (_,): (i64,) = with_library(conn, || {
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL").arg("dropline_settle").arg(donor.all().len()).arg(donor.all()).arg(id);
        pipe
    })
    .await?;
    Ok(())
}

/// Transfers the donor shard has journalled and not yet settled.
pub async fn pending<C: ConnectionLike>(conn: &mut C, donor: &DropKeys) -> Result<Vec<Pending>, RedisError> {
    let meta: Vec<(String, String)> = redis::cmd("HGETALL").arg(donor.meta()).query_async(conn).await?;
    Ok(pending_in(meta))
}

/// The journalled transfers among a shard's `meta` fields (as `HGETALL` returns them).
pub fn pending_in(meta: Vec<(String, String)>) -> Vec<Pending> {
    let prefix = format!("xfer{SEP}");
    meta.into_iter()
        .filter_map(|(field, value)| {
            let id = field.strip_prefix(&prefix)?.to_owned();
            let mut f = value.split(SEP);
            let (to, sku, units) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            Some(Pending { id, to: to.to_owned(), sku: sku.to_owned(), units })
        })
        .collect()
}

impl OutboxEvent {
    /// The event as the library stores it in the outbox.
    pub fn raw(&self) -> String {
        [
            self.order_id.clone(),
            self.buyer_id.clone(),
            self.sku.clone(),
            self.quantity.to_string(),
            self.status.to_string(),
            self.remaining.to_string(),
            self.hold_expires_at_ms.to_string(),
            self.decided_at_ms.to_string(),
            self.reason.clone(),
            self.reply_to.encode(),
        ]
        .join(&SEP.to_string())
    }
}

fn parse_event(entry: &str) -> Result<OutboxEvent, RedisError> {
    let bad =
        || RedisError::from((ErrorKind::UnexpectedReturnType, "malformed outbox entry", entry.to_owned()));
    // The reply-to record, last, has separators of its own; the reason never has one.
    let f: Vec<&str> = entry.splitn(10, SEP).collect();
    let [order_id, buyer_id, sku, qty, status, remaining, expires, decided, reason, reply_to] = f.as_slice()
    else {
        return Err(bad());
    };
    Ok(OutboxEvent {
        order_id: (*order_id).to_owned(),
        buyer_id: (*buyer_id).to_owned(),
        sku: (*sku).to_owned(),
        quantity: qty.parse().map_err(|_| bad())?,
        status: status.parse().map_err(|_| bad())?,
        remaining: remaining.parse().map_err(|_| bad())?,
        hold_expires_at_ms: expires.parse().map_err(|_| bad())?,
        decided_at_ms: decided.parse().map_err(|_| bad())?,
        reason: (*reason).to_owned(),
        reply_to: ReplyTo::decode(reply_to),
    })
}
