//! The console's HTTP API against the real stack (Redis, the broker, a matcher in this process):
//! roles and every refusal, a drop from creation to report (computed from the log: equal to
//! Redis's counters, the same after a console restart), drafts edited, the live event stream,
//! markers, and clips served with range requests.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use dropline_core::{kafka, TopicKind};
use dropline_proto::v1::{
    clip_event, ChatActivity, ChatOrder, ClipEvent, ClipReady, ClipReason, ClipRequest,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_4xx_that_says_why() -> Result<()> {
    let c = console().await?;
    let id = unique("refusals");
    c.expect(Method::GET, "/api/drops", None, None, 401, "missing bearer token").await?;
    c.expect(Method::GET, "/api/drops", Some("not-a-known-token-at-all"), None, 401, "unknown token").await?;
    c.expect(
        Method::POST,
        "/api/drops",
        Some(EDITOR),
        Some(drop_body(&id, 3)),
        403,
        "role editor may not create drops",
    )
    .await?;
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(json!({"id": id, "title": "x"})), 422, "items")
        .await?;
    let mut bad = drop_body(&id, 3);
    bad["items"][1]["sku"] = json!("no spaces allowed");
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(bad), 400, "items[1].sku").await?;
    let mut bad = drop_body(&id, 3);
    bad["items"][0]["stock"] = json!(-1);
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(bad), 422, "items[0].stock").await?;
    let mut bad = drop_body(&id, 3);
    bad["hold_seconds"] = json!(1);
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(bad), 400, "hold_seconds").await?;
    let mut bad = drop_body(&id, 3);
    bad["surprise"] = json!(true);
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(bad), 422, "surprise").await?;
    // Not JSON at all.
    let response =
        c.client.post(format!("{}/api/drops", c.base)).bearer_auth(CREATOR).body("{").send().await?;
    ensure!(response.status() == 415, "no content type: {}", response.status());

    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(drop_body(&id, 3)), 201, "").await?;
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(drop_body(&id, 3)), 409, "already exists")
        .await?;
    c.expect(Method::GET, "/api/drops/nope-never-made", Some(PRODUCER), None, 404, "no drop").await?;
    c.expect(Method::GET, "/api/drops/bad%20id", Some(PRODUCER), None, 400, "drop id").await?;
    c.expect(Method::POST, &format!("/api/drops/{id}/close"), Some(CREATOR), None, 409, "not open").await?;
    c.expect(
        Method::POST,
        &format!("/api/drops/{id}/open"),
        Some(PRODUCER),
        None,
        403,
        "role producer may not open drops",
    )
    .await?;
    let restock = json!({"sku": "SOCKS", "quantity": 1});
    c.expect(Method::POST, &format!("/api/drops/{id}/restock"), Some(CREATOR), Some(restock), 400, "sku")
        .await?;
    let hold = json!({"drop_id": id});
    c.expect(
        Method::POST,
        "/api/holds/o-1/confirm",
        Some(CREATOR),
        Some(hold.clone()),
        403,
        "needs producer",
    )
    .await?;
    c.expect(Method::POST, "/api/holds/o-1/confirm", Some(PRODUCER), Some(json!({})), 422, "drop_id").await?;
    c.expect(Method::GET, "/api/clips", Some("x"), None, 401, "unknown token").await?;
    c.expect(Method::GET, "/api/clips/none", Some(EDITOR), None, 404, "no clip").await?;
    c.expect(Method::GET, "/no/such/route", Some(EDITOR), None, 404, "no such route").await?;

    // Writes are rate-limited per token (5/s, bursts of 10); other tokens are not affected.
    let mut limited = false;
    for n in 0..30 {
        let (status, body) =
            c.call(Method::POST, "/api/drops", Some(BURST), Some(drop_body(&format!("{id}-{n}"), 1))).await?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            ensure!(body["error"].as_str().is_some_and(|m| m.contains("rate limit")), "{body}");
            limited = true;
            break;
        }
    }
    ensure!(limited, "30 quick writes were never limited");
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(drop_body(&unique("other"), 1)), 201, "")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_from_creation_to_report() -> Result<()> {
    let mut c = console().await?;
    let id = unique("flow");
    let producer = kafka::producer(&c.settings, "test")?;
    // A co-op of two channels: the creator's (70 %) and a friend's (30 %).
    let mut body = drop_body(&id, 2);
    body["partners"] = json!([{"channel": "twitch:#creator", "share_bp": 7000}, {"channel": "Twitch:#friend", "share_bp": 3000}]);
    let mut bad = body.clone();
    bad["partners"][1]["share_bp"] = json!(2000);
    c.expect(
        Method::POST,
        "/api/drops",
        Some(CREATOR),
        Some(bad),
        400,
        "partners: the shares add up to 9000",
    )
    .await?;
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(body), 201, "").await?;
    let listed = c.expect(Method::GET, "/api/drops", Some(EDITOR), None, 200, "").await?;
    ensure!(listed.as_array().is_some_and(|a| a.iter().any(|d| d["id"] == id.as_str())), "{listed}");
    let opened =
        c.expect(Method::POST, &format!("/api/drops/{id}/open"), Some(CREATOR), None, 202, "").await?;
    ensure!(opened["status"] == "open", "{opened}");
    c.expect(Method::POST, &format!("/api/drops/{id}/open"), Some(CREATOR), None, 409, "not a draft").await?;

    // The live stream answers at once with a snapshot.
    let url = format!("{}/api/drops/{id}/live?access_token={PRODUCER}", c.base);
    let mut events = c.client.get(url).send().await?;
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk()).await??.context("no event")?;
    let text = String::from_utf8_lossy(&first);
    ensure!(text.contains("event: snapshot") && text.contains("HOODIE-L"), "{text}");
    drop(events);
    let editor = c.client.get(format!("{}/api/drops/{id}/live?access_token={EDITOR}", c.base)).send().await?;
    ensure!(editor.status() == 403, "an editor watches buyers in the live view: {}", editor.status());

    // Chat on both channels, as ingest counts it; three viewers on the creator's channel want the
    // two hoodies, one on the friend's wants a tee.
    let activity = c.settings.topics.name(TopicKind::ChatActivity).to_owned();
    for (channel, lines) in [("twitch:#creator", 30), ("twitch:#friend", 12)] {
        let now = kafka::now_ms();
        let counted = ChatActivity {
            drop_id: id.clone(),
            channel: channel.into(),
            lines,
            commands: 3,
            from_ms: now - 1_000,
            to_ms: now,
        };
        kafka::publish(&producer, &activity, &id, &counted).await?;
    }
    let chat = c.settings.topics.name(TopicKind::ChatOrders).to_owned();
    let orders = [
        ("o0", "twitch:#creator", "!buy hoodie L"),
        ("o1", "twitch:#creator", "!buy hoodie L"),
        ("o2", "twitch:#creator", "!buy hoodie L"),
        ("f0", "twitch:#friend", "!buy tee M"),
    ];
    for (n, (order_id, channel, text)) in orders.into_iter().enumerate() {
        let order = ChatOrder {
            order_id: format!("{id}-{order_id}"),
            drop_id: id.clone(),
            buyer_id: format!("twitch:{n}"),
            channel: channel.into(),
            text: text.into(),
            sent_at_ms: kafka::now_ms(),
            ..Default::default()
        };
        kafka::publish(&producer, &chat, &id, &order).await?;
    }
    let path = format!("/api/drops/{id}");
    let state = until(&c, &path, PRODUCER, |s| {
        s["skus"][0]["reserved"] == 2 && s["skus"][0]["sold_out"] == true && s["skus"][1]["reserved"] == 1
    })
    .await?;
    ensure!(state["skus"][0]["left"] == 0 && state["holds_pending"] == 3, "{state}");

    let hold = json!({"drop_id": id});
    for order in ["o0", "f0"] {
        c.expect(
            Method::POST,
            &format!("/api/holds/{id}-{order}/confirm"),
            Some(PRODUCER),
            Some(hold.clone()),
            202,
            "",
        )
        .await?;
    }
    c.expect(Method::POST, &format!("/api/holds/{id}-o1/cancel"), Some(PRODUCER), Some(hold), 202, "")
        .await?;
    until(&c, &path, PRODUCER, |s| s["skus"][0]["confirmed"] == 1 && s["skus"][0]["left"] == 1).await?;
    c.expect(
        Method::POST,
        &format!("/api/drops/{id}/restock"),
        Some(CREATOR),
        Some(json!({"sku": "TEE-M", "quantity": 5})),
        202,
        "",
    )
    .await?;
    let state = until(&c, &path, PRODUCER, |s| s["skus"][1]["left"] == 14).await?;

    let report_path = format!("/api/drops/{id}/report");
    let report = until(&c, &report_path, CREATOR, |r| {
        r["outcomes"]["CONFIRMED"] == 2 && r["skus"][1]["total"] == 15 && r["outcomes"]["RELEASED"] == 1
    })
    .await?;
    ensure!(report["revenue_cents"] == 9000, "{report}");
    ensure!(report["outcomes"]["RESERVED"] == 3 && report["outcomes"]["SOLD_OUT"] == 1, "{report}");
    // The report comes from the log; its totals are Redis's counters.
    for (from_log, from_redis) in
        report["skus"].as_array().into_iter().flatten().zip(state["skus"].as_array().into_iter().flatten())
    {
        for field in ["sku", "total", "left", "reserved", "confirmed", "waitlisted", "sold_out"] {
            ensure!(from_log[field] == from_redis[field], "{field}: log {from_log} vs Redis {from_redis}");
        }
    }
    // The funnel per channel: chat lines → orders → holds → paid.
    let funnel = |channel: &str| {
        report["funnel"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["channel"] == channel))
            .cloned()
            .unwrap_or_default()
    };
    let creator = funnel("twitch:#creator");
    let wanted = json!([30, 3, 3, 2, 1, 1, 1, 6500]);
    let got = json!([
        creator["lines_seen"],
        creator["orders"],
        creator["decided"],
        creator["reserved"],
        creator["paid"],
        creator["released"],
        creator["refused"],
        creator["revenue_cents"]
    ]);
    ensure!(got == wanted, "creator's funnel {got} != {wanted}: {report}");
    let friend = funnel("twitch:#friend");
    ensure!(
        friend["lines_seen"] == 12
            && friend["orders"] == 1
            && friend["paid"] == 1
            && friend["revenue_cents"] == 2500,
        "{friend}"
    );
    let all = funnel("all");
    ensure!(
        all["lines_seen"] == 42 && all["orders"] == 4 && all["paid"] == 2 && all["pay_rate"] == 2.0 / 3.0,
        "{all}"
    );
    ensure!(report["buyers"]["unique"] == 4 && report["buyers"]["paying"] == 2, "{report}");
    ensure!(
        report["moments"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["kind"] == "restock" && x["label"] == "+5 TEE-M")),
        "{report}"
    );
    // 9,000 cents: 6,300 and 2,700, adding up exactly; each channel's orders and revenue its own.
    ensure!(
        report["partners"][0]["payout_cents"] == 6300 && report["partners"][1]["payout_cents"] == 2700,
        "{report}"
    );
    ensure!(
        report["partners"][0]["orders"] == 3
            && report["partners"][1]["channel"] == "twitch:#friend"
            && report["partners"][1]["revenue_cents"] == 2500,
        "{report}"
    );
    ensure!(report["payout_rule"].as_str().is_some_and(|r| r.contains("largest fractions")), "{report}");
    // The buyer list for the creator's CRM: the one paid order, with who, where, what and when.
    let buyers = |token: &'static str| {
        c.client.get(format!("{}/api/drops/{id}/buyers.csv", c.base)).bearer_auth(token).send()
    };
    ensure!(buyers(EDITOR).await?.status() == 403, "an editor reads buyer ids");
    let response = buyers(CREATOR).await?;
    ensure!(response.status() == 200, "buyers.csv: {}", response.status());
    ensure!(response.headers()["content-type"] == "text/csv; charset=utf-8", "{:?}", response.headers());
    let csv = response.text().await?;
    let rows: Vec<&str> = csv.lines().collect();
    ensure!(rows.len() == 3 && rows[0].starts_with("buyer_id,display_name,channel,order_id,sku"), "{csv}");
    ensure!(
        rows.iter().any(|r| r.starts_with("twitch:0,")
            && r.contains(&format!(",twitch:#creator,{id}-o0,HOODIE-L,1,6500,"))),
        "{csv}"
    );
    ensure!(rows.iter().any(|r| r.contains(&format!(",twitch:#friend,{id}-f0,TEE-M,1,2500,"))), "{csv}");
    // The report as CSV: a row per SKU, per partner, and the total.
    let response =
        c.client.get(format!("{}/api/drops/{id}/report.csv", c.base)).bearer_auth(PRODUCER).send().await?;
    let csv = response.text().await?;
    let rows: Vec<&str> = csv.lines().collect();
    ensure!(rows.iter().any(|r| r.starts_with("sku,HOODIE-L,") && r.contains(",6500,")), "{csv}");
    ensure!(
        rows.iter().any(|r| r.starts_with("channel,twitch:#friend,") && r.contains(",12,1,1,2500,")),
        "{csv}"
    );
    ensure!(
        rows.iter().any(|r| r.starts_with("partner,twitch:#friend,") && r.ends_with(",3000,2700")),
        "{csv}"
    );
    ensure!(rows.last().is_some_and(|r| r.starts_with("total,") && r.contains(",42,4,2,9000,")), "{csv}");
    ensure!(report["skus"][0]["sold_out_after_ms"].as_i64().is_some_and(|ms| ms >= 0), "{report}");

    // A restarted console reads the log again and arrives at the same report.
    c.restart().await?;
    let again = until(&c, &report_path, PRODUCER, |_| true).await?;
    ensure!(again == report, "after a restart:\n{again}\nbefore:\n{report}");
    // The page: every chart drawn on the server, for creators and producers only.
    let page = c.client.get(format!("{}/report/{id}", c.base)).bearer_auth(PRODUCER).send().await?;
    ensure!(page.status() == 200, "report page: {}", page.status());
    let html = page.text().await?;
    for needle in [
        "Orders over time",
        "Stock left per SKU",
        "Funnel of twitch:#friend",
        "Revenue per SKU",
        "Revenue per channel",
        "@page { size: A4",
        "largest fractions",
    ] {
        ensure!(html.contains(needle), "report page lacks {needle:?}");
    }
    ensure!(html.matches("<svg").count() >= 6, "charts: {}", html.matches("<svg").count());
    let refused = c.client.get(format!("{}/report/{id}", c.base)).bearer_auth(EDITOR).send().await?;
    ensure!(
        refused.status() == 403 && refused.text().await?.contains("may not read reports"),
        "an editor reads the report"
    );

    // A producer's marker becomes a clip request for the drop's recording.
    let requests = reader(&c.settings, TopicKind::ClipRequests).await?;
    let accepted = c
        .expect(
            Method::POST,
            &format!("/api/drops/{id}/markers"),
            Some(PRODUCER),
            Some(json!({"note": "unboxing"})),
            202,
            "",
        )
        .await?;
    let request: ClipRequest = next(&requests).await?;
    ensure!(request.clip_id == accepted["clip_id"].as_str().unwrap_or_default(), "{request:?}");
    ensure!(request.reason == ClipReason::Marker as i32 && request.recording == "stream.ts", "{request:?}");

    let closed = c
        .expect(
            Method::POST,
            &format!("/api/drops/{id}/close"),
            Some(CREATOR),
            Some(json!({"reason": "done"})),
            202,
            "",
        )
        .await?;
    ensure!(closed["status"] == "closed", "{closed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_are_listed_and_served_with_ranges() -> Result<()> {
    let c = console().await?;
    let drop_dir = c.settings.clips.join("d1");
    std::fs::create_dir_all(&drop_dir)?;
    let video = drop_dir.join("c1.mp4");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&video, &bytes)?;
    std::fs::write(drop_dir.join("c1.jpg"), b"\xff\xd8jpeg")?;
    let outside = tempfile::NamedTempFile::new()?;
    let producer = kafka::producer(&c.settings, "test")?;
    let topic = c.settings.topics.name(TopicKind::Clips).to_owned();
    for (clip_id, path, thumb) in [
        ("c1", video.display().to_string(), drop_dir.join("c1.jpg").display().to_string()),
        ("sneaky", outside.path().display().to_string(), String::new()),
    ] {
        let ready = ClipReady {
            clip_id: clip_id.into(),
            drop_id: "d1".into(),
            path,
            thumbnail_path: thumb,
            duration_ms: 45_000,
            size_bytes: 10_000,
            reason: ClipReason::SoldOut as i32,
            ..Default::default()
        };
        let event = ClipEvent { event: Some(clip_event::Event::Ready(ready)) };
        kafka::publish(&producer, &topic, "d1", &event).await?;
    }
    let clips =
        until(&c, "/api/clips?drop_id=d1", EDITOR, |l| l.as_array().is_some_and(|a| a.len() == 2)).await?;
    ensure!(clips[1]["clip_id"] == "c1" && clips[1]["reason"] == "SOLD_OUT", "{clips}");
    ensure!(clips[1]["video_url"] == "/clips/c1/video", "{clips}");
    let none = c.expect(Method::GET, "/api/clips?drop_id=other", Some(EDITOR), None, 200, "").await?;
    ensure!(none.as_array().is_some_and(Vec::is_empty), "{none}");

    let response = c
        .client
        .get(format!("{}/clips/c1/video?access_token={EDITOR}", c.base))
        .header("Range", "bytes=100-199")
        .send()
        .await?;
    ensure!(response.status() == StatusCode::PARTIAL_CONTENT, "{}", response.status());
    ensure!(response.bytes().await?.as_ref() == &bytes[100..200], "wrong range");
    let whole = c.client.get(format!("{}/clips/c1/video", c.base)).bearer_auth(PRODUCER).send().await?;
    ensure!(whole.status() == 200 && whole.bytes().await?.len() == 10_000);
    c.expect(Method::GET, "/clips/c1/vertical", Some(EDITOR), None, 404, "no vertical").await?;
    c.expect(Method::GET, "/clips/sneaky/video", Some(EDITOR), None, 404, "gone").await?;
    c.expect(Method::GET, "/clips/c1/video", None, None, 401, "missing").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_metrics_and_probes() -> Result<()> {
    let c = console().await?;
    let doc: Value = c.client.get(format!("{}/openapi.json", c.base)).send().await?.json().await?;
    for path in [
        "/api/drops",
        "/api/drops/{id}/open",
        "/api/holds/{order_id}/confirm",
        "/api/clips",
        "/clips/{id}/video",
    ] {
        ensure!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    ensure!(doc["components"]["schemas"]["CreateDrop"].is_object(), "schemas missing");
    // Body refusals are documented where a body is read, and only there.
    let responses = |path: &str| doc["paths"][path]["post"]["responses"].clone();
    for status in ["413", "415", "422"] {
        ensure!(
            responses("/api/drops")[status]["content"]["application/json"].is_object(),
            "{status} on create"
        );
        ensure!(responses("/api/drops/{id}/open")[status].is_null(), "{status} on a bodiless POST");
    }
    ensure!(responses("/api/drops/{id}/open")["404"].is_object(), "404 where a path names a drop");
    ensure!(c.client.get(format!("{}/healthz", c.base)).send().await?.status() == 200);
    let mut ready = false;
    for _ in 0..100 {
        if c.client.get(format!("{}/readyz", c.base)).send().await?.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(ready, "never ready");
    // /readyz is public: a burst of probes costs one dependency check per cache period, not one each.
    let checks = |metrics: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("dropline_console_readiness_checks_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1)
    };
    let before = checks(&c.client.get(format!("{}/metrics", c.base)).send().await?.text().await?);
    let burst = (0..40).map(|_| c.client.get(format!("{}/readyz", c.base)).send());
    for answer in futures::future::join_all(burst).await {
        ensure!(answer?.status() == 200, "a cached readiness answer");
    }
    let after = checks(&c.client.get(format!("{}/metrics", c.base)).send().await?.text().await?);
    ensure!(before >= 1 && after - before <= 1, "40 probes ran {} checks", after - before);
    c.call(Method::GET, "/api/drops", Some(EDITOR), None).await?;
    let metrics = c.client.get(format!("{}/metrics", c.base)).send().await?.text().await?;
    ensure!(
        metrics.contains("dropline_console_requests_total{route=\"/api/drops\",status=\"200\"}"),
        "{metrics}"
    );
    let page = c.client.get(format!("{}/", c.base)).send().await?.text().await?;
    ensure!(page.contains("EventSource"), "live page");
    Ok(())
}

/// A creator uploads the shop's products export and gets draft items (and the rows skipped, and
/// why); a bad file is refused whole with each bad row named; the items create a drop as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_export_becomes_the_items_of_a_drop() -> Result<()> {
    let c = console().await?;
    let export = "\u{feff}Handle,Title,Option1 Name,Option1 Value,Variant SKU,Variant Price,Variant Inventory Qty,Image Src\n\
logo-hoodie,\"Logo Hoodie, heavy\",Size,M,HOODIE-M,49.00,20,https://cdn.example/h.jpg\n\
logo-hoodie,,,L,HOODIE-L,49.00,12,\n\
logo-hoodie,,,,,,,https://cdn.example/h2.jpg\n";
    let post = |token: &'static str, body: &'static str| {
        c.client.post(format!("{}/api/import/catalog", c.base)).bearer_auth(token).body(body).send()
    };
    let response = post(EDITOR, export).await?;
    ensure!(response.status() == 403, "an editor imports: {}", response.status());
    let response = post(CREATOR, export).await?;
    ensure!(response.status() == 200, "import: {} {}", response.status(), response.text().await?);
    let imported: Value = response.json().await?;
    ensure!(imported["format"] == "shopify_legacy", "{imported}");
    let skus: Vec<&str> =
        imported["items"].as_array().context("items")?.iter().filter_map(|i| i["sku"].as_str()).collect();
    ensure!(skus == ["HOODIE-M", "HOODIE-L"], "{imported}");
    ensure!(imported["items"][1]["name"] == "Logo Hoodie, heavy", "the title carries over: {imported}");
    ensure!(imported["skipped"][0]["line"] == 4, "the image row is skipped: {imported}");

    let response = post(CREATOR, "sku,name,stock\nCAP,cap,5\nCAP,cap,-1\n").await?;
    ensure!(response.status() == 400, "a bad file: {}", response.status());
    let refused: Value = response.json().await?;
    ensure!(refused["error"].as_str().is_some_and(|e| e.starts_with("body: ")), "{refused}");
    let rows = refused["rows"].as_array().context("rows")?;
    ensure!(rows.len() == 2 && rows[0]["field"] == "sku" && rows[1]["field"] == "stock", "{refused}");
    let response = post(CREATOR, "colour,count\nred,1\n").await?;
    ensure!(response.status() == 400, "not an export: {}", response.status());

    let id = unique("imported");
    let body = json!({ "id": id, "title": "Imported", "items": imported["items"], "hold_seconds": 60 });
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(body), 201, "").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_are_edited_until_they_open() -> Result<()> {
    let c = console().await?;
    let id = unique("draft");
    let path = format!("/api/drops/{id}");
    c.expect(Method::PUT, &path, Some(CREATOR), Some(drop_body(&id, 3)), 404, "no drop").await?;
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(drop_body(&id, 3)), 201, "").await?;
    let mut edit = drop_body(&id, 7);
    edit["title"] = json!("Winter hoodies");
    c.expect(Method::PUT, &path, Some(PRODUCER), Some(edit.clone()), 403, "may not edit drops").await?;
    c.expect(
        Method::PUT,
        &path,
        Some(CREATOR),
        Some(drop_body("other", 3)),
        400,
        "id: \"other\" is not the drop",
    )
    .await?;
    let mut bad = edit.clone();
    bad["items"][1]["stock"] = json!(-3);
    c.expect(Method::PUT, &path, Some(CREATOR), Some(bad), 422, "items[1].stock").await?;
    let saved = c.expect(Method::PUT, &path, Some(CREATOR), Some(edit.clone()), 200, "").await?;
    ensure!(saved["title"] == "Winter hoodies" && saved["items"][0]["stock"] == 7, "{saved}");
    let state = c.expect(Method::GET, &path, Some(PRODUCER), None, 200, "").await?;
    ensure!(state["drop"]["title"] == "Winter hoodies" && state["skus"][0]["left"] == 7, "{state}");
    // A draft's report is its catalog, nothing sold.
    let report = until(&c, &format!("{path}/report"), CREATOR, |_| true).await?;
    ensure!(
        report["status"] == "draft" && report["skus"][0]["total"] == 7 && report["revenue_cents"] == 0,
        "{report}"
    );
    c.expect(Method::POST, &format!("{path}/open"), Some(CREATOR), None, 202, "").await?;
    c.expect(Method::PUT, &path, Some(CREATOR), Some(edit), 409, "only a draft can be edited").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_funnel_counts_what_a_crowd_typed() -> Result<()> {
    let c = console().await?;
    let id = unique("crowd");
    let mut body = drop_body(&id, 20);
    body["channels"] = json!(["twitch:#creator", "twitch:#friend"]);
    body["partners"] = json!([{"channel": "twitch:#creator", "share_bp": 6000}, {"channel": "twitch:#friend", "share_bp": 4000}]);
    body["items"][0]["aliases"] = json!(["hoody", "hodie"]);
    body["items"][1]["sku"] = json!("TEE-BLACK-M");
    body["items"][1]["name"] = json!("tee black");
    body["items"][1]["aliases"] = json!(["shirt black"]);
    c.create_and_open(body).await?;
    let templates = dropline_load::crowd::load_lines(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../load-tests/demo-chat.txt"
    )))?;
    let crowd = dropline_load::crowd::Crowd {
        drop_id: id.clone(),
        viewers: 300,
        seconds: 4,
        rate: 50.0,
        confirm: 0.5,
        linger: Duration::from_secs(4),
        seed: 11,
        channels: vec!["twitch:#creator".into(), "twitch:#friend".into()],
    };
    let typed = dropline_load::crowd::run(&c.settings, &crowd, &templates).await?;
    ensure!(typed.orders > 0 && typed.paid > 0 && typed.per_channel.len() == 2, "{typed:?}");
    let report = until(&c, &format!("/api/drops/{id}/report"), PRODUCER, |r| {
        r["funnel"].as_array().is_some_and(|f| {
            f.iter()
                .find(|x| x["channel"] == "all")
                .is_some_and(|all| all["paid"] == typed.paid && all["lines_seen"] == typed.lines)
        })
    })
    .await?;
    for (channel, counted) in &typed.per_channel {
        let f = report["funnel"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["channel"] == channel.as_str()))
            .cloned();
        let f = f.with_context(|| format!("no funnel for {channel}: {report}"))?;
        let got = json!([f["lines_seen"], f["orders"], f["decided"], f["paid"]]);
        let want = json!([counted.lines, counted.orders, counted.orders, counted.paid]);
        ensure!(got == want, "{channel}: the report says {got}, the crowd counted {want} ({counted:?})");
    }
    let paid: u64 =
        report["partners"].as_array().into_iter().flatten().filter_map(|p| p["paid"].as_u64()).sum();
    ensure!(paid == typed.paid, "partners' paid orders {paid} != {}", typed.paid);
    let payouts: i64 =
        report["partners"].as_array().into_iter().flatten().filter_map(|p| p["payout_cents"].as_i64()).sum();
    ensure!(Some(payouts) == report["revenue_cents"].as_i64(), "payouts add up to the revenue: {report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_matcher_agree_on_skus_and_catalog_fields() -> Result<()> {
    let c = console().await?;
    // What the matcher would refuse, the console refuses first, in the same words, naming the field.
    fn big(i: usize) -> Value {
        json!({"sku": format!("SKU-{i}"), "name": "n".repeat(100), "product": "p".repeat(100),
            "size": "s".repeat(100), "aliases": vec!["a".repeat(100); 20], "stock": 1})
    }
    type Change = fn(&mut Value);
    let cases: [(Change, &str); 5] = [
        (|b| b["items"][1]["sku"] = json!("TEE.M"), "items[1].sku: SKU \"TEE.M\" contains '.'"),
        (
            |b| b["items"][0]["aliases"] = json!(["hoody".repeat(200_000)]),
            "items[0].aliases: alias #0 is 1000000 bytes long",
        ),
        (|b| b["items"][1]["sku"] = json!("hoodie-l"), "items[1].sku: HOODIE-L repeats items[0]"),
        (|b| b["recording"] = json!("r".repeat(600)), "recording: must be a path of at most 500 bytes"),
        (|b| b["items"] = json!((0..300).map(big).collect::<Vec<_>>()), "items: the catalog is"),
    ];
    for (change, needle) in cases {
        let mut body = drop_body(&unique("refused"), 2);
        change(&mut body);
        c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(body), 400, needle).await?;
    }

    // A SKU typed in lower case is counted under its canonical form: the live numbers and the
    // restock find it.
    let id = unique("lower");
    let mut body = drop_body(&id, 2);
    body["items"][0]["sku"] = json!("hoodie-l");
    c.create_and_open(body).await?;
    let producer = kafka::producer(&c.settings, "test")?;
    let order = ChatOrder {
        order_id: format!("{id}-o1"),
        drop_id: id.clone(),
        buyer_id: "twitch:1".into(),
        channel: "twitch:#creator".into(),
        text: "!buy hoodie L".into(),
        sent_at_ms: kafka::now_ms(),
        ..Default::default()
    };
    kafka::publish(&producer, c.settings.topics.name(TopicKind::ChatOrders), &id, &order).await?;
    let path = format!("/api/drops/{id}");
    let state = until(&c, &path, PRODUCER, |s| s["skus"][0]["reserved"] == 1).await?;
    ensure!(state["skus"][0]["sku"] == "HOODIE-L" && state["skus"][0]["left"] == 1, "{state}");
    let restock = json!({"sku": "Hoodie-L", "quantity": 3});
    c.expect(Method::POST, &format!("{path}/restock"), Some(CREATOR), Some(restock), 202, "").await?;
    until(&c, &path, PRODUCER, |s| s["skus"][0]["left"] == 4 && s["skus"][0]["total"] == 5).await?;
    Ok(())
}

