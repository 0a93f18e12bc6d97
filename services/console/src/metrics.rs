//! The console's metrics, in one place, and the middleware that counts requests.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Metrics of `dropline-console`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `dropline_console_requests_total{route, status}`.
    pub requests: IntCounterVec,
    /// `dropline_console_request_seconds{route}`.
    pub latency: HistogramVec,
    /// `dropline_console_sse_clients`: live views open now.
    pub sse_clients: IntGauge,
    /// `dropline_console_outcomes_total`: reservation outcomes folded into the live view.
    pub outcomes: IntCounter,
    /// `dropline_console_snapshots_total`: drop snapshots built (live streams and overlay polls share
    /// one per drop per tick, however many watch it).
    pub snapshots: IntCounter,
    /// `dropline_console_payments_total{via, result}`: payments by `stripe` or `test` mode and
    /// what became of them (`confirmed`, `duplicate`, `ignored`, `amount_mismatch`, `unknown_order`, `refused`).
    pub payments: IntCounterVec,
    /// `dropline_console_readiness_checks_total`: dependency checks `/readyz` ran (answers within
    /// the cache period reuse the last one).
    pub readiness_checks: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = dropline_core::admin::registry("console");
        let requests = IntCounterVec::new(
            Opts::new("dropline_console_requests_total", "HTTP requests by route and status."),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("dropline_console_request_seconds", "HTTP request duration by route.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            &["route"],
        )?;
        let sse_clients = IntGauge::new("dropline_console_sse_clients", "Live views connected.")?;
        let outcomes = IntCounter::new("dropline_console_outcomes_total", "Reservation outcomes folded in.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(sse_clients.clone()))?;
        let payments = IntCounterVec::new(
            Opts::new("dropline_console_payments_total", "Payments received, by way and result."),
            &["via", "result"],
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        let snapshots =
            IntCounter::new("dropline_console_snapshots_total", "Drop snapshots built for live streams.")?;
        registry.register(Box::new(snapshots.clone()))?;
        registry.register(Box::new(payments.clone()))?;
        let readiness_checks =
            IntCounter::new("dropline_console_readiness_checks_total", "Dependency checks run by /readyz.")?;
        registry.register(Box::new(readiness_checks.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            sse_clients,
            outcomes,
            snapshots,
            payments,
            readiness_checks,
        })
    }
}

/// Counts every request by its route pattern (not its path: ids would explode the labels).
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.latency.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}
