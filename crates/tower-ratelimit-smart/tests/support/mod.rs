//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower_ratelimit_smart::{ForwardedHeader, RateLimitConfig, RateLimitLayer};

/// The trusted proxy requests arrive from.
pub const PROXY: &str = "10.0.0.2:4000";

/// A handler that answers 200 with an empty body.
pub async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::new())))
}

/// One request per client per minute, behind proxies in 10.0.0.0/8 that
/// are trusted and, as in the documentation's example, allow-listed: a
/// client counted as a proxy would never be limited.
pub fn behind_proxies(header: ForwardedHeader) -> RateLimitLayer {
    let config = RateLimitConfig::builder()
        .rate("1/m")
        .trusted_proxies(["10.0.0.0/8"])
        .allow_ips(["10.0.0.0/8"])
        .forwarded_header(header)
        .build()
        .unwrap();
    RateLimitLayer::new(config)
}
