//! The runtime state of one policy, shared by every clone of a layer.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method};
use ratelimit_core::{Decisions, Limit, SharedStore};

use super::{FailurePolicy, HeaderStyle, MissingKey, Mode};
use crate::key::{Key, TrustedProxies};
use crate::net::IpNet;
use crate::telemetry::Telemetry;

pub(crate) type CostFn = dyn Fn(&Parts) -> u64 + Send + Sync;
pub(crate) type SkipFn = dyn Fn(&Parts) -> bool + Send + Sync;
/// Builds the response for a limited request; the layer adds the
/// rate-limit headers and `Retry-After` to whatever it returns.
pub type LimitedHandler = dyn Fn(&Parts, &Decisions) -> http::Response<Bytes> + Send + Sync;

/// What an [`on_limited`](super::RateLimitConfigBuilder::on_limited)
/// handler may return: an `http::Response` whose body converts into
/// `Bytes` (`String`, `&'static str`, `Vec<u8>`, `Bytes`), a
/// `(StatusCode, body)` pair, or a body alone, answered 429.
pub trait IntoLimitedResponse {
    /// The response, with a `Bytes` body.
    fn into_limited_response(self) -> http::Response<Bytes>;
}

impl<B: Into<Bytes>> IntoLimitedResponse for http::Response<B> {
    fn into_limited_response(self) -> http::Response<Bytes> {
        self.map(Into::into)
    }
}

impl<B: Into<Bytes>> IntoLimitedResponse for (http::StatusCode, B) {
    fn into_limited_response(self) -> http::Response<Bytes> {
        let mut response = http::Response::new(self.1.into());
        *response.status_mut() = self.0;
        response
    }
}

macro_rules! limited_body {
    ($($body:ty),*) => {$(
        impl IntoLimitedResponse for $body {
            fn into_limited_response(self) -> http::Response<Bytes> {
                (http::StatusCode::TOO_MANY_REQUESTS, self).into_limited_response()
            }
        }
    )*};
}

limited_body!(String, &'static str, Vec<u8>, Bytes);

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

/// One policy, validated and ready to serve: its limits with their
/// names, how it finds the key, and what it does when limited or when the
/// store fails. Layers share it behind an `Arc`.
pub(crate) struct Policy {
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
    /// Whether every check needs the client's address (an IP key or an
    /// allow list), worked out once rather than per request.
    pub(crate) needs_client_ip: bool,
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) on_limited: Option<Arc<LimitedHandler>>,
    pub(crate) telemetry: Telemetry,
}

/// The store keys of one request, one per limit.
pub(crate) type Keys = smallvec::SmallVec<[String; 2]>;

impl Policy {
    /// Every limit's key from the first one, whose identity was written
    /// straight after its head, at `first[start..]`: the one way keys are
    /// made, for requests and for operators (`store_keys`).
    pub(crate) fn keys(&self, mut first: String, start: usize) -> Keys {
        ratelimit_core::store_key::seal_identity(&mut first, start);
        let mut keys = Keys::new();
        for limit in &self.limits[1..] {
            let identity = &first[start..];
            let mut other = String::with_capacity(limit.key_head.len() + identity.len());
            other.push_str(&limit.key_head);
            other.push_str(identity);
            keys.push(other);
        }
        keys.insert(0, first);
        keys
    }

    /// Whether a check may need the client's address: always, or when the
    /// key is missing and the policy falls back to the address.
    pub(crate) fn needs_connect_info(&self) -> bool {
        self.needs_client_ip || (self.missing_key == MissingKey::FallbackToIp && self.key.may_be_missing())
    }
}
