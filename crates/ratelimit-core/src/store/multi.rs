//! Several stores behind one: failover and round robin.
//!
//! An ordered list of named stores. With `first_healthy` (the default)
//! every call goes to the first store currently healthy; with
//! `round_robin` calls rotate over the healthy ones. A call that fails with
//! a store failure (backend error, timeout, open circuit) marks that store
//! unhealthy and moves on to the next one at once, within the same call. A
//! background task probes every store's `health()` each
//! `health_check_interval`, each probe bounded by `health_check_timeout`,
//! and brings stores that answer back into rotation. When no store is
//! healthy, calls still try them all in order, so a recovery is noticed
//! without waiting for the next health check.
//!
//! Each store keeps its own counters: after a failover, limits start from
//! the state of the store now serving, so a client may get up to one extra
//! allowance per failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::store::{CheckRequest, Health, LimitCheck, SharedStore, Store};
use crate::{Decisions, StoreError};

/// How calls are spread over the healthy stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first healthy store in the list serves every call.
    #[default]
    FirstHealthy,
    /// Calls rotate over the healthy stores.
    RoundRobin,
}

/// Failover settings, with django-smart-ratelimit's names.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultiStoreConfig {
    /// `first_healthy` (default) or `round_robin`.
    pub multi_backend_strategy: Strategy,
    /// How often every store's health is probed (default 30 s).
    #[serde(with = "crate::serde_seconds")]
    pub health_check_interval: Duration,
    /// The longest one probe may take (default 5 s).
    #[serde(with = "crate::serde_seconds")]
    pub health_check_timeout: Duration,
}

impl Default for MultiStoreConfig {
    fn default() -> Self {
        Self {
            multi_backend_strategy: Strategy::FirstHealthy,
            health_check_interval: Duration::from_secs(30),
            health_check_timeout: Duration::from_secs(5),
        }
    }
}

impl MultiStoreConfig {
    /// Checks the durations against their plausible ranges, in seconds;
    /// the error names the field.
    pub fn validate(&self) -> Result<(), crate::FieldError> {
        for (field, value, range) in [
            ("health_check_interval", self.health_check_interval, (0.1, 3600.0)),
            ("health_check_timeout", self.health_check_timeout, (0.01, 60.0)),
        ] {
            crate::serde_seconds::check(value, range).map_err(|problem| crate::FieldError::new("", field, problem))?;
        }
        Ok(())
    }
}

struct Member {
    name: String,
    store: SharedStore,
    healthy: AtomicBool,
}

struct Inner {
    members: Vec<Member>,
    config: MultiStoreConfig,
    next: AtomicUsize,
    /// The periodic health checks, when a runtime was there to run them.
    checker: super::Periodic,
}

/// Several stores behind one [`Store`]; clones share them.
#[derive(Clone)]
pub struct MultiStore {
    inner: Arc<Inner>,
}

