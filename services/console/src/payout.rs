//! Splitting a co-op drop's revenue between its partners: shares in basis points, payouts in whole
//! cents that always add up to the revenue exactly (largest remainder). Pure.

/// Basis points in a whole (100 %).
pub const WHOLE_BP: u32 = 10_000;

/// Why shares cannot split a revenue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("partners: the shares add up to {0} basis points, not 10000")]
    NotWhole(u64),
    #[error("partners: a drop needs at least one partner to split with")]
    NoPartners,
}

/// Checks that `shares` (basis points) make a whole.
pub fn check_shares(shares: &[u32]) -> Result<(), ShareError> {
    if shares.is_empty() {
        return Err(ShareError::NoPartners);
    }
    let sum: u64 = shares.iter().map(|&s| u64::from(s)).sum();
    if sum != u64::from(WHOLE_BP) {
        return Err(ShareError::NotWhole(sum));
    }
    Ok(())
}

/// `cents` split by `shares` (basis points summing to 10,000), in the shares' order. The rule
/// (largest remainder, stated on the report): each partner gets the whole cents of its exact share,
/// rounded down; the cents left over go one each to the partners with the largest fractions,
/// ties to the partner listed first. So payouts add up to `cents` exactly and none is more than
/// one cent from its exact share.
pub fn split(cents: u64, shares: &[u32]) -> Result<Vec<u64>, ShareError> {
    check_shares(shares)?;
    let whole = u128::from(WHOLE_BP);
    let exact: Vec<(u64, u128)> = shares
        .iter()
        .map(|&bp| {
            let scaled = u128::from(cents) * u128::from(bp);
            // Below cents · 10,000 / 10,000 = cents: fits in u64.
            (u64::try_from(scaled / whole).unwrap_or(u64::MAX), scaled % whole)
        })
        .collect();
    let mut payouts: Vec<u64> = exact.iter().map(|(floor, _)| *floor).collect();
    let left = cents - payouts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Largest fraction first; the sort is stable, so ties keep the listed order.
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1));
    for &i in order.iter().take(usize::try_from(left).unwrap_or(usize::MAX)) {
        payouts[i] += 1;
    }
    Ok(payouts)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_cent_left_over_goes_to_the_largest_fraction() {
        // 100 cents by 1/3 each (3,334 + 3,333 + 3,333 bp): 33.34, 33.33, 33.33 → 34, 33, 33.
        assert_eq!(split(100, &[3_334, 3_333, 3_333]), Ok(vec![34, 33, 33]));
        // Equal fractions: the first listed wins the cent.
        assert_eq!(split(1, &[5_000, 5_000]), Ok(vec![1, 0]));
        assert_eq!(split(0, &[10_000]), Ok(vec![0]));
        assert_eq!(split(12_345, &[7_000, 3_000]), Ok(vec![8_642, 3_703]));
    }

    #[test]
    fn shares_must_make_a_whole() {
        assert_eq!(split(100, &[5_000, 4_000]), Err(ShareError::NotWhole(9_000)));
        assert_eq!(split(100, &[]), Err(ShareError::NoPartners));
        assert!(ShareError::NotWhole(9_000).to_string().starts_with("partners:"));
    }

    /// Shares summing to 10,000: cut points in 0..=10,000.
    fn shares() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::vec(0..=WHOLE_BP, 0..8).prop_map(|mut cuts| {
            cuts.sort_unstable();
            let mut last = 0;
            let mut out = Vec::new();
            for c in cuts.into_iter().chain([WHOLE_BP]) {
                out.push(c - last);
                last = c;
            }
            out
        })
    }

    proptest! {
        /// Payouts add up to the revenue exactly, each within one cent of its exact share.
        #[test]
        fn splits_add_up_exactly(cents in 0u64..10_000_000_000, shares in shares()) {
            let payouts = split(cents, &shares).expect("the shares make a whole");
            prop_assert_eq!(payouts.iter().sum::<u64>(), cents);
            for (paid, bp) in payouts.iter().zip(&shares) {
                let exact = u128::from(cents) * u128::from(*bp);
                let paid = u128::from(*paid) * u128::from(WHOLE_BP);
                prop_assert!(paid + u128::from(WHOLE_BP) > exact && paid < exact + u128::from(WHOLE_BP),
                    "{} bp of {} cents paid {}", bp, cents, paid / u128::from(WHOLE_BP));
            }
        }
    }
}
