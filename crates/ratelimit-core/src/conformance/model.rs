//! The reference model the scenarios compare every decision with: the
//! full history of admitted requests (or, for the token bucket, a debt in
//! nanoseconds), answered by brute force.

use std::time::Duration;

use crate::clock::UnixNanos;
use crate::{Algorithm, Decision, Limit};

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The reference model of one key under one limit.
#[derive(Clone, Debug)]
pub(super) struct Model {
    limit: Limit,
    resolution: u64,
    /// Admitted requests: (time, cost).
    admitted: Vec<(UnixNanos, u64)>,
    /// Token bucket: debt in nanoseconds at `debt_at`.
    debt: u64,
    debt_at: UnixNanos,
}

impl Model {
    pub(super) fn new(limit: Limit, resolution: u64) -> Self {
        Self { limit, resolution, admitted: Vec::new(), debt: 0, debt_at: 0 }
    }

    pub(super) fn period(&self) -> u64 {
        self.limit.period_nanos()
    }

    pub(super) fn capacity(&self) -> u64 {
        self.limit.capacity()
    }

    /// Nanoseconds one token bucket unit costs, at the store's resolution.
    pub(super) fn interval(&self) -> u64 {
        let r = self.resolution;
        (self.period() / self.limit.rate().limit() / r * r).max(r)
    }

    pub(super) fn debt_at(&self, t: UnixNanos) -> u64 {
        self.debt.saturating_sub(t.saturating_sub(self.debt_at))
    }

    pub(super) fn window_sum(&self, from_exclusive: u64, to_inclusive: u64) -> u64 {
        self.admitted.iter().filter(|&&(at, _)| at > from_exclusive && at <= to_inclusive).map(|&(_, c)| c).sum()
    }

    pub(super) fn aligned_sum(&self, window_start: u64) -> u64 {
        let p = self.period();
        self.admitted.iter().filter(|&&(at, _)| at / p * p == window_start).map(|&(_, c)| c).sum()
    }

    /// Units in use at `t`, scaled by the period (exact for every algorithm).
    pub(super) fn used_scaled(&self, t: UnixNanos) -> u128 {
        let p = self.period();
        match self.limit.algorithm() {
            Algorithm::FixedWindow => u128::from(self.aligned_sum(t / p * p)) * u128::from(p),
            Algorithm::SlidingLog => u128::from(self.window_sum(t.saturating_sub(p), t)) * u128::from(p),
            Algorithm::SlidingWindowCounter => {
                let start = t / p * p;
                let previous = self.aligned_sum(start.wrapping_sub(p));
                let current = self.aligned_sum(start);
                u128::from(previous) * u128::from(start + p - t) + u128::from(current) * u128::from(p)
            }
            // The bucket is judged by its debt; this only tells empty from not.
            Algorithm::TokenBucket => u128::from(self.debt_at(t)),
        }
    }

    pub(super) fn admits(&self, t: UnixNanos, cost: u64) -> bool {
        if cost > self.capacity() {
            return false;
        }
        if self.limit.algorithm() == Algorithm::TokenBucket {
            let i = u128::from(self.interval());
            return u128::from(self.debt_at(t)) + u128::from(cost) * i <= u128::from(self.capacity()) * i;
        }
        let p = u128::from(self.period());
        self.used_scaled(t) + u128::from(cost) * p <= u128::from(self.capacity()) * p
    }

    pub(super) fn remaining(&self, t: UnixNanos) -> u64 {
        if self.limit.algorithm() == Algorithm::TokenBucket {
            let i = self.interval();
            return (self.capacity() * i).saturating_sub(self.debt_at(t)) / i;
        }
        let p = u128::from(self.period());
        ((u128::from(self.capacity()) * p).saturating_sub(self.used_scaled(t)) / p) as u64
    }

    pub(super) fn is_full(&self, t: UnixNanos) -> bool {
        match self.limit.algorithm() {
            Algorithm::TokenBucket => self.debt_at(t) == 0,
            _ => self.used_scaled(t) == 0,
        }
    }

    pub(super) fn charge(&mut self, t: UnixNanos, cost: u64) {
        if cost == 0 {
            return;
        }
        if self.limit.algorithm() == Algorithm::TokenBucket {
            self.debt = self.debt_at(t) + cost * self.interval();
            self.debt_at = t;
        }
        self.admitted.push((t, cost));
    }
}

pub(super) fn fail(context: &str, detail: String) -> ! {
    panic!("conformance: {context}: {detail}")
}

pub(super) fn check_decision(model: &Model, t: UnixNanos, cost: u64, got: &Decision, context: &str) {
    check_limit(model, t, cost, got, context, model.admits(t, cost));
}

/// Checks one limit's decision; `charged` says whether the request as a
/// whole was admitted (with several limits, another one may have denied it,
/// and then this limit reports itself uncharged).
pub(super) fn check_limit(model: &Model, t: UnixNanos, cost: u64, got: &Decision, context: &str, charged: bool) {
    let expected = model.admits(t, cost);
    if got.allowed != expected {
        fail(context, format!("allowed {} but the model says {expected}", got.allowed));
    }
    if got.limit != model.capacity() {
        fail(context, format!("limit {} but the capacity is {}", got.limit, model.capacity()));
    }
    let mut after = model.clone();
    if expected && charged {
        after.charge(t, cost);
    }
    if got.remaining != after.remaining(t) {
        fail(context, format!("remaining {} but the model has {}", got.remaining, after.remaining(t)));
    }
    let res = model.resolution;
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if !expected {
        if cost > model.capacity() {
            if !got.can_never_succeed() {
                fail(context, "a cost above the capacity must be reported as never satisfiable".into());
            }
        } else {
            let Some(retry) = got.retry_after.map(nanos) else {
                fail(context, "a denied request that can pass later needs retry_after".into())
            };
            if retry == 0 || !model.admits(t + retry, cost) {
                fail(context, format!("retry_after {retry} ns, but the request does not pass then"));
            }
            if retry >= res && model.admits(t + retry - res, cost) {
                fail(context, format!("retry_after {retry} ns, but the request already passes one step earlier"));
            }
        }
    } else if got.retry_after.is_some() {
        fail(context, "an admitted request has no retry_after".into());
    }
    let reset = nanos(got.reset_after);
    if model.limit.algorithm() == Algorithm::FixedWindow {
        let p = model.period();
        let end = (t / p + 1) * p;
        if reset != end - t {
            fail(context, format!("reset_after {reset} ns but the window ends in {} ns", end - t));
        }
    } else {
        if !after.is_full(t + reset) {
            fail(context, format!("reset_after {reset} ns, but the key is not back to full capacity then"));
        }
        if reset >= res && after.is_full(t + reset - res) && !after.is_full(t) {
            fail(
                context,
                format!("reset_after {reset} ns, but the key is already full one step earlier (model: {after:?})"),
            );
        }
    }
}
