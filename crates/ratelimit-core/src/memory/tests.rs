use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::conformance::{ConformanceOptions, run_all};
use crate::{FakeClock, Rate, store_key};

fn limit(rate: &str, algorithm: Algorithm) -> Limit {
    Limit::new(rate.parse::<Rate>().unwrap(), algorithm)
}

fn check(store: &MemoryStore<FakeClock>, key: &str, limit: &Limit, cost: u64) -> Decision {
    let checks = [LimitCheck { key, limit }];
    store.decide(CheckRequest::new(&checks, cost), true).unwrap()[0]
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let store = MemoryStore::builder().clock(FakeClock::at_secs(1_000)).build();
    run_all(&store, &ConformanceOptions::default()).await;
    // Longer schedules from another start, to reach more states.
    let options = ConformanceOptions { start: 1_800_000_007 * 1_000_000_000, steps: 600, ..Default::default() };
    run_all(&store, &options).await;
}

#[test]
fn never_holds_more_than_max_keys() {
    let clock = FakeClock::at_secs(10_000);
    let store = MemoryStore::builder().max_keys(1_000).cleanup_interval(None).clock(clock.clone()).build();
    let l = limit("5/h", Algorithm::TokenBucket);
    for i in 0..20_000 {
        let key = store_key::compose("m:", "p", Algorithm::TokenBucket, &format!("c{i}"));
        assert!(check(&store, &key, &l, 1).allowed);
        assert!(store.len() <= 1_000, "{} keys after {i} inserts", store.len());
    }
    assert!(store.len() > 800, "eviction should not empty the store: {}", store.len());
}

#[test]
fn expired_keys_go_first_then_the_least_recently_used() {
    let clock = FakeClock::at_secs(10_000);
    // Small enough for one shard, so the order of eviction is observable.
    let store = MemoryStore::builder().max_keys(64).cleanup_interval(None).clock(clock.clone()).build();
    let short = limit("1/s", Algorithm::FixedWindow);
    let long = limit("1/h", Algorithm::FixedWindow);
    let short_keys: Vec<String> = (0..32).map(|i| format!("short{i}")).collect();
    let long_keys: Vec<String> = (0..32).map(|i| format!("long{i}")).collect();
    for k in &long_keys {
        check(&store, k, &long, 1);
    }
    for k in &short_keys {
        check(&store, k, &short, 1);
    }
    assert_eq!(store.len(), 64);
    clock.advance(Duration::from_secs(2));
    // Keep one long-lived key recently used.
    assert!(!check(&store, &long_keys[0], &long, 1).allowed);
    // New keys displace the expired short keys, not the live long ones.
    for i in 0..32 {
        check(&store, &format!("new{i}"), &long, 1);
    }
    for k in &long_keys {
        assert!(!check(&store, k, &long, 1).allowed, "{k} lost its state");
    }
    // With nothing expired, the least recently used go: the new keys were
    // touched before the long keys were checked again just now.
    clock.advance(Duration::from_secs(5));
    for k in &long_keys {
        check(&store, k, &long, 1);
    }
    for i in 0..8 {
        check(&store, &format!("newer{i}"), &long, 1);
    }
    for k in &long_keys {
        assert!(!check(&store, k, &long, 1).allowed, "{k} was recently used but evicted");
    }
}

