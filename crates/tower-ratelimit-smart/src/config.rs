//! [`RateLimitConfig`] and its builder: everything a layer needs, validated once.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method};
use ratelimit_core::{Algorithm, Decisions, Limit, LimitError, Rate, RateParseError, SharedStore, Store, key};

use crate::key::{ForwardedHeader, Key, TrustedProxies};
use crate::net::{IpNet, IpNetParseError};
use crate::path;
use crate::telemetry::Telemetry;

/// The most limits one layer may check together.
pub const MAX_RATES: usize = 8;

/// Which rate-limit headers responses carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    /// The IETF draft fields `RateLimit-Policy` and `RateLimit`.
    Ietf,
    /// Both sets.
    #[default]
    Both,
    /// No rate-limit headers (a 429 still carries `Retry-After`).
    None,
}

impl HeaderStyle {
    pub(crate) fn legacy(self) -> bool {
        matches!(self, HeaderStyle::Legacy | HeaderStyle::Both)
    }
    pub(crate) fn ietf(self) -> bool {
        matches!(self, HeaderStyle::Ietf | HeaderStyle::Both)
    }
}

/// What the layer does with a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Answer limited requests with 429.
    #[default]
    Enforce,
    /// Decide and report (tracing, metrics) but never block and add no
    /// headers: for trying a limit on live traffic.
    Shadow,
    /// Never block; put the [`Decisions`] into the request extensions for
    /// the handler to act on. Headers are added as in `Enforce`.
    Annotate,
}

/// What happens when the key cannot be derived from a request (a missing
/// header, no authenticated user).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// Count the request under the client's IP address instead, so
    /// clients without the key never share one bucket.
    #[default]
    FallbackToIp,
    /// Answer 400 Bad Request.
    Reject,
    /// Let the request through unlimited.
    Skip,
}

/// What a request gets when the store cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Let the request through, flagged with `X-RateLimit-Status: degraded`
    /// and a warning in the logs.
    #[default]
    FailOpen,
    /// Answer 503 Service Unavailable with a problem body (never 429: the
    /// client did nothing wrong).
    FailClosed,
    /// Decide with a bounded in-process memory store (10,000 keys) while
    /// the configured store is down: limits hold per process instead of
    /// across the fleet.
    Local,
}

