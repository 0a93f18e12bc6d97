//! Chat activity counted for a drop's funnel: lines per (drop, channel) since the last
//! `ChatActivity` (the tally is pure), published on `chat-activity` about once a second — by
//! ingest for real chat, by the load tools for their crowds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dropline_proto::v1::ChatActivity;
use prost::Message as _;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::kafka;

/// How often counts are published.
pub const EVERY: Duration = Duration::from_secs(1);

/// Counts since the last publication, per (drop, channel). Pure.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<(String, String), ChatActivity>,
}

impl Tally {
    /// One line read on `channel` while `drop_id` is live there, at `at_ms`.
    pub fn count(&mut self, drop_id: &str, channel: &str, command: bool, at_ms: i64) {
        let entry =
            self.counts.entry((drop_id.to_owned(), channel.to_owned())).or_insert_with(|| ChatActivity {
                drop_id: drop_id.to_owned(),
                channel: channel.to_owned(),
                from_ms: at_ms,
                to_ms: at_ms,
                ..Default::default()
            });
        entry.lines += 1;
        entry.commands += u64::from(command);
        entry.from_ms = entry.from_ms.min(at_ms);
        entry.to_ms = entry.to_ms.max(at_ms);
    }

    /// What was counted since the last call, and a fresh start.
    pub fn take(&mut self) -> Vec<ChatActivity> {
        std::mem::take(&mut self.counts).into_values().collect()
    }
}

/// The tally shared by every chat source.
pub type Shared = Arc<Mutex<Tally>>;

/// Publishes the tally every [`EVERY`] until `shutdown`, then once more (keyed by drop id).
/// Counts the broker refuses are logged and lost: they are a statistic, not an order.
pub async fn publish(tally: Shared, producer: FutureProducer, topic: String, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = shutdown.cancelled() => true,
        };
        let batch = tally.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut deliveries = Vec::with_capacity(batch.len());
        for activity in &batch {
            let payload = activity.encode_to_vec();
            match kafka::enqueue(&producer, &topic, &activity.drop_id, &payload, &CancellationToken::new())
                .await
            {
                Ok(delivery) => deliveries.push((activity, delivery)),
                Err(e) => lost(activity, &e.to_string()),
            }
        }
        for (activity, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => lost(activity, &e.to_string()),
                Err(_) => lost(activity, "the producer went away"),
            }
        }
        if stopping {
            break;
        }
    }
}

fn lost(activity: &ChatActivity, error: &str) {
    warn!(error, drop_id = %activity.drop_id, channel = %activity.channel, lines = activity.lines,
        "chat activity not published");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_add_up_per_drop_and_channel_and_start_again_after_take() {
        let mut tally = Tally::default();
        tally.count("d1", "twitch:#a", true, 1_000);
        tally.count("d1", "twitch:#a", false, 1_400);
        tally.count("d1", "twitch:#b", false, 1_200);
        tally.count("d2", "twitch:#a", true, 900);
        let batch = tally.take();
        assert_eq!(batch.len(), 3);
        let a = batch.iter().find(|x| x.drop_id == "d1" && x.channel == "twitch:#a").expect("d1 #a");
        assert_eq!((a.lines, a.commands, a.from_ms, a.to_ms), (2, 1, 1_000, 1_400));
        assert!(tally.take().is_empty(), "a window is published once");
        tally.count("d1", "twitch:#a", false, 2_000);
        assert_eq!(tally.take()[0].lines, 1);
    }
}
