//! Chat-line parser: turns what a viewer typed in chat (`!buy hoodie L`) into an order for exactly one
//! SKU of the drop's catalog, or says precisely why it is not one.
//!
//! Pure logic, no I/O. Raw strings are parsed into domain types ([`Sku`], [`BuyerId`], [`Quantity`])
//! at this boundary and do not travel inward. A [`CatalogIndex`] is built once per drop (it validates
//! the catalog and precomputes lowercase descriptor sets); [`CatalogIndex::parse`] then runs for every
//! chat line without heap allocation on the happy path (for catalogs up to ~900 SKUs; larger ones use one
//! scratch allocation per line) and never panics, whatever the input.
//!
//! # The command
//!
//! * A line is an order attempt only when it starts (after optional whitespace) with `!buy`, in any
//!   case, followed by whitespace or the end of the line; `!buying` or `hey !buy` are ordinary chat
//!   ([`ChatLine::NotAnOrder`]).
//! * The rest of the line is split on whitespace into tokens compared case-insensitively (Unicode
//!   lowercase); surrounding punctuation such as `,.;:!?"'()` is ignored. More than
//!   [`MAX_LINE_BYTES`] bytes or [`MAX_WORDS`] words after the command is [`ChatLine::Invalid`].
//! * Quantity: 1 unless given as a trailing integer (`!buy hoodie L 2`), a trailing `x 2`, or an
//!   `xN` / `Nx` token first or last (`!buy 2x hoodie L`, `!buy hoodie L x2`). A leading bare integer
//!   (`!buy 2 hoodie L`) is read as a quantity only when nothing matches with it read as an item
//!   number. A quantity of 0, above the per-order maximum, or too large to represent is
//!   [`ChatLine::Invalid`] with a reason naming the maximum.
//! * The other tokens must together select exactly one SKU. Each SKU is described by its SKU code,
//!   the parts of the code split on `-`/`_` (`TEE-BLACK-M` → tee, black, m), its product, size,
//!   aliases, the words of its display name and its item number (`!buy 3`). A SKU matches when every
//!   token is one of its descriptors; multi-word aliases, names, products and sizes consume several
//!   tokens (`!buy dad hat`). A line that is exactly one SKU code always selects that SKU.
//! * Among the possible readings of the quantity, the first that selects exactly one SKU wins;
//!   otherwise a reading that selects several is [`ChatLine::Invalid`] listing the choices
//!   ("which size? M, L"); otherwise [`ChatLine::UnknownSku`] quotes the words not understood and
//!   suggests close matches.
//! * Typos: only when the exact reading finds nothing, a token of ≥ 4 characters within
//!   Damerau–Levenshtein distance 1 of a descriptor word of ≥ 4 characters counts as that word
//!   (`!buy hodie L`). All candidates within distance 1 are considered, so the result is
//!   deterministic.

use std::collections::{BTreeMap, BTreeSet};

use dropline_proto::v1::CatalogItem;

mod bits;
mod fuzzy;
mod reason;

use bits::{fill_all, mark, members, or_and_rows, or_into, summarize};
use fuzzy::{has_at_least_chars, osa_distance, within_one_edit, EDIT_MAX_CHARS};
use reason::{display_text, push_list, push_quoted};

use dropline_core::domain::strip_command;
pub use dropline_core::domain::{is_command, BuyerId, DomainError, Quantity, Sku, COMMAND};

/// Longest accepted text after the command, in bytes (surrounding whitespace not counted).
pub const MAX_LINE_BYTES: usize = 500;

/// Most words accepted after the command; longer lines are not orders anyone types.
pub const MAX_WORDS: usize = 16;

/// Per-order maximum used when the drop configures none (`max_quantity_per_order = 0`).
pub const DEFAULT_MAX_QUANTITY: u32 = 10;

/// Reason given when the command names nothing to buy.
const SAY_WHAT: &str = "say what to buy, e.g. `!buy hoodie L`";

