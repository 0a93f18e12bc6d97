//! What an answer says: an outcome of an order turned into an answer for the buyer (whom to
//! mention, what it means, by when it matters), and answers with the same meaning merged into one
//! chat message of bounded length. Pure: no I/O, unit-tested.

use dropline_proto::v1::{ReservationOutcome, ReservationStatus as S};

use crate::route::Origin;

/// Longest chat message (Twitch: 500 characters; we count bytes, which is stricter).
pub const MAX_MESSAGE: usize = 500;
/// Longest mention kept of a display name.
const MAX_NAME: usize = 25;
/// Between the parts of a merged message.
const JOIN: &str = " · ";

/// Which answers go first when the budget is short: reservations have a deadline, then the
/// waitlist, then everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rank {
    Reserved,
    Waitlisted,
    Other,
}

/// What an answer means; answers with equal meanings may share one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Meaning {
    /// Units held: pay by the deadline at the claim link (also a promotion from the waitlist).
    Reserved,
    /// Sold out, queued for the SKU.
    Waitlisted { sku: String },
    /// Sold out (with why, when there is more to say: "only 1 left", "the drop closed …").
    SoldOut { sku: String, why: String },
    /// Over the per-buyer limit.
    OverLimit,
    /// The line was not understood (unknown SKU, invalid), with the reason.
    NotUnderstood { reason: String },
    /// The drop is not (or no longer) open.
    NotOpen { reason: String },
    /// Payment went through (on time or late with stock left).
    Paid,
    /// The payment window ended.
    Expired { sku: String },
    /// Paid after the hold ended and nothing was left.
    RefundDue { sku: String },
}

/// One buyer's answer, waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub order_id: String,
    pub drop_id: String,
    pub buyer_id: String,
    /// The name to mention, safe for a chat line (letters, digits, `_`).
    pub mention: String,
    /// `network:#channel`.
    pub channel: String,
    pub origin: Origin,
    /// The platform message to reply to.
    pub message_id: Option<String>,
    pub meaning: Meaning,
    pub sku: String,
    pub quantity: u32,
    /// The order's claim page.
    pub link: Option<String>,
    /// WAITLISTED: place in line.
    pub position: u32,
    /// RESERVED: when the hold lapses (Unix ms); the answer is useless after it.
    pub deadline_ms: Option<i64>,
    pub decided_at_ms: i64,
    /// Says which answer this is, across redeliveries (order, status, decision time).
    pub key: String,
    /// The reason the outcome gave (used when the answer stands alone).
    pub reason: String,
}

/// Keeps what may appear in a mention: letters, digits and `_`, at most [`MAX_NAME`] of them.
/// Nothing a viewer puts in a display name can end the line, start a command or mention others.
pub fn mention_of(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric() || *c == '_').take(MAX_NAME).collect()
}

