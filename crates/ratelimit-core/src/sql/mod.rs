//! The SQL store: PostgreSQL, MySQL/MariaDB and SQLite through `sqlx`.
//!
//! Two tables hold the state: `{prefix}counters`, one row per key (the
//! fixed window's count and window end, the token bucket's arrival time,
//! the sliding counter's state in `data`, the sliding log's lock row), and
//! `{prefix}entries`, the sliding log's admitted requests.
//!
//! A single fixed-window or token-bucket limit is decided by one upsert
//! that charges only when the request fits and returns the new state
//! (PostgreSQL, SQLite, MariaDB). Everything else is one short
//! transaction: lock the request's counter rows, run the shared algorithms
//! on what they hold, write the new state when every limit admits the
//! request, commit. Either way concurrent decisions on one key queue on its
//! row lock, so none can read a state another is about to replace.

/// The [`Txn`](decide::Txn) methods that are one statement each, written
/// the same way on every engine (whose transaction types differ).
macro_rules! one_statement_writes {
    () => {
        async fn entries(&mut self, key: &str, after: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
            sqlx::query_as(&self.sql.entries).bind(key).bind(after).fetch_all(&mut *self.tx).await
        }

        async fn put(&mut self, key: &str, data: &str, count: i64, expires_at: i64) -> Result<(), sqlx::Error> {
            sqlx::query(&self.sql.put)
                .bind(key)
                .bind(data)
                .bind(count)
                .bind(expires_at)
                .execute(&mut *self.tx)
                .await
                .map(drop)
        }

        async fn prune(&mut self, key: &str, upto: i64) -> Result<(), sqlx::Error> {
            sqlx::query(&self.sql.prune).bind(key).bind(upto).execute(&mut *self.tx).await.map(drop)
        }

        async fn append(&mut self, key: &str, at: i64, cost: i64, expires_at: i64) -> Result<(), sqlx::Error> {
            sqlx::query(&self.sql.append)
                .bind(key)
                .bind(at)
                .bind(cost)
                .bind(expires_at)
                .execute(&mut *self.tx)
                .await
                .map(drop)
        }
    };
}

mod decide;
mod migrate;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod settings;
#[cfg(feature = "sqlite")]
mod sqlite;
mod state;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use self::decide::Row;
pub use self::migrate::schema_sql;
pub use self::settings::{Durability, Engine, SqlSettings};
use crate::store::{CheckRequest, Health, LimitCheck, Store};
use crate::{Decisions, SecretUrl, StoreError};

/// Tries of one decision that the database aborted to break a deadlock.
const MAX_ATTEMPTS: u32 = 5;

/// Keys longer than this, or not printable ASCII, are stored hashed.
const MAX_STORED_KEY: usize = 255;

/// A rate-limit store in a SQL database. Clones share the pool.
///
/// ```no_run
/// use ratelimit_core::sql::{SqlSettings, SqlStore};
/// # async fn run() -> Result<(), ratelimit_core::StoreError> {
/// let store = SqlStore::connect(SqlSettings::from_url("postgres://postgres@127.0.0.1:5432/test")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    settings: SqlSettings,
    engine: Engine,
    /// Rows written since the last cleanup.
    writes: AtomicU64,
    cleaning: AtomicBool,
}

enum Db {
    #[cfg(feature = "postgres")]
    Postgres(postgres::Db),
    #[cfg(feature = "mysql")]
    MySql(mysql::Db),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::Db),
}

