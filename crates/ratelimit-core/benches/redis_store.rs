#![allow(missing_docs)] // criterion_group! generates undocumented items.

//! Decisions per second through `RedisStore` against raw `INCR` over the
//! same connections, in the same run, on a redis-server this bench starts:
//! 1 and 64 concurrent tasks, one hot key and 100k keys.
//!
//! `cargo bench -p ratelimit-core --features redis --bench redis_store`

#[path = "../tests/support/redis_servers.rs"]
mod redis_servers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ratelimit_core::redis::{RedisSettings, RedisStore};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Store, store_key};

const KEYS: usize = 100_000;

fn keys(algorithm: Option<Algorithm>) -> Arc<Vec<String>> {
    Arc::new(
        (0..KEYS)
            .map(|i| match algorithm {
                Some(a) => store_key::compose("b:", "bench", a, &format!("c{i}")),
                None => format!("b:raw:{{c{i}}}"),
            })
            .collect(),
    )
}

/// Runs `iters` operations spread over `tasks` tasks; returns the wall time.
async fn spread<F, Fut>(tasks: usize, iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(tasks as u64);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    op(t as u64 * per_task + i).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let server = redis_servers::Server::start(&[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let store = runtime.block_on(RedisStore::connect(RedisSettings::from_url(server.url()))).unwrap();
    let raw_keys = keys(None);
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for tasks in [1usize, 64] {
        for spread_keys in [false, true] {
            let shape = format!("{tasks}_tasks/{}", if spread_keys { "100k_keys" } else { "hot_key" });
            let s = store.clone();
            let k = raw_keys.clone();
            group.bench_function(BenchmarkId::new("raw_incr", &shape), |b| {
                b.to_async(&runtime).iter_custom(|iters| {
                    let (s, k) = (s.clone(), k.clone());
                    spread(tasks, iters, move |i| {
                        let (s, k) = (s.clone(), k.clone());
                        async move {
                            let key = if spread_keys { &k[i as usize % KEYS] } else { &k[0] };
                            let _: i64 = s.query(::redis::cmd("INCR").arg(key)).await.unwrap();
                        }
                    })
                })
            });
            for algorithm in Algorithm::ALL {
                // A limit the benchmark never reaches: every decision admits and writes.
                let limit = Arc::new(Limit::new(Rate::per_second(4_000_000_000).unwrap(), algorithm));
                let limit = if algorithm == Algorithm::SlidingLog {
                    // The exact log's bound: a hot key checked more than
                    // 10,000 times a second sees some denials.
                    Arc::new(Limit::new(Rate::per_second(ratelimit_core::MAX_SLIDING_LOG_LIMIT).unwrap(), algorithm))
                } else {
                    limit
                };
                let k = keys(Some(algorithm));
                let s = store.clone();
                group.bench_function(BenchmarkId::new(algorithm.as_str(), &shape), |b| {
                    b.to_async(&runtime).iter_custom(|iters| {
                        let (s, k, limit) = (s.clone(), k.clone(), limit.clone());
                        spread(tasks, iters, move |i| {
                            let (s, k, limit) = (s.clone(), k.clone(), limit.clone());
                            async move {
                                let key = if spread_keys { &k[i as usize % KEYS] } else { &k[0] };
                                let checks = [LimitCheck { key, limit: &limit }];
                                s.check(CheckRequest::new(&checks, 1)).await.unwrap();
                            }
                        })
                    })
                });
            }
        }
    }
    group.finish();
    println!("{}", server.cli(&["INFO", "commandstats"]));
}

criterion_group!(benches, bench);
criterion_main!(benches);
