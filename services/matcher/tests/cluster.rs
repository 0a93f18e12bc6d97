//! The matcher on a real Redis Cluster (three primaries started by the test on free loopback
//! ports): the library reaches every primary, drops land on different primaries (one hash tag per
//! drop), a batch spanning several drops is decided, and every drop keeps its stock exact.

mod common;

use common::redis_cluster::{drops_spread_and_decided, Link};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matcher_decides_drops_spread_over_a_redis_cluster() -> anyhow::Result<()> {
    drops_spread_and_decided(Link::Plain).await
}
