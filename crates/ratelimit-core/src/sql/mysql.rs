//! MySQL and MariaDB: a single fixed-window or token-bucket limit is one
//! procedure call (one upsert under the row lock); everything else rows
//! locked with `SELECT ... FOR UPDATE` in a READ COMMITTED transaction (no
//! gap locks, so creating a missing row never deadlocks). Time from
//! `SYSDATE(6)`.

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
    reset_counter: String,
    reset_entries: String,
    cleanup_counters: String,
    cleanup_entries: String,
}

impl Statements {
    fn new(p: &str) -> Self {
        Self {
            prefix: p.to_owned(),
            // The procedures of `migrations/mysql_procedures.sql`.
            window: format!("CALL {p}window(?, ?, ?, ?, ?)"),
            bucket: format!("CALL {p}bucket(?, ?, ?, ?, ?)"),
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
    sql: Statements,
}

impl Db {
    pub(super) async fn connect(settings: &SqlSettings) -> Result<Self, sqlx::Error> {
        let options: MySqlConnectOptions = settings.url.parse()?;
        let pool = MySqlPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").execute(conn).await.map(drop)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, sql: Statements::new(&settings.table_prefix) })
    }

    pub(super) async fn migrate(&self, prefix: &str) -> Result<(), sqlx::Error> {
        // DDL commits implicitly here, so a named lock on one connection
        // serialises concurrent migrators instead of a transaction.
        let mut conn = self.pool.acquire().await?;
        let lock = format!("{prefix}schema");
        sqlx::query("SELECT GET_LOCK(?, 10)").bind(&lock).execute(&mut *conn).await?;
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
        result
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

    /// One procedure call decides and charges; `None` when it wrote nothing.
    pub(super) async fn single_statement(
        &self,
        kind: SingleStatement,
        request: &CheckRequest<'_>,
        key: &str,
    ) -> Result<Option<Decisions>, sqlx::Error> {
        let check = &request.limits[0];
        let (step, bound) = decide::single_statement_params(kind, check.limit);
        let sql = match kind {
            SingleStatement::Window => &self.sql.window,
            SingleStatement::Bucket => &self.sql.bucket,
        };
        let (admitted, count, expires_at, now): (i64, i64, i64, i64) = sqlx::query_as(sql)
            .bind(key)
            .bind(request.at.map(decide::signed))
            .bind(decide::signed(request.cost))
            .bind(step)
            .bind(bound)
            .fetch_one(&self.pool)
            .await?;
        if admitted != 1 {
            return Ok(None);
        }
        let mut decisions = Decisions::new();
        decisions.push(decide::single_statement_decision(kind, check.limit, count, expires_at, decide::nanos(now)));
        Ok(Some(decisions))
    }

    pub(super) async fn reset(&self, key: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql.reset_counter).bind(key).execute(&mut *tx).await?;
        sqlx::query(&self.sql.reset_entries).bind(key).execute(&mut *tx).await?;
        tx.commit().await
    }

    pub(super) async fn cleanup_batch(&self, batch: u64) -> Result<u64, sqlx::Error> {
        let counters = sqlx::query(&self.sql.cleanup_counters).bind(batch).execute(&self.pool).await?;
        let entries = sqlx::query(&self.sql.cleanup_entries).bind(batch).execute(&self.pool).await?;
        Ok(counters.rows_affected() + entries.rows_affected())
    }

    pub(super) async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    pub(super) fn pool_details(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
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
        if exclusive && found.len() < keys.len() {
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
