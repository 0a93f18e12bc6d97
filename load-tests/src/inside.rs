//! The matcher's own view of the time an order spends inside it, read from its `/metrics`:
//! cumulative histograms of arrival → outcome handed to the producer and → acknowledged by the
//! broker, diffed over a run and interpolated within their buckets.

/// The matcher's own latency histograms as its `/metrics` shows them: cumulative bucket counts of
/// arrival → outcome handed to the producer, and → acknowledged by the broker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histograms {
    handed: Vec<(f64, f64)>,
    acked: Vec<(f64, f64)>,
}

pub(crate) async fn matcher_histograms(port: u16) -> Option<Histograms> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    Some(Histograms {
        handed: buckets(&text, "dropline_decision_latency_seconds_bucket{le=\""),
        acked: buckets(&text, "dropline_decision_acked_seconds_bucket{le=\""),
    })
}

fn buckets(text: &str, prefix: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter_map(|line| {
            let (le, count) = line.strip_prefix(prefix)?.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

impl Histograms {
    /// What was counted since `before` (the whole history without it), as p50/p99.
    pub(crate) fn since(&self, before: Option<&Histograms>) -> Option<crate::report::Inside> {
        let diff = |now: &[(f64, f64)], then: Option<&[(f64, f64)]>| -> Vec<(f64, f64)> {
            now.iter()
                .enumerate()
                .map(|(i, (le, n))| (*le, n - then.and_then(|t| t.get(i)).map_or(0.0, |(_, m)| *m)))
                .collect()
        };
        let handed = diff(&self.handed, before.map(|b| b.handed.as_slice()));
        let acked = diff(&self.acked, before.map(|b| b.acked.as_slice()));
        Some(crate::report::Inside {
            handed_p50_ms: quantile(&handed, 0.5)?,
            handed_p99_ms: quantile(&handed, 0.99)?,
            acked_p50_ms: quantile(&acked, 0.5).unwrap_or(f64::NAN),
            acked_p99_ms: quantile(&acked, 0.99).unwrap_or(f64::NAN),
            orders: handed.last()?.1 as u64,
        })
    }
}

/// The `q` quantile in milliseconds of cumulative buckets, interpolated linearly within its bucket
/// (as Prometheus' `histogram_quantile` does); the bucket's lower bound when it is the last, open one.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, n) in buckets {
        if *n >= rank {
            if le.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let within = if *n > lower.1 { (rank - lower.1) / (n - lower.1) } else { 1.0 };
            return Some((lower.0 + (le - lower.0) * within) * 1000.0);
        }
        lower = (*le, *n);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_and_diff_the_run() {
        let before =
            Histograms { handed: vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)], acked: vec![] };
        let after = Histograms {
            handed: vec![(0.001, 60.0), (0.002, 110.0), (f64::INFINITY, 110.0)],
            acked: vec![(0.01, 100.0), (f64::INFINITY, 100.0)],
        };
        let inside = after.since(Some(&before)).expect("counts");
        // The run's 100: 50 at ≤ 1 ms, 50 in (1, 2] ms: p50 at 1 ms, p99 at 1.98 ms.
        assert_eq!(inside.orders, 100);
        assert!((inside.handed_p50_ms - 1.0).abs() < 1e-9, "{}", inside.handed_p50_ms);
        assert!((inside.handed_p99_ms - 1.98).abs() < 1e-9, "{}", inside.handed_p99_ms);
        assert!((inside.acked_p50_ms - 5.0).abs() < 1e-9, "{}", inside.acked_p50_ms);
        assert!(quantile(&[(0.001, 0.0), (f64::INFINITY, 0.0)], 0.5).is_none());
    }
}
