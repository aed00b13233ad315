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
        String::deserialize(deserializer).map(Self)
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
        String::deserialize(deserializer).map(Self)
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

/// Masks the user-info password (`scheme://user:***@host`, or everything
/// before the `@` when the URL has no scheme) and the value of every
/// query parameter whose name suggests a secret (`password=`, which the
/// PostgreSQL and MySQL drivers accept, `sslpassword=`, `token=`, ...).
///
/// The last `@` ends the user-info, so a password holding an unescaped
/// `@` or `/` is masked whole; at worst more than the password is hidden.
pub fn redact_url(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let start = scheme + 3;
            match url[start..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:{MASK}{}", &url[..start], &url[at..]),
                None => url.to_owned(),
            }
        }
        (None, Some(at)) => format!("{MASK}{}", &url[at..]),
        _ => url.to_owned(),
    };
    if let Some(query) = shown.find('?') {
        let masked: Vec<String> = shown[query + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if names_a_secret(name) => format!("{name}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{}?{}", &shown[..query], masked.join("&"));
    }
    shown
}

/// Whether a setting or parameter of this name holds a secret.
pub(crate) fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"].iter().any(|word| name.contains(word))
}

/// Serialises a free-form settings table (a `[[backends]]` entry's
/// `config`) with its secrets masked: fields named like a password become
/// `***`, fields named like a URL are redacted.
pub(crate) fn masked_table(table: &toml::Table) -> toml::Table {
    table
        .iter()
        .map(|(name, value)| {
            let shown = match value {
                toml::Value::Table(inner) => toml::Value::Table(masked_table(inner)),
                _ if names_a_secret(name) => toml::Value::String(MASK.to_owned()),
                toml::Value::String(text) if name.to_ascii_lowercase().contains("url") => {
                    toml::Value::String(redact_url(text))
                }
                other => other.clone(),
            };
            (name.clone(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_url_form() {
        let cases = [
            ("postgres://app:s3cret@db:5432/x", "postgres://app:***@db:5432/x"),
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            (
                "postgres://db/x?user=app&password=s3cret&sslmode=require",
                "postgres://db/x?user=app&password=***&sslmode=require",
            ),
            ("mysql://root@db/test", "mysql://root@db/test"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("http://u:s3cret@h", "http://u:***@h"),
            ("u:s3cret@h:1", "***@h:1"),
            ("redis://u:s3@cr/et@h", "redis://u:***@h"),
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
        let table: toml::Table = toml::from_str("url = 'redis://:s3cret@h'\nsentinel_password = 's3cret'").unwrap();
        assert!(!toml::to_string(&masked_table(&table)).unwrap().contains("s3cret"));
    }
}
