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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dropline_proto::v1::CatalogItem;

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

/// Longest words (in characters) compared by edit distance when suggesting close matches.
const EDIT_MAX_CHARS: usize = 32;

/// Longest excerpt of viewer text quoted back in a reason, in characters.
const QUOTE_MAX_CHARS: usize = 24;

/// Most choices, words or suggestions listed in one reason.
const MAX_LISTED: usize = 8;

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
        if items.is_empty() {
            return Err(DomainError::EmptyCatalog);
        }
        let mut words: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let mut phrases: BTreeMap<Vec<String>, BTreeSet<usize>> = BTreeMap::new();
        let mut codes = Vec::with_capacity(items.len());
        let mut seen: HashMap<Sku, usize> = HashMap::with_capacity(items.len());
        let mut entries = Vec::with_capacity(items.len());
        let mut item_numbers = BTreeSet::new();
        let mut products = BTreeSet::new();

        for (index, item) in items.iter().enumerate() {
            let sku = Sku::parse(&item.sku)
                .map_err(|e| DomainError::InvalidCatalogItem { index, reason: Box::new(e) })?;
            if let Some(&first) = seen.get(&sku) {
                return Err(DomainError::DuplicateSku { sku, first, second: index });
            }
            seen.insert(sku.clone(), index);

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

fn has_at_least_chars(text: &str, n: usize) -> bool {
    text.chars().nth(n.saturating_sub(1)).is_some()
}

/// Whether `a` and `b` are at most one insertion, deletion, substitution or adjacent transposition
/// apart (Damerau–Levenshtein distance ≤ 1), in linear time.
fn within_one_edit(a: &str, b: &str) -> bool {
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

fn skip_char(s: &str) -> &str {
    let mut chars = s.chars();
    chars.next();
    chars.as_str()
}

fn transposed(a: &str, b: &str) -> bool {
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(a0), Some(a1), Some(b0), Some(b1)) => a0 == b1 && a1 == b0 && ca.as_str() == cb.as_str(),
        _ => false,
    }
}

