//! Property tests of the request path over arbitrary bytes: forwarding
//! headers, header keys, paths, IP and CIDR strings. Whatever a client
//! sends, the layer answers (never panics), counts the client as who it
//! is, and gives no spelling a bucket of its own.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use support::{PROXY, behind_proxies, ok};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{ForwardedHeader, IpNet, Key, RateLimitConfig, RateLimitLayer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A request from `peer` to `uri` with `headers` (one line each).
fn request(peer: &str, uri: &str, headers: &[(&str, &[u8])]) -> Request<Full<Bytes>> {
    let mut request = Request::builder().uri(uri).body(Full::new(Bytes::new())).unwrap();
    request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
    for (name, value) in headers {
        let value = HeaderValue::from_bytes(value).expect("the strategy makes valid header values");
        request.headers_mut().append(HeaderName::from_str(name).unwrap(), value);
    }
    request
}

fn status(layer: &RateLimitLayer, request: Request<Full<Bytes>>) -> StatusCode {
    let service = ServiceBuilder::new().layer(layer.clone()).service(service_fn(ok));
    runtime().block_on(service.oneshot(request)).unwrap().status()
}

/// Bytes a header value may hold (HTTP forbids control characters but
/// tab), weighted towards the ones forwarding-header parsers act on.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
        2 => prop::sample::select(&b",;=\"[]:. for_unknown0123456789abcdef"[..]),
    ];
    prop::collection::vec(byte, 0..max)
}

/// A client address outside the proxies' network.
fn client_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (11u8..=223, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
        any::<[u16; 4]>().prop_map(|[a, b, c, d]| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, b, c, d, 0, 1))),
    ]
}

/// The element a proxy appends for `client`.
fn appended(header: ForwardedHeader, client: IpAddr) -> String {
    match (header, client) {
        (ForwardedHeader::Forwarded, IpAddr::V6(v6)) => format!("for=\"[{v6}]\""),
        (ForwardedHeader::Forwarded, IpAddr::V4(v4)) => format!("for={v4}"),
        _ => client.to_string(),
    }
}

