//! The matcher end to end over the real broker and Redis: every order of a small drop gets its
//! one decision, holds go through their lifecycle, bad input lands in dead-letters.

mod common;

use std::time::Duration;

use common::{by_order, catalog, collect, status, unique, World};
use dropline_core::TopicKind;
use dropline_proto::v1::{OpenDrop, ReservationStatus as S};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_drop_gets_one_decision_per_order() -> anyhow::Result<()> {
    let world = World::new("drop", 2).await?;
    let drop = unique("drop");
    let reader = world.reader(TopicKind::Reservations)?;
    let dlq = world.reader(TopicKind::DeadLetters)?;
    let (stop, matcher) = world.spawn_matcher(&unique("group"));

    let open = OpenDrop {
        items: catalog(1, 2, 5),
        limit_per_buyer: 2,
        hold_seconds: 60,
        waitlist: true,
        waitlist_cap: 1,
        ..Default::default()
    };
    world.open_and_wait(&drop, open).await?;
    world.order(&drop, "o1", "ann", "!buy hoodie L").await?;
    world.order(&drop, "chat", "bob", "this drop is fire").await?;
    world.order(&drop, "o2", "bob", "!buy hoodie L 2").await?; // 1 left, wants 2: waitlisted
    world.order(&drop, "o3", "cat", "!BUY HOODIE-L").await?; // takes the last one
    world.order(&drop, "o1", "ann", "!buy hoodie L").await?; // chat re-sent: duplicate
    world.order(&drop, "o4", "ann", "!buy hoody m 2").await?; // ann has 1, limit 2
    world.order(&drop, "o5", "dan", "!buy sweater").await?;
    world.order(&drop, "o6", "dan", "!buy").await?;
    world.order(&drop, "o7", "eve", "!buy hoodie m").await?;
    world.order(&drop, "o8", "fay", "!buy hoodie m").await?; // M sold out, waitlist cap 1 reached? (L's)
    world.send_raw(TopicKind::ChatOrders, &drop, &[0xff, 0xff, 0xff]).await?;
    world.order(&drop, "o9", "gus", "!buy 2").await?; // item number 2: the cap
    world.order(&unique("never-opened"), "o10", "hal", "!buy hoodie").await?;

    let outcomes = collect(&reader, Duration::from_secs(60), |seen| seen.len() >= 11).await?;
    let by = by_order(&outcomes);
    assert_eq!(by["o1"], [S::Reserved, S::Duplicate], "{outcomes:#?}");
    assert_eq!(by["o2"], [S::Waitlisted]);
    assert_eq!(by["o3"], [S::Reserved]);
    assert_eq!(by["o4"], [S::LimitExceeded]);
    assert_eq!(by["o5"], [S::UnknownSku]);
    assert_eq!(by["o6"], [S::Invalid]);
    assert_eq!(by["o7"], [S::Reserved]);
    assert_eq!(by["o8"], [S::Waitlisted]);
    assert_eq!(by["o9"], [S::Reserved]);
    assert_eq!(by["o10"], [S::DropNotOpen]);
    assert!(!by.contains_key("chat"), "ordinary chat gets no outcome");
    let o1 = outcomes.iter().find(|o| o.order_id == "o1").expect("o1");
    assert_eq!((o1.sku.as_str(), o1.quantity, o1.remaining), ("HOODIE-L", 1, 1));
    assert!(o1.hold_expires_at_ms >= o1.decided_at_ms + 59_000);
    assert_eq!(o1.channel, "twitch:#test");
    let o5 = outcomes.iter().find(|o| o.order_id == "o5").expect("o5");
    assert!(o5.reason.contains("sweater"), "the reason quotes what was not understood: {}", o5.reason);

    // The garbage landed in dead-letters with its position, and the order after it was decided.
    let letters = common::dead_letters(&dlq, 1).await?;
    assert_eq!(letters[0].payload.as_ref(), [0xff, 0xff, 0xff]);
    assert_eq!(letters[0].topic, world.topic(TopicKind::ChatOrders));
    assert!(letters[0].reason.contains("invalid protobuf"), "{}", letters[0].reason);

    // Checkout: ann cancels (1 L back, bob still waits for 2), cat cancels (2 back: bob promoted),
    // then bob pays; eve pays for her M.
    world.hold(&drop, "o1", false).await?;
    world.hold(&drop, "o3", false).await?;
    world.hold(&drop, "o7", true).await?;
    world.hold(&drop, "nope", true).await?;
    let more = collect(&reader, Duration::from_secs(30), |seen| seen.len() >= 5).await?;
    let by = by_order(&more);
    assert_eq!(by["o1"], [S::Released]);
    assert_eq!(by["o3"], [S::Released]);
    assert_eq!(by["o7"], [S::Confirmed]);
    assert_eq!(by["nope"], [S::Invalid]);
    assert_eq!(by["o2"], [S::Reserved], "promoted from the waitlist: {more:#?}");
    world.hold(&drop, "o2", true).await?;
    world.hold(&drop, "o2", true).await?;
    let last = collect(&reader, Duration::from_secs(30), |seen| seen.len() >= 2).await?;
    assert_eq!(last.iter().map(status).collect::<Vec<_>>(), [S::Confirmed, S::Duplicate]);

    assert_eq!(common::drop_field(&world.settings, &drop, "sold", "HOODIE-L").await?, 2);
    assert_eq!(common::drop_field(&world.settings, &drop, "stock", "HOODIE-L").await?, 0);
    assert_eq!(common::drop_field(&world.settings, &drop, "held", "HOODIE-L").await?, 0);

    stop.cancel();
    matcher.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_holds_return_stock_to_the_waitlist() -> anyhow::Result<()> {
    let world = World::new("expiry", 1).await?;
    let drop = unique("drop");
    let reader = world.reader(TopicKind::Reservations)?;
    let (stop, matcher) = world.spawn_matcher(&unique("group"));
    let open = OpenDrop {
        items: catalog(1, 0, 0),
        limit_per_buyer: 1,
        hold_seconds: 1,
        waitlist: true,
        ..Default::default()
    };
    world.open_and_wait(&drop, open).await?;
    world.order(&drop, "first", "ann", "!buy hoodie m").await?;
    world.order(&drop, "second", "bob", "!buy hoodie m").await?;
    world.order(&drop, "third", "cat", "!buy hoodie m").await?;

    // first: reserved → expired; second: waitlisted → reserved → expired; third: waitlisted → reserved → expired.
    let outcomes = collect(&reader, Duration::from_secs(30), |seen| seen.len() >= 8).await?;
    let by = by_order(&outcomes);
    assert_eq!(by["first"], [S::Reserved, S::Expired], "{outcomes:#?}");
    assert_eq!(by["second"], [S::Waitlisted, S::Reserved, S::Expired]);
    assert_eq!(by["third"][..2], [S::Waitlisted, S::Reserved]);
    let promoted: Vec<&str> = outcomes
        .iter()
        .filter(|o| status(o) == S::Reserved && o.reason.contains("waitlist"))
        .map(|o| o.order_id.as_str())
        .collect();
    assert_eq!(promoted, ["second", "third"], "FIFO promotion");

    // Late payments: every hold has lapsed, the unit is back in stock. The first to pay gets it
    // (paid late); the next finds nothing left: a refund is due. Never oversold.
    world.hold(&drop, "first", true).await?;
    let late =
        collect(&reader, Duration::from_secs(30), |seen| seen.iter().any(|o| o.order_id == "first")).await?;
    let answer = late.iter().find(|o| o.order_id == "first").expect("answer");
    assert_eq!(status(answer), S::Confirmed, "paying after the window, a unit left: {answer:?}");
    assert!(answer.reason.contains("paid after the hold was EXPIRED"), "{answer:?}");
    assert_eq!((answer.buyer_id.as_str(), answer.channel.as_str()), ("ann", "twitch:#test"), "addressed");
    world.hold(&drop, "second", true).await?;
    let late =
        collect(&reader, Duration::from_secs(30), |seen| seen.iter().any(|o| o.order_id == "second")).await?;
    let answer = late.iter().find(|o| o.order_id == "second").expect("answer");
    assert_eq!(status(answer), S::RefundDue, "paying after the window, nothing left: {answer:?}");
    assert_eq!(common::drop_field(&world.settings, &drop, "sold", "HOODIE-M").await?, 1);
    assert_eq!(common::drop_field(&world.settings, &drop, "stock", "HOODIE-M").await?, 0);

    stop.cancel();
    matcher.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_matcher_waits_and_says_it_is_unhealthy() -> anyhow::Result<()> {
    let mut world = World::new("noredis", 1).await?;
    let dead = common::free_addr()?;
    world.settings.redis = format!("redis://{dead}");
    let admin = common::free_addr()?;
    let token = tokio_util::sync::CancellationToken::new();
    let config =
        dropline_matcher::config::MatcherConfig { group: unique("group"), admin, ..Default::default() };
    let matcher = tokio::spawn(dropline_matcher::service::run(world.settings.clone(), config, token.clone()));

    let client = reqwest::Client::new();
    let mut report = None;
    for _ in 0..50 {
        if let Ok(response) = client.get(format!("http://{admin}/healthz")).send().await {
            report = Some((response.status(), response.json::<serde_json::Value>().await?));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = report.ok_or_else(|| anyhow::anyhow!("admin endpoint never answered"))?;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["components"]["redis"]["healthy"], false, "{body}");

    // It keeps retrying instead of exiting, and stops cleanly when asked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!matcher.is_finished());
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), matcher).await???;
    Ok(())
}

/// A matcher that starts after a drop opened loads its catalog by the drop id the order names, not
/// by the message's key: an order keyed wrongly is still understood (it was answered as if the
/// drop had no catalog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_load_by_the_drop_the_order_names() -> anyhow::Result<()> {
    let world = World::new("payload", 1).await?;
    let drop = unique("drop");
    let reader = world.reader(TopicKind::Reservations)?;
    let group = unique("group");
    let (stop, matcher) = world.spawn_matcher(&group);
    world
        .open_and_wait(&drop, OpenDrop { items: catalog(1, 2, 5), hold_seconds: 60, ..Default::default() })
        .await?;
    world.order(&drop, "o1", "ann", "!buy hoodie L").await?;
    let first = collect(&reader, Duration::from_secs(30), |seen| !seen.is_empty()).await?;
    assert_eq!(status(&first[0]), S::Reserved);
    stop.cancel();
    matcher.await?;
    // A fresh matcher (nothing cached), the same group: it starts after the open.
    let (stop, matcher) = world.spawn_matcher(&group);
    let order = dropline_proto::v1::ChatOrder {
        order_id: "o2".into(),
        drop_id: drop.clone(),
        buyer_id: "bob".into(),
        channel: "twitch:#test".into(),
        text: "!buy hoodie L".into(),
        sent_at_ms: dropline_core::kafka::now_ms(),
        ..Default::default()
    };
    use prost::Message as _;
    world.send_raw(TopicKind::ChatOrders, "some-other-key", &order.encode_to_vec()).await?;
    let second = collect(&reader, Duration::from_secs(30), |seen| !seen.is_empty()).await?;
    assert_eq!((second[0].order_id.as_str(), status(&second[0])), ("o2", S::Reserved), "{second:#?}");
    stop.cancel();
    matcher.await?;
    Ok(())
}

