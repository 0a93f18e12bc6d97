//! Which answers go out next, and together: answers wait per channel; whenever both the channel's
//! and the connection's budget allow a message, the most urgent answer (reservations first, by
//! deadline; then the waitlist; then the rest, oldest first) goes, merged with every queued answer
//! of the same meaning that fits. A reservation whose hold would lapse before the buyer could act
//! is dropped rather than sent as "reserved". Pure: the caller sends what it is given.

use std::collections::BTreeMap;

use super::budget::{Rate, Window};
use super::text::{compose, Answer, Rank};

/// A reservation answer with less than this left of its hold is not sent.
pub const MIN_LEFT_MS: i64 = 2_000;

/// An answer and the position of the outcome it answers (for the commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub answer: Answer,
    /// Kafka partition and offset of the outcome.
    pub at: (i32, i64),
    /// Arrival order (ties).
    seq: u64,
}

/// A message to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// `network:#channel`.
    pub channel: String,
    pub text: String,
    /// The platform message it replies to (its first answer's).
    pub reply_to: Option<String>,
    /// What it answers, first one first.
    pub answers: Vec<Queued>,
}

/// The outcome of asking what to do now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Next {
    /// Send this (the budgets already count it).
    pub send: Option<Planned>,
    /// Answers given up (their holds lapsed while they waited).
    pub dropped: Vec<Queued>,
    /// Ask again at this time at the latest (when nothing is to be sent now but answers wait).
    pub wake_at: Option<i64>,
}

/// The answers of one outlet (an IRC connection, the reply webhook) and its budgets.
#[derive(Debug)]
pub struct Planner {
    rate: Rate,
    connection: Window,
    channels: BTreeMap<String, Window>,
    queues: BTreeMap<String, Vec<Queued>>,
    max_text: usize,
    seq: u64,
}

impl Planner {
    /// Budget `rate` per channel and for the connection; messages up to `max_text` bytes.
    pub fn new(rate: Rate, max_text: usize) -> Self {
        Planner {
            rate,
            connection: Window::new(rate),
            channels: BTreeMap::new(),
            queues: BTreeMap::new(),
            max_text,
            seq: 0,
        }
    }

    /// Messages from now on are at most `max_text` bytes (the IRC line limit depends on the
    /// prefix the server relays them with, learned once connected).
    pub fn set_max_text(&mut self, max_text: usize) {
        self.max_text = max_text;
    }

    pub fn push(&mut self, answer: Answer, at: (i32, i64)) {
        self.seq += 1;
        let queued = Queued { answer, at, seq: self.seq };
        self.queues.entry(queued.answer.channel.clone()).or_default().push(queued);
    }

    /// Answers given back (their message could not be sent): they wait again, in their old place.
    pub fn requeue(&mut self, answers: Vec<Queued>) {
        for q in answers {
            let queue = self.queues.entry(q.answer.channel.clone()).or_default();
            let at = queue.iter().position(|o| o.seq > q.seq).unwrap_or(queue.len());
            queue.insert(at, q);
        }
    }

    /// Answers waiting.
    pub fn waiting(&self) -> usize {
        self.queues.values().map(Vec::len).sum()
    }

    fn urgency(q: &Queued) -> (Rank, i64, u64) {
        (q.answer.rank(), q.answer.deadline_ms.unwrap_or(i64::MAX), q.seq)
    }