impl MultiStore {
    /// Builds the chain from `(name, store)` pairs, in order of preference.
    /// The health checks start when this runs inside a Tokio runtime and
    /// stop when the last clone is dropped.
    pub fn new(
        stores: impl IntoIterator<Item = (String, SharedStore)>,
        config: MultiStoreConfig,
    ) -> Result<Self, StoreError> {
        let members: Vec<Member> =
            stores.into_iter().map(|(name, store)| Member { name, store, healthy: AtomicBool::new(true) }).collect();
        if members.is_empty() {
            return Err(crate::FieldError::new("", "backends", "at least one store is needed").into());
        }
        for (i, m) in members.iter().enumerate() {
            if m.name.trim().is_empty() || members[..i].iter().any(|o| o.name == m.name) {
                let problem = format!("store names must be unique and set ({:?})", m.name);
                return Err(crate::FieldError::new("", "backends", problem).into());
            }
        }
        config.validate()?;
        let every = config.health_check_interval;
        let inner = Arc::new(Inner { members, config, next: AtomicUsize::new(0), checker: Default::default() });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            inner.checker.start(&handle, &inner, every, |inner| async move { inner.probe_all().await });
        }
        Ok(Self { inner })
    }

    /// Each store's name and whether it is in rotation.
    pub fn members(&self) -> Vec<(String, bool)> {
        self.inner.members.iter().map(|m| (m.name.clone(), m.healthy.load(Ordering::Acquire))).collect()
    }

    /// Probes every store now (the background task does this each interval).
    pub async fn check_health(&self) {
        self.inner.probe_all().await;
    }

    /// The order in which this call tries the stores: healthy ones first
    /// (rotated for round robin), then the others.
    fn order(&self) -> Vec<usize> {
        let members = &self.inner.members;
        let n = members.len();
        let start = match self.inner.config.multi_backend_strategy {
            Strategy::FirstHealthy => 0,
            Strategy::RoundRobin => self.inner.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        let rotated = (0..n).map(|i| (start + i) % n);
        let (healthy, unhealthy): (Vec<usize>, Vec<usize>) =
            rotated.partition(|&i| members[i].healthy.load(Ordering::Acquire));
        healthy.into_iter().chain(unhealthy).collect()
    }

    async fn failover<'a, T, F, Fut>(&'a self, call: F) -> Result<T, StoreError>
    where
        F: Fn(&'a SharedStore) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut last = None;
        for i in self.order() {
            let member = &self.inner.members[i];
            match call(&member.store).await {
                Ok(value) => {
                    if !member.healthy.swap(true, Ordering::AcqRel) {
                        tracing::info!(store = %member.name, "store answers again");
                    }
                    return Ok(value);
                }
                Err(error) if is_outage(&error) => {
                    if leaves_rotation(&error) && member.healthy.swap(false, Ordering::AcqRel) {
                        tracing::warn!(store = %member.name, %error, "store failed; failing over");
                    }
                    last = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| crate::FieldError::new("", "backends", "no store configured").into()))
    }
}

/// Whether a failed call takes its store out of rotation until its next
/// good health check. A timeout does: the next request would wait as long
/// again. An open breaker does: the store is known to be down. A fast
/// error (a refused connection) does not: trying the store costs little,
/// and its circuit breaker, if it has one, must see those failures to open.
/// A store still connecting after its connect timeout is treated as a
/// timeout.
fn leaves_rotation(error: &StoreError) -> bool {
    matches!(error, StoreError::Timeout { .. } | StoreError::Connecting { .. } | StoreError::CircuitOpen { .. })
}

fn is_outage(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Backend { .. }
            | StoreError::Timeout { .. }
            | StoreError::Connecting { .. }
            | StoreError::CircuitOpen { .. }
    )
}

impl Inner {
    async fn probe_all(&self) {
        for member in &self.members {
            let healthy = matches!(
                tokio::time::timeout(self.config.health_check_timeout, member.store.health()).await,
                Ok(Ok(_))
            );
            let was = member.healthy.swap(healthy, Ordering::AcqRel);
            if was != healthy {
                tracing::warn!(store = %member.name, healthy, "store health changed");
            }
        }
    }
}

