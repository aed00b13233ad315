//! Decisions per second through the SQL store against a raw single-row
//! upsert through the same pool, measured back to back in one run.
//!
//! ```text
//! cargo bench -p ratelimit-core --features postgres,mysql,sqlite --bench sql_store
//! ```
//!
//! `RATELIMIT_BENCH_ENGINES=postgres,mysql` limits the run to those engines.
//! Each case runs for `RATELIMIT_BENCH_SECS` seconds (default 2) after a
//! short warm-up, with 1 and 16 concurrent tasks, on one hot key and on
//! 10,000 keys. Databases: `RATELIMIT_TEST_POSTGRES_URL`,
//! `RATELIMIT_TEST_MYSQL_URL` (defaults as in the tests), SQLite in a
//! temporary file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratelimit_core::sql::{Durability, SqlSettings, SqlStore};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Store, store_key};

const PREFIX: &str = "bench_";

#[derive(Clone, Copy)]
enum Work {
    Raw,
    Decide(Algorithm),
}

async fn raw_upsert(store: &SqlStore, key: &str) {
    if let Some(pool) = store.pg_pool() {
        sqlx::query("INSERT INTO bench_raw (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = bench_raw.n + 1")
            .bind(key)
            .execute(pool)
            .await
            .unwrap();
    } else if let Some(pool) = store.mysql_pool() {
        sqlx::query("INSERT INTO bench_raw (k, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1")
            .bind(key)
            .execute(pool)
            .await
            .unwrap();
    } else if let Some(pool) = store.sqlite_pool() {
        sqlx::query("INSERT INTO bench_raw (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1")
            .bind(key)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn execute(store: &SqlStore, sql: &str) {
    if let Some(pool) = store.pg_pool() {
        sqlx::query(sql).execute(pool).await.unwrap();
    } else if let Some(pool) = store.mysql_pool() {
        sqlx::query(sql).execute(pool).await.unwrap();
    } else if let Some(pool) = store.sqlite_pool() {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

/// Fresh tables for the store and the raw baseline.
async fn recreate_tables(store: &SqlStore) {
    for table in ["raw", "counters", "entries", "schema_migrations"] {
        execute(store, &format!("DROP TABLE IF EXISTS {PREFIX}{table}")).await;
    }
    execute(store, "CREATE TABLE bench_raw (k VARCHAR(255) PRIMARY KEY, n BIGINT NOT NULL)").await;
    store.migrate().await.unwrap();
}

/// Operations per second of `work` with `tasks` concurrent tasks.
async fn measure(store: &SqlStore, work: Work, tasks: usize, keys: usize, secs: f64) -> f64 {
    // A limit that never denies, so every decision writes.
    let limit = Arc::new(Limit::new(Rate::new(4_000_000_000, Duration::from_secs(1)).unwrap(), Algorithm::FixedWindow));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, stop, done, counting) = (store.clone(), stop.clone(), done.clone(), counting.clone());
        let limit = match work {
            Work::Decide(algorithm) => Limit::new(limit.rate(), algorithm),
            Work::Raw => *limit,
        };
        handles.push(tokio::spawn(async move {
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                let key = store_key::compose("b:", "p", limit.algorithm(), &(n % keys).to_string());
                n += tasks;
                match work {
                    Work::Raw => raw_upsert(&store, &key).await,
                    Work::Decide(_) => {
                        let checks = [LimitCheck { key: &key, limit: &limit }];
                        assert!(store.check(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed());
                    }
                }
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let ops = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    ops
}

async fn connect(url: &str, durability: Durability) -> SqlStore {
    let settings = SqlSettings {
        table_prefix: PREFIX.into(),
        max_connections: 16,
        durability,
        migrate: false,
        timeout: Duration::from_secs(10),
        ..SqlSettings::from_url(url)
    };
    SqlStore::connect(settings).await.unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let secs: f64 = std::env::var("RATELIMIT_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let postgres = std::env::var("RATELIMIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mysql = std::env::var("RATELIMIT_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let cases = [
        ("postgres", postgres.as_str(), Durability::Full),
        ("postgres", postgres.as_str(), Durability::Fast),
        ("mysql", mysql.as_str(), Durability::Full),
        ("sqlite", sqlite.as_str(), Durability::Full),
        ("sqlite", sqlite.as_str(), Durability::Fast),
    ];
    println!("| engine | durability | tasks | keys | raw upsert/s | fixed_window/s | ratio | token_bucket/s | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let only = std::env::var("RATELIMIT_BENCH_ENGINES").unwrap_or_default();
    for (engine, url, durability) in cases {
        if !only.is_empty() && !only.split(',').any(|e| e == engine) {
            continue;
        }
        let store = connect(url, durability).await;
        recreate_tables(&store).await;
        for tasks in [1, 16] {
            for keys in [1, 10_000] {
                let raw = measure(&store, Work::Raw, tasks, keys, secs).await;
                let fw = measure(&store, Work::Decide(Algorithm::FixedWindow), tasks, keys, secs).await;
                let tb = measure(&store, Work::Decide(Algorithm::TokenBucket), tasks, keys, secs).await;
                println!(
                    "| {engine} | {durability:?} | {tasks} | {keys} | {raw:.0} | {fw:.0} | {:.2} | {tb:.0} | {:.2} |",
                    fw / raw,
                    tb / raw
                );
            }
        }
        store.cleanup().await.unwrap();
    }
}
