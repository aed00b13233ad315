//! Stores built from [`Settings`]: the memory store, Redis, SQL, custom
//! stores registered in code, a multi-store chain of any of them, each
//! behind a circuit breaker when `[circuit_breaker]` is set.
//!
//! Shared stores start connecting in the background as they are built (see
//! [`ConnectingStore`]): a store whose server is down when the application
//! starts does not stop it from starting, a request that arrives while the
//! connection is being made waits for it (up to the store's connect
//! timeout), and while the store is down the failure policy or the next
//! store of a chain answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{MemorySettings, Settings, SettingsError, error};
use crate::StoreError;
use crate::breaker::CircuitBreaker;
use crate::multi::{MultiStore, MultiStoreConfig, Strategy};
use crate::store::{BoxFuture, ConnectingStore, SharedStore};

/// How long a request waits for a custom store's connection attempt.
const CUSTOM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds a custom store from its settings table.
pub type StoreFactory = Arc<dyn Fn(toml::Table) -> BoxFuture<'static, Result<SharedStore, StoreError>> + Send + Sync>;

/// Custom stores by the name `backend = "..."` selects them with.
#[derive(Clone, Default)]
pub struct StoreRegistry {
    factories: HashMap<String, StoreFactory>,
}

impl std::fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl StoreRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a store under `name` (e.g. `"acme.dynamo"`); the factory
    /// receives the `[name]` section of the settings, or the `config` of a
    /// `[[backends]]` entry.
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(toml::Table) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<SharedStore, StoreError>> + Send + 'static,
    {
        self.factories.insert(name.into(), Arc::new(move |config| Box::pin(factory(config))));
        self
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}

/// One configured store.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its name: the `[[backends]]` name, or the backend for a single store.
    pub name: String,
    /// `memory`, `redis`, `database` or the custom store's name.
    pub kind: String,
    /// The store, behind its circuit breaker when one is configured.
    pub store: SharedStore,
    /// How long a call waits for a connection attempt under way; `None`
    /// for the memory store, which has nothing to connect to.
    pub connect_timeout: Option<Duration>,
}

/// The stores the settings describe.
#[derive(Clone, Debug)]
pub struct BuiltStore {
    /// The store a layer uses: the single store, or the multi-store.
    pub store: SharedStore,
    /// Every configured store, in order.
    pub members: Vec<Member>,
    /// The multi-store's strategy; `None` for a single store.
    pub strategy: Option<Strategy>,
}

/// Builds the stores of `settings`; `source` names the settings file in errors.
pub async fn build_store(
    settings: &Settings,
    registry: &StoreRegistry,
    source: &str,
) -> Result<BuiltStore, SettingsError> {
    if settings.backend != "multi" {
        let section = Section::Own(settings);
        let member =
            member(settings, registry, source, &settings.backend, &settings.backend, section, &settings.backend)?;
        return Ok(BuiltStore { store: member.store.clone(), members: vec![member], strategy: None });
    }
    let mut members = Vec::new();
    for (i, entry) in settings.backends.iter().enumerate() {
        let field = format!("backends[{i}]");
        let config = Section::Entry(toml::Value::Table(entry.config.clone()));
        members.push(member(settings, registry, source, &entry.name, &entry.backend, config, &field)?);
    }
    let config = MultiStoreConfig {
        multi_backend_strategy: settings.multi_backend_strategy,
        health_check_interval: settings.health_check_interval,
        health_check_timeout: settings.health_check_timeout,
    };
    let chain = MultiStore::new(members.iter().map(|m| (m.name.clone(), m.store.clone())), config)
        .map_err(|e| SettingsError::new(source, "backends", e.to_string()))?;
    Ok(BuiltStore { store: SharedStore::new(chain), members, strategy: Some(settings.multi_backend_strategy) })
}

/// Where a store's settings come from: the settings' own section
/// (`[redis]`, `[database]`, `[memory]`) for the single backend, already
/// typed, or a `[[backends]]` entry's `config`, parsed here. The typed
/// section is used as it is: serialising it again would mask its secrets.
enum Section<'a> {
    Own(&'a Settings),
    Entry(toml::Value),
}

