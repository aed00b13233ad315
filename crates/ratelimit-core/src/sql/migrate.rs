//! The schema, as versioned migrations shipped in the crate.
//!
//! Each engine has its own script set; `{prefix}` in them stands for the
//! store's table prefix. Applied versions are recorded in
//! `{prefix}schema_migrations`, and every statement is idempotent
//! (`IF NOT EXISTS`), so running them twice, or from two processes at
//! once, is harmless.

use std::time::Duration;

use super::Engine;

/// Why migrations did not run.
#[derive(Debug)]
pub(super) enum MigrateError {
    /// A statement failed.
    Sql(sqlx::Error),
    /// The lock that serialises migrators was not had in time.
    Lock {
        /// The lock's name.
        lock: String,
        /// How the engine takes it.
        how: &'static str,
        /// How long it was waited for.
        waited: Duration,
    },
}

impl From<sqlx::Error> for MigrateError {
    fn from(error: sqlx::Error) -> Self {
        MigrateError::Sql(error)
    }
}

/// The name of the lock concurrent migrators of one prefix take.
pub(super) fn lock_name(prefix: &str) -> String {
    format!("{prefix}schema")
}

pub(super) fn lock_not_taken(lock: &str, how: &'static str, waited: Duration) -> MigrateError {
    MigrateError::Lock { lock: lock.to_owned(), how, waited }
}

/// One schema version.
pub(super) struct Migration {
    pub(super) version: i64,
    script: &'static str,
}

const POSTGRES: &[Migration] = &[Migration { version: 1, script: include_str!("migrations/postgres.sql") }];
const MYSQL: &[Migration] = &[Migration { version: 1, script: include_str!("migrations/mysql.sql") }];
const SQLITE: &[Migration] = &[Migration { version: 1, script: include_str!("migrations/sqlite.sql") }];

pub(super) fn migrations(engine: Engine) -> &'static [Migration] {
    match engine {
        Engine::Postgres => POSTGRES,
        Engine::MySql => MYSQL,
        Engine::Sqlite => SQLITE,
    }
}

impl Migration {
    /// The migration's statements for one table prefix.
    pub(super) fn statements(&self, prefix: &str) -> Vec<String> {
        let script: String =
            self.script.lines().filter(|line| !line.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        script.split(';').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.replace("{prefix}", prefix)).collect()
    }
}

/// The statement that creates the table of applied versions.
pub(super) fn versions_table(engine: Engine, prefix: &str) -> String {
    let applied_at = match engine {
        Engine::Sqlite => "INTEGER",
        _ => "BIGINT",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {prefix}schema_migrations (version BIGINT PRIMARY KEY, applied_at {applied_at} NOT NULL)"
    )
}

/// The whole schema of one engine as SQL, for applying by hand.
pub fn schema_sql(engine: Engine, prefix: &str) -> String {
    let mut out = String::new();
    out.push_str(&versions_table(engine, prefix));
    out.push_str(";\n");
    for migration in migrations(engine) {
        for statement in migration.statements(prefix) {
            out.push_str(&statement);
            out.push_str(";\n");
        }
        out.push_str(&format!(
            "INSERT INTO {prefix}schema_migrations (version, applied_at) VALUES ({}, 0);\n",
            migration.version
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_into_statements_with_the_prefix_filled_in() {
        let tables = migrations(Engine::Postgres)[0].statements("p_");
        assert_eq!(tables.len(), 5);
        assert!(tables.iter().all(|s| !s.contains("{prefix}") && !s.contains(';')));
        let by_hand = schema_sql(Engine::MySql, "p_");
        assert!(by_hand.contains("CREATE TABLE IF NOT EXISTS p_counters") && by_hand.contains("VALUES (1, 0);"));
    }
}