/// Calls the same method on whichever engine the store runs on.
macro_rules! on_engine {
    ($db:expr, $bound:ident => $body:expr) => {
        match $db {
            #[cfg(feature = "postgres")]
            Db::Postgres($bound) => $body,
            #[cfg(feature = "mysql")]
            Db::MySql($bound) => $body,
            #[cfg(feature = "sqlite")]
            Db::Sqlite($bound) => $body,
        }
    };
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.inner.engine)
            .field("table_prefix", &self.inner.settings.table_prefix)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Validates the settings, connects, applies the migrations unless
    /// `migrate` is off, and opens the pool's connections. Each step is
    /// bounded by `connect_timeout`, so a store that returns is ready for
    /// a burst of decisions.
    pub async fn connect(settings: SqlSettings) -> Result<Self, StoreError> {
        let engine = settings.validate()?;
        let bound = settings.connect_timeout;
        // sqlx retries a refused connection until its acquire timeout, which
        // is this same bound: whichever fires first, the cause is the same.
        let db = tokio::time::timeout(bound, Db::connect(engine, &settings))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            .map_err(|e| connect_error(engine, &settings.url, &e))?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                engine,
                writes: AtomicU64::new(0),
                cleaning: AtomicBool::new(false),
            }),
        };
        if store.inner.settings.migrate {
            store.migrate().await?;
        }
        store.open_connections().await;
        Ok(store)
    }

    /// Applies the schema migrations that are not applied yet, within
    /// `connect_timeout`; a migration lock another process holds longer
    /// is an error that names it.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let prefix = &self.inner.settings.table_prefix;
        let bound = self.inner.settings.connect_timeout;
        let store = self.inner.engine.as_str();
        let lock = migrate::lock_name(prefix);
        let run = async { on_engine!(&self.inner.db, db => db.migrate(prefix, bound).await) };
        match tokio::time::timeout(bound, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(migrate::MigrateError::Sql(e))) => Err(self.error(e)),
            Ok(Err(migrate::MigrateError::Lock { lock, how, waited })) => Err(StoreError::backend(
                store,
                format!(
                    "migrations: the lock {lock:?} ({how}) was not had within {waited:?} (database.connect_timeout); another process is migrating or holds it"
                ),
            )),
            Err(_) => Err(StoreError::backend(
                store,
                format!(
                    "migrations did not finish within {bound:?} (database.connect_timeout); the lock {lock:?} may be held by another process"
                ),
            )),
        }
    }

    /// Opens every connection of the pool before the first decision, so a
    /// burst right after start does not wait on connection set-up inside
    /// its decision timeout. A connection that cannot be opened now is
    /// opened on demand later.
    async fn open_connections(&self) {
        on_engine!(&self.inner.db, db => {
            let wanted = db.pool.options().get_max_connections();
            let mut opening = tokio::task::JoinSet::new();
            for _ in 0..wanted {
                let pool = db.pool.clone();
                opening.spawn(async move { pool.acquire().await });
            }
            // Held until all are open, so none is handed to a second opener.
            let mut open = Vec::with_capacity(wanted as usize);
            while let Some(joined) = opening.join_next().await {
                if let Ok(Ok(connection)) = joined {
                    open.push(connection);
                }
            }
        })
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// The settings in use.
    pub fn settings(&self) -> &SqlSettings {
        &self.inner.settings
    }

    /// The connection pool, for PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.inner.db {
            Db::Postgres(db) => Some(&db.pool),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The connection pool, for MySQL and MariaDB.
    #[cfg(feature = "mysql")]
    pub fn mysql_pool(&self) -> Option<&sqlx::MySqlPool> {
        match &self.inner.db {
            Db::MySql(db) => Some(&db.pool),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The connection pool, for SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.inner.db {
            Db::Sqlite(db) => Some(&db.pool),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Drops the store's tables (`{prefix}counters`, `{prefix}entries`,
    /// `{prefix}schema_migrations`), forgetting all state: the counterpart
    /// of [`migrate`](Self::migrate), for uninstalling and for tests that
    /// leave a shared database as they found it.
    pub async fn drop_tables(&self) -> Result<(), StoreError> {
        let prefix = &self.inner.settings.table_prefix;
        for table in ["counters", "entries", "schema_migrations"] {
            let sql = format!("DROP TABLE IF EXISTS {prefix}{table}");
            on_engine!(&self.inner.db, db => sqlx::query(&sql).execute(&db.pool).await.map(drop))
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Deletes every expired row now, in batches; returns how many went.
    /// The store also does this by itself in the background after
    /// `cleanup_threshold` writes.
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        let batch = self.inner.settings.cleanup_batch_size;
        let mut total = 0;
        loop {
            let deleted = on_engine!(&self.inner.db, db => db.cleanup_batch(batch).await).map_err(|e| self.error(e))?;
            total += deleted;
            if deleted < batch {
                return Ok(total);
            }
        }
    }

    async fn decide(&self, request: CheckRequest<'_>, charge: bool) -> Result<Decisions, StoreError> {
        request.validate()?;
        let stored: SmallVec<[Cow<'_, str>; 2]> = request.limits.iter().map(|l| stored_key(l.key)).collect();
        let keys: SmallVec<[&str; 2]> = stored.iter().map(|k| k.as_ref()).collect();
        let timeout = self.inner.settings.timeout;
        let work = async {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.decide_once(&request, &keys, charge).await {
                    Err(error) if attempts < MAX_ATTEMPTS && is_transient(&error) => continue,
                    outcome => break outcome,
                }
            }
        };
        let (decisions, written) = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| StoreError::Timeout { store: self.inner.engine.as_str(), after: timeout })?
            .map_err(|e| self.error(e))?;
        if written > 0 {
            self.note_writes(written);
        }
        Ok(decisions)
    }

    /// One attempt: the single statement where it applies, else (or when
    /// it wrote nothing: over the limit, or the window just turned) the
    /// transaction, which also reports how long to wait.
    async fn decide_once(
        &self,
        request: &CheckRequest<'_>,
        keys: &[&str],
        charge: bool,
    ) -> Result<(Decisions, u64), sqlx::Error> {
        if let Some(kind) = decide::single_statement(request, charge) {
            let decided = on_engine!(&self.inner.db, db => db.single_statement(kind, request, keys[0]).await)?;
            if let Some(decisions) = decided {
                return Ok((decisions, 1));
            }
        }
        on_engine!(&self.inner.db, db => db.transaction(request, keys, charge).await)
    }

    /// Starts a background cleanup once enough rows were written; a check
    /// never waits for it.
    fn note_writes(&self, written: u64) {
        let threshold = self.inner.settings.cleanup_threshold;
        if threshold == 0 {
            return;
        }
        let total = self.inner.writes.fetch_add(written, Ordering::Relaxed) + written;
        if total < threshold || self.inner.cleaning.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.writes.store(0, Ordering::Relaxed);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.cleaning.store(false, Ordering::Release);
            return;
        };
        let store = self.clone();
        runtime.spawn(async move {
            if let Err(error) = store.cleanup().await {
                tracing::warn!(store = store.inner.engine.as_str(), %error, "rate limit cleanup failed");
            }
            store.inner.cleaning.store(false, Ordering::Release);
        });
    }

    fn error(&self, error: sqlx::Error) -> StoreError {
        match error {
            sqlx::Error::PoolTimedOut => {
                StoreError::Timeout { store: self.inner.engine.as_str(), after: self.inner.settings.connect_timeout }
            }
            other => StoreError::backend(self.inner.engine.as_str(), other),
        }
    }
}

impl Db {
    async fn connect(engine: Engine, settings: &SqlSettings) -> Result<Self, sqlx::Error> {
        match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres => postgres::Db::connect(settings).await.map(Db::Postgres),
            #[cfg(feature = "mysql")]
            Engine::MySql => mysql::Db::connect(settings).await.map(Db::MySql),
            #[cfg(feature = "sqlite")]
            Engine::Sqlite => sqlite::Db::connect(settings).await.map(Db::Sqlite),
            #[allow(unreachable_patterns)]
            other => Err(sqlx::Error::Configuration(
                format!("this build has no {0} support; enable the crate feature `{0}`", other.as_str()).into(),
            )),
        }
    }
}

/// Says which of URL, database, credentials or server is at fault.
fn connect_error(engine: Engine, target: &SecretUrl, error: &sqlx::Error) -> StoreError {
    let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned()).unwrap_or_default();
    let cause = match (engine, code.as_str()) {
        (Engine::Postgres, "3D000") | (Engine::MySql, "42000") if error.to_string().contains("database") => {
            "the database does not exist"
        }
        (Engine::Postgres, "28P01" | "28000") | (Engine::MySql, "28000") => "the credentials were refused",
        _ => match error {
            sqlx::Error::Configuration(_) => "the URL is not valid",
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut if engine == Engine::Sqlite => {
                "the database file cannot be opened (a missing directory, no permission, or locked too long)"
            }
            sqlx::Error::Io(_) => "the server cannot be reached",
            // Refused connections are retried until the bound, so this is
            // most often an unreachable server, but a stalled TLS or login
            // ends the same way.
            sqlx::Error::PoolTimedOut => "the server cannot be reached, or did not complete the login in time",
            _ => "the connection failed",
        },
    };
    StoreError::Config(crate::FieldError::new(
        "database",
        "url",
        format!("cannot connect to {target}: {cause} ({error})"),
    ))
}

