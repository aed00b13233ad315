//! The scenarios: schedules of checks, peeks and resets at explicit
//! times, each decision compared with the model.

use super::model::{Model, Rng, check_decision, check_limit, fail};
use super::{ConformanceOptions, limits};
use crate::clock::UnixNanos;
use crate::store::{CheckRequest, LimitCheck, Store};
use crate::{Algorithm, Decisions, Limit, MAX_SLIDING_LOG_LIMIT, Rate, StoreError, store_key};

/// Random schedules on several keys per limit, compared step by step.
pub async fn schedules<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    for (n, limit) in limits().into_iter().enumerate() {
        let keys: Vec<String> = (0..3)
            .map(|k| store_key::compose(&options.key_prefix, &format!("sched{n}"), limit.algorithm(), &format!("k{k}")))
            .collect();
        let mut models: Vec<Model> = keys.iter().map(|_| Model::new(limit, res)).collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1));
        let mut t = options.start / res * res;
        let period = limit.period_nanos();
        for step in 0..options.steps {
            t += match rng.below(10) {
                0..=3 => 0,
                4 => res,
                5..=7 => rng.below(period / 4 / res + 1) * res,
                8 => rng.below(1000) * res,
                _ => rng.below(period * 3 / 2 / res + 1) * res,
            };
            let which = rng.below(keys.len() as u64) as usize;
            let cost = match rng.below(12) {
                0 => 0,
                1 => limit.capacity() + 1,
                2 | 3 => 1 + rng.below(limit.capacity()),
                _ => 1,
            };
            let checks = [LimitCheck { key: &keys[which], limit: &limit }];
            let context = format!(
                "{} {} (capacity {}), step {step}, key {which}, t = start + {} ns, cost {cost}",
                limit.algorithm(),
                limit.rate(),
                limit.capacity(),
                t - options.start
            );
            let decisions = match store.check(CheckRequest::new(&checks, cost).at(t)).await {
                Ok(d) => d,
                Err(e) => fail(&context, format!("store error: {e}")),
            };
            if decisions.len() != 1 {
                fail(&context, format!("{} decisions for one limit", decisions.len()));
            }
            let model = &mut models[which];
            check_decision(model, t, cost, &decisions[0], &context);
            if decisions[0].allowed {
                model.charge(t, cost);
            }
        }
        for check in &keys {
            let _ = store.reset(LimitCheck { key: check, limit: &limit }).await;
        }
    }
}

/// `peek` reports what `check` would decide and changes nothing.
pub async fn peek_never_charges<S: Store>(store: &S, options: &ConformanceOptions) {
    let t = options.start / options.resolution_nanos.max(1) * options.resolution_nanos.max(1);
    for (n, limit) in limits().into_iter().enumerate() {
        let key = store_key::compose(&options.key_prefix, &format!("peek{n}"), limit.algorithm(), "p");
        let checks = [LimitCheck { key: &key, limit: &limit }];
        let context = format!("peek, {} {}", limit.algorithm(), limit.rate());
        for _ in 0..3 {
            let peeked = store.peek(CheckRequest::new(&checks, limit.capacity()).at(t)).await.expect("peek");
            if !peeked.all_allowed() || peeked[0].remaining != 0 {
                fail(&context, format!("peeking the full capacity of a fresh key gave {:?}", peeked[0]));
            }
        }
        let checked = store.check(CheckRequest::new(&checks, limit.capacity()).at(t)).await.expect("check");
        if !checked.all_allowed() {
            fail(&context, "peeks charged the key".into());
        }
        let denied = store.peek(CheckRequest::new(&checks, 1).at(t)).await.expect("peek");
        let again = store.check(CheckRequest::new(&checks, 1).at(t)).await.expect("check");
        if denied.all_allowed() || again.all_allowed() || denied[0].retry_after != again[0].retry_after {
            fail(&context, format!("peek {:?} and check {:?} disagree", denied[0], again[0]));
        }
        let _ = store.reset(checks[0]).await;
    }
}

