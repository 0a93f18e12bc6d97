//! The console service: the router (API, pages, `/openapi.json`, `/metrics`, `/healthz`,
//! `/readyz`) and `run`, which also follows `reservations` and `clips` for the live view and the
//! gallery.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use dropline_core::admin::{self, Health};
use dropline_core::{kafka, Settings};
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;
use tracing::info;
use utoipa::OpenApi;

use crate::config::ConsoleConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::{claims, clips, drops, live, overlay, report, stripe};

/// Could not start or serve.
pub type ConsoleError = dropline_core::StartError;

/// A page opened with `?token=`: sign the browser in (a cookie) and come back without the token
/// in the address bar.
pub fn sign_in_redirect(state: &AppState, uri: &axum::http::Uri) -> Option<Response> {
    let secure = state.settings.public_url.starts_with("https://");
    let (location, cookie) = crate::auth::sign_in(&state.access, uri.path(), uri.query(), secure)?;
    let headers = [(axum::http::header::LOCATION, location), (axum::http::header::SET_COOKIE, cookie)];
    Some((StatusCode::SEE_OTHER, headers).into_response())
}

/// A static page of the console (signing in first when opened with `?token=`).
async fn page(State(state): State<AppState>, uri: axum::http::Uri, html: &'static str) -> Response {
    sign_in_redirect(&state, &uri).unwrap_or_else(|| Html(html).into_response())
}

/// Every route of the console.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route(
            "/",
            get(|state: State<AppState>, uri: axum::http::Uri| {
                page(state, uri, include_str!("../assets/live.html"))
            }),
        )
        .route(
            "/gallery",
            get(|state: State<AppState>, uri: axum::http::Uri| {
                page(state, uri, include_str!("../assets/gallery.html"))
            }),
        )
        .route(
            "/studio",
            get(|state: State<AppState>, uri: axum::http::Uri| {
                page(state, uri, include_str!("../assets/studio.html"))
            }),
        )
        .route("/report/{id}", get(report::page::page))
        .route("/openapi.json", get(|| async { Json(crate::openapi::ApiDoc::openapi()) }))
        .route("/readyz", get(readyz))
        .route("/api/drops", get(drops::list).post(drops::create))
        .route("/api/import/catalog", post(crate::import::catalog))
        .route("/api/drops/{id}", get(drops::get).put(drops::update))
        .route("/api/drops/{id}/open", post(drops::open))
        .route("/api/drops/{id}/close", post(drops::close))
        .route("/api/drops/{id}/restock", post(drops::restock))
        .route("/api/drops/{id}/markers", post(drops::marker))
        .route("/api/drops/{id}/report", get(report::report))
        .route("/api/drops/{id}/buyers.csv", get(report::buyers_csv))
        .route("/api/drops/{id}/report.csv", get(report::report_csv))
        .route("/api/drops/{id}/live", get(live::stream))
        .route("/api/holds/{order_id}/confirm", post(drops::confirm))
        .route("/api/holds/{order_id}/cancel", post(drops::cancel))
        .route("/c/{code}", get(claims::page))
        .route("/api/claims/{code}", get(claims::get))
        .route("/api/claims/{code}/events", get(claims::events))
        .route("/api/claims/{code}/pay", post(claims::pay))
        .route("/api/claims/{code}/cancel", post(claims::cancel))
        .route("/webhooks/stripe", post(stripe::webhook))
        .route("/overlay/{id}", get(|| async { Html(include_str!("../assets/overlay.html")) }))
        .route("/api/overlay/{id}", get(overlay::get))
        .route("/api/overlay/{id}/live", get(overlay::stream))
        .route("/api/clips", get(clips::list))
        .route("/api/clips/{id}", get(clips::get))
        .route("/clips/{id}/video", get(clips::video))
        .route("/clips/{id}/thumbnail", get(clips::thumbnail))
        .route("/clips/{id}/vertical", get(clips::vertical))
        .route("/moments/{moment_id}/download", get(crate::bundle::download))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        })
        .with_state(state.clone());
    // `/healthz` answers for the process; `/readyz` for its dependencies.
    app.merge(admin::router(state.metrics.registry.clone(), Health::default()))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::track))
}