/// A configuration the builder refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No rate was given.
    #[error("no rate configured: add one with .rate(\"100/m\")")]
    NoRate,
    /// More rates than one layer checks together.
    #[error("{0} rates configured; one layer checks at most {MAX_RATES}")]
    TooManyRates(usize),
    /// The same rate twice.
    #[error("rate {0} is configured twice")]
    DuplicateRate(Rate),
    /// A rate or burst that does not parse.
    #[error("rate: {0}")]
    Rate(#[from] RateParseError),
    /// A rate the chosen algorithm cannot enforce (see [`Limit::validate`]).
    #[error("algorithm: {0}")]
    Limit(#[from] LimitError),
    /// An address or network that does not parse.
    #[error("{field}: {source}")]
    Network {
        /// The builder method it was given to.
        field: &'static str,
        /// What is wrong with it.
        source: IpNetParseError,
    },
    /// A header key with an invalid header name.
    #[error("key: {0:?} is not a valid HTTP header name")]
    HeaderName(String),
    /// A policy name outside the allowed characters.
    #[error("policy: {0:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
    PolicyName(String),
    /// A key prefix outside the allowed characters.
    #[error("key_prefix: {0:?} must be at most 64 printable ASCII characters without spaces or braces")]
    KeyPrefix(String),
    /// An IPv6 grouping prefix longer than 128 bits.
    #[error("ipv6_prefix: {0} is not between 1 and 128")]
    Ipv6Prefix(u8),
    /// A path prefix that does not start with `/`.
    #[error("path prefix {0:?} must start with '/'")]
    PathPrefix(String),
    /// No store was given and the in-memory store is not compiled in.
    #[error("store: no store configured and the `memory` feature is off; call .store(...)")]
    NoStore,
}

type CostFn = dyn Fn(&Parts) -> u64 + Send + Sync;
type SkipFn = dyn Fn(&Parts) -> bool + Send + Sync;
/// Builds the response for a limited request; the layer adds the
/// rate-limit headers and `Retry-After` to whatever it returns.
pub type LimitedHandler = dyn Fn(&Decisions) -> http::Response<Bytes> + Send + Sync;

/// One configured limit with the names it goes by.
pub(crate) struct PolicyLimit {
    pub(crate) limit: Limit,
    /// Part of the store key and the name in the IETF headers.
    pub(crate) id: String,
    /// `{prefix}{id}:{algorithm}:{`, the key up to the identity.
    pub(crate) key_head: String,
    /// The capacity as a header value, made once.
    pub(crate) limit_value: HeaderValue,
}

/// A validated configuration; cheap to clone (layers share it).
#[derive(Clone)]
pub struct RateLimitConfig {
    pub(crate) shared: Arc<Shared>,
    /// Per-path-prefix configurations; see [`RateLimitConfig::by_path_prefix`].
    pub(crate) routes: Option<Arc<PathRoutes>>,
}

/// Path prefixes to configurations, first match first. Prefixes and skip
/// paths are kept normalised (see [`crate::path::normalize`]), prefixes
/// without their trailing slash.
pub(crate) struct PathRoutes {
    skip_paths: Vec<String>,
    rules: Vec<(String, Arc<Shared>)>,
    fallback: Option<Arc<Shared>>,
}

pub(crate) struct Shared {
    pub(crate) store: SharedStore,
    pub(crate) limits: Vec<PolicyLimit>,
    pub(crate) policy: String,
    pub(crate) key: Key,
    pub(crate) trusted: TrustedProxies,
    pub(crate) ipv6_prefix: u8,
    pub(crate) missing_key: MissingKey,
    pub(crate) failure: FailurePolicy,
    /// The in-process store of `FailurePolicy::Local`.
    pub(crate) local: Option<SharedStore>,
    pub(crate) mode: Mode,
    pub(crate) headers: HeaderStyle,
    pub(crate) policy_header: HeaderValue,
    pub(crate) limited_body_prefix: String,
    pub(crate) cost: Option<Arc<CostFn>>,
    pub(crate) skip: Option<Arc<SkipFn>>,
    pub(crate) allow: Vec<IpNet>,
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) on_limited: Option<Arc<LimitedHandler>>,
    pub(crate) telemetry: Telemetry,
}

impl RateLimitConfig {
    /// Starts a configuration.
    pub fn builder() -> RateLimitConfigBuilder {
        RateLimitConfigBuilder::default()
    }

    /// The policy name, as used in keys, headers and metrics.
    pub fn policy(&self) -> &str {
        &self.shared.policy
    }

    /// The store this configuration counts in.
    pub fn store(&self) -> &SharedStore {
        &self.shared.store
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
        let rules: Vec<(String, Arc<Shared>)> = rules.into_iter().map(|(prefix, c)| (prefix, c.shared)).collect();
        let fallback = fallback.map(|c| c.shared);
        for (prefix, _) in &rules {
            if !prefix.starts_with('/') {
                return Err(ConfigError::PathPrefix(prefix.clone()));
            }
        }
        let rules: Vec<(String, Arc<Shared>)> = rules
            .into_iter()
            .map(|(prefix, s)| {
                let normal = path::normalize(&prefix);
                (normal.strip_suffix('/').unwrap_or(&normal).to_owned(), s)
            })
            .collect();
        let skip_paths = skip_paths.into_iter().map(|p| path::normalize(&p).into_owned()).collect();
        let first =
            rules.first().map(|(_, s)| Arc::clone(s)).or_else(|| fallback.clone()).ok_or(ConfigError::NoRate)?;
        let routes = PathRoutes { skip_paths, rules, fallback };
        Ok(RateLimitConfig { shared: first, routes: Some(Arc::new(routes)) })
    }

    /// The health of each policy, from the checks it made: whether its
    /// store decided the last one, was still connecting or failed, and how
    /// many requests the failure policy let through or decided in process.
    pub fn health(&self) -> Vec<crate::PolicyHealth> {
        let mut policies: Vec<&Arc<Shared>> = vec![&self.shared];
        if let Some(routes) = &self.routes {
            policies.extend(routes.rules.iter().map(|(_, s)| s));
            policies.extend(routes.fallback.iter());
        }
        let mut seen: Vec<*const Shared> = Vec::new();
        let mut health = Vec::new();
        for shared in policies {
            if seen.contains(&Arc::as_ptr(shared)) {
                continue;
            }
            seen.push(Arc::as_ptr(shared));
            health.push(shared.telemetry.health(&shared.policy));
        }
        health
    }

