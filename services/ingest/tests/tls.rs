//! IRC over TLS (Twitch's `ircs://…:6697`): ingest reads chat from ngircd's TLS port, the server's
//! certificate checked against a CA named by `SSL_CERT_FILE`, and the order it reads is published.
//! Its own test binary: it sets `SSL_CERT_FILE` for the process before anything reads it.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{free_port, irc_server_tls, next, open_drop, test_certs, world, Viewer};
use dropline_core::{kafka, TopicKind};
use dropline_proto::v1::ChatOrder;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_read_over_tls_becomes_orders() -> Result<()> {
    let certs = tempfile::tempdir()?;
    test_certs(certs.path())?;
    // Before any TLS client is made: the roots are read from this file.
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.pem"));
    let tls_port = free_port()?;
    let server = irc_server_tls(tls_port, certs.path()).await?;
    let common::World { settings, producer } = world().await?;
    let drop_id = format!("tls-{}", uuid::Uuid::new_v4().simple());
    let triggers = settings.topics.name(TopicKind::DropTriggers).to_owned();
    kafka::publish(&producer, &triggers, &drop_id, &open_drop(&drop_id, &["irc:#creator"])).await?;

    let config = common::irc_ingest(tls_port, true)?;
    let token = CancellationToken::new();
    let ingest = tokio::spawn(dropline_ingest::run(settings.clone(), config, token.clone()));

    let mut viewer = Viewer::connect(server.port, "ada", "#creator").await?;
    viewer.wait_for(|l| l.starts_with(":dropline!") && l.contains(" JOIN ")).await?;
    viewer.send("PRIVMSG #creator :!buy hoodie L\r\n").await?;
    let orders = kafka::reader(&settings, "test", settings.topics.name(TopicKind::ChatOrders))?;
    let order: ChatOrder = next(&orders).await?;
    ensure!(
        order.drop_id == drop_id && order.buyer_id == "irc:ada" && order.text == "!buy hoodie L",
        "{order:?}"
    );
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), ingest).await???;
    Ok(())
}