/// Room for the lowercased text after the command: Unicode lowercasing grows text by at most 1.5×,
/// and anything that does not fit is reported as too long rather than truncated.
const LOWER_BUF_BYTES: usize = 1024;

/// Bit-set words kept on the stack while matching (enough for catalogs of several hundred SKUs).
const INLINE_SET_WORDS: usize = 256;

/// Shortest token and descriptor word (in characters) that typo tolerance applies to.
const FUZZY_MIN_CHARS: usize = 4;

/// Punctuation ignored around tokens and descriptor words (`hoodie,` is `hoodie`).
const PUNCTUATION: &[char] =
    &[',', '.', ';', ':', '!', '?', '"', '\'', '(', ')', '[', ']', '{', '}', '…', '¡', '¿', '«', '»'];

/// What one chat line means for a drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLine {
    /// Ordinary chat, not the `!buy` command: ignored (and counted) by the caller.
    NotAnOrder,
    /// An order for exactly one SKU of the catalog.
    Order {
        /// The SKU ordered (always one of the catalog's).
        sku: Sku,
        /// How many units (within the per-order maximum).
        quantity: Quantity,
    },
    /// The command was recognised but no SKU matches; the reason quotes what was not understood.
    UnknownSku {
        /// Human-readable explanation, with suggestions when there are close matches.
        reason: String,
    },
    /// The command was recognised but is malformed, ambiguous or has a bad quantity.
    Invalid {
        /// Human-readable explanation.
        reason: String,
    },
}

impl ChatLine {
    fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid { reason: reason.into() }
    }
}

/// A drop's catalog indexed for parsing chat lines: built once per drop, then shared read-only.
#[derive(Debug, Clone)]
pub struct CatalogIndex {
    /// One entry per SKU, in catalog order; bit `i` of every set stands for `entries[i]`.
    entries: Vec<Entry>,
    /// Lowercase single-word descriptors, sorted by text.
    words: Vec<WordEntry>,
    /// Lowercase multi-word descriptors, sorted by their words (so by first word).
    phrases: Vec<PhraseEntry>,
    /// Lowercase SKU codes, sorted, with the entry each names.
    codes: Vec<(Box<str>, usize)>,
    /// Arena of SKU bit sets, `width` words each.
    sets: Vec<u64>,
    /// `u64` words per bit set.
    width: usize,
    /// Distinct item numbers, ascending (for hints).
    item_numbers: Vec<u32>,
    /// Distinct products, lowercase and sorted (for hints).
    products: Vec<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    sku: Sku,
    /// Size as shown to viewers (trimmed, sanitised), empty when none.
    size: String,
    /// Normalised size for comparisons.
    size_key: String,
}

#[derive(Debug, Clone)]
struct WordEntry {
    text: Box<str>,
    chars: usize,
    set: usize,
}

#[derive(Debug, Clone)]
struct PhraseEntry {
    words: Box<[Box<str>]>,
    set: usize,
}

/// How many SKUs a reading selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Nothing,
    One(usize),
    Several,
}

/// How a quantity token is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QtyForm {
    /// `2`: could also be an item number or a code.
    Bare,
    /// `x2`, `2x`: explicitly a quantity.
    Marked,
}

/// One reading of the tokens: `tokens[start..end]` describe the SKU, `qty` holds the quantity digits.
#[derive(Debug, Clone, Copy)]
struct Reading<'a> {
    start: usize,
    end: usize,
    qty: Option<&'a str>,
}

