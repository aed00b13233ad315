//! Simple custom stores: four counter operations are enough.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{CheckRequest, Health, LimitCheck, Store};
use crate::clock::{Clock, SystemClock, UnixNanos};
use crate::{Algorithm, Decision, Decisions, StoreError};

/// A minimal backend: counters with an expiry.
///
/// Implement these four operations over any database or service and wrap
/// the implementation in [`CounterAdapter`] to get a fixed-window [`Store`].
pub trait CounterStore: Send + Sync + 'static {
    /// Adds `delta` (which may be negative) to the counter at `key` and
    /// returns the new value. A counter that does not exist starts at 0 and
    /// expires after `ttl`; an existing counter keeps its expiry.
    fn incr(&self, key: &str, delta: i64, ttl: Duration) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The counter's value; 0 when it does not exist or has expired.
    fn get(&self, key: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// How long until the counter expires; `None` when it does not exist.
    fn expires_in(&self, key: &str) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Removes the counter.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Turns a [`CounterStore`] into a fixed-window [`Store`].
///
/// Each window has its own counter (`{key}@{window end in seconds}`), so
/// windows stay aligned to the epoch even when the backend's expiry is
/// coarse. A request is admitted by incrementing first and, when that
/// overshoots a limit, handing the units back: the limit is never exceeded
/// and a denied request ends up uncharged, but while it is being handed back
/// a concurrent request may see the window fuller than it is. Other
/// algorithms need a native store.
#[derive(Clone, Debug)]
pub struct CounterAdapter<C, K = SystemClock> {
    counters: C,
    clock: K,
}

impl<C: CounterStore> CounterAdapter<C> {
    /// Wraps `counters`, reading time from the system clock.
    pub fn new(counters: C) -> Self {
        Self::with_clock(counters, SystemClock)
    }
}

impl<C: CounterStore, K: Clock> CounterAdapter<C, K> {
    /// Wraps `counters`, reading time from `clock`.
    pub fn with_clock(counters: C, clock: K) -> Self {
        Self { counters, clock }
    }

    /// The wrapped backend.
    pub fn get_ref(&self) -> &C {
        &self.counters
    }

    fn window(&self, request: &CheckRequest<'_>, period: u64) -> (UnixNanos, UnixNanos) {
        let now = request.at.unwrap_or_else(|| self.clock.now());
        let end = (now / period).saturating_add(1).saturating_mul(period);
        (now, end)
    }

    fn supported(request: &CheckRequest<'_>) -> Result<(), StoreError> {
        request.validate()?;
        match request.limits.iter().find(|l| l.limit.algorithm() != Algorithm::FixedWindow) {
            Some(l) => Err(StoreError::Unsupported {
                store: "counter",
                algorithm: l.limit.algorithm(),
                supported: "fixed_window",
            }),
            None => Ok(()),
        }
    }

    async fn decide(&self, request: CheckRequest<'_>, charge: bool) -> Result<Decisions, StoreError> {
        Self::supported(&request)?;
        let cost = i64::try_from(request.cost).map_err(|_| StoreError::InvalidRequest("the cost is too large"))?;
        let mut decisions = Decisions::new();
        let mut charged: smallvec::SmallVec<[String; 2]> = smallvec::SmallVec::new();
        for check in request.limits {
            let capacity = check.limit.capacity();
            let (now, end) = self.window(&request, check.limit.period_nanos());
            let reset = end - now;
            let key = window_key(check.key, end);
            if request.cost > capacity {
                let used = self.counters.get(&key).await?;
                let remaining = capacity.saturating_sub(u64::try_from(used).unwrap_or(0));
                decisions.push(Decision::denied(capacity, remaining, reset, None));
                continue;
            }
            let after = if charge && cost > 0 {
                let after = self.counters.incr(&key, cost, Duration::from_nanos(reset)).await?;
                charged.push(key);
                after
            } else {
                self.counters.get(&key).await? + cost
            };
            let after = u64::try_from(after).unwrap_or(0);
            if after <= capacity {
                decisions.push(Decision::admitted(capacity, capacity - after, reset));
            } else {
                let before = after - request.cost;
                decisions.push(Decision::denied(capacity, capacity.saturating_sub(before), reset, Some(reset)));
            }
        }
        if !decisions.all_allowed() {
            for key in &charged {
                self.counters.incr(key, -cost, Duration::ZERO).await?;
            }
        }
        Ok(decisions)
    }
}

impl<C: CounterStore, K: Clock> Store for CounterAdapter<C, K> {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, true).await
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, false).await
    }

    /// Deletes the counter of the current window; older ones have expired.
    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        let period = limit.limit.period_nanos();
        let end = (self.clock.now() / period).saturating_add(1).saturating_mul(period);
        self.counters.delete(&window_key(limit.key, end)).await
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let started = Instant::now();
        self.counters.expires_in("health:probe").await?;
        Ok(Health { store: "counter", latency: started.elapsed(), details: Vec::new() })
    }
}

fn window_key(key: &str, window_end: UnixNanos) -> String {
    format!("{key}@{}", window_end / 1_000_000_000)
}
