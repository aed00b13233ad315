//! The memory store under a flood of keys it has never seen.
//!
//! A bounded store has to drop something when a new key arrives and it is
//! full. Clients that are over their limit must be the last thing it drops:
//! otherwise a brute-forcer only has to send enough requests under fresh
//! keys (spoofed headers, a pool of addresses) to get its allowance back.

use std::fmt::Write as _;

use ratelimit_core::{
    Algorithm, CheckRequest, Decisions, FakeClock, Limit, LimitCheck, MemoryStore, Rate, Store, store_key,
};

const SECOND: u64 = 1_000_000_000;
/// A minute past an hour boundary: every hourly window has 59 minutes left,
/// far more than the flood below lasts on the fake clock.
const START: u64 = 1_700_002_800 * SECOND + 60 * SECOND;
const MAX_KEYS: usize = 10_000;
const CLIENTS: usize = 1_000;
const FLOOD: u32 = 1_000_000;

fn check(store: &MemoryStore<FakeClock>, key: &str, limit: &Limit) -> Decisions {
    let checks = [LimitCheck { key, limit }];
    // The memory store always answers synchronously.
    store.check_now(CheckRequest::new(&checks, 1)).expect("answered at once").expect("check")
}

#[test]
fn clients_over_their_limit_stay_blocked_through_a_million_fresh_keys() {
    let clock = FakeClock::new(START);
    let store = MemoryStore::builder().max_keys(MAX_KEYS).cleanup_interval(None).clock(clock.clone()).build();
    let limits = Algorithm::ALL.map(|algorithm| Limit::new(Rate::per_hour(5).expect("rate"), algorithm));

    // Every client spends its five requests under each algorithm, and is denied.
    let blocked: Vec<(String, &Limit)> = (0..CLIENTS)
        .flat_map(|i| {
            limits.iter().map(move |limit| {
                (store_key::compose("rl:", "login", limit.algorithm(), &format!("attacker{i}")), limit)
            })
        })
        .collect();
    for (key, limit) in &blocked {
        for _ in 0..5 {
            assert!(check(&store, key, limit).all_allowed());
        }
        assert!(!check(&store, key, limit).all_allowed(), "{key} is over its limit");
    }

    // A million requests, each under a key never seen before, one new
    // client in four on each algorithm, over 100 seconds of fake time.
    clock.advance(std::time::Duration::from_secs(1));
    let mut most = 0;
    let mut fresh = String::with_capacity(64);
    for i in 0..FLOOD {
        let limit = &limits[i as usize % limits.len()];
        fresh.clear();
        let _ = write!(fresh, "rl:flood:{}:{{{i}}}", limit.algorithm());
        assert!(check(&store, &fresh, limit).all_allowed(), "a new key's first request passes");
        if i % 10_000 == 9_999 {
            clock.advance(std::time::Duration::from_secs(1));
        }
        if i % 1_000 == 0 {
            most = most.max(store.len());
        }
    }
    most = most.max(store.len());
    assert!(most <= MAX_KEYS, "{most} keys held, max_keys {MAX_KEYS}");
    assert!(most > MAX_KEYS * 7 / 8, "the store never filled up: {most} keys");

    let lost: Vec<&str> = blocked
        .iter()
        .filter(|(key, limit)| check(&store, key, limit).all_allowed())
        .map(|(key, _)| key.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} blocked keys got a fresh allowance, e.g. {:?}",
        lost.len(),
        blocked.len(),
        &lost[..lost.len().min(5)]
    );
}
