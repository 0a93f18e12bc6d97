//! The ingest service's metrics, in one place.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    /// `dropline_ingest_replies_sent_total{via}`: messages sent to buyers (`irc`, `webhook`).
    pub replies_sent: IntCounterVec,
    /// `dropline_ingest_reply_answers_total{result}`: answers `sent` (one per message), `merged`
    /// (into a message with others), `dropped` (their hold lapsed before the budget allowed them),
    /// `repeat` (sent before a restart, not again).
    pub reply_answers: IntCounterVec,
    /// `dropline_ingest_reply_delay_seconds`: outcome decided → its answer sent.
    pub reply_delay: Histogram,
    /// `dropline_ingest_reply_mentions`: buyers answered per message.
    pub reply_mentions: Histogram,
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
        let replies_sent = IntCounterVec::new(
            Opts::new("dropline_ingest_replies_sent_total", "Messages sent to buyers, by outlet."),
            &["via"],
        )?;
        let reply_answers = IntCounterVec::new(
            Opts::new("dropline_ingest_reply_answers_total", "Answers to buyers, by what became of them."),
            &["result"],
        )?;
        let reply_delay = Histogram::with_opts(
            HistogramOpts::new("dropline_ingest_reply_delay_seconds", "Outcome decided to answer sent.")
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
                ]),
        )?;
        let reply_mentions = Histogram::with_opts(
            HistogramOpts::new("dropline_ingest_reply_mentions", "Buyers answered per message.")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )?;
        registry.register(Box::new(replies_sent.clone()))?;
        registry.register(Box::new(reply_answers.clone()))?;
        registry.register(Box::new(reply_delay.clone()))?;
        registry.register(Box::new(reply_mentions.clone()))?;
        registry.register(Box::new(lines.clone()))?;
        registry.register(Box::new(publish_errors.clone()))?;
        registry.register(Box::new(webhook_rejected.clone()))?;
        registry.register(Box::new(irc_connected.clone()))?;
        registry.register(Box::new(irc_reconnects.clone()))?;
        Ok(Metrics {
            registry,
            lines,
            publish_errors,
            webhook_rejected,
            irc_connected,
            irc_reconnects,
            replies_sent,
            reply_answers,
            reply_delay,
            reply_mentions,
        })
    }
}
