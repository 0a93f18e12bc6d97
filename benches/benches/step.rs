//! The batched reservation step against the real Redis (`DROPLINE_REDIS`, default 127.0.0.1:6379):
//! one `dropline_apply` call deciding 1…256 orders of one drop, as the matcher sends them. Every
//! order reserves (stock is plentiful, no limit), the most expensive path. Keys of the bench drop
//! are deleted at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dropline_matcher::chat::{BuyerId, Quantity, Sku};
use dropline_matcher::step::{self, DropKeys, Op, ReplyTo, Source};
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;

const SKUS: [&str; 4] = ["HOODIE-M", "HOODIE-L", "TEE-M", "CAP"];

fn connect(rt: &Runtime) -> MultiplexedConnection {
    let url = std::env::var("DROPLINE_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    rt.block_on(async {
        let client = redis::Client::open(url).expect("a valid DROPLINE_REDIS url");
        client.get_multiplexed_async_connection().await.expect("Redis answers (make stack-up)")
    })
}

fn open(keys: &DropKeys, rt: &Runtime, conn: &mut MultiplexedConnection) {
    let op = Op::Open {
        source: Source::new('t', 0, 0),
        trigger_id: "bench-open".into(),
        stock: SKUS.iter().map(|s| (Sku::parse(s).expect("valid sku"), 1_000_000_000)).collect(),
        limit_per_buyer: 0,
        hold_ms: 3_600_000,
        waitlist: false,
        waitlist_cap: 0,
        catalog: Vec::new(),
    };
    rt.block_on(async {
        step::load(conn).await.expect("the function library loads");
        step::apply(conn, 0, &[(keys, std::slice::from_ref(&op))]).await.expect("the drop opens");
    });
}

fn bench_step(c: &mut Criterion) {
    let rt = Runtime::new().expect("a tokio runtime");
    let mut conn = connect(&rt);
    let drop_id = format!("bench-step-{}", std::process::id());
    let keys = dropline_core::keys::Keyspace::new("bench").expect("a namespace").drop_keys(&drop_id);
    open(&keys, &rt, &mut conn);
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("step");
    for batch in [1usize, 4, 16, 64, 256] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("reserve", batch), &batch, |b, &batch| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|i| {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            Op::Order {
                                source: Source::new('o', 0, i64::try_from(n).unwrap_or(i64::MAX)),
                                order_id: format!("o{n}"),
                                buyer: BuyerId::parse(&format!("b{}", n % 5000)).expect("valid buyer"),
                                item: Some((
                                    Sku::parse(SKUS[i % SKUS.len()]).expect("valid sku"),
                                    Quantity::ONE,
                                )),
                                verdict: None,
                                reply_to: ReplyTo::default(),
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |ops| {
                    rt.block_on(step::apply(&mut conn, 1, &[(&keys, ops.as_slice())])).expect("the step runs")
                },
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.finish();
    rt.block_on(async {
        let _: i64 = redis::cmd("DEL").arg(keys.all().as_slice()).query_async(&mut conn).await.unwrap_or(0);
    });
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
