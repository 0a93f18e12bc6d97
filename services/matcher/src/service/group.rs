//! Consumer-group membership: which partitions this matcher owns, as the rebalance callbacks say,
//! so the sweeper never asks the consumer on its tick.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use tracing::info;

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

/// The consumer's context: keeps [`Membership`] current.
#[derive(Clone, Default)]
pub(crate) struct GroupContext {
    pub membership: Arc<Membership>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Partitions being taken away are no longer ours from this moment: stop sweeping their drops.
        if let Rebalance::Revoke(_) = rebalance {
            self.membership.set(HashSet::new());
        }
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
