//! Passwords and connection URLs that never show their secret part.
//!
//! Settings are printed in many places a password must not reach: errors,
//! logs of failed background connections, `{:?}`, health reports and
//! serialised settings. These types mask themselves in `Debug`, `Display`
//! and `Serialize`; only `expose` hands out the real value, to the driver
//! that connects. Serialised settings therefore do not round-trip secrets.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MASK: &str = "***";

/// A password: shown as `***` everywhere.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The password itself, for the code that authenticates.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(MASK, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(SecretText)?;
        let masked = text == MASK;
        refuse_masked(text, masked).map(Self)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// A connection URL that may carry a password (in its user-info part or
/// as a query parameter): shown with the password masked, so errors can
/// still say which server was meant.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The URL itself, password included, for the driver that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password masked.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(SecretText)?;
        let masked = text.contains(&format!(":{MASK}@")) || text.contains(&format!("={MASK}"));
        refuse_masked(text, masked).map(Self)
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Masks the user-info password (`scheme://user:***@host`) and the value
/// of every query parameter whose name, percent-decoded, suggests a secret
/// (`password=`, which the PostgreSQL driver accepts, `sslpassword=`,
/// `token=`, ...). A user name without a password is shown: it is not a
/// secret.
///
/// The user-info ends at the last `@` before the query, so a password
/// holding an unescaped `@`, `:` or `/` is masked whole. What a parser
/// could not split for certain is masked whole too: an `@` in the query
/// or fragment (perhaps a password holding an unescaped `?` or `#`)
/// hides everything after the scheme, and text with an `@` but no scheme
/// (other than `sqlite:`) hides everything before it.
/// At worst more than the password is hidden, never less.
pub fn redact_url(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        let query_at = url.find(['?', '#']).unwrap_or(url.len());
        let (head, tail) = url.split_at(query_at);
        let head = match head.rfind('@') {
            Some(at) if !head.starts_with("sqlite:") => format!("{MASK}{}", &head[at..]),
            _ => head.to_owned(),
        };
        return head + &masked_query(tail);
    };
    let start = scheme + 3;
    let query_at = url[start..].find(['?', '#']).map_or(url.len(), |i| start + i);
    let (head, tail) = url.split_at(query_at);
    if tail.contains('@') {
        // The user-info may run on past a `?` or `#` it holds, so where the
        // host starts is unknown: nothing after the scheme is shown.
        return format!("{}{MASK}", &url[..start]);
    }
    let head = match head[start..].rfind('@').map(|i| start + i) {
        Some(at) => match head[start..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:{MASK}{}", &head[..start], &head[at..]),
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    head + &masked_query(tail)
}

/// `?a=1&password=x#frag` with the secrets masked: the value of a
/// secret-named parameter and everything after it (a password holding an
/// unescaped `&` would look like more parameters), pieces without `=`
/// (no parameter, so perhaps the rest of a password), and any fragment.
fn masked_query(tail: &str) -> String {
    let Some(query) = tail.strip_prefix('?') else {
        return if tail.is_empty() { String::new() } else { format!("#{MASK}") };
    };
    let (query, fragment) = match query.find('#') {
        Some(i) => (&query[..i], format!("#{MASK}")),
        None => (query, String::new()),
    };
    let pairs: Vec<&str> = query.split('&').collect();
    let mut shown: Vec<String> = Vec::new();
    for (i, &pair) in pairs.iter().enumerate() {
        match pair.split_once('=') {
            Some((name, _)) if names_a_secret(&percent_decoded(name)) => {
                shown.push(format!("{name}={MASK}"));
                if i + 1 < pairs.len() {
                    shown.push(MASK.to_owned());
                }
                break;
            }
            Some(_) => shown.push(pair.to_owned()),
            None if pair.is_empty() => shown.push(String::new()),
            None => shown.push(MASK.to_owned()),
        }
    }
    format!("?{}{fragment}", shown.join("&"))
}

/// `%XX` escapes decoded (invalid ones kept), as URL parsers read names.
pub(crate) fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a setting or parameter of this name holds a secret.
pub(crate) fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key", "auth", "credential"].iter().any(|word| name.contains(word))
        && !matches!(name.as_str(), "key_prefix" | "sslkey" | "ssl-key")
}

/// A free-form settings table (a `[[backends]]` entry's `config`, read by
/// a custom store) with its secrets masked, for printing: fields named
/// like a secret become `***`, and any text that looks like a URL or
/// holds an `@` is redacted, inside tables and arrays alike.
#[cfg(feature = "settings")]
pub(crate) fn masked_table(table: &toml::Table) -> toml::Table {
    table.iter().map(|(name, value)| (name.clone(), masked_value(name, value))).collect()
}

#[cfg(feature = "settings")]
fn masked_value(name: &str, value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::Table(inner) => toml::Value::Table(masked_table(inner)),
        toml::Value::Array(items) => toml::Value::Array(items.iter().map(|v| masked_value(name, v)).collect()),
        _ if names_a_secret(name) => toml::Value::String(MASK.to_owned()),
        toml::Value::String(text) if text.contains("://") || text.contains('@') => {
            toml::Value::String(redact_url(text))
        }
        // A connection string of `key=value` words (`host=db password=x`).
        toml::Value::String(text) if text.contains('=') => toml::Value::String(masked_pairs(text)),
        other => other.clone(),
    }
}

