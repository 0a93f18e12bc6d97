//! Clip rules (pure): every clip lasts 30–60 s; a moment becomes a window around it; windows are
//! clamped to the recording; wall-clock moments map to recording time via the recording's start.

use std::time::Duration;

/// How windows are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipRules {
    /// Shortest clip (30 s).
    pub min: Duration,
    /// Longest clip (60 s).
    pub max: Duration,
    /// Lead-in before a moment (20 s).
    pub before: Duration,
    /// Run-out after a moment (25 s).
    pub after: Duration,
}

impl Default for ClipRules {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(30),
            max: Duration::from_secs(60),
            before: Duration::from_secs(20),
            after: Duration::from_secs(25),
        }
    }
}

/// What a request asks for, in recording time (milliseconds from the recording's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// A moment: the window is made around it.
    Moment {
        /// The moment.
        at_ms: i64,
    },
    /// An explicit window.
    Window {
        /// Start.
        start_ms: i64,
        /// Length.
        duration_ms: i64,
    },
}

/// The window to cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Start, ms from the recording's start.
    pub start_ms: i64,
    /// Length in ms (within the rules' 30–60 s unless the recording is shorter than that... which
    /// is refused).
    pub duration_ms: i64,
    /// What was changed to fit the rules, if anything (e.g. "lengthened to 30 s").
    pub adjusted: Option<String>,
}

/// A request that cannot become a clip, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl ClipRules {
    /// Plans the window for `wanted` in a recording `length_ms` long.
    pub fn plan(&self, wanted: Wanted, length_ms: i64) -> Result<Planned, Refused> {
        let (min, max) = (ms(self.min), ms(self.max));
        if length_ms < min {
            return Err(Refused(format!(
                "the recording is {} long; clips last {}–{}",
                secs(length_ms),
                secs(min),
                secs(max)
            )));
        }
        let mut adjusted = Vec::new();
        let (mut start, mut duration) = match wanted {
            Wanted::Moment { at_ms } => {
                if at_ms < 0 || at_ms > length_ms {
                    return Err(Refused(format!(
                        "the moment at {} is outside the recording (0–{})",
                        secs(at_ms),
                        secs(length_ms)
                    )));
                }
                let start = at_ms.saturating_sub(ms(self.before));
                let duration = ms(self.before).saturating_add(ms(self.after)).clamp(min, max);
                (start, duration)
            }
            Wanted::Window { start_ms, duration_ms } => {
                if start_ms < 0 || start_ms >= length_ms {
                    return Err(Refused(format!(
                        "the window starts at {}, outside the recording (0–{})",
                        secs(start_ms),
                        secs(length_ms)
                    )));
                }
                if duration_ms <= 0 {
                    return Err(Refused(format!("the window lasts {}", secs(duration_ms))));
                }
                let duration = duration_ms.clamp(min, max);
                if duration != duration_ms {
                    let verb = if duration > duration_ms { "lengthened" } else { "shortened" };
                    adjusted.push(format!("{verb} from {} to {}", secs(duration_ms), secs(duration)));
                }
                (start_ms, duration)
            }
        };
        if start < 0 {
            adjusted.push(format!("moved to start at 0 s instead of {}", secs(start)));
            start = 0;
        }
        if start > length_ms - duration {
            let moved = (length_ms - duration).max(0);
            adjusted.push(format!(
                "moved to end with the recording (start {} instead of {})",
                secs(moved),
                secs(start)
            ));
            start = moved;
            duration = duration.min(length_ms - start);
        }
        let adjusted = (!adjusted.is_empty()).then(|| adjusted.join("; "));
        Ok(Planned { start_ms: start, duration_ms: duration, adjusted })
    }
}

