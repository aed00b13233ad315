//! A store whose connection is made in the background from the moment it
//! is built.
//!
//! An application must start while its rate-limit store is down, and must
//! not be open to everyone while the store is merely connecting. So the
//! first attempt starts at once, in a task of its own; a call that arrives
//! while an attempt is under way waits for it, up to the store's connect
//! timeout; after a failed attempt calls fail at once until the next one,
//! and attempts repeat with a backoff that doubles up to
//! [`MAX_RETRY_DELAY`].

use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{BoxFuture, CheckRequest, Health, LimitCheck, SharedStore, Store};
use crate::{Decisions, StoreError};

/// The pause after the first failed attempt; it doubles after each failure.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest pause between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Opens the connection; called once per attempt.
pub type Connect = Box<dyn Fn() -> BoxFuture<'static, Result<SharedStore, StoreError>> + Send + Sync>;

/// Where the connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// An attempt is under way.
    Connecting,
    /// Connected: calls go to the store.
    Connected,
    /// The last attempt failed; the next starts at `retry_at`.
    Failed {
        /// Why the last attempt failed.
        reason: String,
        /// When the next attempt starts.
        retry_at: Instant,
    },
}

/// A store that connects in the background; see the [module docs](self).
pub struct ConnectingStore {
    shared: Arc<Shared>,
}

struct Shared {
    kind: &'static str,
    connect: Connect,
    /// How long a call waits for an attempt under way.
    wait: Duration,
    /// Set once, by the task, when an attempt succeeds: the fast path of
    /// every call after that.
    store: OnceLock<SharedStore>,
    state: watch::Sender<ConnectionState>,
    started: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ConnectingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectingStore")
            .field("kind", &self.shared.kind)
            .field("state", &*self.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

impl ConnectingStore {
    /// Starts connecting with `connect` (in the current Tokio runtime; when
    /// there is none, on the first call). `wait` bounds how long a call
    /// waits for an attempt under way: the store's connect timeout.
    pub fn start<F>(kind: &'static str, wait: Duration, connect: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<SharedStore, StoreError>> + Send + Sync + 'static,
    {
        let (state, _) = watch::channel(ConnectionState::Connecting);
        let store = Self {
            shared: Arc::new(Shared {
                kind,
                connect: Box::new(connect),
                wait,
                store: OnceLock::new(),
                state,
                started: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        store.ensure_started();
        store
    }

    /// Where the connection stands now.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// How long a call waits for an attempt under way.
    pub fn connect_timeout(&self) -> Duration {
        self.shared.wait
    }

    fn ensure_started(&self) {
        use std::sync::atomic::Ordering;
        if self.shared.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(attempts(Arc::downgrade(&self.shared)));
    }

    async fn get(&self) -> Result<&SharedStore, StoreError> {
        if let Some(store) = self.shared.store.get() {
            return Ok(store);
        }
        self.ensure_started();
        let mut state = self.shared.state.subscribe();
        let settled =
            tokio::time::timeout(self.shared.wait, state.wait_for(|s| !matches!(s, ConnectionState::Connecting))).await;
        let failed = match settled {
            Err(_) => return Err(StoreError::Connecting { store: self.shared.kind, waited: self.shared.wait }),
            Ok(Err(_)) => return Err(StoreError::backend(self.shared.kind, "the connection task has stopped")),
            Ok(Ok(state)) => state.clone(),
        };
        match failed {
            ConnectionState::Failed { reason, retry_at } => Err(StoreError::backend(
                self.shared.kind,
                format!(
                    "not connected: the last attempt failed ({reason}); the next starts in {:?}",
                    retry_at.saturating_duration_since(Instant::now())
                ),
            )),
            _ => self.shared.store.get().ok_or_else(|| StoreError::backend(self.shared.kind, "not connected")),
        }
    }
}

/// Connects, retrying with a capped backoff, until an attempt succeeds or
/// the store is dropped.
async fn attempts(shared: Weak<Shared>) {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        let Some(this) = shared.upgrade() else { return };
        this.state.send_replace(ConnectionState::Connecting);
        match (this.connect)().await {
            Ok(store) => {
                let _ = this.store.set(store);
                this.state.send_replace(ConnectionState::Connected);
                tracing::info!(store = this.kind, "rate limit store connected");
                return;
            }
            Err(error) => {
                tracing::warn!(store = this.kind, %error, retry_in = ?delay, "rate limit store cannot connect");
                let reason = error.to_string();
                this.state.send_replace(ConnectionState::Failed { reason, retry_at: Instant::now() + delay });
            }
        }
        drop(this);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

impl Store for ConnectingStore {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.get().await?.check(request).await
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.get().await?.peek(request).await
    }

    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        self.get().await?.reset(limit).await
    }

    async fn health(&self) -> Result<Health, StoreError> {
        self.get().await?.health().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{Algorithm, Limit, MemoryStore};

    fn limit() -> Limit {
        Limit::new("1/h".parse().unwrap(), Algorithm::FixedWindow)
    }

    /// A call made while the first attempt runs waits for it and is decided
    /// by the store it connects.
    #[tokio::test]
    async fn a_call_during_an_attempt_waits_for_it() {
        let store = ConnectingStore::start("slow", Duration::from_secs(30), || {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(SharedStore::new(MemoryStore::new()))
            })
        });
        assert_eq!(store.state(), ConnectionState::Connecting);
        let limit = limit();
        let checks = [LimitCheck { key: "k", limit: &limit }];
        let (a, b) =
            tokio::join!(store.check(CheckRequest::new(&checks, 1)), store.check(CheckRequest::new(&checks, 1)));
        let admitted = [a.unwrap().all_allowed(), b.unwrap().all_allowed()];
        assert_eq!(admitted.iter().filter(|a| **a).count(), 1, "{admitted:?}");
        assert_eq!(store.state(), ConnectionState::Connected);
    }

    /// The wait is bounded by the connect timeout, and the error says the
    /// store is connecting rather than down.
    #[tokio::test]
    async fn the_wait_is_bounded_and_reported_as_connecting() {
        let store = ConnectingStore::start("hung", Duration::from_millis(100), || {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(SharedStore::new(MemoryStore::new()))
            })
        });
        let limit = limit();
        let checks = [LimitCheck { key: "k", limit: &limit }];
        let started = Instant::now();
        let error = store.check(CheckRequest::new(&checks, 1)).await.unwrap_err();
        assert!(matches!(error, StoreError::Connecting { store: "hung", .. }), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    /// Dropping the store stops the attempts.
    #[tokio::test]
    async fn attempts_stop_when_the_store_is_dropped() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = attempts.clone();
        let store = ConnectingStore::start("down", Duration::from_millis(10), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(StoreError::backend("down", "connection refused")) })
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(store);
        let seen = attempts.load(Ordering::SeqCst);
        tokio::time::sleep(FIRST_RETRY_DELAY * 3).await;
        assert_eq!(attempts.load(Ordering::SeqCst), seen);
    }
}