/// `staging` and `prod` on one Redis, the same drop id in both: each deployment has its own stock
/// and its own offsets, so both sell their one unit and neither takes the other's orders (at the
/// same offsets of their own topics) for replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_sharing_a_redis_keep_their_drops_apart() -> anyhow::Result<()> {
    let (staging, prod) = (World::new("ns-staging", 1).await?, World::new("ns-prod", 1).await?);
    assert_ne!(staging.settings.keyspace, prod.settings.keyspace);
    let drop = unique("shared-id");
    let open =
        || OpenDrop { items: catalog(1, 0, 0), limit_per_buyer: 1, hold_seconds: 60, ..Default::default() };
    let mut decided = Vec::new();
    for (world, order, buyer) in [(&staging, "o1", "ann"), (&prod, "o2", "bob")] {
        let reader = world.reader(TopicKind::Reservations)?;
        let (stop, matcher) = world.spawn_matcher(&unique("group"));
        world.open_and_wait(&drop, open()).await?;
        world.order(&drop, order, buyer, "!buy hoodie m").await?;
        let outcomes = collect(&reader, Duration::from_secs(10), |seen| !seen.is_empty()).await?;
        decided.push((outcomes[0].order_id.clone(), status(&outcomes[0]), outcomes[0].remaining));
        stop.cancel();
        matcher.await?;
    }
    let want = [("o1".to_owned(), S::Reserved, 0), ("o2".to_owned(), S::Reserved, 0)];
    assert_eq!(decided, want, "each deployment sells its own unit");
    for world in [&staging, &prod] {
        assert_eq!(common::drop_field(&world.settings, &drop, "held", "HOODIE-M").await?, 1);
    }
    Ok(())
}

