//! Store keys: `{prefix}{policy}:{algorithm}:{{identity}}`, the identity in
//! braces: a Redis Cluster hash tag, so every key of one client's decision
//! lands in one slot while different clients spread over the cluster.
//!
//! The policy keeps two limits with different rates apart, the algorithm
//! keeps incompatible state formats apart. Identities come from clients
//! (addresses, header values, user ids) and are untrusted: an identity that
//! is long, empty, or holds anything beyond a conservative set of
//! characters is replaced by `#` and a 128-bit SHA-256 prefix of it. `#` never
//! appears in an identity kept as is, so a hashed identity cannot collide
//! with a literal one, and no identity can carry braces (which would move
//! a Redis Cluster hash slot) or control characters into a key. Prefixes
//! and policy names cannot hold braces either, so the identity's opening
//! brace is always the key's first.

use std::fmt::Write;

use crate::Algorithm;

/// The longest identity kept as it is; longer ones are hashed.
pub const MAX_PLAIN_IDENTITY: usize = 64;

/// The prefix every key starts with unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "ratelimit:";

/// The one rule for key prefixes, wherever one is set (the builder, the
/// settings' `key_prefix`, `[redis] key_prefix`): at most 64 printable
/// ASCII characters, no spaces, no braces (a brace would move the Redis
/// Cluster hash tag that keeps a decision's keys in one slot).
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    let fits = prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'{' | b'}'));
    if fits { Ok(()) } else { Err("at most 64 printable ASCII characters, without spaces or braces") }
}

fn is_plain(identity: &str) -> bool {
    !identity.is_empty()
        && identity.len() <= MAX_PLAIN_IDENTITY
        && identity
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'_' | b'/' | b'@' | b'=' | b'+'))
}

/// Appends an identity and the closing brace to a key [`head`], hashing
/// the identity when it is not plain.
pub fn push_identity(out: &mut String, identity: &str) {
    if is_plain(identity) {
        out.push_str(identity);
    } else {
        push_digest(out, fingerprint(identity.as_bytes()));
    }
    out.push('}');
}

/// Finishes a key whose identity was written straight after its [`head`],
/// at `key[start..]`: a plain identity stays, anything else is replaced by
/// its fingerprint, and the closing brace is added. Lets a caller build a
/// key in one buffer.
pub fn seal_identity(key: &mut String, start: usize) {
    if let Some(identity) = key.get(start..) {
        if !is_plain(identity) {
            let digest = fingerprint(identity.as_bytes());
            key.truncate(start);
            push_digest(key, digest);
        }
    }
    key.push('}');
}

/// `#` and the fingerprint of `bytes`, as a hashed identity is written:
/// also what stores with a bounded key size keep instead of a long key.
#[cfg(feature = "sql")]
pub(crate) fn hashed(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(33);
    push_digest(&mut out, fingerprint(bytes));
    out
}

fn push_digest(out: &mut String, digest: [u64; 2]) {
    let _ = write!(out, "#{:016x}{:016x}", digest[0], digest[1]);
}

/// The part of every key of one limit before the identity:
/// `{prefix}{policy}:{algorithm}:{`.
pub fn head(prefix: &str, policy: &str, algorithm: Algorithm) -> String {
    let mut out = String::with_capacity(prefix.len() + policy.len() + 24);
    out.push_str(prefix);
    out.push_str(policy);
    out.push(':');
    out.push_str(algorithm.as_str());
    out.push_str(":{");
    out
}

/// Builds the full key for one limit.
///
/// ```
/// use ratelimit_core::{store_key, Algorithm};
/// assert_eq!(store_key::compose("rl:", "login", Algorithm::TokenBucket, "10.0.0.7"), "rl:login:token_bucket:{10.0.0.7}");
/// let hostile = store_key::compose("rl:", "api", Algorithm::FixedWindow, "{evil}\n");
/// assert!(hostile.starts_with("rl:api:fixed_window:{#"));
/// assert_eq!(hostile.matches('{').count(), 1);
/// ```
pub fn compose(prefix: &str, policy: &str, algorithm: Algorithm, identity: &str) -> String {
    let mut out = head(prefix, policy, algorithm);
    push_identity(&mut out, identity);
    out
}

/// The first 128 bits of SHA-256: stable across processes and versions
/// (every app server must compute the same key) and collision resistant,
/// so a client cannot craft an identity that lands in another's bucket.
fn fingerprint(bytes: &[u8]) -> [u64; 2] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut halves = [0u64; 2];
    for (half, chunk) in halves.iter_mut().zip(digest.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *half = u64::from_be_bytes(word);
    }
    halves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identities_stay_readable() {
        assert_eq!(compose("rl:", "p", Algorithm::FixedWindow, "2001:db8::/64"), "rl:p:fixed_window:{2001:db8::/64}");
    }

    #[test]
    fn sealing_in_place_matches_compose() {
        for identity in ["10.0.0.1", "{x}", "", "a b c", "ok:/path"] {
            let mut key = head("rl:", "p", Algorithm::TokenBucket);
            let start = key.len();
            key.push_str(identity);
            seal_identity(&mut key, start);
            assert_eq!(key, compose("rl:", "p", Algorithm::TokenBucket, identity));
        }
    }

    #[test]
    fn hostile_identities_are_hashed_and_distinct() {
        let huge = "x".repeat(1 << 20);
        let inputs = ["", "{a}", "a b", "line\nbreak", "#0123", huge.as_str(), "é"];
        let keys: Vec<String> = inputs.iter().map(|i| compose("rl:", "p", Algorithm::FixedWindow, i)).collect();
        for key in &keys {
            assert!(key.len() < 80, "{key}");
            let identity = key.strip_prefix("rl:p:fixed_window:{").and_then(|k| k.strip_suffix('}')).unwrap();
            assert!(!identity.contains(['{', '}', '\n', ' ']), "{key}");
        }
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(compose("rl:", "p", Algorithm::FixedWindow, "{a}"), keys[1], "hashing must be stable");
    }
}
