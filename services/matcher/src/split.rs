//! Split drops: one very hot drop's stock over several shards (`<drop>#<k>`, each its own hash
//! tag, so its own Redis Cluster slot and primary). A buyer always lands in the same shard (their
//! limit, duplicates and holds stay in one place); the rebalancing plan moves units toward shards
//! whose buyers wait or that run low. Pure: the moves themselves are `step::take/give/settle`.

use std::collections::{BTreeMap, BTreeSet};

/// Most shards one drop may be split into.
pub const MAX_SHARDS: u32 = 64;

pub use dropline_core::shards::{parent_of, shard_id};

/// The shard of a buyer: FNV-1a of the buyer id, stable across processes and versions.
pub fn shard_of(buyer: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in buyer.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

/// Shard `k`'s share of `total` units: as even as whole units allow, the first shards one more.
pub fn share(total: u32, shards: u32, k: u32) -> u32 {
    let shards = shards.max(1);
    total / shards + u32::from(k < total % shards)
}

/// One move of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub sku: String,
    pub from: usize,
    pub to: usize,
    pub units: i64,
}

/// What to move now, given each shard's stock for sale and waitlisted orders per SKU. A shard
/// needs units when buyers wait in it or its stock fell below half its fair share; the donor is the
/// shard with the most stock and nobody waiting, and gives half of what it has above its own share
/// — or, to a shard with buyers waiting, down to its last unit (waiting buyers are real demand; a
/// shard merely running low does not get a donor's last unit, so units never ping-pong).
pub fn plan(stock: &[BTreeMap<String, i64>], waiting: &[BTreeMap<String, i64>]) -> Vec<Transfer> {
    let shards = stock.len();
    let skus: BTreeSet<&String> = stock.iter().flat_map(BTreeMap::keys).collect();
    let get = |m: &[BTreeMap<String, i64>], k: usize, sku: &str| {
        m.get(k).and_then(|h| h.get(sku)).copied().unwrap_or(0).max(0)
    };
    let mut moves = Vec::new();
    for sku in skus {
        let mut have: Vec<i64> = (0..shards).map(|k| get(stock, k, sku)).collect();
        let total: i64 = have.iter().sum();
        if total == 0 || shards < 2 {
            continue;
        }
        let fair = total / shards as i64;
        let low = (fair / 2).max(1);
        // Neediest first: waiting buyers, then the lowest stock.
        let mut needy: Vec<usize> =
            (0..shards).filter(|&k| get(waiting, k, sku) > 0 || have[k] < low).collect();
        needy.sort_by_key(|&k| (std::cmp::Reverse(get(waiting, k, sku)), have[k]));
        for to in needy {
            let waits = get(waiting, to, sku) > 0;
            let donor = (0..shards)
                .filter(|&k| k != to && get(waiting, k, sku) == 0)
                .max_by_key(|&k| (have[k], std::cmp::Reverse(k)));
            let Some(from) = donor else { continue };
            let units = if waits { (have[from] + 1) / 2 } else { (have[from] - fair.max(1)).max(0) / 2 };
            if units <= 0 {
                continue;
            }
            have[from] -= units;
            have[to] += units;
            moves.push(Transfer { sku: sku.clone(), from, to, units });
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(values: &[i64]) -> Vec<BTreeMap<String, i64>> {
        values.iter().map(|v| BTreeMap::from([("TEE".to_owned(), *v)])).collect()
    }

    #[test]
    fn ids_and_shares() {
        assert_eq!((0..4).map(|k| share(10, 4, k)).collect::<Vec<_>>(), vec![3, 3, 2, 2]);
        assert_eq!(shard_of("twitch:alice", 8), shard_of("twitch:alice", 8));
        let spread: BTreeSet<u32> = (0..200).map(|b| shard_of(&format!("viewer{b}"), 8)).collect();
        assert_eq!(spread.len(), 8, "buyers spread over every shard");
    }

    #[test]
    fn waiting_buyers_get_units_from_the_richest_shard() {
        let moves = plan(&hashes(&[0, 6, 2, 0]), &hashes(&[3, 0, 0, 0]));
        assert_eq!(moves[0], Transfer { sku: "TEE".into(), from: 1, to: 0, units: 3 });
        // The last unit goes where someone waits for it, not where stock merely ran low.
        assert_eq!(plan(&hashes(&[0, 1]), &hashes(&[1, 0])).len(), 1);
        assert!(plan(&hashes(&[0, 1]), &hashes(&[0, 0])).is_empty());
        assert!(plan(&hashes(&[5, 5, 5]), &hashes(&[0, 0, 0])).is_empty(), "balanced: nothing moves");
    }

    proptest! {
        #[test]
        fn a_plan_conserves_units_and_never_overdraws(
            stock in proptest::collection::vec(0i64..50, 1..9),
            waits in proptest::collection::vec(0i64..3, 9),
        ) {
            let shards = stock.len();
            let waiting = hashes(&waits[..shards]);
            let moves = plan(&hashes(&stock), &waiting);
            let mut have = stock.clone();
            for m in &moves {
                prop_assert!(m.units > 0 && m.from != m.to);
                prop_assert_eq!(waits[m.from], 0, "a shard with buyers waiting never gives");
                have[m.from] -= m.units;
                have[m.to] += m.units;
                prop_assert!(have[m.from] >= 0, "overdrawn: {:?} {:?}", stock, moves);
            }
            prop_assert_eq!(have.iter().sum::<i64>(), stock.iter().sum::<i64>());
        }
    }
}
