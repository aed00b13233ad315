//! SQLite: each decision holds the database's write lock (`BEGIN
//! IMMEDIATE`), so decisions on one file are serialised; time from this
//! process's clock, since SQLite runs inside it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, Sqlite, Transaction};

use super::decide::{self, Row, SingleStatement, Txn};
use super::{Durability, Engine, SqlSettings, migrate, rows_in_order};
use crate::Decisions;
use crate::clock::{Clock, SystemClock, UnixNanos};
use crate::store::CheckRequest;

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
            // ?1 key, ?2 now, ?3 cost, ?4 period, ?5 capacity. A
            // conflicting row over capacity is left alone, and then
            // nothing is returned.
            window: format!(
                "INSERT INTO {p}counters AS c (bucket_key, data, count, expires_at) \
                 VALUES (?1, '', ?3, (?2 / ?4 + 1) * ?4) \
                 ON CONFLICT (bucket_key) DO UPDATE SET \
                 count = CASE WHEN c.expires_at = excluded.expires_at THEN c.count + ?3 ELSE ?3 END, \
                 expires_at = excluded.expires_at \
                 WHERE CASE WHEN c.expires_at = excluded.expires_at THEN c.count ELSE 0 END + ?3 <= ?5 \
                 RETURNING count, expires_at"
            ),
            // ?3 cost, ?4 emission interval, ?5 tolerance (interval × capacity).
            bucket: format!(
                "INSERT INTO {p}counters AS c (bucket_key, data, count, expires_at) \
                 VALUES (?1, '', 0, ?2 + ?3 * ?4) \
                 ON CONFLICT (bucket_key) DO UPDATE SET expires_at = MAX(c.expires_at, ?2) + ?3 * ?4 \
                 WHERE MAX(c.expires_at, ?2) + ?3 * ?4 - ?2 <= ?5 \
                 RETURNING count, expires_at"
            ),
            entries: format!(
                "SELECT admitted_at, cost FROM {p}entries WHERE bucket_key = ? AND admitted_at > ? ORDER BY admitted_at, id"
            ),
            put: format!(
                "INSERT INTO {p}counters (bucket_key, data, count, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (bucket_key) DO UPDATE SET data = excluded.data, count = excluded.count, expires_at = excluded.expires_at"
            ),
            prune: format!("DELETE FROM {p}entries WHERE bucket_key = ? AND admitted_at <= ?"),
            append: format!("INSERT INTO {p}entries (bucket_key, admitted_at, cost, expires_at) VALUES (?, ?, ?, ?)"),
            reset_counter: format!("DELETE FROM {p}counters WHERE bucket_key = ?"),
            reset_entries: format!("DELETE FROM {p}entries WHERE bucket_key = ?"),
            cleanup_counters: format!(
                "DELETE FROM {p}counters WHERE rowid IN (SELECT rowid FROM {p}counters WHERE expires_at < ? LIMIT ?)"
            ),
            cleanup_entries: format!(
                "DELETE FROM {p}entries WHERE id IN (SELECT id FROM {p}entries WHERE expires_at < ? LIMIT ?)"
            ),
        }
    }

    fn select(&self, count: usize) -> String {
        let p = &self.prefix;
        let marks = vec!["?"; count].join(", ");
        format!("SELECT bucket_key, data, count, expires_at FROM {p}counters WHERE bucket_key IN ({marks})")
    }
}

/// A connected SQLite store backend.
pub(super) struct Db {
    pub(super) pool: SqlitePool,
    pub(super) sql: Statements,
}

impl Db {
    pub(super) async fn connect(settings: &SqlSettings) -> Result<Self, sqlx::Error> {
        let synchronous = match settings.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Fast => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(settings.url.expose())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(settings.timeout);
        let url = settings.url.expose();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut pool = SqlitePoolOptions::new().acquire_timeout(settings.connect_timeout);
        pool = if in_memory {
            // Every connection to `:memory:` opens a database of its own:
            // keep exactly one, for the life of the store.
            pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            pool.max_connections(settings.max_connections)
        };
        let pool = pool.connect_with(options).await?;
        Ok(Self { pool, sql: Statements::new(&settings.table_prefix) })
    }

