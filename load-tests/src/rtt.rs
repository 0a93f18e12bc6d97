//! The bare broker's round trip, for comparison with the end-to-end latency: messages produced
//! open-loop at a fixed rate to a fresh topic and consumed back, timed from each one's due time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropline_core::{kafka, Settings, TopicKind, Topics};
use dropline_proto::v1::ChatOrder;
use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message as _;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;

/// Round-trip latency, ms.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrip {
    pub messages: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn run(settings: &Settings, rate: f64, seconds: u64) -> Result<RoundTrip> {
    let mut settings = settings.clone();
    settings.topics = Topics::with_prefix(&format!("rtt-{}.", kafka::now_ms()));
    let topic = settings.topics.name(TopicKind::ChatOrders).to_owned();
    kafka::ensure_topics(&settings, &[topic.as_str()], settings.partitions, 1).await?;
    let consumer =
        kafka::consumer(&settings, "dropline-rtt", &format!("rtt-{}", uuid::Uuid::new_v4().simple()))?;
    consumer.subscribe(&[topic.as_str()])?;
    // Let the consumer join before the clock starts.
    let producer = kafka::producer(&settings, "dropline-rtt")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let total = (rate * seconds as f64) as u64;
    let start = Instant::now();
    let sender = {
        let producer = producer.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut pending = futures::stream::FuturesUnordered::new();
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while n < total {
                tick.tick().await;
                let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
                while n < due {
                    let payload = ChatOrder {
                        order_id: n.to_string(),
                        drop_id: format!("d{}", n % 8),
                        ..Default::default()
                    }
                    .encode_to_vec();
                    let key = format!("d{}", n % 8);
                    if let Ok(delivery) =
                        producer.send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                    {
                        pending.push(delivery);
                    }
                    n += 1;
                }
                while let Some(Some(_)) = futures::FutureExt::now_or_never(pending.next()) {}
            }
            while pending.next().await.is_some() {}
        })
    };
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut stream = consumer.stream();
    let deadline = start + Duration::from_secs(seconds + 10);
    while latency.len() < total && Instant::now() < deadline {
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await else {
            break;
        };
        let order: ChatOrder = kafka::decode(&message).context("decoding")?;
        let n: u64 = order.order_id.parse().unwrap_or(0);
        let due = Duration::from_secs_f64(n as f64 / rate);
        let us = u64::try_from(start.elapsed().saturating_sub(due).as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = latency.record(us);
    }
    let _ = sender.await;
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(RoundTrip {
        messages: latency.len(),
        p50_ms: ms(latency.value_at_quantile(0.5)),
        p99_ms: ms(latency.value_at_quantile(0.99)),
        max_ms: ms(latency.max()),
    })
}
