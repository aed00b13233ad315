//! Finding the client's address behind zero or more trusted proxies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
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

    /// The client address: the TCP peer unless it is a trusted proxy, in
    /// which case the forwarding chain is walked from the right, skipping
    /// trusted hops, and the first untrusted hop is the client. A hop that
    /// is not a valid address ends the walk at the last address known good,
    /// so a client can never choose its own identity.
    pub(crate) fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = peer_addr(parts)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let headers = &parts.headers;
        let (name, pick): (&'static str, fn(&str) -> Option<&str>) = match self.header {
            ForwardedHeader::XRealIp => return Some(single_ip(headers, "x-real-ip").unwrap_or(peer)),
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", whole_item),
            ForwardedHeader::Forwarded => ("forwarded", forwarded_for),
        };
        let mut client = peer;
        for hop in hops(headers, name, pick) {
            match hop {
                Some(ip) if self.trusts(ip) => client = ip,
                Some(ip) => return Some(ip),
                None => break,
            }
        }
        Some(client)
    }
}

/// The TCP peer, from axum's `ConnectInfo` or a plain `SocketAddr` extension.
pub(crate) fn peer_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| parts.extensions.get::<SocketAddr>().map(|a| a.ip()))
        .map(normalize)
}

fn single_ip(headers: &HeaderMap, name: &str) -> Option<IpAddr> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_ip(value.to_str().ok()?)
}

/// The hops of a list header, right to left, across repeated header lines.
fn hops<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    pick: fn(&str) -> Option<&str>,
) -> impl Iterator<Item = Option<IpAddr>> + 'h {
    let lines: Vec<&'h str> = headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("\u{0}")).collect();
    lines.into_iter().rev().flat_map(|line| line.rsplit(',')).map(move |item| pick(item.trim()).and_then(parse_ip))
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
/// ported forms proxies write (`"[2001:db8::1]:443"`, `192.0.2.7:80`).
fn parse_ip(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(normalize(sock.ip()));
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(normalize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder();
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    fn trusted(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies { nets: nets.iter().map(|n| n.parse().unwrap()).collect(), header }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let p = parts("203.0.113.5:4000", &[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(TrustedProxies::default().client_ip(&p), ip("203.0.113.5"));
        assert_eq!(trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor).client_ip(&p), ip("203.0.113.5"));
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(t.client_ip(&p), ip("198.51.100.7"));
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8")]);
        assert_eq!(t.client_ip(&p), ip("198.51.100.8"));
        let p = parts("10.0.0.2:4000", &[("x-forwarded-for", "not-an-ip, 10.0.0.3")]);
        assert_eq!(t.client_ip(&p), ip("10.0.0.3"));
        let p = parts("10.0.0.2:4000", &[]);
        assert_eq!(t.client_ip(&p), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_and_real_ip_forms() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let p = parts(
            "10.0.0.2:4000",
            &[("forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:443\";proto=https, for=10.0.0.5")],
        );
        assert_eq!(t.client_ip(&p), ip("2001:db8::7"));
        let t = trusted(&["10.0.0.2"], ForwardedHeader::XRealIp);
        let p = parts("10.0.0.2:4000", &[("x-real-ip", "198.51.100.9")]);
        assert_eq!(t.client_ip(&p), ip("198.51.100.9"));
        let p = parts("10.0.0.2:4000", &[("x-real-ip", "junk")]);
        assert_eq!(t.client_ip(&p), ip("10.0.0.2"));
    }
}