    /// The configuration that checks a request for `path`, if any.
    pub(crate) fn select(&self, path: &str) -> Option<&Arc<Shared>> {
        let Some(routes) = &self.routes else { return Some(&self.shared) };
        let normal = path::normalize(path);
        if routes.skip_paths.iter().any(|p| *p == normal) {
            return None;
        }
        routes
            .rules
            .iter()
            .find(|(prefix, _)| path::covers(prefix, &normal))
            .map(|(_, s)| s)
            .or(routes.fallback.as_ref())
    }
}

impl std::fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.shared;
        f.debug_struct("RateLimitConfig")
            .field("policy", &s.policy)
            .field("limits", &s.limits.iter().map(|l| l.id.as_str()).collect::<Vec<_>>())
            .field("key", &s.key)
            .field("mode", &s.mode)
            .field("failure", &s.failure)
            .finish_non_exhaustive()
    }
}

/// Something that names a rate: a [`Rate`] or its text form.
pub trait IntoRate {
    /// Converts, or explains why not.
    fn into_rate(self) -> Result<Rate, RateParseError>;
}

impl IntoRate for Rate {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        Ok(self)
    }
}

impl IntoRate for &str {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

impl IntoRate for String {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

/// Builds a [`RateLimitConfig`]; every mistake is reported by [`build`](Self::build).
///
/// ```
/// use tower_ratelimit_smart::{Algorithm, Key, RateLimitConfig};
/// let config = RateLimitConfig::builder()
///     .rate("10/s")
///     .rate("1000/h")
///     .algorithm(Algorithm::SlidingWindow)
///     .key(Key::header("x-api-key"))
///     .policy("api")
///     .build()?;
/// assert_eq!(config.policy(), "api");
/// # Ok::<(), tower_ratelimit_smart::ConfigError>(())
/// ```
#[must_use]
pub struct RateLimitConfigBuilder {
    rates: Vec<Result<Rate, RateParseError>>,
    algorithm: Algorithm,
    burst: Option<u64>,
    key: Key,
    store: Option<SharedStore>,
    policy: Option<String>,
    key_prefix: String,
    trusted: Vec<Result<IpNet, IpNetParseError>>,
    forwarded_header: ForwardedHeader,
    ipv6_prefix: u8,
    missing_key: MissingKey,
    failure: FailurePolicy,
    mode: Mode,
    headers: HeaderStyle,
    cost: Option<Arc<CostFn>>,
    skip: Option<Arc<SkipFn>>,
    allow: Vec<Result<IpNet, IpNetParseError>>,
    methods: Option<Vec<Method>>,
    on_limited: Option<Arc<LimitedHandler>>,
}

impl Default for RateLimitConfigBuilder {
    fn default() -> Self {
        Self {
            rates: Vec::new(),
            algorithm: Algorithm::default(),
            burst: None,
            key: Key::ip(),
            store: None,
            policy: None,
            key_prefix: key::DEFAULT_PREFIX.to_owned(),
            trusted: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            ipv6_prefix: 64,
            missing_key: MissingKey::default(),
            failure: FailurePolicy::default(),
            mode: Mode::default(),
            headers: HeaderStyle::default(),
            cost: None,
            skip: None,
            allow: Vec::new(),
            methods: None,
            on_limited: None,
        }
    }
}

impl RateLimitConfigBuilder {
    /// Adds a rate such as `"100/m"`. Several rates are checked together:
    /// a request passes only if every one admits it, and is charged on all
    /// or on none.
    pub fn rate(mut self, rate: impl IntoRate) -> Self {
        self.rates.push(rate.into_rate());
        self
    }

    /// The algorithm for every rate of this layer (default fixed window).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The token bucket's capacity, when it should differ from the limit.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// What identifies a client (default [`Key::ip`]).
    pub fn key(mut self, key: Key) -> Self {
        self.key = key;
        self
    }

