//! Against the real broker (DROPLINE_KAFKA, started by `make stack-up`): round trips through a
//! consumer group, resuming from committed offsets, and bad payloads reported with their offset.
//! Every test uses its own topics and groups, so tests run in parallel and repeatedly.

use std::time::Duration;

use anyhow::{ensure, Context};
use dropline_core::kafka;
use dropline_core::Settings;
use dropline_proto::v1::{ChatOrder, DeadLetter};
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;

fn settings() -> anyhow::Result<Settings> {
    Ok(Settings::from_env()?)
}

fn unique(name: &str) -> String {
    format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
}

async fn topic(settings: &Settings, name: &str, partitions: i32) -> anyhow::Result<String> {
    let topic = unique(name);
    kafka::wait_for_broker(settings, Duration::from_secs(30)).await.context("broker not reachable")?;
    let created = kafka::ensure_topics(settings, &[&topic], partitions, 1).await?;
    ensure!(created == vec![topic.clone()], "topic {topic} was not created: {created:?}");
    Ok(topic)
}

fn order(drop_id: &str, n: u32) -> ChatOrder {
    ChatOrder {
        order_id: format!("{drop_id}-order-{n}"),
        drop_id: drop_id.to_owned(),
        buyer_id: format!("buyer-{n}"),
        channel: "twitch:#creator".into(),
        text: format!("!buy hoodie L {}", n % 3 + 1),
        sent_at_ms: 1_795_000_000_000 + i64::from(n),
        sku: (n % 2 == 0).then(|| "HOODIE-L".to_owned()),
        quantity: (n % 2 == 0).then_some(1),
        buyer_name: format!("Viewer {n}"),
        origin: "irc".into(),
        platform_message_id: "m-1".into(),
    }
}

