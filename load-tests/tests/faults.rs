//! The fault suite's short form (`make test`; `make faults` runs the full one): each fault strikes
//! a drop under load, and afterwards no promise is broken — every order answered once, nothing
//! oversold, limits held, every hold ended with its stock back — and the service came back.

use std::path::Path;

use dropline_load::faults::{self, Fault};
use dropline_load::scenario::{Arrival, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_promise_holds_through_each_fault() -> anyhow::Result<()> {
    let mut scenario = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/faults.toml"))?;
    scenario.duration_s = 12;
    scenario.arrival = Arrival::Open { rate: 250.0 };
    // `cargo test --workspace` builds the matcher beside this package's binary.
    let matcher = Path::new(env!("CARGO_BIN_EXE_dropline-load")).with_file_name("dropline-matcher");
    anyhow::ensure!(matcher.exists(), "{} is missing: cargo build -p dropline-matcher", matcher.display());
    let state = tempfile::tempdir()?;
    let options = faults::Options {
        matcher,
        tansu: dropline_load::broker::find_tansu()?,
        scenario,
        fault_at_s: 4.0,
        faults: Fault::ALL.to_vec(),
        state: state.path().to_owned(),
    };
    let rows = faults::run(&options).await?;
    eprintln!("{}", faults::table(&rows));
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert!(row.violations.is_empty(), "{}: {:#?}", row.fault.name(), row.violations);
        assert!(row.orders > 1000, "{}: only {} orders", row.fault.name(), row.orders);
        assert_eq!(row.decisions, row.orders, "{}: every order decided", row.fault.name());
        // Back within the group's session timeout (6 s) and a rebalance, not stalled for good.
        assert!(row.recovery_s < 20.0, "{}: recovered only after {:.1} s", row.fault.name(), row.recovery_s);
    }
    let killed = &rows[0];
    assert!(killed.in_flight > 0 || killed.redelivered > 0, "the kill struck an idle matcher: {killed:?}");

    // A split drop (stock over 3 shards, units moving between them) through a kill -9.
    let mut split =
        Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/faults-split.toml"))?;
    split.duration_s = 12;
    split.arrival = Arrival::Open { rate: 250.0 };
    let options = faults::Options { scenario: split, faults: vec![Fault::KillMatcher], ..options };
    let rows = faults::run(&options).await?;
    eprintln!("{}", faults::table(&rows));
    assert!(rows[0].violations.is_empty(), "split drop: {:#?}", rows[0].violations);
    assert_eq!(rows[0].decisions, rows[0].orders, "split drop: every order decided");
    Ok(())
}
