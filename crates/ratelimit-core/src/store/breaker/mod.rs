//! A circuit breaker around any store.
//!
//! Closed: calls go through and consecutive failures are counted. After
//! `failure_threshold` of them in a row the breaker opens: calls fail at once
//! with [`StoreError::CircuitOpen`], without touching the store, for
//! `recovery_timeout`. Then it is half-open: up to `half_open_max_calls`
//! probe calls go through; if they all succeed it closes, and if one fails
//! it opens again for a longer time (`backoff_multiplier`, capped at
//! `max_recovery_timeout`). Timeouts count as failures; errors that say the
//! request itself is wrong (an unsupported algorithm, an invalid check, bad
//! configuration) do not, since the store answered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock, UnixNanos};
use crate::store::{CheckRequest, Health, LimitCheck, Store};
use crate::{Decisions, FieldError, StoreError};

/// When the breaker opens and how it recovers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before probing (default 60 s).
    #[serde(with = "crate::serde_seconds")]
    pub recovery_timeout: Duration,
    /// Factor applied to the open time each time a probe fails (default 2).
    pub backoff_multiplier: f64,
    /// The longest the breaker stays open (default 600 s).
    #[serde(with = "crate::serde_seconds")]
    pub max_recovery_timeout: Duration,
    /// Probe calls let through while half-open; all must succeed to close (default 1).
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(60),
            backoff_multiplier: 2.0,
            max_recovery_timeout: Duration::from_secs(600),
            half_open_max_calls: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let bad = |field, why: String| Err(FieldError::new("circuit_breaker", field, why));
        if self.failure_threshold == 0 {
            return bad("failure_threshold", "must be at least 1".into());
        }
        crate::serde_seconds::check(self.recovery_timeout, (0.001, 3600.0))
            .or_else(|why| bad("recovery_timeout", why))?;
        if !(1.0..=MAX_BACKOFF_MULTIPLIER).contains(&self.backoff_multiplier) {
            return bad("backoff_multiplier", "must be a number from 1 to 100".into());
        }
        crate::serde_seconds::check(self.max_recovery_timeout, (0.001, MAX_RECOVERY_TIMEOUT.as_secs_f64()))
            .or_else(|why| bad("max_recovery_timeout", why))?;
        if self.max_recovery_timeout < self.recovery_timeout {
            // Named by the field that is most likely the one written: the
            // other usually keeps its default.
            let (field, other) = if self.max_recovery_timeout == Self::default().max_recovery_timeout {
                ("recovery_timeout", "max_recovery_timeout")
            } else {
                ("max_recovery_timeout", "recovery_timeout")
            };
            return bad(
                field,
                format!(
                    "recovery_timeout ({} seconds) must not be above max_recovery_timeout ({} seconds); change {field} or {other}",
                    self.recovery_timeout.as_secs_f64(),
                    self.max_recovery_timeout.as_secs_f64()
                ),
            );
        }
        if self.half_open_max_calls == 0 {
            return bad("half_open_max_calls", "must be at least 1".into());
        }
        Ok(())
    }
}

/// The largest `backoff_multiplier` accepted.
const MAX_BACKOFF_MULTIPLIER: f64 = 100.0;
/// The largest `max_recovery_timeout` accepted.
const MAX_RECOVERY_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The next open period: `open_for × multiplier`, capped at `max`. Computed
/// in floating point and compared before converting, since
/// `Duration::mul_f64` panics on a product it cannot hold.
fn backed_off(open_for: Duration, multiplier: f64, max: Duration) -> Duration {
    let seconds = open_for.as_secs_f64() * multiplier;
    if !seconds.is_finite() || seconds >= max.as_secs_f64() { max } else { Duration::from_secs_f64(seconds.max(0.0)) }
}

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// A few probe calls go through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A snapshot of the breaker, for health reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerStatus {
    /// The state now.
    pub state: BreakerState,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// Calls refused while open, since the breaker was made.
    pub rejected: u64,
    /// How long until the next probe, while open.
    pub retry_in: Option<Duration>,
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    opened_at: UnixNanos,
    open_for: Duration,
    probes_in_flight: u32,
    probes_passed: u32,
    rejected: u64,
}