    /// What to do at `now_ms`.
    pub fn next(&mut self, now_ms: i64) -> Next {
        let mut next = Next::default();
        for queue in self.queues.values_mut() {
            let (late, keep): (Vec<Queued>, Vec<Queued>) = std::mem::take(queue)
                .into_iter()
                .partition(|q| q.answer.deadline_ms.is_some_and(|d| d - now_ms < MIN_LEFT_MS));
            *queue = keep;
            next.dropped.extend(late);
        }
        self.queues.retain(|_, q| !q.is_empty());
        if self.queues.is_empty() {
            return next;
        }
        let connection = self.connection.ready(now_ms);
        let mut best: Option<(String, (Rank, i64, u64))> = None;
        let mut wake = connection.err();
        for (channel, queue) in &self.queues {
            let window = self.channels.entry(channel.clone()).or_insert_with(|| Window::new(self.rate));
            if let Err(at) = window.ready(now_ms) {
                wake = Some(wake.map_or(at, |w: i64| w.min(at)));
                continue;
            }
            if connection.is_err() {
                continue;
            }
            let urgent = queue.iter().map(Self::urgency).min().unwrap_or((Rank::Other, i64::MAX, u64::MAX));
            if best.as_ref().is_none_or(|(_, u)| urgent < *u) {
                best = Some((channel.clone(), urgent));
            }
        }
        let Some((channel, _)) = best else {
            next.wake_at = wake;
            return next;
        };
        let queue = self.queues.get_mut(&channel).expect("the chosen channel has a queue");
        queue.sort_by_key(Self::urgency);
        let meaning = queue[0].answer.meaning.clone();
        let same: Vec<&Answer> =
            queue.iter().filter(|q| q.answer.meaning == meaning).map(|q| &q.answer).collect();
        let (text, used) = compose(&same, now_ms, self.max_text);
        let mut taken = Vec::with_capacity(used);
        let mut rest = Vec::with_capacity(queue.len());
        for q in std::mem::take(queue) {
            if taken.len() < used && q.answer.meaning == meaning {
                taken.push(q);
            } else {
                rest.push(q);
            }
        }
        *queue = rest;
        self.connection.record(now_ms);
        if let Some(window) = self.channels.get_mut(&channel) {
            window.record(now_ms);
        }
        let reply_to = taken.first().and_then(|q| q.answer.message_id.clone());
        next.send = Some(Planned { channel, text, reply_to, answers: taken });
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::text::Meaning;
    use crate::route::Origin;
    use std::time::Duration;

    fn answer(name: &str, channel: &str, meaning: Meaning, deadline: Option<i64>) -> Answer {
        Answer {
            order_id: name.into(),
            drop_id: "d".into(),
            buyer_id: name.into(),
            mention: name.into(),
            channel: channel.into(),
            origin: Origin::Irc,
            message_id: Some(format!("m-{name}")),
            meaning,
            sku: "TEE".into(),
            quantity: 1,
            link: Some(format!("https://x/c/{name}")),
            position: 1,
            deadline_ms: deadline,
            decided_at_ms: 0,
            key: name.into(),
            reason: String::new(),
        }
    }

    fn sold_out() -> Meaning {
        Meaning::SoldOut { sku: "TEE".into(), why: String::new() }
    }

    #[test]
    fn reservations_first_merged_and_within_budget() {
        let rate = Rate { messages: 2, per: Duration::from_secs(10) };
        let mut p = Planner::new(rate, 500);
        p.push(answer("s1", "#c", sold_out(), None), (0, 1));
        p.push(answer("r1", "#c", Meaning::Reserved, Some(60_000)), (0, 2));
        p.push(answer("s2", "#c", sold_out(), None), (0, 3));
        p.push(answer("r2", "#c", Meaning::Reserved, Some(61_000)), (0, 4));
        let first = p.next(0).send.expect("a message now");
        let names: Vec<&str> = first.answers.iter().map(|q| q.answer.mention.as_str()).collect();
        assert_eq!(names, ["r1", "r2"], "reservations first, merged");
        assert_eq!(first.reply_to.as_deref(), Some("m-r1"));
        assert!(first.text.contains("@r1") && first.text.contains("@r2"));
        // Half the budget is gone: the next one is paced (10 s / 2 = 5 s later).
        let wait = p.next(100);
        assert_eq!((wait.send.is_none(), wait.wake_at), (true, Some(5_000)));
        let second = p.next(5_000).send.expect("paced message");
        assert_eq!(second.answers.len(), 2);
        assert!(second.text.starts_with("@s1 · @s2"), "{}", second.text);
        assert_eq!(p.waiting(), 0);
    }

    #[test]
    fn lapsed_reservations_are_dropped_not_sent() {
        let mut p = Planner::new(Rate { messages: 1, per: Duration::from_secs(30) }, 500);
        p.push(answer("a", "#c", sold_out(), None), (0, 1));
        assert!(p.next(0).send.is_some());
        p.push(answer("r", "#c", Meaning::Reserved, Some(10_000)), (0, 2));
        let n = p.next(1_000);
        assert!(n.send.is_none() && n.dropped.is_empty());
        let n = p.next(9_000);
        assert_eq!(n.dropped.len(), 1, "less than {MIN_LEFT_MS} ms left: not sent as reserved");
        assert_eq!(p.waiting(), 0);
    }

    #[test]
    fn channels_have_budgets_of_their_own_and_share_the_connection() {
        let mut p = Planner::new(Rate { messages: 4, per: Duration::from_secs(10) }, 500);
        for i in 0..6 {
            p.push(
                answer(&format!("a{i}"), "#a", Meaning::NotOpen { reason: format!("r{i}") }, None),
                (0, i),
            );
            p.push(
                answer(&format!("b{i}"), "#b", Meaning::NotOpen { reason: format!("r{i}") }, None),
                (1, i),
            );
        }
        let mut sent = Vec::new();
        for t in (0..10_000).step_by(100) {
            while let Some(m) = p.next(t).send {
                sent.push((t, m.channel));
            }
        }
        assert_eq!(sent.len(), 4, "the connection's budget covers both channels: {sent:?}");
        let requeued = Queued { answer: answer("z", "#a", sold_out(), None), at: (0, 99), seq: 0 };
        p.requeue(vec![requeued]);
        assert_eq!(p.queues["#a"].first().map(|q| q.at), Some((0, 99)), "a requeued answer keeps its place");
    }
}
