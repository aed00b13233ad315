//! [`RateLimitLayer::from_settings`]: the site-wide layer of a settings
//! file's `[middleware]` section.

use std::fmt::Write;

use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::{Rate, Settings, SettingsError, SharedStore};

use crate::middleware_settings::MiddlewareSettings;
use crate::{ConfigError, IpNet, Mode, RateLimitConfig, RateLimitLayer};

const SOURCE: &str = "settings";

impl RateLimitLayer {
    /// Builds the stores the settings describe and one layer applying the
    /// `[middleware]` rules: each `rate_limits` prefix is a policy of its
    /// own (all paths under it share one bucket per client), `default_rate`
    /// covers the other paths, `skip_paths` are never limited. Paths are
    /// matched normalised and by whole segments, as
    /// [`RateLimitConfig::by_path_prefix`] describes.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_ratelimit_smart::RateLimitLayer;
    /// let settings = ratelimit_core::Settings::from_file("limits.toml")?;
    /// let layer = RateLimitLayer::from_settings(&settings).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        Self::from_settings_with(settings, &StoreRegistry::new()).await
    }

    /// As [`from_settings`](Self::from_settings), with custom stores.
    pub async fn from_settings_with(settings: &Settings, registry: &StoreRegistry) -> Result<Self, SettingsError> {
        let built = build_store(settings, registry, SOURCE).await?;
        Ok(Self::new(RateLimitConfig::from_settings(settings, &built.store)?))
    }
}

impl RateLimitConfig {
    /// The configuration of the settings' `[middleware]` rules, counting in
    /// `store` (which [`build_store`] makes from the same settings): what
    /// [`RateLimitLayer::from_settings`] applies.
    pub fn from_settings(settings: &Settings, store: &SharedStore) -> Result<Self, SettingsError> {
        middleware_config(settings, store)
    }
}

fn middleware_config(settings: &Settings, store: &SharedStore) -> Result<RateLimitConfig, SettingsError> {
    let middleware = &MiddlewareSettings::from_settings(settings, SOURCE)?;
    let mut rules = Vec::with_capacity(middleware.rate_limits.len());
    let mut names = std::collections::HashMap::new();
    for (prefix, rate) in &middleware.rate_limits {
        let field = format!("middleware.rate_limits.{prefix:?}");
        let name = policy_name(prefix);
        // Names that fit are distinct by construction; a long one ends in a
        // hash of its prefix, and two such hashes meeting is refused rather
        // than letting two prefixes share their buckets.
        if let Some(other) = names.insert(name.clone(), prefix) {
            let message = format!("{prefix:?} and {other:?} would share the policy name {name:?}; rename one");
            return Err(SettingsError::new(SOURCE, &field, message));
        }
        rules.push((prefix.clone(), rule(settings, middleware, store, &name, *rate, &field)?));
    }
    let fallback = match middleware.default_rate {
        Some(rate) => Some(rule(settings, middleware, store, "default", rate, "middleware.default_rate")?),
        None => None,
    };
    if rules.is_empty() && fallback.is_none() {
        return Err(SettingsError::new(SOURCE, "middleware", "set default_rate or at least one rate_limits entry"));
    }
    RateLimitConfig::by_path_prefix(rules, fallback, middleware.skip_paths.iter().cloned())
        .map_err(|e| SettingsError::new(SOURCE, "middleware", e.to_string()))
}

fn rule(
    settings: &Settings,
    middleware: &MiddlewareSettings,
    store: &SharedStore,
    policy: &str,
    rate: Rate,
    field: &str,
) -> Result<RateLimitConfig, SettingsError> {
    RateLimitConfig::builder()
        .policy(policy)
        .rate(rate)
        .algorithm(settings.default_algorithm())
        .key(middleware.key.key())
        .trusted_proxies(&middleware.trusted_proxies)
        .key_prefix(settings.default_key_prefix())
        .store(store.clone())
        .mode(if middleware.block { Mode::Enforce } else { Mode::Shadow })
        .failure_policy(settings.failure_mode)
        .build()
        .map_err(|e| match e {
            ConfigError::Network { source, .. } => {
                // Name the entry, not just the list: the message quotes it too.
                let at = middleware.trusted_proxies.iter().position(|p| p.parse::<IpNet>().is_err());
                let field = match at {
                    Some(i) => format!("middleware.trusted_proxies[{i}]"),
                    None => "middleware.trusted_proxies".to_owned(),
                };
                SettingsError::new(SOURCE, &field, source.to_string())
            }
            other => SettingsError::new(SOURCE, field, other.to_string()),
        })
}