/// Maps a wall-clock moment (Unix ms) to recording time, given when the recording started.
pub fn to_recording_time(at_wall_ms: i64, recording_started_ms: i64) -> i64 {
    at_wall_ms.saturating_sub(recording_started_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 30_000;
    const MAX: i64 = 60_000;

    #[test]
    fn a_window_at_the_end_of_time_does_not_overflow() {
        // A request from the topic may place a window anywhere: start + duration must not wrap.
        let p = ClipRules::default()
            .plan(Wanted::Window { start_ms: i64::MAX - 10, duration_ms: 45_000 }, i64::MAX)
            .expect("plan");
        assert!(p.start_ms.checked_add(p.duration_ms).is_some(), "{p:?}");
        assert_eq!(p.duration_ms, 45_000);
    }

    #[test]
    fn a_moment_becomes_20_s_before_and_25_s_after() {
        let p = ClipRules::default().plan(Wanted::Moment { at_ms: 100_000 }, 600_000).expect("plan");
        assert_eq!(p, Planned { start_ms: 80_000, duration_ms: 45_000, adjusted: None });
    }

    #[test]
    fn windows_near_the_edges_slide_inside() {
        let rules = ClipRules::default();
        let p = rules.plan(Wanted::Moment { at_ms: 5_000 }, 600_000).expect("plan");
        assert_eq!((p.start_ms, p.duration_ms), (0, 45_000));
        assert!(p.adjusted.is_some());
        let p = rules.plan(Wanted::Moment { at_ms: 595_000 }, 600_000).expect("plan");
        assert_eq!((p.start_ms, p.duration_ms), (555_000, 45_000));
    }

    #[test]
    fn short_and_long_windows_are_clamped_with_the_reason() {
        let rules = ClipRules::default();
        let p = rules.plan(Wanted::Window { start_ms: 10_000, duration_ms: 5_000 }, 600_000).expect("plan");
        assert_eq!(p.duration_ms, 30_000);
        assert_eq!(p.adjusted.as_deref(), Some("lengthened from 5.0 s to 30.0 s"));
        let p = rules.plan(Wanted::Window { start_ms: 10_000, duration_ms: 90_000 }, 600_000).expect("plan");
        assert_eq!(p.duration_ms, 60_000);
    }

    #[test]
    fn impossible_requests_are_refused_with_the_reason() {
        let rules = ClipRules::default();
        let err = rules.plan(Wanted::Moment { at_ms: 1_000 }, 20_000).expect_err("too short");
        assert!(err.0.contains("20.0 s long"), "{err}");
        let err =
            rules.plan(Wanted::Window { start_ms: 700_000, duration_ms: 40_000 }, 600_000).expect_err("past");
        assert!(err.0.contains("outside the recording"), "{err}");
        let err = rules.plan(Wanted::Moment { at_ms: -5 }, 600_000).expect_err("before");
        assert!(err.0.contains("outside"), "{err}");
        assert!(rules.plan(Wanted::Window { start_ms: 0, duration_ms: 0 }, 600_000).is_err());
    }

    #[test]
    fn wall_clock_moments_map_through_the_recording_start() {
        assert_eq!(to_recording_time(1_795_000_065_000, 1_795_000_000_000), 65_000);
    }

    proptest! {
        /// Whatever is asked, a planned clip lies inside the recording and lasts 30–60 s.
        #[test]
        fn every_planned_clip_fits_the_rules(
            at in -100_000i64..2_000_000,
            start in -100_000i64..2_000_000,
            duration in -10_000i64..200_000,
            length in 0i64..2_000_000,
            moment in any::<bool>(),
        ) {
            let wanted = if moment { Wanted::Moment { at_ms: at } } else { Wanted::Window { start_ms: start, duration_ms: duration } };
            if let Ok(p) = ClipRules::default().plan(wanted, length) {
                prop_assert!(p.start_ms >= 0);
                prop_assert!(p.start_ms + p.duration_ms <= length);
                prop_assert!((MIN..=MAX).contains(&p.duration_ms), "{p:?}");
            }
        }
    }
}
