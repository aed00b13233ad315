//! [`RateLimitConfigBuilder`]: every option of a policy, checked by
//! [`build`](RateLimitConfigBuilder::build).

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Method};
use ratelimit_core::{Algorithm, Decisions, Limit, Rate, RateParseError, SharedStore, Store, store_key};

use super::policy::{CostFn, IntoLimitedResponse, LimitedHandler, SkipFn};
use super::{
    ConfigError, FailurePolicy, HeaderStyle, MAX_RATES, MissingKey, Mode, Policy, PolicyLimit, RateLimitConfig,
};
use crate::key::{ForwardedHeader, Key, TrustedProxies};
use crate::net::{IpNet, IpNetParseError};
use crate::telemetry::Telemetry;

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
///     .algorithm(Algorithm::SlidingLog)
///     .key(Key::header("x-api-key"))
///     .policy("api")
///     .build()?;
/// assert_eq!(config.policy(), Some("api"));
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
            key_prefix: store_key::DEFAULT_PREFIX.to_owned(),
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

    /// The algorithm for every rate of this layer (default [`Algorithm::SlidingLog`],
    /// `sliding_window` in settings: the one default of both).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The token bucket's capacity, when it should differ from the limit.
    /// Only the token bucket has one: with another algorithm `build()`
    /// refuses it rather than ignore it.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// What identifies a client (default [`Key::ip`]).
    pub fn key(mut self, key: Key) -> Self {
        self.key = key;
        self
    }

    /// Where the counters live (default: a new [`MemoryStore`](ratelimit_core::MemoryStore)):
    /// any store, or a [`SharedStore`] (taken as it is). Layers given
    /// clones of one store share its state.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(SharedStore::new(store));
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

    /// Replaces the default problem+json 429 response. The handler gets
    /// the request's head and the decisions, and returns any
    /// [`IntoLimitedResponse`]; the layer adds the rate-limit headers and
    /// `Retry-After` (unless the handler set one).
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_ratelimit_smart::RateLimitConfig;
    /// let config = RateLimitConfig::builder()
    ///     .rate("5/15m")
    ///     .on_limited(|parts, _decisions| {
    ///         (StatusCode::TOO_MANY_REQUESTS, format!("Too many attempts at {}.\n", parts.uri.path()))
    ///     })
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit_smart::ConfigError>(())
    /// ```
    pub fn on_limited<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&Parts, &Decisions) -> R + Send + Sync + 'static,
        R: IntoLimitedResponse,
    {
        self.on_limited =
            Some(Arc::new(move |parts: &Parts, decisions: &Decisions| f(parts, decisions).into_limited_response()));
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
        if store_key::check_prefix(&self.key_prefix).is_err() {
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
        if let Some(burst) = self.burst {
            if self.algorithm != Algorithm::TokenBucket {
                return Err(ConfigError::Burst(format!(
                    "{burst}: only the token bucket has a burst, and this layer's algorithm is {}",
                    self.algorithm.as_str()
                )));
            }
        }
        let limits = rates
            .iter()
            .map(|&rate| {
                let mut limit = Limit::new(rate, self.algorithm);
                if let Some(burst) = self.burst {
                    limit = limit.with_burst(burst).map_err(|_| {
                        ConfigError::Burst(format!("{burst}: must be between 1 and {}", ratelimit_core::MAX_LIMIT))
                    })?;
                }
                limit.validate()?;
                let id = if single { policy.clone() } else { format!("{policy}/{rate}") };
                // The store key always names the rate, so two layers that
                // share a policy name but not their rates never share state.
                let key_policy = if single && named { format!("{policy}/{rate}") } else { id.clone() };
                let key_head = store_key::head(&self.key_prefix, &key_policy, limit.algorithm());
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
        let needs_client_ip = self.key.needs_client_ip() || !allow.is_empty();
        Ok(RateLimitConfig::one(Policy {
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
            needs_client_ip,
            allow,
            methods: self.methods,
            on_limited: self.on_limited,
            telemetry,
        }))
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

/// The longest policy name: it is part of every store key.
pub(crate) const MAX_POLICY_NAME: usize = 64;

fn valid_policy(name: &str) -> bool {
    (1..=MAX_POLICY_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RateLimitConfig {
        fn policy_state(&self) -> &Policy {
            self.select("/").expect("one policy")
        }
    }

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
        let token_bucket = || RateLimitConfig::builder().rate("1/s").algorithm(Algorithm::TokenBucket);
        assert!(err(token_bucket().burst(0)).starts_with("burst: 0"));
        let ignored = err(RateLimitConfig::builder().rate("1/s").algorithm(Algorithm::FixedWindow).burst(5));
        assert!(ignored.contains("only the token bucket"), "{ignored}");
        assert!(token_bucket().burst(5).build().is_ok());
        assert!(err(RateLimitConfig::builder().rate("1/s").key_prefix("a{b}")).contains("key_prefix"));
        let many = (1..=9).fold(RateLimitConfig::builder(), |b, n| b.rate(format!("{n}/s")));
        assert!(err(many).contains("at most 8"));
    }

    #[test]
    fn a_sliding_log_above_its_bound_is_refused_with_the_alternative() {
        let max = ratelimit_core::MAX_SLIDING_LOG_LIMIT;
        let sliding = |rate: String| RateLimitConfig::builder().rate(rate).algorithm(Algorithm::SlidingLog);
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
        assert_eq!(one.policy(), Some("5/m"));
        assert_eq!(one.policy_state().limits[0].id, "5/m");
        let two = RateLimitConfig::builder().rate("10/s").rate("1000/h").policy("api").build().unwrap();
        let ids: Vec<_> = two.policy_state().limits.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["api/10/s", "api/1000/h"]);
        assert_eq!(one.policy_state().limits[0].key_head, "ratelimit:5/m:sliding_window:{");
        let named = RateLimitConfig::builder().policy("login").rate("5/m").build().unwrap();
        assert_eq!(named.policy_state().limits[0].id, "login");
        assert_eq!(
            named.policy_state().limits[0].key_head,
            "ratelimit:login/5/m:sliding_window:{",
            "the key names the rate"
        );
    }
}
