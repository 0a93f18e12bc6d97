//! The drop report, computed from the event log (`ledger`): per SKU sell-through and sold-out
//! time, the funnel per channel, buyers and repeat buyers, revenue per SKU and channel, a co-op
//! drop's payouts, the time line with its moments; as JSON, CSV (`report.csv`, `buyers.csv`) and
//! the printable page (`page.rs`, charts from `svg.rs`).

pub mod moments;
pub mod page;
pub mod svg;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::drops::{load, DropStatus};
use crate::error::ApiError;
use crate::ledger::figures::{Buyers, Series, SkuFigures};
use crate::ledger::Funnel;
use crate::state::AppState;
pub use moments::Moment;

/// Who may read reports: they carry revenue (and, in `buyers.csv`, buyer ids).
pub const READERS: &[Role] = &[Role::Creator, Role::Producer];

/// A co-op partner in the report: the orders that came through its channel, and its payout.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PartnerReport {
    pub channel: String,
    pub share_bp: u32,
    /// Orders decided that came through the partner's channel.
    pub orders: u64,
    /// Of those, paid.
    pub paid: u64,
    /// Revenue of the orders paid through the partner's channel.
    pub revenue_cents: i64,
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
    pub skus: Vec<SkuFigures>,
    /// Outcomes by status (`RESERVED`, `SOLD_OUT`, `CONFIRMED`, …), each order's each status once.
    pub outcomes: BTreeMap<String, u64>,
    /// Per channel, then `all`: chat lines seen → orders → holds → paid.
    pub funnel: Vec<Funnel>,
    pub buyers: Buyers,
    pub revenue_cents: i64,
    /// A co-op drop's partners with their orders and payouts (empty for a drop of one creator).
    pub partners: Vec<PartnerReport>,
    /// How the payouts are rounded (with partners).
    pub payout_rule: Option<&'static str>,
    /// Orders and stock left over time.
    pub series: Series,
    /// Open, restocks, sell-outs, rushes, markers, close — with their clips.
    pub moments: Vec<Moment>,
}

/// The drop's report, from the event log (live while it runs; final once closed and holds settled).
/// 503 while the console is still reading the log after a start.
#[utoipa::path(get, path = "/api/drops/{id}/report", tag = "drops", params(("id" = String, Path)),
    responses((status = 200, body = Report), (status = 403), (status = 404), (status = 503, description = "still reading the log")),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Report>, ApiError> {
    caller.require(READERS, "read reports")?;
    build(&state, &id).await.map(Json)
}

/// The report as CSV for a spreadsheet: a row per SKU (sell-through, sold-out time, revenue), per
/// channel (its funnel and revenue), per co-op partner (share, payout), and the total.
#[utoipa::path(get, path = "/api/drops/{id}/report.csv", tag = "drops", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn report_csv(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(READERS, "read reports")?;
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
        "lines_seen",
        "orders",
        "paid",
        "revenue_cents",
        "share_bp",
        "payout_cents",
    ];
    let blank = |n: usize| std::iter::repeat_n(String::new(), n);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in &r.skus {
        let mut row = vec![
            "sku".to_owned(),
            s.units.sku.clone(),
            s.units.name.clone(),
            s.units.total.to_string(),
            s.units.confirmed.to_string(),
            s.units.reserved.to_string(),
            format!("{:.4}", s.sell_through),
            s.sold_out_after_ms.map(|ms| ms.to_string()).unwrap_or_default(),
        ];
        row.extend(blank(3));
        row.push(s.revenue_cents.to_string());
        row.extend(blank(2));
        rows.push(row);
    }
    for f in r.funnel.iter().filter(|f| f.channel != "all") {
        let mut row = vec!["channel".to_owned(), f.channel.clone()];
        row.extend(blank(6));
        row.extend([
            f.lines_seen.to_string(),
            f.orders.to_string(),
            f.paid.to_string(),
            f.revenue_cents.to_string(),
        ]);
        row.extend(blank(2));
        rows.push(row);
    }
    for p in &r.partners {
        let mut row = vec!["partner".to_owned(), p.channel.clone()];
        row.extend(blank(7));
        row.extend([p.orders.to_string(), p.paid.to_string(), p.revenue_cents.to_string()]);
        row.extend([p.share_bp.to_string(), p.payout_cents.to_string()]);
        rows.push(row);
    }
    let all = r.funnel.iter().find(|f| f.channel == "all").cloned().unwrap_or_default();
    let mut total = vec!["total".to_owned(), String::new(), r.title.clone()];
    total.extend([
        r.skus.iter().map(|s| s.units.total).sum::<i64>().to_string(),
        r.skus.iter().map(|s| s.units.confirmed).sum::<i64>().to_string(),
        r.skus.iter().map(|s| s.units.reserved).sum::<i64>().to_string(),
    ]);
    total.extend(blank(2));
    total.extend([
        all.lines_seen.to_string(),
        all.orders.to_string(),
        all.paid.to_string(),
        r.revenue_cents.to_string(),
    ]);
    total.extend(blank(2));
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