impl<'a> Reading<'a> {
    fn descriptors<'t>(&self, tokens: &'t [&'a str]) -> &'t [&'a str] {
        tokens.get(self.start..self.end).unwrap_or(&[])
    }
}

impl CatalogIndex {
    /// Validates a drop's catalog and indexes it. Rejects an empty catalog, invalid SKU strings and
    /// duplicate SKUs (compared case-insensitively).
    pub fn new(items: &[CatalogItem]) -> Result<Self, DomainError> {
        // The one catalog check, the console's too: SKUs, texts and their lengths, duplicates.
        let skus = dropline_core::domain::check_catalog(items)?;
        let mut words: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let mut phrases: BTreeMap<Vec<String>, BTreeSet<usize>> = BTreeMap::new();
        let mut codes = Vec::with_capacity(items.len());
        let mut entries = Vec::with_capacity(items.len());
        let mut item_numbers = BTreeSet::new();
        let mut products = BTreeSet::new();

        for (index, (item, sku)) in items.iter().zip(skus).enumerate() {
            let mut add = |descriptor: Vec<String>| match descriptor.len() {
                0 => {}
                1 => {
                    if let Some(word) = descriptor.into_iter().next() {
                        words.entry(word).or_default().insert(index);
                    }
                }
                n if n <= MAX_WORDS => {
                    phrases.entry(descriptor).or_default().insert(index);
                }
                _ => {}
            };

            let code = sku.as_str().to_ascii_lowercase();
            add(vec![code.clone()]);
            for part in code.split(['-', '_']).filter(|p| !p.is_empty()) {
                add(vec![part.to_owned()]);
            }
            for text in [&item.product, &item.size, &item.name] {
                let descriptor = normalize_words(text);
                for word in &descriptor {
                    add(vec![word.clone()]);
                }
                add(descriptor);
            }
            for alias in &item.aliases {
                // Aliases count as a whole: `dad hat` is a phrase, not the words `dad` and `hat`.
                add(normalize_words(alias));
            }
            if item.item_number != 0 {
                add(vec![item.item_number.to_string()]);
                item_numbers.insert(item.item_number);
            }

            let product = normalize_words(&item.product).join(" ");
            if !product.is_empty() {
                products.insert(product);
            }
            codes.push((code.into_boxed_str(), index));
            entries.push(Entry {
                sku,
                size: display_text(&item.size),
                size_key: normalize_words(&item.size).join(" "),
            });
        }
        codes.sort();

        let width = entries.len().div_ceil(64);
        let mut sets = Vec::with_capacity((words.len() + phrases.len()) * width);
        let mut new_set = |members: &BTreeSet<usize>| {
            let offset = sets.len();
            sets.resize(offset + width, 0);
            for &member in members {
                if let Some(word) = sets.get_mut(offset + member / 64) {
                    *word |= 1u64 << (member % 64);
                }
            }
            offset
        };
        let words = words
            .iter()
            .map(|(text, members)| WordEntry {
                chars: text.chars().count(),
                text: text.clone().into_boxed_str(),
                set: new_set(members),
            })
            .collect();
        let phrases = phrases
            .iter()
            .map(|(phrase, members)| PhraseEntry {
                words: phrase.iter().map(|w| w.clone().into_boxed_str()).collect(),
                set: new_set(members),
            })
            .collect();

        Ok(Self {
            entries,
            words,
            phrases,
            codes,
            sets,
            width,
            item_numbers: item_numbers.into_iter().collect(),
            products: products.into_iter().collect(),
        })
    }

    /// Number of SKUs in the catalog.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog has no SKU (never true for an index built by [`CatalogIndex::new`]).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The catalog's SKUs, in catalog order.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> + '_ {
        self.entries.iter().map(|e| &e.sku)
    }

    /// Whether `sku` is in the catalog.
    pub fn contains(&self, sku: &Sku) -> bool {
        self.entries.iter().any(|e| e.sku == *sku)
    }

