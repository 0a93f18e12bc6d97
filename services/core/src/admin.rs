//! The admin endpoint every service serves: Prometheus `/metrics`, `/healthz` (the service and its
//! dependencies: readiness) and `/livez` (the process alone: liveness, so an outage of Redis or
//! Kafka never restarts every pod at once).
//!
//! Services register their metrics in one [`prometheus::Registry`] (defined in each service's
//! `metrics` module) and report the state of their dependencies through [`Health`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The state of a service's dependencies (Kafka, Redis, ...), as `/healthz` reports it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentState>>>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct ComponentState {
    healthy: bool,
    detail: String,
}

impl Health {
    /// Records whether `component` works, with a short detail (e.g. the last error).
    pub fn set(&self, component: &str, healthy: bool, detail: impl Into<String>) {
        let mut components = self.components.lock().unwrap_or_else(PoisonError::into_inner);
        components.insert(component.to_owned(), ComponentState { healthy, detail: detail.into() });
    }

    /// True when every reported component is healthy.
    pub fn is_healthy(&self) -> bool {
        self.components.lock().unwrap_or_else(PoisonError::into_inner).values().all(|c| c.healthy)
    }

    fn report(&self) -> serde_json::Value {
        let components = self.components.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let healthy = components.values().all(|c| c.healthy);
        serde_json::json!({
            "status": if healthy { "ok" } else { "unhealthy" },
            "components": components,
        })
    }
}

/// A registry with `dropline_build_info{service, version}` already in it.
pub fn registry(service: &str) -> Registry {
    let registry = Registry::new();
    let opts = Opts::new("dropline_build_info", "Build of this Dropline process (always 1).");
    if let Ok(info) = IntGaugeVec::new(opts, &["service", "version"]) {
        info.with_label_values(&[service, env!("CARGO_PKG_VERSION")]).set(1);
        // Registering a fresh metric in a fresh registry cannot collide.
        let _ = registry.register(Box::new(info));
    }
    registry
}

#[derive(Debug, Clone)]
struct AdminState {
    registry: Registry,
    health: Health,
}

/// `/metrics`, `/healthz` and `/livez`, to serve alone or merge into a service's own router.
pub fn router(registry: Registry, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "alive" }))
        .with_state(AdminState { registry, health })
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type().to_owned())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}")).into_response(),
    }
}

async fn healthz(State(state): State<AdminState>) -> Response {
    let code = if state.health.is_healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(state.health.report())).into_response()
}

/// Binds `addr` and serves `router` until `shutdown` is cancelled. Returns the bound address
/// (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "admin endpoint listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn liveness_ignores_the_dependencies_readiness_reports() {
        let health = Health::default();
        health.set("redis", false, "connection refused");
        let shutdown = CancellationToken::new();
        let router = router(registry("test"), health);
        let (addr, task) =
            serve("127.0.0.1:0".parse().expect("addr"), router, shutdown.clone()).await.expect("serves");
        let get = |path: &str| reqwest::get(format!("http://{addr}{path}"));
        assert_eq!(get("/healthz").await.expect("answers").status(), 503, "not ready: Redis is down");
        assert_eq!(get("/livez").await.expect("answers").status(), 200, "but alive: no restart");
        shutdown.cancel();
        let _ = task.await;
    }
}
