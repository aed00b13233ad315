//! [`RateLimitConfig`]: everything a layer needs, validated once. The
//! builder (`builder.rs`) makes one policy (`policy.rs`); routing by path
//! (`routing.rs`) puts several behind one layer.

mod builder;
mod error;
mod options;
mod policy;
mod routing;

use std::sync::Arc;

use ratelimit_core::SharedStore;

pub(crate) use self::builder::MAX_POLICY_NAME;
pub use self::builder::{IntoRate, RateLimitConfigBuilder};
pub use self::error::ConfigError;
pub use self::options::{HeaderStyle, MAX_RATES, MissingKey, Mode};
pub use self::policy::{IntoLimitedResponse, LimitedHandler};
pub(crate) use self::policy::{Keys, Policy, PolicyLimit};
use self::routing::PathRoutes;
pub use ratelimit_core::FailurePolicy;

/// A validated configuration; cheap to clone (layers share it).
#[derive(Clone)]
pub struct RateLimitConfig {
    routing: Routing,
}

/// One policy for every request, or one per path prefix.
#[derive(Clone)]
enum Routing {
    One(Arc<Policy>),
    ByPath(Arc<PathRoutes>),
}

impl RateLimitConfig {
    /// Starts a configuration.
    pub fn builder() -> RateLimitConfigBuilder {
        RateLimitConfigBuilder::default()
    }

    /// The policy name, as used in keys, headers and metrics; `None` for a
    /// configuration routed by path, whose policies are those of its rules
    /// (see [`health`](Self::health)).
    pub fn policy(&self) -> Option<&str> {
        match &self.routing {
            Routing::One(policy) => Some(&policy.policy),
            Routing::ByPath(_) => None,
        }
    }

    /// The store this configuration counts in; `None` for a configuration
    /// routed by path, whose rules may each count in a store of their own.
    pub fn store(&self) -> Option<&SharedStore> {
        match &self.routing {
            Routing::One(policy) => Some(&policy.store),
            Routing::ByPath(_) => None,
        }
    }

