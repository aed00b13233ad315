//! Who a request is counted as when it arrives through trusted proxies
//! that are also on the allow list: nothing a client writes into a
//! forwarding header may land it in the proxy's (exempt) bucket.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use support::{PROXY, behind_proxies as layer, ok};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{ForwardedHeader, RateLimitConfig, RateLimitLayer};

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

/// The pattern docs/keys.md recommends for `Key::header`: with the default
/// fallback to the IP, a client that invents a key value per request gets
/// a fresh bucket each time, so a second layer keyed by IP bounds it.
#[tokio::test]
async fn a_layer_keyed_by_ip_bounds_a_client_inventing_header_values() {
    use axum::{Router, routing::get};
    use tower_ratelimit_smart::Key;

    let per_key =
        RateLimitConfig::builder().policy("per-key").rate("2/m").key(Key::header("x-api-key")).build().unwrap();
    let per_address = RateLimitConfig::builder().policy("per-address").rate("5/m").key(Key::ip()).build().unwrap();
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .layer(RateLimitLayer::new(per_key))
        .layer(RateLimitLayer::new(per_address));
    let mut statuses = Vec::new();
    for n in 0..7 {
        let mut request = Request::builder().uri("/api/items").header("x-api-key", format!("made-up-{n}"));
        request = request.extension(axum::extract::ConnectInfo("198.51.100.4:5000".parse::<SocketAddr>().unwrap()));
        let response = app.clone().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
}

/// One client holding a /48 has 65,536 /64s; a second layer grouping IPv6
/// clients by /48 bounds it.
#[tokio::test]
async fn a_coarser_ipv6_layer_bounds_a_client_with_many_subnets() {
    use axum::{Router, routing::get};

    let per_64 = RateLimitConfig::builder().policy("per-64").rate("2/m").build().unwrap();
    let per_48 = RateLimitConfig::builder().policy("per-48").rate("5/m").ipv6_prefix(48).build().unwrap();
    let app: Router = Router::new()
        .route("/", get(|| async { "home" }))
        .layer(RateLimitLayer::new(per_64))
        .layer(RateLimitLayer::new(per_48));
    let mut statuses = Vec::new();
    for subnet in 0..7 {
        let peer: SocketAddr = format!("[2001:db8:7:{subnet:x}::1]:5000").parse().unwrap();
        let request = Request::builder().uri("/").extension(axum::extract::ConnectInfo(peer));
        let response = app.clone().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
}
