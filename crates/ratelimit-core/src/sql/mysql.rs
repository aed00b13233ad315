//! MySQL and MariaDB: on MariaDB a single fixed-window or token-bucket
//! limit is one `INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING` under
//! the row lock; everything else (and every decision on MySQL, which has
//! no `RETURNING`) rows locked with `SELECT ... FOR UPDATE` in a READ
//! COMMITTED transaction (no gap locks, so creating a missing row never
//! deadlocks). Time from `SYSDATE(6)`.

use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, Row as _, Transaction};

use super::decide::{self, Row, SingleStatement, Txn};
use super::{Engine, SqlSettings, migrate, rows_in_order};
use crate::Decisions;
use crate::clock::UnixNanos;
use crate::store::CheckRequest;

/// The database clock in microseconds.
const NOW: &str = "CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)";

/// The statements, with the table prefix filled in once; those taking a
/// list of keys are built per list length.
pub(super) struct Statements {
    prefix: String,
    window: String,
    bucket: String,
    entries: String,
    put: String,
    prune: String,
    append: String,
    pub(super) reset_counter: String,
    pub(super) reset_entries: String,
    cleanup_counters: String,
    cleanup_entries: String,
}

impl Statements {
    fn new(p: &str) -> Self {
        Self {
            prefix: p.to_owned(),
            // MariaDB's INSERT ... RETURNING. The first assignment decides,
            // under the row's lock, and marks an admitted request by writing
            // its nonce into `data`; the later ones (which see the updated
            // `data`) follow that mark. Binds: key, nonce, cost, explicit
            // time or NULL, period, period, capacity.
            window: format!(
                "INSERT INTO {p}counters (bucket_key, data, count, expires_at) \
                 VALUES (?, ?, ?, (IFNULL(?, {NOW} * 1000) DIV ? + 1) * ?) \
                 ON DUPLICATE KEY UPDATE \
                 data = IF(IF(expires_at = VALUES(expires_at), count, 0) + VALUES(count) <= ?, VALUES(data), data), \
                 count = IF(data = VALUES(data), IF(expires_at = VALUES(expires_at), count + VALUES(count), VALUES(count)), count), \
                 expires_at = IF(data = VALUES(data), VALUES(expires_at), expires_at) \
                 RETURNING data, count, expires_at, {NOW}"
            ),
            // Binds: key, nonce, explicit time or NULL, step (cost ×
            // interval), step, step, step, tolerance, step, step. The
            // time of the decision is VALUES(expires_at) - step.
            bucket: format!(
                "INSERT INTO {p}counters (bucket_key, data, count, expires_at) \
                 VALUES (?, ?, 0, IFNULL(?, {NOW} * 1000) + ?) \
                 ON DUPLICATE KEY UPDATE \
                 data = IF(GREATEST(expires_at, VALUES(expires_at) - ?) + ? - (VALUES(expires_at) - ?) <= ?, VALUES(data), data), \
                 expires_at = IF(data = VALUES(data), GREATEST(expires_at, VALUES(expires_at) - ?) + ?, expires_at) \
                 RETURNING data, count, expires_at, {NOW}"
            ),
            entries: format!(
                "SELECT admitted_at, cost FROM {p}entries WHERE bucket_key = ? AND admitted_at > ? ORDER BY admitted_at, id"
            ),
            put: format!(
                "INSERT INTO {p}counters (bucket_key, data, count, expires_at) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE data = VALUES(data), count = VALUES(count), expires_at = VALUES(expires_at)"
            ),
            prune: format!("DELETE FROM {p}entries WHERE bucket_key = ? AND admitted_at <= ?"),
            append: format!("INSERT INTO {p}entries (bucket_key, admitted_at, cost, expires_at) VALUES (?, ?, ?, ?)"),
            reset_counter: format!("DELETE FROM {p}counters WHERE bucket_key = ?"),
            reset_entries: format!("DELETE FROM {p}entries WHERE bucket_key = ?"),
            cleanup_counters: format!("DELETE FROM {p}counters WHERE expires_at < {NOW} * 1000 LIMIT ?"),
            cleanup_entries: format!("DELETE FROM {p}entries WHERE expires_at < {NOW} * 1000 LIMIT ?"),
        }
    }

