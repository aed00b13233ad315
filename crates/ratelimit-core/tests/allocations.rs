//! Heap use of the memory store, measured with a counting global allocator.
//!
//! Checking a key the store already holds must not allocate, whichever the
//! algorithm and whether one limit or two are checked; and a key's state
//! must stay small (at most 100 bytes a key, map overhead included).
//!
//! The counters are process-wide, so the tests of this binary take turns
//! (`SERIAL`), and a zero-allocation claim is judged by the quietest of a
//! few identical measurements: an allocation on the measured path shows up
//! in every one of them, while a stray allocation by the test harness's
//! own thread can only add to one.

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, MemoryStore, Store, store_key};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: Mutex<()> = Mutex::new(());

const SECOND: u64 = 1_000_000_000;
/// Far from the epoch and not aligned to any window.
const BASE: u64 = 1_700_000_000 * SECOND + 123_456_789;
/// How many identical measurements a zero-allocation claim gets.
const ATTEMPTS: usize = 3;

fn limit(rate: &str, algorithm: Algorithm) -> Limit {
    Limit::new(rate.parse().expect("valid rate"), algorithm)
}

/// Heap operations (allocations and reallocations) while `f` runs.
fn heap_operations(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    let change = region.change();
    change.allocations + change.reallocations
}

/// Polls a future exactly once, as a caller that never parks would.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Checks every 37 ms: more often than the tight limit allows, so a run
/// sees admitted and denied requests alike.
const STEP: u64 = 37_000_000;

/// Drives `checks` from `t` for `count` steps through `MemoryStore::decide`
/// and returns how many were admitted, and the next time.
fn drive_decide(store: &MemoryStore, checks: &[LimitCheck<'_>], mut t: u64, count: usize) -> (usize, u64) {
    let mut admitted = 0;
    for _ in 0..count {
        let decisions = store.decide(CheckRequest::new(checks, 1).at(t), true).expect("decide");
        admitted += usize::from(decisions.all_allowed());
        t += STEP;
    }
    (admitted, t)
}

/// The same through `Store::check`, each future polled once.
fn drive_check(store: &MemoryStore, checks: &[LimitCheck<'_>], mut t: u64, count: usize) -> (usize, usize, u64) {
    let mut admitted = 0;
    let mut pending = 0;
    for _ in 0..count {
        match poll_once(store.check(CheckRequest::new(checks, 1).at(t))) {
            Some(decisions) => admitted += usize::from(decisions.expect("check").all_allowed()),
            None => pending += 1,
        }
        t += STEP;
    }
    (admitted, pending, t)
}

#[test]
fn checking_a_held_key_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // The counter sees allocations at all, so a zero below means something.
    assert!(heap_operations(|| drop(std::hint::black_box(Box::new(7u64)))) >= 1);
    for algorithm in Algorithm::ALL {
        let tight = limit("10/s", algorithm);
        let loose = limit("100/m", algorithm);
        let key_a = store_key::compose("rl:", "a", algorithm, "10.0.0.1");
        let key_b = store_key::compose("rl:", "b", algorithm, "10.0.0.1");
        let both = [LimitCheck { key: &key_a, limit: &tight }, LimitCheck { key: &key_b, limit: &loose }];
        for checks in [&both[..1], &both[..]] {
            let what = format!("{algorithm} with {} limit(s)", checks.len());
            let store = MemoryStore::builder().cleanup_interval(None).build();
            // Three minutes of traffic: every key is held, and every sliding
            // log has been as long as its limit lets it be.
            let (_, mut t) = drive_decide(&store, checks, BASE, (180 * SECOND / STEP) as usize);
            let keys = store.len();
            // A minute per batch: both limits admit and deny within it.
            let batch = (60 * SECOND / STEP) as usize;
            let mut quietest = usize::MAX;
            for _ in 0..ATTEMPTS {
                let mut admitted = 0;
                let operations = heap_operations(|| (admitted, t) = drive_decide(&store, checks, t, batch));
                assert!(admitted > 0 && admitted < batch, "{what}: the batch must mix admitted and denied requests");
                quietest = quietest.min(operations);
            }
            assert_eq!(quietest, 0, "{what}: MemoryStore::decide allocated on held keys");
            let mut quietest = usize::MAX;
            for _ in 0..ATTEMPTS {
                let (mut admitted, mut pending) = (0, 0);
                let operations = heap_operations(|| (admitted, pending, t) = drive_check(&store, checks, t, batch));
                assert_eq!(pending, 0, "{what}: the memory store's check completes on its first poll");
                assert!(admitted > 0 && admitted < batch, "{what}: the batch must mix admitted and denied requests");
                quietest = quietest.min(operations);
            }
            assert_eq!(quietest, 0, "{what}: Store::check allocated on held keys");
            assert_eq!(store.len(), keys, "{what}: no key was added or dropped while measuring");
        }
    }
}

/// Live heap bytes (allocated minus freed) a million keys add to a store.
fn bytes_per_key(algorithm: Algorithm) -> (f64, f64) {
    const KEYS: u32 = 1_000_000;
    // Built before measuring, so the keys' own strings are not counted.
    let keys: Vec<String> = (0..KEYS)
        .map(|i| store_key::compose("rl:", "p", algorithm, &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff)))
        .collect();
    let limit = limit("10/m", algorithm);
    let region = Region::new(GLOBAL);
    let store = MemoryStore::builder().max_keys(KEYS as usize).cleanup_interval(None).build();
    for (i, key) in keys.iter().enumerate() {
        let checks = [LimitCheck { key, limit: &limit }];
        let decisions = store.decide(CheckRequest::new(&checks, 1).at(BASE + i as u64), true).expect("decide");
        assert!(decisions.all_allowed(), "{algorithm}: a new key's first request passes");
    }
    let change = region.change();
    let live = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    let held = store.len();
    assert!(held > KEYS as usize * 3 / 4, "{algorithm}: the store kept only {held} of {KEYS} keys");
    drop(store);
    (live / held as f64, live / f64::from(KEYS))
}

#[test]
fn a_key_costs_at_most_100_bytes() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    for algorithm in [Algorithm::FixedWindow, Algorithm::TokenBucket] {
        let (per_held, per_inserted) = bytes_per_key(algorithm);
        println!("{algorithm}: {per_held:.1} live heap bytes per key held ({per_inserted:.1} per key inserted)");
        assert!(per_held <= 100.0, "{algorithm}: {per_held:.1} bytes per key");
    }
}