/// `key=value` words with the values of secret-named keys masked.
#[cfg(feature = "settings")]
fn masked_pairs(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.split_once('=') {
            Some((name, _)) if names_a_secret(name) => format!("{name}={MASK}"),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a secret from text or a number (a numeric password is still a
/// password); anything else is refused without echoing it, since serde's
/// own message would quote the value.
struct SecretText;

impl serde::de::Visitor<'_> for SecretText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text")
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }
    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<String, E> {
        Ok(value)
    }
    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<String, E> {
        Ok(value.to_string())
    }
    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<String, E> {
        Err(E::custom("must be text; quote it (the value is not shown)"))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<String, E> {
        Err(E::custom("must be text; quote it (the value is not shown)"))
    }
}

/// Refuses the masked form itself: settings serialised for display and
/// read back would otherwise connect with `***` and fail later, at the
/// server, as wrong credentials.
fn refuse_masked<E: serde::de::Error>(text: String, masked: bool) -> Result<String, E> {
    if masked {
        Err(E::custom("holds `***`, the masked form of a secret: serialised settings do not carry secrets"))
    } else {
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_url_form() {
        let cases = [
            ("postgres://app:s3cret@db:5432/x", "postgres://app:***@db:5432/x"),
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("postgres://db/x?user=app&password=s3cret&sslmode=require", "postgres://db/x?user=app&password=***&***"),
            ("mysql://root@db/test", "mysql://root@db/test"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("http://u:s3cret@h", "http://u:***@h"),
            ("u:s3cret@h:1", "***@h:1"),
            ("redis://u:s3@cr/et@h", "redis://u:***@h"),
            ("postgres://db:5432/x?password=s3c@ret", "postgres://***"),
            ("mysql://root@db:3306/x?password=p@ss", "mysql://***"),
            ("postgres://db/x?%70assword=s3cret", "postgres://db/x?%70assword=***"),
            ("redis://:s3?cr@et@h", "redis://***"),
            ("redis://token@h", "redis://token@h"),
            ("redis://u:s3cret@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
            ("sqlite:data/app@2x.db", "sqlite:data/app@2x.db"),
            ("sqlite:x.db?password=s3cret", "sqlite:x.db?password=***"),
            ("postgres://h/x?sslmode=require#s3cret@x", "postgres://***"),
            ("postgres://h/x?sslmode=require#s3cret", "postgres://h/x?sslmode=require#***"),
            ("postgres://h/x?password=ab&cd&sslmode=require#ef", "postgres://h/x?password=***&***#***"),
            ("postgres://h/x?sslmode=require&password=ab", "postgres://h/x?sslmode=require&password=***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn secrets_never_print() {
        let password = Secret::from("s3cret");
        let url = SecretUrl::from("redis://u:s3cret@h/0");
        for shown in [format!("{password:?}"), password.to_string(), format!("{url:?}"), url.to_string()] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert_eq!(password.expose(), "s3cret");
        assert_eq!(url.expose(), "redis://u:s3cret@h/0");
        let table: toml::Table =
            toml::from_str("url = 'redis://:s3cret@h'\nsentinel_password = 's3cret'\ndsn = 'host=db password=s3cret'")
                .unwrap();
        assert!(!toml::to_string(&masked_table(&table)).unwrap().contains("s3cret"));
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Whatever the password holds, escaped or not, and wherever the
        /// URL carries it, the redacted URL does not show it.
        #[test]
        fn no_password_survives_redaction(
            // Letters the rest of the URL never holds, so any part of the
            // password that shows is seen.
            password in "[QXZ@:/?#&=%._~-]{6,16}",
            user in "[a-z]{0,6}",
            form in 0u8..4,
            escape in any::<bool>(),
        ) {
            let password = format!("Q{password}");
            let written = if escape {
                password.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
            } else {
                password.clone()
            };
            let url = match form {
                0 => format!("redis://{user}:{written}@cache.internal:6379/0"),
                1 => format!("postgres://{user}@db.internal:5432/x?sslmode=require&password={written}"),
                2 => format!("postgres://db.internal/x?PassWord={written}&user={user}"),
                _ => format!("mysql://{user}:{written}@db.internal/x?charset=utf8mb4"),
            };
            let shown = redact_url(&url);
            prop_assert!(!shown.contains(['Q', 'X', 'Z']), "{} -> {}", url, shown);
        }
    }

    #[test]
    fn secrets_are_read_from_text_or_numbers_and_never_echoed() {
        #[derive(Debug, Deserialize)]
        struct S {
            password: Secret,
        }
        // Through a value, as settings are read: toml's own error display
        // would quote the source line.
        let read = |text: &str| {
            let table: toml::Table = toml::from_str(text).unwrap();
            S::deserialize(toml::Value::Table(table)).map(|s| s.password.expose().to_owned())
        };
        assert_eq!(read("password = 'x'").unwrap(), "x");
        assert_eq!(read("password = 123456").unwrap(), "123456");
        for refused in ["password = 98765.25", "password = true", "password = '***'"] {
            let error = read(refused).unwrap_err().to_string();
            assert!(!error.contains("98765") && !error.contains("true"), "{error}");
        }
        #[derive(Debug, Deserialize)]
        struct U {
            #[allow(dead_code)]
            url: SecretUrl,
        }
        let url = |text: &str| U::deserialize(toml::Value::Table(toml::from_str(text).unwrap()));
        assert!(url("url = 'redis://u:***@h/0'").is_err());
        assert!(url("url = 'redis://u:p@h/0'").is_ok());
    }
}
