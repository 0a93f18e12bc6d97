//! Chat lines as viewers type them, parsed against a catalog as the matcher parses every order.
#![no_main]

use dropline_matcher::chat::{CatalogIndex, ChatLine};
use dropline_proto::v1::CatalogItem;
use libfuzzer_sys::fuzz_target;

fn catalog() -> CatalogIndex {
    let item = |sku: &str, name: &str, aliases: &[&str], product: &str, size: &str, n: u32| CatalogItem {
        sku: sku.into(),
        name: name.into(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        stock: 10,
        price_cents: 2500,
        product: product.into(),
        size: size.into(),
        item_number: n,
    };
    CatalogIndex::new(&[
        item("HOODIE-M", "Logo hoodie", &["hoodie", "hoody"], "hoodie", "M", 1),
        item("HOODIE-L", "Logo hoodie", &["hoodie", "hoody"], "hoodie", "L", 1),
        item("TEE-XL", "Tour tee", &["tee", "t-shirt", "shirt"], "tee", "XL", 2),
        item("CAP", "Dad cap", &["cap", "hat"], "", "", 3),
        item("ZINE_2", "Zine #2", &["zine"], "", "", 4),
    ])
    .expect("the fuzz catalog is valid")
}

fuzz_target!(|data: &[u8]| {
    let index = catalog();
    let line = String::from_utf8_lossy(data);
    if let ChatLine::Order { sku, quantity } = index.parse(&line, 5) {
        assert!(index.contains(&sku), "an order names a SKU of the catalog");
        assert!((1..=5).contains(&quantity.get()), "a quantity within the per-order maximum");
    }
    let _ = dropline_core::domain::strip_command(&line);
    let _ = dropline_core::domain::excerpt(&line);
});
