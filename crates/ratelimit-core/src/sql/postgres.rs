//! PostgreSQL: rows locked with `SELECT ... FOR UPDATE` in a READ
//! COMMITTED transaction; time from `clock_timestamp()`.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row as _, Transaction};

use super::decide::{self, Row, SingleStatement, Txn};
use super::{Durability, Engine, SqlSettings, migrate, rows_in_order};
use crate::Decisions;
use crate::clock::UnixNanos;
use crate::store::CheckRequest;

/// The database clock in microseconds (the column type's resolution).
const NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";

/// The statements, with the table prefix filled in once.
pub(super) struct Statements {
    lock: String,
    read: String,
    window: String,
    bucket: String,
    insert_missing: String,
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
            lock: format!(
                "SELECT bucket_key, data, count, expires_at, {NOW} FROM {p}counters WHERE bucket_key = ANY($1) ORDER BY bucket_key FOR UPDATE"
            ),
            read: format!(
                "SELECT k, c.data, c.count, c.expires_at, {NOW} FROM UNNEST($1::TEXT[]) AS k LEFT JOIN {p}counters c ON c.bucket_key = k"
            ),
            // $1 key, $2 explicit time or NULL, $3 cost, $4 period,
            // $5 capacity. A conflicting row over capacity is left alone,
            // and then nothing is returned.
            window: format!(
                "WITH t AS (SELECT COALESCE($2::BIGINT, {NOW} * 1000) AS now) \
                 INSERT INTO {p}counters AS c (bucket_key, data, count, expires_at) \
                 SELECT $1, '', $3, (t.now / $4 + 1) * $4 FROM t \
                 ON CONFLICT (bucket_key) DO UPDATE SET \
                 count = CASE WHEN c.expires_at = EXCLUDED.expires_at THEN c.count + $3 ELSE $3 END, \
                 expires_at = EXCLUDED.expires_at \
                 WHERE CASE WHEN c.expires_at = EXCLUDED.expires_at THEN c.count ELSE 0 END + $3 <= $5 \
                 RETURNING c.count, c.expires_at, (SELECT now FROM t)"
            ),
            // $3 cost, $4 emission interval, $5 tolerance (interval × capacity).
            bucket: format!(
                "WITH t AS (SELECT COALESCE($2::BIGINT, {NOW} * 1000) AS now) \
                 INSERT INTO {p}counters AS c (bucket_key, data, count, expires_at) \
                 SELECT $1, '', 0, t.now + $3 * $4 FROM t \
                 ON CONFLICT (bucket_key) DO UPDATE SET \
                 expires_at = GREATEST(c.expires_at, (SELECT now FROM t)) + $3 * $4 \
                 WHERE GREATEST(c.expires_at, (SELECT now FROM t)) + $3 * $4 - (SELECT now FROM t) <= $5 \
                 RETURNING c.count, c.expires_at, (SELECT now FROM t)"
            ),
            // A row another session created meanwhile is locked by the
            // no-op update (DO NOTHING would leave it unlocked, for a reset
            // or cleanup to delete before the lock that follows).
            insert_missing: format!(
                "INSERT INTO {p}counters (bucket_key, data, expires_at) SELECT k, '', 0 FROM UNNEST($1::TEXT[]) AS k ORDER BY k ON CONFLICT (bucket_key) DO UPDATE SET bucket_key = EXCLUDED.bucket_key"
            ),
            entries: format!(
                "SELECT admitted_at, cost FROM {p}entries WHERE bucket_key = $1 AND admitted_at > $2 ORDER BY admitted_at, id"
            ),
            put: format!(
                "INSERT INTO {p}counters (bucket_key, data, count, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (bucket_key) DO UPDATE SET data = EXCLUDED.data, count = EXCLUDED.count, expires_at = EXCLUDED.expires_at"
            ),
            prune: format!("DELETE FROM {p}entries WHERE bucket_key = $1 AND admitted_at <= $2"),
            append: format!(
                "INSERT INTO {p}entries (bucket_key, admitted_at, cost, expires_at) VALUES ($1, $2, $3, $4)"
            ),
            reset_counter: format!("DELETE FROM {p}counters WHERE bucket_key = $1"),
            reset_entries: format!("DELETE FROM {p}entries WHERE bucket_key = $1"),
            // Rows a decision holds are skipped, not waited for: cleanup
            // never slows a request down.
            cleanup_counters: format!(
                "DELETE FROM {p}counters WHERE bucket_key IN (SELECT bucket_key FROM {p}counters WHERE expires_at < {NOW} * 1000 LIMIT $1 FOR UPDATE SKIP LOCKED)"
            ),
            cleanup_entries: format!(
                "DELETE FROM {p}entries WHERE id IN (SELECT id FROM {p}entries WHERE expires_at < {NOW} * 1000 LIMIT $1 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}

/// A connected PostgreSQL store backend.
pub(super) struct Db {
    pub(super) pool: PgPool,
    pub(super) sql: Statements,
}

impl Db {
    pub(super) async fn connect(settings: &SqlSettings) -> Result<Self, sqlx::Error> {
        let mut options: PgConnectOptions = settings.url.expose().parse()?;
        // Startup parameters, so no extra statement per connection. A
        // decision abandoned at its timeout must not leave the server
        // waiting or holding rows for ever: a lock wait ends after the
        // decision's timeout, and a transaction its client left open is
        // ended by the server a second later, releasing its row locks.
        let timeout_ms = settings.timeout.as_millis().max(1);
        let idle_ms = timeout_ms + 1_000;
        options = options.options([
            ("lock_timeout", timeout_ms.to_string()),
            ("idle_in_transaction_session_timeout", idle_ms.to_string()),
        ]);
        if settings.durability == Durability::Fast {
            options = options.options([("synchronous_commit", "off")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool, sql: Statements::new(&settings.table_prefix) })
    }

    pub(super) async fn migrate(&self, prefix: &str, wait: Duration) -> Result<(), migrate::MigrateError> {
        let mut tx = self.pool.begin().await?;
        // DDL is transactional here; the advisory lock keeps two processes
        // from creating the same table at once (which PostgreSQL reports
        // as a unique violation rather than waiting).
        let lock = migrate::lock_name(prefix);
        let millis = wait.as_millis().max(1);
        sqlx::query(&format!("SET LOCAL lock_timeout = {millis}")).execute(&mut *tx).await?;
        let taken = sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&lock).execute(&mut *tx).await;
        match taken {
            // lock_not_available: another migrator held it all along.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => {
                return Err(migrate::lock_not_taken(&lock, "pg_advisory_xact_lock", wait));
            }
            other => other?,
        };
        // Back to the session's own bound, from the startup parameters.
        sqlx::query("SET LOCAL lock_timeout TO DEFAULT").execute(&mut *tx).await?;
        sqlx::query(&migrate::versions_table(Engine::Postgres, prefix)).execute(&mut *tx).await?;
        for migration in migrate::migrations(Engine::Postgres) {
            let applied: Option<i64> =
                sqlx::query_scalar(&format!("SELECT version FROM {prefix}schema_migrations WHERE version = $1"))
                    .bind(migration.version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            for statement in migration.statements(prefix) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
            sqlx::query(&format!("INSERT INTO {prefix}schema_migrations (version, applied_at) VALUES ($1, {NOW})"))
                .bind(migration.version)
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
        let mut txn = PgTxn { tx: self.pool.begin().await?, sql: &self.sql };
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
        let (step, bound) = decide::single_statement_params(kind, check.limit);
        let sql = match kind {
            SingleStatement::Window => &self.sql.window,
            SingleStatement::Bucket => &self.sql.bucket,
        };
        let row: Option<(i64, i64, i64)> = sqlx::query_as(sql)
            .bind(key)
            .bind(request.at.map(decide::signed))
            .bind(decide::signed(request.cost))
            .bind(step)
            .bind(bound)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(count, expires_at, now)| {
            let mut decisions = Decisions::new();
            decisions.push(decide::single_statement_decision(kind, check.limit, count, expires_at, decide::nanos(now)));
            decisions
        }))
    }

    /// Deletes up to `batch` expired counter rows and as many entries.
    pub(super) async fn cleanup_batch(&self, batch: u64) -> Result<u64, sqlx::Error> {
        let limit = decide::signed(batch);
        let counters = sqlx::query(&self.sql.cleanup_counters).bind(limit).execute(&self.pool).await?;
        let entries = sqlx::query(&self.sql.cleanup_entries).bind(limit).execute(&self.pool).await?;
        Ok(counters.rows_affected() + entries.rows_affected())
    }
}

struct PgTxn<'s> {
    tx: Transaction<'static, Postgres>,
    sql: &'s Statements,
}