#[tokio::test(start_paused = true)]
async fn background_sweep_removes_expired_keys_and_stops_with_the_store() {
    let clock = FakeClock::at_secs(10_000);
    let store = MemoryStore::builder().cleanup_interval(Some(Duration::from_secs(60))).clock(clock.clone()).build();
    let l = limit("1/s", Algorithm::TokenBucket);
    for i in 0..100 {
        check(&store, &format!("k{i}"), &l, 1);
    }
    assert_eq!(store.len(), 100);
    clock.advance(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(store.len(), 0, "the sweep ran");
    let sweeper = store.inner.sweeper.task().expect("a sweeper inside a runtime");
    assert!(!sweeper.is_finished());
    drop(store);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(sweeper.is_finished(), "the sweeper ends with the store");
}

#[test]
fn one_key_two_algorithms_never_mix_state() {
    let store = MemoryStore::builder().clock(FakeClock::at_secs(10_000)).cleanup_interval(None).build();
    let fw = limit("1/h", Algorithm::FixedWindow);
    let tb = limit("1/h", Algorithm::TokenBucket);
    assert!(check(&store, "same", &fw, 1).allowed);
    assert!(check(&store, "same", &tb, 1).allowed, "a different algorithm starts fresh");
    assert!(!check(&store, "same", &tb, 1).allowed);
}

#[test]
fn threads_hammering_one_key_admit_exactly_the_limit() {
    for algorithm in Algorithm::ALL {
        let store = MemoryStore::builder().clock(FakeClock::at_secs(10_000)).cleanup_interval(None).build();
        let l = Arc::new(limit("100/h", algorithm));
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, l, admitted) = (store.clone(), l.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if check(&store, "hot", &l, 1).allowed {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 100, "{algorithm}");
    }
}

#[test]
fn decisions_use_the_injected_clock() {
    let clock = FakeClock::at_secs(60 * 1_000);
    let store = MemoryStore::builder().clock(clock.clone()).cleanup_interval(None).build();
    let l = limit("1/m", Algorithm::FixedWindow);
    assert!(check(&store, "c", &l, 1).allowed);
    assert!(!check(&store, "c", &l, 1).allowed);
    clock.advance(Duration::from_secs(60));
    assert!(check(&store, "c", &l, 1).allowed);
}

#[test]
fn max_keys_is_an_exact_bound() {
    // The shards split max_keys exactly, whether or not they divide it; and
    // the bound holds when every key is over its limit (1/h) just as when
    // none is (5/h).
    for max_keys in [1_000, 1_001, 5_000] {
        for rate in ["5/h", "1/h"] {
            let clock = FakeClock::at_secs(10_000);
            let store = MemoryStore::builder().max_keys(max_keys).cleanup_interval(None).clock(clock.clone()).build();
            let shards = store.inner.shards.len();
            let bound: usize = (0..shards).map(|i| store.inner.capacity_of(i)).sum();
            assert_eq!(bound, max_keys, "{shards} shards");
            let l = limit(rate, Algorithm::FixedWindow);
            let mut most = 0;
            for i in 0..10 * max_keys {
                check(&store, &format!("c{i}"), &l, 1);
                most = most.max(store.len());
                if i % 97 == 0 {
                    clock.advance(Duration::from_secs(1));
                }
            }
            assert!(most <= bound, "{max_keys}, {rate}: {most} keys held, bound {bound}");
            assert!(most > max_keys * 7 / 8, "{max_keys}, {rate}: the store never filled up ({most} keys)");
        }
    }
}

#[test]
fn threads_checking_two_limits_admit_exactly_the_tighter_one_and_charge_both() {
    for algorithm in Algorithm::ALL {
        let store = MemoryStore::builder().clock(FakeClock::at_secs(10_000)).cleanup_interval(None).build();
        let tight = limit("100/h", algorithm);
        let loose = limit("1000/h", algorithm);
        let both = [LimitCheck { key: "hot", limit: &tight }, LimitCheck { key: "shared", limit: &loose }];
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if store.decide(CheckRequest::new(&both, 1), true).unwrap().all_allowed() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 100, "{algorithm}");
        let shared = store.decide(CheckRequest::new(&both[1..], 0), false).unwrap();
        assert_eq!(shared[0].remaining, 900, "{algorithm}: the loose limit was charged for admitted requests only");
    }
}

/// Whether the store holds state for `key`, looked up without touching it.
fn held(store: &MemoryStore<FakeClock>, key: &str) -> bool {
    let hash = store.inner.hasher.hash_one(key);
    lock(&store.inner.shards[store.inner.shard_of(hash)]).map.contains_key(&hash)
}

/// One hour boundary plus a minute, so hourly windows have long to run.
const HOUR_START: u64 = 1_700_002_800 + 60;