/// How long a readiness answer is reused: a probe (or anyone: it is unauthenticated) calling it
/// in a loop costs one Redis ping and one broker metadata fetch per period, not per call.
const READY_FOR: Duration = Duration::from_secs(2);

/// The last readiness answer and when it was found.
pub type Readiness = tokio::sync::Mutex<Option<(std::time::Instant, StatusCode, serde_json::Value)>>;

/// Redis and Kafka reachable, and the live view and gallery following their topics (checked at
/// most once per [`READY_FOR`]; concurrent calls wait for the one check).
async fn readyz(State(state): State<AppState>) -> Response {
    let mut last = state.readiness.lock().await;
    if let Some((at, code, body)) = last.as_ref() {
        if at.elapsed() < READY_FOR {
            return (*code, Json(body.clone())).into_response();
        }
    }
    state.metrics.readiness_checks.inc();
    let mut redis = state.redis.clone();
    let redis_ok = tokio::time::timeout(Duration::from_secs(2), dropline_core::redis::ping(&mut redis))
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let producer = state.producer.clone();
    let kafka_ok = tokio::task::spawn_blocking(move || {
        producer.client().fetch_metadata(None, Duration::from_secs(2)).map(drop).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let followers = state.health.is_healthy();
    let ready = redis_ok.is_ok() && kafka_ok.is_ok() && followers;
    let detail = |r: &Result<(), String>| r.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_owned());
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "redis": detail(&redis_ok),
        "kafka": detail(&kafka_ok),
        "followers": if followers { "ok" } else { "catching up or failing" },
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    *last = Some((std::time::Instant::now(), code, body.clone()));
    (code, Json(body)).into_response()
}

/// Serves the console on `DROPLINE_HTTP` until `shutdown`.
pub async fn run(
    settings: Settings,
    config: ConsoleConfig,
    shutdown: CancellationToken,
) -> Result<(), ConsoleError> {
    let metrics = Metrics::new()?;
    let redis = dropline_core::redis::connect(&settings.redis).await?;
    let producer = kafka::producer(&settings, "dropline-console")?;
    let health = Health::default();
    health.set("reservations", false, "starting");
    health.set("clips", false, "starting");
    let made_tokens = config.made_tokens;
    let state = AppState {
        settings: Arc::new(settings.clone()),
        access: config.access,
        redis,
        producer,
        live: Arc::default(),
        ledger: Arc::default(),
        clips: Arc::default(),
        metrics,
        health,
        claims: Arc::default(),
        streams: Arc::new(crate::streams::Streams::new(config.max_streams)),
        readiness: Arc::default(),
        stripe_secret: config.stripe_secret.map(Arc::new),
        test_payments: config.test_payments,
    };
    let followers = [
        tokio::spawn(live::follow(state.clone(), shutdown.clone())),
        tokio::spawn(clips::follow(state.clone(), shutdown.clone())),
        tokio::spawn(crate::ledger::follow(state.clone(), shutdown.clone())),
    ];
    let listener = tokio::net::TcpListener::bind(settings.http).await?;
    let addr = listener.local_addr()?;
    info!(addr = %addr, "console listening: live view http://{addr}/ · gallery http://{addr}/gallery");
    if !made_tokens.is_empty() {
        // Printed once, as Jupyter does: the tokens were made by this start and are kept in the
        // state directory; later starts reuse them silently.
        println!("No tokens were configured: this console made one per role (kept for the next start).");
        for (role, token) in &made_tokens {
            let page = if role == "editor" { "gallery" } else { "" };
            println!("  {role:<8} http://{addr}/{page}?token={token}");
        }
    }
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    for follower in followers {
        follower.abort();
    }
    info!("console stopped");
    Ok(())
}