impl PgTxn<'_> {
    async fn fetch(
        &mut self,
        sql: &str,
        keys: &[&str],
    ) -> Result<(Vec<(String, Option<Row>)>, UnixNanos), sqlx::Error> {
        let rows = sqlx::query(sql).bind(keys).fetch_all(&mut *self.tx).await?;
        let mut now = 0;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            now = decide::nanos(row.try_get::<i64, _>(4)?).saturating_mul(1_000);
            let data: Option<String> = row.try_get(1)?;
            let count: Option<i64> = row.try_get(2)?;
            let expires_at: Option<i64> = row.try_get(3)?;
            let stored =
                data.zip(count.zip(expires_at)).map(|(data, (count, expires_at))| Row { data, count, expires_at });
            found.push((row.try_get(0)?, stored));
        }
        Ok((found, now))
    }
}

impl Txn for PgTxn<'_> {
    async fn rows(&mut self, keys: &[&str], exclusive: bool) -> Result<(Vec<Option<Row>>, UnixNanos), sqlx::Error> {
        let sql = self.sql;
        if !exclusive {
            let (found, now) = self.fetch(&sql.read, keys).await?;
            return Ok((rows_in_order(keys, found), now));
        }
        let (mut found, mut now) = self.fetch(&sql.lock, keys).await?;
        let mut tries = 0;
        while found.len() < keys.len() {
            // A row to lock must exist: create the missing ones (racing
            // creators meet on the primary key) and lock again. A row
            // another session created can be deleted by a reset or cleanup
            // before this lock reaches it: go round until every row is
            // locked, so the time always comes from the locking statement.
            tries += 1;
            if tries > decide::MAX_LOCK_TRIES {
                return Err(decide::rows_kept_vanishing());
            }
            let missing: Vec<&str> = keys.iter().copied().filter(|k| !found.iter().any(|(f, _)| f == k)).collect();
            sqlx::query(&sql.insert_missing).bind(&missing).execute(&mut *self.tx).await?;
            (found, now) = self.fetch(&sql.lock, keys).await?;
        }
        Ok((rows_in_order(keys, found), now))
    }

    one_statement_writes!();
}
