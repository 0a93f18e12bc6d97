//! Protobuf encode/decode cost of the hottest events: a chat order in, an outcome out.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dropline_proto::v1::{ChatOrder, ReservationOutcome, ReservationStatus};
use dropline_proto::Message;
use std::hint::black_box;

fn order() -> ChatOrder {
    ChatOrder {
        order_id: "twitch:3f1c2a7e-9b0d-4c55-8a61-0e2d8f4b9c10".into(),
        drop_id: "drop-2026-11-27-hoodies".into(),
        buyer_id: "twitch:193847562".into(),
        channel: "twitch:#creator".into(),
        text: "!buy hoodie L 2".into(),
        sent_at_ms: 1_795_000_000_000,
        sku: None,
        quantity: None,
        buyer_name: "SomeViewer".into(),
        origin: "irc".into(),
        platform_message_id: "3f1c2a7e-9b0d-4c55-8a61-0e2d8f4b9c10".into(),
    }
}

fn outcome() -> ReservationOutcome {
    ReservationOutcome {
        order_id: "twitch:3f1c2a7e-9b0d-4c55-8a61-0e2d8f4b9c10".into(),
        drop_id: "drop-2026-11-27-hoodies".into(),
        buyer_id: "twitch:193847562".into(),
        sku: "HOODIE-L".into(),
        quantity: 2,
        status: ReservationStatus::Reserved as i32,
        remaining: 118,
        hold_expires_at_ms: 1_795_000_060_000,
        decided_at_ms: 1_795_000_000_004,
        reason: String::new(),
        channel: "twitch:#creator".into(),
        sent_at_ms: 1_795_000_000_000,
        buyer_name: "SomeViewer".into(),
        origin: "irc".into(),
        platform_message_id: "3f1c2a7e-9b0d-4c55-8a61-0e2d8f4b9c10".into(),
        claim_code: "k7f3m2q9x4b1z8c0".into(),
        waitlist_position: 0,
    }
}

fn bench_proto(c: &mut Criterion) {
    let mut group = c.benchmark_group("proto");
    group.throughput(Throughput::Elements(1));
    let order = order();
    let order_bytes = order.encode_to_vec();
    group.bench_function("chat_order/encode", |b| b.iter(|| black_box(&order).encode_to_vec()));
    group.bench_function("chat_order/decode", |b| {
        b.iter(|| ChatOrder::decode(black_box(order_bytes.as_slice())))
    });
    let outcome = outcome();
    let outcome_bytes = outcome.encode_to_vec();
    group.bench_function("outcome/encode", |b| b.iter(|| black_box(&outcome).encode_to_vec()));
    group.bench_function("outcome/decode", |b| {
        b.iter(|| ReservationOutcome::decode(black_box(outcome_bytes.as_slice())))
    });
    group.finish();
}

criterion_group!(benches, bench_proto);
criterion_main!(benches);
