//! The domain's values, parsed once at the boundary and shared by every service that accepts them:
//! SKUs, buyer ids, quantities, the ids that become parts of Redis keys, and the chat command that
//! makes a line an order attempt. One validator per kind of value — the console, ingest and the
//! matcher all refuse the same things with the same words.

use std::fmt;
use std::sync::Arc;

/// The chat command, matched case-insensitively at the start of a line.
pub const COMMAND: &str = "!buy";

/// Longest id (order, drop, trigger) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 200;

/// What is wrong with a raw value at the domain boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The SKU string is empty or only whitespace.
    #[error("SKU is empty")]
    EmptySku,
    /// The SKU contains a character other than ASCII letters, digits, `-` and `_`.
    #[error("SKU {sku:?} contains {ch:?}; only letters A-Z, digits, '-' and '_' are allowed")]
    SkuInvalidChar {
        /// The SKU as given (possibly shortened).
        sku: String,
        /// The first offending character.
        ch: char,
    },
    /// The SKU is longer than [`Sku::MAX_LEN`].
    #[error("SKU {sku:?} is {len} characters long; at most {max} are allowed", max = Sku::MAX_LEN)]
    SkuTooLong {
        /// The SKU as given (possibly shortened).
        sku: String,
        /// Its length.
        len: usize,
    },
    /// The SKU is made only of `-` and `_`.
    #[error("SKU {sku:?} has no letter or digit")]
    SkuWithoutAlphanumeric {
        /// The SKU as given.
        sku: String,
    },
    /// The buyer id is empty.
    #[error("buyer id is empty")]
    EmptyBuyerId,
    /// The buyer id is longer than [`BuyerId::MAX_BYTES`].
    #[error("buyer id is {len} bytes long; at most {max} are allowed", max = BuyerId::MAX_BYTES)]
    BuyerIdTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The buyer id contains a control character.
    #[error("buyer id contains the control character {ch:?}")]
    BuyerIdControlChar {
        /// The first control character.
        ch: char,
    },
    /// A quantity of zero.
    #[error("quantity must be between 1 and {max}, not 0")]
    ZeroQuantity {
        /// The largest quantity allowed.
        max: u32,
    },
    /// A quantity above the allowed maximum.
    #[error("quantity {value} is more than the maximum of {max} per order")]
    QuantityTooLarge {
        /// The quantity asked for.
        value: u32,
        /// The largest quantity allowed.
        max: u32,
    },
    /// A drop's catalog without items.
    #[error("the catalog is empty: a drop needs at least one item")]
    EmptyCatalog,
    /// One catalog item is invalid.
    #[error("catalog item #{index}: {reason}")]
    InvalidCatalogItem {
        /// Position of the item in the catalog (0-based).
        index: usize,
        /// What is wrong with it.
        reason: Box<DomainError>,
    },
    /// Two catalog items have the same SKU (compared after canonicalisation to uppercase).
    #[error("SKU {sku} appears twice in the catalog (items #{first} and #{second})")]
    DuplicateSku {
        /// The repeated SKU.
        sku: Sku,
        /// Position of its first occurrence (0-based).
        first: usize,
        /// Position of the repeat (0-based).
        second: usize,
    },
}

/// A stock keeping unit code in canonical form: uppercase ASCII letters, digits, `-` and `_`, at most
/// [`Sku::MAX_LEN`] characters, with at least one letter or digit. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(Arc<str>);

impl Sku {
    /// Longest SKU code accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a raw SKU (surrounding whitespace ignored) into its canonical uppercase form.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let code = raw.trim();
        if code.is_empty() {
            return Err(DomainError::EmptySku);
        }
        if let Some(ch) = code.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(DomainError::SkuInvalidChar { sku: excerpt(code), ch });
        }
        if code.len() > Self::MAX_LEN {
            return Err(DomainError::SkuTooLong { sku: excerpt(code), len: code.len() });
        }
        if !code.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return Err(DomainError::SkuWithoutAlphanumeric { sku: code.to_owned() });
        }
        Ok(Self(Arc::from(code.to_ascii_uppercase())))
    }

    /// The canonical code, e.g. `HOODIE-L`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Sku {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A viewer's platform user id: non-empty, at most [`BuyerId::MAX_BYTES`] bytes, no control
