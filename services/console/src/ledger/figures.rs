//! A drop's report figures computed from its folded log (pure): per SKU numbers, the funnel per
//! channel, buyers and repeat buyers, and the time series the charts draw.

use std::collections::{BTreeMap, BTreeSet};

use dropline_proto::v1::ReservationStatus as S;
use serde::Serialize;
use utoipa::ToSchema;

use super::fold::{DropLog, OrderLife, BUCKET_MS};
use crate::drops::SkuState;

/// Most points a time series has (longer drops get wider buckets).
pub const MAX_POINTS: usize = 600;

/// One SKU's numbers from the log: the same units the matcher counts in Redis (and as the API
/// shows them), and what the report adds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SkuFigures {
    #[serde(flatten)]
    pub units: SkuState,
    /// Paid units of the units on sale (0–1).
    pub sell_through: f64,
    /// From the open to the first time none was left, ms (`None`: never sold out).
    pub sold_out_after_ms: Option<i64>,
    pub revenue_cents: i64,
}

/// One channel's funnel: chat lines seen → orders → holds → paid, with what fell out between.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Funnel {
    /// `network:#channel`, or `all` for the drop's total.
    pub channel: String,
    /// Chat lines ingest read on the channel while the drop was live.
    pub lines_seen: u64,
    /// Orders ingest took (`chat-orders`).
    pub orders: u64,
    /// Orders the matcher decided.
    pub decided: u64,
    /// Held at once.
    pub reserved: u64,
    pub waitlisted: u64,
    /// Waitlisted, then given a unit.
    pub promoted: u64,
    /// Paid (on time or late).
    pub paid: u64,
    /// Of the paid, those that came through the waitlist.
    pub paid_after_promotion: u64,
    /// Paid after the hold lapsed or was cancelled, the units still there.
    pub paid_late: u64,
    pub expired: u64,
    pub released: u64,
    /// Paid after the hold ended with no unit left: the money goes back.
    pub refunds_due: u64,
    /// Refused: sold out (also a waitlist the close answered), over the limit, not understood…
    pub refused: u64,
    pub revenue_cents: i64,
    /// Orders per chat line seen.
    pub order_rate: Option<f64>,
    /// Holds (reserved + promoted) per order decided.
    pub hold_rate: Option<f64>,
    /// Paid per hold.
    pub pay_rate: Option<f64>,
}

/// Who bought.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Buyers {
    /// Buyers with an order decided.
    pub unique: u64,
    /// Buyers who paid for something.
    pub paying: u64,
    /// Paying buyers who also paid in an earlier drop of the same creator.
    pub repeat: u64,
    /// `repeat / paying`.
    pub repeat_share: Option<f64>,
    /// How "the same creator" is decided.
    pub repeat_rule: &'static str,
}

/// How repeat buyers are found, as the report states it.
pub const REPEAT_RULE: &str =
    "a repeat buyer paid in this drop and in an earlier drop (opened before this one) \
     on this drop's home channel (its first channel)";

/// One SKU's units for sale over time.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StockSeries {
    pub sku: String,
    /// Units for sale at the end of each bucket.
    pub left: Vec<i64>,
}

/// The drop over time, in buckets of `bucket_ms` from `start_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Series {
    pub start_ms: i64,
    pub bucket_ms: i64,
    /// Orders decided per bucket.
    pub orders: Vec<u64>,
    pub stock: Vec<StockSeries>,
}

