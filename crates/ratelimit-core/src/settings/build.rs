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
use crate::store::breaker::CircuitBreaker;
use crate::store::multi::{MultiStore, Strategy};
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
    let mut members = Vec::new();
    for (name, spec) in specs(settings, source)? {
        members.push(member(settings, registry, source, name, spec)?);
    }
    if settings.backend != "multi" {
        return Ok(BuiltStore { store: members[0].store.clone(), members, strategy: None });
    }
    let chain =
        MultiStore::new(members.iter().map(|m| (m.name.clone(), m.store.clone())), settings.multi_store_config())
            .map_err(|e| SettingsError::new(source, "backends", e.to_string()))?;
    Ok(BuiltStore { store: SharedStore::new(chain), members, strategy: Some(settings.multi_backend_strategy) })
}

/// One store's settings, read and checked: everything but connecting.
pub(super) enum StoreSpec {
    #[cfg(feature = "memory")]
    Memory(MemorySettings),
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisSettings),
    #[cfg(feature = "sql")]
    Database(crate::sql::SqlSettings),
    /// A store registered in code, with its settings table and the field
    /// that named it (for the error when no such store is registered).
    Custom { backend: String, config: toml::Table, field: String },
}

/// The stores `settings` configure, each named and checked: the single
/// backend, or every `[[backends]]` entry. A setting that cannot give a
/// working store is an error here, naming its field, before anything
/// connects.
pub(super) fn specs<'s>(settings: &'s Settings, source: &str) -> Result<Vec<(&'s str, StoreSpec)>, SettingsError> {
    if settings.backend != "multi" {
        let backend = settings.backend.as_str();
        return Ok(vec![(backend, spec(backend, Section::Own(settings), source, backend, "backend")?)]);
    }
    let mut specs = Vec::new();
    for (i, entry) in settings.backends.iter().enumerate() {
        let field = format!("backends[{i}]");
        let config = Section::Entry(toml::Value::Table(entry.config.clone()));
        let named = format!("{field}.backend");
        specs.push((entry.name.as_str(), spec(&entry.backend, config, source, &format!("{field}.config"), &named)?));
    }
    Ok(specs)
}

/// Where a store's settings come from: the settings' own section
/// (`[redis]`, `[database]`, `[memory]`) for the single backend, already
/// typed, or a `[[backends]]` entry's `config`, parsed here. The typed
/// section is used as it is: serialising it again would mask its secrets.
enum Section<'a> {
    Own(&'a Settings),
    Entry(toml::Value),
}

/// Reads and checks one store's settings; `field` names its settings in
/// errors, `backend_field` the field that chose the store.
fn spec(
    backend: &str,
    config: Section<'_>,
    source: &str,
    field: &str,
    backend_field: &str,
) -> Result<StoreSpec, SettingsError> {
    let field = match config {
        Section::Own(_) => backend,
        Section::Entry(_) => field,
    };
    let spec = match backend {
        "memory" => {
            let memory = match config {
                Section::Own(settings) => settings.memory.clone(),
                Section::Entry(table) => parse(table, source, field)?,
            };
            memory.validate().map_err(|e| field_error(source, field, e))?;
            memory_spec(memory, source, field)?
        }
        "redis" => redis_spec(config, source, field)?,
        "database" => sql_spec(config, source, field)?,
        custom => StoreSpec::Custom {
            backend: custom.to_owned(),
            config: match config {
                Section::Entry(toml::Value::Table(table)) => table,
                _ => toml::Table::new(),
            },
            field: backend_field.to_owned(),
        },
    };
    Ok(spec)
}

