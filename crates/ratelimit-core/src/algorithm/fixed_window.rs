//! Fixed window.
//!
//! Time is cut into windows of one period, aligned to multiples of the
//! period since the Unix epoch, so every client's window ends at the same
//! instant and the reset time is stable. A window admits at most `limit`
//! units; a denied request is not counted. `reset_after` and, when denied,
//! `retry_after` are the time left in the current window.

use crate::clock::UnixNanos;
use crate::{Decision, Limit};

/// The state of one key: the end of the window it counts, and the count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    /// End of the counted window (exclusive), nanoseconds since the epoch.
    pub end: UnixNanos,
    /// Units admitted in that window.
    pub count: u64,
}

impl WindowState {
    /// When this state stops mattering.
    pub fn expires_at(&self) -> UnixNanos {
        self.end
    }
}

/// Decides a request of `cost` units at `now`. Returns the decision and the
/// state to store when the request is admitted.
pub fn decide(state: Option<WindowState>, now: UnixNanos, limit: &Limit, cost: u64) -> (Decision, WindowState) {
    let period = limit.period_nanos();
    let end = (now / period).saturating_add(1).saturating_mul(period);
    let count = match state {
        Some(s) if s.end == end => s.count,
        _ => 0,
    };
    let capacity = limit.capacity();
    let reset = end - now;
    let remaining = capacity.saturating_sub(count);
    let current = WindowState { end, count };
    if cost > capacity {
        return (Decision::denied(capacity, remaining, reset, None), current);
    }
    if cost <= remaining {
        let next = WindowState { end, count: count + cost };
        (Decision::admitted(capacity, remaining - cost, reset), next)
    } else {
        (Decision::denied(capacity, remaining, reset, Some(reset)), current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Rate};

    const S: u64 = 1_000_000_000;

    #[test]
    fn windows_align_to_the_epoch() {
        let limit = Limit::new(Rate::per_minute(2).unwrap(), Algorithm::FixedWindow);
        let now = 1_000 * 60 * S + 15 * S;
        let (d, st) = decide(None, now, &limit, 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.reset_after.as_secs(), 45);
        let (d, st) = decide(Some(st), now + S, &limit, 1);
        assert!(d.allowed && d.remaining == 0);
        let (d, _) = decide(Some(st), now + 2 * S, &limit, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after.unwrap().as_secs(), 43);
        let (d, _) = decide(Some(st), now + 45 * S, &limit, 2);
        assert!(d.allowed && d.remaining == 0);
        let (d, _) = decide(Some(st), now, &limit, 3);
        assert!(d.can_never_succeed());
    }
}
