//! Arbitrary messages on every topic a service consumes, through the code each service runs on
//! them: the matcher's planning (decode, id checks, catalog check of an open, chat parsing against
//! it), ingest's routing (drop-triggers) and answers (reservations), and the console's ledger
//! (drop-triggers, chat-activity, chat-orders, reservations) and the figures folded from it.
#![no_main]

use arbitrary::Arbitrary;
use dropline_console::ledger::Ledger;
use dropline_core::TopicKind;
use dropline_ingest::reply::text::Answer;
use dropline_ingest::route::LiveDrops;
use dropline_proto::v1::{ChatActivity, ChatOrder, DropTrigger, ReservationOutcome};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

#[derive(Debug, Arbitrary)]
struct Input {
    topic: u8,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fuzz_target!(|batch: Vec<Input>| {
    let kinds = TopicKind::ALL;
    let batch: Vec<(TopicKind, Option<&[u8]>, &[u8])> = batch
        .iter()
        .take(64)
        .map(|m| (kinds[usize::from(m.topic) % kinds.len()], m.key.as_deref(), m.payload.as_slice()))
        .collect();

    let planned = dropline_matcher::service::plan_raw(&batch);
    assert_eq!(planned.len(), batch.len(), "every message gets an answer");

    let ledger = Ledger::default();
    let mut live = LiveDrops::with_fallback(None);
    let mut drops = Vec::new();
    for (kind, _, payload) in &batch {
        match kind {
            TopicKind::DropTriggers => {
                if let Ok(t) = DropTrigger::decode(*payload) {
                    live.apply(&t);
                    ledger.trigger(&t);
                    drops.push(t.drop_id);
                }
            }
            TopicKind::ChatActivity => {
                if let Ok(a) = ChatActivity::decode(*payload) {
                    ledger.activity(&a);
                }
            }
            TopicKind::ChatOrders => {
                if let Ok(o) = ChatOrder::decode(*payload) {
                    ledger.chat_order(&o);
                }
            }
            TopicKind::Reservations => {
                if let Ok(o) = ReservationOutcome::decode(*payload) {
                    let _ = Answer::from_outcome(&o, "https://drops.example");
                    ledger.outcome(&o);
                    drops.push(o.drop_id);
                }
            }
            _ => {}
        }
    }
    for drop_id in &drops {
        let figures = ledger.figures(drop_id);
        let _ = serde_json::to_string(&figures);
    }
});
