//! One settings struct for the whole limiter, read from a TOML file and
//! overridden by `RATELIMIT_*` environment variables, with django-smart-ratelimit's
//! names (`backend`, `algorithm`, `key_prefix`, `[redis]`, `[database]`,
//! `[[backends]]`, `[circuit_breaker]`, `[middleware]`, ...).
//!
//! Every mistake is an error naming the file and the field, with a "did
//! you mean" when a name is close to a known one. Stores are built from
//! the settings by [`build`](crate::settings::build_store).

mod build;
mod django;
mod env;
mod error;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::build::{BuiltStore, StoreFactory, StoreRegistry, build_store};
pub use self::error::SettingsError;
use crate::store::breaker::BreakerConfig;
use crate::store::multi::{MultiStoreConfig, Strategy};
use crate::{Algorithm, FailurePolicy};

/// The memory store's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Most keys held; the least recently used go first (default 10,000).
    pub max_keys: usize,
    /// Seconds between sweeps of expired keys; 0 turns sweeping off (default 300).
    pub cleanup_interval: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self { max_keys: 10_000, cleanup_interval: 300 }
    }
}

impl MemorySettings {
    /// Checks every field; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), crate::FieldError> {
        let invalid = |field, problem: &str| Err(crate::FieldError::new("memory", field, problem));
        if self.max_keys == 0 {
            return invalid("max_keys", "must be at least 1");
        }
        if self.cleanup_interval > 86_400 {
            return invalid(
                "cleanup_interval",
                &format!(
                    "{} seconds is outside 0–86400 seconds (0 turns sweeping off; durations are in seconds, not milliseconds)",
                    self.cleanup_interval
                ),
            );
        }
        Ok(())
    }
}

/// One store of a `backend = "multi"` chain.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// A unique name, used in logs, health reports and metrics.
    pub name: String,
    /// `memory`, `redis`, `database` or a registered custom store.
    pub backend: String,
    /// The store's settings, as its own section would hold them. Printed
    /// and serialised with passwords masked and URLs redacted.
    #[serde(default, serialize_with = "serialize_masked")]
    pub config: toml::Table,
}

impl std::fmt::Debug for BackendSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSettings")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("config", &crate::secret::masked_table(&self.config))
            .finish()
    }
}

fn serialize_masked<S: serde::Serializer>(config: &toml::Table, serializer: S) -> Result<S::Ok, S::Error> {
    crate::secret::masked_table(config).serialize(serializer)
}

/// Everything the limiter reads from its settings file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `memory` (default), `redis`, `database`, `multi`, or the name of a
    /// custom store registered in code.
    pub backend: String,
    /// The algorithm of every limit that names none (default
    /// `sliding_window`), unless the single store sets its own; see
    /// [`default_algorithm`](Self::default_algorithm).
    pub algorithm: Algorithm,
    /// Prepended to every store key (default `ratelimit:`).
    pub key_prefix: String,
    /// `open` (default), `closed` or `local`.
    pub failure_mode: FailurePolicy,
    /// `[memory]`.
    pub memory: MemorySettings,
    /// `[redis]`.
    pub redis: crate::redis::RedisSettings,
    /// `[database]`.
    pub database: crate::sql::SqlSettings,
    /// `[[backends]]`: the chain of `backend = "multi"`.
    pub backends: Vec<BackendSettings>,
    /// `first_healthy` (default) or `round_robin`.
    pub multi_backend_strategy: Strategy,
    /// Seconds between health checks of a multi-store's members (default 30).
    #[serde(with = "crate::serde_seconds")]
    pub health_check_interval: Duration,
    /// Seconds one health check may take (default 5).
    #[serde(with = "crate::serde_seconds")]
    pub health_check_timeout: Duration,
    /// `[circuit_breaker]`: when present, every store is wrapped in one.
    pub circuit_breaker: Option<BreakerConfig>,
    /// `[middleware]`, as written: the HTTP layer's own section, read and
    /// checked by `tower-ratelimit-smart` (`RateLimitLayer::from_settings`),
    /// since paths, proxies and request keys are HTTP matters.
    pub middleware: toml::Table,
}

impl Default for Settings {
    fn default() -> Self {
        // The failover defaults are the multi-store's own.
        let multi = MultiStoreConfig::default();
        Self {
            backend: "memory".into(),
            algorithm: Algorithm::default(),
            key_prefix: crate::store_key::DEFAULT_PREFIX.into(),
            failure_mode: FailurePolicy::Open,
            memory: MemorySettings::default(),
            redis: Default::default(),
            database: Default::default(),
            backends: Vec::new(),
            multi_backend_strategy: multi.multi_backend_strategy,
            health_check_interval: multi.health_check_interval,
            health_check_timeout: multi.health_check_timeout,
            circuit_breaker: None,
            middleware: toml::Table::new(),
        }
    }
}

