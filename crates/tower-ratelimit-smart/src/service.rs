//! [`RateLimit`]: the middleware service.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use ratelimit_core::{BoxFuture, CheckRequest, Decisions, LimitCheck, Store, StoreError, key};
use smallvec::SmallVec;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::{MissingKey, RateLimitConfig, Shared};
use crate::future::ResponseFuture;
use crate::headers;
use crate::key::{KeyContext, write_ip};
use crate::layer::RateLimitLayer;

/// Rate-limits requests to the inner service. Built by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    config: RateLimitConfig,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: RateLimitConfig) -> Self {
        Self { inner, config }
    }

    /// A layer that wraps services with this configuration.
    pub fn layer(config: RateLimitConfig) -> RateLimitLayer {
        RateLimitLayer::new(config)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready handles this request; a fresh
        // clone stays behind for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = &self.config.shared;
        let (parts, body) = request.into_parts();
        match plan(shared, &parts) {
            Plan::Pass => ResponseFuture::call(inner, Request::from_parts(parts, body)),
            Plan::Respond(response) => ResponseFuture::respond(response),
            Plan::Check { identity, cost } => {
                let check = start_check(Arc::clone(shared), &identity, cost);
                ResponseFuture::checking(check, inner, Request::from_parts(parts, body), Arc::clone(shared))
            }
        }
    }
}

enum Plan {
    Pass,
    Respond(Response<bytes::Bytes>),
    Check { identity: String, cost: u64 },
}

/// Decides, from the request head alone, whether and how to check it.
fn plan(shared: &Shared, parts: &Parts) -> Plan {
    if shared.methods.as_ref().is_some_and(|m| !m.contains(&parts.method)) {
        return Plan::Pass;
    }
    if shared.skip.as_ref().is_some_and(|skip| skip(parts)) {
        return Plan::Pass;
    }
    let needs_ip = shared.key.needs_client_ip() || !shared.allow.is_empty();
    let client_ip = if needs_ip { shared.trusted.client_ip(parts) } else { None };
    if let Some(ip) = client_ip {
        if shared.allow.iter().any(|net| net.contains(ip)) {
            return Plan::Pass;
        }
    }
    let mut identity = String::with_capacity(48);
    let cx = KeyContext { parts, client_ip, ipv6_prefix: shared.ipv6_prefix };
    if !shared.key.write_identity(&cx, &mut identity) {
        identity.clear();
        match shared.missing_key {
            MissingKey::Skip => return Plan::Pass,
            MissingKey::Reject => return Plan::Respond(headers::missing_key()),
            MissingKey::FallbackToIp => {
                let ip: Option<IpAddr> = client_ip.or_else(|| shared.trusted.client_ip(parts));
                match ip {
                    Some(ip) => write_ip(&mut identity, ip, shared.ipv6_prefix),
                    None => {
                        tracing::error!(
                            policy = %shared.policy,
                            "rate limiter cannot identify the client: no key and no peer address; \
                             serve axum with into_make_service_with_connect_info::<SocketAddr>()"
                        );
                        return Plan::Respond(headers::no_client_address());
                    }
                }
            }
        }
    }
    let cost = shared.cost.as_ref().map_or(1, |cost| cost(parts));
    Plan::Check { identity, cost }
}

/// Starts the store check; the future owns everything it borrows.
fn start_check(shared: Arc<Shared>, identity: &str, cost: u64) -> BoxFuture<'static, Result<Decisions, StoreError>> {
    let keys: SmallVec<[String; 2]> =
        shared.limits.iter().map(|l| key::compose(&shared.key_prefix, &l.id, l.limit.algorithm(), identity)).collect();
    Box::pin(async move {
        let checks: SmallVec<[LimitCheck<'_>; 2]> =
            shared.limits.iter().zip(&keys).map(|(l, key)| LimitCheck { key, limit: &l.limit }).collect();
        shared.store.check(CheckRequest::new(&checks, cost)).await
    })
}