/// 503 until the console has read every topic a report is computed from up to where it ended at
/// the start: before, a report would be missing what the log already says.
fn caught_up(state: &AppState) -> Result<(), ApiError> {
    let behind = state.ledger.behind();
    if behind.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = behind.iter().map(|t| state.settings.topics.name(*t)).collect();
    Err(ApiError::unavailable(format!(
        "the console is still reading the event log since its start ({}); try again in a moment",
        topics.join(", ")
    )))
}

/// The report of drop `id`: its record (title, partners) and its log's figures.
pub async fn build(state: &AppState, id: &str) -> Result<Report, ApiError> {
    let record = load(state, id).await?;
    caught_up(state)?;
    let mut figures = state.ledger.figures(id);
    if figures.skus.is_empty() {
        // Not opened yet: the catalog as drafted.
        figures.skus = record
            .items
            .iter()
            .map(|i| SkuFigures {
                units: crate::drops::SkuState {
                    sku: crate::drops::canonical_sku(&i.sku),
                    name: i.name.clone(),
                    price_cents: i.price_cents,
                    total: i64::from(i.stock),
                    left: i64::from(i.stock),
                    reserved: 0,
                    confirmed: 0,
                    waitlisted: 0,
                    sold_out: false,
                },
                sell_through: 0.0,
                sold_out_after_ms: None,
                revenue_cents: 0,
            })
            .collect();
    }
    let clips = state.clips.list(Some(id));
    let moments = state.ledger.with(id, |log| moments::moments(log, &clips));
    let shares: Vec<u32> = record.partners.iter().map(|p| p.share_bp).collect();
    let payouts = if record.partners.is_empty() {
        Vec::new()
    } else {
        crate::payout::split(u64::try_from(figures.revenue_cents).unwrap_or(0), &shares)
            .map_err(|e| ApiError::unavailable(e.to_string()))?
    };
    let partners: Vec<PartnerReport> = record
        .partners
        .iter()
        .zip(payouts)
        .map(|(p, cents)| {
            let funnel = figures.funnel.iter().find(|f| f.channel == p.channel);
            PartnerReport {
                channel: p.channel.clone(),
                share_bp: p.share_bp,
                orders: funnel.map_or(0, |f| f.decided),
                paid: funnel.map_or(0, |f| f.paid),
                revenue_cents: funnel.map_or(0, |f| f.revenue_cents),
                payout_cents: i64::try_from(cents).unwrap_or(i64::MAX),
            }
        })
        .collect();
    let status = match record.status {
        DropStatus::Draft => "draft",
        DropStatus::Open => "open",
        DropStatus::Closed => "closed",
    };
    Ok(Report {
        drop_id: record.id.clone(),
        title: record.title.clone(),
        status: status.to_owned(),
        opened_at_ms: figures.opened_at_ms.or(record.opened_at_ms),
        closed_at_ms: figures.closed_at_ms.or(record.closed_at_ms),
        revenue_cents: figures.revenue_cents,
        skus: figures.skus,
        outcomes: figures.outcomes,
        funnel: figures.funnel,
        buyers: figures.buyers,
        payout_rule: (!partners.is_empty()).then_some(PAYOUT_RULE),
        partners,
        series: figures.series,
        moments,
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
    caller.require(READERS, "read the buyer list")?;
    load(&state, &id).await?;
    caught_up(&state)?;
    struct Paid {
        order: String,
        buyer_id: String,
        buyer_name: String,
        channel: String,
        sku: String,
        quantity: u32,
        amount: i64,
        paid_at_ms: i64,
    }
    let mut paid: Vec<Paid> = state.ledger.with(&id, |log| {
        log.orders
            .iter()
            .filter_map(|(order, life)| {
                Some(Paid {
                    order: order.clone(),
                    buyer_id: life.buyer_id.clone(),
                    buyer_name: life.buyer_name.clone(),
                    channel: life.channel.clone(),
                    sku: life.sku.clone(),
                    quantity: life.quantity,
                    amount: log.price_of(&life.sku).saturating_mul(i64::from(life.quantity)),
                    paid_at_ms: life.paid_at_ms?,
                })
            })
            .collect()
    });
    paid.sort_by(|a, b| (a.paid_at_ms, &a.order).cmp(&(b.paid_at_ms, &b.order)));
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
        .map(|p| {
            vec![
                p.buyer_id.clone(),
                p.buyer_name.clone(),
                p.channel.clone(),
                p.order.clone(),
                p.sku.clone(),
                p.quantity.to_string(),
                p.amount.to_string(),
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
