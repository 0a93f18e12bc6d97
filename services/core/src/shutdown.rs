//! Graceful shutdown: SIGINT/SIGTERM cancel a token; services then drain within a grace period.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
        () = term => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}

/// A token cancelled on the first SIGINT/SIGTERM. A second signal ends the process at once
/// (exit code 130), for an operator who does not want to wait for the drain.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        cancel.cancel();
        signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
    token
}

/// The drain did not finish within its grace period.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("drain did not finish within {0:?}")]
pub struct GraceExpired(pub Duration);

/// Runs `drain` (flush producers, commit offsets, ...) for at most `grace`.
pub async fn drain<F: Future>(grace: Duration, drain: F) -> Result<F::Output, GraceExpired> {
    tokio::time::timeout(grace, drain).await.map_err(|_| GraceExpired(grace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_returns_the_output_in_time() {
        let out = drain(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            7
        })
        .await;
        assert_eq!(out, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let started = tokio::time::Instant::now();
        let out = drain(Duration::from_secs(2), std::future::pending::<()>()).await;
        assert_eq!(out, Err(GraceExpired(Duration::from_secs(2))));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
