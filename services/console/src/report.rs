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
    let record = load(&state, &id).await?;
    let drop_state = read_state(&state, record).await?;
    let drop = &drop_state.drop;
    let opened = drop.opened_at_ms;
    let (outcomes, per_channel, sold_out_at) = state
        .live
        .with(&id, |stats| (stats.by_status.clone(), stats.by_channel.clone(), stats.sold_out_at_ms.clone()));
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
    Ok(Json(Report {
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
    }))
}
