//! [`RateLimit`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use ratelimit_core::{BoxFuture, CheckRequest, Decisions, LimitCheck, Store, StoreError};
use smallvec::SmallVec;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::{Keys, MissingKey, Policy, RateLimitConfig};
use crate::future::ResponseFuture;
use crate::headers;
use crate::key::{Client, KeyContext, write_client};
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
        let (parts, body) = request.into_parts();
        let Some(shared) = self.config.select(parts.uri.path()) else {
            return ResponseFuture::call(inner, Request::from_parts(parts, body));
        };
        match plan(shared, &parts) {
            Plan::Pass => ResponseFuture::call(inner, Request::from_parts(parts, body)),
            Plan::Respond(response) => ResponseFuture::respond(response),
            Plan::Check { keys, cost } => {
                let request = Request::from_parts(parts, body);
                // Stores that answer without I/O (memory) decide right here,
                // sparing the hot path a boxed future.
                let checks = limit_checks(shared, &keys);
                if let Some(result) = shared.store.check_now(CheckRequest::new(&checks, cost)) {
                    let answer = or_local(shared, &checks, cost, result);
                    return ResponseFuture::decided(answer, Arc::clone(shared), inner, request);
                }
                drop(checks);
                let check = start_check(Arc::clone(shared), keys, cost);
                ResponseFuture::checking(check, inner, request, Arc::clone(shared))
            }
        }
    }
}

enum Plan {
    Pass,
    Respond(Response<bytes::Bytes>),
    Check { keys: Keys, cost: u64 },
}

/// Decides, from the request head alone, whether and how to check it.
fn plan(shared: &Policy, parts: &Parts) -> Plan {
    if shared.methods.as_ref().is_some_and(|m| !m.contains(&parts.method)) {
        return Plan::Pass;
    }
    if shared.skip.as_ref().is_some_and(|skip| skip(parts)) {
        return Plan::Pass;
    }
    let client = if shared.needs_client_ip { shared.trusted.client(parts) } else { None };
    // Only a known address can be allow-listed; a client a trusted proxy
    // could not name is counted, never exempt.
    if let Some(ip) = client.and_then(Client::ip) {
        if shared.allow.iter().any(|net| net.contains(ip)) {
            return Plan::Pass;
        }
    }
    // The identity is written straight after the first limit's key head.
    let first = &shared.limits[0];
    let mut key = String::with_capacity(first.key_head.len() + 40);
    key.push_str(&first.key_head);
    let start = key.len();
    let cx = KeyContext { parts, client, ipv6_prefix: shared.ipv6_prefix };
    if !shared.key.write_identity(&cx, &mut key) {
        key.truncate(start);
        match shared.missing_key {
            MissingKey::Skip => return Plan::Pass,
            MissingKey::Reject => return Plan::Respond(headers::missing_key()),
            MissingKey::FallbackToIp => match client.or_else(|| shared.trusted.client(parts)) {
                Some(client) => write_client(&mut key, client, shared.ipv6_prefix),
                None => {
                    shared.telemetry.no_client_address(&shared.policy);
                    return Plan::Respond(headers::no_client_address());
                }
            },
        }
    }
    let keys = shared.keys(key, start);
    let cost = shared.cost.as_ref().map_or(1, |cost| cost(parts));
    Plan::Check { keys, cost }
}

fn limit_checks<'a>(shared: &'a Policy, keys: &'a Keys) -> SmallVec<[LimitCheck<'a>; 2]> {
    shared.limits.iter().zip(keys).map(|(l, key)| LimitCheck { key, limit: &l.limit }).collect()
}

/// The answer to one check: the store's, or with `FailurePolicy::Local`
/// after a store failure, the in-process store's.
pub(crate) struct Answer {
    pub(crate) result: Result<Decisions, StoreError>,
    /// Decided by the in-process store; the failure is already counted.
    pub(crate) local: bool,
}

/// Starts the store check; the future owns everything it borrows.
fn start_check(shared: Arc<Policy>, keys: Keys, cost: u64) -> BoxFuture<'static, Answer> {
    Box::pin(async move {
        let checks = limit_checks(&shared, &keys);
        let result = shared.store.check(CheckRequest::new(&checks, cost)).await;
        or_local(&shared, &checks, cost, result)
    })
}

/// With `FailurePolicy::Local`, a store failure is answered by the
/// in-process store instead.
fn or_local(shared: &Policy, checks: &[LimitCheck<'_>], cost: u64, result: Result<Decisions, StoreError>) -> Answer {
    let result = result.and_then(|decisions| well_formed(decisions, checks.len()));
    match (result, &shared.local) {
        (Err(error), Some(local)) => {
            shared.telemetry.store_failed(&shared.policy, &error, true);
            // The memory store always answers synchronously.
            let result = local.check_now(CheckRequest::new(checks, cost)).unwrap_or(Err(error));
            Answer { result, local: true }
        }
        (result, _) => Answer { result, local: false },
    }
}

/// A store's answer with one decision per limit; any other answer (a
/// custom store's bug) is a store failure, so the failure policy applies
/// rather than an empty answer counting as "allowed".
fn well_formed(decisions: Decisions, limits: usize) -> Result<Decisions, StoreError> {
    if decisions.len() == limits {
        return Ok(decisions);
    }
    Err(StoreError::backend("store", format!("the store answered {} decisions for {limits} limits", decisions.len())))
}
