//! Rate limiting for Tower and Axum.
//!
//! [`RateLimitLayer::new(config)`](RateLimitLayer) limits requests per
//! client IP, user, header value or any key you compute, with the counters
//! in memory (the default) or in a shared store, using fixed window,
//! sliding window (log or counter) or token bucket. Limited requests get a
//! `429 Too Many Requests` problem document with `Retry-After`; every
//! response can carry `X-RateLimit-*` and the IETF `RateLimit-Policy` /
//! `RateLimit` headers.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{Router, routing::get};
//! use tower_ratelimit_smart::{Key, RateLimitConfig, RateLimitLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimitLayer::new(
//!     RateLimitConfig::builder().rate("5/m").key(Key::ip()).build()?,
//! );
//! let app = Router::new().route("/", get(|| async { "hello" })).layer(limiter);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The IP key needs the peer address: serve with connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | the in-process store, used when no store is configured |
//! | `redis`, `redis-cluster`, `redis-sentinel`, `postgres`, `mysql`, `sqlite`, `all-stores` | no | forwarded to `ratelimit-core` |

mod body;
mod config;
#[cfg(feature = "settings")]
mod from_settings;
mod future;
pub mod headers;
mod key;
mod layer;
#[cfg(feature = "settings")]
mod middleware_settings;
mod net;
mod path;
mod service;
mod telemetry;

pub use body::ResponseBody;
pub use config::{
    ConfigError, FailurePolicy, HeaderStyle, IntoLimitedResponse, IntoRate, LimitedHandler, MAX_RATES, MissingKey,
    Mode, RateLimitConfig, RateLimitConfigBuilder,
};
pub use future::ResponseFuture;
pub use key::{ForwardedHeader, Key, UserId};
pub use layer::RateLimitLayer;
#[cfg(feature = "settings")]
pub use middleware_settings::{KeySpec, MiddlewareSettings};
pub use net::{IpNet, IpNetParseError};
pub use service::RateLimit;
pub use telemetry::{METRIC_ALLOWED, METRIC_DEGRADED, METRIC_LIMITED, METRIC_STORE_ERRORS, PolicyHealth, PolicyState};

#[cfg(feature = "memory")]
pub use ratelimit_core::MemoryStore;
pub use ratelimit_core::{Algorithm, Decision, Decisions, Rate, SharedStore, Store};

/// The README's example, compiled with the documentation tests so that it
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
