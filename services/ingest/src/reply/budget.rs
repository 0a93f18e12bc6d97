//! The sending budget: at most N messages in any window of the stated length (`20/30s`), kept as
//! a sliding log of send times — Twitch does not say when its buckets refill, and going over gets
//! a bot ignored for half an hour, so the promise is about every window, not about a refill
//! schedule. Sends are also paced: the first half of a budget goes at once (a quiet chat is
//! answered immediately), the second half no faster than the average rate, so a rush leaves room
//! for the merged answers that follow. Pure: times are Unix milliseconds given by the caller.

use std::collections::VecDeque;
use std::time::Duration;

/// Added to the window before a slot counts as free again, so delivery jitter between us and the
/// server cannot make two sends look closer than they were sent.
pub const TRANSIT_MARGIN_MS: i64 = 500;

/// `messages` per `per`, e.g. 20 per 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub messages: u32,
    pub per: Duration,
}

impl Rate {
    /// Twitch's limit for a bot that is neither broadcaster nor moderator in the channel.
    pub const TWITCH: Rate = Rate { messages: 20, per: Duration::from_secs(30) };

    /// Parses `N/duration`, e.g. `20/30s`, `100/30s`, `4/10s`.
    pub fn parse(text: &str) -> Option<Rate> {
        let (n, per) = text.trim().split_once('/')?;
        let messages: u32 = n.trim().parse().ok().filter(|n| (1..=10_000).contains(n))?;
        let per = humantime::parse_duration(per.trim()).ok().filter(|d| !d.is_zero())?;
        Some(Rate { messages, per })
    }

    fn per_ms(&self) -> i64 {
        i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX / 4)
    }
}

/// The sends of one budget (a channel, or the whole connection).
#[derive(Debug, Clone)]
pub struct Window {
    rate: Rate,
    sent: VecDeque<i64>,
}

impl Window {
    pub fn new(rate: Rate) -> Self {
        Window { rate, sent: VecDeque::new() }
    }

    fn forget(&mut self, now_ms: i64) {
        let span = self.rate.per_ms() + TRANSIT_MARGIN_MS;
        while self.sent.front().is_some_and(|at| at + span <= now_ms) {
            self.sent.pop_front();
        }
    }

    /// `Ok` when a message may go at `now_ms`; else the earliest time it may.
    pub fn ready(&mut self, now_ms: i64) -> Result<(), i64> {
        self.forget(now_ms);
        let limit = self.rate.messages as usize;
        let used = self.sent.len();
        if used >= limit {
            let oldest = self.sent.front().copied().unwrap_or(now_ms);
            return Err(oldest + self.rate.per_ms() + TRANSIT_MARGIN_MS);
        }
        if (limit - used) * 2 > limit {
            return Ok(());
        }
        let spacing = self.rate.per_ms() / i64::from(self.rate.messages);
        match self.sent.back() {
            Some(last) if last + spacing > now_ms => Err(last + spacing),
            _ => Ok(()),
        }
    }

    /// A message went at `now_ms`.
    pub fn record(&mut self, now_ms: i64) {
        self.sent.push_back(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("20/30s"), Some(Rate::TWITCH));
        assert_eq!(Rate::parse(" 100 / 30s "), Some(Rate { messages: 100, per: Duration::from_secs(30) }));
        for bad in ["20", "0/30s", "20/0s", "x/30s", "20/soon", ""] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn half_at_once_then_paced_then_full() {
        let mut w = Window::new(Rate { messages: 4, per: Duration::from_secs(10) });
        assert_eq!(w.ready(0), Ok(()));
        w.record(0);
        assert_eq!(w.ready(0), Ok(()));
        w.record(0);
        // Half used: one per 2.5 s.
        assert_eq!(w.ready(100), Err(2_500));
        w.record(2_500);
        assert_eq!(w.ready(3_000), Err(5_000));
        w.record(5_000);
        // Full until the first send leaves the window (plus the margin).
        assert_eq!(w.ready(6_000), Err(10_000 + TRANSIT_MARGIN_MS));
        assert_eq!(w.ready(10_000 + TRANSIT_MARGIN_MS), Ok(()));
    }

    proptest! {
        /// Whatever the caller asks, sends that follow `ready` never put more than N in any window.
        #[test]
        fn never_more_than_n_in_any_window(
            n in 1u32..8,
            per in 1_000i64..20_000,
            asks in proptest::collection::vec(0i64..3_000, 1..200),
        ) {
            let rate = Rate { messages: n, per: Duration::from_millis(per as u64) };
            let mut w = Window::new(rate);
            let (mut now, mut sent) = (0i64, Vec::new());
            for gap in asks {
                now += gap;
                if w.ready(now).is_ok() {
                    w.record(now);
                    sent.push(now);
                }
            }
            for (i, start) in sent.iter().enumerate() {
                let within = sent[i..].iter().take_while(|t| **t - start < per + TRANSIT_MARGIN_MS).count();
                prop_assert!(within <= n as usize, "{} sends within {} ms from {}", within, per, start);
            }
        }
    }
}