    /// One configuration per path prefix: a request is checked by the
    /// first rule whose prefix covers its path, else by `fallback`, else
    /// not at all; paths in `skip_paths` (exact) are never checked.
    /// Give each rule its own policy name, so that all paths under one
    /// prefix share one bucket per client and different prefixes never do.
    ///
    /// Rules match the *normalised* path, since a proxy or server in front
    /// may route `//auth/login`, `/auth/./login`, `/auth/x/../login` and
    /// `/%61uth/login` to the same handler as `/auth/login`: empty segments
    /// are collapsed, `.` and `..` resolved, and percent-encoded unreserved
    /// characters (`A-Z a-z 0-9 - . _ ~`) decoded. Other escapes, such as
    /// `%2F`, are not decoded (they would change the segments), and letter
    /// case is kept. Prefixes and skip paths are normalised the same way.
    /// A path that is already normal is matched without allocating.
    ///
    /// A prefix covers whole segments: `/api` covers `/api`, `/api/` and
    /// `/api/items`, but not `/apiary`. A trailing slash in a prefix makes
    /// no difference: `/api/` covers exactly what `/api` covers, `/api`
    /// itself included, because servers commonly answer `/api` and `/api/`
    /// alike and a limit should not hinge on the slash. `/` covers every
    /// path. Skip paths match exactly, trailing slash included: a skip
    /// is an exemption, so it stays as narrow as written.
    ///
    /// ```
    /// use tower_ratelimit_smart::RateLimitConfig;
    ///
    /// let login = RateLimitConfig::builder().policy("login").rate("5/m").build()?;
    /// let api = RateLimitConfig::builder().policy("api").rate("1000/h").build()?;
    /// let site = RateLimitConfig::builder().policy("site").rate("100/m").build()?;
    /// let config = RateLimitConfig::by_path_prefix(
    ///     [("/auth/login".to_owned(), login), ("/api/".to_owned(), api)],
    ///     Some(site),
    ///     ["/health".to_owned()],
    /// )?;
    /// # Ok::<(), tower_ratelimit_smart::ConfigError>(())
    /// ```
    pub fn by_path_prefix(
        rules: impl IntoIterator<Item = (String, RateLimitConfig)>,
        fallback: Option<RateLimitConfig>,
        skip_paths: impl IntoIterator<Item = String>,
    ) -> Result<RateLimitConfig, ConfigError> {
        let one = |config: RateLimitConfig, what: String| match config.routing {
            Routing::One(policy) => Ok(policy),
            Routing::ByPath(_) => Err(ConfigError::NestedRoutes(what)),
        };
        let rules = rules
            .into_iter()
            .map(|(prefix, config)| Ok((prefix.clone(), one(config, prefix)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let fallback = fallback.map(|config| one(config, "the fallback".to_owned())).transpose()?;
        let routes = PathRoutes::new(rules, fallback, skip_paths)?;
        Ok(RateLimitConfig { routing: Routing::ByPath(Arc::new(routes)) })
    }

    /// The health of each policy, from the checks it made: whether its
    /// store decided the last one, was still connecting or failed, and how
    /// many requests the failure policy let through or decided in process.
    pub fn health(&self) -> Vec<crate::PolicyHealth> {
        let policies: Vec<&Arc<Policy>> = match &self.routing {
            Routing::One(policy) => vec![policy],
            Routing::ByPath(routes) => routes.policies().collect(),
        };
        let mut seen: Vec<*const Policy> = Vec::new();
        let mut health = Vec::new();
        for policy in policies {
            if seen.contains(&Arc::as_ptr(policy)) {
                continue;
            }
            seen.push(Arc::as_ptr(policy));
            health.push(policy.telemetry.health(&policy.policy));
        }
        health
    }

    /// Whether some policy needs the client's address; see
    /// [`RateLimitLayer::needs_connect_info`](crate::RateLimitLayer::needs_connect_info).
    pub fn needs_connect_info(&self) -> bool {
        match &self.routing {
            Routing::One(policy) => policy.needs_connect_info(),
            Routing::ByPath(routes) => routes.policies().any(|policy| policy.needs_connect_info()),
        }
    }

    /// The store keys a request for `path` from the client `identity`
    /// counts under, one per limit, with the limits: the keys the layer
    /// writes, for looking at or resetting a client's state (`ratelimit
    /// peek`). `identity` is written as in the keys, e.g. `ip:203.0.113.9`
    /// (an address is grouped as the policy groups it: `ip:2001:db8::1`
    /// counts as its /64), `h:<value>` for a header, `u:<id>` for a user.
    /// `None` when no policy checks `path`.
    ///
    /// ```
    /// use tower_ratelimit_smart::RateLimitConfig;
    /// let config = RateLimitConfig::builder().policy("login").rate("5/m").build()?;
    /// let keys = config.store_keys("/", "ip:203.0.113.9").unwrap();
    /// assert_eq!(keys[0].0, "ratelimit:login/5/m:sliding_window:{ip:203.0.113.9}");
    /// # Ok::<(), tower_ratelimit_smart::ConfigError>(())
    /// ```
    pub fn store_keys(&self, path: &str, identity: &str) -> Option<Vec<(String, ratelimit_core::Limit)>> {
        let policy = self.select(path)?;
        let mut first = policy.limits[0].key_head.clone();
        let start = first.len();
        match identity.strip_prefix("ip:").and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
            Some(ip) => {
                let ip = crate::net::normalize(ip);
                crate::key::write_client(&mut first, crate::key::Client::Ip(ip), policy.ipv6_prefix);
            }
            None => first.push_str(identity),
        }
        let keys = policy.keys(first, start);
        Some(keys.into_iter().zip(&policy.limits).map(|(key, limit)| (key, limit.limit)).collect())
    }

    /// The policy that checks a request for `path`, if any.
    pub(crate) fn select(&self, path: &str) -> Option<&Arc<Policy>> {
        match &self.routing {
            Routing::One(policy) => Some(policy),
            Routing::ByPath(routes) => routes.select(path),
        }
    }

    pub(crate) fn one(policy: Policy) -> Self {
        Self { routing: Routing::One(Arc::new(policy)) }
    }
}

impl std::fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.routing {
            Routing::One(s) => f
                .debug_struct("RateLimitConfig")
                .field("policy", &s.policy)
                .field("limits", &s.limits.iter().map(|l| l.id.as_str()).collect::<Vec<_>>())
                .field("key", &s.key)
                .field("mode", &s.mode)
                .field("failure", &s.failure)
                .finish_non_exhaustive(),
            Routing::ByPath(routes) => f.debug_struct("RateLimitConfig").field("routes", routes).finish(),
        }
    }
}