fn member(
    settings: &Settings,
    registry: &StoreRegistry,
    source: &str,
    name: &str,
    spec: StoreSpec,
) -> Result<Member, SettingsError> {
    let (kind, store, connect_timeout): (String, SharedStore, Option<Duration>) = match spec {
        #[cfg(feature = "memory")]
        StoreSpec::Memory(memory) => ("memory".to_owned(), memory_store(&memory), None),
        #[cfg(feature = "redis")]
        StoreSpec::Redis(redis) => {
            let wait = redis.socket_connect_timeout;
            let store = background("redis", wait, move || {
                let redis = redis.clone();
                Box::pin(async move { crate::redis::RedisStore::connect(redis).await.map(SharedStore::new) })
            });
            ("redis".to_owned(), store, Some(wait))
        }
        #[cfg(feature = "sql")]
        StoreSpec::Database(database) => {
            let wait = database.connect_timeout;
            let store = background("database", wait, move || {
                let database = database.clone();
                Box::pin(async move { crate::sql::SqlStore::connect(database).await.map(SharedStore::new) })
            });
            ("database".to_owned(), store, Some(wait))
        }
        StoreSpec::Custom { backend, config, field } => match registry.factories.get(&backend) {
            Some(factory) => {
                let factory = factory.clone();
                let store = background("custom", CUSTOM_CONNECT_TIMEOUT, move || factory(config.clone()));
                (backend, store, Some(CUSTOM_CONNECT_TIMEOUT))
            }
            None => {
                let known = ["memory", "redis", "database", "multi"].into_iter().chain(registry.names());
                let hint =
                    error::closest(&backend, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
                return Err(SettingsError::new(
                    source,
                    &field,
                    format!(
                        "unknown store {backend:?}: use memory, redis, database, multi or a store registered in code{hint}"
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
    Ok(Member { name: name.to_owned(), kind, store, connect_timeout })
}

fn parse<T: DeserializeOwned>(config: toml::Value, source: &str, field: &str) -> Result<T, SettingsError> {
    error::deserialize(config, source).map_err(|e| {
        let path = if e.field().is_empty() { field.to_owned() } else { format!("{field}.{}", e.field()) };
        SettingsError::new(source, &path, e.message())
    })
}

/// A store's field error at its path in the settings (`redis.port`, or
/// `backends[0].config.port`).
fn field_error(source: &str, section: &str, error: crate::FieldError) -> SettingsError {
    SettingsError::new(source, &format!("{section}.{}", error.field), error.problem)
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
fn memory_spec(memory: MemorySettings, _: &str, _: &str) -> Result<StoreSpec, SettingsError> {
    Ok(StoreSpec::Memory(memory))
}

#[cfg(not(feature = "memory"))]
fn memory_spec(_: MemorySettings, source: &str, field: &str) -> Result<StoreSpec, SettingsError> {
    Err(SettingsError::new(source, field, "this build has no memory store; enable the crate feature `memory`"))
}

#[cfg(feature = "memory")]
fn memory_store(memory: &MemorySettings) -> SharedStore {
    let interval = (memory.cleanup_interval > 0).then(|| Duration::from_secs(memory.cleanup_interval));
    SharedStore::new(crate::MemoryStore::builder().max_keys(memory.max_keys).cleanup_interval(interval).build())
}

#[cfg(feature = "redis")]
fn redis_spec(config: Section<'_>, source: &str, field: &str) -> Result<StoreSpec, SettingsError> {
    let (mut redis, own): (crate::redis::RedisSettings, bool) = match config {
        Section::Own(settings) => (settings.redis.clone(), true),
        Section::Entry(table) => {
            let redis: crate::redis::RedisSettings = parse(table, source, field)?;
            no_own_algorithm(redis.algorithm, source, field)?;
            (redis, false)
        }
    };
    redis.validate().map_err(|e| field_error(source, field, e))?;
    if own {
        // The single store's prefix is the settings' one
        // (`Settings::default_key_prefix`), which the layer writes into
        // every key: the store adding it again would stack two.
        redis.key_prefix.clear();
    }
    Ok(StoreSpec::Redis(redis))
}

#[cfg(not(feature = "redis"))]
fn redis_spec(_: Section<'_>, source: &str, field: &str) -> Result<StoreSpec, SettingsError> {
    Err(SettingsError::new(source, field, "this build has no Redis store; enable the crate feature `redis`"))
}

#[cfg(feature = "sql")]
fn sql_spec(config: Section<'_>, source: &str, field: &str) -> Result<StoreSpec, SettingsError> {
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
    database.validate().map_err(|e| field_error(source, field, e))?;
    Ok(StoreSpec::Database(database))
}

#[cfg(not(feature = "sql"))]
fn sql_spec(_: Section<'_>, source: &str, field: &str) -> Result<StoreSpec, SettingsError> {
    Err(SettingsError::new(
        source,
        field,
        "this build has no SQL store; enable the crate feature `postgres`, `mysql` or `sqlite`",
    ))
}

fn background<F>(kind: &'static str, connect_timeout: Duration, connect: F) -> SharedStore
where
    F: Fn() -> BoxFuture<'static, Result<SharedStore, StoreError>> + Send + Sync + 'static,
{
    SharedStore::new(ConnectingStore::start(kind, connect_timeout, connect))
}
