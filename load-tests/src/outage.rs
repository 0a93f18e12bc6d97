//! The bad-input suite's outage case: the broker killed for a minute while viewers keep ordering
//! in chat. A broker of the suite's own (so nothing else loses it), a matcher and an ingest
//! reading a scripted IRC server: lines flow at a steady rate before, during and after the
//! outage, and afterwards every line must have exactly one decision — none lost while ingest
//! could not publish, none decided twice when it sent them again — and a drop no one ordered
//! from during the outage must still decide a fresh order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropline_core::{kafka, Settings, TopicKind};
use dropline_proto::v1::{drop_trigger, ReservationOutcome, ReservationStatus};
use futures::StreamExt;

use crate::bad_input::{control_open, reader, Case};
use crate::broker::{find_tansu, Broker};
use crate::matcher::{free_port, Matcher};
use crate::scripted_irc::{order_with_id, start_ingest, IrcPeer};

/// Lines per second the viewers send.
const RATE: u64 = 10;
/// Chat before the broker goes and after it is back.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(5);
/// How long the decisions of every line may take to arrive once the broker is back: ingest's
/// resends back off up to 5 s and the matcher's group must re-form first.
const SETTLE: Duration = Duration::from_secs(90);

/// What the outage left behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    /// Lines with at least one outcome.
    pub decided: u64,
    /// Lines whose outcomes disagree (a second, different decision for one order).
    pub conflicting: u64,
    /// Lines decided other than RESERVED (the stock is ample and buyers unlimited).
    pub refused: u64,
}

impl Tally {
    /// Tallies `outcomes` (order id → the statuses its outcomes carried) against the `sent` ids.
    pub fn of(sent: &[String], outcomes: &HashMap<String, Vec<i32>>) -> Tally {
        let mut tally = Tally { sent: sent.len() as u64, ..Tally::default() };
        for id in sent {
            let Some(statuses) = outcomes.get(id) else { continue };
            tally.decided += 1;
            if statuses.iter().any(|s| *s != statuses[0]) {
                tally.conflicting += 1;
            }
            if statuses[0] != ReservationStatus::Reserved as i32 {
                tally.refused += 1;
            }
        }
        tally
    }

    pub fn holds(&self) -> bool {
        self.decided == self.sent && self.conflicting == 0 && self.refused == 0
    }
}

/// Runs the case with the broker away for `outage`.
pub async fn broker_down(outage: Duration) -> Result<Case> {
    let state = tempfile::Builder::new().prefix("dropline-outage-").tempdir()?;
    let mut broker = Broker::new(find_tansu()?, free_port()?, state.path().join("broker"));
    broker.start().await?;
    let mut settings = Settings::from_env()?;
    settings.kafka = broker.address();
    let run = format!("outage-{}", kafka::now_ms());
    settings.set_topic_prefix(&format!("{run}."))?;
    crate::run::prepare(&settings).await?;
    let producer = kafka::producer(&settings, "dropline-bad-input")?;
    let triggers = settings.topics.name(TopicKind::DropTriggers);
    let chat_drop = format!("{run}-chat");
    let mut open = control_open(&chat_drop);
    if let Some(drop_trigger::Action::Open(o)) = open.action.as_mut() {
        o.channels = vec!["twitch:#bad".into()];
    }
    kafka::publish(&producer, triggers, &chat_drop, &open).await?;
    let quiet_drop = format!("{run}-quiet");
    kafka::publish(&producer, triggers, &quiet_drop, &control_open(&quiet_drop)).await?;

    let dir = std::env::current_exe()?.parent().context("the tool's directory")?.to_owned();
    let _matcher =
        Matcher::start(&dir.join("dropline-matcher"), &settings, &format!("{run}-matcher")).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let _ingest = start_ingest(&dir.join("dropline-ingest"), &settings, listener.local_addr()?.port())?;
    let mut peer = IrcPeer::accept(&listener).await?;
    let orders = reader(&settings, TopicKind::ChatOrders)?;
    peer.send(&line("warm-up")).await?;
    order_with_id(&orders, "warm-up").await.context("ingest does not publish before the outage")?;
    drop(orders);

    let started = Instant::now();
    let total = BEFORE + outage + AFTER;
    let flow = async {
        let mut sent = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
        while started.elapsed() < total {
            tick.tick().await;
            let id = format!("outage-{}", sent.len());
            peer.send(&line(&id)).await?;
            sent.push(format!("twitch:{id}"));
        }
        anyhow::Ok(sent)
    };
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        broker.kill();
        tokio::time::sleep(outage).await;
        broker.start().await?;
        // Listening is not serving: the restarted broker answers metadata a little later.
        Ok::<_, anyhow::Error>(kafka::wait_for_broker(&settings, Duration::from_secs(60)).await?)
    };
    let (sent, restarted) = tokio::join!(flow, fault);
    let (sent, ()) = (sent?, restarted?);

    let outcomes = outcomes_of(&settings, &sent).await?;
    let tally = Tally::of(&sent, &outcomes);
    let quiet = quiet_decides(&settings, &producer, &quiet_drop).await;
    let mut got = format!(
        "{} lines, {} decided, {} conflicting, {} refused; {quiet}",
        tally.sent, tally.decided, tally.conflicting, tally.refused
    );
    let passed = tally.holds() && quiet == "quiet drop decided";
    if !passed {
        // The broker's log says whether the broker or Dropline lost them.
        let kept = state.keep();
        got.push_str(&format!(" (broker log: {})", kept.join("broker/tansu.log").display()));
    }
    Ok(Case {
        name: format!("broker down {} s while chat flows", outage.as_secs()),
        expected: "every line decided once, quiet drop decided".into(),
        passed,
        got,
    })
}

