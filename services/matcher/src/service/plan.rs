//! The planner: what a batch of consumed messages asks of Redis. Pure — no Kafka client, no Redis:
//! each message becomes work (an order, a trigger, a hold action, a dead letter, nothing), the
//! work becomes one call per drop (per shard of a split drop) in consumption order, and the calls'
//! results become one answer per message.
//!
//! Ordering rules: a batch's triggers are classified first and a drop's opens go before its other
//! operations of the batch — orders and triggers travel on different topics, and an order consumed
//! a moment before the open that made it possible should not be turned away as an unknown SKU.

use std::collections::HashMap;
use std::time::Instant;

use dropline_core::domain::{check_drop_id, check_id};
use dropline_core::keys::Keyspace;
use dropline_core::{kafka, TopicKind, Topics};
use dropline_proto::v1::{
    drop_trigger, ChatOrder, DropTrigger, HoldAction, HoldActionKind, ReservationStatus,
};
use prost::Message as _;
use rdkafka::message::{Message, OwnedMessage};

use super::catalogs::Catalogs;
use crate::chat::{self, BuyerId, CatalogIndex, ChatLine, Quantity, Sku};
use crate::split;
use crate::step::{DropKeys, Op, OpResult, ReplyTo, Source};

/// What one consumed message turned into.
// Items live for one batch in one Vec; boxing the large variant would cost an allocation per order.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Work {
    /// Chat that is not an order: counted, nothing published.
    Ignore,
    /// Not decodable or not valid: goes to dead-letters with the reason.
    Dead(String),
    /// Operations for the step — one, or one per shard of a split drop (`calls`: the drop whose
    /// keys it runs on, and the operation) — with what the outcome needs that the step does not
    /// return. `drop_id` is the drop the outcome names.
    Step { drop_id: String, calls: Vec<(String, Op)>, reply: Reply },
}

#[derive(Debug)]
pub(crate) enum Reply {
    /// Publish a `ReservationOutcome` for this order / hold action. `reply_to` is the order's
    /// (empty for a hold action: the step answers with the one it kept).
    Outcome { order_id: String, reply_to: ReplyTo, sent_at_ms: i64 },
    /// A trigger: logged; refused triggers go to dead-letters.
    Trigger { what: &'static str },
}

/// A consumed message and what it asks.
#[derive(Debug)]
pub(crate) struct Item {
    pub msg: OwnedMessage,
    pub received: Instant,
    pub work: Work,
}

impl Item {
    /// Whether this item opens `keys_of` (a drop or a shard).
    fn opens(&self, keys_of: &str) -> bool {
        matches!(&self.work, Work::Step { calls, .. }
            if calls.iter().any(|(k, op)| k == keys_of && matches!(op, Op::Open { .. })))
    }
}

/// One atomic step call: a drop's (or shard's) operations of the batch, and for each the item and
/// the index among that item's calls it answers.
#[derive(Debug)]
pub(crate) struct DropCall {
    pub keys_of: String,
    pub keys: DropKeys,
    pub ops: Vec<Op>,
    pub slots: Vec<(usize, usize)>,
}

/// Turns messages into work.
pub(crate) struct Planner<'a> {
    pub topics: &'a Topics,
    pub catalogs: &'a mut Catalogs,
    /// Payment window (ms) when a drop sets none.
    pub default_hold_ms: u64,
}

