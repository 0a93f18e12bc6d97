//! `dropline-ingest`: settings from the environment, telemetry, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use dropline_core::{shutdown, telemetry, Settings};
use dropline_ingest::IngestConfig;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dropline-ingest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings)?;
    let config = IngestConfig::from_env(settings.admin)?;
    dropline_ingest::run(settings, config, shutdown::on_signals()).await?;
    Ok(())
}
