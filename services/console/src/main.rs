//! `dropline-console`: settings from the environment, telemetry, then the console until SIGTERM/SIGINT.

use std::process::ExitCode;

use dropline_console::ConsoleConfig;
use dropline_core::{shutdown, telemetry, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dropline-console: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings)?;
    let config = ConsoleConfig::from_env()?;
    dropline_console::run(settings, config, shutdown::on_signals()).await?;
    Ok(())
}
