//! The one error a configuration is refused with.

use ratelimit_core::{LimitError, Rate, RateParseError};

use super::MAX_RATES;
use crate::net::IpNetParseError;

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
    /// A rate that does not parse.
    #[error("rate: {0}")]
    Rate(#[from] RateParseError),
    /// A burst that cannot be: out of range, or on an algorithm without one.
    #[error("burst: {0}")]
    Burst(String),
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
    /// [`RateLimitConfig::by_path_prefix`](super::RateLimitConfig::by_path_prefix)
    /// with neither a rule nor a fallback.
    #[error("by_path_prefix: no rule and no fallback; give at least one")]
    NoRoutes,
    /// A configuration routed by path given as a rule or fallback of
    /// another: rules are single policies.
    #[error("by_path_prefix: {0} is itself routed by path; give each rule a single policy")]
    NestedRoutes(String),
    /// A path prefix that does not start with `/`.
    #[error("path prefix {0:?} must start with '/'")]
    PathPrefix(String),
    /// No store was given and the in-memory store is not compiled in.
    #[error("store: no store configured and the `memory` feature is off; call .store(...)")]
    NoStore,
}