/// Several limits of one request pass together or not at all.
pub async fn limits_are_all_or_nothing<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    let t = options.start / res * res;
    for algorithm in Algorithm::ALL {
        let tight = Limit::new("2/m".parse().expect("rate"), algorithm);
        let loose = Limit::new("10/m".parse().expect("rate"), algorithm);
        let a = store_key::compose(&options.key_prefix, "all-a", algorithm, "c");
        let b = store_key::compose(&options.key_prefix, "all-b", algorithm, "c");
        let both = [LimitCheck { key: &a, limit: &tight }, LimitCheck { key: &b, limit: &loose }];
        let context = format!("all-or-nothing, {algorithm}");
        for _ in 0..2 {
            let d = store.check(CheckRequest::new(&both, 1).at(t)).await.expect("check");
            if !d.all_allowed() || d.len() != 2 {
                fail(&context, format!("the first two requests pass: {d:?}"));
            }
        }
        let denied = store.check(CheckRequest::new(&both, 1).at(t)).await.expect("check");
        if denied.all_allowed() || denied[0].allowed || !denied[1].allowed {
            fail(&context, format!("the tight limit denies, the loose one would admit: {denied:?}"));
        }
        let loose_only = [LimitCheck { key: &b, limit: &loose }];
        let left = store.peek(CheckRequest::new(&loose_only, 1).at(t)).await.expect("peek");
        if left[0].remaining != 7 {
            fail(&context, format!("the denied request was charged on the loose limit: {:?}", left[0]));
        }
        let _ = store.reset(both[0]).await;
        let _ = store.reset(both[1]).await;
    }
}

/// `reset` forgets a key's state; a cost of 0 passes and charges nothing.
pub async fn reset_restores_capacity<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    let t = options.start / res * res;
    for algorithm in Algorithm::ALL {
        let limit = Limit::new("3/h".parse().expect("rate"), algorithm);
        let key = store_key::compose(&options.key_prefix, "reset", algorithm, "c");
        let checks = [LimitCheck { key: &key, limit: &limit }];
        let context = format!("reset, {algorithm}");
        let spent = store.check(CheckRequest::new(&checks, 3).at(t)).await.expect("check");
        let free = store.check(CheckRequest::new(&checks, 0).at(t)).await.expect("check");
        if !spent.all_allowed() || !free.all_allowed() || free[0].remaining != 0 {
            fail(&context, format!("spending the capacity, then a free request: {spent:?} {free:?}"));
        }
        store.reset(checks[0]).await.expect("reset");
        let fresh = store.check(CheckRequest::new(&checks, 3).at(t)).await.expect("check");
        if !fresh.all_allowed() {
            fail(&context, "the key is not back to full capacity after reset".into());
        }
        let _ = store.reset(checks[0]).await;
    }
}

/// Steps time forward by a random amount at the store's resolution: often
/// not at all, often by less than one unit's refill, sometimes onto a
/// window boundary (or one step before it), sometimes past a period.
fn step_time(rng: &mut Rng, t: UnixNanos, period: u64, res: u64) -> UnixNanos {
    let dt = match rng.below(10) {
        0..=2 => 0,
        3 => res,
        4..=6 => rng.below(period / 8 / res + 1) * res,
        7 => {
            let boundary = (t / period + 1) * period;
            boundary - (boundary - t).min(rng.below(2) * res) - t
        }
        _ => rng.below(period * 3 / 2 / res + 1) * res,
    };
    t + dt
}

/// A cost from 0 to one above the capacity, mostly 1.
fn pick_cost(rng: &mut Rng, capacity: u64) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => capacity + 1,
        2 => capacity,
        3 | 4 => 1 + rng.below(capacity),
        _ => 1,
    }
}

fn context_for(scenario: &str, limit: &Limit, step: usize, t: UnixNanos, start: UnixNanos, cost: u64) -> String {
    format!(
        "{scenario}: {} {} (capacity {}), step {step}, t = start + {} ns, cost {cost}",
        limit.algorithm(),
        limit.rate(),
        limit.capacity(),
        t.saturating_sub(start)
    )
}