use crate::config::MAX_POLICY_NAME as MAX_NAME;

/// A policy name for a prefix, distinct for distinct prefixes, made from
/// the characters policy names allow (`A-Z a-z 0-9 - _ .`): `path`, then
/// the prefix with letters, digits and `-` kept, `/` written `_`, and every
/// other byte written `.` and two hex digits. `/auth/login` gives
/// `path_auth_login`, `/a_b` gives `path_a.5Fb`. Since `_` and `.XX` each
/// stand for one thing only, two prefixes can never give one name, and a
/// prefix's name does not depend on the other rules or their order (so
/// its counters survive edits to the rest of the file).
///
/// A name longer than 64 characters is cut and ends in `..` and 16 hex
/// digits of a hash of the whole prefix; `..` never occurs in the names
/// above (a `.` is always followed by a hex digit), so the two forms never
/// meet, and the caller refuses two long prefixes whose names still do.
fn policy_name(prefix: &str) -> String {
    let mut name = String::from("path");
    for byte in prefix.bytes() {
        match byte {
            b'/' => name.push('_'),
            b if b.is_ascii_alphanumeric() || b == b'-' => name.push(char::from(b)),
            b => {
                let _ = write!(name, ".{b:02X}");
            }
        }
    }
    if name.len() > MAX_NAME {
        let hash = format!("..{:016x}", fnv1a(prefix.as_bytes()));
        // Every character written above is ASCII, so any cut is a char boundary.
        name.truncate(MAX_NAME - hash.len());
        name.push_str(&hash);
    }
    name
}

