//! The ingest service's metrics, in one place.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Metrics of `dropline-ingest`.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Served on `/metrics`.
    pub registry: Registry,
    /// `dropline_ingest_lines_total{source, result}`: chat lines by source (`irc`, `webhook`) and
    /// what became of them (`order`, `not_order`, `no_drop`).
    pub lines: IntCounterVec,
    /// `dropline_ingest_publish_errors_total`: orders the broker did not take (retried by the
    /// producer first; a webhook caller is told to retry).
    pub publish_errors: IntCounter,
    /// `dropline_ingest_webhook_rejected_total{reason}`: webhook requests refused.
    pub webhook_rejected: IntCounterVec,
    /// `dropline_ingest_irc_connected`: 1 while the IRC session is registered.
    pub irc_connected: IntGauge,
    /// `dropline_ingest_irc_reconnects_total`.
    pub irc_reconnects: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = dropline_core::admin::registry("ingest");
        let lines = IntCounterVec::new(
            Opts::new("dropline_ingest_lines_total", "Chat lines received, by source and result."),
            &["source", "result"],
        )?;
        let publish_errors =
            IntCounter::new("dropline_ingest_publish_errors_total", "Orders the broker did not accept.")?;
        let webhook_rejected = IntCounterVec::new(
            Opts::new("dropline_ingest_webhook_rejected_total", "Webhook requests refused, by reason."),
            &["reason"],
        )?;
        let irc_connected = IntGauge::new("dropline_ingest_irc_connected", "1 while connected to IRC.")?;
        let irc_reconnects =
            IntCounter::new("dropline_ingest_irc_reconnects_total", "IRC sessions that ended.")?;
        registry.register(Box::new(lines.clone()))?;
        registry.register(Box::new(publish_errors.clone()))?;
        registry.register(Box::new(webhook_rejected.clone()))?;
        registry.register(Box::new(irc_connected.clone()))?;
        registry.register(Box::new(irc_reconnects.clone()))?;
        Ok(Metrics { registry, lines, publish_errors, webhook_rejected, irc_connected, irc_reconnects })
    }
}
