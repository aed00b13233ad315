//! A conformance suite for [`Store`] implementations.
//!
//! It drives a store through deterministic pseudo-random schedules with
//! explicit times ([`CheckRequest::at`]) and compares every decision with a
//! small reference model written here, independently of the algorithms the
//! stores share: the model keeps the full history of admitted requests (or,
//! for the token bucket, a debt in nanoseconds) and answers by brute force.
//! A store passes when, for every step, `allowed`, `limit` and `remaining`
//! are equal, `retry_after` is the first instant (at the store's time
//! resolution) at which the model admits the same request, and
//! `reset_after` is when the model is back to full capacity.
//!
//! ```no_run
//! # async fn run() {
//! use ratelimit_core::conformance::{ConformanceOptions, run_all};
//! let store = ratelimit_core::MemoryStore::new();
//! run_all(&store, &ConformanceOptions::default()).await;
//! # }
//! ```

mod model;
mod scenarios;

use crate::clock::UnixNanos;
use crate::store::{CheckRequest, Health, LimitCheck, Store};
use crate::{Algorithm, Decisions, Limit, Rate, StoreError};

pub use self::scenarios::{
    denied_requests_are_not_charged, limits_are_all_or_nothing, multi_limit_schedules, peek_matches_check,
    peek_never_charges, reset_restores_capacity, schedules, sliding_logs_are_bounded, zero_cost_is_free,
};

/// How to run the suite against one store.
#[derive(Clone, Debug)]
pub struct ConformanceOptions {
    /// The store's time resolution in nanoseconds: 1 for the memory store,
    /// 1,000 for stores that compute in microseconds. Schedule times are
    /// multiples of it, and "one instant earlier" means one resolution step.
    pub resolution_nanos: u64,
    /// Prefix of every key the suite writes, so runs on a shared server do
    /// not meet.
    pub key_prefix: String,
    /// Where the schedules start, nanoseconds since the epoch.
    pub start: UnixNanos,
    /// Steps per schedule.
    pub steps: usize,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        Self {
            resolution_nanos: 1,
            key_prefix: "conformance:".to_owned(),
            // 20 s into a minute, so windows do not start with the schedule.
            start: 1_700_000_020 * 1_000_000_000,
            steps: 160,
        }
    }
}

/// Runs every scenario; panics with a description of the first mismatch.
pub async fn run_all<S: Store>(store: &S, options: &ConformanceOptions) {
    schedules(store, options).await;
    peek_never_charges(store, options).await;
    limits_are_all_or_nothing(store, options).await;
    reset_restores_capacity(store, options).await;
    multi_limit_schedules(store, options).await;
    peek_matches_check(store, options).await;
    denied_requests_are_not_charged(store, options).await;
    zero_cost_is_free(store, options).await;
    sliding_logs_are_bounded(store, options).await;
}

/// The limits every scenario runs, for every algorithm.
pub fn limits() -> Vec<Limit> {
    let rate = |s: &str| s.parse::<Rate>().expect("valid rate");
    let mut limits = Vec::new();
    for algorithm in Algorithm::ALL {
        for r in ["1/s", "5/10s", "3/m", "100/h", "7/3s"] {
            limits.push(Limit::new(rate(r), algorithm));
        }
    }
    limits.push(Limit::new(rate("2/s"), Algorithm::TokenBucket).with_burst(5).expect("valid burst"));
    limits.push(Limit::new(rate("10/m"), Algorithm::TokenBucket).with_burst(1).expect("valid burst"));
    limits
}

/// A store whose backend is down: every call fails with a backend error,
/// for testing failure policies, breakers and failover.
#[derive(Clone, Copy, Debug, Default)]
pub struct DownStore;

impl DownStore {
    fn error() -> StoreError {
        StoreError::backend("down", "connection refused")
    }
}

impl Store for DownStore {
    async fn check<'a>(&'a self, _: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        Err(Self::error())
    }
    async fn peek<'a>(&'a self, _: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        Err(Self::error())
    }
    async fn reset<'a>(&'a self, _: LimitCheck<'a>) -> Result<(), StoreError> {
        Err(Self::error())
    }
    async fn health(&self) -> Result<Health, StoreError> {
        Err(Self::error())
    }
}

/// How a [`FaultyStore`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// At once, as a refused connection (a backend error).
    Refused,
    /// As a timeout.
    Timeout,
}

/// A memory store that can be made to fail, at once or as a timeout, and
/// counts the calls that reach it: for testing breakers, failover and
/// failure policies against a store that goes down and comes back.
#[cfg(feature = "memory")]
#[derive(Clone, Default)]
pub struct FaultyStore {
    store: crate::MemoryStore,
    failure: std::sync::Arc<std::sync::Mutex<Option<Failure>>>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(feature = "memory")]
impl FaultyStore {
    /// Fails every call from now on as `failure`, or none with `None`.
    pub fn fail_with(&self, failure: Option<Failure>) {
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }

    /// The memory store behind it, for looking at its state.
    pub fn inner(&self) -> &crate::MemoryStore {
        &self.store
    }

    /// The calls that reached the store, failed ones included.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn outcome(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            None => Ok(()),
            Some(Failure::Refused) => Err(StoreError::backend("faulty", "connection refused")),
            Some(Failure::Timeout) => {
                Err(StoreError::Timeout { store: "faulty", after: std::time::Duration::from_millis(100) })
            }
        }
    }
}

#[cfg(feature = "memory")]
impl Store for FaultyStore {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.outcome()?;
        self.store.check(request).await
    }
    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.outcome()?;
        self.store.peek(request).await
    }
    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        self.outcome()?;
        self.store.reset(limit).await
    }
    async fn health(&self) -> Result<Health, StoreError> {
        self.outcome()?;
        self.store.health().await
    }
}
