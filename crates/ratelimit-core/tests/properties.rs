//! Property tests of the memory store's algorithms, driven with explicit
//! times along random schedules (monotone times, random costs).
//!
//! Each algorithm's defining bound is checked over the whole schedule of
//! admitted requests, and every decision is checked for the invariants all
//! algorithms share: a denied request is never charged, a request that can
//! pass later says when, and `remaining` never exceeds the limit.

use std::time::Duration;

use proptest::prelude::*;
use ratelimit_core::{Algorithm, CheckRequest, Decisions, Limit, LimitCheck, MemoryStore, Rate};

/// Schedules start here (plus a random offset), far from the epoch.
const BASE: u64 = 1_700_000_000_000_000_000;

/// One random schedule for one limit.
#[derive(Clone, Debug)]
struct Case {
    limit: u64,
    period_secs: u64,
    burst: Option<u64>,
    /// Where the schedule starts, relative to [`BASE`].
    offset: u64,
    /// (how to step time, a random word, how to pick the cost).
    steps: Vec<(u8, u64, u8)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1u64..=20,
        prop_oneof![Just(1u64), Just(10), Just(60), 1u64..=120],
        prop::option::of(1u64..=30),
        0u64..1_000_000_000_000,
        prop::collection::vec((any::<u8>(), any::<u64>(), any::<u8>()), 1..200),
    )
        .prop_map(|(limit, period_secs, burst, offset, steps)| Case { limit, period_secs, burst, offset, steps })
}

/// What a schedule produced: every admitted request with a cost, in order.
struct Run {
    limit: Limit,
    admitted: Vec<(u64, u64)>,
}

fn build_limit(case: &Case, algorithm: Algorithm) -> Limit {
    let rate = Rate::new(case.limit, Duration::from_secs(case.period_secs)).expect("valid rate");
    let limit = Limit::new(rate, algorithm);
    match case.burst {
        Some(burst) => limit.with_burst(burst).expect("valid burst"),
        None => limit,
    }
}

fn only(decisions: &Decisions) -> Result<ratelimit_core::Decision, TestCaseError> {
    prop_assert_eq!(decisions.len(), 1, "one decision per limit");
    Ok(decisions[0])
}

/// Runs the schedule through a fresh store, checking the invariants every
/// algorithm shares at each step.
fn run(case: &Case, algorithm: Algorithm) -> Result<Run, TestCaseError> {
    let limit = build_limit(case, algorithm);
    let capacity = limit.capacity();
    let period = limit.period_nanos();
    let interval = (period / case.limit).max(1);
    let store = MemoryStore::builder().cleanup_interval(None).build();
    let key = "rl:prop:key";
    let checks = [LimitCheck { key, limit: &limit }];
    let mut t = BASE + case.offset;
    let mut admitted = Vec::new();
    for (step, &(time_kind, word, cost_kind)) in case.steps.iter().enumerate() {
        t += match time_kind % 8 {
            0 | 1 => 0,
            2 => word % 1_000,
            3 | 4 => word % (interval + 1),
            5 => word % (period + 1),
            // Onto the next window boundary, or one nanosecond before it.
            6 => (t / period + 1) * period - word % 2 - t,
            _ => word % (3 * period),
        };
        let cost = match cost_kind % 16 {
            0 => 0,
            1 => capacity,
            2 => capacity + 1,
            3 => (word >> 32) % (capacity + 2),
            _ => 1,
        };
        let request = CheckRequest::new(&checks, cost).at(t);
        let before = only(&store.decide(request, false).expect("peek"))?;
        let decision = only(&store.decide(request, true).expect("check"))?;
        let context = format!("{algorithm} {} step {step} at +{} ns, cost {cost}", limit.rate(), t - BASE);
        prop_assert_eq!(before, decision, "a peek predicts the check: {}", &context);
        prop_assert_eq!(decision.limit, capacity, "{}", &context);
        prop_assert!(decision.remaining <= decision.limit, "remaining above the limit: {}", &context);
        if decision.allowed {
            prop_assert!(decision.retry_after.is_none(), "{}", &context);
            if cost > 0 {
                admitted.push((t, cost));
            }
        } else {
            prop_assert_eq!(decision.can_never_succeed(), cost > capacity, "{}: {:?}", &context, decision);
            if cost <= capacity {
                let retry = decision.retry_after.expect("retry_after when the request can pass later");
                prop_assert!(retry > Duration::ZERO, "a zero retry_after: {}", &context);
            }
            let after = only(&store.decide(request, false).expect("peek"))?;
            prop_assert_eq!(before, after, "a denied request was charged: {}", &context);
        }
    }
    Ok(Run { limit, admitted })
}

