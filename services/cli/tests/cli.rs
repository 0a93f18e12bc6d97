//! The `dropline` command against the real broker: create topics, produce JSON lines, tail them
//! back decoded; bad input is a clear error and a non-zero exit. Topics are prefixed per test run.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::{ensure, Context};

fn dropline(prefix: &str, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dropline"))
        .args(args)
        .env("DROPLINE_TOPIC_PREFIX", prefix)
        .env("DROPLINE_PARTITIONS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(stdin.as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn create_produce_and_tail_a_contract_topic() -> anyhow::Result<()> {
    let prefix = format!("test-cli-{}.", uuid::Uuid::new_v4().simple());
    let created = dropline(&prefix, &["create-topics"], "")?;
    ensure!(created.status.success(), "create-topics failed: {}", stderr(&created));
    let listing = stdout(&created);
    for topic in ["chat-orders", "drop-triggers", "hold-actions", "reservations", "clip-requests", "clips"] {
        assert!(listing.contains(&format!("{prefix}{topic}\tcreated")), "{listing}");
    }
    let again = dropline(&prefix, &["create-topics"], "")?;
    assert!(stdout(&again).contains(&format!("{prefix}chat-orders\texists")), "{}", stdout(&again));

    let topic = format!("{prefix}chat-orders");
    let lines = (0..3)
        .map(|n| {
            format!(r#"{{"orderId":"o{n}","dropId":"drop-cli","buyerId":"b{n}","text":"!buy hoodie L","sentAtMs":"{n}"}}"#)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let produced = dropline(&prefix, &["produce", &topic], &lines)?;
    ensure!(produced.status.success(), "produce failed: {}", stderr(&produced));
    assert_eq!(stdout(&produced).lines().count(), 3, "one delivery line per event");

    let tailed =
        dropline(&prefix, &["tail", &topic, "--from-beginning", "-n", "3", "--idle-exit", "30"], "")?;
    ensure!(tailed.status.success(), "tail failed: {}", stderr(&tailed));
    let mut ids = Vec::new();
    for line in stdout(&tailed).lines() {
        let event: serde_json::Value = serde_json::from_str(line)?;
        assert_eq!(event["topic"], topic.as_str());
        assert_eq!(event["key"], "drop-cli");
        assert_eq!(event["value"]["text"], "!buy hoodie L");
        ids.push(event["value"]["orderId"].as_str().context("orderId")?.to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["o0", "o1", "o2"]);

    let listed = dropline(&prefix, &["topics"], "")?;
    let row = stdout(&listed)
        .lines()
        .find(|l| l.starts_with(&format!("{topic} ")))
        .map(str::to_owned)
        .context("topic listed")?;
    assert!(row.contains("dropline.v1.ChatOrder"), "{row}");
    assert_eq!(row.split_whitespace().nth(2), Some("3"), "3 messages: {row}");
    Ok(())
}

#[test]
fn bad_input_is_a_clear_error() -> anyhow::Result<()> {
    let prefix = format!("test-cli-{}.", uuid::Uuid::new_v4().simple());
    let bad_json = dropline(&prefix, &["produce", "anything", "--type", "chat-orders"], "{\"orderId\":1\n")?;
    assert!(!bad_json.status.success());
    assert!(stderr(&bad_json).contains("line 1"), "{}", stderr(&bad_json));
    assert!(stderr(&bad_json).contains("ChatOrder"), "{}", stderr(&bad_json));

    let unknown = dropline(&prefix, &["tail", "not-a-contract-topic"], "")?;
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("--type"), "{}", stderr(&unknown));

    let missing = dropline(&prefix, &["tail", &format!("{prefix}chat-orders"), "--idle-exit", "1"], "")?;
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("does not exist"), "{}", stderr(&missing));
    Ok(())
}
