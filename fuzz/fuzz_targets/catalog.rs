//! A creator's catalog from outside: a Shopify products CSV as the console imports it, and a new
//! drop's JSON as the API reads it, checked with the check the matcher applies when it opens.
#![no_main]

use dropline_console::drops::CreateDrop;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = dropline_console::import::catalog_csv(data) {
        for item in &imported.items {
            assert!(!item.sku.is_empty(), "an imported item has a SKU");
        }
    }
    if let Ok(drop) = serde_json::from_slice::<CreateDrop>(data) {
        let _ = drop.validate();
    }
});
