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

/// Longest catalog text — a name, product, size or one alias — in bytes.
pub const MAX_TEXT_BYTES: usize = 100;
/// Most aliases of one catalog item.
pub const MAX_ALIASES: usize = 20;
/// Most items in one drop's catalog (the console also keeps the encoded catalog well under the
/// broker's message limit).
pub const MAX_ITEMS: usize = 1_000;

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
    /// A catalog with more than [`MAX_ITEMS`] items.
    #[error("the catalog has {count} items; a drop sells at most {MAX_ITEMS}")]
    TooManyItems {
        /// How many it has.
        count: usize,
    },
    /// One catalog item is invalid.
    #[error("catalog item #{index} {field}: {reason}")]
    InvalidCatalogItem {
        /// Position of the item in the catalog (0-based).
        index: usize,
        /// The field of the item (`sku`, `name`, `aliases`, `product`, `size`, `price_cents`).
        field: &'static str,
        /// What is wrong with it.
        reason: Box<DomainError>,
    },
    /// A catalog text that is empty where it must not be, too long, or has control characters.
    #[error("{why}")]
    BadText {
        /// What is wrong, in words.
        why: String,
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

/// A catalog text ([`MAX_TEXT_BYTES`] at most, no control characters; `required`: not blank).
fn check_text(what: &str, text: &str, required: bool) -> Result<(), DomainError> {
    let why = if required && text.trim().is_empty() {
        format!("{what} is empty")
    } else if text.len() > MAX_TEXT_BYTES {
        format!("{what} is {} bytes long; at most {MAX_TEXT_BYTES} are allowed", text.len())
    } else if text.chars().any(char::is_control) {
        format!("{what} contains a control character")
    } else {
        return Ok(());
    };
    Err(DomainError::BadText { why })
}

/// Checks one catalog item's fields and returns its canonical SKU; the error names the field.
pub fn check_catalog_item(index: usize, item: &dropline_proto::v1::CatalogItem) -> Result<Sku, DomainError> {
    let bad = |field: &'static str| {
        move |reason: DomainError| DomainError::InvalidCatalogItem { index, field, reason: Box::new(reason) }
    };
    let sku = Sku::parse(&item.sku).map_err(bad("sku"))?;
    check_text("the name", &item.name, false).map_err(bad("name"))?;
    check_text("the product", &item.product, false).map_err(bad("product"))?;
    check_text("the size", &item.size, false).map_err(bad("size"))?;
    if item.aliases.len() > MAX_ALIASES {
        let why = format!("{} aliases; at most {MAX_ALIASES} are allowed", item.aliases.len());
        return Err(bad("aliases")(DomainError::BadText { why }));
    }
    for (n, alias) in item.aliases.iter().enumerate() {
        check_text(&format!("alias #{n}"), alias, true).map_err(bad("aliases"))?;
    }
    if item.price_cents < 0 {
        let why = format!("the price is {} cents; it must not be negative", item.price_cents);
        return Err(bad("price_cents")(DomainError::BadText { why }));
    }
    Ok(sku)
}

/// Checks a drop's catalog — every item ([`check_catalog_item`]), at least one and at most
/// [`MAX_ITEMS`], no SKU twice (compared in canonical form) — and returns the canonical SKUs in
/// catalog order. The console checks a drop with it before it opens, the matcher when it does.
pub fn check_catalog(items: &[dropline_proto::v1::CatalogItem]) -> Result<Vec<Sku>, DomainError> {
    if items.is_empty() {
        return Err(DomainError::EmptyCatalog);
    }
    if items.len() > MAX_ITEMS {
        return Err(DomainError::TooManyItems { count: items.len() });
    }
    let mut skus: Vec<Sku> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let sku = check_catalog_item(index, item)?;
        if let Some(first) = skus.iter().position(|s| *s == sku) {
            return Err(DomainError::DuplicateSku { sku, first, second: index });
        }
        skus.push(sku);
    }
    Ok(skus)
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

/// Longest [`check_name`] name.
pub const MAX_NAME_BYTES: usize = 128;

/// A name that also becomes a file name and a URL path segment — a drop's id at the console, a
/// clip's id: 1 to [`MAX_NAME_BYTES`] letters, digits, `.`, `_` or `-`, not dots only (`.`/`..`
/// would leave the directory). It passes [`check_id`] too. The error names the field.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_BYTES
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !value.bytes().all(|b| b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: {value:?} must be 1–{MAX_NAME_BYTES} letters, digits, '.', '_' or '-' (not dots only)"
        ))
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

    #[test]
    fn a_catalog_is_checked_field_by_field_and_names_the_field() {
        use dropline_proto::v1::CatalogItem;
        let item = |sku: &str| CatalogItem {
            sku: sku.into(),
            name: "hoodie".into(),
            stock: 3,
            ..Default::default()
        };
        let skus = check_catalog(&[item("hoodie-l"), item("TEE")]).expect("valid");
        assert_eq!(skus[0].as_str(), "HOODIE-L", "canonical form");
        let field = |items: &[CatalogItem]| match check_catalog(items) {
            Err(DomainError::InvalidCatalogItem { index, field, reason }) => {
                format!("{index}.{field}: {reason}")
            }
            other => format!("{other:?}"),
        };
        assert_eq!(
            field(&[item("TEE"), item("a.b")]),
            "1.sku: SKU \"a.b\" contains '.'; only letters A-Z, digits, '-' and '_' are allowed"
        );
        assert_eq!(
            field(&[CatalogItem { name: "n\n".into(), ..item("TEE") }]),
            "0.name: the name contains a control character"
        );
        let padded = CatalogItem { aliases: vec!["x".repeat(1 << 20)], ..item("TEE") };
        assert_eq!(field(&[padded]), "0.aliases: alias #0 is 1048576 bytes long; at most 100 are allowed");
        let many = CatalogItem { aliases: vec!["a".into(); 21], ..item("TEE") };
        assert_eq!(field(&[many]), "0.aliases: 21 aliases; at most 20 are allowed");
        assert_eq!(
            field(&[CatalogItem { price_cents: -1, ..item("TEE") }]),
            "0.price_cents: the price is -1 cents; it must not be negative"
        );
        assert_eq!(
            field(&[CatalogItem { size: "L\u{7}".into(), ..item("TEE") }]),
            "0.size: the size contains a control character"
        );
        assert!(matches!(
            check_catalog(&[item("tee"), item("TEE")]),
            Err(DomainError::DuplicateSku { first: 0, second: 1, .. })
        ));
        assert_eq!(check_catalog(&[]), Err(DomainError::EmptyCatalog));
        assert_eq!(
            check_catalog(&vec![item("A"); 1_001]).map(|_| ()),
            Err(DomainError::TooManyItems { count: 1_001 })
        );
    }
}
