//! The drops' event log, folded for their reports: `drop-triggers`, `chat-activity`,
//! `chat-orders` and `reservations` are each followed from the beginning (`clips` is the clip
//! index's), so a report is computed from the log and is the same after a console restart. A
//! report is served only once every one of these topics has been read up to where it ended when
//! the console started.

pub mod figures;
pub mod fold;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use dropline_core::kafka::{self, Followed};
use dropline_core::TopicKind;
use dropline_proto::v1::{ChatActivity, ChatOrder, DropTrigger, ReservationOutcome};
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use figures::{Figures, Funnel};
pub use fold::DropLog;

use crate::state::AppState;

/// The topics a report is computed from (`clips` through the clip index).
pub const TOPICS: [TopicKind; 5] = [
    TopicKind::DropTriggers,
    TopicKind::ChatActivity,
    TopicKind::ChatOrders,
    TopicKind::Reservations,
    TopicKind::Clips,
];

/// Every drop's folded log.
#[derive(Debug, Default)]
pub struct Ledger {
    drops: Mutex<HashMap<String, DropLog>>,
    caught_up: Mutex<BTreeSet<TopicKind>>,
}

impl Ledger {
    fn fold(&self, drop_id: &str, f: impl FnOnce(&mut DropLog)) {
        let mut drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        f(drops.entry(drop_id.to_owned()).or_default());
    }

    pub fn trigger(&self, trigger: &DropTrigger) {
        self.fold(&trigger.drop_id, |log| log.trigger(trigger));
    }

    pub fn activity(&self, activity: &ChatActivity) {
        self.fold(&activity.drop_id, |log| log.activity(activity));
    }

    pub fn chat_order(&self, order: &ChatOrder) {
        self.fold(&order.drop_id, |log| log.chat_order(order));
    }

    pub fn outcome(&self, outcome: &ReservationOutcome) {
        self.fold(&outcome.drop_id, |log| log.outcome(outcome));
    }

    /// Marks `topic` as read up to where it ended at the start.
    pub fn caught_up(&self, topic: TopicKind) {
        self.caught_up.lock().unwrap_or_else(PoisonError::into_inner).insert(topic);
    }

    /// The topics not yet read up to where they ended at the start.
    pub fn behind(&self) -> Vec<TopicKind> {
        let done = self.caught_up.lock().unwrap_or_else(PoisonError::into_inner);
        TOPICS.into_iter().filter(|t| !done.contains(t)).collect()
    }

    /// Runs `f` on the drop's log (an empty one when the log has nothing of it).
    pub fn with<R>(&self, drop_id: &str, f: impl FnOnce(&DropLog) -> R) -> R {
        let drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        match drops.get(drop_id) {
            Some(log) => f(log),
            None => f(&DropLog::default()),
        }
    }

    /// The drop's figures; repeat buyers are looked for in the drops opened before it on its
    /// home channel.
    pub fn figures(&self, drop_id: &str) -> Figures {
        let drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        let empty = DropLog::default();
        let log = drops.get(drop_id).unwrap_or(&empty);
        let earlier = match (log.channels.first(), log.opened_at_ms) {
            (Some(home), Some(opened)) => drops
                .iter()
                .filter(|(id, other)| {
                    id.as_str() != drop_id
                        && other.opened_at_ms.is_some_and(|at| at < opened)
                        && other.channels.contains(home)
                })
                .map(|(_, other)| other)
                .collect(),
            _ => Vec::new(),
        };
        figures::figures(log, earlier)
    }
}

/// Follows `drop-triggers`, `chat-activity` and `chat-orders` into the ledger until `shutdown`
/// (`reservations` comes through the live view's follower, which feeds the ledger too).
pub async fn follow(state: AppState, shutdown: CancellationToken) {
    let triggers = follow_one::<DropTrigger>(&state, TopicKind::DropTriggers, &shutdown, |l, m| l.trigger(m));
    let activity =
        follow_one::<ChatActivity>(&state, TopicKind::ChatActivity, &shutdown, |l, m| l.activity(m));
    let orders = follow_one::<ChatOrder>(&state, TopicKind::ChatOrders, &shutdown, |l, m| l.chat_order(m));
    tokio::join!(triggers, activity, orders);
}

async fn follow_one<M: prost::Message + Default>(
    state: &AppState,
    kind: TopicKind,
    shutdown: &CancellationToken,
    add: fn(&Ledger, &M),
) {
    let topic = state.settings.topics.name(kind);
    let ledger = &state.ledger;
    kafka::follow_from_start(
        &state.settings,
        &format!("dropline-console-{}", kind.default_name()),
        topic,
        &state.health,
        kind.default_name(),
        shutdown,
        |f| match f {
            Followed::Message { event: Ok(message), .. } => add(ledger, &message),
            Followed::Message { event: Err(e), .. } => {
                warn!(error = %e, topic, "undecodable event left out of reports")
            }
            Followed::CaughtUp => ledger.caught_up(kind),
        },
    )
    .await;
}