    /// Parses one chat line against this catalog. `max_quantity` is the drop's per-order maximum
    /// (0 means [`DEFAULT_MAX_QUANTITY`]; values above [`Quantity::MAX`] are capped). Never panics.
    pub fn parse(&self, line: &str, max_quantity: u32) -> ChatLine {
        let Some(rest) = strip_command(line) else {
            return ChatLine::NotAnOrder;
        };
        let rest = rest.trim();
        let too_long =
            || ChatLine::invalid(format!("line too long: at most {MAX_LINE_BYTES} bytes after !buy"));
        if rest.len() > MAX_LINE_BYTES {
            return too_long();
        }
        let mut buf = [0u8; LOWER_BUF_BYTES];
        let Some(lowered) = lowercase_into(rest, &mut buf) else {
            return too_long();
        };

        let mut slots: [&str; MAX_WORDS] = [""; MAX_WORDS];
        let mut count = 0;
        for token in lowered.split_whitespace().map(trim_punctuation).filter(|t| !t.is_empty()) {
            match slots.get_mut(count) {
                Some(slot) => *slot = token,
                None => return ChatLine::invalid(format!("too many words: at most {MAX_WORDS} after !buy")),
            }
            count += 1;
        }
        let tokens = slots.get(..count).unwrap_or(&[]);
        if tokens.is_empty() {
            return ChatLine::invalid(SAY_WHAT);
        }
        let max = match max_quantity {
            0 => DEFAULT_MAX_QUANTITY,
            m => m.min(Quantity::MAX),
        };
        self.resolve(tokens, max)
    }

    /// Tries the readings of the tokens, exactly and then with typo tolerance.
    fn resolve(&self, tokens: &[&str], max: u32) -> ChatLine {
        let (preferred, fallback) = readings(tokens);
        let need = (tokens.len() + 2) * self.width;
        let mut inline = [0u64; INLINE_SET_WORDS];
        let mut heap = Vec::new();
        let scratch: &mut [u64] = if need <= INLINE_SET_WORDS {
            &mut inline
        } else {
            heap.resize(need, 0);
            &mut heap
        };

        for fuzzy in [false, true] {
            for tier in [&preferred[..], &fallback[..]] {
                let mut several = None;
                for reading in tier.iter().flatten() {
                    match self.select(reading.descriptors(tokens), fuzzy, scratch) {
                        Found::Nothing => {}
                        Found::One(entry) => return self.order(entry, reading.qty, max),
                        Found::Several => {
                            if several.is_none() {
                                several = Some(*reading);
                            }
                        }
                    }
                }
                if let Some(reading) = several {
                    let descriptors = reading.descriptors(tokens);
                    // Re-run to leave that reading's matches in the scratch space.
                    self.select(descriptors, fuzzy, scratch);
                    let k = descriptors.len();
                    let matched = scratch.get(k * self.width..(k + 1) * self.width).unwrap_or(&[]);
                    return ChatLine::invalid(self.ambiguity(matched));
                }
            }
        }
        self.not_found(tokens)
    }

    /// Builds the order for `entry`, validating the quantity digits.
    fn order(&self, entry: usize, qty: Option<&str>, max: u32) -> ChatLine {
        let quantity = match qty {
            None => Quantity::ONE,
            Some(digits) => match digits_value(digits) {
                Some(value) => match Quantity::at_most(value, max) {
                    Ok(quantity) => quantity,
                    Err(e) => return ChatLine::invalid(e.to_string()),
                },
                None => {
                    let mut reason = String::from("quantity ");
                    push_quoted(&mut reason, digits);
                    reason.push_str(&format!(" is more than the maximum of {max} per order"));
                    return ChatLine::invalid(reason);
                }
            },
        };
        match self.entries.get(entry) {
            Some(e) => ChatLine::Order { sku: e.sku.clone(), quantity },
            None => ChatLine::invalid("internal error: matched an unknown catalog entry"),
        }
    }

