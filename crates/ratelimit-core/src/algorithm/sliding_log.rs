//! Sliding window log.
//!
//! The key keeps the time and cost of every admitted request that is still
//! inside the window. A request at `t` is admitted when the units admitted
//! in `(t - period, t]` plus its cost stay within the limit; so for every
//! instant the window's total never exceeds the limit. Denied requests are
//! not logged, hence a key never holds more than `limit` entries, and
//! `limit` is at most [`MAX_SLIDING_LOG_LIMIT`].
//! `reset_after` is the time until the newest entry leaves the window;
//! `retry_after` the time until enough of the oldest entries have left.

use std::collections::VecDeque;

use crate::clock::UnixNanos;
use crate::{Decision, Limit};

/// The highest limit per period a sliding-log limit may have; checked by
/// [`Limit::validate`], which every store and builder calls.
///
/// Every store logs one entry per admitted request (its time and cost), so
/// a request's cost never adds work, but a key can hold up to `limit`
/// entries, and a check may prune or walk all of them: in memory 16 bytes
/// each, in SQL one row each, in Redis one sorted-set member each. The
/// bound keeps the largest key and the slowest check of every store
/// bounded. Higher rates belong to the sliding window counter, which keeps
/// two counters per key whatever the rate.
pub const MAX_SLIDING_LOG_LIMIT: u64 = 10_000;

/// The admitted requests of one key that are still inside the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingLog {
    entries: VecDeque<(UnixNanos, u64)>,
    total: u64,
    expires_at: UnixNanos,
}

impl SlidingLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log holding `entries` (time, cost), oldest first, as read back
    /// from a shared store.
    pub fn from_entries(entries: impl IntoIterator<Item = (UnixNanos, u64)>, period: u64) -> Self {
        let entries: VecDeque<(UnixNanos, u64)> = entries.into_iter().collect();
        // Saturating: stored entries come from outside (a database row may
        // be corrupt), and a total that saturates only denies until they expire.
        let total = entries.iter().fold(0u64, |sum, &(_, cost)| sum.saturating_add(cost));
        let expires_at = entries.back().map_or(0, |&(at, _)| at.saturating_add(period));
        Self { entries, total, expires_at }
    }

    /// The newest entry (time, cost).
    pub fn newest(&self) -> Option<(UnixNanos, u64)> {
        self.entries.back().copied()
    }

    /// When the newest entry leaves the window.
    pub fn expires_at(&self) -> UnixNanos {
        self.expires_at
    }

    /// The number of stored entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn prune(&mut self, now: UnixNanos, period: u64) {
        while let Some(&(at, cost)) = self.entries.front() {
            if at.saturating_add(period) > now {
                break;
            }
            self.entries.pop_front();
            self.total = self.total.saturating_sub(cost);
        }
    }

    /// Decides a request of `cost` units at `now`, logging it when admitted
    /// and `charge` is set.
    pub fn decide(&mut self, now: UnixNanos, limit: &Limit, cost: u64, charge: bool) -> Decision {
        let period = limit.period_nanos();
        self.prune(now, period);
        let capacity = limit.capacity();
        let remaining = capacity.saturating_sub(self.total);
        let reset = self.expires_at.saturating_sub(now);
        if cost > capacity {
            return Decision::denied(capacity, remaining, reset, None);
        }
        if cost <= remaining {
            if charge && cost > 0 {
                // A clock that steps back must not break the log's order.
                let at = self.entries.back().map_or(now, |&(last, _)| last.max(now));
                self.entries.push_back((at, cost));
                self.total += cost;
                self.expires_at = at.saturating_add(period);
            }
            let reset = if cost > 0 { self.expires_at.max(now.saturating_add(period)) - now } else { reset };
            return Decision::admitted(capacity, remaining - cost, reset);
        }
        let mut to_free = cost - remaining;
        let mut retry = reset;
        for &(at, entry_cost) in &self.entries {
            retry = at.saturating_add(period).saturating_sub(now);
            if entry_cost >= to_free {
                break;
            }
            to_free -= entry_cost;
        }
        Decision::denied(capacity, remaining, reset, Some(retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Rate};

    const S: u64 = 1_000_000_000;

    #[test]
    fn frees_units_as_entries_leave_the_window() {
        let limit = Limit::new(Rate::new(3, std::time::Duration::from_secs(10)).unwrap(), Algorithm::SlidingLog);
        let mut log = SlidingLog::new();
        let t = 100 * S;
        assert!(log.decide(t, &limit, 1, true).allowed);
        assert!(log.decide(t + 2 * S, &limit, 2, true).allowed);
        let d = log.decide(t + 3 * S, &limit, 1, true);
        assert!(!d.allowed);
        assert_eq!(d.retry_after.unwrap().as_secs(), 7);
        assert_eq!(d.reset_after.as_secs(), 9);
        let d = log.decide(t + 3 * S, &limit, 3, true);
        assert_eq!(d.retry_after.unwrap().as_secs(), 9);
        assert!(log.decide(t + 10 * S, &limit, 1, true).allowed);
        assert_eq!(log.len(), 2);
        assert!(log.decide(t, &limit, 4, true).can_never_succeed());
    }

    #[test]
    fn a_request_of_many_units_is_one_entry() {
        let rate = Rate::per_minute(MAX_SLIDING_LOG_LIMIT).unwrap();
        let limit = Limit::new(rate, Algorithm::SlidingLog);
        let mut log = SlidingLog::new();
        let t = 100 * S;
        let d = log.decide(t, &limit, MAX_SLIDING_LOG_LIMIT - 1, true);
        assert!(d.allowed && d.remaining == 1);
        assert_eq!(log.len(), 1, "the cost is stored with the entry, not as one entry per unit");
        assert!(log.decide(t + S, &limit, 1, true).allowed);
        let d = log.decide(t + S, &limit, 2, true);
        assert_eq!(d.retry_after.unwrap().as_secs(), 59, "two units are free once the big entry leaves");
        assert_eq!(log.len(), 2);
    }
}
