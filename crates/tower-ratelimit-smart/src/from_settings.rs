//! [`RateLimitLayer::from_settings`]: the site-wide layer of a settings
//! file's `[middleware]` section.

use ratelimit_core::settings::{FailureMode, MiddlewareSettings, StoreRegistry, build_store};
use ratelimit_core::{Rate, Settings, SettingsError, SharedStore};

use crate::{ConfigError, FailurePolicy, IpNet, Key, Mode, RateLimitConfig, RateLimitLayer};

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
        Ok(Self::new(middleware_config(settings, &built.store)?))
    }
}

fn middleware_config(settings: &Settings, store: &SharedStore) -> Result<RateLimitConfig, SettingsError> {
    let middleware = &settings.middleware;
    let mut rules = Vec::with_capacity(middleware.rate_limits.len());
    let mut names = std::collections::HashSet::new();
    for (i, (prefix, rate)) in middleware.rate_limits.iter().enumerate() {
        let field = format!("middleware.rate_limits.{prefix:?}");
        let mut name = policy_name(prefix);
        if !names.insert(name.clone()) {
            // Prefixes that differ only in replaced characters stay apart.
            name.truncate(58);
            name.push_str(&format!("_{i}"));
        }
        rules.push((prefix.clone(), rule(settings, store, &name, *rate, &field)?));
    }
    let fallback = match middleware.default_rate {
        Some(rate) => Some(rule(settings, store, "default", rate, "middleware.default_rate")?),
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
    store: &SharedStore,
    policy: &str,
    rate: Rate,
    field: &str,
) -> Result<RateLimitConfig, SettingsError> {
    let middleware: &MiddlewareSettings = &settings.middleware;
    RateLimitConfig::builder()
        .policy(policy)
        .rate(rate)
        .algorithm(settings.algorithm)
        .key(key(&middleware.key))
        .trusted_proxies(&middleware.trusted_proxies)
        .key_prefix(settings.key_prefix.clone())
        .shared_store(store.clone())
        .mode(if middleware.block { Mode::Enforce } else { Mode::Shadow })
        .failure_policy(match settings.failure_mode {
            FailureMode::Open => FailurePolicy::FailOpen,
            FailureMode::Closed => FailurePolicy::FailClosed,
            FailureMode::Local => FailurePolicy::Local,
        })
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

/// `ip`, `user`, `global` or `header:<name>`, as the settings validated.
fn key(name: &str) -> Key {
    match name {
        "user" => Key::user(),
        "global" => Key::global(),
        other => match other.strip_prefix("header:") {
            Some(header) => Key::header(header),
            None => Key::ip(),
        },
    }
}

/// A policy name for a prefix: its letters, digits, `-`, `_` and `.`
/// kept, everything else `_`, e.g. `/auth/login` gives `path_auth_login`.
fn policy_name(prefix: &str) -> String {
    let cleaned: String = prefix
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let mut name = format!("path_{cleaned}");
    name.truncate(64);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_valid_policy_names() {
        assert_eq!(policy_name("/auth/login"), "path_auth_login");
        assert_eq!(policy_name("/api/"), "path_api");
        assert_eq!(policy_name("/"), "path_");
        assert_eq!(policy_name(&format!("/{}", "é".repeat(80))).len(), 64);
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
}