/// Everything the report takes from the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    pub opened_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub skus: Vec<SkuFigures>,
    /// Outcomes by status, each order's each status once.
    pub outcomes: BTreeMap<String, u64>,
    /// One funnel per channel, then `all`.
    pub funnel: Vec<Funnel>,
    pub buyers: Buyers,
    pub revenue_cents: i64,
    pub series: Series,
    /// SKU → when none was left (Unix ms).
    pub sold_out_at_ms: BTreeMap<String, i64>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Funnel {
    fn add(&mut self, life: &OrderLife, price_cents: i64) {
        self.decided += 1;
        match life.first {
            S::Reserved => self.reserved += 1,
            S::Waitlisted => self.waitlisted += 1,
            _ => self.refused += 1,
        }
        if life.promoted() {
            self.promoted += 1;
        }
        if life.first == S::Waitlisted && life.had(S::SoldOut) {
            self.refused += 1;
        }
        if life.had(S::Confirmed) {
            self.paid += 1;
            self.revenue_cents =
                self.revenue_cents.saturating_add(price_cents.saturating_mul(i64::from(life.quantity)));
            if life.promoted() {
                self.paid_after_promotion += 1;
            }
            if life.paid_late() {
                self.paid_late += 1;
            }
        }
        self.expired += u64::from(life.had(S::Expired));
        self.released += u64::from(life.had(S::Released));
        self.refunds_due += u64::from(life.had(S::RefundDue));
    }

    fn merge(&mut self, other: &Funnel) {
        self.lines_seen += other.lines_seen;
        self.orders += other.orders;
        self.decided += other.decided;
        self.reserved += other.reserved;
        self.waitlisted += other.waitlisted;
        self.promoted += other.promoted;
        self.paid += other.paid;
        self.paid_after_promotion += other.paid_after_promotion;
        self.paid_late += other.paid_late;
        self.expired += other.expired;
        self.released += other.released;
        self.refunds_due += other.refunds_due;
        self.refused += other.refused;
        self.revenue_cents = self.revenue_cents.saturating_add(other.revenue_cents);
    }

    fn rates(mut self) -> Self {
        self.order_rate = ratio(self.orders, self.lines_seen);
        self.hold_rate = ratio(self.reserved + self.promoted, self.decided);
        self.pay_rate = ratio(self.paid, self.reserved + self.promoted);
        self
    }
}

fn paying(log: &DropLog) -> BTreeSet<&str> {
    log.orders.values().filter(|l| l.had(S::Confirmed)).map(|l| l.buyer_id.as_str()).collect()
}

/// The figures of `log`; `earlier` are the creator's drops opened before it (for repeat buyers).
pub fn figures<'a>(log: &DropLog, earlier: impl IntoIterator<Item = &'a DropLog>) -> Figures {
    let mut skus: Vec<SkuFigures> = log
        .listed
        .iter()
        .map(|(sku, listed)| {
            let total = i64::from(listed.opening_stock)
                + log
                    .restocks
                    .values()
                    .filter(|(_, s, _)| s == sku)
                    .map(|(_, _, q)| i64::from(*q))
                    .sum::<i64>();
            let left = log.stock_moves.get(sku).map_or(0, |m| m.values().sum());
            SkuFigures {
                units: SkuState {
                    sku: sku.clone(),
                    name: listed.name.clone(),
                    price_cents: listed.price_cents,
                    total,
                    left,
                    reserved: 0,
                    confirmed: 0,
                    waitlisted: 0,
                    sold_out: total > 0 && left <= 0,
                },
                sell_through: 0.0,
                sold_out_after_ms: log.sold_out_at_ms.get(sku).map(|at| at - log.opened_at_ms.unwrap_or(*at)),
                revenue_cents: 0,
            }
        })
        .collect();
    let mut per_channel: BTreeMap<String, Funnel> = BTreeMap::new();
    for channel in &log.channels {
        per_channel.entry(channel.clone()).or_default();
    }
    for (channel, lines) in &log.chat {
        per_channel.entry(channel.clone()).or_default().lines_seen += lines;
    }
    for channel in log.chat_orders.values() {
        per_channel.entry(channel.clone()).or_default().orders += 1;
    }
    let mut buyers = BTreeSet::new();
    for life in log.orders.values() {
        buyers.insert(life.buyer_id.as_str());
        per_channel.entry(life.channel.clone()).or_default().add(life, log.price_of(&life.sku));
        let Some(sku) = skus.iter_mut().find(|s| s.units.sku == life.sku).map(|s| &mut s.units) else {
            continue;
        };
        let q = i64::from(life.quantity);
        if life.held() && !life.ended() {
            sku.reserved += q;
        }
        if life.had(S::Confirmed) {
            sku.confirmed += q;
        }
        if life.waiting() {
            sku.waitlisted += 1;
        }
    }
    for sku in &mut skus {
        let u = &sku.units;
        sku.revenue_cents = u.confirmed.saturating_mul(u.price_cents);
        sku.sell_through = if u.total > 0 { u.confirmed as f64 / u.total as f64 } else { 0.0 };
    }
    let mut all = Funnel { channel: "all".into(), ..Funnel::default() };
    let mut funnel: Vec<Funnel> = per_channel
        .into_iter()
        .map(|(channel, mut f)| {
            f.channel = channel;
            all.merge(&f);
            f.rates()
        })
        .collect();
    funnel.push(all.rates());
    let mine = paying(log);
    let before: BTreeSet<&str> = earlier.into_iter().flat_map(paying).collect();
    let repeat = mine.iter().filter(|b| before.contains(*b)).count() as u64;
    let paying_count = mine.len() as u64;
    Figures {
        opened_at_ms: log.opened_at_ms,
        closed_at_ms: log.closed_at_ms,
        revenue_cents: skus.iter().map(|s| s.revenue_cents).fold(0, i64::saturating_add),
        skus,
        outcomes: log.outcomes.clone(),
        funnel,
        buyers: Buyers {
            unique: buyers.len() as u64,
            paying: paying_count,
            repeat,
            repeat_share: ratio(repeat, paying_count),
            repeat_rule: REPEAT_RULE,
        },
        series: series(log),
        sold_out_at_ms: log.sold_out_at_ms.clone(),
    }
}

