//! Sliding window counter.
//!
//! Keeps the counts of the current and the previous fixed window (aligned
//! to the epoch). The estimate for a request at `t` is
//! `previous * (period - elapsed) / period + current`, where `elapsed` is
//! the time since the current window began: the previous window counts in
//! proportion to how much of it the sliding window still covers. A request
//! is admitted when the estimate plus its cost stays within the limit;
//! denied requests are not counted. The comparison is exact (integer
//! arithmetic scaled by the period), never rounded in the client's favour.

use crate::clock::UnixNanos;
use crate::{Decision, Limit};

/// The state of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterState {
    /// End of the current window, nanoseconds since the epoch.
    pub window_end: UnixNanos,
    /// Units admitted in the previous window.
    pub previous: u64,
    /// Units admitted in the current window.
    pub current: u64,
}

impl CounterState {
    /// When this state stops mattering: one period after the current
    /// window ends, its count no longer weighs anything.
    pub fn expires_at(&self, period: u64) -> UnixNanos {
        self.window_end.saturating_add(period)
    }
}

/// Decides a request of `cost` units at `now`.
pub fn decide(state: Option<CounterState>, now: UnixNanos, limit: &Limit, cost: u64) -> (Decision, CounterState) {
    let period = limit.period_nanos();
    let start = now / period * period;
    let end = start.saturating_add(period);
    let (previous, current) = match state {
        Some(s) if s.window_end == end => (s.previous, s.current),
        Some(s) if s.window_end == start => (s.current, 0),
        _ => (0, 0),
    };
    let state = CounterState { window_end: end, previous, current };
    let capacity = limit.capacity();
    let p = u128::from(period);
    let weight = u128::from(end - now);
    // Everything below is scaled by the period, so no fraction is lost.
    let used = u128::from(previous) * weight + u128::from(current) * p;
    let budget = u128::from(capacity) * p;
    let remaining = |used: u128| (budget.saturating_sub(used) / p) as u64;
    let reset_for = |current: u64| {
        if current > 0 {
            end + period - now
        } else if previous > 0 {
            end - now
        } else {
            0
        }
    };
    if cost > capacity {
        return (Decision::denied(capacity, remaining(used), reset_for(current), None), state);
    }
    let wanted = used + u128::from(cost) * p;
    if wanted <= budget {
        let next = CounterState { current: current + cost, ..state };
        let decision = Decision::admitted(capacity, remaining(wanted), reset_for(next.current));
        return (decision, next);
    }
    let retry = if current + cost <= capacity {
        // Within this window, once the previous window's weight has shrunk
        // enough: previous * (period - e) <= slack, with e the elapsed time.
        let slack = u128::from(capacity - current - cost) * p;
        let shrink = (slack / u128::from(previous)) as u64;
        start + (period - shrink.min(period)) - now
    } else {
        // In the next window, where this window's count becomes the previous one.
        let slack = u128::from(capacity - cost) * p;
        let shrink = (slack / u128::from(current)) as u64;
        end + (period - shrink.min(period)) - now
    };
    (Decision::denied(capacity, remaining(used), reset_for(current), Some(retry)), state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Rate};

    const S: u64 = 1_000_000_000;

    #[test]
    fn previous_window_weighs_in_proportion() {
        let limit =
            Limit::new(Rate::new(10, std::time::Duration::from_secs(10)).unwrap(), Algorithm::SlidingWindowCounter);
        let state = CounterState { window_end: 110 * S, previous: 0, current: 10 };
        // At 112 s the previous window (the ten units) weighs 8/10: 8 used.
        let (d, st) = decide(Some(state), 112 * S, &limit, 2);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = decide(Some(st), 112 * S, &limit, 1);
        assert!(!d.allowed);
        // 10 * (10 - e) / 10 + 2 + 1 <= 10 once e >= 3.
        assert_eq!(d.retry_after.unwrap().as_secs(), 1);
        let (d, _) = decide(Some(st), 120 * S, &limit, 1);
        assert!(d.allowed);
    }
}