impl Store for MultiStore {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.failover(|store| store.check(request)).await
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.failover(|store| store.peek(request)).await
    }

    /// Resets the key in every store, so no failover brings old state back.
    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        let mut first_error = None;
        for member in &self.inner.members {
            if let Err(error) = member.store.reset(limit).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Healthy when any store is; the details list every store's state.
    async fn health(&self) -> Result<Health, StoreError> {
        let started = Instant::now();
        self.inner.probe_all().await;
        let members = self.members();
        let details: Vec<(String, String)> = members
            .iter()
            .map(|(name, ok)| (name.clone(), if *ok { "healthy" } else { "unhealthy" }.to_owned()))
            .collect();
        if members.iter().any(|(_, ok)| *ok) {
            Ok(Health { store: "multi", latency: started.elapsed(), details })
        } else {
            Err(StoreError::backend("multi", format!("no store is healthy: {details:?}")))
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::conformance::{Failure, FaultyStore};
    use crate::{Algorithm, Limit, MemoryStore};

    fn chain(strategy: Strategy) -> (MultiStore, FaultyStore, FaultyStore) {
        let (a, b) = (FaultyStore::default(), FaultyStore::default());
        let config = MultiStoreConfig {
            multi_backend_strategy: strategy,
            health_check_interval: Duration::from_secs(30),
            health_check_timeout: Duration::from_secs(1),
        };
        let multi = MultiStore::new(
            [("a".to_owned(), SharedStore::new(a.clone())), ("b".to_owned(), SharedStore::new(b.clone()))],
            config,
        )
        .unwrap();
        (multi, a, b)
    }

    async fn remaining(store: &impl Store, key: &str) -> Result<u64, StoreError> {
        let limit = Limit::new("100/h".parse().unwrap(), Algorithm::FixedWindow);
        let checks = [LimitCheck { key, limit: &limit }];
        store.check(CheckRequest::new(&checks, 1)).await.map(|d| d[0].remaining)
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_at_once_and_recovers_after_a_health_check() {
        let (multi, a, b) = chain(Strategy::FirstHealthy);
        assert_eq!(remaining(&multi, "k").await.unwrap(), 99);
        a.fail_with(Some(Failure::Timeout));
        // The failing call itself is answered by the next store.
        assert_eq!(remaining(&multi, "k").await.unwrap(), 99, "b starts with its own counters");
        assert_eq!(multi.members(), [("a".to_owned(), false), ("b".to_owned(), true)]);
        assert_eq!(remaining(&multi, "k").await.unwrap(), 98);
        a.fail_with(None);
        // Until a health check sees it, a stays out of rotation.
        assert_eq!(remaining(&multi, "k").await.unwrap(), 97);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(multi.members(), [("a".to_owned(), true), ("b".to_owned(), true)]);
        assert_eq!(remaining(&multi, "k").await.unwrap(), 98, "a again, with its own counters");
        assert!(!b.inner().is_empty());
    }

    #[tokio::test]
    async fn a_fast_failure_leaves_the_store_in_rotation_for_its_breaker() {
        let (multi, a, _b) = chain(Strategy::FirstHealthy);
        a.fail_with(Some(Failure::Refused));
        assert_eq!(remaining(&multi, "k").await.unwrap(), 99, "answered by b");
        assert_eq!(multi.members(), [("a".to_owned(), true), ("b".to_owned(), true)]);
        a.fail_with(None);
        assert_eq!(remaining(&multi, "k").await.unwrap(), 99, "a is tried first again at once");
    }

    #[tokio::test]
    async fn round_robin_spreads_calls_and_all_down_is_an_error() {
        let (multi, a, b) = chain(Strategy::RoundRobin);
        for i in 0..10 {
            remaining(&multi, &format!("k{i}")).await.unwrap();
        }
        assert_eq!((a.inner().len(), b.inner().len()), (5, 5));
        a.fail_with(Some(Failure::Refused));
        b.fail_with(Some(Failure::Refused));
        assert!(matches!(remaining(&multi, "k").await, Err(StoreError::Backend { .. })));
        assert!(multi.health().await.is_err());
        // With everything down, calls still try the stores and notice a recovery.
        b.fail_with(None);
        assert!(remaining(&multi, "k").await.is_ok());
        let health = multi.health().await.unwrap();
        assert!(health.details.contains(&("a".to_owned(), "unhealthy".to_owned())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_health_check_is_cut_off_by_its_timeout() {
        struct Hangs;
        impl Store for Hangs {
            async fn check<'a>(&'a self, _: CheckRequest<'a>) -> Result<Decisions, StoreError> {
                std::future::pending().await
            }
            async fn peek<'a>(&'a self, _: CheckRequest<'a>) -> Result<Decisions, StoreError> {
                std::future::pending().await
            }
            async fn reset<'a>(&'a self, _: LimitCheck<'a>) -> Result<(), StoreError> {
                std::future::pending().await
            }
            async fn health(&self) -> Result<Health, StoreError> {
                std::future::pending().await
            }
        }
        let multi = MultiStore::new(
            [("hangs".to_owned(), SharedStore::new(Hangs)), ("mem".to_owned(), SharedStore::new(MemoryStore::new()))],
            MultiStoreConfig::default(),
        )
        .unwrap();
        let started = tokio::time::Instant::now();
        multi.check_health().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5), "the default 5 s timeout applies");
        assert_eq!(multi.members(), [("hangs".to_owned(), false), ("mem".to_owned(), true)]);
    }

    #[test]
    fn bad_chains_are_refused() {
        assert!(MultiStore::new(Vec::new(), MultiStoreConfig::default()).is_err());
        let twice = [
            ("a".to_owned(), SharedStore::new(MemoryStore::new())),
            ("a".to_owned(), SharedStore::new(MemoryStore::new())),
        ];
        assert!(MultiStore::new(twice, MultiStoreConfig::default()).err().unwrap().to_string().contains("unique"));
    }
}