async fn next(consumer: &StreamConsumer) -> anyhow::Result<BorrowedMessage<'_>> {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.stream().next())
        .await
        .context("no message within 30 s")?
        .context("consumer stream ended")??;
    Ok(message)
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_order_round_trips_through_a_consumer_group() -> anyhow::Result<()> {
    let settings = settings()?;
    let topic = topic(&settings, "roundtrip", 3).await?;
    let producer = kafka::producer(&settings, "test-producer")?;
    let sent = order("drop-roundtrip", 0);
    kafka::publish(&producer, &topic, &sent.drop_id, &sent).await?;

    let consumer = kafka::consumer(&settings, "test-consumer", &unique("group"))?;
    consumer.subscribe(&[&topic])?;
    let message = next(&consumer).await?;
    assert_eq!(message.key(), Some(sent.drop_id.as_bytes()), "keyed by drop id");
    let received: ChatOrder = kafka::decode(&message)?;
    assert_eq!(received, sent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_group_resumes_from_its_committed_offset() -> anyhow::Result<()> {
    let settings = settings()?;
    let topic = topic(&settings, "resume", 1).await?;
    let group = unique("group");
    let producer = kafka::producer(&settings, "test-producer")?;
    for n in 0..10 {
        let event = order("drop-resume", n);
        kafka::publish(&producer, &topic, &event.drop_id, &event).await?;
    }

    {
        let first = kafka::consumer(&settings, "test-first", &group)?;
        first.subscribe(&[&topic])?;
        for n in 0..4 {
            let message = next(&first).await?;
            let event: ChatOrder = kafka::decode(&message)?;
            assert_eq!(event.order_id, format!("drop-resume-order-{n}"));
            first.commit_message(&message, CommitMode::Sync)?;
        }
        // Read one more without committing it: it must be delivered again after the restart.
        let uncommitted: ChatOrder = kafka::decode(&next(&first).await?)?;
        assert_eq!(uncommitted.order_id, "drop-resume-order-4");
        first.unsubscribe();
    }

    for n in 10..12 {
        let event = order("drop-resume", n);
        kafka::publish(&producer, &topic, &event.drop_id, &event).await?;
    }
    let second = kafka::consumer(&settings, "test-second", &group)?;
    second.subscribe(&[&topic])?;
    for n in 4..12 {
        let message = next(&second).await?;
        let event: ChatOrder = kafka::decode(&message)?;
        assert_eq!(event.order_id, format!("drop-resume-order-{n}"), "resumes after the last commit");
        assert_eq!(message.offset(), i64::from(n));
    }

    // Another group has its own position: it starts from the beginning.
    let other = kafka::consumer(&settings, "test-other", &unique("group"))?;
    other.subscribe(&[&topic])?;
    let first_of_other: ChatOrder = kafka::decode(&next(&other).await?)?;
    assert_eq!(first_of_other.order_id, "drop-resume-order-0");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_that_is_not_protobuf_is_a_decode_error_with_its_offset() -> anyhow::Result<()> {
    let settings = settings()?;
    let topic = topic(&settings, "garbage", 1).await?;
    let dead_letters = topic_named(&settings, "dead-letters").await?;
    let producer = kafka::producer(&settings, "test-producer")?;
    let garbage: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x0f];
    kafka::publish(&producer, &topic, "drop-g", &order("drop-g", 0)).await?;
    producer
        .send(FutureRecord::to(&topic).key("drop-g").payload(garbage), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)?;
    producer
        .send(FutureRecord::<str, [u8]>::to(&topic).key("drop-g"), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)?;
    kafka::publish(&producer, &topic, "drop-g", &order("drop-g", 3)).await?;

    let consumer = kafka::consumer(&settings, "test-consumer", &unique("group"))?;
    consumer.subscribe(&[&topic])?;

    let ok: ChatOrder = kafka::decode(&next(&consumer).await?)?;
    assert_eq!(ok.order_id, "drop-g-order-0");

    let bad = next(&consumer).await?;
    let error = kafka::decode::<ChatOrder, _>(&bad).expect_err("garbage must not decode");
    assert_eq!((error.topic.as_str(), error.partition, error.offset), (topic.as_str(), 0, 1));
    assert!(error.reason.contains("invalid protobuf"), "{error}");
    assert!(error.to_string().contains(&format!("{topic}[0]@1")), "{error}");

    // The bad message becomes a dead letter that keeps the raw bytes, and survives the trip.
    let letter = kafka::dead_letter(&bad, &error.reason, "core-test");
    kafka::publish(&producer, &dead_letters, "drop-g", &letter).await?;
    let reader = kafka::consumer(&settings, "test-dlq", &unique("group"))?;
    reader.subscribe(&[&dead_letters])?;
    let stored: DeadLetter = kafka::decode(&next(&reader).await?)?;
    assert_eq!(stored.payload.as_ref(), garbage);
    assert_eq!(stored.key.as_ref(), b"drop-g");
    assert_eq!((stored.topic.as_str(), stored.offset), (topic.as_str(), 1));
    assert_eq!(stored.reason, error.reason);

    let empty = kafka::decode::<ChatOrder, _>(&next(&consumer).await?).expect_err("empty payload");
    assert_eq!(empty.offset, 2);
    assert_eq!(empty.reason, "empty payload");

    let after: ChatOrder = kafka::decode(&next(&consumer).await?)?;
    assert_eq!(after.order_id, "drop-g-order-3", "the consumer keeps going after bad input");
    Ok(())
}

async fn topic_named(settings: &Settings, name: &str) -> anyhow::Result<String> {
    topic(settings, name, 1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_topics_twice_is_harmless() -> anyhow::Result<()> {
    let settings = settings()?;
    kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
    let names = [unique("a"), unique("b")];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut created = kafka::ensure_topics(&settings, &refs, 2, 1).await?;
    created.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(created, expected);
    assert!(kafka::ensure_topics(&settings, &refs, 2, 1).await?.is_empty(), "second call creates nothing");

    let consumer = kafka::consumer(&settings, "test-meta", &unique("group"))?;
    let metadata = consumer.fetch_metadata(Some(&names[0]), Duration::from_secs(5))?;
    assert_eq!(metadata.topics()[0].partitions().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_an_error_not_a_hang() -> anyhow::Result<()> {
    let settings = Settings { kafka: "127.0.0.1:1".into(), ..Settings::default() };
    let started = std::time::Instant::now();
    let result = kafka::wait_for_broker(&settings, Duration::from_secs(1)).await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_topics_are_created_with_their_retention() -> anyhow::Result<()> {
    use dropline_core::TopicKind;
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let mut settings = settings()?;
    settings.set_topic_prefix(&format!("{}.", unique("retention")))?;
    kafka::wait_for_broker(&settings, Duration::from_secs(30)).await?;
    let names: Vec<&str> =
        [TopicKind::Reservations, TopicKind::DeadLetters].map(|k| settings.topics.name(k)).to_vec();
    kafka::ensure_topics(&settings, &names, 1, 1).await?;
    let admin = kafka::admin(&settings)?;
    let specs: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let described = admin.describe_configs(specs.iter(), &AdminOptions::new()).await?;
    let retention = |i: usize| -> anyhow::Result<String> {
        let resource = described[i].as_ref().map_err(|e| anyhow::anyhow!("describe {}: {e:?}", names[i]))?;
        let entry = resource.get("retention.ms").with_context(|| format!("{}: no retention.ms", names[i]))?;
        Ok(entry.value.clone().unwrap_or_default())
    };
    ensure!(retention(0)? == "-1", "reservations are kept forever: {}", retention(0)?);
    ensure!(retention(1)? == (30 * 86_400_000i64).to_string(), "dead letters a month: {}", retention(1)?);
    Ok(())
}
