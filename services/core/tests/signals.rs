//! SIGTERM cancels the shutdown token (its own test binary: signals are process-wide).

use std::time::Duration;

#[tokio::test]
async fn sigterm_cancels_the_shutdown_token() -> anyhow::Result<()> {
    let token = dropline_core::shutdown::on_signals();
    // Let the handler task install its signal listeners before the signal arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!token.is_cancelled());
    let status =
        std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status()?;
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), token.cancelled()).await?;
    Ok(())
}