/// Text that came from elsewhere (reasons quote what the viewer typed): no control characters.
fn plain(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

impl Answer {
    /// The answer to `o`, or `None` when the buyer needs none (a duplicate, their own cancel) or
    /// the order did not come through ingest.
    pub fn from_outcome(o: &ReservationOutcome, public_url: &str) -> Option<Answer> {
        let origin = Origin::parse(&o.origin)?;
        let status = S::try_from(o.status).ok()?;
        let sku = plain(&o.sku);
        let reason = plain(&o.reason);
        let meaning = match status {
            S::Reserved => Meaning::Reserved,
            S::Waitlisted => Meaning::Waitlisted { sku: sku.clone() },
            S::SoldOut => Meaning::SoldOut { sku: sku.clone(), why: reason.clone() },
            S::LimitExceeded => Meaning::OverLimit,
            S::UnknownSku | S::Invalid => Meaning::NotUnderstood { reason: reason.clone() },
            S::DropNotOpen => Meaning::NotOpen { reason: reason.clone() },
            S::Confirmed => Meaning::Paid,
            S::Expired => Meaning::Expired { sku: sku.clone() },
            S::RefundDue => Meaning::RefundDue { sku: sku.clone() },
            S::Duplicate | S::Released | S::Unspecified => return None,
        };
        let mut mention = mention_of(&o.buyer_name);
        if mention.is_empty() {
            // No usable display name: the login part of the buyer id (`twitch:ada` → `ada`).
            mention = mention_of(o.buyer_id.rsplit(':').next().unwrap_or_default());
        }
        if mention.is_empty() {
            mention = "buyer".into();
        }
        let link = (!o.claim_code.is_empty()).then(|| dropline_core::claim::link(public_url, &o.claim_code));
        Some(Answer {
            order_id: o.order_id.clone(),
            drop_id: o.drop_id.clone(),
            buyer_id: o.buyer_id.clone(),
            mention,
            channel: o.channel.clone(),
            origin,
            message_id: (!o.platform_message_id.is_empty()).then(|| o.platform_message_id.clone()),
            meaning,
            sku,
            quantity: o.quantity,
            link,
            position: o.waitlist_position,
            deadline_ms: (status == S::Reserved && o.hold_expires_at_ms > 0).then_some(o.hold_expires_at_ms),
            decided_at_ms: o.decided_at_ms,
            key: format!("{}|{}|{}", o.order_id, o.status, o.decided_at_ms),
            reason,
        })
    }

    pub fn rank(&self) -> Rank {
        match self.meaning {
            Meaning::Reserved => Rank::Reserved,
            Meaning::Waitlisted { .. } => Rank::Waitlisted,
            _ => Rank::Other,
        }
    }

    /// The item as a buyer reads it: `HOODIE-L`, or `2x HOODIE-L`.
    fn item(&self) -> String {
        if self.quantity > 1 {
            format!("{}x {}", self.quantity, self.sku)
        } else {
            self.sku.clone()
        }
    }

    /// This buyer's part of a merged message.
    fn part(&self) -> String {
        let link = self.link.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
        match &self.meaning {
            Meaning::Reserved => format!("@{} {}{link}", self.mention, self.item()),
            Meaning::Waitlisted { .. } => format!("@{} #{}{link}", self.mention, self.position),
            _ => format!("@{}", self.mention),
        }
    }

    /// The whole message when this answer goes alone.
    fn alone(&self, now_ms: i64) -> String {
        let at = |l: &Option<String>| l.as_deref().map(|l| format!(" at {l}")).unwrap_or_default();
        let m = &self.mention;
        match &self.meaning {
            Meaning::Reserved => {
                format!(
                    "@{m} {} reserved: pay within {} s{}",
                    self.item(),
                    self.seconds_left(now_ms),
                    at(&self.link)
                )
            }
            Meaning::Waitlisted { sku } => format!(
                "@{m} {sku} is sold out; you are #{} on the waitlist{}",
                self.position,
                self.link.as_deref().map(|l| format!(": {l}")).unwrap_or_default()
            ),
            Meaning::SoldOut { sku, why } if why.is_empty() => format!("@{m} {sku} is sold out"),
            Meaning::SoldOut { sku, why } => format!("@{m} {sku} is sold out ({why})"),
            Meaning::OverLimit => format!("@{m} over the limit: {}", self.reason),
            Meaning::NotUnderstood { reason } => format!("@{m} {reason}"),
            Meaning::NotOpen { reason } => format!("@{m} {reason}"),
            Meaning::Paid => format!("@{m} paid, thank you: your {} is confirmed", self.item()),
            Meaning::Expired { sku } => format!("@{m} your {sku} hold expired; it is back on sale"),
            Meaning::RefundDue { sku } => {
                format!("@{m} your payment came after {sku} sold out: it will be refunded")
            }
        }
    }

    fn seconds_left(&self, now_ms: i64) -> i64 {
        self.deadline_ms.map_or(0, |d| ((d - now_ms) / 1000).max(0))
    }
}

/// What a merged message says after its parts.
fn merged_tail(meaning: &Meaning, seconds: i64) -> String {
    match meaning {
        Meaning::Reserved => format!("reserved: pay within {seconds} s at your link"),
        Meaning::Waitlisted { sku } => {
            format!("{sku} is sold out; you are on the waitlist, we tag you when one frees up")
        }
        Meaning::SoldOut { sku, why } if why.is_empty() => format!("{sku} is sold out"),
        Meaning::SoldOut { sku, why } => format!("{sku} is sold out ({why})"),
        Meaning::OverLimit => "that would pass the per-buyer limit".into(),
        Meaning::NotUnderstood { reason } | Meaning::NotOpen { reason } => reason.clone(),
        Meaning::Paid => "paid, thank you: your orders are confirmed".into(),
        Meaning::Expired { sku } => format!("your {sku} holds expired; back on sale"),
        Meaning::RefundDue { sku } => {
            format!("your payments came after {sku} sold out: they will be refunded")
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// One message for the first answers of `answers` (all of one meaning), at most `max` bytes:
/// the text and how many answers it covers (at least one). One answer gets its own full sentence;
/// several get their parts joined, then what they share.
pub fn compose(answers: &[&Answer], now_ms: i64, max: usize) -> (String, usize) {
    let Some(first) = answers.first() else { return (String::new(), 0) };
    let alone = cut(first.alone(now_ms), max);
    if answers.len() == 1 {
        return (alone, 1);
    }
    let seconds = answers.iter().map(|a| a.seconds_left(now_ms)).min().unwrap_or(0);
    let tail = format!(" — {}", merged_tail(&first.meaning, seconds));
    let mut parts = first.part();
    let mut used = 1;
    for a in &answers[1..] {
        let part = a.part();
        if parts.len() + JOIN.len() + part.len() + tail.len() > max {
            break;
        }
        parts.push_str(JOIN);
        parts.push_str(&part);
        used += 1;
    }
    if used == 1 {
        return (alone, 1);
    }
    (cut(parts + &tail, max), used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, status: S) -> ReservationOutcome {
        ReservationOutcome {
            order_id: format!("twitch:{name}"),
            drop_id: "fall".into(),
            buyer_id: format!("twitch:{}", name.to_lowercase()),
            buyer_name: name.into(),
            sku: "HOODIE-L".into(),
            quantity: 1,
            status: status as i32,
            hold_expires_at_ms: if status == S::Reserved { 61_000 } else { 0 },
            decided_at_ms: 1_000,
            channel: "twitch:#creator".into(),
            origin: "irc".into(),
            platform_message_id: format!("m-{name}"),
            claim_code: "k7f3m2q9x4b1z8c0".into(),
            waitlist_position: if status == S::Waitlisted { 3 } else { 0 },
            ..Default::default()
        }
    }

    fn answer(name: &str, status: S) -> Answer {
        Answer::from_outcome(&outcome(name, status), "https://d.example").expect("answered")
    }

    #[test]
    fn each_status_reads_as_a_short_answer() {
        let (text, n) = compose(&[&answer("Ada", S::Reserved)], 1_000, MAX_MESSAGE);
        assert_eq!(n, 1);
        assert_eq!(text, "@Ada HOODIE-L reserved: pay within 60 s at https://d.example/c/k7f3m2q9x4b1z8c0");
        let (text, _) = compose(&[&answer("Ada", S::Waitlisted)], 1_000, MAX_MESSAGE);
        assert_eq!(
            text,
            "@Ada HOODIE-L is sold out; you are #3 on the waitlist: https://d.example/c/k7f3m2q9x4b1z8c0"
        );
        let mut limit = outcome("Bob", S::LimitExceeded);
        limit.reason = "the limit is 2 per buyer and you already have 2".into();
        let a = Answer::from_outcome(&limit, "u").unwrap();
        assert_eq!(
            compose(&[&a], 0, MAX_MESSAGE).0,
            "@Bob over the limit: the limit is 2 per buyer and you already have 2"
        );
        let mut unknown = outcome("Cy", S::UnknownSku);
        unknown.reason = "didn't understand \"jacket\"; we have: cap, hoodie".into();
        let a = Answer::from_outcome(&unknown, "u").unwrap();
        assert_eq!(
            compose(&[&a], 0, MAX_MESSAGE).0,
            "@Cy didn't understand \"jacket\"; we have: cap, hoodie"
        );
        assert_eq!(compose(&[&answer("Ada", S::SoldOut)], 0, MAX_MESSAGE).0, "@Ada HOODIE-L is sold out");
        assert!(Answer::from_outcome(&outcome("Ada", S::Duplicate), "u").is_none());
        assert!(Answer::from_outcome(&outcome("Ada", S::Released), "u").is_none());
        let mut elsewhere = outcome("Ada", S::Reserved);
        elsewhere.origin = String::new();
        assert!(Answer::from_outcome(&elsewhere, "u").is_none(), "not an order ingest took");
    }

    #[test]
    fn answers_with_one_meaning_merge_within_the_limit() {
        let many: Vec<Answer> = (0..60).map(|i| answer(&format!("viewer{i}"), S::SoldOut)).collect();
        let refs: Vec<&Answer> = many.iter().collect();
        let (text, n) = compose(&refs, 0, MAX_MESSAGE);
        assert!(n > 10 && n < 60, "{n}");
        assert!(text.len() <= MAX_MESSAGE);
        assert!(text.ends_with(" — HOODIE-L is sold out"), "{text}");
        assert_eq!(text.matches('@').count(), n);
        let held: Vec<Answer> = (0..20).map(|i| answer(&format!("v{i}"), S::Reserved)).collect();
        let refs: Vec<&Answer> = held.iter().collect();
        let (text, n) = compose(&refs, 31_000, MAX_MESSAGE);
        assert!(n >= 5, "{n}: {text}");
        assert_eq!(text.matches("https://d.example/c/").count(), n, "everyone gets their link");
        assert!(text.ends_with("reserved: pay within 30 s at your link"), "{text}");
    }

    #[test]
    fn display_names_cannot_inject() {
        let mut o = outcome("x", S::SoldOut);
        o.buyer_name = "Eve\r\nPRIVMSG #other :@everyone free hoodies\u{0}".into();
        let a = Answer::from_outcome(&o, "u").unwrap();
        assert_eq!(a.mention, "EvePRIVMSGothereveryonefr");
        let (text, _) = compose(&[&a], 0, MAX_MESSAGE);
        assert!(!text.contains(['\r', '\n', '\0']) && text.matches('@').count() == 1, "{text}");
        o.buyer_name = ":::".into();
        assert_eq!(Answer::from_outcome(&o, "u").unwrap().mention, "x", "falls back to the login");
        let mut long = outcome("Ada", S::Invalid);
        long.reason = "é".repeat(400);
        let (text, _) = compose(&[&Answer::from_outcome(&long, "u").unwrap()], 0, MAX_MESSAGE);
        assert!(text.len() <= MAX_MESSAGE && text.is_char_boundary(text.len()));
    }
}
