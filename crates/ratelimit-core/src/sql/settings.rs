//! Settings of the SQL store, with django-smart-ratelimit's names where it has them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Algorithm, FieldError, SecretUrl};

/// The database engine a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://`.
    MySql,
    /// `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:`.
    Sqlite,
}

impl Engine {
    /// The engine's name in errors, health reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }

    /// Reads the engine from a URL's scheme.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase()).unwrap_or_default();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            "mysql" | "mariadb" => Ok(Engine::MySql),
            "sqlite" => Ok(Engine::Sqlite),
            // The text before the first `:` is echoed only when it can be a
            // scheme: in a URL without one it may be part of a password.
            _ if scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b)) => Err(format!(
                "unsupported scheme {scheme:?}; use postgres://, mysql://, mariadb://, sqlite://PATH or sqlite::memory:"
            )),
            _ => Err("no scheme; use postgres://, mysql://, mariadb://, sqlite://PATH or sqlite::memory:".to_owned()),
        }
    }
}

/// How hard the database works to keep each decision across a crash.
///
/// Rate-limit state is short-lived: losing the last second of counters in
/// a database crash lets a few extra requests through, which is usually a
/// fair trade for throughput. See `docs/database.md` for measured effects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The engine's defaults: every commit is flushed.
    #[default]
    Full,
    /// PostgreSQL: `synchronous_commit = off` on the store's connections;
    /// SQLite: `synchronous = NORMAL` under WAL. MySQL keeps its server
    /// setting (`innodb_flush_log_at_trx_commit` is server-wide).
    Fast,
}

/// Settings of the SQL store (`SqlStore`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlSettings {
    /// The database: `postgres://user@host:5432/db`, `mysql://root@host/db`,
    /// `sqlite://path/to/file.db` or `sqlite::memory:`. Shown with its
    /// password masked.
    pub url: SecretUrl,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a pool connection (and to connect), in seconds.
    #[serde(with = "crate::serde_seconds")]
    pub connect_timeout: Duration,
    /// The longest one decision may take, queries included, in seconds.
    /// A rate limiter sits on the request path: keep it short.
    #[serde(with = "crate::serde_seconds")]
    pub timeout: Duration,
    /// Prefix of the store's table names; letters, digits and `_`.
    pub table_prefix: String,
    /// Apply the schema migrations on connect.
    pub migrate: bool,
    /// Delete expired rows (in the background) after this many writes;
    /// 0 turns the automatic cleanup off.
    pub cleanup_threshold: u64,
    /// Rows deleted per cleanup statement.
    pub cleanup_batch_size: u64,
    /// Commit durability; see [`Durability`].
    pub durability: Durability,
    /// With `backend = "database"`, the algorithm of limits that name
    /// none, over the top-level `algorithm`; see `Settings::default_algorithm`.
    pub algorithm: Option<Algorithm>,
}

impl Default for SqlSettings {
    fn default() -> Self {
        Self {
            url: SecretUrl::default(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            table_prefix: "ratelimit_".to_owned(),
            migrate: true,
            cleanup_threshold: 1000,
            cleanup_batch_size: 1000,
            durability: Durability::Full,
            algorithm: None,
        }
    }
}

/// How long connecting may take: a network round trip or a file lock,
/// never minutes.
const CONNECT_TIMEOUT_RANGE: (f64, f64) = (0.001, 60.0);
/// How long one decision may take on the request path.
const DECISION_TIMEOUT_RANGE: (f64, f64) = (0.001, 60.0);

fn invalid(field: &'static str, problem: impl Into<String>) -> FieldError {
    FieldError::new("database", field, problem)
}

impl SqlSettings {
    /// The defaults with a database URL.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self { url: SecretUrl::new(url), ..Self::default() }
    }

    /// Checks every field; the error names the one that is wrong.
    pub fn validate(&self) -> Result<Engine, FieldError> {
        let engine = Engine::from_url(self.url.expose()).map_err(|problem| invalid("url", problem))?;
        check_secret_parameters(engine, self.url.expose()).map_err(|problem| invalid("url", problem))?;
        let built_in = match engine {
            Engine::Postgres => cfg!(feature = "postgres"),
            Engine::MySql => cfg!(feature = "mysql"),
            Engine::Sqlite => cfg!(feature = "sqlite"),
        };
        if !built_in {
            return Err(invalid(
                "url",
                format!(
                    "this build has no {} support; enable the crate feature `{}`",
                    engine.as_str(),
                    engine.as_str()
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        crate::serde_seconds::check(self.connect_timeout, CONNECT_TIMEOUT_RANGE)
            .map_err(|problem| invalid("connect_timeout", problem))?;
        crate::serde_seconds::check(self.timeout, DECISION_TIMEOUT_RANGE)
            .map_err(|problem| invalid("timeout", problem))?;
        let prefix_ok = self.table_prefix.len() <= 32
            && self.table_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !self.table_prefix.starts_with(|c: char| c.is_ascii_digit());
        if !prefix_ok {
            return Err(invalid(
                "table_prefix",
                format!("{:?} must be at most 32 letters, digits or '_', not starting with a digit", self.table_prefix),
            ));
        }
        if self.cleanup_batch_size == 0 {
            return Err(invalid("cleanup_batch_size", "must be at least 1"));
        }
        Ok(engine)
    }
}

/// Refuses URL parameters that look like secrets but that the engine's
/// driver does not read: the PostgreSQL driver logs such a parameter with
/// its value, and the MySQL driver ignores `password=` and connects
/// without one. Only PostgreSQL's `password=` is read.
fn check_secret_parameters(engine: Engine, url: &str) -> Result<(), String> {
    let Some((_, query)) = url.split_once('?') else { return Ok(()) };
    let query = query.split('#').next().unwrap_or_default();
    for name in query.split('&').filter_map(|pair| pair.split_once('=').map(|(name, _)| name)) {
        let name = crate::secret::percent_decoded(name).to_ascii_lowercase();
        if !crate::secret::names_a_secret(&name) || (engine == Engine::Postgres && name == "password") {
            continue;
        }
        let hint = if name == "password" {
            "put the password in the URL's user-info (mysql://user:password@host/db)"
        } else {
            "the driver does not read it"
        };
        return Err(format!("the parameter `{name}` is not accepted by the {} store: {hint}", engine.as_str()));
    }
    Ok(())
}