impl Planner<'_> {
    /// Classifies a batch, triggers first (so orders behind them parse against their catalog).
    pub fn classify_batch(&mut self, batch: Vec<(OwnedMessage, Instant)>) -> Vec<Item> {
        let triggers = self.topics.name(TopicKind::DropTriggers).to_owned();
        let mut works: Vec<Option<Work>> =
            batch.iter().map(|(msg, _)| (msg.topic() == triggers).then(|| self.classify(msg))).collect();
        batch
            .into_iter()
            .zip(works.iter_mut())
            .map(|((msg, received), work)| {
                let work = work.take().unwrap_or_else(|| self.classify(&msg));
                Item { msg, received, work }
            })
            .collect()
    }

    fn classify(&mut self, msg: &OwnedMessage) -> Work {
        let Some(kind) = self.topics.kind_of(msg.topic()) else {
            return Work::Dead(format!("the matcher does not consume topic {}", msg.topic()));
        };
        let (partition, offset) = (msg.partition(), msg.offset());
        match kind {
            TopicKind::ChatOrders => match kafka::decode::<ChatOrder, _>(msg) {
                Ok(order) => self.order_work(order, Source::new('o', partition, offset)),
                Err(e) => Work::Dead(e.reason),
            },
            TopicKind::DropTriggers => match kafka::decode::<DropTrigger, _>(msg) {
                Ok(trigger) => self.trigger_work(trigger, Source::new('t', partition, offset)),
                Err(e) => Work::Dead(e.reason),
            },
            TopicKind::HoldActions => match kafka::decode::<HoldAction, _>(msg) {
                Ok(action) => self.hold_work(action, Source::new('h', partition, offset)),
                Err(e) => Work::Dead(e.reason),
            },
            other => Work::Dead(format!("the matcher does not consume {}", other.default_name())),
        }
    }

    fn order_work(&mut self, order: ChatOrder, source: Source) -> Work {
        if let Err(reason) = check_id("order_id", &order.order_id).and(check_drop_id(&order.drop_id)) {
            return Work::Dead(reason);
        }
        let buyer = match BuyerId::parse(&order.buyer_id) {
            Ok(buyer) => buyer,
            Err(e) => return Work::Dead(format!("invalid buyer_id: {e}")),
        };
        let cached = self.catalogs.get(&order.drop_id);
        let max_quantity = self.catalogs.max_quantity(&order.drop_id);
        let (item, verdict) = match (&order.sku, cached.and_then(|c| c.index.as_deref())) {
            (Some(sku), _) => {
                let quantity = order.quantity.unwrap_or(1);
                match (Sku::parse(sku), Quantity::at_most(quantity, max_quantity)) {
                    (Ok(sku), Ok(quantity)) => (Some((sku, quantity)), None),
                    (Err(e), _) => (None, Some((ReservationStatus::UnknownSku, e.to_string()))),
                    (_, Err(e)) => (None, Some((ReservationStatus::Invalid, e.to_string()))),
                }
            }
            (None, Some(index)) => match index.parse(&order.text, max_quantity) {
                ChatLine::NotAnOrder => return Work::Ignore,
                ChatLine::Order { sku, quantity } => (Some((sku, quantity)), None),
                ChatLine::UnknownSku { reason } => (None, Some((ReservationStatus::UnknownSku, reason))),
                ChatLine::Invalid { reason } => (None, Some((ReservationStatus::Invalid, reason))),
            },
            // No catalog here: the drop is not open (the step says so), or the line is just chat.
            (None, None) if chat::is_command(&order.text) => (None, None),
            (None, None) => return Work::Ignore,
        };
        // A split drop decides each buyer in their own shard.
        let shards = self.catalogs.shards_of(&order.drop_id);
        let keys_of = if shards > 1 {
            split::shard_id(&order.drop_id, split::shard_of(buyer.as_str(), shards))
        } else {
            order.drop_id.clone()
        };
        let reply_to = ReplyTo {
            buyer: buyer.as_str().to_owned(),
            channel: order.channel,
            name: order.buyer_name,
            origin: order.origin,
            message_id: order.platform_message_id,
        };
        Work::Step {
            drop_id: order.drop_id.clone(),
            calls: vec![(
                keys_of,
                Op::Order {
                    source,
                    order_id: order.order_id.clone(),
                    buyer,
                    item,
                    verdict,
                    reply_to: reply_to.clone(),
                },
            )],
            reply: Reply::Outcome { order_id: order.order_id, reply_to, sent_at_ms: order.sent_at_ms },
        }
    }

    fn trigger_work(&mut self, trigger: DropTrigger, source: Source) -> Work {
        if let Err(reason) = check_drop_id(&trigger.drop_id) {
            return Work::Dead(reason);
        }
        // Without a trigger id, the Kafka position identifies the trigger.
        let trigger_id = if trigger.trigger_id.is_empty() {
            format!("{}@{}", source.stream, source.offset)
        } else if let Err(reason) = check_id("trigger_id", &trigger.trigger_id) {
            return Work::Dead(reason);
        } else {
            trigger.trigger_id.clone()
        };
        let drop_id = &trigger.drop_id;
        let (calls, what) = match trigger.action {
            None => return Work::Dead("drop trigger without an action (open, close or restock)".into()),
            Some(drop_trigger::Action::Open(open)) => {
                if let Err(e) = CatalogIndex::new(&open.items) {
                    return Work::Dead(format!("invalid catalog: {e}"));
                }
                let mut stock = Vec::with_capacity(open.items.len());
                for item in &open.items {
                    match Sku::parse(&item.sku) {
                        Ok(sku) => stock.push((sku, item.stock)),
                        Err(e) => return Work::Dead(format!("invalid catalog: {e}")),
                    }
                }
                let hold_ms = if open.hold_seconds > 0 {
                    u64::from(open.hold_seconds) * 1000
                } else {
                    self.default_hold_ms
                };
                if open.shards > split::MAX_SHARDS {
                    return Work::Dead(format!("invalid open: shards must be at most {}", split::MAX_SHARDS));
                }
                // Orders later in this batch parse against the new catalog.
                let shards = self.catalogs.opened(drop_id, &open);
                let open_op = |trigger_id: String, stock, cap, catalog| Op::Open {
                    source: source.clone(),
                    trigger_id,
                    stock,
                    limit_per_buyer: open.limit_per_buyer,
                    hold_ms,
                    waitlist: open.waitlist,
                    waitlist_cap: cap,
                    catalog,
                };
                let catalog = open.encode_to_vec();
                let calls = if shards == 1 {
                    vec![(drop_id.clone(), open_op(trigger_id, stock, open.waitlist_cap, catalog))]
                } else {
                    // A split drop: the drop itself keeps the catalog (no stock), each shard its share.
                    let none = stock.iter().map(|(sku, _)| (sku.clone(), 0)).collect();
                    let cap = open.waitlist_cap.div_ceil(shards);
                    let mut calls = vec![(drop_id.clone(), open_op(trigger_id.clone(), none, 0, catalog))];
                    calls.extend(to_shards(drop_id, shards, |k| {
                        let part =
                            stock.iter().map(|(sku, n)| (sku.clone(), split::share(*n, shards, k))).collect();
                        Some(open_op(format!("{trigger_id}#{k}"), part, cap, Vec::new()))
                    }));
                    calls
                };
                (calls, "open")
            }
            Some(drop_trigger::Action::Close(_)) => {
                let close = |trigger_id: String| Op::Close { source: source.clone(), trigger_id };
                let mut calls = vec![(drop_id.clone(), close(trigger_id.clone()))];
                calls.extend(to_shards(drop_id, self.catalogs.shards_of(drop_id), |k| {
                    Some(close(format!("{trigger_id}#{k}")))
                }));
                (calls, "close")
            }
            Some(drop_trigger::Action::Restock(restock)) => {
                let sku = match Sku::parse(&restock.sku) {
                    Ok(sku) => sku,
                    Err(e) => return Work::Dead(format!("invalid restock: {e}")),
                };
                if restock.quantity == 0 {
                    return Work::Dead("invalid restock: quantity must be at least 1".into());
                }
                let restock_op = |trigger_id: String, quantity| Op::Restock {
                    source: source.clone(),
                    trigger_id,
                    sku: sku.clone(),
                    quantity,
                };
                let shards = self.catalogs.shards_of(drop_id);
                let calls = if shards == 1 {
                    vec![(drop_id.clone(), restock_op(trigger_id, restock.quantity))]
                } else {
                    // A split drop: the units go to the shards, shared out as at the open.
                    to_shards(drop_id, shards, |k| {
                        let quantity = split::share(restock.quantity, shards, k);
                        (quantity > 0).then(|| restock_op(format!("{trigger_id}#{k}"), quantity))
                    })
                };
                (calls, "restock")
            }
        };
        Work::Step { drop_id: trigger.drop_id, calls, reply: Reply::Trigger { what } }
    }

    /// A payment or cancel: on a split drop the hold is in the buyer's shard, which the action does
    /// not name; it goes to every shard and the one holding the order answers.
    fn hold_work(&self, action: HoldAction, source: Source) -> Work {
        if let Err(reason) = check_id("order_id", &action.order_id).and(check_drop_id(&action.drop_id)) {
            return Work::Dead(reason);
        }
        let op = match HoldActionKind::try_from(action.action) {
            Ok(HoldActionKind::Confirm) => Op::Confirm { source, order_id: action.order_id.clone() },
            Ok(HoldActionKind::Cancel) => Op::Cancel { source, order_id: action.order_id.clone() },
            _ => return Work::Dead(format!("hold action {} is neither confirm nor cancel", action.action)),
        };
        let shards = self.catalogs.shards_of(&action.drop_id);
        let calls = if shards > 1 {
            to_shards(&action.drop_id, shards, |_| Some(op.clone()))
        } else {
            vec![(action.drop_id.clone(), op)]
        };
        Work::Step {
            drop_id: action.drop_id,
            calls,
            reply: Reply::Outcome {
                order_id: action.order_id,
                reply_to: ReplyTo::default(),
                sent_at_ms: action.sent_at_ms,
            },
        }
    }
}

