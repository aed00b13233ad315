//! Rate-limit headers and the responses the layer writes itself.
//!
//! `X-RateLimit-Reset` and the IETF `t` parameter are **seconds from now**
//! until the key is back to full capacity (for a fixed window: until the
//! window ends), rounded up. `Retry-After` is the wait, in whole seconds
//! rounded up, after which the same request would pass; it is never 0 for
//! a positive wait.

use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use ratelimit_core::Decisions;

use crate::config::{Policy, PolicyLimit};

/// `X-RateLimit-Limit`.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`: seconds until the key is back to full capacity.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// `RateLimit-Policy` (IETF draft): the quota and window of each policy.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF draft): remaining units and seconds to reset, per policy.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Status: degraded` marks a request let through because the
/// store could not answer (fail open).
pub const X_RATELIMIT_STATUS: HeaderName = HeaderName::from_static("x-ratelimit-status");

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// Header values up to this are served from a table of static strings,
/// so the common small numbers cost no allocation.
const CACHED_NUMBERS: u64 = 10_000;

/// A header value holding `n`.
pub(crate) fn number(n: u64) -> HeaderValue {
    static DIGITS: std::sync::OnceLock<(&'static str, Vec<u32>)> = std::sync::OnceLock::new();
    if n >= CACHED_NUMBERS {
        return n.into();
    }
    let (text, ends) = DIGITS.get_or_init(|| {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(CACHED_NUMBERS as usize + 1);
        ends.push(0);
        let mut digits = itoa::Buffer::new();
        for i in 0..CACHED_NUMBERS {
            text.push_str(digits.format(i));
            ends.push(text.len() as u32);
        }
        // Leaked once per process: about 40 KB that live as long as it does.
        (Box::leak(text.into_boxed_str()), ends)
    });
    let i = n as usize;
    HeaderValue::from_static(&text[ends[i] as usize..ends[i + 1] as usize])
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` value, fixed for a layer: `"id";q=100;w=60, ...`.
pub(crate) fn policy_header(limits: &[PolicyLimit]) -> HeaderValue {
    let mut value = String::new();
    for (i, l) in limits.iter().enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        let _ = write!(value, "\"{}\";q={};w={}", l.id, l.limit.capacity(), l.limit.rate().period().as_secs());
    }
    // Policy ids are validated to plain ASCII, so this cannot fail.
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static(""))
}

/// Adds the configured rate-limit headers for `decisions`.
pub(crate) fn insert_rate_headers(shared: &Policy, decisions: &Decisions, headers: &mut HeaderMap) {
    let style = shared.headers;
    if style.legacy() {
        if let Some(i) = decisions.binding_index() {
            let binding = &decisions[i];
            headers.insert(X_RATELIMIT_LIMIT, shared.limits[i].limit_value.clone());
            headers.insert(X_RATELIMIT_REMAINING, number(binding.remaining));
            headers.insert(X_RATELIMIT_RESET, number(ceil_secs(binding.reset_after)));
        }
    }
    if style.ietf() {
        headers.insert(RATELIMIT_POLICY, shared.policy_header.clone());
        let mut value = String::with_capacity(32 * shared.limits.len());
        for (i, (l, d)) in shared.limits.iter().zip(decisions).enumerate() {
            if i > 0 {
                value.push_str(", ");
            }
            let mut digits = itoa::Buffer::new();
            value.push('"');
            value.push_str(&l.id);
            value.push_str("\";r=");
            value.push_str(digits.format(d.remaining));
            value.push_str(";t=");
            value.push_str(digits.format(ceil_secs(d.reset_after)));
        }
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(RATELIMIT, value);
        }
    }
}

/// The fixed start of a layer's 429 body; only `retry-after` varies.
pub(crate) fn limited_body_prefix(policy: &str) -> String {
    let detail = serde_json::Value::from(format!("Rate limit of policy {policy} exceeded."));
    format!("{{\"type\":\"{QUOTA_EXCEEDED}\",\"title\":\"Too Many Requests\",\"status\":429,\"detail\":{detail}")
}

/// The response to a limited request.
pub(crate) fn limited(shared: &Policy, parts: &http::request::Parts, decisions: &Decisions) -> Response<Bytes> {
    let binding = decisions.most_restrictive();
    let retry = binding.and_then(|d| d.retry_after).map(|d| ceil_secs(d).max(1));
    let mut response = match &shared.on_limited {
        Some(handler) => handler(parts, decisions),
        None => {
            let mut body = String::with_capacity(shared.limited_body_prefix.len() + 24);
            body.push_str(&shared.limited_body_prefix);
            match retry {
                Some(secs) => {
                    let _ = write!(body, ",\"retry-after\":{secs}}}");
                }
                // No wait helps a request that costs more than the capacity.
                None => body.push_str(",\"retry-after\":null}"),
            }
            let mut response = Response::new(Bytes::from(body));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
            response
        }
    };
    let headers = response.headers_mut();
    insert_rate_headers(shared, decisions, headers);
    if let Some(secs) = retry {
        if !headers.contains_key(RETRY_AFTER) {
            headers.insert(RETRY_AFTER, number(secs));
        }
    }
    response
}

/// The response when the store failed and the policy is to fail closed.
pub(crate) fn unavailable() -> Response<Bytes> {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        "about:blank",
        "The rate limiter's store is unavailable; try again shortly.",
        Some(1),
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The response when a request lacks the key and the policy is to reject it.
pub(crate) fn missing_key() -> Response<Bytes> {
    problem(
        StatusCode::BAD_REQUEST,
        "Bad Request",
        "about:blank",
        "The request lacks the identity this endpoint is rate limited by.",
        None,
    )
}

/// The response when no identity, not even the client address, is known:
/// a server set-up error (axum must be served with connect info).
pub(crate) fn no_client_address() -> Response<Bytes> {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        "about:blank",
        "The rate limiter cannot identify the client.",
        None,
    )
}

/// An RFC 9457 problem document.
fn problem(status: StatusCode, title: &str, kind: &str, detail: &str, retry: Option<u64>) -> Response<Bytes> {
    let mut body = format!(
        "{{\"type\":\"{kind}\",\"title\":\"{title}\",\"status\":{},\"detail\":{}",
        status.as_u16(),
        serde_json::Value::from(detail)
    );
    if let Some(secs) = retry {
        let _ = write!(body, ",\"retry-after\":{secs}");
    }
    body.push('}');
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_never_hide_a_wait() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(12_000)), 12);
        assert_eq!(ceil_secs(Duration::from_millis(12_001)), 13);
    }

    #[test]
    fn limited_body_prefix_is_the_start_of_valid_json() {
        let body = format!("{},\"retry-after\":7}}", limited_body_prefix("5/m"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["detail"], "Rate limit of policy 5/m exceeded.");
    }

    #[test]
    fn numbers_render_the_same_cached_or_not() {
        for n in [0, 1, 9, 10, 99, 4242, 9_999, 10_000, 123_456, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn problem_bodies_are_valid_json() {
        let r = problem(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", QUOTA_EXCEEDED, "quote \" and \\", Some(3));
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["retry-after"], 3);
        assert_eq!(v["detail"], "quote \" and \\");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
    }
}
