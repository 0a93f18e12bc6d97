//! Automatic moments (pure): a drop opening, a SKU selling out, a rush of orders (the rolling 5 s
//! rate above 3× the trailing 60 s median) become clip requests — one per window: a moment whose
//! window overlaps the last clip of its drop is merged into it, so a rush yields one clip, not ten.

use std::collections::{HashMap, HashSet, VecDeque};

use dropline_proto::v1::ClipReason;

use crate::rules::ClipRules;

/// A moment worth a clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    /// Drop.
    pub drop_id: String,
    /// Wall-clock time (Unix ms).
    pub at_ms: i64,
    /// Why.
    pub reason: ClipReason,
    /// Detail (the SKU that sold out, the rate).
    pub note: String,
}

/// How rushes are recognised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RushRule {
    /// Rolling window of the current rate (5 s).
    pub window_ms: i64,
    /// Trailing window of the baseline (60 s), in 1 s buckets.
    pub baseline_ms: i64,
    /// Current rate must exceed this multiple of the baseline median (3×).
    pub factor: f64,
    /// …and be at least this many orders per second (so 2 orders after silence are no rush).
    pub min_rate: f64,
}

impl Default for RushRule {
    fn default() -> Self {
        Self { window_ms: 5_000, baseline_ms: 60_000, factor: 3.0, min_rate: 5.0 }
    }
}

#[derive(Debug, Default)]
struct DropState {
    /// Orders per 1 s bucket: (second, count), oldest first, covering the baseline window.
    buckets: VecDeque<(i64, u32)>,
    /// SKUs already clipped as sold out.
    sold_out: HashSet<String>,
    /// End of the window of the last clip requested (Unix ms).
    last_end_ms: Option<i64>,
}

/// Watches one or more drops and says when a moment deserves a clip.
#[derive(Debug)]
pub struct Detector {
    rules: ClipRules,
    rush: RushRule,
    drops: HashMap<String, DropState>,
}

impl Detector {
    /// A detector with the clip rules (for window overlap) and the rush rule.
    pub fn new(rules: ClipRules, rush: RushRule) -> Self {
        Self { rules, rush, drops: HashMap::new() }
    }

    fn window(&self, at_ms: i64) -> (i64, i64) {
        let before = i64::try_from(self.rules.before.as_millis()).unwrap_or(0);
        let after = i64::try_from(self.rules.after.as_millis()).unwrap_or(0);
        (at_ms - before, at_ms + after)
    }

    /// Keeps `moment` unless its window overlaps the drop's last clip (then it is merged into it).
    fn offer(&mut self, moment: Moment) -> Option<Moment> {
        let (start, end) = self.window(moment.at_ms);
        let state = self.drops.entry(moment.drop_id.clone()).or_default();
        if state.last_end_ms.is_some_and(|last_end| start < last_end) {
            return None;
        }
        state.last_end_ms = Some(end);
        Some(moment)
    }

    /// The drop opened.
    pub fn opened(&mut self, drop_id: &str, at_ms: i64) -> Option<Moment> {
        self.offer(Moment {
            drop_id: drop_id.to_owned(),
            at_ms,
            reason: ClipReason::DropOpened,
            note: "the drop opened".into(),
        })
    }

    /// A decision was made; `sold_out_sku` is set when it took the last unit of a SKU.
    pub fn decided(&mut self, drop_id: &str, at_ms: i64, sold_out_sku: Option<&str>) -> Option<Moment> {
        let rush = self.rush;
        let state = self.drops.entry(drop_id.to_owned()).or_default();
        let second = at_ms.div_euclid(1000);
        match state.buckets.back_mut() {
            Some((s, count)) if *s == second => *count += 1,
            _ => state.buckets.push_back((second, 1)),
        }
        let oldest = second - rush.baseline_ms / 1000;
        while state.buckets.front().is_some_and(|(s, _)| *s <= oldest) {
            state.buckets.pop_front();
        }
        if let Some(sku) = sold_out_sku {
            if state.sold_out.insert(sku.to_owned()) {
                return self.offer(Moment {
                    drop_id: drop_id.to_owned(),
                    at_ms,
                    reason: ClipReason::SoldOut,
                    note: format!("{sku} sold out"),
                });
            }
        }
        let recent_from = second - rush.window_ms / 1000;
        let recent: u32 = state.buckets.iter().filter(|(s, _)| *s > recent_from).map(|(_, c)| c).sum();
        let rate = f64::from(recent) * 1000.0 / rush.window_ms as f64;
        // Baseline: the median of per-second counts over the trailing window, empty seconds counted.
        let seconds = usize::try_from(rush.baseline_ms / 1000).unwrap_or(60).max(1);
        let mut counts = vec![0u32; seconds];
        for (s, c) in &state.buckets {
            if let Ok(i) = usize::try_from(second - s) {
                if i < seconds {
                    counts[i] = *c;
                }
            }
        }
        counts.sort_unstable();
        let median = f64::from(counts[seconds / 2]);
        if rate >= rush.min_rate && rate > rush.factor * median {
            return self.offer(Moment {
                drop_id: drop_id.to_owned(),
                at_ms,
                reason: ClipReason::Rush,
                note: format!("rush: {rate:.0} orders/s against a usual {median:.0}/s"),
            });
        }
        None
    }

