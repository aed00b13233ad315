//! IP networks for allow lists and trusted proxies.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block such as `10.0.0.0/8`, `2001:db8::/32` or a single
/// address (`192.0.2.7`, which means `/32` or `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A network that could not be parsed; the message quotes the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network {input:?}: {reason}")]
pub struct IpNetParseError {
    input: String,
    reason: &'static str,
}

const EXPECTED: &str =
    "expected an address (\"192.0.2.7\", \"::1\") or a CIDR block (\"10.0.0.0/8\", \"2001:db8::/32\")";
const MAPPED_TOO_SHORT: &str = "an IPv4-mapped block needs a prefix of at least /96, the length of the \
     ::ffff:0:0/96 mapping; ::ffff:10.0.0.0/104 means 10.0.0.0/8 (or write the IPv4 block itself)";

impl IpNet {
    /// The block of `prefix` leading bits of `addr`; the prefix is clamped
    /// to the address size.
    ///
    /// An IPv4-mapped address (`::ffff:10.0.0.0`) takes an IPv6 prefix:
    /// 96 or more makes the IPv4 block of `prefix - 96` bits (104 gives
    /// `10.0.0.0/8`). A shorter prefix is kept as an IPv6 block, which
    /// never contains an IPv4 client (clients arriving as mapped addresses
    /// are IPv4 clients), so it cannot silently cover all of IPv4.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let prefix = prefix.min(bits(addr));
        match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= MAPPED_PREFIX => {
                    let addr = IpAddr::V4(v4);
                    let prefix = prefix - MAPPED_PREFIX;
                    Self { addr: mask(addr, prefix), prefix }
                }
                _ => Self { addr: mask(addr, prefix), prefix },
            },
            IpAddr::V4(_) => Self { addr: mask(addr, prefix), prefix },
        }
    }

    /// Whether `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

/// The length of the `::ffff:0:0/96` prefix of IPv4-mapped addresses.
const MAPPED_PREFIX: u8 = 96;

impl FromStr for IpNet {
    type Err = IpNetParseError;

    /// Parses `addr` or `addr/prefix`. The prefix counts the bits of the
    /// address as written, so an IPv4-mapped block must be at least /96:
    /// `::ffff:10.0.0.0/8` is an error, not "all of IPv4".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| IpNetParseError { input: s.to_owned(), reason };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| err(EXPECTED))?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err(EXPECTED))?;
        let prefix = match prefix {
            Some(p) if p > bits(addr) => return Err(err(EXPECTED)),
            Some(p) => p,
            None => bits(addr),
        };
        let mapped = matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        if mapped && prefix < MAPPED_PREFIX {
            return Err(err(MAPPED_TOO_SHORT));
        }
        Ok(Self::new(addr, prefix))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`) are IPv4 clients.
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

pub(crate) fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(net.contains(ip("::ffff:10.1.1.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        let single: IpNet = "192.0.2.7".parse().unwrap();
        assert!(single.contains(ip("192.0.2.7")) && !single.contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn rejects_junk() {
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "::/129", "host", "1.2.3.4/x"] {
            let err = bad.parse::<IpNet>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn mapped_blocks_keep_their_ipv4_meaning() {
        let net: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(net, "10.0.0.0/8".parse().unwrap());
        assert!(net.contains(ip("10.200.3.4")) && net.contains(ip("::ffff:10.1.1.1")));
        assert!(!net.contains(ip("11.0.0.1")) && !net.contains(ip("8.8.8.8")));
        let one: IpNet = "::ffff:192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        assert_eq!("::ffff:192.0.2.0/120".parse::<IpNet>().unwrap(), "192.0.2.0/24".parse().unwrap());
        // All of IPv4, but only when asked for in so many words.
        assert_eq!("::ffff:0.0.0.0/96".parse::<IpNet>().unwrap(), "0.0.0.0/0".parse().unwrap());
    }

    #[test]
    fn mapped_blocks_shorter_than_the_mapping_are_refused() {
        for bad in ["::ffff:10.0.0.0/8", "::ffff:10.0.0.0/0", "::ffff:10.0.0.0/95", "::ffff:0:0/80"] {
            let err = bad.parse::<IpNet>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("/96"), "{err}");
        }
        // A plain IPv6 block never covers IPv4 clients, however short.
        let all_v6: IpNet = "::/0".parse().unwrap();
        assert!(all_v6.contains(ip("2001:db8::1")) && !all_v6.contains(ip("10.0.0.1")));
        assert!(!IpNet::new(ip("::ffff:10.0.0.0"), 8).contains(ip("10.0.0.1")));
        assert!(IpNet::new(ip("::ffff:10.0.0.0"), 104).contains(ip("10.9.9.9")));
    }
}
