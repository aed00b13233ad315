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

    /// Whether some policy needs the client's address (an IP key, the
    /// fallback of a missing key, an allow list): then the server must pass
    /// it, as axum does when served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. Without it
    /// every request such a policy checks is answered 500 (and the mistake
    /// is logged once). Call it at start-up to fail early:
    ///
    /// ```
    /// # let layer = tower_ratelimit_smart::RateLimitLayer::new(
    /// #     tower_ratelimit_smart::RateLimitConfig::builder().rate("5/m").build().unwrap());
    /// assert!(layer.needs_connect_info(), "serve with into_make_service_with_connect_info");
    /// ```
    pub fn needs_connect_info(&self) -> bool {
        self.config.needs_connect_info()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.config.clone())
    }
}
