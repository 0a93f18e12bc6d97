//! Two matchers in one consumer group split the partitions of ten concurrent drops; one stops
//! mid-drop and the other takes its partitions over: no decision lost or made twice.

mod common;

use std::time::Duration;

use common::{check_promises, collect_all, open_for, traffic, unique, World};
use dropline_core::TopicKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_matchers_share_a_drop_and_survive_a_rebalance() -> anyhow::Result<()> {
    let world = World::new("scale", 4).await?;
    let group = unique("group");
    let drops: Vec<String> = (0..10).map(|_| unique("drop")).collect();
    let (stock, limit) = (15, 2);
    let reader = world.reader(TopicKind::Reservations)?;
    let (stop_a, a) = world.spawn_matcher(&group);
    let (stop_b, b) = world.spawn_matcher(&group);
    for drop in &drops {
        world.open_and_wait(drop, open_for(stock, limit)).await?;
    }

    let sent = traffic(&drops, 1200);
    let (first_half, second_half) = sent.split_at(600);
    for (drop, order, buyer, text) in first_half {
        world.order(drop, order, buyer, text).await?;
    }
    common::collect(&reader, Duration::from_secs(60), |seen| seen.len() >= 200).await?;
    stop_a.cancel(); // leaves the group: b gets every partition
    a.await?;
    for (drop, order, buyer, text) in second_half {
        world.order(drop, order, buyer, text).await?;
    }
    // Re-read everything from the start in a fresh group.
    let all_reader = world.reader(TopicKind::Reservations)?;
    let outcomes = collect_all(&all_reader, &sent, Vec::new(), Duration::from_secs(120)).await?;
    stop_b.cancel();
    b.await?;
    drop(reader);
    check_promises(&world.settings, &sent, &outcomes, stock, limit).await
}
