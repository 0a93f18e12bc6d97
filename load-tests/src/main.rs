//! `dropline-load run <scenario.toml> --report <report.json>`: one bounded load run on loopback;
//! exits non-zero when a promise was broken.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dropline_load::run::{run, MatcherMode};
use dropline_load::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(name = "dropline-load", version, about = "Open-loop load against Dropline, with invariant checks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write its report (JSON) and chart (SVG beside it).
    Run {
        /// A scenario file, e.g. load-tests/scenarios/quick.toml.
        scenario: PathBuf,
        /// Where the JSON report goes (the SVG chart goes beside it, `.svg`).
        #[arg(long, value_name = "FILE")]
        report: PathBuf,
        /// Decide with a matcher already running on the configured topics instead of starting one.
        #[arg(long)]
        external_matcher: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dropline-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn main_inner() -> anyhow::Result<ExitCode> {
    let Command::Run { scenario, report, external_matcher } = Cli::parse().command;
    let scenario = Scenario::load(&scenario)?;
    let matcher = if external_matcher {
        MatcherMode::External
    } else {
        // The matcher built with this binary (same profile, same directory).
        let exe = std::env::current_exe()?;
        let binary = exe.with_file_name("dropline-matcher");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build it too (cargo build --release -p dropline-matcher -p dropline-load)",
            binary.display()
        );
        MatcherMode::Spawn(binary)
    };
    let result = run(scenario, matcher).await?;
    result.write_json(&report)?;
    let svg = report.with_extension("svg");
    result.write_svg(&svg)?;
    let l = &result.latency_ms;
    println!(
        "{}: {} orders, {} decided in {:.1} s ({:.0}/s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; matcher {}; violations: {}",
        result.scenario.name,
        result.orders_sent,
        result.decisions,
        result.total_s,
        result.decisions_per_s,
        l.p50,
        l.p99,
        l.max,
        result.matcher_rss_max_mib.map_or_else(|| "-".to_owned(), |m| format!("{m:.0} MiB")),
        result.violations.len()
    );
    println!("report: {} · chart: {}", report.display(), svg.display());
    for violation in &result.violations {
        eprintln!("violation: {violation}");
    }
    Ok(if result.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