/// Orders per bucket and stock left per SKU, from the open (or first event) to the close (or last
/// event), at most [`MAX_POINTS`] buckets.
fn series(log: &DropLog) -> Series {
    let firsts = log
        .stock_moves
        .values()
        .filter_map(|m| m.keys().next().copied())
        .chain(log.decided_per_bucket.keys().next().copied());
    let lasts = log
        .stock_moves
        .values()
        .filter_map(|m| m.keys().next_back().copied())
        .chain(log.decided_per_bucket.keys().next_back().copied())
        .chain(log.closed_at_ms);
    let (Some(first), Some(last)) = (firsts.chain(log.opened_at_ms).min(), lasts.max()) else {
        return Series { bucket_ms: BUCKET_MS, ..Series::default() };
    };
    let start = first.div_euclid(BUCKET_MS) * BUCKET_MS;
    let span = last - start + BUCKET_MS;
    let per = (span + BUCKET_MS * MAX_POINTS as i64 - 1) / (BUCKET_MS * MAX_POINTS as i64);
    let width = BUCKET_MS * per.max(1);
    let n = usize::try_from((span + width - 1) / width).unwrap_or(1).max(1);
    let index = |at: i64| usize::try_from((at - start) / width).unwrap_or(0).min(n - 1);
    let mut orders = vec![0u64; n];
    for (at, count) in &log.decided_per_bucket {
        orders[index(*at)] += count;
    }
    let stock = log
        .listed
        .iter()
        .map(|(sku, _)| {
            let mut delta = vec![0i64; n];
            for (at, units) in log.stock_moves.get(sku).into_iter().flatten() {
                delta[index(*at)] += units;
            }
            let left = delta
                .iter()
                .scan(0i64, |acc, d| {
                    *acc += d;
                    Some(*acc)
                })
                .collect();
            StockSeries { sku: sku.clone(), left }
        })
        .collect();
    Series { start_ms: start, bucket_ms: width, orders, stock }
}

#[cfg(test)]
mod tests {
    use super::super::fold::tests::{open, outcome};
    use super::*;
    use dropline_proto::v1::{ChatActivity, ChatOrder};