    /// Which SKUs the descriptor tokens select. Leaves the matching set in row `descriptors.len()`
    /// of `scratch` (unless a whole SKU code matched).
    fn select(&self, descriptors: &[&str], fuzzy: bool, scratch: &mut [u64]) -> Found {
        let k = descriptors.len();
        if k == 0 {
            return Found::Nothing;
        }
        if let (false, [only]) = (fuzzy, descriptors) {
            if let Some(entry) = self.code_entry(only) {
                return Found::One(entry);
            }
        }
        let w = self.width;
        let Some(scratch) = scratch.get_mut(..(k + 2) * w) else {
            return Found::Nothing;
        };
        let (rows, typo_set) = scratch.split_at_mut((k + 1) * w);
        rows.fill(0);
        if let Some(first) = rows.get_mut(..w) {
            fill_all(first, self.entries.len());
        }
        // rows[i] = SKUs whose descriptors can cover tokens[..i]
        for (i, token) in descriptors.iter().enumerate() {
            if rows.get(i * w..(i + 1) * w).is_none_or(|row| row.iter().all(|b| *b == 0)) {
                continue;
            }
            let set = if fuzzy { self.typo_set(token, typo_set) } else { self.word_set(token) };
            if let Some(set) = set {
                or_and_rows(rows, w, i, i + 1, set);
            }
            for phrase in self.phrases_from(token) {
                let m = phrase.words.len();
                let Some(window) = descriptors.get(i..i + m) else { continue };
                if window.iter().zip(phrase.words.iter()).all(|(t, p)| *t == &**p) {
                    or_and_rows(rows, w, i, i + m, self.set(phrase.set));
                }
            }
        }
        summarize(rows.get(k * w..(k + 1) * w).unwrap_or(&[]))
    }

    fn code_entry(&self, token: &str) -> Option<usize> {
        let found = self.codes.binary_search_by(|(code, _)| (**code).cmp(token)).ok()?;
        self.codes.get(found).map(|(_, entry)| *entry)
    }

    fn word_set(&self, token: &str) -> Option<&[u64]> {
        let found = self.words.binary_search_by(|w| (*w.text).cmp(token)).ok()?;
        self.words.get(found).map(|w| self.set(w.set))
    }

