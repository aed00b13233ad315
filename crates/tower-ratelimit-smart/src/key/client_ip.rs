//! Finding the client's address behind zero or more trusted proxies.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::request::Parts;

use crate::net::{IpNet, normalize};

/// Which header trusted proxies use to pass on the client's address.
///
/// Only one is read, because a proxy that sets one of them usually passes
/// the others through from the client untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client` (one address, set by the nearest proxy).
    XRealIp,
}

/// Who a request comes from, as far as the trusted proxies say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// A known address: the peer, or a forwarded hop.
    Ip(IpAddr),
    /// The trusted proxy `via` forwarded a hop that is not an address
    /// (`unknown`, an obfuscated RFC 7239 identifier such as `_hidden`, an
    /// empty item, bytes that are not text, anything else).
    ///
    /// Such a hop sits at the position a trusted proxy writes, so the
    /// client is genuinely unknown. It is counted under one bucket per
    /// proxy that wrote it, rather than under the text of the hop or under
    /// the proxy's own address:
    /// - the text is not trusted to be stable: a proxy may mint a fresh
    ///   obfuscated identifier per request (RFC 7239 allows it), which would
    ///   give each request a bucket of its own;
    /// - the proxy's own address may be on the allow list, and is shared
    ///   with everything else that proxy sends, so landing there would
    ///   exempt or hide the client.
    ///
    /// All unknown clients behind one proxy therefore share one limited
    /// bucket, which is never on an allow list (it is not an address).
    Unknown {
        /// The trusted proxy that wrote the hop.
        via: IpAddr,
    },
}

impl Client {
    /// The address, when it is known.
    pub(crate) fn ip(self) -> Option<IpAddr> {
        match self {
            Client::Ip(ip) => Some(ip),
            Client::Unknown { .. } => None,
        }
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies {
    pub(crate) nets: Vec<IpNet>,
    pub(crate) header: ForwardedHeader,
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client: the TCP peer unless it is a trusted proxy, in which case
    /// the forwarding chain is walked from the right, skipping trusted hops,
    /// and the first untrusted hop is the client.
    ///
    /// Every hop is parsed on its own bytes, so a byte a client wrote into
    /// its part of the header cannot spoil the hops the proxies appended.
    /// A hop that does not parse ends the walk *at that position*: it is
    /// the nearest hop no trusted proxy vouches for, so the client is
    /// [`Client::Unknown`] behind the proxy that wrote it. It never becomes
    /// a trusted proxy's address, which is shared and may be allow-listed.
    /// Hops left of the first untrusted one were written by the client and
    /// are never read.
    ///
    /// A chain made only of trusted hops (or no forwarding header at all)
    /// means the request did not come through them from elsewhere: the
    /// leftmost trusted address, e.g. the proxy's own health checks.
    pub(crate) fn client(&self, parts: &Parts) -> Option<Client> {
        let peer = peer_addr(parts)?;
        if !self.trusts(peer) {
            return Some(Client::Ip(peer));
        }
        let headers = &parts.headers;
        let (name, pick): (&'static str, fn(&str) -> Option<&str>) = match self.header {
            ForwardedHeader::XRealIp => return Some(real_ip(headers, peer)),
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", whole_item),
            ForwardedHeader::Forwarded => ("forwarded", forwarded_for),
        };
        let mut last_trusted = peer;
        for hop in hops(headers, name, pick) {
            match hop {
                Some(ip) if self.trusts(ip) => last_trusted = ip,
                Some(ip) => return Some(Client::Ip(ip)),
                None => return Some(Client::Unknown { via: last_trusted }),
            }
        }
        Some(Client::Ip(last_trusted))
    }
}

/// The TCP peer, from axum's `ConnectInfo` or a plain `SocketAddr` extension.
pub(crate) fn peer_addr(parts: &Parts) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(normalize(info.0.ip()));
    }
    parts.extensions.get::<SocketAddr>().map(|a| normalize(a.ip()))
}

/// `X-Real-IP` from the trusted `peer`: absent means the request is the
/// proxy's own; repeated (the client's line passed on next to the proxy's)
/// or not an address means the client is unknown.
fn real_ip(headers: &HeaderMap, peer: IpAddr) -> Client {
    let mut values = headers.get_all("x-real-ip").iter();
    let Some(value) = values.next() else { return Client::Ip(peer) };
    if values.next().is_some() {
        return Client::Unknown { via: peer };
    }
    match parse_hop(value.as_bytes(), whole_item) {
        Some(ip) => Client::Ip(ip),
        None => Client::Unknown { via: peer },
    }
}

/// The hops of a list header, right to left, across repeated header lines;
/// `None` for a hop that is not an address.
fn hops<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    pick: fn(&str) -> Option<&str>,
) -> impl Iterator<Item = Option<IpAddr>> + 'h {
    headers
        .get_all(name)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
        .map(move |item| parse_hop(item, pick))
}

/// One hop from its raw bytes; bytes that are not UTF-8 are just a hop
/// that does not parse.
fn parse_hop(item: &[u8], pick: fn(&str) -> Option<&str>) -> Option<IpAddr> {
    let item = std::str::from_utf8(item.trim_ascii()).ok()?;
    pick(item).and_then(parse_ip)
}

fn whole_item(item: &str) -> Option<&str> {
    Some(item)
}

fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value.trim())
    })
}