/// socat forwarding a loopback port to Redis, in a process group of its own so that stopping it
/// also cuts the connections its forks carry (a Redis blip as the matcher sees it).
struct Proxy(std::process::Child);

impl Proxy {
    fn start(port: u16, to: &str) -> anyhow::Result<Proxy> {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("TCP:{to}"))
            .process_group(0)
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(Proxy(child))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("--").arg(format!("-{}", self.0.id())).status();
        let _ = self.0.wait();
    }
}

/// Redis away while a matcher that has not read a drop's catalog yet takes the drop's first
/// order: the order waits for Redis and is decided — never answered UNKNOWN_SKU for want of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_waits_out_a_redis_blip_for_its_catalog() -> anyhow::Result<()> {
    let world = World::new("blip", 1).await?;
    let (seen, unseen) = (unique("blip-seen"), unique("blip-unseen"));
    let group = unique("group");
    let reader = world.reader(TopicKind::Reservations)?;
    let open =
        || OpenDrop { items: catalog(5, 0, 0), limit_per_buyer: 1, hold_seconds: 60, ..Default::default() };
    // One matcher opens both drops and stops.
    let (stop, matcher) = world.spawn_matcher(&group);
    world.open_and_wait(&seen, open()).await?;
    world.open_and_wait(&unseen, open()).await?;
    stop.cancel();
    matcher.await?;

    // The next reaches Redis through a proxy, and has read only `seen`'s catalog when Redis goes.
    let info = redis::IntoConnectionInfo::into_connection_info(world.settings.redis.as_str())?;
    let to = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => anyhow::bail!("this test needs Redis over TCP, not {other:?}"),
    };
    let port = common::free_addr()?.port();
    let proxy = Proxy::start(port, &to)?;
    let mut through = world.settings.clone();
    through.redis = format!("redis://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stop, matcher) = world.spawn_matcher_with(through, &group);
    world.order(&seen, "o0", "ann", "!buy hoodie m").await?;
    let first = collect(&reader, Duration::from_secs(30), |s| s.iter().any(|o| o.order_id == "o0")).await?;
    assert_eq!(status(first.iter().find(|o| o.order_id == "o0").expect("o0")), S::Reserved);

    drop(proxy);
    world.order(&unseen, "o1", "bob", "!buy hoodie m").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _back = Proxy::start(port, &to)?;
    let outcomes =
        collect(&reader, Duration::from_secs(60), |s| s.iter().any(|o| o.order_id == "o1")).await?;
    let o1 = outcomes.iter().find(|o| o.order_id == "o1").expect("o1");
    assert_eq!((status(o1), o1.sku.as_str()), (S::Reserved, "HOODIE-M"), "{o1:?}");
    stop.cancel();
    matcher.await?;
    Ok(())
}
