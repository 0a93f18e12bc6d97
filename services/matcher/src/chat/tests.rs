//! The parser's tests: every rule of the command, property tests that it never panics and that
//! what it accepts is sound.

use super::reason::is_invisible;
use super::*;
use proptest::prelude::*;

fn item(sku: &str, product: &str, size: &str, name: &str, aliases: &[&str], item_number: u32) -> CatalogItem {
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
    assert_eq!(err, DomainError::DuplicateSku { sku: Sku::parse("HOODIE-L").unwrap(), first: 1, second: 6 });
    assert_eq!(err.to_string(), "SKU HOODIE-L appears twice in the catalog (items #1 and #6)");

    let mut bad = items();
    bad[2].sku = "TEE BLACK".into();
    let err = CatalogIndex::new(&bad).unwrap_err();
    assert!(matches!(&err, DomainError::InvalidCatalogItem { index: 2, .. }), "{err:?}");
    assert!(err.to_string().starts_with("catalog item #2 sku: SKU \"TEE BLACK\" contains ' '"), "{err}");

    let mut empty = items();
    empty[0].sku = String::new();
    let err = CatalogIndex::new(&empty).unwrap_err();
    assert_eq!(err.to_string(), "catalog item #0 sku: SKU is empty");
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
    let items: Vec<CatalogItem> = (0..1_000u32)
        .map(|i| item(&format!("SKU-{i}"), "thing", &format!("S{i}"), "Thing", &[], i % 7))
        .collect();
    let index = CatalogIndex::new(&items).unwrap();
    assert_eq!(
        index.parse("!buy thing s999 3", 5),
        ChatLine::Order { sku: Sku::parse("SKU-999").unwrap(), quantity: Quantity::new(3).unwrap() }
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