/// Optimal-string-alignment (restricted Damerau–Levenshtein) distance, `None` when either word is
/// longer than [`EDIT_MAX_CHARS`] characters.
fn osa_distance(a: &str, b: &str) -> Option<usize> {
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

/// Sets the first `n` bits of `row`.
fn fill_all(row: &mut [u64], n: usize) {
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
fn or_and_rows(rows: &mut [u64], w: usize, from: usize, to: usize, set: &[u64]) {
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

fn or_into(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d |= s;
    }
}

fn summarize(set: &[u64]) -> Found {
    match set.iter().map(|w| w.count_ones()).sum::<u32>() {
        0 => Found::Nothing,
        1 => members(set).next().map_or(Found::Nothing, Found::One),
        _ => Found::Several,
    }
}

/// Indices of the set bits, ascending.
fn members(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter()
        .enumerate()
        .flat_map(|(j, &word)| (0..64).filter(move |b| word & (1u64 << b) != 0).map(move |b| j * 64 + b))
}

fn mark(known: &mut [bool], range: std::ops::Range<usize>) {
    for k in known.iter_mut().take(range.end).skip(range.start) {
        *k = true;
    }
}

/// Appends up to [`MAX_LISTED`] items separated by `sep`, then "and N more".
fn push_list<S: AsRef<str>>(out: &mut String, items: impl Iterator<Item = S>, sep: &str) {
    let mut extra = 0usize;
    for (i, item) in items.enumerate() {
        if i >= MAX_LISTED {
            extra += 1;
            continue;
        }
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(item.as_ref());
    }
    if extra > 0 {
        out.push_str(&format!(" and {extra} more"));
    }
}

/// Appends viewer text in quotes, shortened, with control and invisible characters escaped.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    push_sanitized(out, text);
    out.push('"');
}

fn push_sanitized(out: &mut String, text: &str) {
    let mut chars = text.chars();
    for c in chars.by_ref().take(QUOTE_MAX_CHARS) {
        if c.is_control() || is_invisible(c) || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
}

/// Zero-width and bidirectional-control characters that would garble a reason shown to people.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Catalog text as shown in reasons: trimmed, sanitised, shortened.
fn display_text(text: &str) -> String {
    let mut out = String::new();
    push_sanitized(&mut out, text.trim());
    out
}

/// A raw value shortened for an error message.
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(
        sku: &str,
        product: &str,
        size: &str,
        name: &str,
        aliases: &[&str],
        item_number: u32,
    ) -> CatalogItem {
        CatalogItem {
            sku: sku.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            stock: 10,
            price_cents: 4_500,
            product: product.into(),
            size: size.into(),
            item_number,
        }
    }

    fn items() -> Vec<CatalogItem> {
        let hoodie = ["hoodie", "hoody"];
        let tee = ["tee", "shirt", "t-shirt"];
        vec![
            item("HOODIE-M", "hoodie", "M", "Logo hoodie", &hoodie, 1),
            item("HOODIE-L", "hoodie", "L", "Logo hoodie", &hoodie, 1),
            item("TEE-BLACK-M", "tee", "M", "Black tee", &tee, 2),
            item("TEE-BLACK-L", "tee", "L", "Black tee", &tee, 2),
            item("TEE-WHITE-M", "tee", "M", "White tee", &tee, 2),
            item("CAP", "cap", "", "Baseball cap", &["hat", "dad hat"], 3),
        ]
    }

    fn catalog() -> CatalogIndex {
        CatalogIndex::new(&items()).unwrap()
    }

    fn parse(line: &str) -> ChatLine {
        catalog().parse(line, 10)
    }

    fn order(sku: &str, quantity: u32) -> ChatLine {
        ChatLine::Order { sku: Sku::parse(sku).unwrap(), quantity: Quantity::new(quantity).unwrap() }
    }

    #[track_caller]
    fn invalid(line: &str) -> String {
        match parse(line) {
            ChatLine::Invalid { reason } => reason,
            other => panic!("{line:?}: expected Invalid, got {other:?}"),
        }
    }

    #[track_caller]
    fn unknown(line: &str) -> String {
        match parse(line) {
            ChatLine::UnknownSku { reason } => reason,
            other => panic!("{line:?}: expected UnknownSku, got {other:?}"),
        }
    }

    // ---- domain types -------------------------------------------------------------------------

    #[test]
    fn sku_is_canonical_uppercase() {
        let sku = Sku::parse("  hoodie-l ").unwrap();
        assert_eq!(sku.as_str(), "HOODIE-L");
        assert_eq!(sku.to_string(), "HOODIE-L");
        assert_eq!(Sku::parse("tee_black_m").unwrap().as_str(), "TEE_BLACK_M");
    }

    #[test]
    fn sku_rejects_bad_input_saying_why() {
        assert_eq!(Sku::parse(""), Err(DomainError::EmptySku));
        assert_eq!(Sku::parse("   "), Err(DomainError::EmptySku));
        let err = Sku::parse("HOODIE L").unwrap_err();
        assert!(matches!(err, DomainError::SkuInvalidChar { ch: ' ', .. }), "{err:?}");
        assert!(err.to_string().contains("' '"), "{err}");
        assert!(matches!(Sku::parse("HOODIÉ"), Err(DomainError::SkuInvalidChar { ch: 'É', .. })));
        let long = "A".repeat(65);
        let err = Sku::parse(&long).unwrap_err();
        assert!(matches!(err, DomainError::SkuTooLong { len: 65, .. }), "{err:?}");
        assert!(err.to_string().contains("at most 64"), "{err}");
        assert!(Sku::parse(&"A".repeat(64)).is_ok());
        let err = Sku::parse("--").unwrap_err();
        assert_eq!(err.to_string(), "SKU \"--\" has no letter or digit");
    }

    #[test]
    fn buyer_id_validation() {
        assert_eq!(BuyerId::parse("u42").unwrap().to_string(), "u42");
        assert_eq!(BuyerId::parse("").unwrap_err(), DomainError::EmptyBuyerId);
        assert_eq!(BuyerId::parse(&"x".repeat(129)).unwrap_err(), DomainError::BuyerIdTooLong { len: 129 });
        assert!(BuyerId::parse(&"x".repeat(128)).is_ok());
        let err = BuyerId::parse("u\n42").unwrap_err();
        assert_eq!(err, DomainError::BuyerIdControlChar { ch: '\n' });
        assert_eq!(err.to_string(), "buyer id contains the control character '\\n'");
        assert!(BuyerId::parse("twitch:Ünïcode 名前").is_ok());
    }

    #[test]
    fn quantity_validation() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(Quantity::MAX).unwrap().to_string(), Quantity::MAX.to_string());
        assert_eq!(Quantity::new(0).unwrap_err(), DomainError::ZeroQuantity { max: Quantity::MAX });
        assert!(matches!(Quantity::new(Quantity::MAX + 1), Err(DomainError::QuantityTooLarge { .. })));
        assert_eq!(
            Quantity::at_most(6, 5).unwrap_err().to_string(),
            "quantity 6 is more than the maximum of 5 per order"
        );
        assert_eq!(Quantity::at_most(5, 5).unwrap(), Quantity::new(5).unwrap());
        assert_eq!(Quantity::ONE.get(), 1);
    }

    // ---- catalog index ------------------------------------------------------------------------

    #[test]
    fn catalog_rejects_duplicates_invalid_skus_and_emptiness() {
        assert_eq!(CatalogIndex::new(&[]).unwrap_err(), DomainError::EmptyCatalog);

        let mut dup = items();
        dup.push(item("hoodie-l", "hoodie", "L", "Again", &[], 0));
        let err = CatalogIndex::new(&dup).unwrap_err();
        assert_eq!(
            err,
            DomainError::DuplicateSku { sku: Sku::parse("HOODIE-L").unwrap(), first: 1, second: 6 }
        );
        assert_eq!(err.to_string(), "SKU HOODIE-L appears twice in the catalog (items #1 and #6)");

        let mut bad = items();
        bad[2].sku = "TEE BLACK".into();
        let err = CatalogIndex::new(&bad).unwrap_err();
        assert!(matches!(&err, DomainError::InvalidCatalogItem { index: 2, .. }), "{err:?}");
        assert!(err.to_string().starts_with("catalog item #2: SKU \"TEE BLACK\" contains ' '"), "{err}");

        let mut empty = items();
        empty[0].sku = String::new();
        let err = CatalogIndex::new(&empty).unwrap_err();
        assert_eq!(err.to_string(), "catalog item #0: SKU is empty");
    }

    #[test]
    fn catalog_accessors() {
        let index = catalog();
        assert_eq!(index.len(), 6);
        assert!(!index.is_empty());
        assert!(index.contains(&Sku::parse("cap").unwrap()));
        assert!(!index.contains(&Sku::parse("MUG").unwrap()));
        let skus: Vec<&str> = index.skus().map(Sku::as_str).collect();
        assert_eq!(skus, ["HOODIE-M", "HOODIE-L", "TEE-BLACK-M", "TEE-BLACK-L", "TEE-WHITE-M", "CAP"]);
    }

    // ---- the command ----------------------------------------------------------------------------

    #[test]
    fn ordinary_chat_is_not_an_order() {
        for line in [
            "",
            "   ",
            "hello chat",
            "buy hoodie L",
            "!buying hoodie L",
            "!buyhoodie",
            "!buy,hoodie",
            "hey !buy hoodie L",
            "!bu",
            "!",
            "¡buy hoodie",
            "!b\u{fc}y hoodie",
            "!buy\u{0}hoodie",
        ] {
            assert_eq!(parse(line), ChatLine::NotAnOrder, "{line:?}");
        }
    }

    #[test]
    fn command_alone_says_what_to_buy() {
        for line in ["!buy", "!BUY", "  !buy   ", "!buy\t", "!buy , !"] {
            assert_eq!(invalid(line), "say what to buy, e.g. `!buy hoodie L`", "{line:?}");
        }
        assert_eq!(invalid("!buy x2"), SAY_WHAT);
        assert_eq!(invalid("!buy 2x"), SAY_WHAT);
        // `2x 3` is two of item 3.
        assert_eq!(parse("!buy 2x 3"), order("CAP", 2));
    }

    #[test]
    fn product_and_size() {
        assert_eq!(parse("!buy hoodie L"), order("HOODIE-L", 1));
        assert_eq!(parse("!buy hoodie m"), order("HOODIE-M", 1));
        assert_eq!(parse("   !buy hoodie L"), order("HOODIE-L", 1));
        assert_eq!(parse("!Buy   L\thoodie  "), order("HOODIE-L", 1));
        assert_eq!(parse("!buy hoodie, L!"), order("HOODIE-L", 1));
    }

    #[test]
    fn sku_code_with_quantity() {
        assert_eq!(parse("!buy HOODIE-L 2"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy hoodie-l"), order("HOODIE-L", 1));
        assert_eq!(parse("!buy cap"), order("CAP", 1));
        assert_eq!(parse("!buy tee-white-m 10"), order("TEE-WHITE-M", 10));
    }

    #[test]
    fn item_numbers() {
        assert_eq!(parse("!buy 3"), order("CAP", 1));
        assert_eq!(parse("!buy 3 2"), order("CAP", 2));
        assert_eq!(parse("!buy 1 L"), order("HOODIE-L", 1));
        assert_eq!(parse("!buy 1 L 2"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy 2 white"), order("TEE-WHITE-M", 1));
    }

    #[test]
    fn code_parts_colours_and_case() {
        assert_eq!(parse("!BUY tee black m"), order("TEE-BLACK-M", 1));
        assert_eq!(parse("!buy BLACK TEE L"), order("TEE-BLACK-L", 1));
        assert_eq!(parse("!buy white tee"), order("TEE-WHITE-M", 1));
        assert_eq!(parse("!buy logo hoodie m"), order("HOODIE-M", 1));
        assert_eq!(parse("!buy tee black m 2"), order("TEE-BLACK-M", 2));
    }

    #[test]
    fn quantity_forms() {
        assert_eq!(parse("!buy hoodie l x2"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy hoodie L X3"), order("HOODIE-L", 3));
        assert_eq!(parse("!buy 2x hoodie L"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy X4 hoodie L"), order("HOODIE-L", 4));
        assert_eq!(parse("!buy hoodie L 2x"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy hoodie L x 2"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy hoodie L ×5"), order("HOODIE-L", 5));
        assert_eq!(parse("!buy cap 02"), order("CAP", 2));
        // A leading bare number is a quantity only when it cannot be an item number.
        assert_eq!(parse("!buy 2 hoodie L"), order("HOODIE-L", 2));
        assert_eq!(parse("!buy 5 cap"), order("CAP", 5));
    }

    #[test]
    fn aliases_single_and_multi_word() {
        assert_eq!(parse("!buy hoody L"), order("HOODIE-L", 1));
        assert_eq!(parse("!buy t-shirt white"), order("TEE-WHITE-M", 1));
        assert_eq!(parse("!buy shirt black l"), order("TEE-BLACK-L", 1));
        assert_eq!(parse("!buy hat"), order("CAP", 1));
        assert_eq!(parse("!buy dad hat"), order("CAP", 1));
        assert_eq!(parse("!buy DAD HAT 2"), order("CAP", 2));
        assert_eq!(parse("!buy 2x dad hat"), order("CAP", 2));
        assert_eq!(parse("!buy baseball cap"), order("CAP", 1));
        // The words of a multi-word alias are not descriptors on their own.
        assert!(unknown("!buy dad").contains("\"dad\""));
    }

    #[test]
    fn default_and_capped_maximum() {
        let index = catalog();
        assert_eq!(index.parse("!buy cap 10", 0), order("CAP", 10));
        let reason = match index.parse("!buy cap 11", 0) {
            ChatLine::Invalid { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason.contains(&DEFAULT_MAX_QUANTITY.to_string()), "{reason}");
        assert_eq!(index.parse("!buy cap 1000", u32::MAX), order("CAP", 1000));
        assert!(matches!(index.parse("!buy cap 1001", u32::MAX), ChatLine::Invalid { .. }));
        assert_eq!(index.parse("!buy cap 1", 1), order("CAP", 1));
    }

    // ---- ambiguity ------------------------------------------------------------------------------

    #[test]
    fn several_matches_list_the_choices() {
        assert_eq!(invalid("!buy hoodie"), "which size? M, L");
        assert_eq!(invalid("!buy hoodie 2"), "which size? M, L");
        assert_eq!(invalid("!buy 1"), "which size? M, L");
        assert_eq!(invalid("!buy tee black"), "which size? M, L");
        assert_eq!(invalid("!buy tee m"), "which one? TEE-BLACK-M, TEE-WHITE-M");
        assert_eq!(invalid("!buy tee"), "which one? TEE-BLACK-M, TEE-BLACK-L, TEE-WHITE-M");
        assert_eq!(invalid("!buy l"), "which one? HOODIE-L, TEE-BLACK-L");
        assert_eq!(invalid("!buy logo"), "which size? M, L");
        // Sizes are listed only when every choice has a different one.
        let index = CatalogIndex::new(&[
            item("CAP-RED", "cap", "", "Red cap", &[], 0),
            item("CAP-BLUE", "cap", "", "Blue cap", &[], 0),
        ])
        .unwrap();
        assert_eq!(
            index.parse("!buy cap", 5),
            ChatLine::Invalid { reason: "which one? CAP-RED, CAP-BLUE".into() }
        );
    }

    // ---- quantities -----------------------------------------------------------------------------

    #[test]
    fn bad_quantities_name_the_maximum() {
        let zero = invalid("!buy hoodie L 0");
        assert_eq!(zero, "quantity must be between 1 and 10, not 0");
        assert_eq!(invalid("!buy 3 0"), zero);
        assert_eq!(invalid("!buy cap x0"), zero);
        assert_eq!(invalid("!buy hoodie L 11"), "quantity 11 is more than the maximum of 10 per order");
        assert_eq!(invalid("!buy 0x cap"), zero);
        let huge = invalid("!buy hoodie L 99999999999999999999999");
        assert!(huge.contains("maximum of 10"), "{huge}");
        assert!(huge.contains("99999999"), "{huge}");
        let overflow = invalid("!buy cap 4294967296");
        assert!(overflow.contains("maximum of 10"), "{overflow}");
        assert!(invalid("!buy cap x18446744073709551616").contains("maximum of 10"));
        let long_digits = format!("!buy cap {}", "9".repeat(400));
        let reason = invalid(&long_digits);
        assert!(reason.len() < 120, "{reason}");
    }

    // ---- unknown --------------------------------------------------------------------------------

    #[test]
    fn unknown_words_are_quoted_with_suggestions() {
        let reason = unknown("!buy jacket");
        assert_eq!(reason, "didn't understand \"jacket\"; we have: cap, hoodie, tee");
        let reason = unknown("!buy hoodiezz L");
        assert_eq!(reason, "didn't understand \"hoodiezz\"; did you mean \"hoodie\"?");
        let reason = unknown("!buy hoo L");
        assert!(reason.starts_with("didn't understand \"hoo\"; did you mean "), "{reason}");
        assert!(reason.contains("\"hoodie\""), "{reason}");
        let reason = unknown("!buy JACKET XXL");
        assert!(reason.starts_with("didn't understand \"jacket\", \"xxl\""), "{reason}");
        let reason = unknown("!buy 7");
        assert_eq!(reason, "didn't understand \"7\"; there is no item 7 (items: 1, 2, 3)");
        let reason = unknown("!buy hoodie white");
        assert_eq!(reason, "no single item matches \"hoodie white\"; we have: cap, hoodie, tee");
        let reason = unknown("!buy ca");
        assert!(reason.starts_with("didn't understand \"ca\""), "{reason}");
    }

    #[test]
    fn unknown_quotes_are_sanitised_and_short() {
        let reason = unknown("!buy \u{0}\u{202e}evil");
        assert!(!reason.chars().any(|c| c.is_control() || is_invisible(c)), "{reason:?}");
        assert!(reason.contains("\\u{0}"), "{reason}");
        let reason = unknown(&format!("!buy {}", "z".repeat(300)));
        assert!(reason.len() < 120, "{reason}");
        let reason = unknown("!buy a\"b");
        assert!(reason.contains("a\\\"b"), "{reason}");
    }

    #[test]
    fn typos_are_tolerated_only_as_a_fallback() {
        assert_eq!(parse("!buy hodie L"), order("HOODIE-L", 1));
        assert_eq!(parse("!buy hoodei L 2"), order("HOODIE-L", 2)); // transposition
        assert_eq!(parse("!buy hooodie m"), order("HOODIE-M", 1)); // insertion
        assert_eq!(parse("!buy blakc tee l"), order("TEE-BLACK-L", 1));
        assert_eq!(parse("!buy hoodies L"), order("HOODIE-L", 1));
        assert_eq!(parse("!buy hood L"), order("HOODIE-L", 1)); // one edit from `hoody`
        assert_eq!(invalid("!buy hodie"), "which size? M, L");
        // Short tokens are never fuzzy: `caq` is not `cap`.
        assert!(unknown("!buy caq").starts_with("didn't understand \"caq\""));
        // Two edits away is not a match.
        assert!(matches!(parse("!buy hdie L"), ChatLine::UnknownSku { .. }));
    }

    #[test]
    fn exact_interpretation_wins_over_typo() {
        // `whit` is not a descriptor, so the exact pass finds nothing and the typo pass reads `white`.
        assert_eq!(parse("!buy tee whit"), order("TEE-WHITE-M", 1));
        // With a catalog where the typo and the exact word both exist, the exact word is used.
        let index = CatalogIndex::new(&[
            item("MUG-BLUE", "mug", "", "Blue mug", &[], 0),
            item("MUG-BLUR", "mug", "", "Blur mug", &[], 0),
        ])
        .unwrap();
        assert_eq!(
            index.parse("!buy blue", 5),
            ChatLine::Order { sku: Sku::parse("MUG-BLUE").unwrap(), quantity: Quantity::ONE }
        );
        assert_eq!(
            index.parse("!buy blux", 5),
            ChatLine::Invalid { reason: "which one? MUG-BLUE, MUG-BLUR".into() }
        );
    }

    // ---- limits ---------------------------------------------------------------------------------

    #[test]
    fn long_lines_and_many_words_are_invalid() {
        let ok = format!("!buy {}", "a".repeat(MAX_LINE_BYTES));
        assert!(matches!(parse(&ok), ChatLine::UnknownSku { .. }));
        let long = format!("!buy {}", "a".repeat(MAX_LINE_BYTES + 1));
        assert!(invalid(&long).starts_with("line too long"));
        let long = format!("!buy hoodie L {}", " x".repeat(300));
        assert!(invalid(&long).starts_with("line too long"));
        let words = format!("!buy {}", ["hoodie"; MAX_WORDS + 1].join(" "));
        assert!(invalid(&words).starts_with("too many words"));
        let words = format!("!buy {}", ["hoodie"; MAX_WORDS].join(" "));
        assert_eq!(invalid(&words), "which size? M, L");
        // Characters whose lowercase is longer than themselves still fit.
        let growing = format!("!buy {}", "İ".repeat(MAX_LINE_BYTES / 2));
        assert!(matches!(parse(&growing), ChatLine::UnknownSku { .. }));
    }

    #[test]
    fn unicode_and_control_characters_do_not_panic() {
        for line in [
            "!buy 名前",
            "!buy ÀÉÎ ß ﬃ",
            "!buy \u{0}",
            "!buy \u{7f}\u{1b}[31m",
            "!buy 🧢",
            "!buy İİİ",
            "!buy \u{301}\u{301}",
            "!buy x",
            "!buy ×",
            "!buy x ×",
            "!buy 1 x",
        ] {
            let result = parse(line);
            assert!(
                matches!(result, ChatLine::UnknownSku { .. } | ChatLine::Invalid { .. }),
                "{line:?}: {result:?}"
            );
        }
        assert_eq!(parse("!buy\u{3000}cap"), order("CAP", 1));
    }

    #[test]
    fn large_catalogs_use_the_heap_path() {
        let items: Vec<CatalogItem> = (0..5_000u32)
            .map(|i| item(&format!("SKU-{i}"), "thing", &format!("S{i}"), "Thing", &[], i % 7))
            .collect();
        let index = CatalogIndex::new(&items).unwrap();
        assert_eq!(
            index.parse("!buy thing s4999 3", 5),
            ChatLine::Order { sku: Sku::parse("SKU-4999").unwrap(), quantity: Quantity::new(3).unwrap() }
        );
        assert_eq!(
            index.parse("!buy sku-640", 5),
            ChatLine::Order { sku: Sku::parse("SKU-640").unwrap(), quantity: Quantity::ONE }
        );
        assert!(matches!(index.parse("!buy thing", 5), ChatLine::Invalid { .. }));
    }

    #[test]
    fn edit_distances() {
        assert!(within_one_edit("hodie", "hoodie"));
        assert!(within_one_edit("hoodie", "hodie"));
        assert!(within_one_edit("hoodei", "hoodie"));
        assert!(within_one_edit("hoodie", "hoodle"));
        assert!(within_one_edit("same", "same"));
        assert!(!within_one_edit("hdie", "hoodie"));
        assert!(!within_one_edit("abcd", "badc"));
        assert_eq!(osa_distance("hoodiezz", "hoodie"), Some(2));
        assert_eq!(osa_distance("ca", "abc"), Some(3));
        assert_eq!(osa_distance("", "abc"), Some(3));
        assert_eq!(osa_distance("ab", "ba"), Some(1));
        assert_eq!(osa_distance(&"a".repeat(40), "a"), None);
    }

    // ---- properties -----------------------------------------------------------------------------

    const WORDS: &[&str] = &[
        "hoodie",
        "hoody",
        "HOODIE-M",
        "hoodie-l",
        "tee",
        "shirt",
        "t-shirt",
        "black",
        "white",
        "m",
        "l",
        "cap",
        "hat",
        "dad",
        "dad hat",
        "logo",
        "baseball",
        "TEE-BLACK-M",
        "tee-black-l",
        "TEE-WHITE-M",
        "1",
        "2",
        "3",
        "x",
        "×",
        "hodie",
        "blakc",
        "!buy",
        ",",
        "İ",
        "ß",
    ];

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(WORDS).prop_map(str::to_owned),
            2 => (0u64..2_000).prop_map(|n| n.to_string()),
            1 => "[0-9]{8,40}",
            1 => (0u32..60).prop_map(|n| format!("x{n}")),
            1 => (0u32..60).prop_map(|n| format!("{n}X")),
            1 => "\\PC{1,12}",
            1 => any::<String>(),
        ]
    }

    fn command_line() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["!buy", "!BUY", "  !Buy", "\t!bUy", "!buying", "buy", ""]),
            prop::collection::vec((token(), prop::sample::select(vec![" ", "  ", "\t", " \u{3000}"])), 0..20),
        )
            .prop_map(|(command, tokens)| {
                let mut line = command.to_owned();
                for (token, sep) in tokens {
                    line.push_str(sep);
                    line.push_str(&token);
                }
                line
            })
    }

    #[track_caller]
    fn assert_sound(index: &CatalogIndex, line: &str, max: u32) {
        if let ChatLine::Order { sku, quantity } = index.parse(line, max) {
            assert!(index.contains(&sku), "{line:?} ordered {sku}, not in the catalog");
            let effective = if max == 0 { DEFAULT_MAX_QUANTITY } else { max.min(Quantity::MAX) };
            assert!((1..=effective).contains(&quantity.get()), "{line:?}: quantity {quantity} > {effective}");
        }
    }

    fn generated_catalog() -> impl Strategy<Value = Vec<CatalogItem>> {
        let details = (
            prop::sample::select(vec!["hoodie", "tee", "cap", "mug", "poster", "", "tote bag"]),
            prop::sample::select(vec!["", "S", "M", "L", "XL", "2X", "one size"]),
            prop::sample::select(vec!["", "Logo hoodie", "Black tee", "Tour poster", "Big mug", "A", "3"]),
            prop::sample::subsequence(
                vec!["hoody", "shirt", "t-shirt", "dad hat", "hat", "2", "x2", "a b"],
                0..3,
            ),
            0u32..5,
        );
        prop::collection::btree_map("[A-Z0-9]{1,6}([-_][A-Z0-9]{1,4}){0,2}", details, 1..12).prop_map(|map| {
            map.into_iter()
                .map(|(sku, (product, size, name, aliases, number))| {
                    item(&sku, product, size, name, &aliases, number)
                })
                .collect()
        })
    }

    fn flip_case(line: &str, mask: &[bool]) -> String {
        line.chars()
            .zip(mask.iter().cycle())
            .map(|(c, upper)| if *upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// (a) + (b): arbitrary text never panics, and orders are always sound.
        #[test]
        fn arbitrary_text_never_panics(line in any::<String>(), max in 0u32..2_000) {
            let index = catalog();
            assert_sound(&index, &line, max);
            assert_sound(&index, &format!("!buy {line}"), max);
            assert_sound(&index, &format!("!buy hoodie {line}"), max);
        }

        /// (a) + (b): command lines built from catalog words, numbers and junk.
        #[test]
        fn command_lines_never_panic_and_orders_are_sound(line in command_line(), max in 0u32..50) {
            assert_sound(&catalog(), &line, max);
        }

        /// (a) + (b) on generated catalogs.
        #[test]
        fn generated_catalogs_are_sound(items in generated_catalog(), line in command_line(), max in 1u32..50) {
            let index = CatalogIndex::new(&items).unwrap();
            assert_sound(&index, &line, max);
        }

        /// Building an index from arbitrary items never panics.
        #[test]
        fn arbitrary_catalogs_never_panic(
            raw in prop::collection::vec(
                (any::<String>(), any::<String>(), prop::collection::vec(any::<String>(), 0..3), any::<String>(),
                    any::<String>(), any::<u32>()),
                0..6,
            ),
            line in command_line(),
        ) {
            let items: Vec<CatalogItem> = raw
                .into_iter()
                .map(|(sku, name, aliases, product, size, item_number)| CatalogItem {
                    sku, name, aliases, product, size, item_number, ..CatalogItem::default()
                })
                .collect();
            if let Ok(index) = CatalogIndex::new(&items) {
                assert_sound(&index, &line, 10);
            }
        }

        /// (c): every SKU code selects exactly that SKU, with any allowed quantity.
        #[test]
        fn every_sku_code_selects_itself(
            items in generated_catalog(),
            (max, n) in (1u32..=50).prop_flat_map(|max| (Just(max), 1..=max)),
        ) {
            let index = CatalogIndex::new(&items).unwrap();
            for item in &items {
                let sku = Sku::parse(&item.sku).unwrap();
                let expected = |q| ChatLine::Order { sku: sku.clone(), quantity: Quantity::new(q).unwrap() };
                prop_assert_eq!(index.parse(&format!("!buy {}", item.sku), max), expected(1));
                prop_assert_eq!(index.parse(&format!("!buy {} {n}", item.sku), max), expected(n));
                prop_assert_eq!(index.parse(&format!("!BUY {} {n}", item.sku.to_lowercase()), max), expected(n));
            }
        }

        /// (d): the case of the line does not matter.
        #[test]
        fn case_does_not_matter(line in command_line(), mask in prop::collection::vec(any::<bool>(), 1..16)) {
            let index = catalog();
            let flipped = flip_case(&line, &mask);
            prop_assert_eq!(index.parse(&line, 10), index.parse(&flipped, 10));
            prop_assert_eq!(index.parse(&line, 10), index.parse(&line.to_ascii_uppercase(), 10));
        }

        /// (d) on generated catalogs.
        #[test]
        fn case_does_not_matter_in_generated_catalogs(
            items in generated_catalog(),
            line in command_line(),
            mask in prop::collection::vec(any::<bool>(), 1..16),
        ) {
            let index = CatalogIndex::new(&items).unwrap();
            prop_assert_eq!(index.parse(&line, 10), index.parse(&flip_case(&line, &mask), 10));
        }

        /// The linear one-edit check agrees with the edit distance.
        #[test]
        fn one_edit_agrees_with_distance(a in "[a-c]{0,6}", b in "[a-c]{0,6}") {
            prop_assert_eq!(within_one_edit(&a, &b), osa_distance(&a, &b).is_some_and(|d| d <= 1));
        }
    }
}