fn member(
    settings: &Settings,
    registry: &StoreRegistry,
    source: &str,
    name: &str,
    backend: &str,
    config: Section<'_>,
    field: &str,
) -> Result<Member, SettingsError> {
    let config_field = if field == backend { backend.to_owned() } else { format!("{field}.config") };
    let (store, connect_timeout) = match backend {
        "memory" => {
            let memory = match config {
                Section::Own(settings) => settings.memory.clone(),
                Section::Entry(table) => parse(table, source, &config_field)?,
            };
            (memory_store(&memory, source, &config_field)?, None)
        }
        "redis" => redis_store(config, source, &config_field)?,
        "database" => sql_store(config, source, &config_field)?,
        custom => match registry.factories.get(custom) {
            Some(factory) => {
                // A custom store takes its settings from its `[[backends]]`
                // entry's `config`; as the single backend, from nothing.
                let table = match config {
                    Section::Entry(toml::Value::Table(table)) => table,
                    _ => toml::Table::new(),
                };
                let factory = factory.clone();
                (
                    background("custom", CUSTOM_CONNECT_TIMEOUT, move || factory(table.clone())),
                    Some(CUSTOM_CONNECT_TIMEOUT),
                )
            }
            None => {
                let known = ["memory", "redis", "database", "multi"].into_iter().chain(registry.names());
                let hint = error::closest(custom, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
                let where_ = if field == backend { "backend".to_owned() } else { format!("{field}.backend") };
                return Err(SettingsError::new(
                    source,
                    &where_,
                    format!(
                        "unknown store {custom:?}: use memory, redis, database, multi or a store registered in code{hint}"
                    ),
                ));
            }
        },
    };
    let store = match &settings.circuit_breaker {
        Some(breaker) => SharedStore::new(
            CircuitBreaker::new(store, name.to_owned(), breaker.clone())
                .map_err(|e| SettingsError::new(source, "circuit_breaker", e.to_string()))?,
        ),
        None => store,
    };
    Ok(Member { name: name.to_owned(), kind: backend.to_owned(), store, connect_timeout })
}

fn parse<T: DeserializeOwned>(config: toml::Value, source: &str, field: &str) -> Result<T, SettingsError> {
    error::deserialize(config, source).map_err(|e| {
        let path = if e.field().is_empty() { field.to_owned() } else { format!("{field}.{}", e.field()) };
        SettingsError::new(source, &path, e.message())
    })
}

/// Refuses an `algorithm` in a `[[backends]]` entry: the members of a
/// chain decide the same limits in turn, so they share the top-level one
/// (see [`Settings::default_algorithm`]).
#[cfg(any(feature = "redis", feature = "sql"))]
fn no_own_algorithm(algorithm: Option<crate::Algorithm>, source: &str, field: &str) -> Result<(), SettingsError> {
    match algorithm {
        Some(own) => Err(SettingsError::new(
            source,
            &format!("{field}.algorithm"),
            format!(
                "{own} cannot be set per member of a multi-store: its members decide the same limits in turn; \
                 set the top-level `algorithm`"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(feature = "memory")]
fn memory_store(memory: &MemorySettings, source: &str, field: &str) -> Result<SharedStore, SettingsError> {
    if memory.max_keys == 0 {
        return Err(SettingsError::new(source, &format!("{field}.max_keys"), "must be at least 1"));
    }
    let interval = (memory.cleanup_interval > 0).then(|| std::time::Duration::from_secs(memory.cleanup_interval));
    Ok(SharedStore::new(crate::MemoryStore::builder().max_keys(memory.max_keys).cleanup_interval(interval).build()))
}

#[cfg(not(feature = "memory"))]
fn memory_store(_: &MemorySettings, source: &str, field: &str) -> Result<SharedStore, SettingsError> {
    Err(SettingsError::new(source, field, "this build has no memory store; enable the crate feature `memory`"))
}

#[cfg(feature = "redis")]
fn redis_store(config: Section<'_>, source: &str, field: &str) -> Result<Connected, SettingsError> {
    let redis: crate::redis::RedisSettings = match config {
        Section::Own(settings) => settings.redis.clone(),
        Section::Entry(table) => {
            let redis: crate::redis::RedisSettings = parse(table, source, field)?;
            no_own_algorithm(redis.algorithm, source, field)?;
            redis
        }
    };
    redis.validate().map_err(|e| SettingsError::new(source, field, e.to_string()))?;
    let wait = redis.socket_connect_timeout;
    let store = background("redis", wait, move || {
        let redis = redis.clone();
        Box::pin(async move { crate::redis::RedisStore::connect(redis).await.map(SharedStore::new) })
    });
    Ok((store, Some(wait)))
}

#[cfg(not(feature = "redis"))]
fn redis_store(_: Section<'_>, source: &str, field: &str) -> Result<Connected, SettingsError> {
    Err(SettingsError::new(source, field, "this build has no Redis store; enable the crate feature `redis`"))
}

#[cfg(feature = "sql")]
fn sql_store(config: Section<'_>, source: &str, field: &str) -> Result<Connected, SettingsError> {
    let database: crate::sql::SqlSettings = match config {
        Section::Own(settings) => settings.database.clone(),
        Section::Entry(table) => {
            let database: crate::sql::SqlSettings = parse(table, source, field)?;
            no_own_algorithm(database.algorithm, source, field)?;
            database
        }
    };
    if database.url.expose().is_empty() {
        return Err(SettingsError::new(source, &format!("{field}.url"), "is required for the database store"));
    }
    database.validate().map_err(|e| SettingsError::new(source, field, e))?;
    let wait = database.connect_timeout;
    let store = background("database", wait, move || {
        let database = database.clone();
        Box::pin(async move { crate::sql::SqlStore::connect(database).await.map(SharedStore::new) })
    });
    Ok((store, Some(wait)))
}

#[cfg(not(feature = "sql"))]
fn sql_store(_: Section<'_>, source: &str, field: &str) -> Result<Connected, SettingsError> {
    Err(SettingsError::new(
        source,
        field,
        "this build has no SQL store; enable the crate feature `postgres`, `mysql` or `sqlite`",
    ))
}

/// A store that connects in the background, and how long a call waits for it.
type Connected = (SharedStore, Option<Duration>);

fn background<F>(kind: &'static str, connect_timeout: Duration, connect: F) -> SharedStore
where
    F: Fn() -> BoxFuture<'static, Result<SharedStore, StoreError>> + Send + Sync + 'static,
{
    SharedStore::new(ConnectingStore::start(kind, connect_timeout, connect))
}