/// Units admitted at instants in `[from, to]`.
fn admitted_between(admitted: &[(u64, u64)], from: u64, to: u64) -> u64 {
    admitted.iter().filter(|&&(at, _)| at >= from && at <= to).map(|&(_, cost)| cost).sum()
}

/// Units admitted in each window aligned to the epoch.
fn per_aligned_window(admitted: &[(u64, u64)], period: u64) -> std::collections::BTreeMap<u64, u64> {
    let mut windows = std::collections::BTreeMap::new();
    for &(at, cost) in admitted {
        *windows.entry(at / period).or_insert(0) += cost;
    }
    windows
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fixed_window_admits_at_most_the_limit_per_aligned_window(case in case()) {
        let run = run(&case, Algorithm::FixedWindow)?;
        let limit = run.limit.rate().limit();
        for (window, units) in per_aligned_window(&run.admitted, run.limit.period_nanos()) {
            prop_assert!(units <= limit, "window {window}: {units} units admitted, limit {limit}");
        }
    }

    #[test]
    fn sliding_window_admits_at_most_the_limit_in_every_period(case in case()) {
        let run = run(&case, Algorithm::SlidingLog)?;
        let (limit, period) = (run.limit.rate().limit(), run.limit.period_nanos());
        for &(t, _) in &run.admitted {
            let units = admitted_between(&run.admitted, t - period + 1, t);
            prop_assert!(units <= limit, "{units} units in (t - period, t] at +{} ns, limit {limit}", t - BASE);
        }
    }

    #[test]
    fn token_bucket_admits_at_most_the_burst_plus_the_refill(case in case()) {
        let run = run(&case, Algorithm::TokenBucket)?;
        let capacity = run.limit.capacity();
        let interval = (run.limit.period_nanos() / run.limit.rate().limit()).max(1);
        // Times are monotone, so [a, b] for a = admitted[i], b = admitted[j]
        // is the contiguous run i..=j, widened over equal times at either end.
        let times: Vec<u64> = run.admitted.iter().map(|&(t, _)| t).collect();
        let mut prefix = vec![0u64];
        for &(_, cost) in &run.admitted {
            prefix.push(prefix.last().copied().unwrap_or(0) + cost);
        }
        for i in 0..times.len() {
            let first = times.partition_point(|&t| t < times[i]);
            for j in i..times.len() {
                let last = times.partition_point(|&t| t <= times[j]);
                let units = prefix[last] - prefix[first];
                let bound = capacity + (times[j] - times[i]) / interval;
                prop_assert!(
                    units <= bound,
                    "{units} units admitted in [+{}, +{}] ns, bound {bound}",
                    times[i] - BASE,
                    times[j] - BASE
                );
            }
        }
    }

    #[test]
    fn sliding_window_counter_stays_within_its_bounds(case in case()) {
        let run = run(&case, Algorithm::SlidingWindowCounter)?;
        let (limit, period) = (run.limit.rate().limit(), run.limit.period_nanos());
        for (window, units) in per_aligned_window(&run.admitted, period) {
            prop_assert!(units <= limit, "aligned window {window}: {units} units admitted, limit {limit}");
        }
        for &(t, _) in &run.admitted {
            let units = admitted_between(&run.admitted, t - period + 1, t);
            prop_assert!(units <= 2 * limit, "{units} units in one period ending at +{} ns", t - BASE);
        }
    }
}
