//! What identifies a client: the key a request is counted under.
//!
//! Every identity is tagged with its kind (`ip:`, `h:`, `u:`, ...) before
//! it reaches the store, so a header value can never impersonate another
//! client's address bucket.

mod client_ip;

use std::fmt::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;

pub use client_ip::ForwardedHeader;
pub(crate) use client_ip::{Client, TrustedProxies};

use crate::net::mask;

/// The identity of an authenticated user, put into the request extensions
/// by an authentication layer that runs before the rate limiter; read by
/// [`Key::user`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub Arc<str>);

impl UserId {
    /// A user identity.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }
}

type CustomFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// How to derive a client's identity from a request.
///
/// ```
/// use tower_ratelimit_smart::Key;
/// let by_ip = Key::ip();
/// let by_api_key = Key::header("x-api-key");
/// let per_client_and_route = Key::ip() + Key::path();
/// let custom = Key::custom(|parts| parts.uri.query().map(str::to_owned));
/// ```
#[derive(Clone)]
pub struct Key(Kind);

#[derive(Clone)]
enum Kind {
    Ip,
    Header(HeaderName),
    InvalidHeader(String),
    User,
    Global,
    Path,
    Route,
    Custom(Arc<CustomFn>),
    All(Vec<Key>),
}

/// Per-request facts a key may need, resolved once.
pub(crate) struct KeyContext<'a> {
    pub(crate) parts: &'a Parts,
    pub(crate) client: Option<Client>,
    pub(crate) ipv6_prefix: u8,
}

impl Key {
    /// The client address: the TCP peer (`ConnectInfo<SocketAddr>`), or the
    /// forwarded address when the peer is a configured trusted proxy. IPv6
    /// clients are grouped by prefix (/64 unless configured).
    pub fn ip() -> Self {
        Self(Kind::Ip)
    }

    /// The value of a request header, such as an API key. An invalid
    /// header name is reported by the config builder's `build()`.
    pub fn header(name: &str) -> Self {
        match HeaderName::try_from(name) {
            Ok(name) => Self(Kind::Header(name)),
            Err(_) => Self(Kind::InvalidHeader(name.to_owned())),
        }
    }

    /// The [`UserId`] an authentication layer put into the request extensions.
    pub fn user() -> Self {
        Self(Kind::User)
    }

    /// One bucket for every request: a global limit.
    pub fn global() -> Self {
        Self(Kind::Global)
    }

    /// The request path (`/items/42`), normalised as path rules match it:
    /// `//` collapsed, `.` and `..` resolved, unreserved escapes decoded.
    pub fn path() -> Self {
        Self(Kind::Path)
    }

    /// The matched route template (`/items/{id}`) when axum's router has
    /// matched the request before the layer runs (layers added with
    /// `Router::layer`, `route_layer` or on a `MethodRouter`), otherwise the
    /// normalised request path (a layer wrapping the whole router from
    /// outside, or fallback requests).
    pub fn route() -> Self {
        Self(Kind::Route)
    }