/// Groups the items' operations into one call per drop (per shard of a split drop), in
/// consumption order except that a drop's opens go first.
pub(crate) fn group(items: &[Item], keyspace: &Keyspace) -> Vec<DropCall> {
    let mut calls: Vec<DropCall> = Vec::new();
    let mut call_of: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Work::Step { calls: ops, .. } = &item.work else { continue };
        for (c, (keys_of, op)) in ops.iter().enumerate() {
            let g = *call_of.entry(keys_of.as_str()).or_insert_with(|| {
                calls.push(DropCall {
                    keys_of: keys_of.clone(),
                    keys: keyspace.drop_keys(keys_of),
                    ops: Vec::new(),
                    slots: Vec::new(),
                });
                calls.len() - 1
            });
            let call = &mut calls[g];
            let at = if matches!(op, Op::Open { .. }) {
                call.ops.iter().position(|o| !matches!(o, Op::Open { .. })).unwrap_or(call.ops.len())
            } else {
                call.ops.len()
            };
            call.ops.insert(at, op.clone());
            call.slots.insert(at, (i, c));
        }
    }
    calls
}

/// One answer per item from the calls' results (`results[g]` answers `calls[g]`), with, per call,
/// whether an item of the batch opened it (for [`Catalogs::note_version`]).
pub(crate) fn answers(
    items: &[Item],
    calls: &[DropCall],
    results: Vec<Vec<OpResult>>,
) -> Vec<Option<OpResult>> {
    let mut per_call: Vec<Vec<Option<OpResult>>> = items
        .iter()
        .map(|item| match &item.work {
            Work::Step { calls, .. } => vec![None; calls.len()],
            _ => Vec::new(),
        })
        .collect();
    for (call, results) in calls.iter().zip(results) {
        for ((i, c), result) in call.slots.iter().zip(results) {
            per_call[*i][*c] = Some(result);
        }
    }
    per_call
        .into_iter()
        .zip(items)
        .map(|(results, item)| {
            combine(results, matches!(&item.work, Work::Step { reply: Reply::Trigger { .. }, .. }))
        })
        .collect()
}