    #[test]
    fn the_funnel_follows_orders_from_chat_to_payment_per_channel() {
        let mut log = DropLog::default();
        log.trigger(&open(1_000, &[("TEE", 2, 2_500)]));
        log.activity(&ChatActivity {
            channel: "twitch:#home".into(),
            lines: 40,
            commands: 4,
            ..Default::default()
        });
        log.activity(&ChatActivity {
            channel: "twitch:#friend".into(),
            lines: 10,
            commands: 1,
            ..Default::default()
        });
        for (id, channel) in
            [("a", "twitch:#home"), ("b", "twitch:#home"), ("c", "twitch:#home"), ("d", "twitch:#friend")]
        {
            log.chat_order(&ChatOrder { order_id: id.into(), channel: channel.into(), ..Default::default() });
        }
        let mut friend = outcome("d", S::SoldOut, "TEE", 1, 0, 1_400);
        friend.channel = "twitch:#friend".into();
        for e in [
            outcome("a", S::Reserved, "TEE", 1, 1, 1_100),
            outcome("b", S::Reserved, "TEE", 1, 0, 1_200),
            outcome("c", S::Waitlisted, "TEE", 1, 0, 1_300),
            friend,
            outcome("a", S::Confirmed, "TEE", 1, 0, 2_100),
            outcome("b", S::Expired, "TEE", 1, 1, 3_100),
            outcome("c", S::Reserved, "TEE", 1, 0, 3_100),
            outcome("c", S::Confirmed, "TEE", 1, 0, 3_900),
        ] {
            log.outcome(&e);
        }
        let f = figures(&log, []);
        let home = f.funnel.iter().find(|x| x.channel == "twitch:#home").expect("home");
        assert_eq!((home.lines_seen, home.orders, home.decided), (40, 3, 3));
        assert_eq!((home.reserved, home.waitlisted, home.promoted, home.paid), (2, 1, 1, 2));
        assert_eq!((home.paid_after_promotion, home.expired, home.revenue_cents), (1, 1, 5_000));
        assert_eq!(home.order_rate, Some(3.0 / 40.0));
        assert_eq!(home.pay_rate, Some(2.0 / 3.0));
        let friend = f.funnel.iter().find(|x| x.channel == "twitch:#friend").expect("friend");
        assert_eq!((friend.orders, friend.refused, friend.paid), (1, 1, 0));
        let all = f.funnel.last().expect("all");
        assert_eq!((all.channel.as_str(), all.lines_seen, all.orders, all.paid), ("all", 50, 4, 2));
        let tee = &f.skus[0].units;
        assert_eq!((tee.total, tee.left, tee.reserved, tee.confirmed, tee.waitlisted), (2, 0, 0, 2, 0));
        assert_eq!(f.skus[0].sold_out_after_ms, Some(200));
        assert_eq!(f.revenue_cents, 5_000);
        assert_eq!((f.buyers.unique, f.buyers.paying, f.buyers.repeat), (4, 2, 0));
        assert_eq!(f.series.start_ms, 1_000);
        assert_eq!(f.series.orders, vec![4, 0, 0], "decided per second from the open");
        assert_eq!(
            f.series.stock[0].left,
            vec![0, 0, 0],
            "2 on sale at the open, both taken in the first second"
        );
    }

    #[test]
    fn revenue_saturates_instead_of_wrapping() {
        // Prices are the creator's to type: a huge one must not turn the report's revenue negative.
        let mut log = DropLog::default();
        log.trigger(&open(1_000, &[("GOLD", 4_000_000, i64::MAX / 2), ("TEE", 10, 2_500)]));
        for (id, sku, q) in [("a", "GOLD", 3_000_000), ("b", "GOLD", 1), ("c", "TEE", 2)] {
            log.outcome(&outcome(id, S::Reserved, sku, q, 0, 1_100));
            log.outcome(&outcome(id, S::Confirmed, sku, q, 0, 1_200));
        }
        let f = figures(&log, []);
        assert_eq!(f.revenue_cents, i64::MAX, "saturated, not wrapped");
        let gold = f.skus.iter().find(|s| s.units.sku == "GOLD").expect("GOLD");
        assert_eq!(gold.revenue_cents, i64::MAX);
        let all = f.funnel.last().expect("all");
        assert_eq!(all.revenue_cents, i64::MAX);
        assert!(f.skus.iter().all(|s| s.revenue_cents >= 0));
    }

    #[test]
    fn repeat_buyers_paid_in_an_earlier_drop() {
        let mut earlier = DropLog::default();
        earlier.trigger(&open(1_000, &[("TEE", 5, 100)]));
        earlier.outcome(&outcome("x", S::Reserved, "TEE", 1, 4, 1_100));
        earlier.outcome(&outcome("x", S::Confirmed, "TEE", 1, 4, 1_200));
        let mut log = DropLog::default();
        log.trigger(&open(100_000, &[("TEE", 5, 100)]));
        for id in ["x", "y"] {
            log.outcome(&outcome(id, S::Reserved, "TEE", 1, 4, 100_100));
            log.outcome(&outcome(id, S::Confirmed, "TEE", 1, 4, 100_200));
        }
        let f = figures(&log, [&earlier]);
        assert_eq!((f.buyers.paying, f.buyers.repeat, f.buyers.repeat_share), (2, 1, Some(0.5)));
    }

