//! The after-drop report: how long each SKU took to sell out, outcomes by status, orders per chat
//! channel, units and revenue confirmed.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::drops::{load, read_state};
use crate::error::ApiError;
use crate::state::AppState;

/// One SKU in the report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SkuReport {
    pub sku: String,
    pub name: String,
    /// Units ever on sale.
    pub total: i64,
    pub confirmed: i64,
    pub reserved: i64,
    /// Share of the units on sale that are paid for (0–1).
    pub sell_through: f64,
    /// Time from the open to the last unit reserved, ms (`None`: never sold out).
    pub sold_out_after_ms: Option<i64>,
    pub revenue_cents: i64,
}

/// A co-op partner in the report: the orders that came through its channel, and its payout.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PartnerReport {
    pub channel: String,
    pub share_bp: u32,
    /// Orders decided that came through the partner's channel.
    pub orders: u64,
    /// Its share of the drop's revenue, whole cents ([`PAYOUT_RULE`]).
    pub payout_cents: i64,
}

/// How payouts are rounded, as the report states it.
pub const PAYOUT_RULE: &str = "each partner gets the whole cents of its share of the revenue, rounded down; the cents \
     left over go one each to the partners with the largest fractions (ties: the partner listed first), so the \
     payouts add up to the revenue exactly";

/// A drop's report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Report {
    pub drop_id: String,
    pub title: String,
    pub status: String,
    pub opened_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub skus: Vec<SkuReport>,
    /// Decisions by status (`RESERVED`, `SOLD_OUT`, `CONFIRMED`, …).
    pub outcomes: BTreeMap<String, u64>,
    /// Orders decided per chat channel.
    pub orders_per_channel: BTreeMap<String, u64>,
    pub revenue_cents: i64,
    /// A co-op drop's partners with their orders and payouts (empty for a drop of one creator).
    pub partners: Vec<PartnerReport>,
    /// How the payouts are rounded (with partners).
    pub payout_rule: Option<&'static str>,
}

/// The drop's report (live while it runs; final once closed and holds are settled).
#[utoipa::path(get, path = "/api/drops/{id}/report", tag = "drops", params(("id" = String, Path)),
    responses((status = 200, body = Report), (status = 404)), security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Report>, ApiError> {
    build(&state, &id).await.map(Json)
}