/// Wraps a store with a circuit breaker; clones share the breaker.
#[derive(Clone)]
pub struct CircuitBreaker<S, C = SystemClock> {
    store: S,
    name: Arc<str>,
    config: Arc<BreakerConfig>,
    breaker: Arc<Mutex<Breaker>>,
    clock: C,
}

/// Whether a call may proceed, and as what.
enum Admission {
    Call,
    Probe,
}

/// Counts an abandoned probe (its future dropped) as finished, so a
/// cancelled request cannot leave the breaker half-open forever.
struct ProbeGuard<'a, S, C: Clock> {
    breaker: &'a CircuitBreaker<S, C>,
    armed: bool,
}

impl<S, C: Clock> Drop for ProbeGuard<'_, S, C> {
    fn drop(&mut self) {
        if self.armed {
            let mut b = self.breaker.breaker.lock().unwrap_or_else(|e| e.into_inner());
            b.probes_in_flight = b.probes_in_flight.saturating_sub(1);
        }
    }
}

impl<S: Store> CircuitBreaker<S> {
    /// Wraps `store`, named `name` in errors, logs and metrics.
    pub fn new(store: S, name: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, StoreError> {
        Self::with_clock(store, name, config, SystemClock)
    }
}

impl<S: Store, C: Clock> CircuitBreaker<S, C> {
    /// The same, reading time from `clock`.
    pub fn with_clock(
        store: S,
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        clock: C,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let open_for = config.recovery_timeout;
        Ok(Self {
            store,
            name: name.into(),
            config: Arc::new(config),
            breaker: Arc::new(Mutex::new(Breaker {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: 0,
                open_for,
                probes_in_flight: 0,
                probes_passed: 0,
                rejected: 0,
            })),
            clock,
        })
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.store
    }

    /// The breaker's state now.
    pub fn status(&self) -> BreakerStatus {
        let now = self.clock.now();
        let b = self.lock();
        let retry_in = (b.state == BreakerState::Open)
            .then(|| nanos(b.opened_at).saturating_add(b.open_for).saturating_sub(nanos(now)));
        BreakerStatus { state: b.state, consecutive_failures: b.failures, rejected: b.rejected, retry_in }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self) -> Result<Admission, StoreError> {
        let now = self.clock.now();
        let mut b = self.lock();
        if b.state == BreakerState::Open {
            let until = nanos(b.opened_at).saturating_add(b.open_for);
            if nanos(now) < until {
                b.rejected += 1;
                drop(b);
                metrics::counter!("ratelimit_circuit_rejected_total", "store" => self.name.to_string()).increment(1);
                return Err(StoreError::CircuitOpen {
                    store: self.name.to_string(),
                    retry_after: until - nanos(now),
                    cause: None,
                });
            }
            self.set_state(&mut b, BreakerState::HalfOpen);
            b.probes_in_flight = 0;
            b.probes_passed = 0;
        }
        match b.state {
            BreakerState::HalfOpen if b.probes_in_flight < self.config.half_open_max_calls => {
                b.probes_in_flight += 1;
                Ok(Admission::Probe)
            }
            BreakerState::HalfOpen => {
                b.rejected += 1;
                Err(StoreError::CircuitOpen { store: self.name.to_string(), retry_after: Duration::ZERO, cause: None })
            }
            _ => Ok(Admission::Call),
        }
    }