async fn decide<S: Store>(
    store: &S,
    checks: &[LimitCheck<'_>],
    cost: u64,
    t: UnixNanos,
    charge: bool,
    context: &str,
) -> Decisions {
    let request = CheckRequest::new(checks, cost).at(t);
    let result = if charge { store.check(request).await } else { store.peek(request).await };
    let decisions = result.unwrap_or_else(|e| fail(context, format!("store error: {e}")));
    if decisions.len() != checks.len() {
        fail(context, format!("{} decisions for {} limits", decisions.len(), checks.len()));
    }
    decisions
}

/// Two limits on two keys in one request, along random schedules mixed
/// with requests on either key alone: every decision matches its own
/// limit's model, the request passes only when both admit it, and a
/// request that one limit denies is charged on neither.
pub async fn multi_limit_schedules<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    let all = limits();
    let mut one_sided_denials = 0usize;
    for (n, first) in all.iter().enumerate() {
        let second = &all[(n * 7 + 3) % all.len()];
        let pair = [*first, *second];
        // One identity for both keys: a Redis Cluster hash tag puts them in one slot.
        let keys = [
            store_key::compose(&options.key_prefix, &format!("multi{n}-a"), first.algorithm(), "c"),
            store_key::compose(&options.key_prefix, &format!("multi{n}-b"), second.algorithm(), "c"),
        ];
        for i in 0..2 {
            let _ = store.reset(LimitCheck { key: &keys[i], limit: &pair[i] }).await;
        }
        let mut models = [Model::new(pair[0], res), Model::new(pair[1], res)];
        let mut rng = Rng(0x51_7cc1_b727_220a ^ (n as u64 + 1).wrapping_mul(0x2545_f491));
        let mut t = options.start / res * res;
        for step in 0..options.steps {
            let period = pair[rng.below(2) as usize].period_nanos();
            t = step_time(&mut rng, t, period, res);
            let capacity = pair[rng.below(2) as usize].capacity();
            let cost = pick_cost(&mut rng, capacity);
            let order: &[usize] = match rng.below(8) {
                0 => &[0],
                1 => &[1],
                2..=4 => &[0, 1],
                _ => &[1, 0],
            };
            let checks: Vec<LimitCheck<'_>> =
                order.iter().map(|&i| LimitCheck { key: &keys[i], limit: &pair[i] }).collect();
            let context = format!(
                "multi-limit pair {n} [{} {} | {} {}], limits {order:?}, step {step}, t = start + {} ns, cost {cost}",
                pair[0].algorithm(),
                pair[0].rate(),
                pair[1].algorithm(),
                pair[1].rate(),
                t - options.start
            );
            let decisions = decide(store, &checks, cost, t, true, &context).await;
            let admitted = order.iter().all(|&i| models[i].admits(t, cost));
            for (position, &i) in order.iter().enumerate() {
                let limit_context = format!("{context}, limit {i}");
                check_limit(&models[i], t, cost, &decisions[position], &limit_context, admitted);
            }
            if decisions.all_allowed() != admitted {
                fail(
                    &context,
                    format!("allowed() is {} but every limit's model says {admitted}", decisions.all_allowed()),
                );
            }
            if admitted {
                for &i in order {
                    models[i].charge(t, cost);
                }
            } else if order.len() == 2 && order.iter().any(|&i| models[i].admits(t, cost)) {
                one_sided_denials += 1;
                // The limit that would have admitted it was not charged.
                for &i in order {
                    let alone = [LimitCheck { key: &keys[i], limit: &pair[i] }];
                    let peeked = decide(store, &alone, 0, t, false, &context).await;
                    check_decision(&models[i], t, 0, &peeked[0], &format!("{context}, limit {i} after the denial"));
                }
            }
        }
        for i in 0..2 {
            let _ = store.reset(LimitCheck { key: &keys[i], limit: &pair[i] }).await;
        }
    }
    if one_sided_denials == 0 {
        fail("multi-limit schedules", "no request was admitted by one limit and denied by the other".into());
    }
}