/// The report as CSV, one row per SKU (sell-through, sold-out time, revenue), then one per co-op
/// partner (orders, share, payout) — for a spreadsheet.
#[utoipa::path(get, path = "/api/drops/{id}/report.csv", tag = "drops", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)), security(("bearer" = [])))]
pub async fn report_csv(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let r = build(&state, &id).await?;
    let header = [
        "row",
        "sku_or_channel",
        "name",
        "total",
        "confirmed",
        "reserved",
        "sell_through",
        "sold_out_after_ms",
        "revenue_cents",
        "orders",
        "share_bp",
        "payout_cents",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in &r.skus {
        let sold_out = s.sold_out_after_ms.map(|ms| ms.to_string()).unwrap_or_default();
        rows.push(vec![
            "sku".to_owned(),
            s.sku.clone(),
            s.name.clone(),
            s.total.to_string(),
            s.confirmed.to_string(),
            s.reserved.to_string(),
            format!("{:.4}", s.sell_through),
            sold_out,
            s.revenue_cents.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    for p in &r.partners {
        let mut row = vec!["partner".to_owned(), p.channel.clone()];
        row.extend(std::iter::repeat_n(String::new(), 7));
        row.extend([p.orders.to_string(), p.share_bp.to_string(), p.payout_cents.to_string()]);
        rows.push(row);
    }
    let mut total = vec!["total".to_owned(), String::new(), r.title.clone()];
    total.extend(std::iter::repeat_n(String::new(), 5));
    total.extend([r.revenue_cents.to_string(), String::new(), String::new(), String::new()]);
    rows.push(total);
    let body = csv_table(&header, &rows)?;
    Ok(csv_response(&format!("{id}-report.csv"), body))
}

/// A header and rows as CSV (quoted where a field needs it).
fn csv_table(header: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>, ApiError> {
    let failed = |e: String| ApiError::unavailable(format!("writing the CSV: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(header).map_err(|e| failed(e.to_string()))?;
    for row in rows {
        out.write_record(row).map_err(|e| failed(e.to_string()))?;
    }
    out.into_inner().map_err(|e| failed(e.to_string()))
}

/// A CSV download.
fn csv_response(filename: &str, body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

/// The report of drop `id`: its record, Redis's counters and the outcomes folded so far.
async fn build(state: &AppState, id: &str) -> Result<Report, ApiError> {
    let record = load(state, id).await?;
    let drop_state = read_state(state, record).await?;
    let drop = &drop_state.drop;
    let opened = drop.opened_at_ms;
    let (outcomes, per_channel, sold_out_at) = state
        .live
        .with(id, |stats| (stats.by_status.clone(), stats.by_channel.clone(), stats.sold_out_at_ms.clone()));
    let skus: Vec<SkuReport> = drop_state
        .skus
        .iter()
        .map(|s| SkuReport {
            sku: s.sku.clone(),
            name: s.name.clone(),
            total: s.total,
            confirmed: s.confirmed,
            reserved: s.reserved,
            sell_through: if s.total > 0 { s.confirmed as f64 / s.total as f64 } else { 0.0 },
            sold_out_after_ms: sold_out_at.get(&s.sku).map(|at| at - opened.unwrap_or(*at)),
            revenue_cents: s.confirmed.saturating_mul(s.price_cents),
        })
        .collect();
    let revenue_cents: i64 = skus.iter().map(|s| s.revenue_cents).sum();
    let shares: Vec<u32> = drop.partners.iter().map(|p| p.share_bp).collect();
    let payouts = if drop.partners.is_empty() {
        Vec::new()
    } else {
        crate::payout::split(u64::try_from(revenue_cents).unwrap_or(0), &shares)
            .map_err(|e| ApiError::unavailable(e.to_string()))?
    };
    let partners: Vec<PartnerReport> = drop
        .partners
        .iter()
        .zip(payouts)
        .map(|(p, cents)| PartnerReport {
            channel: p.channel.clone(),
            share_bp: p.share_bp,
            orders: per_channel.get(&p.channel).copied().unwrap_or(0),
            payout_cents: i64::try_from(cents).unwrap_or(i64::MAX),
        })
        .collect();
    Ok(Report {
        drop_id: drop.id.clone(),
        title: drop.title.clone(),
        status: format!("{:?}", drop.status).to_lowercase(),
        opened_at_ms: drop.opened_at_ms,
        closed_at_ms: drop.closed_at_ms,
        revenue_cents,
        skus,
        outcomes,
        orders_per_channel: per_channel,
        payout_rule: (!partners.is_empty()).then_some(PAYOUT_RULE),
        partners,
    })
}

/// The drop's buyers for the creator's CRM, one row per paid order, oldest first: buyer id,
/// display name, channel, order, SKU, quantity, amount (cents) and when it was paid (Unix ms and
/// RFC 3339). Creator and producer only: buyer ids are personal data.
#[utoipa::path(get, path = "/api/drops/{id}/buyers.csv", tag = "drops", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn buyers_csv(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(&[crate::auth::Role::Creator, crate::auth::Role::Producer], "read the buyer list")?;
    let record = load(&state, &id).await?;
    let prices: BTreeMap<String, i64> =
        record.items.iter().map(|i| (i.sku.to_ascii_uppercase(), i.price_cents)).collect();
    let mut paid: Vec<(String, crate::live::Paid)> =
        state.live.with(&id, |stats| stats.paid.iter().map(|(o, p)| (o.clone(), p.clone())).collect());
    paid.sort_by(|a, b| (a.1.paid_at_ms, &a.0).cmp(&(b.1.paid_at_ms, &b.0)));
    let header = [
        "buyer_id",
        "display_name",
        "channel",
        "order_id",
        "sku",
        "quantity",
        "amount_cents",
        "paid_at_ms",
        "paid_at",
    ];
    let rows: Vec<Vec<String>> = paid
        .iter()
        .map(|(order, p)| {
            let amount =
                prices.get(&p.sku.to_ascii_uppercase()).copied().unwrap_or(0) * i64::from(p.quantity);
            vec![
                p.buyer_id.clone(),
                p.buyer_name.clone(),
                p.channel.clone(),
                order.clone(),
                p.sku.clone(),
                p.quantity.to_string(),
                amount.to_string(),
                p.paid_at_ms.to_string(),
                time_rfc3339(p.paid_at_ms),
            ]
        })
        .collect();
    let body = csv_table(&header, &rows)?;
    Ok(csv_response(&format!("{id}-buyers.csv"), body))
}

/// Unix ms as RFC 3339 UTC (`2026-12-01T17:30:00.123Z`).
fn time_rfc3339(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::time_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time_rfc3339(1_796_145_000_123), "2026-12-01T17:10:00.123Z");
        assert_eq!(super::time_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
