//! Bit sets of SKUs (one bit per catalog entry) that the parser intersects per token.

use super::Found;

/// Sets the first `n` bits of `row`.
pub(super) fn fill_all(row: &mut [u64], n: usize) {
    for (j, word) in row.iter_mut().enumerate() {
        let low = j * 64;
        *word = if n >= low + 64 {
            u64::MAX
        } else if n > low {
            (1u64 << (n - low)) - 1
        } else {
            0
        };
    }
}

/// `rows[to] |= rows[from] & set`, rows being `w` words each (`from < to`).
pub(super) fn or_and_rows(rows: &mut [u64], w: usize, from: usize, to: usize, set: &[u64]) {
    if from >= to || rows.len() < (to + 1) * w {
        return;
    }
    let (head, tail) = rows.split_at_mut(to * w);
    if let (Some(src), Some(dst)) = (head.get(from * w..(from + 1) * w), tail.get_mut(..w)) {
        for ((d, s), b) in dst.iter_mut().zip(src).zip(set) {
            *d |= s & b;
        }
    }
}

pub(super) fn or_into(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d |= s;
    }
}

pub(super) fn summarize(set: &[u64]) -> Found {
    match set.iter().map(|w| w.count_ones()).sum::<u32>() {
        0 => Found::Nothing,
        1 => members(set).next().map_or(Found::Nothing, Found::One),
        _ => Found::Several,
    }
}

/// Indices of the set bits, ascending.
pub(super) fn members(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter()
        .enumerate()
        .flat_map(|(j, &word)| (0..64).filter(move |b| word & (1u64 << b) != 0).map(move |b| j * 64 + b))
}

pub(super) fn mark(known: &mut [bool], range: std::ops::Range<usize>) {
    for k in known.iter_mut().take(range.end).skip(range.start) {
        *k = true;
    }
}
