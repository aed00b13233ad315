#![allow(missing_docs)] // criterion_group! generates undocumented items.

//! The memory store against governor's keyed limiter, on the same keys, in
//! the same run: one hot key and a million distinct keys, one thread and two.
//! A last group floods a full store with keys it has never seen, the case
//! where every check inserts and evicts; governor has no bound on its keys,
//! so that group has no governor row.
//!
//! `cargo bench -p ratelimit-core --bench memory_store`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use ratelimit_core::{
    Algorithm, CheckRequest, Clock, Limit, LimitCheck, MAX_SLIDING_LOG_LIMIT, MemoryStore, Rate, SystemClock,
};

const MANY: usize = 1_000_000;

fn keys(n: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..n).map(|i| format!("rl:bench:token_bucket:ip:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)).collect(),
    )
}

fn store(max_keys: usize) -> MemoryStore {
    MemoryStore::builder().max_keys(max_keys).cleanup_interval(None).build()
}

fn ours(store: &MemoryStore, limit: &Limit, key: &str) -> bool {
    let checks = [LimitCheck { key, limit }];
    store.decide(CheckRequest::new(&checks, 1), true).expect("a valid check").all_allowed()
}

fn ours_at(store: &MemoryStore, limit: &Limit, key: &str, at: u64) -> bool {
    let checks = [LimitCheck { key, limit }];
    store.decide(CheckRequest::new(&checks, 1).at(at), true).expect("a valid check").all_allowed()
}

/// Runs `per_thread` iterations on each of `threads` threads; returns the
/// wall time scaled to `iters` operations.
fn parallel<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let per_thread = iters.div_ceil(threads as u64);
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                work(t, per_thread);
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    started.elapsed()
}

fn hot_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_key");
    group.throughput(Throughput::Elements(1));
    // Allow path: a limit no benchmark reaches. Deny path: one per hour.
    for (path, per_sec) in [("allow", u32::MAX), ("deny", 0)] {
        let rate =
            if per_sec == 0 { Rate::per_hour(1).unwrap() } else { Rate::per_second(u64::from(per_sec)).unwrap() };
        let quota = if per_sec == 0 {
            Quota::per_hour(NonZeroU32::MIN)
        } else {
            Quota::per_second(NonZeroU32::new(per_sec).unwrap())
        };
        for algorithm in Algorithm::ALL {
            let s = store(1024);
            let key = format!("rl:bench:{algorithm}:ip:10.0.0.1");
            let id = BenchmarkId::new(format!("ours_{algorithm}"), path);
            if algorithm == Algorithm::SlidingLog && per_sec != 0 {
                // No sliding log allows more than MAX_SLIDING_LOG_LIMIT per
                // period, far fewer than a benchmark checks a second: so the
                // checks run on explicit times, exactly that rate apart, and
                // each one drops the oldest of a full log and logs itself.
                let limit = Limit::new(Rate::per_second(MAX_SLIDING_LOG_LIMIT).unwrap(), algorithm);
                let step = 1_000_000_000 / MAX_SLIDING_LOG_LIMIT;
                let mut t = SystemClock.now();
                for _ in 0..MAX_SLIDING_LOG_LIMIT {
                    t += step;
                    assert!(ours_at(&s, &limit, &key, t));
                }
                group.bench_function(id, |b| {
                    b.iter(|| {
                        t += step;
                        black_box(ours_at(&s, &limit, black_box(&key), t))
                    })
                });
                continue;
            }
            let limit = Limit::new(rate, algorithm);
            ours(&s, &limit, &key);
            group.bench_function(id, |b| b.iter(|| black_box(ours(&s, &limit, black_box(&key)))));
        }
        let governor = RateLimiter::keyed(quota);
        let key = "rl:bench:token_bucket:ip:10.0.0.1".to_owned();
        let _ = governor.check_key(&key);
        group.bench_function(BenchmarkId::new("governor_keyed", path), |b| {
            b.iter(|| black_box(governor.check_key(black_box(&key)).is_ok()))
        });
    }
    group.finish();
}

fn many_keys(c: &mut Criterion) {
    let keys = keys(MANY);
    let mut group = c.benchmark_group("million_keys");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    let rate = Rate::per_second(u64::from(u32::MAX)).unwrap();
    for threads in [1usize, 2] {
        let s = store(2 * MANY);
        let limit = Limit::new(rate, Algorithm::TokenBucket);
        for k in keys.iter() {
            ours(&s, &limit, k);
        }
        group.bench_function(BenchmarkId::new("ours_token_bucket", threads), |b| {
            b.iter_custom(|iters| {
                let (s, keys) = (s.clone(), Arc::clone(&keys));
                parallel(threads, iters, move |t, n| {
                    let mut i = t * 7919;
                    for _ in 0..n {
                        i = (i + 104_729) % MANY;
                        black_box(ours(&s, &limit, &keys[i]));
                    }
                })
            })
        });
        let governor = Arc::new(RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX)));
        for k in keys.iter() {
            let _ = governor.check_key(k);
        }
        group.bench_function(BenchmarkId::new("governor_keyed", threads), |b| {
            b.iter_custom(|iters| {
                let (g, keys) = (Arc::clone(&governor), Arc::clone(&keys));
                parallel(threads, iters, move |t, n| {
                    let mut i = t * 7919;
                    for _ in 0..n {
                        i = (i + 104_729) % MANY;
                        black_box(g.check_key(&keys[i]).is_ok());
                    }
                })
            })
        });
    }
    group.finish();
}

fn hot_key_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_key_2_threads");
    group.throughput(Throughput::Elements(1));
    let key = "rl:bench:token_bucket:ip:10.0.0.1";
    let s = store(1024);
    let limit = Limit::new(Rate::per_second(u64::from(u32::MAX)).unwrap(), Algorithm::TokenBucket);
    group.bench_function("ours_token_bucket", |b| {
        b.iter_custom(|iters| {
            let s = s.clone();
            parallel(2, iters, move |_, n| {
                for _ in 0..n {
                    black_box(ours(&s, &limit, key));
                }
            })
        })
    });
    let governor = Arc::new(RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX)));
    group.bench_function("governor_keyed", |b| {
        b.iter_custom(|iters| {
            let g = Arc::clone(&governor);
            parallel(2, iters, move |_, n| {
                let key = key.to_owned();
                for _ in 0..n {
                    black_box(g.check_key(&key).is_ok());
                }
            })
        })
    });
    group.finish();
}

/// Fresh keys into a store held at its default bound of 10,000 keys, each
/// admitted once under a limit of 5 per hour: every check inserts a key and,
/// once the store is full, pays its share of an eviction.
fn fresh_keys(c: &mut Criterion) {
    let keys = keys(MANY);
    let mut group = c.benchmark_group("fresh_keys");
    group.throughput(Throughput::Elements(1));
    let s = store(10_000);
    let limit = Limit::new(Rate::per_hour(5).unwrap(), Algorithm::TokenBucket);
    // A million keys cycle through a store that holds ten thousand, so a
    // key comes round again long after it was evicted.
    let mut i = 0;
    group.bench_function("ours_token_bucket", |b| {
        b.iter(|| {
            i = (i + 1) % MANY;
            black_box(ours(&s, &limit, &keys[i]))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = hot_key, hot_key_two_threads, many_keys, fresh_keys
}
criterion_main!(benches);
