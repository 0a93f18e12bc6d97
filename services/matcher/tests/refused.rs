//! A record the broker refuses for good (too large) must not stop the matcher: it becomes a dead
//! letter — the payload cut to 64 KiB, its size and SHA-256 kept — and the next orders are answered.
//! Before the publisher knew permanent errors, such a record was retried forever and nothing after
//! it was ever published or committed.

mod common;

use std::time::Duration;

use common::{catalog, collect, dead_letters, status, unique, World};
use dropline_core::{kafka, TopicKind};
use dropline_proto::v1::{ChatOrder, OpenDrop, ReservationStatus};
use sha2::Digest as _;

/// The matcher's clients refuse records above this (the test's own producer keeps the default 1 MB).
const LIMIT: usize = 100_000;

#[tokio::test]
async fn an_outcome_too_large_to_publish_is_dead_lettered_and_the_matcher_goes_on() -> anyhow::Result<()> {
    let world = World::new("refused", 1).await?;
    let mut settings = world.settings.clone();
    settings.kafka_config.0.push(("message.max.bytes".into(), LIMIT.to_string()));
    let group = unique("g");
    let (stop, matcher) = world.spawn_matcher_with(settings, &group);
    let drop_id = unique("drop");
    world
        .open_and_wait(
            &drop_id,
            OpenDrop { items: catalog(5, 5, 5), hold_seconds: 600, ..Default::default() },
        )
        .await?;
    let outcomes = world.reader(TopicKind::Reservations)?;
    let letters = world.reader(TopicKind::DeadLetters)?;

    // A display name of 120 kB: the order fits the broker, its answer (which repeats the name) does
    // not fit the matcher's limit.
    let huge = ChatOrder {
        order_id: "huge".into(),
        drop_id: drop_id.clone(),
        buyer_id: "ann".into(),
        buyer_name: "A".repeat(120_000),
        channel: "twitch:#test".into(),
        text: "!buy cap".into(),
        sent_at_ms: kafka::now_ms(),
        ..Default::default()
    };
    world.send(TopicKind::ChatOrders, &drop_id, &huge).await?;
    // A message that is itself a dead letter, of 200 kB: its letter keeps 64 KiB and fits.
    let bad = vec![0xff_u8; 200_000];
    world.send_raw(TopicKind::ChatOrders, &drop_id, &bad).await?;
    world.order(&drop_id, "after", "bob", "!buy hoodie m").await?;

    let seen = collect(&outcomes, Duration::from_secs(30), |seen| seen.iter().any(|o| o.order_id == "after"))
        .await?;
    let after = seen.iter().find(|o| o.order_id == "after").map(status);
    assert_eq!(after, Some(ReservationStatus::Reserved), "the order after the refused one: {seen:?}");
    assert!(seen.iter().all(|o| o.order_id != "huge"), "the refused answer cannot have been published");

    let got = dead_letters(&letters, 2).await?;
    let of = |kind| got.iter().find(|l| l.topic == world.topic(kind)).expect("a dead letter of each");
    let (input, refused) = (of(TopicKind::ChatOrders), of(TopicKind::Reservations));
    // The consumed message that is no order: cut to 64 KiB, the whole named by size and hash.
    assert_eq!(input.payload_size, 200_000);
    assert_eq!(input.payload.len(), kafka::DEAD_LETTER_PAYLOAD_MAX);
    assert_eq!(input.payload_sha256.as_ref(), sha2::Sha256::digest(&bad).as_slice());
    assert!(input.reason.contains("protobuf"), "{}", input.reason);
    // The answer the broker refused: for the reservations topic, no position, the reason says why.
    assert_eq!((refused.partition, refused.offset), (-1, -1));
    assert!(refused.payload_size > 120_000, "{}", refused.payload_size);
    assert_eq!(refused.payload.len(), kafka::DEAD_LETTER_PAYLOAD_MAX);
    assert_eq!(refused.payload_sha256.len(), 32);
    assert!(
        refused.reason.contains("refused") && refused.reason.to_lowercase().contains("size"),
        "{}",
        refused.reason
    );

    // The matcher committed past all three: nothing is replayed to the group's next member.
    stop.cancel();
    matcher.await?;
    let probe: rdkafka::consumer::StreamConsumer = kafka::consumer(&world.settings, "test-probe", &group)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&world.topic(TopicKind::ChatOrders), 0);
    let committed = rdkafka::consumer::Consumer::committed_offsets(&probe, tpl, Duration::from_secs(10))?;
    let next = committed.elements().first().map(|e| e.offset());
    assert_eq!(next, Some(rdkafka::Offset::Offset(3)), "committed offset of chat-orders[0]");
    Ok(())
}
