//! Every metric the matcher exports, defined in one place and registered in one registry.

use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets of the decision latencies: 0.1 ms to 100 ms in 1–2–5 steps, then the slow tail.
const LATENCY_BUCKETS: [f64; 12] =
    [0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0];

/// The matcher's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry served on `/metrics`.
    pub registry: Registry,
    /// `dropline_orders_total{status}`: decisions and hold lifecycle outcomes published.
    pub orders: IntCounterVec,
    /// `dropline_chat_ignored_total`: chat lines that were not orders.
    pub ignored: IntCounter,
    /// `dropline_decision_latency_seconds`: message received → outcome handed to the producer.
    pub decision_latency: Histogram,
    /// `dropline_decision_acked_seconds`: message received → its outcome acknowledged by the broker.
    pub decision_acked: Histogram,
    /// `dropline_producer_blocked_seconds_total`: time spent handing records to the producer
    /// (mostly waiting for room in its queue).
    pub producer_blocked: Counter,
    /// `dropline_batch_size`: messages decided together.
    pub batch_size: Histogram,
    /// `dropline_consumer_lag{topic,partition}`: messages not yet consumed.
    pub consumer_lag: IntGaugeVec,
    /// `dropline_holds_active`: holds waiting for payment, over the drops this matcher sweeps.
    pub holds_active: IntGauge,
    /// `dropline_waitlist_length`: waitlisted orders, over the drops this matcher sweeps.
    pub waitlist_length: IntGauge,
    /// `dropline_dead_letters_total`: messages sent to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// `dropline_redis_errors_total`: failed Redis calls (retried).
    pub redis_errors: IntCounter,
    /// `dropline_publish_errors_total`: failed produce attempts (retried, or dead-lettered when
    /// the broker refuses a record for good).
    pub publish_errors: IntCounter,
    /// `dropline_replica_waits_total`: `WAIT`s that returned before enough replicas acknowledged
    /// (outcomes held back; only with `DROPLINE_MATCHER_WAIT_REPLICAS`).
    pub replica_waits: IntCounter,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = dropline_core::admin::registry("matcher");
        let orders = IntCounterVec::new(
            Opts::new("dropline_orders_total", "Outcomes published, by status."),
            &["status"],
        )?;
        let ignored = IntCounter::new("dropline_chat_ignored_total", "Chat lines that were not orders.")?;
        let decision_latency = Histogram::with_opts(
            HistogramOpts::new(
                "dropline_decision_latency_seconds",
                "Time from a message's arrival in the matcher to its outcome handed to the producer.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let decision_acked = Histogram::with_opts(
            HistogramOpts::new(
                "dropline_decision_acked_seconds",
                "Time from a message's arrival in the matcher to its outcome acknowledged by the broker.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let producer_blocked = Counter::new(
            "dropline_producer_blocked_seconds_total",
            "Time spent handing records to the producer, mostly waiting for room in its queue.",
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("dropline_batch_size", "Messages decided in one batch.")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new("dropline_consumer_lag", "Messages in assigned partitions not yet consumed."),
            &["topic", "partition"],
        )?;
        let holds_active = IntGauge::new("dropline_holds_active", "Holds waiting for payment.")?;
        let waitlist_length = IntGauge::new("dropline_waitlist_length", "Waitlisted orders.")?;
        let dead_letters = IntCounter::new("dropline_dead_letters_total", "Messages sent to dead-letters.")?;
        let redis_errors = IntCounter::new("dropline_redis_errors_total", "Failed Redis calls (retried).")?;
        let publish_errors =
            IntCounter::new("dropline_publish_errors_total", "Failed produce attempts (retried).")?;
        let replica_waits = IntCounter::new(
            "dropline_replica_waits_total",
            "WAITs that timed out before enough Redis replicas held the decisions (outcomes held back).",
        )?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(ignored.clone()))?;
        registry.register(Box::new(decision_latency.clone()))?;
        registry.register(Box::new(decision_acked.clone()))?;
        registry.register(Box::new(producer_blocked.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
        registry.register(Box::new(holds_active.clone()))?;
        registry.register(Box::new(waitlist_length.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(publish_errors.clone()))?;
        registry.register(Box::new(replica_waits.clone()))?;
        Ok(Self {
            registry,
            orders,
            ignored,
            decision_latency,
            decision_acked,
            producer_blocked,
            batch_size,
            consumer_lag,
            holds_active,
            waitlist_length,
            dead_letters,
            redis_errors,
            publish_errors,
            replica_waits,
        })
    }
}