    pub(super) async fn migrate(&self, prefix: &str, wait: Duration) -> Result<(), migrate::MigrateError> {
        // The write lock serialises migrators. Each try waits the busy
        // timeout (the decision timeout); keep trying for `wait` in all.
        let started = std::time::Instant::now();
        let mut tx = loop {
            match self.pool.begin_with("BEGIN IMMEDIATE").await {
                Err(e) if is_busy(&e) => {
                    if started.elapsed() >= wait {
                        return Err(migrate::lock_not_taken("the database's write lock", "BEGIN IMMEDIATE", wait));
                    }
                }
                other => break other?,
            }
        };
        sqlx::query(&migrate::versions_table(Engine::Sqlite, prefix)).execute(&mut *tx).await?;
        for migration in migrate::migrations(Engine::Sqlite) {
            let applied: Option<i64> =
                sqlx::query_scalar(&format!("SELECT version FROM {prefix}schema_migrations WHERE version = ?"))
                    .bind(migration.version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            for statement in migration.statements(prefix) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
            sqlx::query(&format!("INSERT INTO {prefix}schema_migrations (version, applied_at) VALUES (?, ?)"))
                .bind(migration.version)
                .bind(decide::signed(SystemClock.now()))
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx.commit().await?)
    }

    /// Decides in one short transaction.
    pub(super) async fn transaction(
        &self,
        request: &CheckRequest<'_>,
        keys: &[&str],
        charge: bool,
    ) -> Result<(Decisions, u64), sqlx::Error> {
        // The write lock up front: a deferred transaction that reads and
        // then writes can fail on a concurrent commit instead of waiting.
        let tx = if charge { self.pool.begin_with("BEGIN IMMEDIATE").await? } else { self.pool.begin().await? };
        let mut txn = SqliteTxn { tx, sql: &self.sql };
        let outcome = decide::decide(&mut txn, request, keys, charge).await?;
        txn.tx.commit().await?;
        Ok(outcome)
    }

    /// One upsert decides and charges; `None` when it wrote nothing.
    pub(super) async fn single_statement(
        &self,
        kind: SingleStatement,
        request: &CheckRequest<'_>,
        key: &str,
    ) -> Result<Option<Decisions>, sqlx::Error> {
        let check = &request.limits[0];
        let now = request.at.unwrap_or_else(|| SystemClock.now());
        let (step, bound) = decide::single_statement_params(kind, check.limit);
        let sql = match kind {
            SingleStatement::Window => &self.sql.window,
            SingleStatement::Bucket => &self.sql.bucket,
        };
        let row: Option<(i64, i64)> = sqlx::query_as(sql)
            .bind(key)
            .bind(decide::signed(now))
            .bind(decide::signed(request.cost))
            .bind(step)
            .bind(bound)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(count, expires_at)| {
            let mut decisions = Decisions::new();
            decisions.push(decide::single_statement_decision(kind, check.limit, count, expires_at, now));
            decisions
        }))
    }

    pub(super) async fn cleanup_batch(&self, batch: u64) -> Result<u64, sqlx::Error> {
        let now = decide::signed(SystemClock.now());
        let limit = decide::signed(batch);
        let counters = sqlx::query(&self.sql.cleanup_counters).bind(now).bind(limit).execute(&self.pool).await?;
        let entries = sqlx::query(&self.sql.cleanup_entries).bind(now).bind(limit).execute(&self.pool).await?;
        Ok(counters.rows_affected() + entries.rows_affected())
    }
}

struct SqliteTxn<'s> {
    tx: Transaction<'static, Sqlite>,
    sql: &'s Statements,
}

impl Txn for SqliteTxn<'_> {
    async fn rows(&mut self, keys: &[&str], _exclusive: bool) -> Result<(Vec<Option<Row>>, UnixNanos), sqlx::Error> {
        // The transaction already holds the write lock: a plain read is
        // as good as a row lock.
        let sql = self.sql.select(keys.len());
        let mut query = sqlx::query(&sql);
        for key in keys {
            query = query.bind(*key);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            found.push((
                row.try_get(0)?,
                Some(Row { data: row.try_get(1)?, count: row.try_get(2)?, expires_at: row.try_get(3)? }),
            ));
        }
        Ok((rows_in_order(keys, found), SystemClock.now()))
    }

    one_statement_writes!();
}

/// SQLITE_BUSY, and its extended codes: another connection holds the lock.
fn is_busy(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|d| d.code()).and_then(|c| c.parse::<i32>().ok());
    code.is_some_and(|c| c & 0xff == 5)
}
