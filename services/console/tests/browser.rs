//! The live page and the gallery in a real browser: headless Chromium driven through chromedriver
//! (WebDriver over HTTP). A small drop runs; the test watches a stock bar fall and the sold-out
//! badge appear, then opens the gallery; screenshots land in `target/screenshots/`.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use common::browser::Browser;
use common::*;
use dropline_core::{kafka, TopicKind};
use dropline_proto::v1::{clip_event, ChatOrder, ClipEvent, ClipReady, ClipReason};
use reqwest::Method;
use serde_json::{json, Value};

/// What the page shows for one SKU: `(units left, bar width in %, sold-out badge text)`.
const SKU_ROW: &str = r#"
    const row = document.querySelector('[data-sku="HOODIE-L"]');
    if (!row) return null;
    const badge = row.querySelector('.sold-out');
    return [Number(row.dataset.left), parseFloat(row.querySelector('.bar').style.width), badge ? badge.textContent : ''];
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_stock_fall_and_the_gallery_shows_clips() -> Result<()> {
    let c = console().await?;
    let id = unique("browser");
    let mut body = drop_body(&id, 4);
    body["title"] = json!("Fall hoodies — live");
    c.expect(Method::POST, "/api/drops", Some(CREATOR), Some(body), 201, "").await?;
    c.expect(Method::POST, &format!("/api/drops/{id}/open"), Some(CREATOR), None, 202, "").await?;

    let browser = Browser::start().await?;
    browser.open(&format!("{}/?token={PRODUCER}&drop={id}", c.base)).await?;
    // The login URL signed the browser in with a cookie the page's script cannot read, and the
    // token left the address bar.
    let (address, cookies) =
        (browser.eval("return location.href").await?, browser.eval("return document.cookie").await?);
    ensure!(
        address.as_str().is_some_and(|a| !a.contains("token") && a.ends_with(&format!("/?drop={id}"))),
        "{address}"
    );
    ensure!(
        cookies.as_str().is_some_and(|c| !c.contains("dropline_session")),
        "an HttpOnly cookie: {cookies}"
    );
    let mut seen_widths = Vec::new();
    let mut ready = false;
    for _ in 0..100 {
        let row = browser.eval(SKU_ROW).await?;
        if row[0] == 4 && row[1].as_f64() == Some(100.0) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(ready, "the live page never showed 4 hoodies with a full bar");

    // Five viewers for four hoodies, a moment apart so the bar moves in steps.
    let producer = kafka::producer(&c.settings, "test")?;
    let chat = c.settings.topics.name(TopicKind::ChatOrders).to_owned();
    for n in 0..5 {
        let order = ChatOrder {
            order_id: format!("{id}-b{n}"),
            drop_id: id.clone(),
            buyer_id: format!("twitch:viewer{n}"),
            channel: "twitch:#creator".into(),
            text: "!buy hoodie L".into(),
            sent_at_ms: kafka::now_ms(),
            ..Default::default()
        };
        kafka::publish(&producer, &chat, &id, &order).await?;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(width) = browser.eval(SKU_ROW).await?[1].as_f64() {
                seen_widths.push(width);
            }
        }
    }
    let mut badge = String::new();
    for _ in 0..100 {
        let row = browser.eval(SKU_ROW).await?;
        if row[0] == 0 && row[2].as_str().is_some_and(|b| b.starts_with("SOLD OUT")) {
            badge = row[2].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(!badge.is_empty(), "no sold-out badge; widths seen: {seen_widths:?}");
    ensure!(badge.contains(" in "), "the badge says how long it took: {badge}");
    ensure!(
        seen_widths.iter().any(|w| *w > 0.0 && *w < 100.0),
        "the bar never stood between full and empty: {seen_widths:?}"
    );
    ensure!(seen_widths.windows(2).all(|w| w[1] <= w[0]), "the bar went up: {seen_widths:?}");
    let recent: Value = browser.eval("return document.querySelectorAll('#recent li').length").await?;
    ensure!(recent.as_u64().is_some_and(|n| n >= 5), "last outcomes: {recent}");
    let shot = browser.screenshot("live").await?;
    println!("live page: {}", shot.display());

    // The gallery: a clip with a real thumbnail.
    let dir = c.settings.clips.join(&id);
    std::fs::create_dir_all(&dir)?;
    let thumb = dir.join("opening.jpg");
    let video = dir.join("opening.mp4");
    for (out, extra) in [(&thumb, vec!["-frames:v", "1"]), (&video, vec!["-t", "2", "-pix_fmt", "yuv420p"])] {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(extra)
            .arg(out)
            .status()?;
        ensure!(status.success(), "ffmpeg could not make {out:?}");
    }
    let ready = ClipReady {
        clip_id: format!("{id}-opening"),
        drop_id: id.clone(),
        path: video.display().to_string(),
        thumbnail_path: thumb.display().to_string(),
        duration_ms: 45_000,
        size_bytes: std::fs::metadata(&video)?.len(),
        reason: ClipReason::DropOpened as i32,
        note: "the drop opens".into(),
        ..Default::default()
    };
    let topic = c.settings.topics.name(TopicKind::Clips).to_owned();
    // A sell-out shot by two cameras: one moment, its two angles shown together.
    let moment = format!("{id}-soldout");
    for angle in ["creator", "product"] {
        let clip = ClipReady {
            clip_id: format!("{moment}-{angle}"),
            moment_id: moment.clone(),
            angle: angle.into(),
            reason: ClipReason::SoldOut as i32,
            note: "HOODIE-L sold out".into(),
            ..ready.clone()
        };
        kafka::publish(&producer, &topic, &id, &ClipEvent { event: Some(clip_event::Event::Ready(clip)) })
            .await?;
    }
    kafka::publish(&producer, &topic, &id, &ClipEvent { event: Some(clip_event::Event::Ready(ready)) })
        .await?;
    until(&c, &format!("/api/clips?drop_id={id}"), EDITOR, |l| l.as_array().is_some_and(|a| a.len() == 3))
        .await?;
    browser.open(&format!("{}/gallery?token={EDITOR}&drop={id}", c.base)).await?;
    let loaded = "const imgs = [...document.querySelectorAll('.clip img')]; \
        const angles = document.querySelectorAll('.moment .clip').length; \
        const bundle = document.querySelector('.moment a.bundle[href$=\"/download\"]'); \
        return angles == 2 && bundle && imgs.length == 3 && imgs.every(i => i.complete) ? imgs[0].naturalWidth : 0";
    for _ in 0..100 {
        if browser.eval(loaded).await?.as_u64().is_some_and(|w| w == 640) {
            let shot = browser.screenshot("gallery").await?;
            println!("gallery: {}", shot.display());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the gallery never showed the clips' thumbnails, the two angles of the sell-out together")
}

/// The claim page on a phone-sized window: a live countdown, test-mode Pay → CONFIRMED without a
/// reload; a waitlisted page turning RESERVED by itself when the unit ahead is given back; Cancel
/// (two taps) → RELEASED; then the overlay at 1920×1080 with stock, a sold-out banner, names and how
/// to buy, and nothing private in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_page_pays_cancels_and_the_overlay_shows_the_drop() -> Result<()> {
    let c = console().await?;
    let id = unique("claim");
    let mut body = drop_body(&id, 1);
    body["title"] = json!("Fall hoodies");
    body["hold_seconds"] = json!(120);
    body["waitlist"] = json!(true);
    c.create_and_open(body).await?;
    let orders = [
        chat_order(&id, 1, "Ada", "!buy hoodie L"),
        chat_order(&id, 2, "Bob", "!buy hoodie L"),
        chat_order(&id, 3, "Cy", "!buy tee M"),
    ];
    let out = place(&c, &orders).await?;
    let (ada, bob, cy) = (&out[0], &out[1], &out[2]);
    claim_until(&c, &cy.claim_code, "RESERVED").await?;

    let browser = Browser::start().await?;
    browser.command(Method::POST, "window/rect", json!({"width": 390, "height": 844})).await?;
    let status = "const s = document.getElementById('status'); return s ? s.dataset.status : ''";
    let countdown = "return document.getElementById('countdown').textContent";

    // Cy: reserved, the countdown runs; pays in test mode; the page turns CONFIRMED by itself.
    browser.open(&format!("{}/c/{}", c.base, cy.claim_code)).await?;
    let mut first = String::new();
    for _ in 0..100 {
        if browser.eval(status).await? == "RESERVED" {
            first = browser.eval(countdown).await?.as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(first.contains(':'), "no countdown: {first:?}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let later = browser.eval(countdown).await?.as_str().unwrap_or_default().to_owned();
    let secs = |t: &str| {
        t.split_once(':')
            .map_or(0, |(m, s)| m.parse::<i64>().unwrap_or(0) * 60 + s.parse::<i64>().unwrap_or(0))
    };
    ensure!(secs(&later) < secs(&first) && secs(&first) <= 120, "the countdown runs: {first} then {later}");
    let text: Value = browser.eval("return document.body.innerText").await?;
    let text = text.as_str().unwrap_or_default();
    ensure!(text.contains("TEST MODE") && text.contains("tee") && text.contains("$25.00"), "{text}");
    ensure!(text.contains("Orders before yours"), "where they stood: {text}");
    browser.screenshot("claim-reserved").await?;
    browser.eval("document.getElementById('pay').click()").await?;
    ensure!(browser.shows(status, "CONFIRMED", 100).await?, "test-mode Pay never showed CONFIRMED");
    browser.screenshot("claim-paid").await?;

    // Bob waits. Ada gives her hoodie back: Bob's page, left open, turns RESERVED by itself.
    browser.open(&format!("{}/c/{}", c.base, bob.claim_code)).await?;
    ensure!(browser.shows(status, "WAITLISTED", 50).await?, "Bob's page never showed the waitlist");
    let line = browser.eval("return document.getElementById('hint').textContent").await?;
    ensure!(line.as_str().is_some_and(|t| t.contains("#1 in line")), "Bob's place: {line}");
    browser.screenshot("claim-waitlisted").await?;
    c.expect(Method::POST, &format!("/api/claims/{}/cancel", ada.claim_code), None, None, 202, "").await?;
    ensure!(browser.shows(status, "RESERVED", 100).await?, "Bob's page never showed his promotion");
    claim_until(&c, &ada.claim_code, "RELEASED").await?;
    // Bob cancels on the page (two taps: one alone does nothing).
    browser.eval("document.getElementById('cancel').click()").await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    ensure!(browser.eval(status).await? == "RESERVED", "one tap must not cancel");
    browser.eval("document.getElementById('cancel').click()").await?;
    ensure!(browser.shows(status, "RELEASED", 100).await?, "Cancel never showed RELEASED");

    // A wrong code: the not-found page.
    let mut altered = ada.claim_code.clone();
    altered.replace_range(..1, if altered.starts_with('z') { "y" } else { "z" });
    let page = c.client.get(format!("{}/c/{altered}", c.base)).send().await?;
    ensure!(page.status() == 404, "an altered code: {}", page.status());

    // Di takes the hoodie Bob gave back: sold out again.
    place(&c, &[chat_order(&id, 4, "Di", "!buy hoodie L")]).await?;

    // The overlay, as OBS shows it over the stream (a dark backdrop stands in for the video).
    browser.command(Method::POST, "window/rect", json!({"width": 1920, "height": 1080})).await?;
    browser.open(&format!("{}/overlay/{id}", c.base)).await?;
    let mut shown = String::new();
    for _ in 0..100 {
        shown = browser.eval("return document.body.innerText").await?.as_str().unwrap_or_default().to_owned();
        if shown.contains("Di got HOODIE-L") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(shown.contains("Bob got HOODIE-L") && shown.contains("!buy tee m"), "{shown}");
    ensure!(shown.contains("HOODIE-L SOLD OUT in"), "the sold-out banner: {shown}");
    let (_, data) = c.call(Method::GET, &format!("/api/overlay/{id}"), None, None).await?;
    let raw = data.to_string();
    ensure!(!raw.contains("twitch:") && !raw.contains(&ada.claim_code) && !raw.contains("token"), "{raw}");
    browser.eval("document.body.style.cssText += ';min-height:100vh;background:#3a3550'").await?;
    browser.screenshot("overlay").await?;
    Ok(())
}