fn line(id: &str) -> Vec<u8> {
    format!("@id={id};user-id=u-{id} :v{id}!v@h PRIVMSG #bad :!buy tee\r\n").into_bytes()
}

/// Every outcome on the reservations topic of the `sent` orders, read until each has one or
/// [`SETTLE`] passes.
async fn outcomes_of(settings: &Settings, sent: &[String]) -> Result<HashMap<String, Vec<i32>>> {
    let consumer = reader(settings, TopicKind::Reservations)?;
    let mut stream = consumer.stream();
    let mut outcomes: HashMap<String, Vec<i32>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + SETTLE;
    let wanted: std::collections::HashSet<&String> = sent.iter().collect();
    while wanted.iter().any(|id| !outcomes.contains_key(*id)) {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else { break };
        let message = next.context("stream ended")??;
        let outcome: ReservationOutcome = kafka::decode(&message)?;
        outcomes.entry(outcome.order_id).or_default().push(outcome.status);
    }
    // Replays of an order already decided come back identical; read a little past the last one
    // so that a conflicting second decision would be seen too.
    let linger = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(next)) = tokio::time::timeout_at(linger, stream.next()).await {
        let outcome: ReservationOutcome = kafka::decode(&next?)?;
        outcomes.entry(outcome.order_id).or_default().push(outcome.status);
    }
    Ok(outcomes)
}

/// An order of the drop nobody ordered from during the outage is decided (RESERVED).
async fn quiet_decides(
    settings: &Settings,
    producer: &rdkafka::producer::FutureProducer,
    drop_id: &str,
) -> String {
    let order = dropline_proto::v1::ChatOrder {
        order_id: format!("{drop_id}-after"),
        drop_id: drop_id.into(),
        buyer_id: "quiet-buyer".into(),
        channel: "twitch:#quiet".into(),
        text: "!buy tee".into(),
        sent_at_ms: kafka::now_ms(),
        ..Default::default()
    };
    if let Err(e) =
        kafka::publish(producer, settings.topics.name(TopicKind::ChatOrders), drop_id, &order).await
    {
        return format!("quiet drop's order not sent: {e}");
    }
    match outcomes_of(settings, std::slice::from_ref(&order.order_id)).await {
        Ok(o) => match o.get(&order.order_id).map(|s| s[0]) {
            Some(s) if s == ReservationStatus::Reserved as i32 => "quiet drop decided".into(),
            Some(s) => format!("quiet drop answered status {s}"),
            None => "quiet drop not decided".into(),
        },
        Err(e) => format!("quiet drop: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_a_twice_decided_or_a_refused_line_fails_the_case() {
        let sent: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let reserved = ReservationStatus::Reserved as i32;
        let sold_out = ReservationStatus::SoldOut as i32;
        let all = HashMap::from([
            ("a".to_string(), vec![reserved]),
            ("b".to_string(), vec![reserved, reserved]),
            ("c".to_string(), vec![reserved]),
        ]);
        assert!(Tally::of(&sent, &all).holds(), "an identical replay is not a second decision");
        let mut lost = all.clone();
        lost.remove("c");
        assert_eq!(Tally::of(&sent, &lost).decided, 2);
        assert!(!Tally::of(&sent, &lost).holds());
        let mut twice = all.clone();
        twice.insert("b".into(), vec![reserved, sold_out]);
        assert_eq!(Tally::of(&sent, &twice).conflicting, 1);
        let mut refused = all;
        refused.insert("a".into(), vec![sold_out]);
        assert_eq!(Tally::of(&sent, &refused).refused, 1);
    }
}