/// FNV-1a, 64 bits: small and the same in every version and on every
/// server, which a policy name (part of every store key) needs.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_valid_policy_names() {
        assert_eq!(policy_name("/auth/login"), "path_auth_login");
        assert_eq!(policy_name("/api/"), "path_api_");
        assert_eq!(policy_name("/api"), "path_api");
        assert_eq!(policy_name("/"), "path_");
        assert_eq!(policy_name("/a_b"), "path_a.5Fb");
        assert_eq!(policy_name("/a.b/é"), "path_a.2Eb_.C3.A9");
        let long = policy_name(&format!("/{}", "é".repeat(80)));
        assert_eq!(long.len(), 64);
        assert!(long.contains(".."), "{long}");
        for name in [long, policy_name("/a b"), policy_name(&"/x".repeat(40))] {
            let valid = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            assert!(valid && name.len() <= 64, "{name}");
        }
    }

    fn settings(text: &str) -> Settings {
        Settings::from_toml(text, "limits.toml", Vec::new()).unwrap()
    }

    fn store() -> SharedStore {
        SharedStore::new(ratelimit_core::MemoryStore::new())
    }

    #[test]
    fn a_mapped_block_shorter_than_the_mapping_names_its_entry() {
        let text = "[middleware]\ndefault_rate = \"1/m\"\ntrusted_proxies = [\"10.0.0.1\", \"::ffff:10.0.0.0/8\"]";
        let error = middleware_config(&settings(text), &store()).unwrap_err().to_string();
        assert!(error.contains("middleware.trusted_proxies[1]"), "{error}");
        assert!(error.contains("\"::ffff:10.0.0.0/8\"") && error.contains("/96"), "{error}");
        let text = "[middleware]\ndefault_rate = \"1/m\"\ntrusted_proxies = [\"::ffff:10.0.0.0/104\"]";
        assert!(middleware_config(&settings(text), &store()).is_ok());
    }

    #[test]
    fn prefixes_never_share_a_policy() {
        let long = "x".repeat(90);
        let prefixes =
            ["/a/b/c", "/a/b", "/a_b", "/a_b_1", "/a_b_2", "/a.b", "/a-b", "/a b", "/a%2Fb", "/A/B"].map(str::to_owned);
        let prefixes: Vec<String> =
            prefixes.into_iter().chain([format!("/{long}/1"), format!("/{long}/2"), format!("/{long}_1")]).collect();
        let mut text = String::from("[middleware]\n[middleware.rate_limits]\n");
        for prefix in &prefixes {
            text.push_str(&format!("{prefix:?} = \"1/m\"\n"));
        }
        let config = middleware_config(&settings(&text), &store()).unwrap();
        let mut seen = std::collections::HashMap::new();
        for prefix in &prefixes {
            let shared = config.select(prefix).unwrap();
            let name = shared.policy.clone();
            assert!(name.len() <= 64, "{name}");
            let head = shared.limits[0].key_head.clone();
            if let Some(other) = seen.insert(head.clone(), prefix.clone()) {
                panic!("{prefix:?} and {other:?} share the bucket {head}");
            }
        }
        // The names do not depend on the other rules or their order.
        let alone = middleware_config(&settings("[middleware.rate_limits]\n\"/a_b_1\" = \"1/m\""), &store()).unwrap();
        assert_eq!(alone.select("/a_b_1").unwrap().policy, config.select("/a_b_1").unwrap().policy);
    }

    #[test]
    fn middleware_mistakes_name_the_field() {
        let error_of = |text: &str| middleware_config(&settings(text), &store()).unwrap_err().to_string();
        let rate = error_of("[middleware]\ndefault_rate = \"100/fortnight\"");
        assert!(rate.contains("middleware.default_rate") && rate.contains("invalid rate"), "{rate}");
        let key = error_of("[middleware]\ndefault_rate = \"1/m\"\nkey = \"cookie\"");
        assert!(key.contains("middleware.key") && key.contains("header:<name>"), "{key}");
        let log = error_of("algorithm = \"sliding_window\"\n[middleware.rate_limits]\n\"/api\" = \"10001/m\"");
        assert!(log.contains("middleware.rate_limits.\"/api\"") && log.contains("sliding_window_counter"), "{log}");
    }

    /// The middleware's rates are checked against the algorithm they will
    /// run under: the store's own, when it sets one.
    #[test]
    fn middleware_rates_are_checked_against_the_stores_algorithm() {
        let file = |top: &str, own: &str| {
            format!(
                "algorithm = \"{top}\"\nbackend = \"redis\"\n[redis]\nalgorithm = \"{own}\"\n\
                 [middleware]\ndefault_rate = \"20000/m\"\n"
            )
        };
        assert!(middleware_config(&settings(&file("sliding_window", "token_bucket")), &store()).is_ok());
        let error = middleware_config(&settings(&file("token_bucket", "sliding_window")), &store()).unwrap_err();
        assert!(error.to_string().contains("middleware.default_rate"), "{error}");
    }

    /// The core reads `[middleware]` as written; the layer refuses what no
    /// store can enforce, naming the field.
    #[cfg(feature = "memory")]
    #[test]
    fn a_rate_too_high_for_the_sliding_log_names_its_field() {
        let too_high = Rate::per_minute(ratelimit_core::MAX_SLIDING_LOG_LIMIT + 1).unwrap();
        let text = |algorithm: &str| {
            format!(
                "algorithm = \"{algorithm}\"\n[middleware]\ndefault_rate = \"{too_high}\"\n[middleware.rate_limits]\n\"/api\" = \"5/m\""
            )
        };
        let error = middleware_config(&settings(&text("sliding_window")), &store()).expect_err("refused").to_string();
        assert!(error.contains("middleware.default_rate") && error.contains("sliding_window_counter"), "{error}");
        assert!(middleware_config(&settings(&text("sliding_window_counter")), &store()).is_ok());
    }
}
