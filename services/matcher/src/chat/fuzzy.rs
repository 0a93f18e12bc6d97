//! Typo tolerance for the parser: whether two words are one edit apart (Damerau–Levenshtein
//! distance ≤ 1, linear time) and the edit distance used to suggest close matches.

/// Longest words (in characters) compared by edit distance when suggesting close matches.
pub(super) const EDIT_MAX_CHARS: usize = 32;

pub(super) fn has_at_least_chars(text: &str, n: usize) -> bool {
    text.chars().nth(n.saturating_sub(1)).is_some()
}

/// Whether `a` and `b` are at most one insertion, deletion, substitution or adjacent transposition
/// apart (Damerau–Levenshtein distance ≤ 1), in linear time.
pub(super) fn within_one_edit(a: &str, b: &str) -> bool {
    let (mut ra, mut rb) = (a.chars(), b.chars());
    loop {
        let (sa, sb) = (ra.as_str(), rb.as_str());
        match (ra.next(), rb.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => {
                let (ta, tb) = (skip_char(sa), skip_char(sb));
                return ta == tb || sa == tb || ta == sb || transposed(sa, sb);
            }
        }
    }
}

pub(super) fn skip_char(s: &str) -> &str {
    let mut chars = s.chars();
    chars.next();
    chars.as_str()
}

pub(super) fn transposed(a: &str, b: &str) -> bool {
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(a0), Some(a1), Some(b0), Some(b1)) => a0 == b1 && a1 == b0 && ca.as_str() == cb.as_str(),
        _ => false,
    }
}

/// Optimal-string-alignment (restricted Damerau–Levenshtein) distance, `None` when either word is
/// longer than [`EDIT_MAX_CHARS`] characters.
pub(super) fn osa_distance(a: &str, b: &str) -> Option<usize> {
    fn chars_of(s: &str) -> Option<([char; EDIT_MAX_CHARS], usize)> {
        let mut out = ['\0'; EDIT_MAX_CHARS];
        let mut len = 0;
        for c in s.chars() {
            *out.get_mut(len)? = c;
            len += 1;
        }
        Some((out, len))
    }
    let (ac, la) = chars_of(a)?;
    let (bc, lb) = chars_of(b)?;
    let (ac, bc) = (ac.get(..la)?, bc.get(..lb)?);
    // Three rolling rows: two rows back (for transpositions), previous, current.
    let mut back = [0usize; EDIT_MAX_CHARS + 1];
    let mut prev = [0usize; EDIT_MAX_CHARS + 1];
    let mut cur = [0usize; EDIT_MAX_CHARS + 1];
    for (j, cell) in prev.iter_mut().enumerate() {
        *cell = j;
    }
    for (i, &x) in ac.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &y) in bc.iter().enumerate() {
            let substitution = prev[j] + usize::from(x != y);
            let mut best = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && ac.get(i - 1) == Some(&y) && bc.get(j - 1) == Some(&x) {
                best = best.min(back[j - 1] + 1);
            }
            cur[j + 1] = best;
        }
        back = prev;
        prev = cur;
    }
    prev.get(lb).copied()
}