    /// The token's exact set united with the sets of descriptor words one edit away.
    fn typo_set<'s>(&self, token: &str, out: &'s mut [u64]) -> Option<&'s [u64]> {
        out.fill(0);
        let mut any = false;
        if let Some(set) = self.word_set(token) {
            or_into(out, set);
            any = true;
        }
        if has_at_least_chars(token, FUZZY_MIN_CHARS) {
            for word in &self.words {
                if word.chars >= FUZZY_MIN_CHARS && *word.text != *token && within_one_edit(token, &word.text)
                {
                    or_into(out, self.set(word.set));
                    any = true;
                }
            }
        }
        any.then_some(&*out)
    }

    fn phrases_from<'s>(&'s self, token: &'s str) -> impl Iterator<Item = &'s PhraseEntry> + 's {
        let start = self.phrases.partition_point(|p| p.words.first().is_some_and(|f| **f < *token));
        self.phrases
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(move |p| p.words.first().is_some_and(|f| **f == *token))
    }

    fn set(&self, offset: usize) -> &[u64] {
        self.sets.get(offset..offset + self.width).unwrap_or(&[])
    }

    /// "which size? M, L" when the choices differ by size, otherwise the SKUs.
    fn ambiguity(&self, matched: &[u64]) -> String {
        let choices: Vec<&Entry> = members(matched).filter_map(|i| self.entries.get(i)).collect();
        let sizes: BTreeSet<&str> = choices.iter().map(|e| e.size_key.as_str()).collect();
        let by_size = sizes.len() == choices.len() && !sizes.contains("");
        let mut reason = String::from(if by_size { "which size? " } else { "which one? " });
        let names = choices.iter().map(|e| if by_size { e.size.as_str() } else { e.sku.as_str() });
        push_list(&mut reason, names, ", ");
        reason
    }

    /// Explains why no SKU matched: the words not understood, with suggestions.
    fn not_found(&self, tokens: &[&str]) -> ChatLine {
        let mut known = [false; MAX_WORDS];
        let mut any_descriptor = false;
        for (i, token) in tokens.iter().enumerate() {
            if self.word_set(token).is_some() {
                mark(&mut known, i..i + 1);
                any_descriptor = true;
            }
            for phrase in self.phrases_from(token) {
                let m = phrase.words.len();
                let matches = tokens
                    .get(i..i + m)
                    .is_some_and(|window| window.iter().zip(phrase.words.iter()).all(|(t, p)| *t == &**p));
                if matches {
                    mark(&mut known, i..i + m);
                    any_descriptor = true;
                }
            }
        }
        let n = tokens.len();
        if let [first, .., last] = tokens {
            if quantity_digits(last).is_some() {
                mark(&mut known, n - 1..n);
            }
            if matches!(quantity_digits(first), Some((_, QtyForm::Marked))) {
                mark(&mut known, 0..1);
            }
        }
        if let [.., times, last] = tokens {
            if n >= 3 && is_times(times) && is_digits(last) {
                mark(&mut known, n - 2..n - 1);
            }
        }

        let unknown: Vec<&str> = tokens.iter().zip(known).filter(|(_, k)| !k).map(|(t, _)| *t).collect();
        if unknown.is_empty() {
            if !any_descriptor {
                return ChatLine::invalid(SAY_WHAT);
            }
            let mut reason = String::from("no single item matches ");
            push_quoted(&mut reason, &tokens.join(" "));
            self.push_catalog_hint(&mut reason);
            return ChatLine::UnknownSku { reason };
        }
        if let [only] = tokens {
            if matches!(quantity_digits(only), Some((_, QtyForm::Marked))) {
                return ChatLine::invalid(SAY_WHAT);
            }
        }

        let mut reason = String::from("didn't understand ");
        let quoted = unknown.iter().map(|t| {
            let mut q = String::new();
            push_quoted(&mut q, t);
            q
        });
        push_list(&mut reason, quoted, ", ");

        let mut hinted = false;
        let missing_numbers: Vec<&str> = unknown.iter().copied().filter(|t| is_digits(t)).take(3).collect();
        if !missing_numbers.is_empty() {
            reason.push_str("; there is no item ");
            reason.push_str(&missing_numbers.join(" or "));
            if !self.item_numbers.is_empty() {
                reason.push_str(" (items: ");
                push_list(&mut reason, self.item_numbers.iter().map(u32::to_string), ", ");
                reason.push(')');
            }
            hinted = true;
        }
        let mut suggestions: Vec<(usize, &str)> = Vec::new();
        for token in unknown.iter().filter(|t| !is_digits(t)).take(3) {
            for suggestion in self.suggest(token) {
                if !suggestions.iter().any(|(_, s)| *s == suggestion.1) {
                    suggestions.push(suggestion);
                }
            }
        }
        if !suggestions.is_empty() {
            suggestions.sort();
            reason.push_str("; did you mean ");
            let quoted = suggestions.iter().take(3).map(|(_, s)| {
                let mut q = String::new();
                push_quoted(&mut q, s);
                q
            });
            push_list(&mut reason, quoted, " or ");
            reason.push('?');
            hinted = true;
        }
        if !hinted {
            self.push_catalog_hint(&mut reason);
        }
        ChatLine::UnknownSku { reason }
    }

    /// Descriptor words close to `token`: within a small edit distance, or starting with it.
    fn suggest(&self, token: &str) -> Vec<(usize, &str)> {
        let chars = token.chars().count();
        let code_like = token.contains(['-', '_']);
        let max_distance = match chars {
            0..=2 => 0,
            3..=4 => 1,
            _ => 2,
        };
        let mut found: Vec<(usize, &str)> = self
            .words
            .iter()
            .filter(|w| !is_digits(&w.text))
            // Whole SKU codes are suggested only for tokens that look like one.
            .filter(|w| code_like || !(w.text.contains(['-', '_']) && self.code_entry(&w.text).is_some()))
            .filter_map(|w| {
                let prefix = chars >= 3 && w.text.starts_with(token);
                match osa_distance(token, &w.text) {
                    Some(d) if d <= max_distance || prefix => Some((d, &*w.text)),
                    None if prefix => Some((EDIT_MAX_CHARS, &*w.text)),
                    _ => None,
                }
            })
            .collect();
        found.sort();
        found.truncate(3);
        found
    }

    /// "; we have: cap, hoodie, tee" (products, or SKUs when there are none).
    fn push_catalog_hint(&self, reason: &mut String) {
        reason.push_str("; we have: ");
        if self.products.is_empty() {
            push_list(reason, self.entries.iter().map(|e| e.sku.as_str()), ", ");
        } else {
            push_list(reason, self.products.iter().map(|p| display_text(p)), ", ");
        }
    }
}