#[test]
fn eviction_drops_stale_keys_then_the_least_recently_used_then_blocked_ones() {
    let clock = FakeClock::at_secs(HOUR_START);
    // One shard of 64 keys, so the order of eviction is observable; a full
    // shard evicts 8 keys at a time.
    let store = MemoryStore::builder().max_keys(64).cleanup_interval(None).clock(clock.clone()).build();
    assert_eq!(store.inner.shards.len(), 1);
    let hourly = limit("5/h", Algorithm::TokenBucket);
    let one_per_hour = limit("1/h", Algorithm::FixedWindow);
    let keys = |group: &str, n: usize| (0..n).map(|i| format!("{group}{i}")).collect::<Vec<_>>();
    // Oldest: clients over their limit.
    let blocked = keys("blocked", 16);
    for k in &blocked {
        assert!(check(&store, k, &one_per_hour, 1).allowed);
        assert!(!check(&store, k, &one_per_hour, 1).allowed);
    }
    clock.advance(Duration::from_secs(1));
    // Then clients seen once, twice as many as one batch.
    let idle = keys("idle", 16);
    for k in &idle {
        check(&store, k, &hourly, 1);
    }
    clock.advance(Duration::from_secs(1));
    let recent = keys("recent", 16);
    for k in &recent {
        check(&store, k, &hourly, 1);
    }
    clock.advance(Duration::from_secs(1));
    // Newest: short limits under every algorithm, which will soon carry
    // no information: windows that pass, a bucket that refills, a log
    // whose entries leave it.
    let stale: Vec<(String, Limit)> =
        Algorithm::ALL.iter().flat_map(|&a| (0..4).map(move |i| (format!("stale-{a}-{i}"), limit("2/s", a)))).collect();
    for (k, l) in &stale {
        check(&store, k, l, 1);
    }
    assert_eq!(store.len(), 64);
    clock.advance(Duration::from_secs(3));

    // The stale keys go first, though they were used last.
    check(&store, "new0", &hourly, 1);
    assert!(stale.iter().all(|(k, _)| !held(&store, k)), "every stale key went");
    assert_eq!(store.len(), 49);
    for i in 1..16 {
        check(&store, &format!("new{i}"), &hourly, 1);
    }
    assert_eq!(store.len(), 64);

    // Then the least recently used, but never a blocked client while
    // another key is left: two batches take the idle keys.
    for i in 0..16 {
        check(&store, &format!("newer{i}"), &hourly, 1);
    }
    assert!(store.len() <= 64);
    assert!(idle.iter().all(|k| !held(&store, k)), "the idle keys went");
    assert!(recent.iter().all(|k| held(&store, k)), "the recent keys stayed");
    assert!(blocked.iter().all(|k| held(&store, k)), "the blocked keys stayed");
    for k in &blocked {
        assert!(!check(&store, k, &one_per_hour, 1).allowed, "{k} got a fresh allowance");
    }
}

#[test]
fn a_block_that_has_run_out_no_longer_protects_a_key() {
    let clock = FakeClock::at_secs(HOUR_START);
    let store = MemoryStore::builder().max_keys(16).cleanup_interval(None).clock(clock.clone()).build();
    // One unit back every 30 minutes; full again after an hour.
    let slow = limit("2/h", Algorithm::TokenBucket);
    let still_blocked = limit("1/h", Algorithm::FixedWindow);
    for i in 0..8 {
        assert!(check(&store, &format!("blocked{i}"), &still_blocked, 1).allowed);
    }
    clock.advance(Duration::from_secs(1));
    for i in 0..8 {
        let k = format!("lapsed{i}");
        assert!(check(&store, &k, &slow, 2).allowed);
        assert!(!check(&store, &k, &slow, 1).allowed);
    }
    // Half an hour on, the buckets admit one request again but are not
    // full: they are live keys like any other, and used more recently.
    clock.advance(Duration::from_secs(30 * 60 + 1));
    for i in 0..8 {
        assert_eq!(check(&store, &format!("lapsed{i}"), &slow, 0).remaining, 1);
    }
    check(&store, "new", &slow, 1);
    assert!(store.len() <= 16);
    assert!((0..8).all(|i| held(&store, &format!("blocked{i}"))), "the blocked keys stayed");
    assert_eq!((0..8).filter(|i| !held(&store, &format!("lapsed{i}"))).count(), 2, "one batch of lapsed keys went");
}

#[test]
fn a_store_full_of_blocked_clients_evicts_the_least_recently_blocked() {
    let clock = FakeClock::at_secs(HOUR_START);
    let store = MemoryStore::builder().max_keys(64).cleanup_interval(None).clock(clock.clone()).build();
    let one_per_hour = limit("1/h", Algorithm::FixedWindow);
    for i in 0..64 {
        assert!(check(&store, &format!("old{i}"), &one_per_hour, 1).allowed);
    }
    clock.advance(Duration::from_secs(1));
    // Touch all but the first eight again: denied requests count as use.
    for i in 8..64 {
        assert!(!check(&store, &format!("old{i}"), &one_per_hour, 1).allowed);
    }
    assert!(check(&store, "new", &one_per_hour, 1).allowed);
    assert_eq!(store.len(), 57, "one batch of eight made room");
    assert!((0..8).all(|i| !held(&store, &format!("old{i}"))));
    assert!((8..64).all(|i| held(&store, &format!("old{i}"))));
}
