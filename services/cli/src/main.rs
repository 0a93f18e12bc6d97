//! `dropline`: list, create, tail and feed the contract's topics (events shown as JSON lines).

use std::process::ExitCode;

use clap::Parser;
use dropline_cli::Cli;
use dropline_core::{shutdown, telemetry, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line that says what went wrong (with its causes), not a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::from_env()?;
    if settings.log_filter == "info" {
        // Keep the terminal for the command's own output unless asked otherwise.
        settings.log_filter = "warn".into();
    }
    telemetry::init(&settings)?;
    dropline_cli::run(cli, settings, shutdown::on_signals()).await
}
