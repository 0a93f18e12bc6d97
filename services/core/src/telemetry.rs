//! Tracing initialisation: human-readable or JSON lines on stderr, filtered by `DROPLINE_LOG`.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter expression is not valid.
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        /// The expression.
        filter: String,
        /// Why it was refused.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("tracing already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Installs the global tracing subscriber. Logs go to stderr so stdout stays free for output
/// meant for other programs (e.g. `dropline tail` prints events as JSON lines there).
pub fn init(settings: &Settings) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|source| TelemetryError::Filter { filter: settings.log_filter.clone(), source })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}
