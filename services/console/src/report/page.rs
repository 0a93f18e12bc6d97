//! `/report/{drop}`: the report as one printable HTML page, rendered on the server — figures,
//! charts (inline SVG), the funnel per channel, partners' payouts, the moments with their clips,
//! and the exports. No script; a print stylesheet makes a clean A4 PDF from the browser.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};

use super::svg::{self, esc, Mark};
use super::{build, Report, READERS};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ledger::Funnel;
use crate::state::AppState;

const STYLE: &str = r#"
:root { --text:#111827; --muted:#6b7280; --line:#e5e7eb; --ok:#16a34a; --bad:#dc2626; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, sans-serif; color:var(--text); background:#f9fafb; }
header { display:flex; flex-wrap:wrap; gap:.4rem 1.2rem; align-items:baseline; padding:1rem 1.4rem; background:#fff; border-bottom:1px solid var(--line); }
header h1 { font-size:1.3rem; margin:0; }
header .meta { color:var(--muted); }
nav { margin-left:auto; display:flex; gap:.8rem; }
nav a { color:#2563eb; }
main { max-width:1000px; margin:0 auto; padding:1rem 1.4rem 3rem; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:1rem 1.2rem; margin:0 0 1rem; break-inside:avoid; }
h2 { font-size:.85rem; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); margin:0 0 .7rem; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(9rem, 1fr)); gap:.6rem; }
.kpi b { display:block; font-size:1.5rem; font-variant-numeric:tabular-nums; }
.kpi span { color:var(--muted); font-size:.8rem; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:.3rem .5rem; border-bottom:1px solid var(--line); white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
th { color:var(--muted); font-weight:600; font-size:.8rem; }
td.wrap { white-space:normal; text-align:left; }
.table { overflow-x:auto; }
.note { color:var(--muted); font-size:.8rem; margin:.5rem 0 0; }
.chart { display:block; max-width:100%; height:auto; }
.funnels { display:grid; grid-template-columns:repeat(auto-fit, minmax(22rem, 1fr)); gap:1rem; }
.sold { color:var(--bad); font-weight:600; }
a.moment circle { fill:#2563eb; }
@page { size: A4; margin: 12mm; }
@media print {
  body { background:#fff; font-size:11px; }
  nav, .screen-only { display:none; }
  header { border:0; padding:0 0 .5rem; }
  main { max-width:none; padding:0; }
  section { border:0; border-top:1px solid var(--line); border-radius:0; padding:.5rem 0; }
  a { color:inherit; text-decoration:none; }
  .table { overflow:visible; }
  table { font-size:9.5px; }
  th, td { white-space:normal; padding:.15rem .2rem; }
  .funnels { grid-template-columns:1fr 1fr; }
}
"#;

/// Whole currency units with two decimals (`1234.50`).
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

fn seconds(ms: i64) -> String {
    if ms >= 120_000 {
        format!("{}:{:02} min", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// Unix ms as `2026-12-01 17:30:00 UTC`.
fn when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_owned(), |ms| super::time_rfc3339(ms)[..19].replace('T', " ") + " UTC")
}

fn funnel_chart(f: &Funnel) -> String {
    let held = f.reserved + f.promoted;
    let rows: Vec<(String, f64, String)> = [
        ("chat lines seen", f.lines_seen, String::new()),
        ("orders", f.orders, percent(f.order_rate)),
        ("holds", held, percent(f.hold_rate)),
        ("paid", f.paid, percent(f.pay_rate)),
    ]
    .into_iter()
    .map(|(label, n, rate)| {
        let shown = if rate.is_empty() { n.to_string() } else { format!("{n} · {rate}") };
        (label.to_owned(), n as f64, shown)
    })
    .collect();
    svg::hbars(&format!("Funnel of {}", f.channel), &rows, 360.0)
}

/// The report as HTML.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = esc(&r.title);
    let id = esc(&r.drop_id);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Report · {title}</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        h,
        r#"<header><h1>{title}</h1><span class="meta">drop <code>{id}</code> · {} · opened {} · closed {}</span><nav><a href="/studio?drop={id}">Studio</a><a href="/?drop={id}">Live</a><a href="/api/drops/{id}/report.csv">report.csv</a><a href="/api/drops/{id}/buyers.csv">buyers.csv</a></nav></header><main>"#,
        esc(&r.status),
        when(r.opened_at_ms),
        when(r.closed_at_ms)
    );
    let all = r.funnel.iter().find(|f| f.channel == "all").cloned().unwrap_or_default();
    let units_sold: i64 = r.skus.iter().map(|s| s.units.confirmed).sum();
    let units_total: i64 = r.skus.iter().map(|s| s.units.total).sum();
    let kpis = [
        (money(r.revenue_cents), "revenue".to_owned()),
        (format!("{units_sold} / {units_total}"), "units paid / on sale".to_owned()),
        (all.orders.to_string(), "orders".to_owned()),
        (percent(all.pay_rate), "holds paid".to_owned()),
        (r.buyers.unique.to_string(), "unique buyers".to_owned()),
        (format!("{} ({})", r.buyers.repeat, percent(r.buyers.repeat_share)), "repeat buyers".to_owned()),
    ];
    h.push_str(r#"<section><h2>Summary</h2><div class="kpis">"#);
    for (value, label) in kpis {
        let _ = write!(h, r#"<div class="kpi"><b>{}</b><span>{}</span></div>"#, esc(&value), esc(&label));
    }
    let _ = write!(h, r#"</div><p class="note">{}</p></section>"#, esc(r.buyers.repeat_rule));

    // The time line.
    let bucket = r.series.bucket_ms.max(1);
    let marks: Vec<Mark> = r
        .moments
        .iter()
        .enumerate()
        .map(|(i, m)| Mark {
            at: (m.at_ms - r.series.start_ms) as f64 / bucket as f64,
            number: i + 1,
            label: m.label.clone(),
            href: m.clip_url.clone(),
        })
        .collect();
    let _ = write!(
        h,
        r#"<section id="timeline"><h2>Orders per {}</h2>{}</section>"#,
        if bucket == 1_000 { "second".to_owned() } else { seconds(bucket) },
        svg::orders_chart(&r.series.orders, bucket, &marks)
    );
    let lines: Vec<(String, Vec<i64>)> =
        r.series.stock.iter().map(|s| (s.sku.clone(), s.left.clone())).collect();
    let _ = write!(
        h,
        r#"<section id="stock"><h2>Stock left per SKU</h2>{}</section>"#,
        svg::stock_chart(&lines, bucket, &marks)
    );

    // SKUs.
    h.push_str(r#"<section id="skus"><h2>Per SKU</h2><div class="table"><table><tr><th>SKU</th><th>name</th><th>price</th><th>on sale</th><th>paid</th><th>held</th><th>left</th><th>waitlist</th><th>sell-through</th><th>sold out after</th><th>revenue</th></tr>"#);
    for s in &r.skus {
        let sold = s
            .sold_out_after_ms
            .map_or_else(|| "–".to_owned(), |ms| format!(r#"<span class="sold">{}</span>"#, seconds(ms)));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{sold}</td><td>{}</td></tr>",
            esc(&s.units.sku),
            esc(&s.units.name),
            money(s.units.price_cents),
            s.units.total,
            s.units.confirmed,
            s.units.reserved,
            s.units.left,
            s.units.waitlisted,
            percent(Some(s.sell_through)),
            money(s.revenue_cents)
        );
    }
    h.push_str("</table></div>");
    let revenue: Vec<(String, f64, String)> = r
        .skus
        .iter()
        .map(|s| (s.units.sku.clone(), s.revenue_cents as f64, money(s.revenue_cents)))
        .collect();
    let per_channel: Vec<(String, f64, String)> = r
        .funnel
        .iter()
        .filter(|f| f.channel != "all")
        .map(|f| (f.channel.clone(), f.revenue_cents as f64, money(f.revenue_cents)))
        .collect();
    let _ = write!(
        h,
        r#"<h2 style="margin-top:1rem">Revenue per SKU</h2>{}<h2 style="margin-top:1rem">Revenue per channel</h2>{}</section>"#,
        svg::hbars("Revenue per SKU", &revenue, 720.0),
        svg::hbars("Revenue per channel", &per_channel, 720.0)
    );

    // Funnels.
    h.push_str(r#"<section id="funnel"><h2>Funnel per channel</h2><div class="funnels">"#);
    for f in &r.funnel {
        let _ = write!(h, "<div><h3>{}</h3>{}</div>", esc(&f.channel), funnel_chart(f));
    }
    // One column per channel, one row per step: readable however many steps, and it prints.
    h.push_str(r#"</div><div class="table"><table><tr><th>step</th>"#);
    for f in &r.funnel {
        let _ = write!(h, "<th>{}</th>", esc(&f.channel));
    }
    h.push_str("</tr>");
    type Step = (&'static str, fn(&Funnel) -> String);
    let steps: [Step; 17] = [
        ("chat lines seen", |f| f.lines_seen.to_string()),
        ("orders", |f| f.orders.to_string()),
        ("orders per line", |f| percent(f.order_rate)),
        ("decided", |f| f.decided.to_string()),
        ("reserved", |f| f.reserved.to_string()),
        ("waitlisted", |f| f.waitlisted.to_string()),
        ("promoted from the waitlist", |f| f.promoted.to_string()),
        ("holds per order", |f| percent(f.hold_rate)),
        ("paid", |f| f.paid.to_string()),
        ("paid per hold", |f| percent(f.pay_rate)),
        ("paid after promotion", |f| f.paid_after_promotion.to_string()),
        ("paid late", |f| f.paid_late.to_string()),
        ("expired", |f| f.expired.to_string()),
        ("released", |f| f.released.to_string()),
        ("refunds due", |f| f.refunds_due.to_string()),
        ("refused", |f| f.refused.to_string()),
        ("revenue", |f| money(f.revenue_cents)),
    ];
    for (label, value) in steps {
        let _ = write!(h, "<tr><td>{label}</td>");
        for f in &r.funnel {
            let _ = write!(h, "<td>{}</td>", value(f));
        }
        h.push_str("</tr>");
    }
    h.push_str(r#"</table></div><p class="note">Conversion: orders per chat line seen, holds per order decided, payments per hold.</p></section>"#);

    if !r.partners.is_empty() {
        h.push_str(r#"<section id="partners"><h2>Co-op partners</h2><div class="table"><table><tr><th>channel</th><th>share</th><th>orders</th><th>paid</th><th>revenue through channel</th><th>payout</th></tr>"#);
        for p in &r.partners {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.2} %</td><td>{}</td><td>{}</td><td>{}</td><td><b>{}</b></td></tr>",
                esc(&p.channel),
                f64::from(p.share_bp) / 100.0,
                p.orders,
                p.paid,
                money(p.revenue_cents),
                money(p.payout_cents)
            );
        }
        let total: i64 = r.partners.iter().map(|p| p.payout_cents).sum();
        let _ = write!(
            h,
            r#"<tr><td>total</td><td>100 %</td><td></td><td></td><td>{}</td><td><b>{}</b></td></tr></table></div><p class="note">{}</p></section>"#,
            money(r.revenue_cents),
            money(total),
            esc(r.payout_rule.unwrap_or_default())
        );
    }

    h.push_str(r#"<section id="moments"><h2>Moments</h2><div class="table"><table><tr><th>#</th><th>when</th><th>after open</th><th>moment</th><th>clip</th></tr>"#);
    for (i, m) in r.moments.iter().enumerate() {
        let after = r.opened_at_ms.map_or_else(|| "–".to_owned(), |o| seconds(m.at_ms - o));
        let clip = m.clip_url.as_ref().map_or_else(
            || "–".to_owned(),
            |url| format!(r#"<a href="{}">{}</a>"#, esc(url), esc(m.clip_id.as_deref().unwrap_or("clip"))),
        );
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{after}</td><td class="wrap">{}: {}</td><td>{clip}</td></tr>"#,
            i + 1,
            when(Some(m.at_ms)),
            esc(&m.kind),
            esc(&m.label)
        );
    }
    h.push_str("</table></div></section>");
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{} {v}", esc(k))).collect();
    let _ = write!(
        h,
        r#"<section id="outcomes"><h2>Every outcome</h2><p>{}</p><p class="note">Computed from the event log (drop-triggers, chat-activity, chat-orders, reservations, clips): the same after a restart of the console.</p></section></main></body></html>"#,
        outcomes.join(" · ")
    );
    h
}

fn error_page(e: &ApiError) -> Response {
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Report</title><style>{STYLE}</style></head><body><main><section><h2>Report</h2><p>{}</p><p class="note">Open the login link the console printed at its first start (creator or producer), then come back.</p></section></main></body></html>"#,
        esc(&e.message)
    );
    (e.status, Html(body)).into_response()
}

/// The report page (creator and producer); opened with `?token=` it signs the browser in first.
pub async fn page(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    if let Some(redirect) = crate::service::sign_in_redirect(&state, &uri) {
        return redirect;
    }
    let report = match caller.and_then(|c| c.require(READERS, "read reports").map(|()| c)) {
        Ok(_) => build(&state, &id).await,
        Err(e) => Err(e),
    };
    match report {
        Ok(report) => Html(render(&report)).into_response(),
        Err(e) => error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_times_read_as_people_write_them() {
        assert_eq!(money(123_450), "1234.50");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(seconds(7_700), "7.7 s");
        assert_eq!(seconds(185_000), "3:05 min");
        assert_eq!(when(Some(1_796_145_000_123)), "2026-12-01 17:10:00 UTC");
    }
}