/// A deadlock or serialisation failure: the database rolled the
/// transaction back and it can run again. InnoDB reports these even on
/// well-ordered locking when several transactions create the same row.
fn is_transient(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    matches!(code.as_deref(), Some("40001" | "40P01"))
}

/// Puts found rows (in any order) into the order of `keys`.
fn rows_in_order(keys: &[&str], found: Vec<(String, Option<Row>)>) -> Vec<Option<Row>> {
    let mut rows: Vec<Option<Row>> = vec![None; keys.len()];
    for (key, row) in found {
        if let Some(i) = keys.iter().position(|k| *k == key) {
            rows[i] = row;
        }
    }
    rows
}

/// A key as stored: itself when short and printable ASCII (the key column
/// is ASCII and 255 long), else its fingerprint (`#` and 32 hex digits),
/// as the key module writes hashed identities.
fn stored_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_STORED_KEY && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(crate::store_key::hashed(key.as_bytes()))
    }
}

impl Store for SqlStore {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, true).await
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, false).await
    }

    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        let key = stored_key(limit.key);
        let timeout = self.inner.settings.timeout;
        let work = async {
            on_engine!(&self.inner.db, db => {
                // One transaction, so the counter and the log go together.
                let mut tx = db.pool.begin().await?;
                sqlx::query(&db.sql.reset_counter).bind(key.as_ref()).execute(&mut *tx).await?;
                sqlx::query(&db.sql.reset_entries).bind(key.as_ref()).execute(&mut *tx).await?;
                tx.commit().await
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| StoreError::Timeout { store: self.inner.engine.as_str(), after: timeout })?
            .map_err(|e| self.error(e))
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let started = Instant::now();
        let timeout = self.inner.settings.timeout.max(Duration::from_secs(1));
        let ping =
            async { on_engine!(&self.inner.db, db => sqlx::query("SELECT 1").execute(&db.pool).await.map(drop)) };
        tokio::time::timeout(timeout, ping)
            .await
            .map_err(|_| StoreError::Timeout { store: self.inner.engine.as_str(), after: timeout })?
            .map_err(|e| self.error(e))?;
        let latency = started.elapsed();
        let (size, idle) = on_engine!(&self.inner.db, db => (db.pool.size(), db.pool.num_idle()));
        let details = vec![
            ("engine".to_owned(), self.inner.engine.as_str().to_owned()),
            ("table_prefix".to_owned(), self.inner.settings.table_prefix.clone()),
            ("pool_size".to_owned(), size.to_string()),
            ("pool_idle".to_owned(), idle.to_string()),
            ("pool_max".to_owned(), self.inner.settings.max_connections.to_string()),
        ];
        Ok(Health { store: self.inner.engine.as_str(), latency, details })
    }
}
