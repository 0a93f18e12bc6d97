//! `dropline-matcher`: parse settings, start telemetry, run the matcher until SIGTERM/SIGINT.

use std::process::ExitCode;

use dropline_core::{shutdown, telemetry, Settings};
use dropline_matcher::config::MatcherConfig;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dropline-matcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings)?;
    let config = MatcherConfig::from_env(settings.admin)?;
    dropline_matcher::service::run(settings, config, shutdown::on_signals()).await?;
    Ok(())
}
