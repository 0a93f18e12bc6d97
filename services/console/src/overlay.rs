//! The stream overlay's data (`/overlay/{drop}` is the page, an OBS browser source): what viewers
//! may see — stock left per SKU, sold-out times, the last reservations by display name, how to
//! order. Public and read-only: no buyer ids, no tokens, no reasons.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::Json;
use dropline_proto::v1::ReservationStatus;
use futures::Stream;
use serde::Serialize;
use utoipa::ToSchema;

use crate::drops::{load, DropStatus};
use crate::error::ApiError;
use crate::live::{snapshots, Snapshot};
use crate::state::AppState;

/// Reservations shown.
const LAST: usize = 5;

/// One SKU on stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverlaySku {
    pub sku: String,
    pub name: String,
    pub left: i64,
    pub total: i64,
    pub sold_out: bool,
    /// How long it took to sell out from the open, ms.
    pub sold_out_after_ms: Option<i64>,
    /// What to type for it, e.g. `!buy hoodie L`.
    pub command: String,
}

/// What the overlay shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverlayView {
    pub title: String,
    pub open: bool,
    pub skus: Vec<OverlaySku>,
    /// Display names of the last reservations, newest first, with what they got.
    pub last_reserved: Vec<(String, String)>,
}

fn view(s: Snapshot) -> OverlayView {
    let record = &s.state.drop;
    let skus = s
        .state
        .skus
        .iter()
        .map(|sku| {
            let item = record.items.iter().find(|i| i.sku == sku.sku);
            let words = item
                .map(|i| {
                    let product = if i.product.is_empty() { i.name.as_str() } else { i.product.as_str() };
                    format!("{product} {}", i.size).trim().to_lowercase()
                })
                .unwrap_or_else(|| sku.sku.clone());
            let name = item.map_or_else(
                || sku.name.clone(),
                |i| {
                    format!("{} {}", if i.product.is_empty() { &i.name } else { &i.product }, i.size)
                        .trim()
                        .to_owned()
                },
            );
            OverlaySku {
                sku: sku.sku.clone(),
                name,
                left: sku.left.max(0),
                total: sku.total,
                sold_out: sku.sold_out,
                sold_out_after_ms: s.sold_out_after_ms.get(&sku.sku).copied(),
                command: format!("!buy {words}"),
            }
        })
        .collect();
    let reserved = ReservationStatus::Reserved.label();
    let last_reserved = s
        .recent
        .iter()
        .rev()
        .filter(|o| o.status == reserved && !o.buyer_name.is_empty())
        .take(LAST)
        .map(|o| (o.buyer_name.clone(), o.sku.clone()))
        .collect();
    OverlayView { title: record.title.clone(), open: record.status == DropStatus::Open, skus, last_reserved }
}

/// The overlay's data.
#[utoipa::path(get, path = "/api/overlay/{id}", tag = "overlay", params(("id" = String, Path)),
    responses((status = 200, body = OverlayView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OverlayView>, ApiError> {
    load(&state, &id).await?;
    // The overlay is public: a poll takes the drop's shared snapshot (built at most once per tick
    // for all streams and polls), so a flood of polls does not multiply Redis reads.
    let mut latest = state.streams.subscribe(&state, &id);
    let shared = latest
        .wait_for(Option::is_some)
        .await
        .map_err(|_| ApiError::unavailable("the drop's snapshot is not available; retry"))?
        .clone();
    match shared.as_deref() {
        Some(Ok(snapshot)) => Ok(Json(view(snapshot.clone()))),
        Some(Err(why)) => Err(ApiError::unavailable(why.clone())),
        None => Err(ApiError::unavailable("the drop's snapshot is not available; retry")),
    }
}

/// The overlay's data as Server-Sent Events (`overlay`), at most ten a second.
#[utoipa::path(get, path = "/api/overlay/{id}/live", tag = "overlay", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream of `overlay` events", body = OverlayView)))]
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    load(&state, &id).await?;
    snapshots(state, id, "overlay", view)
}
