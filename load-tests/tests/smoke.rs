//! The load generator against the real stack (a matcher in this process): the smoke scenario runs
//! to the end with every order decided, every promise kept, and a report and chart written.

use std::path::Path;

use dropline_load::run::{run, MatcherMode};
use dropline_load::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_keeps_every_promise() -> anyhow::Result<()> {
    let scenario = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml"))?;
    let report = run(scenario, MatcherMode::InProcess).await?;
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(report.orders_sent > 1000, "{report:?}");
    assert_eq!(report.decisions, report.orders_sent, "every order decided once");
    for status in
        ["RESERVED", "SOLD_OUT", "WAITLISTED", "LIMIT_EXCEEDED", "CONFIRMED", "DUPLICATE", "EXPIRED"]
    {
        assert!(report.outcomes.get(status).is_some_and(|n| *n > 0), "no {status}: {:?}", report.outcomes);
    }
    assert!(
        report.latency_ms.p50 > 0.0 && report.latency_ms.p99 >= report.latency_ms.p50,
        "{:?}",
        report.latency_ms
    );
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("smoke.json");
    report.write_json(&json)?;
    report.write_svg(&json.with_extension("svg"))?;
    let back: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    assert_eq!(back["violations"], serde_json::json!([]));
    let svg = std::fs::read_to_string(json.with_extension("svg"))?;
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{}", &svg[..svg.len().min(200)]);
    Ok(())
}