    /// Any function of the request head; `None` means the key is missing.
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self(Kind::Custom(Arc::new(f)))
    }

    /// Both keys together: `Key::ip().and(Key::path())`, also written `Key::ip() + Key::path()`.
    pub fn and(self, other: Key) -> Self {
        let mut parts = match self.0 {
            Kind::All(parts) => parts,
            single => vec![Key(single)],
        };
        match other.0 {
            Kind::All(more) => parts.extend(more),
            single => parts.push(Key(single)),
        }
        Self(Kind::All(parts))
    }

    pub(crate) fn needs_client_ip(&self) -> bool {
        match &self.0 {
            Kind::Ip => true,
            Kind::All(parts) => parts.iter().any(Key::needs_client_ip),
            _ => false,
        }
    }

    /// Whether a request may lack this key (a header, a user, a custom
    /// function's `None`), so that a missing-key policy applies.
    pub(crate) fn may_be_missing(&self) -> bool {
        match &self.0 {
            Kind::Header(_) | Kind::InvalidHeader(_) | Kind::User | Kind::Custom(_) => true,
            Kind::All(parts) => parts.iter().any(Key::may_be_missing),
            Kind::Ip | Kind::Global | Kind::Path | Kind::Route => false,
        }
    }

    pub(crate) fn invalid_header_name(&self) -> Option<&str> {
        match &self.0 {
            Kind::InvalidHeader(name) => Some(name),
            Kind::All(parts) => parts.iter().find_map(Key::invalid_header_name),
            _ => None,
        }
    }

    /// Writes the tagged identity into `out`; false when the request lacks it.
    pub(crate) fn write_identity(&self, cx: &KeyContext<'_>, out: &mut String) -> bool {
        match &self.0 {
            Kind::Ip => match cx.client {
                Some(client) => {
                    write_client(out, client, cx.ipv6_prefix);
                    true
                }
                None => false,
            },
            Kind::Header(name) => match cx.parts.headers.get(name) {
                Some(value) if !value.is_empty() => {
                    match value.to_str() {
                        Ok(text) => {
                            out.push_str("h:");
                            out.push_str(text);
                        }
                        // Opaque bytes are spelled out in hex under a tag of
                        // their own, so they never meet a text value.
                        Err(_) => {
                            out.push_str("hx:");
                            for byte in value.as_bytes() {
                                let _ = write!(out, "{byte:02x}");
                            }
                        }
                    }
                    true
                }
                _ => false,
            },
            Kind::InvalidHeader(_) => false,
            Kind::User => match cx.parts.extensions.get::<UserId>() {
                Some(user) => {
                    out.push_str("u:");
                    out.push_str(&user.0);
                    true
                }
                None => false,
            },
            Kind::Global => {
                out.push_str("global");
                true
            }
            Kind::Path => {
                out.push_str("p:");
                // Normalised, so `//items/./42` or `/items/%34%32` is not a fresh bucket.
                out.push_str(&crate::path::normalize(cx.parts.uri.path()));
                true
            }
            Kind::Route => {
                out.push_str("r:");
                #[cfg(feature = "axum")]
                let matched = cx.parts.extensions.get::<axum::extract::MatchedPath>().map(|r| r.as_str());
                #[cfg(not(feature = "axum"))]
                let matched: Option<&str> = None;
                match matched {
                    Some(route) => out.push_str(route),
                    None => out.push_str(&crate::path::normalize(cx.parts.uri.path())),
                }
                true
            }
            Kind::Custom(f) => match f(cx.parts) {
                Some(id) => {
                    out.push_str("c:");
                    out.push_str(&id);
                    true
                }
                None => false,
            },
            // Each part is preceded by its length, so no part can contain
            // something that reads as the boundary to the next one; the
            // '|' keeps the result out of the plain alphabet, so the store
            // key hashes the whole composite.
            Kind::All(parts) => parts.iter().all(|part| {
                out.push('|');
                let start = out.len();
                if !part.write_identity(cx, out) {
                    return false;
                }
                let len = out.len() - start;
                out.insert_str(start, &format!("{len}="));
                true
            }),
        }
    }
}

/// `ip:` and the address, or for a client whose address a trusted proxy
/// did not know, `ip-unknown:` and that proxy's full address: a bucket of
/// its own that no address identity can equal (see [`Client::Unknown`]).
pub(crate) fn write_client(out: &mut String, client: Client, ipv6_prefix: u8) {
    let ip = match client {
        Client::Ip(ip) => ip,
        Client::Unknown { via } => {
            let _ = write!(out, "ip-unknown:{via}");
            return;
        }
    };
    out.push_str("ip:");
    match ip {
        IpAddr::V4(v4) => {
            // Ipv4Addr's Display pads through a buffer; this is the hot path.
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{}/{ipv6_prefix}", mask(ip, ipv6_prefix));
        }
    }
}