    #[test]
    fn a_long_drop_is_drawn_in_at_most_max_points() {
        let mut log = DropLog::default();
        log.trigger(&open(0, &[("TEE", 5_000, 100)]));
        for i in 0..2_000 {
            log.outcome(&outcome(&format!("o{i}"), S::Reserved, "TEE", 1, 4_999 - i, i * 3_600));
        }
        let f = figures(&log, []);
        assert!(f.series.orders.len() <= MAX_POINTS, "{}", f.series.orders.len());
        assert_eq!(f.series.orders.iter().sum::<u64>(), 2_000);
        assert_eq!(*f.series.stock[0].left.last().expect("points"), 3_000);
    }

    mod replay {
        use super::*;
        use dropline_proto::v1::{drop_trigger, DropTrigger, ReservationOutcome, Restock};
        use proptest::prelude::*;

        /// An order's outcomes in the order the matcher publishes them.
        fn life(id: usize, sku: &str, plan: u8, at: i64) -> Vec<ReservationOutcome> {
            let o = |s: S, dt: i64| {
                outcome(&format!("o{id}"), s, sku, 1 + (id % 2) as u32, (id % 3) as i64, at + dt)
            };
            match plan % 9 {
                0 => vec![o(S::Reserved, 0)],
                1 => vec![o(S::Reserved, 0), o(S::Confirmed, 500)],
                2 => vec![o(S::Reserved, 0), o(S::Released, 700)],
                3 => vec![o(S::Reserved, 0), o(S::Expired, 900), o(S::Confirmed, 1_500)],
                4 => vec![o(S::Reserved, 0), o(S::Expired, 900), o(S::RefundDue, 1_500)],
                5 => vec![o(S::Waitlisted, 0), o(S::Reserved, 800), o(S::Confirmed, 1_200)],
                6 => vec![o(S::Waitlisted, 0), o(S::SoldOut, 2_000)],
                7 => vec![o(S::SoldOut, 0)],
                _ => vec![o(S::LimitExceeded, 0), o(S::Duplicate, 10)],
            }
        }

        proptest! {
            /// However often outcomes are republished, and wherever the other topics' events fall
            /// between them, the figures are the same.
            #[test]
            fn republished_and_interleaved_events_change_nothing(
                plans in proptest::collection::vec(0u8..9, 0..40),
                restocks in proptest::collection::vec((0usize..40, 1u32..5), 0..4),
                repeats in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
                positions in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let skus = ["TEE", "CAP"];
                let mut outcomes: Vec<ReservationOutcome> = plans
                    .iter()
                    .enumerate()
                    .flat_map(|(i, p)| life(i, skus[i % 2], *p, 2_000 + 150 * i as i64))
                    .collect();
                outcomes.sort_by_key(|o| o.decided_at_ms); // one partition: decision order
                let mut triggers = vec![open(1_000, &[("TEE", 20, 100), ("CAP", 5, 50)])];
                for (k, (at, units)) in restocks.iter().enumerate() {
                    triggers.push(DropTrigger {
                        drop_id: "d".into(),
                        sent_at_ms: 2_000 + 150 * *at as i64,
                        trigger_id: format!("r{k}"),
                        action: Some(drop_trigger::Action::Restock(Restock { sku: skus[k % 2].into(), quantity: *units })),
                    });
                }
                let mut once = DropLog::default();
                for t in &triggers {
                    once.trigger(t);
                }
                for o in &outcomes {
                    once.outcome(o);
                }
                // Again: outcomes republished (each repeat after its original), triggers read by
                // another consumer at other moments, and the triggers topic replayed twice.
                let mut replayed = DropLog::default();
                let mut with_repeats = outcomes.clone();
                for index in &repeats {
                    if outcomes.is_empty() { break; }
                    let i = index.index(outcomes.len());
                    let at = with_repeats.iter().position(|o| *o == outcomes[i]).unwrap_or(0);
                    let later = at + 1 + index.index(with_repeats.len() - at);
                    with_repeats.insert(later.min(with_repeats.len()), outcomes[i].clone());
                }
                let mut cuts: Vec<usize> = positions.iter().map(|p| p.index(with_repeats.len() + 1)).collect();
                cuts.sort_unstable();
                let mut next_trigger = triggers.iter().chain(triggers.iter());
                for (i, o) in with_repeats.iter().enumerate() {
                    while cuts.first() == Some(&i) {
                        cuts.remove(0);
                        if let Some(t) = next_trigger.next() { replayed.trigger(t); }
                    }
                    replayed.outcome(o);
                }
                for t in next_trigger {
                    replayed.trigger(t);
                }
                prop_assert_eq!(figures(&once, []), figures(&replayed, []));
            }
        }
    }
}