    /// Where the counters live (default: a new [`MemoryStore`](ratelimit_core::MemoryStore)).
    /// Layers given clones of one store share its state.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(SharedStore::new(store));
        self
    }

    /// A store already wrapped for sharing.
    pub fn shared_store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The policy name: part of every key and of the IETF headers. Two
    /// layers given the same store share counters when their names, rates
    /// and algorithm match, and never otherwise; layers without a name are
    /// named after their rates (e.g. `10/s`), so give distinct names to
    /// layers that must count apart. A layer built without `.store(...)`
    /// has a memory store of its own.
    pub fn policy(mut self, name: impl Into<String>) -> Self {
        self.policy = Some(name.into());
        self
    }

    /// The prefix of every store key (default `rl:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Proxies (addresses or CIDR blocks) whose forwarding header is
    /// believed. Without any, forwarding headers are ignored.
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.trusted.extend(proxies.into_iter().map(|p| p.as_ref().parse()));
        self
    }

    /// Which header the trusted proxies set (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.forwarded_header = header;
        self
    }

    /// How many leading bits of an IPv6 address identify one client
    /// (default 64: one client per /64, since hosts get whole /64s).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// What to do when the key is missing (default: fall back to the IP).
    pub fn on_missing_key(mut self, policy: MissingKey) -> Self {
        self.missing_key = policy;
        self
    }

    /// What to do when the store fails (default: fail open).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// Enforce (default), shadow or annotate.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Which headers to send (default both legacy and IETF).
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.headers = style;
        self
    }

    /// How many units a request costs (default 1). A cost of 0 is free.
    pub fn cost<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> u64 + Send + Sync + 'static,
    {
        self.cost = Some(Arc::new(f));
        self
    }

    /// Requests for which this returns true are not limited.
    pub fn skip<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.skip = Some(Arc::new(f));
        self
    }

    /// Client addresses or CIDR blocks that are never limited.
    pub fn allow_ips<I, S>(mut self, nets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allow.extend(nets.into_iter().map(|n| n.as_ref().parse()));
        self
    }

    /// Limits only these methods; others pass unlimited.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Replaces the default problem+json 429 response.
    pub fn on_limited<F>(mut self, f: F) -> Self
    where
        F: Fn(&Decisions) -> http::Response<Bytes> + Send + Sync + 'static,
    {
        self.on_limited = Some(Arc::new(f));
        self
    }

    /// Validates everything and builds the configuration.
    pub fn build(self) -> Result<RateLimitConfig, ConfigError> {
        let rates = self.rates.into_iter().collect::<Result<Vec<Rate>, _>>()?;
        if rates.is_empty() {
            return Err(ConfigError::NoRate);
        }
        if rates.len() > MAX_RATES {
            return Err(ConfigError::TooManyRates(rates.len()));
        }
        for (i, rate) in rates.iter().enumerate() {
            if rates[..i].contains(rate) {
                return Err(ConfigError::DuplicateRate(*rate));
            }
        }
        if let Some(name) = self.key.invalid_header_name() {
            return Err(ConfigError::HeaderName(name.to_owned()));
        }
        let rates_name = rates.iter().map(Rate::to_string).collect::<Vec<_>>().join("+");
        let named = self.policy.is_some();
        let policy = match self.policy {
            Some(name) if valid_policy(&name) => name,
            Some(name) => return Err(ConfigError::PolicyName(name)),
            None => rates_name,
        };
        if !valid_prefix(&self.key_prefix) {
            return Err(ConfigError::KeyPrefix(self.key_prefix));
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::Ipv6Prefix(self.ipv6_prefix));
        }
        let nets = |field: &'static str, list: Vec<Result<IpNet, IpNetParseError>>| {
            list.into_iter().collect::<Result<Vec<_>, _>>().map_err(|source| ConfigError::Network { field, source })
        };
        let trusted = nets("trusted_proxies", self.trusted)?;
        let allow = nets("allow_ips", self.allow)?;
        let single = rates.len() == 1;
        let limits = rates
            .iter()
            .map(|&rate| {
                let mut limit = Limit::new(rate, self.algorithm);
                if let Some(burst) = self.burst {
                    limit = limit.with_burst(burst)?;
                }
                limit.validate()?;
                let id = if single { policy.clone() } else { format!("{policy}/{rate}") };
                // The store key always names the rate, so two layers that
                // share a policy name but not their rates never share state.
                let key_policy = if single && named { format!("{policy}/{rate}") } else { id.clone() };
                let key_head = key::head(&self.key_prefix, &key_policy, limit.algorithm());
                let limit_value = HeaderValue::from(limit.capacity());
                Ok(PolicyLimit { limit, id, key_head, limit_value })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let store = match self.store {
            Some(store) => store,
            None => default_store()?,
        };
        let policy_header = crate::headers::policy_header(&limits);
        let telemetry = Telemetry::new(&policy);
        let limited_body_prefix = crate::headers::limited_body_prefix(&policy);
        Ok(RateLimitConfig {
            shared: Arc::new(Shared {
                store,
                limits,
                policy,
                key: self.key,
                trusted: TrustedProxies { nets: trusted, header: self.forwarded_header },
                ipv6_prefix: self.ipv6_prefix,
                missing_key: self.missing_key,
                failure: self.failure,
                local: local_store(self.failure)?,
                mode: self.mode,
                headers: self.headers,
                policy_header,
                limited_body_prefix,
                cost: self.cost,
                skip: self.skip,
                allow,
                methods: self.methods,
                on_limited: self.on_limited,
                telemetry,
            }),
            routes: None,
        })
    }
}