    /// Forgets a drop (closed and done).
    pub fn forget(&mut self, drop_id: &str) {
        self.drops.remove(drop_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn detector() -> Detector {
        Detector::new(ClipRules::default(), RushRule::default())
    }

    #[test]
    fn an_open_is_a_moment() {
        let m = detector().opened("d", 1_000_000).expect("moment");
        assert_eq!((m.reason, m.at_ms), (ClipReason::DropOpened, 1_000_000));
    }

    #[test]
    fn a_sell_out_is_a_moment_once_per_sku() {
        let mut d = detector();
        let m = d.decided("d", 1_000_000, Some("HOODIE-L")).expect("sold out");
        assert_eq!(m.reason, ClipReason::SoldOut);
        assert!(m.note.contains("HOODIE-L"));
        assert_eq!(d.decided("d", 2_000_000, Some("HOODIE-L")), None, "once per SKU");
    }

    #[test]
    fn a_rush_after_a_calm_minute_is_one_clip_not_ten() {
        let mut d = detector();
        let start = 10_000_000;
        // A calm minute: one order every 2 s.
        for s in 0..60 {
            if s % 2 == 0 {
                assert_eq!(d.decided("d", start + s * 1000, None), None, "calm at {s} s");
            }
        }
        // Then 40 orders a second for 10 s.
        let mut moments = Vec::new();
        for i in 0..400 {
            moments.extend(d.decided("d", start + 60_000 + i * 25, None));
        }
        assert_eq!(moments.len(), 1, "{moments:?}");
        assert_eq!(moments[0].reason, ClipReason::Rush);
    }

    #[test]
    fn steady_traffic_is_no_rush() {
        let mut d = detector();
        let moments: Vec<_> = (0..3000).filter_map(|i| d.decided("d", 5_000_000 + i * 50, None)).collect();
        // 20 orders/s from the first second: the very first seconds look like a rush against an
        // empty baseline, then never again.
        assert!(moments.len() <= 1, "{moments:?}");
    }

    #[test]
    fn overlapping_moments_merge_and_separate_ones_do_not() {
        let mut d = detector();
        assert!(d.opened("d", 1_000_000).is_some());
        assert_eq!(
            d.decided("d", 1_030_000, Some("A")),
            None,
            "inside the open's window (ends at +25 s + 20 s lead)"
        );
        assert!(d.decided("d", 1_200_000, Some("B")).is_some(), "well after");
        assert!(d.opened("other", 1_000_000).is_some(), "drops are independent");
    }

    proptest! {
        /// Whatever the traffic, the clips of one drop never overlap.
        #[test]
        fn clips_of_a_drop_never_overlap(gaps in proptest::collection::vec(0i64..3_000, 1..400), sold in proptest::collection::vec(any::<bool>(), 1..400)) {
            let mut d = detector();
            let mut at = 50_000_000;
            let mut windows = Vec::new();
            if let Some(m) = d.opened("d", at) { windows.push(d.window(m.at_ms)); }
            for (i, gap) in gaps.iter().enumerate() {
                at += gap;
                let sku = format!("S{}", i % 7);
                let sold_out = sold.get(i).copied().unwrap_or(false).then_some(sku.as_str());
                if let Some(m) = d.decided("d", at, sold_out) { windows.push(d.window(m.at_ms)); }
            }
            for pair in windows.windows(2) {
                prop_assert!(pair[1].0 >= pair[0].1, "{pair:?}");
            }
        }
    }
}
