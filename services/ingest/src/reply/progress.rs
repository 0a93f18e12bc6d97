//! Which outcomes are answered, so offsets are committed only past finished work: answers leave
//! out of order (reservations first), so per partition the commit stops at the oldest outcome
//! still waiting. A restart resumes there; outcomes after it that were already answered are
//! recognised (`sent` records in Redis) and not answered twice. Pure.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Progress {
    /// Per partition: offsets taken and not yet finished.
    open: BTreeMap<i32, BTreeSet<i64>>,
    /// Per partition: one past the highest offset taken.
    next: BTreeMap<i32, i64>,
}

impl Progress {
    /// An outcome at `offset` was taken (its answer, if any, is on its way).
    pub fn take(&mut self, partition: i32, offset: i64) {
        self.open.entry(partition).or_default().insert(offset);
        let next = self.next.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// The outcome at `offset` needs nothing more (answered, merged, dropped or not ours).
    pub fn finish(&mut self, partition: i32, offset: i64) {
        if let Some(open) = self.open.get_mut(&partition) {
            open.remove(&offset);
        }
    }

    /// Per partition, the offset to commit: the oldest unfinished one, or one past the last taken.
    pub fn committable(&self) -> Vec<(i32, i64)> {
        self.next
            .iter()
            .map(|(p, next)| {
                let oldest = self.open.get(p).and_then(|o| o.first().copied());
                (*p, oldest.unwrap_or(*next))
            })
            .collect()
    }

    /// Partitions no longer ours (rebalanced away): forget them.
    pub fn forget(&mut self, partition: i32) {
        self.open.remove(&partition);
        self.next.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_oldest_open_outcome() {
        let mut p = Progress::default();
        for o in 10..15 {
            p.take(0, o);
        }
        p.take(1, 3);
        p.finish(0, 10);
        p.finish(0, 12);
        p.finish(0, 13);
        assert_eq!(p.committable(), vec![(0, 11), (1, 3)]);
        p.finish(0, 11);
        p.finish(0, 14);
        p.finish(1, 3);
        assert_eq!(p.committable(), vec![(0, 15), (1, 4)]);
        p.forget(1);
        assert_eq!(p.committable(), vec![(0, 15)]);
    }
}
