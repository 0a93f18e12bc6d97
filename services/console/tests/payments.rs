//! Payments that confirm holds, over the real broker, Redis and matcher: Stripe webhook events
//! signed as Stripe signs them (a correct one confirms once, a repeat changes nothing, bad
//! signatures, stale timestamps, wrong amounts and unknown orders confirm nothing), and late
//! payments both ways (units left: CONFIRMED; sold out: REFUND_DUE).

mod common;

use anyhow::{ensure, Result};
use common::*;
use dropline_console::stripe;
use dropline_core::kafka::now_ms;
use reqwest::Method;
use serde_json::{json, Value};

const WHSEC: &str = "whsec_test_payments_0123456789";

fn event(id: &str, kind: &str, reference: Option<&str>, amount: i64, metadata: Value) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "api_version": "2024-06-20",
        "data": {"object": {
            "id": format!("cs_test_{id}"), "object": "checkout.session",
            "client_reference_id": reference, "payment_status": "paid", "status": "complete",
            "amount_total": amount, "currency": "usd", "metadata": metadata
        }}
    })
    .to_string()
}

async fn deliver(c: &Console, body: &str, header: &str) -> Result<(u16, Value)> {
    let response = c
        .client
        .post(format!("{}/webhooks/stripe", c.base))
        .header("Stripe-Signature", header)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn signed(body: &str) -> String {
    stripe::sign(WHSEC.as_bytes(), now_ms() / 1000, body.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_events_confirm_once_and_nothing_else_does() -> Result<()> {
    let c = console_with(&[("DROPLINE_STRIPE_WEBHOOK_SECRET", WHSEC)]).await?;
    let id = unique("stripe");
    let mut body = drop_body(&id, 1);
    body["hold_seconds"] = json!(10);
    body["waitlist"] = json!(true);
    body["items"][0]["checkout_url"] = json!("https://buy.stripe.com/test_hoodie");
    c.create_and_open(body).await?;
    // a: the hoodie; b: waits for it; t1, t2: tees.
    let orders = [
        chat_order(&id, 1, "Ada", "!buy hoodie L"),
        chat_order(&id, 2, "Bob", "!buy hoodie L"),
        chat_order(&id, 3, "Cy", "!buy tee M"),
        chat_order(&id, 4, "Di", "!buy tee M"),
    ];
    let out = place(&c, &orders).await?;
    let [a, b, t1, t2] = [&out[0], &out[1], &out[2], &out[3]];
    ensure!(a.status == 1 && b.status == 8 && t1.status == 1 && t2.status == 1, "{out:?}");
    let claim = claim_until(&c, &a.claim_code, "RESERVED").await?;
    ensure!(claim["pay"] == "checkout", "{claim}");
    let pay_url = format!("https://buy.stripe.com/test_hoodie?client_reference_id={}", a.claim_code);
    ensure!(claim["pay_url"] == pay_url.as_str(), "{claim}");

    // With Stripe set up, a SKU without a checkout link cannot be paid by a test click.
    c.expect(Method::POST, &format!("/api/claims/{}/pay", t1.claim_code), None, None, 409, "checkout")
        .await?;

    // Refused: nothing confirmed.
    let paid_a = event("evt_a", "checkout.session.completed", Some(&a.claim_code), 6500, json!({}));
    let (status, reply) = deliver(&c, &paid_a, "t=1,v1=00").await?;
    ensure!(
        status == 400 && reply["error"].as_str().is_some_and(|e| e.contains("Stripe-Signature")),
        "{reply}"
    );
    let wrong = stripe::sign(b"whsec_someone_else_0123", now_ms() / 1000, paid_a.as_bytes());
    ensure!(deliver(&c, &paid_a, &wrong).await?.0 == 400);
    let stale = stripe::sign(WHSEC.as_bytes(), now_ms() / 1000 - 301, paid_a.as_bytes());
    let (status, reply) = deliver(&c, &paid_a, &stale).await?;
    ensure!(status == 400 && reply["error"].as_str().is_some_and(|e| e.contains("tolerance")), "{reply}");
    ensure!(deliver(&c, &paid_a, "").await?.0 == 400, "no signature header");
    let short = event("evt_short", "checkout.session.completed", Some(&t1.claim_code), 100, json!({}));
    let (status, reply) = deliver(&c, &short, &signed(&short)).await?;
    ensure!(
        status == 200 && reply["ignored"].as_str().is_some_and(|e| e.contains("amount_total")),
        "{reply}"
    );
    let ghost = event("evt_ghost", "checkout.session.completed", Some("0123456789abcdef"), 6500, json!({}));
    ensure!(deliver(&c, &ghost, &signed(&ghost)).await?.0 == 404, "unknown order");
    let other = event("evt_other", "customer.created", None, 0, json!({}));
    ensure!(deliver(&c, &other, &signed(&other)).await?.1["ignored"].is_string());

    // The real one confirms, once.
    let (status, reply) = deliver(&c, &paid_a, &signed(&paid_a)).await?;
    ensure!(status == 200 && reply["confirmed"] == a.order_id.as_str(), "{reply}");
    claim_until(&c, &a.claim_code, "CONFIRMED").await?;
    let (status, reply) = deliver(&c, &paid_a, &signed(&paid_a)).await?;
    ensure!(status == 200 && reply["duplicate"] == "evt_a", "a repeated event: {reply}");
    let state = until(&c, &format!("/api/drops/{id}"), PRODUCER, |d| d["skus"][0]["confirmed"] == 1).await?;
    ensure!(state["skus"][0]["left"] == 0, "{state}");
    // The short payment confirmed nothing: t1 is still only reserved.
    ensure!(claim_until(&c, &t1.claim_code, "RESERVED").await?["status"] == "RESERVED");

    // A late payment: t2's hold runs out (10 s); then t2 pays, found through metadata.order_id
    // (tees are left: confirmed, paid late).
    claim_until(&c, &t2.claim_code, "EXPIRED").await?;
    let late = event(
        "evt_late",
        "checkout.session.async_payment_succeeded",
        None,
        2500,
        json!({"order_id": t2.order_id, "drop_id": id}),
    );
    let (status, reply) = deliver(&c, &late, &signed(&late)).await?;
    ensure!(status == 200 && reply["confirmed"] == t2.order_id.as_str(), "{reply}");
    let paid_late = claim_until(&c, &t2.claim_code, "CONFIRMED").await?;
    ensure!(
        paid_late["reason"].as_str().is_some_and(|r| r.contains("paid after the hold was EXPIRED")),
        "{paid_late}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_after_the_hold_ended_and_the_item_sold_out_is_a_refund_due() -> Result<()> {
    // Test mode (no Stripe): the claim page's Pay confirms directly.
    let c = console().await?;
    let id = unique("late");
    let mut body = drop_body(&id, 1);
    body["hold_seconds"] = json!(10);
    body["waitlist"] = json!(true);
    c.create_and_open(body).await?;
    let out =
        place(&c, &[chat_order(&id, 1, "Ada", "!buy hoodie L"), chat_order(&id, 2, "Bob", "!buy hoodie L")])
            .await?;
    let (a, b) = (&out[0], &out[1]);
    let claim = claim_until(&c, &b.claim_code, "WAITLISTED").await?;
    ensure!(
        claim["waitlist_position"] == 1 && claim["pay"] == "test" && claim["can_pay"] == false,
        "{claim}"
    );
    // a's hold runs out; the hoodie goes to b.
    claim_until(&c, &a.claim_code, "EXPIRED").await?;
    claim_until(&c, &b.claim_code, "RESERVED").await?;
    c.expect(Method::POST, &format!("/api/claims/{}/pay", a.claim_code), None, None, 202, "").await?;
    let refund = claim_until(&c, &a.claim_code, "REFUND_DUE").await?;
    ensure!(refund["reason"].as_str().is_some_and(|r| r.contains("sold out: refund due")), "{refund}");
    c.expect(Method::POST, &format!("/api/claims/{}/pay", b.claim_code), None, None, 202, "").await?;
    claim_until(&c, &b.claim_code, "CONFIRMED").await?;
    let state = until(&c, &format!("/api/drops/{id}"), PRODUCER, |d| d["skus"][0]["confirmed"] == 1).await?;
    ensure!(state["skus"][0]["left"] == 0 && state["skus"][0]["reserved"] == 0, "never oversold: {state}");
    // Nothing more to pay or cancel; a wrong or altered code is a 404.
    c.expect(
        Method::POST,
        &format!("/api/claims/{}/cancel", b.claim_code),
        None,
        None,
        409,
        "nothing to cancel",
    )
    .await?;
    let mut altered = b.claim_code.clone();
    let last = if altered.ends_with('0') { "1" } else { "0" };
    altered.replace_range(altered.len() - 1.., last);
    c.expect(Method::GET, &format!("/api/claims/{altered}"), None, None, 404, "no such claim").await?;
    c.expect(Method::GET, "/api/claims/not-a-code", None, None, 404, "no such claim").await?;
    let page = c.client.get(format!("{}/c/{altered}", c.base)).send().await?;
    ensure!(page.status() == 404);
    Ok(())
}
