//! The memory store's token bucket decides exactly as governor's keyed GCRA
//! limiter for the same quota and the same schedule.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use proptest::prelude::*;
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, MemoryStore, Rate};

const START: u64 = 1_700_000_000 * 1_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn same_decisions_as_governor(
        limit in 1u64..50,
        period_secs in 1u64..120,
        burst in prop::option::of(1u32..20),
        steps in prop::collection::vec((0usize..3, prop_oneof![Just(0u64), 0u64..100, 0u64..5_000, 0u64..200_000]), 1..300),
    ) {
        let period = Duration::from_secs(period_secs);
        let mut ours = Limit::new(Rate::new(limit, period).unwrap(), Algorithm::TokenBucket);
        let capacity = burst.map_or(limit as u32, |b| b);
        if let Some(b) = burst {
            ours = ours.with_burst(u64::from(b)).unwrap();
        }
        let interval = Duration::from_nanos(period.as_nanos() as u64 / limit);
        let quota = Quota::with_period(interval).unwrap().allow_burst(NonZeroU32::new(capacity).unwrap());
        let clock = FakeRelativeClock::default();
        let theirs = RateLimiter::dashmap_with_clock(quota, clock.clone());
        let store = MemoryStore::builder().cleanup_interval(None).build();
        let keys = ["a", "b", "c"];
        let mut elapsed = 0u64;
        for (step, &(which, advance_ms)) in steps.iter().enumerate() {
            elapsed += advance_ms * 1_000_000;
            clock.advance(Duration::from_millis(advance_ms));
            let checks = [LimitCheck { key: keys[which], limit: &ours }];
            let mine = store.decide(CheckRequest::new(&checks, 1).at(START + elapsed), true).unwrap().all_allowed();
            let governor = theirs.check_key(&keys[which]).is_ok();
            prop_assert_eq!(mine, governor, "step {} key {} at +{} ns", step, keys[which], elapsed);
        }
    }
}
