//! Consumer-group membership: which partitions this matcher owns, as the rebalance callbacks say,
//! so the sweeper never asks the consumer on its tick.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{info, warn};

/// The partitions assigned now and a generation that moves on every change.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    assigned: Mutex<HashSet<(String, i32)>>,
    generation: AtomicU64,
}

impl Membership {
    /// The assignment and its generation.
    pub fn assigned(&self) -> (u64, HashSet<(String, i32)>) {
        let assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner).clone();
        (self.generation.load(Ordering::Acquire), assigned)
    }

    fn set(&self, assigned: HashSet<(String, i32)>) {
        *self.assigned.lock().unwrap_or_else(PoisonError::into_inner) = assigned;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// At most one offset commit in flight: a broker slow to store commits (the development broker
/// writes each to SQLite) is not handed a queue of them that delays its fetches and produces.
#[derive(Debug, Default)]
pub(crate) struct Committing(AtomicBool);

impl Committing {
    /// Claims the right to send a commit; false while the previous one is unanswered.
    pub fn start(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// The commit was answered (or never sent).
    pub fn done(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The consumer's context: keeps [`Membership`] current and learns when a commit is answered.
#[derive(Clone, Default)]
pub(crate) struct GroupContext {
    pub membership: Arc<Membership>,
    pub committing: Arc<Committing>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Partitions being taken away are no longer ours from this moment: stop sweeping their drops.
        if let Rebalance::Revoke(_) = rebalance {
            self.membership.set(HashSet::new());
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // Not fatal: the next commit covers these offsets; a replay would be recognised.
            warn!(error = %e, "commit failed");
        }
        self.committing.done();
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The whole assignment after the change (also right for incremental protocols).
        let assigned: HashSet<(String, i32)> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect())
            .unwrap_or_default();
        if !matches!(rebalance, Rebalance::Error(_)) {
            info!(partitions = assigned.len(), "group assignment changed");
        }
        self.membership.set(assigned);
    }
}
