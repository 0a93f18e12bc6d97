//! A split drop (`OpenDrop.shards`): its stock spread over shards, each buyer in one shard. Every
//! unit is sold — the rebalancing step moves units to the shards whose buyers wait — and never one
//! more; outcomes name the drop, not the shard; a payment finds its hold in whichever shard.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{catalog, collect, status, unique, World};
use dropline_core::TopicKind;
use dropline_matcher::split;
use dropline_proto::v1::{OpenDrop, ReservationStatus as S};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_drop_sells_every_unit_and_never_one_more() -> anyhow::Result<()> {
    let world = World::new("split", 2).await?;
    let (stop, matcher) = world.spawn_matcher(&unique("group"));
    let reader = world.reader(TopicKind::Reservations)?;
    let drop_id = unique("drop");
    let open = OpenDrop {
        items: catalog(0, 10, 0),
        hold_seconds: 120,
        waitlist: true,
        waitlist_cap: 100,
        shards: 4,
        ..Default::default()
    };
    world.open_and_wait(&drop_id, open).await?;

    // 40 buyers want the 10 hoodies in L; buyers spread over the 4 shards unevenly.
    let buyers: Vec<String> = (0..40).map(|b| format!("viewer{b}")).collect();
    let per_shard: HashSet<u32> = buyers.iter().map(|b| split::shard_of(b, 4)).collect();
    assert!(per_shard.len() > 1);
    for (b, buyer) in buyers.iter().enumerate() {
        world.order(&drop_id, &format!("o{b}"), buyer, "!buy hoodie L").await?;
    }
    // Every order decided, and 10 holds in the end (first answers and promotions).
    let reserved_orders = |seen: &[dropline_proto::v1::ReservationOutcome]| {
        seen.iter().filter(|o| status(o) == S::Reserved).map(|o| o.order_id.clone()).collect::<HashSet<_>>()
    };
    let outcomes = collect(&reader, Duration::from_secs(60), |seen| {
        let decided: HashSet<&str> = seen
            .iter()
            .filter(|o| matches!(status(o), S::Reserved | S::Waitlisted | S::SoldOut))
            .map(|o| o.order_id.as_str())
            .collect();
        decided.len() == 40 && reserved_orders(seen).len() >= 10
    })
    .await?;
    assert!(outcomes.iter().all(|o| o.drop_id == drop_id), "outcomes name the drop, not a shard");
    assert!(outcomes.iter().all(|o| o.remaining >= 0));
    assert_eq!(reserved_orders(&outcomes).len(), 10, "exactly the 10 units are held");
    // Nothing more arrives: no 11th unit.
    let more = collect(&reader, Duration::from_secs(2), |new| !new.is_empty()).await;
    assert!(more.is_err(), "more outcomes after every unit was held: {more:?}");

    // In Redis: every shard consistent, no stock left, 10 held, nothing in transit.
    let mut conn = dropline_core::redis::connect(&world.settings.redis).await?;
    let (mut held, mut left, mut total) = (0, 0, 0);
    for k in 0..4 {
        let shard = split::shard_id(&drop_id, k);
        let key = |name: &str| world.settings.keyspace.drop_key(&shard, name);
        type H = HashMap<String, i64>;
        let (s, h, d, t): (H, H, H, H) = redis::pipe()
            .hgetall(key("stock"))
            .hgetall(key("held"))
            .hgetall(key("sold"))
            .hgetall(key("total"))
            .query_async(&mut conn)
            .await?;
        let get = |m: &H| m.get("HOODIE-L").copied().unwrap_or(0);
        assert!(get(&s) >= 0 && get(&h) >= 0, "shard {k}: {s:?} {h:?}");
        assert_eq!(get(&s) + get(&h) + get(&d), get(&t), "shard {k} inconsistent");
        held += get(&h);
        left += get(&s);
        total += get(&t);
        let pending =
            dropline_matcher::step::pending(&mut conn, &world.settings.keyspace.drop_keys(&shard)).await?;
        assert!(pending.is_empty(), "shard {k}: transfer left in flight: {pending:?}");
    }
    assert_eq!((held, left, total), (10, 0, 10));

    // A payment finds its hold in whichever shard: one answer, CONFIRMED (the other shards'
    // "no such hold" stays inside the matcher).
    let paid =
        outcomes.iter().find(|o| status(o) == S::Reserved).map(|o| o.order_id.clone()).unwrap_or_default();
    world.hold(&drop_id, &paid, true).await?;
    let answer =
        collect(&reader, Duration::from_secs(30), |new| new.iter().any(|o| o.order_id == paid)).await?;
    let answer: Vec<_> = answer.iter().filter(|o| o.order_id == paid).collect();
    assert_eq!(answer.len(), 1, "{answer:#?}");
    assert_eq!(status(answer[0]), S::Confirmed);
    let later = collect(&reader, Duration::from_secs(2), |new| new.iter().any(|o| o.order_id == paid)).await;
    assert!(later.is_err(), "a second answer to one payment: {later:?}");

    stop.cancel();
    matcher.await?;
    Ok(())
}