    fn select(&self, count: usize, lock: bool) -> String {
        let p = &self.prefix;
        let marks = vec!["?"; count].join(", ");
        let lock = if lock { " ORDER BY bucket_key FOR UPDATE" } else { "" };
        format!(
            "SELECT bucket_key, data, count, expires_at, {NOW} FROM {p}counters WHERE bucket_key IN ({marks}){lock}"
        )
    }

    fn insert_missing(&self, count: usize) -> String {
        let p = &self.prefix;
        let rows = vec!["(?, '', 0)"; count].join(", ");
        // On a duplicate, the no-op update takes the row's exclusive lock
        // (INSERT IGNORE would take a shared one, and two shared holders
        // upgrading would deadlock).
        format!(
            "INSERT INTO {p}counters (bucket_key, data, expires_at) VALUES {rows} ON DUPLICATE KEY UPDATE bucket_key = bucket_key"
        )
    }
}

/// A connected MySQL or MariaDB store backend.
pub(super) struct Db {
    pub(super) pool: MySqlPool,
    pub(super) sql: Statements,
    /// MariaDB, whose `INSERT ... RETURNING` decides the single-statement
    /// cases; MySQL has no such statement and uses the transaction.
    returning: bool,
}

impl Db {
    pub(super) async fn connect(settings: &SqlSettings) -> Result<Self, sqlx::Error> {
        let options: MySqlConnectOptions = settings.url.expose().parse()?;
        // A lock wait of a decision abandoned at its timeout must not keep
        // the server waiting (InnoDB's default is 50 s); whole seconds only.
        let lock_wait = settings.timeout.as_secs_f64().ceil().max(1.0) as u64;
        let pool = MySqlPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").execute(&mut *conn).await?;
                    sqlx::query(&format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}"))
                        .execute(&mut *conn)
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await?;
        let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&pool).await?;
        let returning = version.contains("MariaDB");
        Ok(Self { pool, sql: Statements::new(&settings.table_prefix), returning })
    }

    pub(super) async fn migrate(&self, prefix: &str, wait: Duration) -> Result<(), migrate::MigrateError> {
        // DDL commits implicitly here, so a named lock on one connection
        // serialises concurrent migrators instead of a transaction.
        let mut conn = self.pool.acquire().await?;
        let lock = migrate::lock_name(prefix);
        let seconds = wait.as_secs_f64().max(0.001);
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT GET_LOCK(?, ?)").bind(&lock).bind(seconds).fetch_one(&mut *conn).await?;
        if taken != Some(1) {
            return Err(migrate::lock_not_taken(&lock, "GET_LOCK", wait));
        }
        let result = async {
            sqlx::query(&migrate::versions_table(Engine::MySql, prefix)).execute(&mut *conn).await?;
            for migration in migrate::migrations(Engine::MySql) {
                let applied: Option<i64> =
                    sqlx::query_scalar(&format!("SELECT version FROM {prefix}schema_migrations WHERE version = ?"))
                        .bind(migration.version)
                        .fetch_optional(&mut *conn)
                        .await?;
                if applied.is_some() {
                    continue;
                }
                for statement in migration.statements(prefix) {
                    sqlx::query(&statement).execute(&mut *conn).await?;
                }
                sqlx::query(&format!("INSERT INTO {prefix}schema_migrations (version, applied_at) VALUES (?, {NOW})"))
                    .bind(migration.version)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        sqlx::query("SELECT RELEASE_LOCK(?)").bind(&lock).execute(&mut *conn).await?;
        Ok(result?)
    }

    /// Decides in one short transaction.
    pub(super) async fn transaction(
        &self,
        request: &CheckRequest<'_>,
        keys: &[&str],
        charge: bool,
    ) -> Result<(Decisions, u64), sqlx::Error> {
        let mut txn = MySqlTxn { tx: self.pool.begin().await?, sql: &self.sql };
        let outcome = decide::decide(&mut txn, request, keys, charge).await?;
        txn.tx.commit().await?;
        Ok(outcome)
    }

    /// One `INSERT ... RETURNING` decides and charges (MariaDB); `None`
    /// when it wrote nothing, or on MySQL.
    pub(super) async fn single_statement(
        &self,
        kind: SingleStatement,
        request: &CheckRequest<'_>,
        key: &str,
    ) -> Result<Option<Decisions>, sqlx::Error> {
        if !self.returning {
            return Ok(None);
        }
        let check = &request.limits[0];
        let (step, bound) = decide::single_statement_params(kind, check.limit);
        let nonce = nonce();
        let at = request.at.map(decide::signed);
        let cost = decide::signed(request.cost);
        let query = match kind {
            SingleStatement::Window => sqlx::query_as(&self.sql.window)
                .bind(key)
                .bind(&nonce)
                .bind(cost)
                .bind(at)
                .bind(step)
                .bind(step)
                .bind(bound),
            SingleStatement::Bucket => {
                let step = step.saturating_mul(cost);
                sqlx::query_as(&self.sql.bucket)
                    .bind(key)
                    .bind(&nonce)
                    .bind(at)
                    .bind(step)
                    .bind(step)
                    .bind(step)
                    .bind(step)
                    .bind(bound)
                    .bind(step)
                    .bind(step)
            }
        };
        let (data, count, expires_at, now): (String, i64, i64, i64) = query.fetch_one(&self.pool).await?;
        if data != nonce {
            return Ok(None);
        }
        let now = request.at.unwrap_or_else(|| decide::nanos(now).saturating_mul(1_000));
        let mut decisions = Decisions::new();
        decisions.push(decide::single_statement_decision(kind, check.limit, count, expires_at, now));
        Ok(Some(decisions))
    }

    pub(super) async fn cleanup_batch(&self, batch: u64) -> Result<u64, sqlx::Error> {
        let counters = sqlx::query(&self.sql.cleanup_counters).bind(batch).execute(&self.pool).await?;
        let entries = sqlx::query(&self.sql.cleanup_entries).bind(batch).execute(&self.pool).await?;
        Ok(counters.rows_affected() + entries.rows_affected())
    }
}

struct MySqlTxn<'s> {
    tx: Transaction<'static, MySql>,
    sql: &'s Statements,
}