impl std::ops::Add for Key {
    type Output = Key;
    fn add(self, other: Key) -> Key {
        self.and(other)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Ip => f.write_str("Key::ip()"),
            Kind::Header(name) => write!(f, "Key::header({:?})", name.as_str()),
            Kind::InvalidHeader(name) => write!(f, "Key::header({name:?})"),
            Kind::User => f.write_str("Key::user()"),
            Kind::Global => f.write_str("Key::global()"),
            Kind::Path => f.write_str("Key::path()"),
            Kind::Route => f.write_str("Key::route()"),
            Kind::Custom(_) => f.write_str("Key::custom(..)"),
            Kind::All(parts) => f.debug_list().entries(parts).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(key: &Key, request: http::Request<()>, ip: Option<&str>, prefix: u8) -> Option<String> {
        let (parts, ()) = request.into_parts();
        let client = ip.map(|s| Client::Ip(s.parse().unwrap()));
        let cx = KeyContext { parts: &parts, client, ipv6_prefix: prefix };
        let mut out = String::new();
        key.write_identity(&cx, &mut out).then_some(out)
    }

    fn get() -> http::Request<()> {
        http::Request::builder().uri("/items/42?x=1").body(()).unwrap()
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let a = identity(&Key::ip(), get(), Some("2001:db8:1:2:aaaa::1"), 64).unwrap();
        let b = identity(&Key::ip(), get(), Some("2001:db8:1:2:bbbb::9"), 64).unwrap();
        let c = identity(&Key::ip(), get(), Some("2001:db8:1:3::1"), 64).unwrap();
        assert_eq!(a, "ip:2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, identity(&Key::ip(), get(), Some("2001:db8:1:2:bbbb::9"), 128).unwrap());
        assert_eq!(identity(&Key::ip(), get(), Some("192.0.2.10"), 64).unwrap(), "ip:192.0.2.10");
        assert_eq!(identity(&Key::ip(), get(), None, 64), None);
    }

    #[test]
    fn unknown_clients_are_counted_per_proxy_apart_from_any_address() {
        let (parts, ()) = get().into_parts();
        let unknown = |via: &str| {
            let client = Some(Client::Unknown { via: via.parse().unwrap() });
            let mut out = String::new();
            assert!(Key::ip().write_identity(&KeyContext { parts: &parts, client, ipv6_prefix: 64 }, &mut out));
            out
        };
        assert_eq!(unknown("10.0.0.2"), "ip-unknown:10.0.0.2");
        assert_eq!(unknown("2001:db8::1:2"), "ip-unknown:2001:db8::1:2", "the proxy, not its /64");
        assert_ne!(unknown("10.0.0.2"), identity(&Key::ip(), get(), Some("10.0.0.2"), 64).unwrap());
    }

    #[test]
    fn identities_carry_their_kind() {
        let with = |name: &str, value: &[u8]| {
            http::Request::builder().header(name, http::HeaderValue::from_bytes(value).unwrap()).body(()).unwrap()
        };
        assert_eq!(identity(&Key::header("x-api-key"), with("x-api-key", b"k1"), None, 64).unwrap(), "h:k1");
        assert_eq!(identity(&Key::header("x-api-key"), get(), None, 64), None);
        let bin_a = identity(&Key::header("x-api-key"), with("x-api-key", b"\xff\xfe"), None, 64).unwrap();
        let bin_b = identity(&Key::header("x-api-key"), with("x-api-key", b"\xff\xfd"), None, 64).unwrap();
        assert_ne!(bin_a, bin_b);
        let text = identity(&Key::header("x-api-key"), with("x-api-key", b"~fffe"), None, 64).unwrap();
        assert_ne!(bin_a, text, "binary and text values never meet");
        assert_eq!(identity(&Key::path(), get(), None, 64).unwrap(), "p:/items/42");
        assert_eq!(identity(&Key::global(), get(), None, 64).unwrap(), "global");
        let both = Key::ip() + Key::path();
        assert_eq!(identity(&both, get(), Some("192.0.2.1"), 64).unwrap(), "|12=ip:192.0.2.1|11=p:/items/42");
        // A separator inside a part cannot shift the boundary between parts.
        let two = Key::header("a") + Key::header("b");
        let headers = |a: &str, b: &str| http::Request::builder().header("a", a).header("b", b).body(()).unwrap();
        assert_ne!(identity(&two, headers("x|h:y", "z"), None, 64), identity(&two, headers("x", "y|h:z"), None, 64));
        assert_eq!(identity(&both, get(), None, 64), None, "a composite needs every part");
        let mut with_user = get();
        with_user.extensions_mut().insert(UserId::new("ann"));
        assert_eq!(identity(&Key::user(), with_user, None, 64).unwrap(), "u:ann");
        let custom = Key::custom(|parts| parts.uri.query().map(str::to_owned));
        assert_eq!(identity(&custom, get(), None, 64).unwrap(), "c:x=1");
    }
}
