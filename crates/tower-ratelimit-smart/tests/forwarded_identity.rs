//! Who a request is counted as when it arrives through trusted proxies
//! that are also on the allow list: nothing a client writes into a
//! forwarding header may land it in the proxy's (exempt) bucket.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{ForwardedHeader, RateLimitConfig, RateLimitLayer};

const PROXY: &str = "10.0.0.2:4000";

async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::new())))
}

/// One request per client per minute, behind proxies in 10.0.0.0/8 that
/// are trusted and, as in the documentation's example, allow-listed.
fn layer(header: ForwardedHeader) -> RateLimitLayer {
    let config = RateLimitConfig::builder()
        .rate("1/m")
        .trusted_proxies(["10.0.0.0/8"])
        .allow_ips(["10.0.0.0/8"])
        .forwarded_header(header)
        .build()
        .unwrap();
    RateLimitLayer::new(config)
}

async fn status(layer: &RateLimitLayer, name: &str, lines: &[&[u8]]) -> StatusCode {
    let service = ServiceBuilder::new().layer(layer.clone()).service(service_fn(ok));
    let mut request = Request::new(Full::new(Bytes::new()));
    request.extensions_mut().insert(PROXY.parse::<SocketAddr>().unwrap());
    for line in lines {
        request.headers_mut().append(name.parse::<http::HeaderName>().unwrap(), HeaderValue::from_bytes(line).unwrap());
    }
    service.oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_non_ascii_byte_in_the_clients_own_line_does_not_exempt_it() {
    let layer = layer(ForwardedHeader::XForwardedFor);
    // nginx's $proxy_add_x_forwarded_for appends the peer to the client's line.
    let line: &[u8] = b"\xff, 203.0.113.9";
    assert_eq!(status(&layer, "x-forwarded-for", &[line]).await, StatusCode::OK);
    assert_eq!(status(&layer, "x-forwarded-for", &[line]).await, StatusCode::TOO_MANY_REQUESTS);
    // The same client without the byte is the same client.
    assert_eq!(status(&layer, "x-forwarded-for", &[b"203.0.113.9"]).await, StatusCode::TOO_MANY_REQUESTS);
    // Another client keeps a bucket of its own.
    assert_eq!(status(&layer, "x-forwarded-for", &[b"\xff, 203.0.113.10"]).await, StatusCode::OK);
}

#[tokio::test]
async fn a_non_ascii_byte_on_an_earlier_header_line_does_not_exempt_the_client() {
    let layer = layer(ForwardedHeader::XForwardedFor);
    let lines: [&[u8]; 2] = [b"6.6.6.6, \xfe\xff", b"\xff, 198.51.100.8"];
    assert_eq!(status(&layer, "x-forwarded-for", &lines).await, StatusCode::OK);
    assert_eq!(status(&layer, "x-forwarded-for", &lines).await, StatusCode::TOO_MANY_REQUESTS);
    let lines: [&[u8]; 2] = [b"\xff", b"198.51.100.9"];
    assert_eq!(status(&layer, "x-forwarded-for", &lines).await, StatusCode::OK);
    assert_eq!(status(&layer, "x-forwarded-for", &lines).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_unknown_client_is_limited_and_cannot_pick_fresh_buckets() {
    for (name, header, forms) in [
        (
            "x-forwarded-for",
            ForwardedHeader::XForwardedFor,
            &[&b"unknown"[..], b"garbage-1", b"6.6.6.6, garbage-2", b"", b"6.6.6.6, ", b"\xff"][..],
        ),
        (
            "forwarded",
            ForwardedHeader::Forwarded,
            &[&b"for=_hidden"[..], b"for=_other", b"for=unknown", b"for=6.6.6.6, proto=https", b"for=\xff"][..],
        ),
        ("x-real-ip", ForwardedHeader::XRealIp, &[&b"unknown"[..], b"\xff", b"not an ip"][..]),
    ] {
        let layer = layer(header);
        // However the unparsable hop is spelled, it is one limited
        // bucket, never the allow-listed proxy's address.
        for (i, form) in forms.iter().enumerate() {
            let expected = if i == 0 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
            assert_eq!(status(&layer, name, &[form]).await, expected, "{name}: {:?}", String::from_utf8_lossy(form));
        }
        // Requests without any forwarding header are the proxy's own.
        assert_eq!(status(&layer, name, &[]).await, StatusCode::OK, "{name}");
        assert_eq!(status(&layer, name, &[]).await, StatusCode::OK, "{name}");
    }
}