impl MySqlTxn<'_> {
    async fn fetch(
        &mut self,
        keys: &[&str],
        lock: bool,
    ) -> Result<(Vec<(String, Option<Row>)>, Option<UnixNanos>), sqlx::Error> {
        let sql = self.sql.select(keys.len(), lock);
        let mut query = sqlx::query(&sql);
        for key in keys {
            query = query.bind(*key);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        let mut now = None;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            now = Some(decide::nanos(row.try_get::<i64, _>(4)?).saturating_mul(1_000));
            // A binary collation makes the driver see the key as bytes.
            let key: Vec<u8> = row.try_get(0)?;
            let key = String::from_utf8(key).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            found.push((key, Some(Row { data: row.try_get(1)?, count: row.try_get(2)?, expires_at: row.try_get(3)? })));
        }
        Ok((found, now))
    }

    async fn now(&mut self) -> Result<UnixNanos, sqlx::Error> {
        let micros: i64 = sqlx::query_scalar(&format!("SELECT {NOW}")).fetch_one(&mut *self.tx).await?;
        Ok(decide::nanos(micros).saturating_mul(1_000))
    }
}

impl Txn for MySqlTxn<'_> {
    async fn rows(&mut self, keys: &[&str], exclusive: bool) -> Result<(Vec<Option<Row>>, UnixNanos), sqlx::Error> {
        let (mut found, mut now) = self.fetch(keys, exclusive).await?;
        let mut tries = 0;
        while exclusive && found.len() < keys.len() {
            // A row to lock must exist: create the missing ones, lock again,
            // and go round while a reset or cleanup deletes one in between.
            tries += 1;
            if tries > decide::MAX_LOCK_TRIES {
                return Err(decide::rows_kept_vanishing());
            }
            let missing: Vec<&str> = keys.iter().copied().filter(|k| !found.iter().any(|(f, _)| f == k)).collect();
            let sql = self.sql.insert_missing(missing.len());
            let mut insert = sqlx::query(&sql);
            for key in &missing {
                insert = insert.bind(*key);
            }
            insert.execute(&mut *self.tx).await?;
            (found, now) = self.fetch(keys, true).await?;
        }
        let now = match now {
            Some(now) => now,
            None => self.now().await?,
        };
        Ok((rows_in_order(keys, found), now))
    }

    one_statement_writes!();
}

/// A value no other request writes into `data`: marks the row an upsert
/// admitted (see the `window` and `bucket` statements).
pub(super) fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (time as u64) ^ (u64::from(std::process::id()) << 32)
    });
    format!("n{seed:x}.{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