/// Lowercases `text` into `buf` (char by char, like the index), `None` if it does not fit.
fn lowercase_into<'b>(text: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let mut len = 0;
    for c in text.chars() {
        for lower in c.to_lowercase() {
            let mut tmp = [0u8; 4];
            let bytes = lower.encode_utf8(&mut tmp).as_bytes();
            let end = len + bytes.len();
            buf.get_mut(len..end)?.copy_from_slice(bytes);
            len = end;
        }
    }
    std::str::from_utf8(buf.get(..len)?).ok()
}

/// Char-by-char lowercase, the same mapping [`lowercase_into`] applies to chat lines.
fn lowercase(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

fn trim_punctuation(token: &str) -> &str {
    token.trim_matches(PUNCTUATION)
}

/// A descriptor's normalised words: lowercase, whitespace-separated, punctuation trimmed.
fn normalize_words(text: &str) -> Vec<String> {
    lowercase(text)
        .split_whitespace()
        .map(trim_punctuation)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The readings of a line's tokens, in order of preference; the fallback (a leading bare number as
/// the quantity) is tried only when no preferred reading matches anything.
fn readings<'a>(tokens: &[&'a str]) -> ([Option<Reading<'a>>; 4], [Option<Reading<'a>>; 1]) {
    let n = tokens.len();
    let mut preferred = [None; 4];
    let mut fallback = [None; 1];
    if let [.., times, last] = tokens {
        if n >= 3 && is_times(times) && is_digits(last) {
            preferred[0] = Some(Reading { start: 0, end: n - 2, qty: Some(*last) });
        }
    }
    if let [first, .., last] = tokens {
        if let Some((digits, _)) = quantity_digits(last) {
            preferred[1] = Some(Reading { start: 0, end: n - 1, qty: Some(digits) });
        }
        match quantity_digits(first) {
            Some((digits, QtyForm::Marked)) => {
                preferred[2] = Some(Reading { start: 1, end: n, qty: Some(digits) });
            }
            Some((digits, QtyForm::Bare)) => {
                fallback[0] = Some(Reading { start: 1, end: n, qty: Some(digits) });
            }
            None => {}
        }
    }
    preferred[3] = Some(Reading { start: 0, end: n, qty: None });
    (preferred, fallback)
}

fn is_times(token: &str) -> bool {
    matches!(token, "x" | "×" | "*")
}

fn is_digits(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit())
}

/// The digits of a quantity-like token: `2`, `x2`, `2x`, `×2`, `2×`.
fn quantity_digits(token: &str) -> Option<(&str, QtyForm)> {
    if is_digits(token) {
        return Some((token, QtyForm::Bare));
    }
    for mark in ['x', '×'] {
        if let Some(digits) = token.strip_prefix(mark).or_else(|| token.strip_suffix(mark)) {
            if is_digits(digits) {
                return Some((digits, QtyForm::Marked));
            }
        }
    }
    None
}

/// The value of ASCII digits, `None` when it does not fit in a `u32`.
fn digits_value(digits: &str) -> Option<u32> {
    digits.bytes().try_fold(0u32, |acc, b| acc.checked_mul(10)?.checked_add(u32::from(b.checked_sub(b'0')?)))
}

#[cfg(test)]
mod tests;
