//! Chat parsing: what one `!buy` line (or ordinary chat) costs the matcher before Redis.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dropline_matcher::chat::CatalogIndex;
use dropline_proto::v1::CatalogItem;
use std::hint::black_box;

fn catalog() -> Vec<CatalogItem> {
    let mut items = Vec::new();
    for (n, (product, name, aliases)) in [
        ("hoodie", "Logo hoodie", vec!["hoody"]),
        ("tee", "Black tee", vec!["shirt", "t-shirt"]),
        ("cap", "Dad cap", vec!["hat", "dad hat"]),
    ]
    .into_iter()
    .enumerate()
    {
        for size in ["S", "M", "L", "XL"] {
            items.push(CatalogItem {
                sku: format!("{}-{size}", product.to_uppercase()),
                name: name.into(),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                stock: 100,
                price_cents: 2500,
                product: product.into(),
                size: size.into(),
                item_number: u32::try_from(n + 1).unwrap_or(0),
            });
        }
    }
    items
}

fn bench_chat(c: &mut Criterion) {
    let index = CatalogIndex::new(&catalog()).expect("catalog");
    let mut group = c.benchmark_group("chat");
    group.throughput(Throughput::Elements(1));
    for (name, line) in [
        ("order", "!buy hoodie L"),
        ("order_sku_qty", "!buy HOODIE-L 2"),
        ("order_words", "!BUY tee black m"),
        ("typo", "!buy hodie L"),
        ("unknown", "!buy jacket XL"),
        ("chat", "this drop is fire, see you all next week"),
    ] {
        group.bench_function(name, |b| b.iter(|| index.parse(black_box(line), 10)));
    }
    group.finish();
}

criterion_group!(benches, bench_chat);
criterion_main!(benches);