#[cfg(feature = "memory")]
fn default_store() -> Result<SharedStore, ConfigError> {
    Ok(SharedStore::new(ratelimit_core::MemoryStore::new()))
}

#[cfg(not(feature = "memory"))]
fn default_store() -> Result<SharedStore, ConfigError> {
    Err(ConfigError::NoStore)
}

#[cfg(feature = "memory")]
fn local_store(policy: FailurePolicy) -> Result<Option<SharedStore>, ConfigError> {
    Ok((policy == FailurePolicy::Local).then(|| SharedStore::new(ratelimit_core::MemoryStore::new())))
}

#[cfg(not(feature = "memory"))]
fn local_store(policy: FailurePolicy) -> Result<Option<SharedStore>, ConfigError> {
    match policy {
        FailurePolicy::Local => Err(ConfigError::NoStore),
        _ => Ok(None),
    }
}

fn valid_policy(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'{' | b'}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(builder: RateLimitConfigBuilder) -> String {
        builder.build().expect_err("should be refused").to_string()
    }

    #[test]
    fn bad_configuration_is_an_error_that_names_the_problem() {
        assert!(err(RateLimitConfig::builder()).contains("no rate"));
        assert!(err(RateLimitConfig::builder().rate("ten/m")).contains("\"ten/m\""));
        assert!(err(RateLimitConfig::builder().rate("1/s").rate("1/s")).contains("twice"));
        assert!(err(RateLimitConfig::builder().rate("1/s").key(Key::header("bad header"))).contains("bad header"));
        assert!(err(RateLimitConfig::builder().rate("1/s").policy("a b")).contains("policy"));
        assert!(err(RateLimitConfig::builder().rate("1/s").allow_ips(["10.0.0.0/99"])).contains("allow_ips"));
        assert!(err(RateLimitConfig::builder().rate("1/s").trusted_proxies(["proxy"])).contains("trusted_proxies"));
        let mapped = err(RateLimitConfig::builder().rate("1/s").trusted_proxies(["10.0.0.1", "::ffff:10.0.0.0/8"]));
        assert!(mapped.contains("trusted_proxies") && mapped.contains("\"::ffff:10.0.0.0/8\""), "{mapped}");
        let mapped = err(RateLimitConfig::builder().rate("1/s").allow_ips(["::ffff:10.0.0.0/8"]));
        assert!(mapped.contains("allow_ips") && mapped.contains("\"::ffff:10.0.0.0/8\""), "{mapped}");
        assert!(err(RateLimitConfig::builder().rate("1/s").ipv6_prefix(0)).contains("ipv6_prefix"));
        assert!(err(RateLimitConfig::builder().rate("1/s").burst(0)).contains("burst"));
        assert!(err(RateLimitConfig::builder().rate("1/s").key_prefix("a{b}")).contains("key_prefix"));
        let many = (1..=9).fold(RateLimitConfig::builder(), |b, n| b.rate(format!("{n}/s")));
        assert!(err(many).contains("at most 8"));
    }

    #[test]
    fn a_sliding_log_above_its_bound_is_refused_with_the_alternative() {
        let max = ratelimit_core::MAX_SLIDING_LOG_LIMIT;
        let sliding = |rate: String| RateLimitConfig::builder().rate(rate).algorithm(Algorithm::SlidingWindow);
        assert!(sliding(format!("{max}/s")).build().is_ok());
        let refused = sliding("5/m".to_owned()).rate(format!("{}/h", max + 1)).build().expect_err("above the bound");
        assert!(matches!(refused, ConfigError::Limit(_)), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains(&format!("{}/h", max + 1)), "{message}");
        assert!(message.contains(&max.to_string()), "{message}");
        assert!(message.contains("sliding_window_counter"), "{message}");
        let counter =
            RateLimitConfig::builder().rate(format!("{}/h", max + 1)).algorithm(Algorithm::SlidingWindowCounter);
        assert!(counter.build().is_ok(), "the counter takes any rate");
    }

    #[test]
    fn default_policy_names_follow_the_rates() {
        let one = RateLimitConfig::builder().rate("5/m").build().unwrap();
        assert_eq!(one.policy(), "5/m");
        assert_eq!(one.shared.limits[0].id, "5/m");
        let two = RateLimitConfig::builder().rate("10/s").rate("1000/h").policy("api").build().unwrap();
        let ids: Vec<_> = two.shared.limits.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["api/10/s", "api/1000/h"]);
        assert_eq!(one.shared.limits[0].key_head, "rl:5/m:fixed_window:{");
        let named = RateLimitConfig::builder().policy("login").rate("5/m").build().unwrap();
        assert_eq!(named.shared.limits[0].id, "login");
        assert_eq!(named.shared.limits[0].key_head, "rl:login/5/m:fixed_window:{", "the key names the rate");
    }

    #[test]
    fn path_rules_match_the_normalised_path_by_whole_segments() {
        let named = |name: &str| RateLimitConfig::builder().policy(name).rate("1/m").build().unwrap();
        let config = RateLimitConfig::by_path_prefix(
            [
                ("/auth/login".to_owned(), named("login")),
                ("/api".to_owned(), named("api")),
                ("/v2/".to_owned(), named("v2")),
                ("/files/a%2fb".to_owned(), named("files")),
            ],
            Some(named("site")),
            ["/health".to_owned()],
        )
        .unwrap();
        let policy = |path: &str| config.select(path).map(|s| s.policy.as_str());
        for path in [
            "/auth/login",
            "//auth/login",
            "/auth//login",
            "/auth/login//",
            "/auth/./login",
            "/./auth/login",
            "/auth/x/../login",
            "/auth/x/y/../../login",
            "/../auth/login",
            "/x/../../auth/login",
            "/%61uth/login",
            "/%61%75%74%68/%6C%6f%67%69%6e",
            "/auth/login/",
            "/auth/login/.",
            "/auth/login/x",
            "/auth/login/%2e%2e/login",
        ] {
            assert_eq!(policy(path), Some("login"), "{path}");
        }
        for path in ["/api", "/api/", "/api/items", "/api/items/", "//api/items", "/apiary/../api/x"] {
            assert_eq!(policy(path), Some("api"), "{path}");
        }
        for path in ["/v2", "/v2/", "/v2/x", "/%76%32"] {
            assert_eq!(policy(path), Some("v2"), "{path}");
        }
        for path in ["/files/a%2Fb", "/files/a%2fb/c"] {
            assert_eq!(policy(path), Some("files"), "{path}");
        }
        for path in [
            "/",
            "/apiary",
            "/api2",
            "/auth/loginx",
            "/auth/login%2Fx",
            "/auth/log%69n.json",
            "/v2x",
            "/API",
            "/auth/login/..",
            "/files/a/b",
            "/health/",
            "/health/x",
            "/%",
            "/%zz/api",
        ] {
            assert_eq!(policy(path), Some("site"), "{path}");
        }
        for path in ["/health", "//health", "/x/../health", "/%68ealth", "/./health"] {
            assert_eq!(policy(path), None, "{path} is skipped");
        }
    }
}