/// characters. Kept exactly as given (ids are compared byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuyerId(String);

impl BuyerId {
    /// Longest buyer id accepted, in bytes.
    pub const MAX_BYTES: usize = 128;

    /// Validates a raw buyer id.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::EmptyBuyerId);
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(DomainError::BuyerIdTooLong { len: raw.len() });
        }
        if let Some(ch) = raw.chars().find(|c| c.is_control()) {
            return Err(DomainError::BuyerIdControlChar { ch });
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BuyerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BuyerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Units in one order: between 1 and [`Quantity::MAX`] (and the drop's per-order maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    /// Largest quantity any single order may have, whatever the drop configures.
    pub const MAX: u32 = 1_000;
    /// One unit.
    pub const ONE: Quantity = Quantity(1);

    /// A quantity between 1 and [`Quantity::MAX`].
    pub fn new(value: u32) -> Result<Self, DomainError> {
        Self::at_most(value, Self::MAX)
    }

    /// A quantity between 1 and `max` (itself capped at [`Quantity::MAX`]).
    pub fn at_most(value: u32, max: u32) -> Result<Self, DomainError> {
        let max = max.min(Self::MAX);
        if value == 0 {
            Err(DomainError::ZeroQuantity { max })
        } else if value > max {
            Err(DomainError::QuantityTooLarge { value, max })
        } else {
            Ok(Self(value))
        }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An id that becomes part of Redis keys and fields (`order_id`, `trigger_id`, ...): non-empty, at
/// most [`MAX_ID_BYTES`], no control characters or braces (a brace would change a key's hash tag).
/// The error names the field.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err(format!("{field} is empty"))
    } else if value.len() > MAX_ID_BYTES {
        Err(format!("{field} is longer than {MAX_ID_BYTES} bytes"))
    } else if value.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        Err(format!("{field} contains a control character or a brace"))
    } else {
        Ok(())
    }
}

/// A drop id: an id ([`check_id`]) that is not a shard's (`#` separates a split drop from its
/// shard number, `crate::shards`).
pub fn check_drop_id(value: &str) -> Result<(), String> {
    check_id("drop_id", value)?;
    if value.contains('#') {
        return Err("drop_id contains '#' (reserved for the shards of a split drop)".into());
    }
    Ok(())
}

/// True when the line is an order attempt (starts with the `!buy` command), whatever follows.
pub fn is_command(line: &str) -> bool {
    strip_command(line).is_some()
}

/// The text after `!buy` when the line is the command, `None` for ordinary chat.
pub fn strip_command(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let head = line.get(..COMMAND.len())?;
    if !head.eq_ignore_ascii_case(COMMAND) {
        return None;
    }
    let rest = line.get(COMMAND.len()..)?;
    match rest.chars().next() {
        None => Some(rest),
        Some(c) if c.is_whitespace() => Some(rest),
        Some(_) => None,
    }
}

/// A raw value quoted back in an error: at most a SKU's length and a little more, marked when cut.
pub fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(Sku::MAX_LEN + 8).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_field() {
        assert!(check_id("order_id", "o-1").is_ok());
        assert_eq!(check_id("order_id", ""), Err("order_id is empty".into()));
        assert!(check_id("trigger_id", &"x".repeat(201)).is_err_and(|e| e.contains("trigger_id is longer")));
        assert!(check_id("order_id", "a{b}").is_err_and(|e| e.contains("brace")));
        assert!(check_drop_id("d#1").is_err_and(|e| e.contains("'#'")));
        assert!(check_drop_id("d-1").is_ok());
    }

    #[test]
    fn the_command_starts_the_line() {
        assert!(is_command("  !BUY hoodie"));
        assert!(is_command("!buy"));
        assert!(!is_command("!buying"));
        assert!(!is_command("hey !buy"));
        assert_eq!(strip_command("!buy cap"), Some(" cap"));
    }
}