/// Whether an item of the batch opened the call's drop (or shard).
pub(crate) fn opened_here(items: &[Item], call: &DropCall) -> bool {
    call.slots.iter().any(|(i, _)| items[*i].opens(&call.keys_of))
}

/// The step's source stream of a consumed partition (`o3`), as `step::Source` names it.
pub(crate) fn stream_of(topics: &Topics, topic: &str, partition: i32) -> Option<String> {
    let letter = match topics.kind_of(topic)? {
        TopicKind::ChatOrders => 'o',
        TopicKind::DropTriggers => 't',
        TopicKind::HoldActions => 'h',
        _ => return None,
    };
    Some(Source::new(letter, partition, 0).stream)
}

/// A consumed message as bytes: its topic, key and payload.
pub type RawMessage<'a> = (TopicKind, Option<&'a [u8]>, &'a [u8]);

/// Plans a batch of raw messages as the decider does — decode, check, parse against catalogs the
/// batch opens, group into step calls — and says what became of each (`dead: <reason>`, `ignore`,
/// `step: <n> calls`). The planning the matcher runs on every consumed message, without Redis or
/// the broker: the fuzz target `topic_payloads` and tests drive it with arbitrary bytes.
pub fn plan_raw(batch: &[RawMessage<'_>]) -> Vec<String> {
    let topics = Topics::default();
    let mut catalogs = Catalogs::new(10);
    let mut planner = Planner { topics: &topics, catalogs: &mut catalogs, default_hold_ms: 60_000 };
    let messages = batch
        .iter()
        .enumerate()
        .map(|(i, (kind, key, payload))| {
            let offset = i64::try_from(i).unwrap_or(i64::MAX);
            let msg = OwnedMessage::new(
                Some(payload.to_vec()),
                key.map(<[u8]>::to_vec),
                topics.name(*kind).to_owned(),
                rdkafka::Timestamp::NotAvailable,
                0,
                offset,
                None,
            );
            (msg, Instant::now())
        })
        .collect();
    let items = planner.classify_batch(messages);
    // Grouping into step calls is part of the planning (a shard's or a drop's calls per batch).
    group(&items, &Keyspace::default());
    items
        .iter()
        .map(|item| match &item.work {
            Work::Ignore => "ignore".to_owned(),
            Work::Dead(reason) => format!("dead: {reason}"),
            Work::Step { calls, .. } => format!("step: {} calls", calls.len()),
        })
        .collect()
}

/// One operation per shard of a split drop (`op(k)`; `None` leaves shard `k` out). Empty when the
/// drop is not split (`shards` = 1).
/// The drop a message is about, read from its payload (not its key: a message keyed wrongly still
/// belongs to the drop it names), without decoding the rest. `None` for other topics and for
/// payloads that do not decode (the planner dead-letters those).
pub fn drop_id_of(kind: TopicKind, payload: &[u8]) -> Option<String> {
    /// The one field wanted, at the tag the message type has it (`ChatOrder` and `HoldAction`: 2,
    /// `DropTrigger`: 1); prost skips the others.
    #[derive(Clone, PartialEq, prost::Message)]
    struct At1 {
        #[prost(string, tag = "1")]
        drop_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct At2 {
        #[prost(string, tag = "2")]
        drop_id: String,
    }
    let id = match kind {
        TopicKind::ChatOrders | TopicKind::HoldActions => At2::decode(payload).ok()?.drop_id,
        TopicKind::DropTriggers => At1::decode(payload).ok()?.drop_id,
        _ => return None,
    };
    (!id.is_empty()).then_some(id)
}

fn to_shards(drop_id: &str, shards: u32, op: impl Fn(u32) -> Option<Op>) -> Vec<(String, Op)> {
    if shards < 2 {
        return Vec::new();
    }
    (0..shards).filter_map(|k| Some((split::shard_id(drop_id, k), op(k)?))).collect()
}

/// One answer for an operation sent to several shards. A payment or cancel: the first that is not
/// `INVALID` (the shard holding the order), else the first. A trigger (`all_must_apply`): the first
/// `INVALID` if any shard refused it (it goes to dead letters with that reason), else the first.
fn combine(results: Vec<Option<OpResult>>, all_must_apply: bool) -> Option<OpResult> {
    if results.iter().any(Option::is_none) {
        return None;
    }
    let results: Vec<OpResult> = results.into_iter().flatten().collect();
    let invalid = ReservationStatus::Invalid as i32;
    let pick = if all_must_apply {
        results.iter().find(|r| r.status == invalid)
    } else {
        results.iter().find(|r| r.status != invalid)
    };
    pick.or(results.first()).cloned()
}

#[cfg(test)]
mod tests {
    use dropline_proto::v1::{CatalogItem, CloseDrop, OpenDrop};
    use rdkafka::message::Timestamp;

    use super::*;

    fn answer(status: ReservationStatus, reason: &str) -> Option<OpResult> {
        Some(OpResult { status: status as i32, reason: reason.into(), ..OpResult::default() })
    }

    #[test]
    fn the_drop_of_a_message_is_read_from_its_payload() {
        let order = ChatOrder {
            drop_id: "b".into(),
            order_id: "o".into(),
            text: "!buy".into(),
            ..Default::default()
        };
        assert_eq!(drop_id_of(TopicKind::ChatOrders, &order.encode_to_vec()).as_deref(), Some("b"));
        let action = HoldAction { drop_id: "h".into(), order_id: "o".into(), ..Default::default() };
        assert_eq!(drop_id_of(TopicKind::HoldActions, &action.encode_to_vec()).as_deref(), Some("h"));
        let close = DropTrigger {
            drop_id: "t".into(),
            trigger_id: "c".into(),
            action: Some(drop_trigger::Action::Close(CloseDrop::default())),
            ..Default::default()
        };
        assert_eq!(drop_id_of(TopicKind::DropTriggers, &close.encode_to_vec()).as_deref(), Some("t"));
        assert_eq!(drop_id_of(TopicKind::ChatOrders, &[0xff, 0xff]), None);
        assert_eq!(drop_id_of(TopicKind::Reservations, &order.encode_to_vec()), None);
    }

    #[test]
    fn one_answer_from_many_shards() {
        let none = answer(ReservationStatus::Invalid, "order o1 has no hold in this drop");
        let held = answer(ReservationStatus::Confirmed, "paid");
        // A payment: the shard holding the order answers.
        let got = combine(vec![none.clone(), held.clone(), none.clone()], false);
        assert_eq!(got.map(|r| r.status), Some(ReservationStatus::Confirmed as i32));
        // Nobody holds it: the refusal.
        assert_eq!(
            combine(vec![none.clone(), none.clone()], false).map(|r| r.status),
            none.clone().map(|r| r.status)
        );
        // A trigger one shard refused is refused.
        let applied = Some(OpResult::default());
        let got = combine(vec![applied.clone(), none.clone(), applied], true);
        assert_eq!(got.map(|r| r.status), Some(ReservationStatus::Invalid as i32));
        // Not all answers in: no answer.
        assert!(combine(vec![held, None], false).is_none());
        assert!(combine(Vec::new(), false).is_none());
    }

    fn message(
        topics: &Topics,
        kind: TopicKind,
        partition: i32,
        offset: i64,
        key: &str,
        payload: Vec<u8>,
    ) -> (OwnedMessage, Instant) {
        let msg = OwnedMessage::new(
            Some(payload),
            Some(key.as_bytes().to_vec()),
            topics.name(kind).to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        );
        (msg, Instant::now())
    }

    fn order(drop_id: &str, id: &str, buyer: &str, text: &str) -> Vec<u8> {
        ChatOrder {
            order_id: id.into(),
            drop_id: drop_id.into(),
            buyer_id: buyer.into(),
            text: text.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn trigger(drop_id: &str, action: drop_trigger::Action) -> Vec<u8> {
        DropTrigger {
            drop_id: drop_id.into(),
            trigger_id: format!("t-{drop_id}"),
            action: Some(action),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn open(stock: u32, shards: u32) -> drop_trigger::Action {
        drop_trigger::Action::Open(OpenDrop {
            items: vec![CatalogItem { sku: "TEE-M".into(), stock, ..Default::default() }],
            shards,
            ..Default::default()
        })
    }

    #[test]
    fn an_order_consumed_before_its_open_parses_against_it_and_goes_after_it() {
        let topics = Topics::default();
        let mut catalogs = Catalogs::new(10);
        let mut planner = Planner { topics: &topics, catalogs: &mut catalogs, default_hold_ms: 60_000 };
        let batch = vec![
            message(&topics, TopicKind::ChatOrders, 0, 5, "d1", order("d1", "o1", "ann", "!buy tee m")),
            message(&topics, TopicKind::ChatOrders, 0, 6, "d1", order("d1", "o2", "bob", "hello all")),
            message(&topics, TopicKind::DropTriggers, 0, 9, "d1", trigger("d1", open(5, 1))),
            message(&topics, TopicKind::ChatOrders, 0, 7, "d1", b"\xff not protobuf".to_vec()),
        ];
        let items = planner.classify_batch(batch);
        assert!(matches!(&items[0].work, Work::Step { calls, .. }
            if matches!(&calls[0].1, Op::Order { item: Some((sku, q)), .. } if sku.as_str() == "TEE-M" && q.get() == 1)));
        assert!(matches!(items[1].work, Work::Ignore));
        assert!(matches!(&items[3].work, Work::Dead(reason) if reason.contains("protobuf")));
        let calls = group(&items, &Keyspace::default());
        assert_eq!(calls.len(), 1);
        assert!(matches!(calls[0].ops[0], Op::Open { .. }));
        assert!(matches!(calls[0].ops[1], Op::Order { .. }));
        assert_eq!(calls[0].slots, vec![(2, 0), (0, 0)]);
        assert!(opened_here(&items, &calls[0]));
        // The answers come back to the items they belong to.
        let results = vec![vec![
            OpResult { reason: "opened".into(), ..OpResult::default() },
            OpResult { status: ReservationStatus::Reserved as i32, ..OpResult::default() },
        ]];
        let got = answers(&items, &calls, results);
        assert_eq!(got[0].as_ref().map(|r| r.status), Some(ReservationStatus::Reserved as i32));
        assert_eq!(got[2].as_ref().map(|r| r.reason.as_str()), Some("opened"));
        assert!(got[1].is_none() && got[3].is_none());
    }

    #[test]
    fn a_split_drop_fans_out_to_its_shards() {
        let topics = Topics::default();
        let mut catalogs = Catalogs::new(10);
        let mut planner = Planner { topics: &topics, catalogs: &mut catalogs, default_hold_ms: 60_000 };
        let batch = vec![
            message(&topics, TopicKind::DropTriggers, 0, 1, "d2", trigger("d2", open(10, 4))),
            message(&topics, TopicKind::ChatOrders, 1, 1, "d2", order("d2", "o1", "ann", "!buy tee m")),
            message(
                &topics,
                TopicKind::DropTriggers,
                0,
                2,
                "d2",
                trigger("d2", drop_trigger::Action::Close(CloseDrop::default())),
            ),
        ];
        let items = planner.classify_batch(batch);
        // The open: the drop keeps the catalog, each shard its share (10 over 4: 3, 3, 2, 2).
        let Work::Step { calls, .. } = &items[0].work else { panic!("an open is a step") };
        let shares: Vec<u32> = calls
            .iter()
            .map(|(_, op)| match op {
                Op::Open { stock, .. } => stock.iter().map(|(_, n)| *n).sum(),
                _ => u32::MAX,
            })
            .collect();
        assert_eq!(shares, vec![0, 3, 3, 2, 2]);
        // The order goes to the buyer's shard only; the close to the drop and every shard.
        let Work::Step { calls, .. } = &items[1].work else { panic!("an order is a step") };
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, split::shard_id("d2", split::shard_of("ann", 4)));
        let Work::Step { calls, .. } = &items[2].work else { panic!("a close is a step") };
        assert_eq!(calls.len(), 5);
        assert_eq!(group(&items, &Keyspace::default()).len(), 5);
    }

    #[test]
    fn raw_batches_are_planned_as_the_decider_plans_them() {
        let open = trigger("d1", open(5, 1));
        let order = order("d1", "o1", "ann", "!buy tee m");
        let planned = plan_raw(&[
            (TopicKind::ChatOrders, Some(b"d1"), &order),
            (TopicKind::DropTriggers, None, &open),
            (TopicKind::HoldActions, Some(b"x"), b"\xff\xff"),
            (TopicKind::Clips, None, b""),
        ]);
        assert_eq!(planned[0], "step: 1 calls");
        assert_eq!(planned[1], "step: 1 calls");
        assert!(planned[2].starts_with("dead: invalid protobuf"), "{planned:?}");
        assert!(planned[3].starts_with("dead: the matcher does not consume"), "{planned:?}");
    }

    #[test]
    fn bad_ids_are_dead_letters_that_say_why() {
        let topics = Topics::default();
        let mut catalogs = Catalogs::new(10);
        let mut planner = Planner { topics: &topics, catalogs: &mut catalogs, default_hold_ms: 60_000 };
        let long = "x".repeat(201);
        let batch = vec![
            message(&topics, TopicKind::ChatOrders, 0, 1, "d", order("d#1", "o1", "ann", "!buy")),
            message(&topics, TopicKind::ChatOrders, 0, 2, "d", order("d", &long, "ann", "!buy")),
            message(&topics, TopicKind::ChatOrders, 0, 3, "d", order("d", "o{1}", "ann", "!buy")),
            message(&topics, TopicKind::Reservations, 0, 4, "d", Vec::new()),
        ];
        let reasons: Vec<String> = planner
            .classify_batch(batch)
            .into_iter()
            .map(|i| match i.work {
                Work::Dead(reason) => reason,
                other => format!("not dead: {other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("'#'"), "{}", reasons[0]);
        assert!(reasons[1].contains("order_id is longer"), "{}", reasons[1]);
        assert!(reasons[2].contains("brace"), "{}", reasons[2]);
        assert!(reasons[3].contains("does not consume"), "{}", reasons[3]);
    }
}
