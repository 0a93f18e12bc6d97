//! The matcher on a Redis Cluster reached over TLS (`rediss-cluster://`): three primaries with
//! TLS ports only (their cluster bus over TLS too) and a throwaway CA from
//! `deploy/local/test-certs.sh`; the same scenario as in clear. A node reached in clear is
//! refused. Its own test binary: it sets `SSL_CERT_FILE` for the process before anything reads it.

mod common;

use std::process::Command;

use common::redis_cluster::{cluster, drops_spread_and_decided, Link};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matcher_decides_drops_over_a_tls_redis_cluster() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/test-certs.sh");
    anyhow::ensure!(
        Command::new(script).arg(certs.path()).status()?.success(),
        "test-certs.sh failed (openssl?)"
    );
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.pem"));
    drops_spread_and_decided(Link::Tls(certs.path())).await?;

    // The same nodes in clear are refused, not silently downgraded.
    let dir = tempfile::tempdir()?;
    let (_servers, ports) = cluster(dir.path(), Link::Tls(certs.path())).await?;
    let plain = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        dropline_core::redis::connect(&Link::Plain.cluster_url(&ports)),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain cluster connection to TLS nodes must fail");
    Ok(())
}
