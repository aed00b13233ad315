//! Rates, rate-limiting algorithms, decisions, clocks and stores.
//!
//! This crate has no HTTP types: it decides whether a request identified by
//! a key may proceed under one or more [`Limit`]s, atomically, in a
//! [`Store`]. The Tower/Axum middleware lives in `tower-ratelimit-smart`.
//!
//! ```
//! use ratelimit_core::{store_key, Algorithm, CheckRequest, Limit, LimitCheck, MemoryStore, Store};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let limit = Limit::new("5/m".parse()?, Algorithm::SlidingLog);
//! let key = store_key::compose(store_key::DEFAULT_PREFIX, "login", limit.algorithm(), "203.0.113.9");
//! let checks = [LimitCheck { key: &key, limit: &limit }];
//! let decisions = store.check(CheckRequest::new(&checks, 1)).await?;
//! assert!(decisions.all_allowed());
//! assert_eq!(decisions[0].remaining, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`MemoryStore`], the in-process store |
//! | `redis` | no | [`redis::RedisStore`] for a standalone server |
//! | `redis-cluster`, `redis-sentinel` | no | Redis Cluster and Sentinel for the Redis store |
//! | `redis-tls` | no | `rediss://` (TLS, rustls) for the Redis store |
//! | `postgres`, `mysql`, `sqlite` | no | [`sql::SqlStore`] on PostgreSQL, MySQL/MariaDB or SQLite |
//! | `all-stores` | no | every store above |
//! | `test-util` | no | the store conformance suite, [`conformance`] |

pub mod algorithm;
pub mod clock;
mod decision;
mod error;
mod failure;
#[cfg(feature = "memory")]
pub mod memory;
mod rate;
#[cfg(feature = "redis")]
pub mod redis;
/// The Redis store's settings; the store itself needs the crate feature
/// `redis`. The settings are here in every build, so that enabling a
/// feature only adds to what a build has.
#[cfg(not(feature = "redis"))]
pub mod redis {
    #[path = "settings.rs"]
    mod settings;
    pub use self::settings::{Deployment, NodeAddr, RedisSettings, RedisSettingsError};
}
pub mod secret;
mod serde_seconds;
#[cfg(feature = "settings")]
pub mod settings;
#[cfg(feature = "sql")]
pub mod sql;
/// The SQL store's settings; the store itself needs a crate feature
/// (`postgres`, `mysql` or `sqlite`). The settings are here in every
/// build, so that enabling a feature only adds to what a build has.
#[cfg(not(feature = "sql"))]
pub mod sql {
    #[path = "settings.rs"]
    mod settings;
    pub use self::settings::{Durability, Engine, SqlSettings};
}
pub mod store;
pub mod store_key;

#[cfg(feature = "test-util")]
pub mod conformance;

pub use algorithm::sliding_log::MAX_SLIDING_LOG_LIMIT;
pub use algorithm::{Algorithm, Limit};
pub use clock::{Clock, FakeClock, SystemClock, UnixNanos};
pub use decision::{Decision, Decisions};
pub use error::{ACCEPTED_RATE_FORMS, AlgorithmParseError, FieldError, LimitError, RateParseError, StoreError};
pub use failure::FailurePolicy;
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
pub use rate::{MAX_LIMIT, MAX_PERIOD, Rate};
pub use secret::{Secret, SecretUrl};
#[cfg(feature = "settings")]
pub use settings::{Settings, SettingsError};
pub use store::breaker::{BreakerConfig, BreakerState, BreakerStatus, CircuitBreaker};
pub use store::multi::{MultiStore, MultiStoreConfig, Strategy};
pub use store::{
    BoxFuture, CheckRequest, CounterAdapter, CounterStore, DynStore, Health, LimitCheck, SharedStore, Store,
};
