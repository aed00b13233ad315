//! [`RateLimitLayer`]: applies [`RateLimit`] to a service.

use tower_layer::Layer;

use crate::config::RateLimitConfig;
use crate::service::RateLimit;

/// Rate-limits the requests of the services it wraps.
///
/// Works with `Router::layer`, `Router::route_layer`, `MethodRouter::layer`
/// and `ServiceBuilder`; a limited request is answered with a 429 response,
/// never an error, so no `HandleErrorLayer` is needed. Clones (and every
/// service the layer wraps) share the configured store.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_ratelimit_smart::{Key, RateLimitConfig, RateLimitLayer};
///
/// let config = RateLimitConfig::builder().rate("100/m").key(Key::ip()).build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RateLimitLayer::new(config));
/// # Ok::<(), tower_ratelimit_smart::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    config: RateLimitConfig,
}

impl RateLimitLayer {
    /// A layer enforcing `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config }
    }

    /// The health of each of the layer's policies; see
    /// [`RateLimitConfig::health`].
    pub fn health(&self) -> Vec<crate::PolicyHealth> {
        self.config.health()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.config.clone())
    }
}