/// The value of an unlabelled counter on the console's `/metrics`.
async fn counter(c: &Console, name: &str) -> Result<f64> {
    let text = c.client.get(format!("{}/metrics", c.base)).send().await?.text().await?;
    let line =
        text.lines().find(|l| l.starts_with(&format!("{name} "))).with_context(|| format!("no {name}"))?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_share_one_snapshot_per_tick_and_are_capped() -> Result<()> {
    let c = console_with(&[("DROPLINE_CONSOLE_MAX_STREAMS", "12")]).await?;
    let id = unique("streams");
    c.create_and_open(drop_body(&id, 5)).await?;
    let url = format!("{}/api/drops/{id}/live?access_token={PRODUCER}", c.base);
    let before = counter(&c, "dropline_console_snapshots_total").await?;
    let mut streams = Vec::new();
    for _ in 0..12 {
        let mut stream = c.client.get(&url).send().await?;
        ensure!(stream.status() == 200, "stream: {}", stream.status());
        let first =
            tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await??.context("no event")?;
        ensure!(String::from_utf8_lossy(&first).contains("event: snapshot"));
        streams.push(stream);
    }
    // Twelve viewers of one drop for a second and a half: the snapshots built are the drop's ticks,
    // not twelve times as many (at most one per 100 ms, and one a second when nothing happens).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let built = counter(&c, "dropline_console_snapshots_total").await? - before;
    ensure!((1.0..=4.0).contains(&built), "{built} snapshots for 12 streams of one quiet drop");
    // The thirteenth is refused, saying why; a place frees when a stream closes.
    let refused = c.client.get(&url).send().await?;
    ensure!(refused.status() == 503, "over the cap: {}", refused.status());
    ensure!(refused.text().await?.contains("too many live streams open (12)"));
    streams.pop();
    let mut admitted = false;
    for _ in 0..50 {
        if c.client.get(&url).send().await?.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(admitted, "a closed stream's place never came free");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_polls_share_the_drops_snapshot() -> Result<()> {
    let c = console().await?;
    let id = unique("overlay-polls");
    c.create_and_open(drop_body(&id, 5)).await?;
    let url = format!("{}/api/overlay/{id}", c.base);
    let before = counter(&c, "dropline_console_snapshots_total").await?;
    // The overlay is public: anyone can poll it, as often and as many at once as they like.
    let burst = (0..40).map(|_| c.client.get(&url).send());
    for answer in futures::future::join_all(burst).await {
        let answer = answer?;
        ensure!(answer.status() == 200, "overlay poll: {}", answer.status());
        let view: Value = answer.json().await?;
        ensure!(view["skus"].is_array(), "{view}");
    }
    for _ in 0..20 {
        ensure!(c.client.get(&url).send().await?.status() == 200);
    }
    let built = counter(&c, "dropline_console_snapshots_total").await? - before;
    ensure!((1.0..=6.0).contains(&built), "{built} snapshots for 60 polls of one drop");
    let missing = c.client.get(format!("{}/api/overlay/{}", c.base, unique("nope"))).send().await?;
    ensure!(missing.status() == 404, "an unknown drop: {}", missing.status());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_shot_by_several_cameras_marks_every_angle() -> Result<()> {
    let c = console().await?;
    let id = unique("angles");
    let angles = json!([
        {"name": "creator", "recording": "creator.mp4"},
        {"name": "product", "recording": "product.mp4"}
    ]);
    let with = |angles: Value, main: &str| {
        let mut body = drop_body(&id, 3);
        body["recording"] = json!("");
        body["angles"] = angles;
        body["main_angle"] = json!(main);
        body
    };
    let twice = json!([{"name": "cam", "recording": "a.mp4"}, {"name": "cam", "recording": "b.mp4"}]);
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(with(twice, "")), 400, "angles[1].name").await?;
    let nameless = json!([{"name": "../x", "recording": "a.mp4"}]);
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(with(nameless, "")), 400, "angles[0].name")
        .await?;
    let unrecorded = json!([{"name": "cam", "recording": ""}]);
    c.expect(
        Method::POST,
        "/api/drops",
        Some(CREATOR),
        Some(with(unrecorded, "")),
        400,
        "angles[0].recording",
    )
    .await?;
    c.expect(
        Method::POST,
        "/api/drops",
        Some(CREATOR),
        Some(with(angles.clone(), "nope")),
        400,
        "main_angle",
    )
    .await?;
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(with(angles, "product")), 201, "").await?;

    let requests = reader(&c.settings, TopicKind::ClipRequests).await?;
    let accepted = c
        .expect(Method::POST, &format!("/api/drops/{id}/markers"), Some(PRODUCER), Some(json!({})), 202, "")
        .await?;
    let moment = accepted["moment_id"].as_str().unwrap_or_default().to_owned();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let request: ClipRequest = next(&requests).await?;
        ensure!(request.moment_id == moment && request.exact, "{request:?}");
        seen.push((request.angle.clone(), request.recording.clone(), request.clip_id.clone()));
    }
    seen.sort();
    ensure!(
        seen == [
            ("creator".into(), "creator.mp4".into(), format!("{moment}-creator")),
            ("product".into(), "product.mp4".into(), format!("{moment}-product"))
        ],
        "{seen:?}"
    );
    ensure!(accepted["clip_ids"].as_array().is_some_and(|a| a.len() == 2), "{accepted}");

    // The gallery's list says which moment and which angle each clip is.
    let producer = kafka::producer(&c.settings, "test")?;
    let dir = c.settings.clips.join(&id);
    std::fs::create_dir_all(&dir)?;
    for (angle, _, clip_id) in &seen {
        let video = dir.join(format!("{clip_id}.mp4"));
        std::fs::write(&video, format!("the {angle} angle"))?;
        let ready = ClipReady {
            clip_id: clip_id.clone(),
            drop_id: id.clone(),
            path: video.display().to_string(),
            moment_id: moment.clone(),
            angle: angle.clone(),
            reason: ClipReason::Marker as i32,
            ..Default::default()
        };
        let event = ClipEvent { event: Some(clip_event::Event::Ready(ready)) };
        kafka::publish(&producer, c.settings.topics.name(TopicKind::Clips), &id, &event).await?;
    }
    let path = format!("/api/clips?drop_id={id}");
    let clips = until(&c, &path, EDITOR, |l| l.as_array().is_some_and(|a| a.len() == 2)).await?;
    let clips = clips.as_array().cloned().unwrap_or_default();
    ensure!(clips.iter().all(|v| v["moment_id"] == json!(moment)), "{clips:?}");
    ensure!(clips.iter().any(|v| v["angle"] == "product"), "{clips:?}");

    // Every file of the moment in one download.
    let response =
        c.client.get(format!("{}/moments/{moment}/download", c.base)).bearer_auth(EDITOR).send().await?;
    ensure!(response.status() == 200, "download: {}", response.status());
    ensure!(response.headers()["content-type"] == "application/zip");
    let bytes = response.bytes().await?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))?;
    let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    names.sort();
    ensure!(names == [format!("{moment}-creator.mp4"), format!("{moment}-product.mp4")], "{names:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(&format!("{moment}-product.mp4"))?, &mut text)?;
    ensure!(text == "the product angle", "{text}");
    c.expect(Method::GET, "/moments/no-such-moment/download", Some(EDITOR), None, 404, "no clip files")
        .await?;
    c.expect(Method::GET, "/moments/bad%20id/download", Some(EDITOR), None, 400, "moment_id").await?;
    Ok(())
}
