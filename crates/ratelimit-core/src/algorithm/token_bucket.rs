//! Token bucket, computed as GCRA on one stored timestamp.
//!
//! The bucket holds `capacity` units (the burst, by default the limit) and
//! refills continuously, one unit every `period / limit`. In any interval
//! of length `T` at most `capacity + T * limit / period` units pass.
//!
//! Instead of a token count the state is the *theoretical arrival time*
//! (TAT): the instant at which the bucket would be full again. A request of
//! `n` units moves it `n` emission intervals into the future and is
//! admitted if the bucket then is still within its capacity. A denied
//! request leaves the state untouched.

use crate::clock::UnixNanos;
use crate::{Decision, Limit};

/// The state of one key: the instant the bucket is full again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketState {
    /// Theoretical arrival time, nanoseconds since the epoch.
    pub tat: UnixNanos,
}

impl BucketState {
    /// When this state stops mattering (the bucket is full again).
    pub fn expires_at(&self) -> UnixNanos {
        self.tat
    }
}

/// Nanoseconds needed to refill one unit.
pub fn emission_interval(limit: &Limit) -> u64 {
    (limit.period_nanos() / limit.rate().limit()).max(1)
}

/// Decides a request of `cost` units at `now`.
pub fn decide(state: Option<BucketState>, now: UnixNanos, limit: &Limit, cost: u64) -> (Decision, BucketState) {
    let interval = emission_interval(limit);
    let capacity = limit.capacity();
    let tolerance = interval.saturating_mul(capacity);
    let tat = state.map_or(now, |s| s.tat).max(now);
    let used = tat - now;
    let current = BucketState { tat };
    let remaining_now = tolerance.saturating_sub(used) / interval;
    if cost > capacity {
        return (Decision::denied(capacity, remaining_now, used, None), current);
    }
    let next_tat = tat.saturating_add(cost.saturating_mul(interval));
    let next_used = next_tat - now;
    if next_used <= tolerance {
        let remaining = (tolerance - next_used) / interval;
        (Decision::admitted(capacity, remaining, next_used), BucketState { tat: next_tat })
    } else {
        let retry = next_used - tolerance;
        (Decision::denied(capacity, remaining_now, used, Some(retry)), current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Rate};

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_steady_refill() {
        let limit = Limit::new(Rate::per_second(10).unwrap(), Algorithm::TokenBucket).with_burst(3).unwrap();
        let now = 50 * S;
        let mut state = None;
        for left in [2, 1, 0] {
            let (d, st) = decide(state, now, &limit, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            state = Some(st);
        }
        let (d, _) = decide(state, now, &limit, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after.unwrap().as_millis(), 100);
        assert_eq!(d.reset_after.as_millis(), 300);
        let (d, _) = decide(state, now + S / 10, &limit, 1);
        assert!(d.allowed && d.remaining == 0);
        let (d, _) = decide(state, now, &limit, 4);
        assert!(d.can_never_succeed());
    }
}