/// Along random schedules, peeks (of the same cost and of others, one to
/// three of them) before every check: each peek matches the model, the
/// same-cost peek equals the check's decision, and none of them charges.
pub async fn peek_matches_check<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    for (n, limit) in limits().into_iter().enumerate() {
        let key = store_key::compose(&options.key_prefix, &format!("peeks{n}"), limit.algorithm(), "p");
        let checks = [LimitCheck { key: &key, limit: &limit }];
        let _ = store.reset(checks[0]).await;
        let mut model = Model::new(limit, res);
        let mut rng = Rng(0x2f1b_4c3d_9a8e_7f61 ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9));
        let mut t = options.start / res * res;
        for step in 0..options.steps / 2 {
            t = step_time(&mut rng, t, limit.period_nanos(), res);
            let cost = pick_cost(&mut rng, limit.capacity());
            let context = context_for("peek before check", &limit, step, t, options.start, cost);
            for _ in 0..=rng.below(3) {
                let other = pick_cost(&mut rng, limit.capacity());
                let peeked = decide(store, &checks, other, t, false, &context).await;
                check_decision(&model, t, other, &peeked[0], &format!("{context}, peek of cost {other}"));
            }
            let predicted = decide(store, &checks, cost, t, false, &context).await;
            let checked = decide(store, &checks, cost, t, true, &context).await;
            check_decision(&model, t, cost, &checked[0], &context);
            if predicted != checked {
                fail(&context, format!("peek said {:?}, check said {:?}", predicted[0], checked[0]));
            }
            if checked[0].allowed {
                model.charge(t, cost);
            }
        }
        let _ = store.reset(checks[0]).await;
    }
}

/// A denied request is not charged: after spending the capacity, denied
/// requests of every size until just before `retry_after` leave the key
/// as it was, and at `retry_after` the request passes.
pub async fn denied_requests_are_not_charged<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    for (n, limit) in limits().into_iter().enumerate() {
        let key = store_key::compose(&options.key_prefix, &format!("denied{n}"), limit.algorithm(), "d");
        let checks = [LimitCheck { key: &key, limit: &limit }];
        let _ = store.reset(checks[0]).await;
        let mut model = Model::new(limit, res);
        let mut rng = Rng(0x7a3d_1e5f_c2b4_9d08 ^ (n as u64 + 1).wrapping_mul(0x85eb_ca6b));
        let t = options.start / res * res;
        let mut step = 0;
        let denial = loop {
            let context = context_for("denied requests", &limit, step, t, options.start, 1);
            let d = decide(store, &checks, 1, t, true, &context).await;
            check_decision(&model, t, 1, &d[0], &context);
            if !d[0].allowed {
                break d[0];
            }
            model.charge(t, 1);
            step += 1;
            if step as u64 > limit.capacity() {
                fail(&context, "more units admitted at one instant than the capacity".into());
            }
        };
        let retry_at = t + denial.retry_after.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut at = t;
        for _ in 0..20 {
            step += 1;
            at = (at + rng.below((retry_at - t) / 10 / res + 1) * res).min(retry_at.saturating_sub(res).max(t));
            let cost = 1 + rng.below(limit.capacity());
            let context = context_for("denied requests", &limit, step, at, options.start, cost);
            let d = decide(store, &checks, cost, at, true, &context).await;
            check_decision(&model, at, cost, &d[0], &context);
            if d[0].allowed {
                fail(&context, "admitted before the first denial's retry_after".into());
            }
            let peeked = decide(store, &checks, 0, at, false, &context).await;
            check_decision(&model, at, 0, &peeked[0], &format!("{context}, peek after the denial"));
        }
        step += 1;
        let context = context_for("denied requests", &limit, step, retry_at, options.start, 1);
        let d = decide(store, &checks, 1, retry_at, true, &context).await;
        check_decision(&model, retry_at, 1, &d[0], &context);
        if !d[0].allowed {
            fail(&context, "denied requests were charged: the request does not pass at retry_after".into());
        }
        let _ = store.reset(checks[0]).await;
    }
}