    fn record(&self, admission: &Admission, failed: bool) {
        let now = self.clock.now();
        let mut b = self.lock();
        if let Admission::Probe = admission {
            b.probes_in_flight = b.probes_in_flight.saturating_sub(1);
        }
        match (b.state, failed) {
            (BreakerState::Closed, false) => b.failures = 0,
            (BreakerState::Closed, true) => {
                b.failures += 1;
                if b.failures >= self.config.failure_threshold {
                    b.opened_at = now;
                    b.open_for = self.config.recovery_timeout;
                    self.set_state(&mut b, BreakerState::Open);
                }
            }
            (BreakerState::HalfOpen, false) => {
                b.probes_passed += 1;
                if b.probes_passed >= self.config.half_open_max_calls {
                    b.failures = 0;
                    b.open_for = self.config.recovery_timeout;
                    self.set_state(&mut b, BreakerState::Closed);
                }
            }
            (BreakerState::HalfOpen, true) => {
                b.failures += 1;
                b.opened_at = now;
                b.open_for = backed_off(b.open_for, self.config.backoff_multiplier, self.config.max_recovery_timeout);
                self.set_state(&mut b, BreakerState::Open);
            }
            // A call admitted before the breaker opened finishes late.
            (BreakerState::Open, _) => {}
        }
    }

    fn set_state(&self, b: &mut Breaker, state: BreakerState) {
        if b.state != state {
            tracing::warn!(store = %self.name, from = b.state.as_str(), to = state.as_str(), "circuit breaker changed state");
            b.state = state;
            let level = match state {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            };
            metrics::gauge!("ratelimit_circuit_state", "store" => self.name.to_string()).set(level);
        }
    }

    async fn guarded<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let admission = self.admit()?;
        let mut guard = ProbeGuard { breaker: self, armed: matches!(admission, Admission::Probe) };
        let result = call.await;
        guard.armed = false;
        self.record(&admission, result.as_ref().err().is_some_and(counts_as_failure));
        result
    }
}

fn nanos(n: UnixNanos) -> Duration {
    Duration::from_nanos(n)
}

/// Failures of the store itself; a store that answered "your request is
/// wrong" is healthy.
fn counts_as_failure(error: &StoreError) -> bool {
    matches!(error, StoreError::Backend { .. } | StoreError::Timeout { .. } | StoreError::Connecting { .. })
}

impl<S: Store, C: Clock> Store for CircuitBreaker<S, C> {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.guarded(self.store.check(request)).await
    }

    fn check_now(&self, request: CheckRequest<'_>) -> Option<Result<Decisions, StoreError>> {
        let admission = match self.admit() {
            Ok(admission) => admission,
            Err(error) => return Some(Err(error)),
        };
        match self.store.check_now(request) {
            Some(result) => {
                self.record(&admission, result.as_ref().err().is_some_and(counts_as_failure));
                Some(result)
            }
            None => {
                // The store needs the asynchronous path; hand the slot back.
                if let Admission::Probe = admission {
                    let mut b = self.lock();
                    b.probes_in_flight = b.probes_in_flight.saturating_sub(1);
                }
                None
            }
        }
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.guarded(self.store.peek(request)).await
    }

    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        self.guarded(self.store.reset(limit)).await
    }

    /// The store's own health, with the breaker's state added; it neither
    /// counts towards nor is refused by the breaker, so operators can see
    /// the store recover.
    async fn health(&self) -> Result<Health, StoreError> {
        let started = Instant::now();
        let status = self.status();
        let mut health = match self.store.health().await {
            Ok(health) => health,
            Err(error) if status.state == BreakerState::Closed => return Err(error),
            Err(error) => {
                return Err(StoreError::CircuitOpen {
                    store: self.name.to_string(),
                    retry_after: status.retry_in.unwrap_or_default(),
                    cause: Some(Box::new(error)),
                });
            }
        };
        health.latency = started.elapsed();
        health.details.push(("circuit".to_owned(), status.state.as_str().to_owned()));
        health.details.push(("consecutive_failures".to_owned(), status.consecutive_failures.to_string()));
        health.details.push(("rejected".to_owned(), status.rejected.to_string()));
        Ok(health)
    }
}

#[cfg(test)]
mod tests;