/// Accepts `192.0.2.7`, `2001:db8::1`, and the quoted, bracketed and
/// ported forms proxies write (`"[2001:db8::1]:443"`, `192.0.2.7:80`);
/// anything else, even close to those, is not an address.
fn parse_ip(raw: &str) -> Option<IpAddr> {
    let s = raw.trim();
    let s = s.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(s);
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(normalize(sock.ip()));
    }
    // `[2001:db8::1]` without a port (with one, it parsed above).
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(|v6| normalize(IpAddr::V6(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &[u8])]) -> Parts {
        let mut builder = http::Request::builder();
        for (k, v) in headers {
            builder = builder.header(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        parts.extensions.insert(axum::extract::ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    fn trusted(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies { nets: nets.iter().map(|n| n.parse().unwrap()).collect(), header }
    }

    fn ip(s: &str) -> Option<Client> {
        Some(Client::Ip(s.parse().unwrap()))
    }

    fn unknown_via(s: &str) -> Option<Client> {
        Some(Client::Unknown { via: s.parse().unwrap() })
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let p = parts("203.0.113.5:4000", &[("x-forwarded-for", b"1.1.1.1"), ("x-real-ip", b"2.2.2.2")]);
        assert_eq!(TrustedProxies::default().client(&p), ip("203.0.113.5"));
        assert_eq!(trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor).client(&p), ip("203.0.113.5"));
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(t.client(&p), ip("198.51.100.7"));
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"6.6.6.6"), ("x-forwarded-for", b"198.51.100.8")]);
        assert_eq!(t.client(&p), ip("198.51.100.8"));
        let p = parts("10.0.0.2:4000", &[]);
        assert_eq!(t.client(&p), ip("10.0.0.2"), "no forwarding header: the proxy's own request");
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"10.0.0.7, 10.0.0.3")]);
        assert_eq!(t.client(&p), ip("10.0.0.7"), "every hop trusted: the leftmost");
    }

    #[test]
    fn hops_are_parsed_on_their_own_bytes() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // nginx's $proxy_add_x_forwarded_for: the peer appended to the client's line.
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"\xff, 203.0.113.9")]);
        assert_eq!(t.client(&p), ip("203.0.113.9"));
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"\xfe\xff, 203.0.113.9, 10.0.0.9")]);
        assert_eq!(t.client(&p), ip("203.0.113.9"));
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"\xff"), ("x-forwarded-for", b"198.51.100.8")]);
        assert_eq!(t.client(&p), ip("198.51.100.8"));
        let p =
            parts("10.0.0.2:4000", &[("x-forwarded-for", b"1.1.1.1, \xff"), ("x-forwarded-for", b"a, 198.51.100.8")]);
        assert_eq!(t.client(&p), ip("198.51.100.8"));
    }

    #[test]
    fn an_unparsable_hop_ends_the_walk_at_its_own_position() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        for hop in [&b"unknown"[..], b"not-an-ip", b"", b"  ", b"\xff", b"_hidden", b"1.2.3.4.5", b"[::1"] {
            let p = parts("10.0.0.2:4000", &[("x-forwarded-for", hop)]);
            assert_eq!(t.client(&p), unknown_via("10.0.0.2"), "{:?}", String::from_utf8_lossy(hop));
        }
        // Behind two trusted proxies, the one that wrote the hop is named.
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"203.0.113.9, unknown, 10.0.0.9")]);
        assert_eq!(t.client(&p), unknown_via("10.0.0.9"));
        // An empty item between commas, or a trailing comma.
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"203.0.113.9,,10.0.0.9")]);
        assert_eq!(t.client(&p), unknown_via("10.0.0.9"));
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"203.0.113.9, ")]);
        assert_eq!(t.client(&p), unknown_via("10.0.0.2"));
        // A later line that does not parse hides nothing earlier lines say.
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"203.0.113.9"), ("x-forwarded-for", b"garbage")]);
        assert_eq!(t.client(&p), unknown_via("10.0.0.2"));
        // Garbage left of the client is the client's own writing, never read.
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", b"garbage, \xff, , 203.0.113.9")]);
        assert_eq!(t.client(&p), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_and_real_ip_forms() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let p = parts(
            "10.0.0.2:4000",
            &[("forwarded", b"for=6.6.6.6, for=\"[2001:db8::7]:443\";proto=https, for=10.0.0.5")],
        );
        assert_eq!(t.client(&p), ip("2001:db8::7"));
        let p = parts("10.0.0.2:4000", &[("forwarded", b"for=\xff;by=x, for=198.51.100.3;proto=https")]);
        assert_eq!(t.client(&p), ip("198.51.100.3"));
        for hop in [&b"for=_hidden"[..], b"for=unknown", b"proto=https", b"for=\"_x\"", b"for=\xff", b""] {
            let p = parts("10.0.0.2:4000", &[("forwarded", hop)]);
            assert_eq!(t.client(&p), unknown_via("10.0.0.2"), "{:?}", String::from_utf8_lossy(hop));
        }
        let p = parts("10.0.0.2:4000", &[("forwarded", b"for=198.51.100.3, for=_hidden;by=10.0.0.5, for=10.0.0.5")]);
        assert_eq!(t.client(&p), unknown_via("10.0.0.5"));

        let t = trusted(&["10.0.0.2"], ForwardedHeader::XRealIp);
        let p = parts("10.0.0.2:4000", &[("x-real-ip", b"198.51.100.9")]);
        assert_eq!(t.client(&p), ip("198.51.100.9"));
        let p = parts("10.0.0.2:4000", &[]);
        assert_eq!(t.client(&p), ip("10.0.0.2"));
        for value in [&b"junk"[..], b"\xff", b"", b"unknown"] {
            let p = parts("10.0.0.2:4000", &[("x-real-ip", value)]);
            assert_eq!(t.client(&p), unknown_via("10.0.0.2"), "{:?}", String::from_utf8_lossy(value));
        }
        let p = parts("10.0.0.2:4000", &[("x-real-ip", b"198.51.100.9"), ("x-real-ip", b"198.51.100.10")]);
        assert_eq!(t.client(&p), unknown_via("10.0.0.2"));
    }
}