/// Reads a section of the settings into `T`, for sections other crates
/// own (the HTTP layer's `[middleware]`): errors name the field under
/// `section` and suggest the nearest known name, as for the core's own.
pub fn read_section<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    section: &str,
    source: &str,
) -> Result<T, SettingsError> {
    error::deserialize(toml::Value::Table(table.clone()), source).map_err(|e| {
        let field = if e.field().is_empty() { section.to_owned() } else { format!("{section}.{}", e.field()) };
        SettingsError::new(source, &field, e.message())
    })
}

impl Settings {
    /// Reads a TOML file and applies the `RATELIMIT_*` variables of this
    /// process's environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SettingsError> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError::new(&source, "", format!("cannot read the file: {e}")))?;
        Self::from_toml(&text, &source, env::process_vars(&source)?)
    }

    /// Parses TOML `text` (named `source` in errors) and applies the
    /// `RATELIMIT_*` variables among `env`.
    pub fn from_toml(
        text: &str,
        source: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| error::syntax(source, text, &e))?;
        let origins = env::apply(&mut table, env, source)?;
        django::adapt(&mut table, source)?;
        let settings: Settings = error::deserialize(toml::Value::Table(table), source).map_err(|e| origins.blame(e))?;
        settings.validate(source).map_err(|e| origins.blame(e))?;
        Ok(settings)
    }

    /// The algorithm of every limit that names none: the store's own
    /// `algorithm` (`[redis]` or `[database]`) when `backend` is that store
    /// and sets one, else the top-level `algorithm`.
    ///
    /// A `multi` chain always uses the top-level one: its members take
    /// turns deciding the same limits, and the algorithm is part of each
    /// limit's store key and state, so members that disagreed would count a
    /// client in different buckets, under different rules, after each
    /// failover. A `[[backends]]` entry's `config` may not set one.
    pub fn default_algorithm(&self) -> Algorithm {
        let own = match self.backend.as_str() {
            "redis" => self.redis.algorithm,
            "database" => self.database.algorithm,
            _ => None,
        };
        own.unwrap_or(self.algorithm)
    }

    /// The failover settings of `backend = "multi"`, which the file keeps
    /// at its top level.
    pub fn multi_store_config(&self) -> MultiStoreConfig {
        MultiStoreConfig {
            multi_backend_strategy: self.multi_backend_strategy,
            health_check_interval: self.health_check_interval,
            health_check_timeout: self.health_check_timeout,
        }
    }

    /// The prefix of every store key: `[redis] key_prefix` when the single
    /// store is Redis and sets one (django-smart-ratelimit keeps its Redis
    /// prefix there), otherwise the top-level `key_prefix`. The two never
    /// stack: the Redis store built from these settings adds none of its own.
    pub fn default_key_prefix(&self) -> &str {
        match self.backend.as_str() {
            "redis" if !self.redis.key_prefix.is_empty() => &self.redis.key_prefix,
            _ => &self.key_prefix,
        }
    }

    /// The defaults with the environment applied, for running without a file.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_toml("", "environment", env::process_vars("environment")?)
    }

    fn validate(&self, source: &str) -> Result<(), SettingsError> {
        let fail = |field: &str, message: String| Err(SettingsError::new(source, field, message));
        if self.backend.trim().is_empty() {
            return fail("backend", "must name a store: memory, redis, database, multi or a registered store".into());
        }
        if self.backend == "multi" && self.backends.is_empty() {
            return fail("backends", "backend = \"multi\" needs at least one [[backends]] entry".into());
        }
        self.multi_store_config().validate().map_err(|e| SettingsError::new(source, e.field, e.problem))?;
        if let Err(problem) = crate::store_key::check_prefix(&self.key_prefix) {
            return fail("key_prefix", problem.into());
        }
        for (i, entry) in self.backends.iter().enumerate() {
            if entry.name.trim().is_empty() || self.backends[..i].iter().any(|e| e.name == entry.name) {
                return fail(&format!("backends[{i}].name"), format!("{:?} must be set and unique", entry.name));
            }
            if entry.backend == "multi" {
                return fail(&format!("backends[{i}].backend"), "a multi-store cannot contain another".into());
            }
        }
        // Every store's settings, checked now: a setting that cannot give
        // a working store stops the start, naming its field, rather than
        // failing every request later.
        build::specs(self, source)?;
        if let Some(breaker) = &self.circuit_breaker {
            breaker
                .validate()
                .map_err(|e| SettingsError::new(source, &format!("circuit_breaker.{}", e.field), e.problem))?;
        }
        Ok(())
    }
}