fn joined(prefix: &[u8], element: &str) -> Vec<u8> {
    let mut line = prefix.to_vec();
    line.extend_from_slice(b", ");
    line.extend_from_slice(element.as_bytes());
    line
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_500))]

    /// A proxy appends the client's address to whatever line the client
    /// sent (nginx's `$proxy_add_x_forwarded_for`): nothing the client
    /// writes before it changes who it is counted as.
    #[test]
    fn a_clients_own_forwarding_text_never_changes_who_it_is(
        forwarded in any::<bool>(),
        first in header_bytes(64),
        second in header_bytes(64),
        client in client_ip(),
    ) {
        let (header, name) = if forwarded {
            (ForwardedHeader::Forwarded, "forwarded")
        } else {
            (ForwardedHeader::XForwardedFor, "x-forwarded-for")
        };
        let layer = behind_proxies(header);
        let element = appended(header, client);
        let first_line = joined(&first, &element);
        let second_line = joined(&second, &element);
        prop_assert_eq!(status(&layer, request(PROXY, "/", &[(name, &first_line)])), StatusCode::OK);
        prop_assert_eq!(
            status(&layer, request(PROXY, "/", &[(name, &second_line)])),
            StatusCode::TOO_MANY_REQUESTS
        );
        prop_assert_eq!(
            status(&layer, request(PROXY, "/", &[(name, element.as_bytes())])),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    /// Whatever forwarding headers arrive through the proxy, the layer
    /// answers, and the same headers are the same client (so no spelling
    /// escapes the limit).
    #[test]
    fn any_forwarding_headers_are_one_limited_identity(
        kind in 0u8..3,
        lines in prop::collection::vec(header_bytes(48), 1..4),
    ) {
        let (header, name) = match kind {
            0 => (ForwardedHeader::XForwardedFor, "x-forwarded-for"),
            1 => (ForwardedHeader::Forwarded, "forwarded"),
            _ => (ForwardedHeader::XRealIp, "x-real-ip"),
        };
        // Lines naming only the proxies' own network are the proxies' own
        // requests, which the allow list exempts by design.
        let layer = behind_proxies(header);
        let headers: Vec<(&str, &[u8])> = lines.iter().map(|l| (name, l.as_slice())).collect();
        let first = status(&layer, request(PROXY, "/", &headers));
        let second = status(&layer, request(PROXY, "/", &headers));
        prop_assert_eq!(first, StatusCode::OK);
        let all_proxies = lines.iter().all(|line| {
            line.split(|&b| b == b',').all(|hop| std::str::from_utf8(hop).ok().is_some_and(|hop| {
                let hop = hop.trim().trim_start_matches("for=").trim_matches('"');
                hop.parse::<IpAddr>().is_ok_and(|ip| IpNet::from_str("10.0.0.0/8").unwrap().contains(ip))
            }))
        });
        if !all_proxies {
            prop_assert_eq!(second, StatusCode::TOO_MANY_REQUESTS, "{:?}", lines);
        }
    }

    /// A chain of hops of every kind (the proxies' own addresses, client
    /// addresses in plain, ported and bracketed forms, `unknown` and junk)
    /// is resolved as the walk from the right says: trusted hops are
    /// skipped, the first untrusted address is the client (the same bucket
    /// as that address alone), a hop that does not parse makes the client
    /// unknown behind the last trusted hop, and a chain of proxies only is
    /// the proxies' own, allow-listed request.
    #[test]
    fn forwarding_chains_resolve_to_the_rightmost_untrusted_hop(
        hops in prop::collection::vec((0u8..5, any::<[u8; 4]>()), 1..6),
    ) {
        #[derive(Clone, Debug)]
        enum Hop { Proxy(IpAddr), Client(IpAddr), Junk }
        let hops: Vec<(Hop, String)> = hops
            .iter()
            .map(|&(kind, [a, b, c, d])| match kind {
                0 => { let ip = IpAddr::V4(Ipv4Addr::new(10, b, c, d)); (Hop::Proxy(ip), ip.to_string()) }
                1 => { let ip = IpAddr::V4(Ipv4Addr::new(a.clamp(11, 223), b, c, d)); (Hop::Client(ip), ip.to_string()) }
                2 => { let ip = IpAddr::V4(Ipv4Addr::new(a.clamp(11, 223), b, c, d)); (Hop::Client(ip), format!("{ip}:{}", u16::from(c) + 1)) }
                3 => { let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, u16::from(a), 0, 0, 0, 0, 1)); (Hop::Client(ip), format!("[{ip}]")) }
                _ => (Hop::Junk, if a % 2 == 0 { "unknown".to_owned() } else { format!("x{b}") }),
            })
            .collect();
        let line = hops.iter().map(|(_, text)| text.as_str()).collect::<Vec<_>>().join(", ");
        let proxy: IpAddr = PROXY.parse::<SocketAddr>().unwrap().ip();
        let mut last_trusted = proxy;
        let mut expected = None;
        for (hop, _) in hops.iter().rev() {
            match hop {
                Hop::Proxy(ip) => last_trusted = *ip,
                Hop::Client(ip) => { expected = Some(Ok(*ip)); break; }
                Hop::Junk => { expected = Some(Err(last_trusted)); break; }
            }
        }
        let layer = behind_proxies(ForwardedHeader::XForwardedFor);
        let send = |line: &str| status(&layer, request(PROXY, "/", &[("x-forwarded-for", line.as_bytes())]));
        prop_assert_eq!(send(&line), StatusCode::OK, "{}", line);
        match expected {
            // Only proxies: their own request, allow-listed.
            None => prop_assert_eq!(send(&line), StatusCode::OK, "{}", line),
            // The client's bucket, whatever form its hop took.
            Some(Ok(client)) => prop_assert_eq!(send(&client.to_string()), StatusCode::TOO_MANY_REQUESTS, "{}", line),
            // Unknown behind the last trusted hop, limited, never exempt.
            Some(Err(via)) => {
                let same = if via == proxy { "junk".to_owned() } else { format!("junk, {via}") };
                prop_assert_eq!(send(&same), StatusCode::TOO_MANY_REQUESTS, "{} (unknown via {})", line, via);
            }
        }
    }

    /// A header key is any bytes: the same value is one bucket, another
    /// value another, and the layer always answers.
    #[test]
    fn any_header_key_value_is_one_bucket(first in header_bytes(300), second in header_bytes(300)) {
        let config = RateLimitConfig::builder().rate("1/m").key(Key::header("x-api-key")).build().unwrap();
        let layer = RateLimitLayer::new(config);
        let peer = "198.51.100.7:5000";
        prop_assert_eq!(status(&layer, request(peer, "/", &[("x-api-key", &first)])), StatusCode::OK);
        prop_assert_eq!(
            status(&layer, request(peer, "/", &[("x-api-key", &first)])),
            StatusCode::TOO_MANY_REQUESTS
        );
        if first != second {
            prop_assert_eq!(status(&layer, request(peer, "/", &[("x-api-key", &second)])), StatusCode::OK);
        }
    }

    /// Every spelling of a limited path (doubled slashes, `.` and `x/..`
    /// segments, escaped unreserved characters in either case) is limited
    /// by its rule, and `Key::path()` counts them as one path.
    #[test]
    fn any_spelling_of_a_limited_path_is_limited(
        spellings in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 2..5),
    ) {
        let login = RateLimitConfig::builder().policy("login").rate("1/m").key(Key::ip() + Key::path()).build().unwrap();
        let config = RateLimitConfig::by_path_prefix([("/auth/login".to_owned(), login)], None, []).unwrap();
        let layer = RateLimitLayer::new(config);
        let peer = "198.51.100.8:5000";
        for (i, &(noise, encode, case)) in spellings.iter().enumerate() {
            let path = spelled(&["auth", "login"], noise, encode, case);
            let expected = if i == 0 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
            prop_assert_eq!(status(&layer, request(peer, &path, &[])), expected, "{}", path);
        }
    }

    /// An IP or CIDR string is parsed into a block that prints as text
    /// that parses back to it, or refused; never a panic. The builder
    /// refuses what the parser refuses.
    #[test]
    fn any_cidr_text_is_a_block_or_refused(
        text in prop_oneof![
            any::<String>(),
            "[0-9a-fA-F:.]{1,40}(/[0-9]{1,4})?",
            "::ffff:[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[0-9]{1,3}",
        ],
    ) {
        let parsed = IpNet::from_str(&text);
        if let Ok(net) = &parsed {
            prop_assert_eq!(IpNet::from_str(&net.to_string()).ok(), Some(*net));
        }
        let built = RateLimitConfig::builder().rate("1/m").trusted_proxies([text.as_str()]).build();
        prop_assert_eq!(built.is_ok(), parsed.is_ok(), "{}", text);
    }
}

/// `/auth/login` spelled with noise: `noise` picks what comes before each
/// segment (`/`, `/.`, `/x/..`), `encode` which characters are escaped,
/// `case` the escapes' hex case.
fn spelled(segments: &[&str], noise: u8, encode: u8, case: u8) -> String {
    let mut out = String::new();
    for (s, segment) in segments.iter().enumerate() {
        match (noise >> (2 * s)) & 3 {
            1 => out.push('/'),
            2 => out.push_str("/."),
            3 => out.push_str("/x/%2E%2e"),
            _ => {}
        }
        out.push('/');
        for (i, c) in segment.chars().enumerate() {
            if encode & (1 << ((i + s) % 8)) != 0 {
                let hex = format!("%{:02X}", c as u8);
                out.push_str(&if case & (1 << (i % 8)) != 0 { hex.to_lowercase() } else { hex });
            } else {
                out.push(c);
            }
        }
    }
    out
}
