//! The studio and the report in a real browser (headless Chromium through chromedriver): a creator
//! imports a Shopify export, fixes the field the page flags, saves, opens the drop, watches orders
//! come in, restocks with the keyboard, closes; then the report page draws every chart and its
//! print view fits A4. Screenshots land in `target/screenshots/` (`studio.png`, `report.png`).

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::browser::Browser;
use common::*;
use dropline_core::{kafka, TopicKind};
use dropline_proto::v1::{ChatActivity, ChatOrder};
use reqwest::Method;
use serde_json::{json, Value};

/// Shopify's newer products export: one row per variant, the title on the first row only, a
/// quoted title with a comma, an image-only row.
const EXPORT: &str =
    "URL handle,Title,Option1 name,Option1 value,SKU,Price,Inventory quantity,Product image URL\n\
logo-hoodie,\"Logo Hoodie, heavy\",Size,M,HOODIE-M,49.00,3,https://cdn.example/h.jpg\n\
logo-hoodie,,,L,HOODIE-L,49.00,2,\n\
logo-hoodie,,,,,,,https://cdn.example/h2.jpg\n\
tour-tee,Tour Tee,Size,M,TEE-M,25.00,10,\n";

/// `script` evaluated until it returns `want` (30 s at most).
async fn until_shows(browser: &Browser, script: &str, want: Value) -> Result<Value> {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = browser.eval(script).await?;
        if last == want {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{script}: wanted {want}, still {last}")
}

const STATUS: &str = "return document.getElementById('status').textContent";
const MESSAGE: &str = "return document.getElementById('message').textContent";
const LEFT: &str = "const r = document.querySelector('#live-skus [data-sku=\"HOODIE-M\"]'); return r ? Number(r.dataset.left) : null";

async fn confirm_dialog(browser: &Browser, needle: &str) -> Result<()> {
    let shown = until_shows(browser, "return document.getElementById('confirm').open", json!(true)).await?;
    let text = browser.eval("return document.getElementById('confirm-text').textContent").await?;
    ensure!(shown == true && text.as_str().is_some_and(|t| t.contains(needle)), "dialog: {text}");
    browser.click("#confirm-yes").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creator_runs_a_drop_from_the_studio_and_reads_its_report() -> Result<()> {
    let c = console().await?;
    let id = unique("studio");
    let browser = Browser::start().await?;
    browser.command(Method::POST, "window/rect", json!({"width": 1280, "height": 1000})).await?;
    browser.open(&format!("{}/studio?token={CREATOR}", c.base)).await?;
    let address = browser.eval("return location.href").await?;
    ensure!(
        address.as_str().is_some_and(|a| !a.contains("token")),
        "the token left the address bar: {address}"
    );
    until_shows(&browser, STATUS, json!("new draft")).await?;

    // The drop's fields, typed as a creator would.
    browser.type_into("[name=id]", &id).await?;
    browser.type_into("[name=title]", "Winter merch").await?;
    browser.type_into("[name=channels]", "twitch:#creator\ntwitch:#friend").await?;
    browser.type_into("[name=recording]", "stream.ts").await?;
    browser.click("#add-partner").await?;
    browser.click("#add-partner").await?;
    browser.type_into("#partners tr:nth-child(1) [data-name=channel]", "twitch:#creator").await?;
    browser.type_into("#partners tr:nth-child(1) [data-name=share_bp]", "70").await?;
    browser.type_into("#partners tr:nth-child(2) [data-name=channel]", "twitch:#friend").await?;
    browser.type_into("#partners tr:nth-child(2) [data-name=share_bp]", "30").await?;

    // The catalog from the shop's export, through the file picker.
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("products_export.csv");
    std::fs::write(&csv, EXPORT)?;
    browser.type_into("#csv", &csv.display().to_string()).await?;
    let imported = until_shows(
        &browser,
        "return document.querySelectorAll('#items tr').length",
        json!(3), // three variants, in place of the new draft's empty row
    )
    .await?;
    ensure!(imported == 3, "{imported}");
    let note = browser.eval("return document.getElementById('imported').textContent").await?;
    ensure!(note.as_str().is_some_and(|n| n.contains("Imported 3 SKU(s)") && n.contains("line 4")), "{note}");
    let numbers = browser
        .eval("return [...document.querySelectorAll('#items td.number')].map(t => t.textContent)")
        .await?;
    ensure!(numbers == json!(["1", "1", "2"]), "sizes of a product share its number: {numbers}");
    // A checkout link without its scheme: the API refuses it, the page flags the field.
    browser
        .type_into("#items tr:nth-child(1) [data-name=checkout_url]", "buy.stripe.com/test_hoodie")
        .await?;
    browser.click("#save").await?;
    let flagged = "const i = document.querySelector('[data-field=\"items[0].checkout_url\"]'); \
        const n = i.nextElementSibling; return [i.getAttribute('aria-invalid'), n ? n.textContent : '']";
    let invalid = "return document.querySelector('[data-field=\"items[0].checkout_url\"]').getAttribute('aria-invalid')";
    until_shows(&browser, invalid, json!("true")).await?;
    let field = browser.eval(flagged).await?;
    ensure!(field[0] == "true" && field[1].as_str().is_some_and(|m| m.contains("http(s) URL")), "{field}");
    browser.screenshot("studio-flagged").await?;
    browser.eval("document.querySelector('[data-field=\"items[0].checkout_url\"]').value = ''").await?;
    browser
        .type_into("#items tr:nth-child(1) [data-name=checkout_url]", "https://buy.stripe.com/test_hoodie")
        .await?;
    browser.click("#save").await?;
    until_shows(&browser, MESSAGE, json!(format!("Saved draft {id}."))).await?;
    let saved = c.expect(Method::GET, &format!("/api/drops/{id}"), Some(PRODUCER), None, 200, "").await?;
    ensure!(
        saved["drop"]["partners"][1]["share_bp"] == 3000 && saved["skus"].as_array().map(Vec::len) == Some(3),
        "{saved}"
    );
    ensure!(saved["drop"]["items"][0]["name"] == "Logo Hoodie, heavy", "{saved}");

    // Open, with a confirmation.
    until_shows(&browser, "return document.getElementById('open').disabled", json!(false)).await?;
    browser.click("#open").await?;
    confirm_dialog(&browser, "Open").await?;
    until_shows(&browser, STATUS, json!("open")).await?;
    until_shows(&browser, LEFT, json!(3)).await?;

    // Chat on both channels, as ingest publishes it: four buyers for three medium hoodies.
    let producer = kafka::producer(&c.settings, "test")?;
    let activity = c.settings.topics.name(TopicKind::ChatActivity).to_owned();
    for (channel, lines) in [("twitch:#creator", 60), ("twitch:#friend", 25)] {
        let counted = ChatActivity {
            drop_id: id.clone(),
            channel: channel.into(),
            lines,
            commands: 2,
            ..Default::default()
        };
        kafka::publish(&producer, &activity, &id, &counted).await?;
    }
    let chat = c.settings.topics.name(TopicKind::ChatOrders).to_owned();
    for n in 0..4 {
        let channel = if n % 2 == 0 { "twitch:#creator" } else { "twitch:#friend" };
        let order = ChatOrder {
            order_id: format!("{id}-s{n}"),
            drop_id: id.clone(),
            buyer_id: format!("twitch:fan{n}"),
            buyer_name: format!("Fan{n}"),
            channel: channel.into(),
            text: "!buy hoodie M".into(),
            sent_at_ms: kafka::now_ms(),
            ..Default::default()
        };
        kafka::publish(&producer, &chat, &id, &order).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until_shows(&browser, LEFT, json!(0)).await?;
    let sold = browser
        .eval("return document.querySelector('#live-skus [data-sku=\"HOODIE-M\"] .sold') !== null")
        .await?;
    ensure!(sold == true, "the sold-out mark");
    for n in 0..2 {
        let hold = json!({"drop_id": id});
        c.expect(Method::POST, &format!("/api/holds/{id}-s{n}/confirm"), Some(PRODUCER), Some(hold), 202, "")
            .await?;
    }

    // Restock from the keyboard: R, confirm.
    browser
        .eval("document.getElementById('restock-sku').value = 'HOODIE-M'; document.activeElement.blur()")
        .await?;
    browser.keys("r").await?;
    confirm_dialog(&browser, "HOODIE-M").await?;
    // The waitlisted fourth buyer gets one of the ten first.
    until_shows(&browser, LEFT, json!(9)).await?;
    browser.eval("window.scrollTo(0, 0)").await?;
    browser.screenshot("studio").await?;

    // A refusal is shown, not swallowed: a restock of 0 units.
    browser.eval("document.getElementById('restock-n').value = '0'; document.activeElement.blur()").await?;
    browser.keys("r").await?;
    confirm_dialog(&browser, "HOODIE-M").await?;
    until_shows(&browser, MESSAGE, json!("restock refused: quantity: must be at least 1")).await?;

    // Close.
    browser.click("#close").await?;
    confirm_dialog(&browser, "Close").await?;
    until_shows(&browser, STATUS, json!("closed")).await?;

    // The report page: every chart drawn, the funnel of both channels, the payouts.
    let report = until(&c, &format!("/api/drops/{id}/report"), PRODUCER, |r| {
        r["outcomes"]["CONFIRMED"] == 2 && r["closed_at_ms"].is_i64()
    })
    .await?;
    ensure!(report["revenue_cents"] == 9_800, "{report}");
    browser.open(&format!("{}/report/{id}", c.base)).await?;
    let charts = browser
        .eval("return [...document.querySelectorAll('svg.chart')].map(s => s.querySelectorAll('rect, path').length)")
        .await?;
    let counts: Vec<u64> = charts.as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    // Orders, stock, revenue per SKU and per channel, and a funnel for each channel and for all.
    ensure!(counts.len() == 7 && counts.iter().all(|n| *n > 0), "charts and their marks: {charts}");
    let text = browser.eval("return document.body.innerText").await?;
    let text = text.as_str().unwrap_or_default();
    for needle in [
        "twitch:#friend",
        "revenue through channel",
        "29.40",
        "68.60",
        "HOODIE-M sold out",
        "+10 HOODIE-M",
        "drop opened",
        "drop closed",
    ] {
        ensure!(text.contains(needle), "the report page lacks {needle:?}:\n{text}");
    }
    browser.screenshot("report").await?;

    // Printed: A4 pages, nothing wider than the paper (210 mm less 2 × 12 mm margins ≈ 703 px).
    browser.cdp("Emulation.setEmulatedMedia", json!({"media": "print"})).await?;
    browser
        .cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 703, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
    let widest = browser
        .eval("return Math.max(document.documentElement.scrollWidth, ...[...document.querySelectorAll('section, svg, table')].map(e => e.getBoundingClientRect().right))")
        .await?;
    let culprits = browser
        .eval("return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 704).slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))")
        .await?;
    ensure!(widest.as_f64().is_some_and(|w| w <= 703.5), "the print view is {widest} px wide: {culprits}");
    let nav = browser.eval("return getComputedStyle(document.querySelector('nav')).display").await?;
    ensure!(nav == "none", "the links are not printed: {nav}");
    browser.cdp("Emulation.clearDeviceMetricsOverride", json!({})).await?;
    let pdf = browser.print_a4().await?;
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            std::path::PathBuf::from,
        )
        .join("screenshots/report.pdf");
    std::fs::write(&out, &pdf)?;
    ensure!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let text = String::from_utf8_lossy(&pdf);
    let pages = text.matches("/Type /Page\n").count()
        + text.matches("/Type /Page ").count()
        + text.matches("/Type /Page/").count();
    ensure!((1..=8).contains(&pages), "{pages} pages");
    // Every page A4: 210 × 297 mm is 595 × 842 pt (Chrome writes whole hundredths of an inch).
    let boxes: Vec<Vec<f64>> = text
        .split("/MediaBox [")
        .skip(1)
        .map(|rest| {
            rest.split(']')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .collect();
    let a4 = |b: &Vec<f64>| b.len() == 4 && (b[2] - 595.3).abs() < 1.5 && (b[3] - 841.9).abs() < 1.5;
    ensure!(boxes.len() == pages && boxes.iter().all(a4), "pages {pages}, media boxes {boxes:?}");
    Ok(())
}