/// A request of cost 0 always passes and charges nothing, on a fresh key,
/// a partly used one and an exhausted one.
pub async fn zero_cost_is_free<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    for (n, limit) in limits().into_iter().enumerate() {
        let key = store_key::compose(&options.key_prefix, &format!("free{n}"), limit.algorithm(), "z");
        let checks = [LimitCheck { key: &key, limit: &limit }];
        let _ = store.reset(checks[0]).await;
        let mut model = Model::new(limit, res);
        let t = options.start / res * res;
        for (level, spend) in [0, 1, limit.capacity()].into_iter().enumerate() {
            for unit in 0..spend {
                let context = context_for("zero cost", &limit, unit as usize, t, options.start, 1);
                let d = decide(store, &checks, 1, t, true, &context).await;
                check_decision(&model, t, 1, &d[0], &context);
                if d[0].allowed {
                    model.charge(t, 1);
                }
            }
            for step in 0..3 {
                let context = context_for(&format!("zero cost, level {level}"), &limit, step, t, options.start, 0);
                let d = decide(store, &checks, 0, t, true, &context).await;
                check_decision(&model, t, 0, &d[0], &context);
                if !d[0].allowed || d[0].retry_after.is_some() {
                    fail(&context, format!("a free request must pass: {:?}", d[0]));
                }
            }
            let context = context_for(&format!("zero cost, level {level}"), &limit, 3, t, options.start, 1);
            let d = decide(store, &checks, 1, t, false, &context).await;
            check_decision(&model, t, 1, &d[0], &format!("{context}, peek after the free requests"));
        }
        let _ = store.reset(checks[0]).await;
    }
}

/// A sliding log at [`MAX_SLIDING_LOG_LIMIT`] works to the last unit, one
/// request taking all of it at once; a sliding log above it is refused
/// with [`StoreError::InvalidLimit`] by `check` and `peek`, alone or next
/// to a valid limit, which is then not charged.
pub async fn sliding_logs_are_bounded<S: Store>(store: &S, options: &ConformanceOptions) {
    let res = options.resolution_nanos.max(1);
    let t = options.start / res * res;
    let largest = Limit::new(Rate::per_minute(MAX_SLIDING_LOG_LIMIT).expect("rate"), Algorithm::SlidingLog);
    let key = store_key::compose(&options.key_prefix, "largest-log", Algorithm::SlidingLog, "c");
    let checks = [LimitCheck { key: &key, limit: &largest }];
    let context = format!("sliding log of {}", largest.rate());
    let _ = store.reset(checks[0]).await;
    for (at, cost, admitted) in
        [(t, MAX_SLIDING_LOG_LIMIT, true), (t, 1, false), (t + 60_000_000_000, MAX_SLIDING_LOG_LIMIT, true)]
    {
        let d = decide(store, &checks, cost, at, true, &context).await;
        if d[0].allowed != admitted || d[0].remaining != 0 {
            fail(&context, format!("cost {cost} at +{} s: {:?}", (at - t) / 1_000_000_000, d[0]));
        }
    }
    let _ = store.reset(checks[0]).await;

    let over = Limit::new(Rate::per_minute(MAX_SLIDING_LOG_LIMIT + 1).expect("rate"), Algorithm::SlidingLog);
    let valid = Limit::new("5/m".parse().expect("rate"), Algorithm::FixedWindow);
    let over_key = store_key::compose(&options.key_prefix, "oversized-log", Algorithm::SlidingLog, "c");
    let valid_key = store_key::compose(&options.key_prefix, "beside-oversized", Algorithm::FixedWindow, "c");
    let alone = [LimitCheck { key: &over_key, limit: &over }];
    let beside = [LimitCheck { key: &valid_key, limit: &valid }, alone[0]];
    let context = format!("sliding log of {}", over.rate());
    for checks in [&alone[..], &beside[..]] {
        for charge in [true, false] {
            let request = CheckRequest::new(checks, 1).at(t);
            let result = if charge { store.check(request).await } else { store.peek(request).await };
            if !matches!(result, Err(StoreError::InvalidLimit(_))) {
                fail(&context, format!("{} limit(s), charge {charge}: {result:?}", checks.len()));
            }
        }
    }
    let d = decide(store, &beside[..1], 0, t, false, &context).await;
    if d[0].remaining != 5 {
        fail(&context, format!("the valid limit beside the refused one was charged: {:?}", d[0]));
    }
}
