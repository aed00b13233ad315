//! The store traits every backend implements.
//!
//! [`Store`] is the native trait, with `impl Future + Send` methods so a
//! concrete store costs no boxing. [`DynStore`] is its object-safe twin,
//! implemented for every `Store`, for stores chosen at run time;
//! [`SharedStore`] is the cloneable handle the middleware holds.
//! [`CounterStore`] is the small four-operation trait for plugging in a
//! custom backend, turned into a fixed-window `Store` by [`CounterAdapter`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::UnixNanos;
use crate::{Decisions, Limit, StoreError};

pub mod breaker;
mod connecting;
mod counter;
pub mod multi;
mod periodic;

pub use connecting::{ConnectingStore, ConnectionState, FIRST_RETRY_DELAY, MAX_RETRY_DELAY};
pub use counter::{CounterAdapter, CounterStore};
pub(crate) use periodic::Periodic;

/// A boxed, sendable future, as returned by [`DynStore`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One limit to check, on the key that holds its state.
#[derive(Clone, Copy, Debug)]
pub struct LimitCheck<'a> {
    /// The full store key (see [`crate::store_key::compose`]).
    pub key: &'a str,
    /// The limit that applies to it.
    pub limit: &'a Limit,
}

/// A check of one request against one or more limits.
///
/// The limits are decided together: the request is admitted and charged on
/// every limit, or on none.
#[derive(Clone, Copy, Debug)]
pub struct CheckRequest<'a> {
    /// The limits, each with its key.
    pub limits: &'a [LimitCheck<'a>],
    /// Units the request consumes on each limit.
    pub cost: u64,
    /// Decide at this time instead of the store's own clock; for
    /// deterministic tests.
    pub at: Option<UnixNanos>,
}

impl<'a> CheckRequest<'a> {
    /// A check of `cost` units at the store's current time.
    pub fn new(limits: &'a [LimitCheck<'a>], cost: u64) -> Self {
        Self { limits, cost, at: None }
    }

    /// The same check at an explicit time.
    pub fn at(self, at: UnixNanos) -> Self {
        Self { at: Some(at), ..self }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.limits.is_empty() {
            return Err(StoreError::InvalidRequest("a check needs at least one limit"));
        }
        for check in self.limits {
            check.limit.validate()?;
        }
        Ok(())
    }
}

/// What a store reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The kind of store, e.g. `memory`.
    pub store: &'static str,
    /// How long the health probe took.
    pub latency: Duration,
    /// Store-specific facts, e.g. `keys=123`.
    pub details: Vec<(String, String)>,
}

/// A place where rate-limit state lives, deciding atomically next to it.
///
/// Implementations run the whole decision (all limits of one request) as
/// one atomic step: under a lock, in a script or in one statement.
pub trait Store: Send + Sync + 'static {
    /// Decides the request and charges it when every limit admits it.
    fn check<'a>(&'a self, request: CheckRequest<'a>) -> impl Future<Output = Result<Decisions, StoreError>> + Send;

    /// Decides and charges at once when the store can answer without
    /// waiting on I/O (the memory store can); `None` means "call
    /// [`check`](Store::check)". Callers on a hot path use it to skip
    /// creating a future.
    fn check_now(&self, request: CheckRequest<'_>) -> Option<Result<Decisions, StoreError>> {
        let _ = request;
        None
    }

    /// Decides the request as `check` would, without charging anything.
    fn peek<'a>(&'a self, request: CheckRequest<'a>) -> impl Future<Output = Result<Decisions, StoreError>> + Send;

    /// Forgets all state of one limit on one key.
    fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Probes the store.
    fn health(&self) -> impl Future<Output = Result<Health, StoreError>> + Send;
}

/// The object-safe form of [`Store`], implemented for every store.
pub trait DynStore: Send + Sync + 'static {
    /// See [`Store::check`].
    fn check_boxed<'a>(&'a self, request: CheckRequest<'a>) -> BoxFuture<'a, Result<Decisions, StoreError>>;
    /// See [`Store::check_now`].
    fn check_now_dyn(&self, request: CheckRequest<'_>) -> Option<Result<Decisions, StoreError>>;
    /// See [`Store::peek`].
    fn peek_boxed<'a>(&'a self, request: CheckRequest<'a>) -> BoxFuture<'a, Result<Decisions, StoreError>>;
    /// See [`Store::reset`].
    fn reset_boxed<'a>(&'a self, limit: LimitCheck<'a>) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`Store::health`].
    fn health_boxed(&self) -> BoxFuture<'_, Result<Health, StoreError>>;
}

impl<S: Store> DynStore for S {
    fn check_boxed<'a>(&'a self, request: CheckRequest<'a>) -> BoxFuture<'a, Result<Decisions, StoreError>> {
        Box::pin(self.check(request))
    }
    fn check_now_dyn(&self, request: CheckRequest<'_>) -> Option<Result<Decisions, StoreError>> {
        self.check_now(request)
    }
    fn peek_boxed<'a>(&'a self, request: CheckRequest<'a>) -> BoxFuture<'a, Result<Decisions, StoreError>> {
        Box::pin(self.peek(request))
    }
    fn reset_boxed<'a>(&'a self, limit: LimitCheck<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.reset(limit))
    }
    fn health_boxed(&self) -> BoxFuture<'_, Result<Health, StoreError>> {
        Box::pin(self.health())
    }
}

/// A cloneable handle to any store; clones share the same state.
#[derive(Clone)]
pub struct SharedStore(Arc<dyn DynStore>);

impl SharedStore {
    /// Wraps a store; a store that is already a `SharedStore` is returned
    /// as it is, not wrapped a second time (which would cost a second
    /// indirection and boxed future per call).
    pub fn new<S: Store>(store: S) -> Self {
        if let Some(shared) = (&store as &dyn std::any::Any).downcast_ref::<SharedStore>() {
            return shared.clone();
        }
        Self(Arc::new(store))
    }

    /// Wraps a store that is already behind an `Arc`.
    pub fn from_arc(store: Arc<dyn DynStore>) -> Self {
        Self(store)
    }
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedStore")
    }
}

impl Store for SharedStore {
    fn check<'a>(&'a self, request: CheckRequest<'a>) -> impl Future<Output = Result<Decisions, StoreError>> + Send {
        self.0.check_boxed(request)
    }
    fn check_now(&self, request: CheckRequest<'_>) -> Option<Result<Decisions, StoreError>> {
        self.0.check_now_dyn(request)
    }
    fn peek<'a>(&'a self, request: CheckRequest<'a>) -> impl Future<Output = Result<Decisions, StoreError>> + Send {
        self.0.peek_boxed(request)
    }
    fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.0.reset_boxed(limit)
    }
    fn health(&self) -> impl Future<Output = Result<Health, StoreError>> + Send {
        self.0.health_boxed()
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;

    #[test]
    fn a_shared_store_is_not_wrapped_twice() {
        let once = SharedStore::new(crate::MemoryStore::new());
        let again = SharedStore::new(once.clone());
        assert!(Arc::ptr_eq(&once.0, &again.0));
    }
}
