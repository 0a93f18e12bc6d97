//! The run's report: a JSON document (with the `violations` list, empty when every promise held)
//! and an SVG chart of latency percentiles and throughput over time.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;

use crate::scenario::Scenario;

/// Order → decision latency, ms, measured from when each line was due (open loop).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// The matcher's own latency histograms over the run (interpolated within buckets of 0.1–100 ms):
/// arrival → outcome handed to the producer, and → acknowledged by the broker.
#[derive(Debug, Clone, Serialize)]
pub struct Inside {
    pub handed_p50_ms: f64,
    pub handed_p99_ms: f64,
    pub acked_p50_ms: f64,
    pub acked_p99_ms: f64,
    /// Messages it timed (outcomes and dead letters).
    pub orders: u64,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: u64,
    pub decided: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub run_id: String,
    pub started_at_ms: i64,
    /// Seconds spent sending, and until the last answer (or the drain deadline).
    pub send_s: f64,
    pub total_s: f64,
    pub lines_sent: u64,
    pub orders_sent: u64,
    pub duplicates_sent: u64,
    pub noise_sent: u64,
    pub garbage_sent: u64,
    pub producer_errors: u64,
    /// Orders that got their decision.
    pub decisions: u64,
    pub decisions_per_s: f64,
    pub latency_ms: Latency,
    /// Outcomes by status (decisions and the holds' later life).
    pub outcomes: BTreeMap<String, u64>,
    /// Outcomes delivered more than once, identical (a restarted matcher republishing).
    pub redelivered: u64,
    /// Highest resident memory of the matcher seen (sampled each second), MiB.
    pub matcher_rss_max_mib: Option<f64>,
    /// CPU time the matcher used during the load (user + system), seconds, when started for the run.
    pub matcher_cpu_s: Option<f64>,
    /// Time inside the matcher (its own histogram), when it was started for the run.
    pub matcher_inside_ms: Option<Inside>,
    pub per_second: Vec<Second>,
    /// (due, latency) of every first decision, seconds (the fault suite's recovery times).
    #[serde(skip)]
    pub waits: Vec<(f64, f64)>,
    /// Every broken promise; empty when all held.
    pub violations: Vec<String>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    /// Latency p50/p99 per second (top) and decisions per second (bottom).
    pub fn write_svg(&self, path: &Path) -> Result<()> {
        let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(340);
        let seconds = self.per_second.last().map_or(1, |s| s.t + 1).max(1);
        let worst = self.per_second.iter().map(|s| s.p99_ms).fold(1.0_f64, f64::max);
        let mut latency = ChartBuilder::on(&top)
            .caption(format!("{}: order → decision latency (ms)", self.scenario.name), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..seconds, 0f64..worst * 1.1)?;
        latency.configure_mesh().x_desc("seconds").y_desc("ms").draw()?;
        for (label, color, pick) in [
            ("p50", BLUE, (|s: &Second| s.p50_ms) as fn(&Second) -> f64),
            ("p99", RED, |s: &Second| s.p99_ms),
        ] {
            latency
                .draw_series(LineSeries::new(
                    self.per_second.iter().map(|s| (s.t, pick(s))),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        latency.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        let most = self.per_second.iter().map(|s| s.decided).max().unwrap_or(1).max(1);
        let mut rate = ChartBuilder::on(&bottom)
            .caption("decisions per second", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..seconds, 0u64..most + most / 10 + 1)?;
        rate.configure_mesh().x_desc("seconds").y_desc("decisions/s").draw()?;
        rate.draw_series(LineSeries::new(
            self.per_second.iter().map(|s| (s.t, s.decided)),
            GREEN.stroke_width(2),
        ))?;
        root.present().with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}
