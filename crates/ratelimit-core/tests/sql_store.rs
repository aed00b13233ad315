//! The SQL store against real databases: PostgreSQL and MariaDB servers
//! (`RATELIMIT_TEST_POSTGRES_URL`, `RATELIMIT_TEST_MYSQL_URL`) and SQLite
//! files. Every test works in tables of its own prefix and drops them.

#![cfg(all(feature = "postgres", feature = "mysql", feature = "sqlite"))]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratelimit_core::conformance::{self, ConformanceOptions};
use ratelimit_core::sql::{SqlSettings, SqlStore};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Store, StoreError, store_key};
use support::hammer::hammer;
use support::proxy::{Mode, Proxy};
use support::redis_servers::services_required;

fn postgres_url() -> String {
    std::env::var("RATELIMIT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("RATELIMIT_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A table prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}_{n}_{test}_", std::process::id())
}

/// A test database: its URL, its prefix, and the tables dropped on drop
/// (also when the test fails).
struct TestDb {
    url: String,
    prefix: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` when the server is down and the test may be skipped.
    async fn new(engine: &str, test: &str) -> Option<Self> {
        let prefix = unique_prefix(test);
        let (url, dir) = match engine {
            "postgres" => (postgres_url(), None),
            "mysql" => (mysql_url(), None),
            _ => {
                let dir = tempfile::tempdir().unwrap();
                (format!("sqlite://{}", dir.path().join("limits.db").display()), Some(dir))
            }
        };
        let db = Self { url, prefix, _dir: dir };
        match SqlStore::connect(db.settings()).await {
            Ok(_) => Some(db),
            Err(error) => {
                assert!(!services_required(), "{engine} is required (RATELIMIT_REQUIRE_SERVICES=1): {error}");
                eprintln!("skipped: {engine} is not reachable: {error}");
                None
            }
        }
    }

    /// Settings with the automatic cleanup off: tests with explicit times
    /// write rows whose expiry lies in the past of the database's clock.
    fn settings(&self) -> SqlSettings {
        SqlSettings {
            table_prefix: self.prefix.clone(),
            cleanup_threshold: 0,
            timeout: Duration::from_secs(5),
            ..SqlSettings::from_url(&self.url)
        }
    }

    async fn store(&self) -> SqlStore {
        SqlStore::connect(self.settings()).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.url.starts_with("sqlite") {
            return;
        }
        let settings = SqlSettings { migrate: false, ..self.settings() };
        // Async work from a destructor: a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let Ok(store) = SqlStore::connect(settings).await else { return };
                let _ = store.drop_tables().await;
            });
        })
        .join();
    }
}

const ENGINES: [&str; 3] = ["postgres", "mysql", "sqlite"];

fn limit(rate: &str, algorithm: Algorithm) -> Limit {
    Limit::new(rate.parse::<Rate>().unwrap(), algorithm)
}

async fn allowed(store: &SqlStore, key: &str, limit: &Limit, cost: u64) -> Result<bool, StoreError> {
    let checks = [LimitCheck { key, limit }];
    store.check(CheckRequest::new(&checks, cost)).await.map(|d| d.all_allowed())
}

async fn count(store: &SqlStore, prefix: &str, table: &str, condition: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {prefix}{table} WHERE {condition}");
    if let Some(pool) = store.pg_pool() {
        return sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap();
    }
    if let Some(pool) = store.mysql_pool() {
        return sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap();
    }
    sqlx::query_scalar(&sql).fetch_one(store.sqlite_pool().unwrap()).await.unwrap()
}

async fn conformance(engine: &str) {
    let Some(db) = TestDb::new(engine, "conf").await else { return };
    let store = db.store().await;
    conformance::run_all(&store, &ConformanceOptions::default()).await;
}

#[tokio::test]
async fn conformance_on_postgres() {
    conformance("postgres").await;
}

#[tokio::test]
async fn conformance_on_mysql() {
    conformance("mysql").await;
}

#[tokio::test]
async fn conformance_on_sqlite() {
    conformance("sqlite").await;
}

/// Two pools (two app servers) with 32 tasks each, four checks per task,
/// on one key with limit 100: exactly 100 pass, on every engine and for
/// every algorithm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_app_servers_admit_exactly_the_limit() {
    for engine in ENGINES {
        let Some(db) = TestDb::new(engine, "race").await else { continue };
        let stores = [db.store().await, db.store().await];
        for algorithm in Algorithm::ALL {
            assert_eq!(hammer(&stores, 32, algorithm).await, 100, "{engine} {algorithm}");
        }
        let log_rows = count(&stores[0], &db.prefix, "entries", "1 = 1").await;
        assert!(log_rows <= 100, "{engine}: the sliding log keeps at most `limit` rows, found {log_rows}");
    }
}

/// Runs `work` on a copy of `store` in a loop until the returned guard
/// is dropped.
fn in_a_loop<F, Fut>(store: &SqlStore, work: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(SqlStore) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let store = store.clone();
    tokio::spawn(async move {
        loop {
            work(store.clone()).await;
            tokio::task::yield_now().await;
        }
    })
}

/// Cleanup deleting rows in a loop beside the exactness hammer: still
/// exactly the limit. Resets of the hammered key in a loop: every decision
/// is still made on the database's time (a decision made on time 0 would
/// report waits of decades), and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_and_reset_racing_decisions_never_break_them() {
    for engine in ENGINES {
        let Some(db) = TestDb::new(engine, "racing").await else { continue };
        let stores = [db.store().await, db.store().await];
        let cleaner = in_a_loop(&stores[0], |store| async move {
            store.cleanup().await.unwrap();
        });
        for algorithm in Algorithm::ALL {
            assert_eq!(hammer(&stores, 32, algorithm).await, 100, "{engine} {algorithm} beside cleanup");
        }
        for algorithm in Algorithm::ALL {
            let limit = limit("100/h", algorithm);
            let key = store_key::compose("t:", "reset-race", algorithm, "c");
            let resetter = {
                let key = key.clone();
                in_a_loop(&stores[1], move |store| {
                    let key = key.clone();
                    async move {
                        store.reset(LimitCheck { key: &key, limit: &limit }).await.unwrap();
                    }
                })
            };
            let mut tasks = Vec::new();
            for task in 0..16 {
                let (store, key, limit) = (stores[task % 2].clone(), key.clone(), limit);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..10 {
                        let checks = [LimitCheck { key: &key, limit: &limit }];
                        let decisions = store.check(CheckRequest::new(&checks, 1)).await.unwrap();
                        let decision = &decisions.as_slice()[0];
                        // The sliding counter's weighted window reaches
                        // back one period further than the others.
                        let bound = Duration::from_secs(2 * 3600);
                        assert!(decision.reset_after <= bound, "{decision:?}");
                        assert!(decision.retry_after.is_none_or(|wait| wait <= bound), "{decision:?}");
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap_or_else(|e| panic!("{engine} {algorithm} beside resets: {e}"));
            }
            resetter.abort();
        }
        cleaner.abort();
    }
}

/// A migration lock held by another process longer than `connect_timeout`
/// fails the connection in time, with an error that names the lock.
#[tokio::test]
async fn a_migration_lock_held_elsewhere_is_an_error_naming_it() {
    for engine in ["postgres", "mysql"] {
        let Some(db) = TestDb::new(engine, "lock").await else { continue };
        let holder = db.store().await;
        let lock = format!("{}schema", db.prefix);
        // A connection of its own holds the lock until it is dropped.
        let _held: Box<dyn std::any::Any> = if let Some(pool) = holder.pg_pool() {
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))").bind(&lock).execute(&mut *conn).await.unwrap();
            Box::new(conn)
        } else {
            let mut conn = holder.mysql_pool().unwrap().acquire().await.unwrap();
            sqlx::query("SELECT GET_LOCK(?, 1)").bind(&lock).execute(&mut *conn).await.unwrap();
            Box::new(conn)
        };
        let settings = SqlSettings { connect_timeout: Duration::from_secs(1), ..db.settings() };
        let started = Instant::now();
        let error = SqlStore::connect(settings).await.unwrap_err().to_string();
        let took = started.elapsed();
        assert!(error.contains(&lock) && error.contains("connect_timeout"), "{engine}: {error}");
        assert!(took < Duration::from_secs(10), "{engine}: bounded by connect_timeout, took {took:?}");
    }
}

#[tokio::test]
async fn migrations_run_twice_are_a_no_op() {
    for engine in ENGINES {
        let Some(db) = TestDb::new(engine, "mig").await else { continue };
        let store = db.store().await;
        let applied = count(&store, &db.prefix, "schema_migrations", "1 = 1").await;
        assert!(applied >= 1, "{engine}");
        let limit = limit("5/m", Algorithm::FixedWindow);
        assert!(allowed(&store, "t:mig:{a}", &limit, 2).await.unwrap());
        store.migrate().await.unwrap();
        let again = db.store().await;
        again.migrate().await.unwrap();
        assert_eq!(count(&store, &db.prefix, "schema_migrations", "1 = 1").await, applied, "{engine}");
        // The state survived: 2 of 5 used.
        let checks = [LimitCheck { key: "t:mig:{a}", limit: &limit }];
        assert_eq!(again.peek(CheckRequest::new(&checks, 0)).await.unwrap()[0].remaining, 3, "{engine}");
    }
}

#[tokio::test]
async fn cleanup_removes_expired_rows_and_only_those() {
    for engine in ENGINES {
        let Some(db) = TestDb::new(engine, "clean").await else { continue };
        let store = db.store().await;
        let long_ago = 1_600_000_000_000_000_000;
        for algorithm in Algorithm::ALL {
            let limit = limit("5/m", algorithm);
            for n in 0..3 {
                let old = store_key::compose("t:", "old", algorithm, &n.to_string());
                let checks = [LimitCheck { key: &old, limit: &limit }];
                assert!(store.check(CheckRequest::new(&checks, 1).at(long_ago)).await.unwrap().all_allowed());
                let live = store_key::compose("t:", "live", algorithm, &n.to_string());
                assert!(allowed(&store, &live, &limit, 1).await.unwrap());
            }
        }
        let before = count(&store, &db.prefix, "counters", "1 = 1").await;
        assert_eq!(before, 24, "{engine}");
        let deleted = store.cleanup().await.unwrap();
        // 12 old counter rows and the 3 old sliding-log entries.
        assert_eq!(deleted, 15, "{engine}");
        assert_eq!(count(&store, &db.prefix, "counters", "bucket_key LIKE 't:live:%'").await, 12, "{engine}");
        assert_eq!(count(&store, &db.prefix, "counters", "bucket_key LIKE 't:old:%'").await, 0, "{engine}");
        assert_eq!(count(&store, &db.prefix, "entries", "1 = 1").await, 3, "{engine}");
        // The live state is intact: one of five used.
        for algorithm in Algorithm::ALL {
            let limit = limit("5/m", algorithm);
            let live = store_key::compose("t:", "live", algorithm, "0");
            let checks = [LimitCheck { key: &live, limit: &limit }];
            assert_eq!(
                store.peek(CheckRequest::new(&checks, 0)).await.unwrap()[0].remaining,
                4,
                "{engine} {algorithm}"
            );
        }
    }
}

#[tokio::test]
async fn automatic_cleanup_runs_in_the_background_after_the_threshold() {
    let Some(db) = TestDb::new("sqlite", "auto").await else { return };
    let store = SqlStore::connect(SqlSettings { cleanup_threshold: 10, ..db.settings() }).await.unwrap();
    let limit = limit("5/m", Algorithm::FixedWindow);
    // Rows that expired long ago, written with explicit times...
    for n in 0..9 {
        let old = format!("t:old:{{{n}}}");
        let checks = [LimitCheck { key: &old, limit: &limit }];
        store.check(CheckRequest::new(&checks, 1).at(1_600_000_000_000_000_000)).await.unwrap();
    }
    assert_eq!(count(&store, &db.prefix, "counters", "1 = 1").await, 9);
    // ...and the tenth write crosses the threshold.
    assert!(allowed(&store, "t:live:{x}", &limit, 1).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&store, &db.prefix, "counters", "1 = 1").await > 1 {
        assert!(Instant::now() < deadline, "cleanup did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&store, &db.prefix, "counters", "bucket_key = 't:live:{x}'").await, 1);
}

#[tokio::test]
async fn hostile_and_huge_keys_are_stored_safely() {
    for engine in ENGINES {
        let Some(db) = TestDb::new(engine, "keys").await else { continue };
        let store = db.store().await;
        let limit = limit("2/m", Algorithm::SlidingLog);
        let huge = "k".repeat(1 << 20);
        let keys = [huge.as_str(), "quote'\"; DROP TABLE x; --", "é\u{0}\n{}", "User", "user"];
        for key in keys {
            assert!(allowed(&store, key, &limit, 2).await.unwrap(), "{engine} {key:.20}");
            assert!(!allowed(&store, key, &limit, 1).await.unwrap(), "{engine} {key:.20}");
        }
    }
}

/// A database that goes away gives errors within the timeout, and the
/// store serves again once it is back, without reconnecting by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_errors_not_hangs_and_the_store_recovers() {
    for (engine, port) in [("postgres", 5432), ("mysql", 3306)] {
        let Some(db) = TestDb::new(engine, "outage").await else { continue };
        let proxy = Proxy::start(port).await;
        let url = db.url.replacen(&format!(":{port}/"), &format!(":{}/", proxy.port), 1);
        let settings = SqlSettings {
            url: url.into(),
            timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(300),
            ..db.settings()
        };
        let store = SqlStore::connect(settings).await.unwrap();
        let limit = limit("1000/m", Algorithm::TokenBucket);
        assert!(allowed(&store, "t:out:{c}", &limit, 1).await.unwrap());
        for mode in [Mode::BlackHole, Mode::Cut] {
            proxy.set(mode);
            for _ in 0..3 {
                let started = Instant::now();
                let result = allowed(&store, "t:out:{c}", &limit, 1).await;
                let took = started.elapsed();
                assert!(result.is_err(), "{engine} {mode:?}: the database is unreachable");
                assert!(took < Duration::from_millis(300 + 200), "{engine} {mode:?}: took {took:?}");
            }
            proxy.set(Mode::Forward);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match allowed(&store, "t:out:{c}", &limit, 1).await {
                    Ok(admitted) => {
                        assert!(admitted);
                        break;
                    }
                    Err(error) => assert!(Instant::now() < deadline, "{engine} {mode:?}: no recovery: {error}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn connection_errors_say_what_is_wrong() {
    let Some(_pg) = TestDb::new("postgres", "err").await else { return };
    let Some(_my) = TestDb::new("mysql", "err").await else { return };
    let cases = [
        ("postgres://postgres@127.0.0.1:5432/no_such_db_rl", "the database does not exist"),
        ("postgres://no_such_role_rl@127.0.0.1:5432/test", "the credentials were refused"),
        ("mysql://root@127.0.0.1:3306/no_such_db_rl", "the database does not exist"),
        ("mysql://root:wrong@127.0.0.1:3306/test", "the credentials were refused"),
        ("postgres://postgres@127.0.0.1:1/test", "the server cannot be reached"),
        ("oracle://x", "unsupported scheme"),
    ];
    for (url, expected) in cases {
        let settings = SqlSettings { connect_timeout: Duration::from_secs(2), ..SqlSettings::from_url(url) };
        let error = SqlStore::connect(settings).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{url}: {error}");
        assert!(!error.contains("wrong"), "the password leaked: {error}");
    }
}

#[tokio::test]
async fn sqlite_in_memory_works_and_health_reports_the_pool() {
    let store =
        SqlStore::connect(SqlSettings { table_prefix: "m_".into(), ..SqlSettings::from_url("sqlite::memory:") })
            .await
            .unwrap();
    let limit = limit("1/m", Algorithm::FixedWindow);
    assert!(allowed(&store, "t:{a}", &limit, 1).await.unwrap());
    assert!(!allowed(&store, "t:{a}", &limit, 1).await.unwrap());
    let health = store.health().await.unwrap();
    assert_eq!(health.store, "sqlite");
    assert!(health.details.iter().any(|(k, v)| k == "pool_size" && v == "1"), "{:?}", health.details);
}
