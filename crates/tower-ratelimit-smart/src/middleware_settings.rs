//! The `[middleware]` section of a settings file: the HTTP side of the
//! limiter (which paths, which key, which proxies), read here once into
//! the layer's own types, each mistake named by its field.

use indexmap::IndexMap;
use ratelimit_core::settings::read_section;
use ratelimit_core::{Rate, Settings, SettingsError};
use serde::{Deserialize, Deserializer};

use crate::Key;

/// The `[middleware]` section: one site-wide layer built from settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiddlewareSettings {
    /// The rate of paths no prefix rule matches; none leaves them unlimited.
    pub default_rate: Option<Rate>,
    /// `ip` (default), `user`, `global` or `header:<name>`.
    pub key: KeySpec,
    /// Answer 429 when over the limit; `false` only reports (shadow mode).
    pub block: bool,
    /// Paths never limited (exact match on the normalised path: `//`
    /// collapsed, `.` and `..` resolved, unreserved escapes decoded).
    pub skip_paths: Vec<String>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is
    /// believed for the `ip` key; without any, the connection's peer counts.
    pub trusted_proxies: Vec<String>,
    /// Path prefix to rate; the first prefix, in file order, that covers
    /// the normalised path by whole segments applies (`/api` and `/api/`
    /// both cover `/api` and `/api/items`, not `/apiary`), and all paths
    /// under it share one bucket per client.
    pub rate_limits: IndexMap<String, Rate>,
}

impl Default for MiddlewareSettings {
    fn default() -> Self {
        Self {
            default_rate: None,
            key: KeySpec::Ip,
            block: true,
            skip_paths: Vec::new(),
            trusted_proxies: Vec::new(),
            rate_limits: IndexMap::new(),
        }
    }
}

/// The `key` of `[middleware]`, parsed once: what identifies a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// `ip`: the client address.
    Ip,
    /// `user`: the [`UserId`](crate::UserId) an authentication layer set.
    User,
    /// `global`: one bucket for every request.
    Global,
    /// `header:<name>`: a request header's value.
    Header(http::HeaderName),
}

impl KeySpec {
    /// The layer's key for this spec.
    pub fn key(&self) -> Key {
        match self {
            KeySpec::Ip => Key::ip(),
            KeySpec::User => Key::user(),
            KeySpec::Global => Key::global(),
            KeySpec::Header(name) => Key::header(name.as_str()),
        }
    }
}

impl std::str::FromStr for KeySpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ip" => Ok(KeySpec::Ip),
            "user" => Ok(KeySpec::User),
            "global" => Ok(KeySpec::Global),
            other => match other.strip_prefix("header:") {
                Some(name) => http::HeaderName::try_from(name)
                    .map(KeySpec::Header)
                    .map_err(|_| format!("{name:?} is not a valid HTTP header name")),
                None => Err(format!("{other:?}: use ip, user, global or header:<name>")),
            },
        }
    }
}

impl<'de> Deserialize<'de> for KeySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl MiddlewareSettings {
    /// Reads and checks `settings`' `[middleware]` section; `source` names
    /// the settings in errors.
    pub fn from_settings(settings: &Settings, source: &str) -> Result<Self, SettingsError> {
        let middleware: MiddlewareSettings = read_section(&settings.middleware, "middleware", source)?;
        for (list, paths) in [
            ("rate_limits", middleware.rate_limits.keys().collect::<Vec<_>>()),
            ("skip_paths", middleware.skip_paths.iter().collect()),
        ] {
            if let Some(path) = paths.iter().find(|p| !p.starts_with('/')) {
                return Err(SettingsError::new(
                    source,
                    &format!("middleware.{list}"),
                    format!("path {path:?} must start with '/'"),
                ));
            }
        }
        Ok(middleware)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs_are_parsed_once_and_named() {
        assert_eq!("ip".parse::<KeySpec>(), Ok(KeySpec::Ip));
        let header = http::HeaderName::from_static("x-api-key");
        assert_eq!("header:x-api-key".parse::<KeySpec>(), Ok(KeySpec::Header(header)));
        assert!("cookie".parse::<KeySpec>().unwrap_err().contains("header:<name>"));
        assert!("header:bad name".parse::<KeySpec>().unwrap_err().contains("not a valid HTTP header name"));
        let read = |text: &str| {
            let settings = Settings::from_toml(text, "limits.toml", []).unwrap();
            MiddlewareSettings::from_settings(&settings, "limits.toml").map_err(|e| e.to_string())
        };
        assert!(read("[middleware]\nkey = \"cookie\"").unwrap_err().starts_with("limits.toml: middleware.key: "));
        let typo = read("[middleware]\nskip_path = [\"/health\"]").unwrap_err();
        assert!(typo.contains("`skip_path`") && typo.contains("did you mean `skip_paths`?"), "{typo}");
        let relative = read("[middleware.rate_limits]\n\"api\" = \"1/m\"").unwrap_err();
        assert!(relative.contains("middleware.rate_limits") && relative.contains("\"api\""), "{relative}");
        assert_eq!(read("").unwrap().key, KeySpec::Ip);
    }
}
