//! Fault tests of the resilience layer against real servers: a Redis
//! killed or black-holed under steady load, behind a multi-store of Redis
//! then PostgreSQL, each behind a circuit breaker.

#![cfg(all(feature = "redis", feature = "postgres"))]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratelimit_core::redis::{RedisSettings, RedisStore};
use ratelimit_core::sql::{Durability, SqlSettings, SqlStore};
use ratelimit_core::store::multi::{MultiStore, MultiStoreConfig, Strategy};
use ratelimit_core::{
    Algorithm, BreakerConfig, BreakerState, CheckRequest, CircuitBreaker, Limit, LimitCheck, Rate, SharedStore, Store,
};
use support::proxy::{Mode, Proxy};
use support::redis_servers::{Server, redis_available, services_required};

const SOCKET_TIMEOUT: Duration = Duration::from_millis(100);
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

struct Chain {
    store: MultiStore,
    redis: CircuitBreaker<RedisStore>,
    postgres: SqlStore,
}

async fn chain(redis_url: &str, test: &str) -> Option<Chain> {
    let url = std::env::var("RATELIMIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let settings = SqlSettings {
        table_prefix: format!("f{}_{test}_", std::process::id()),
        durability: Durability::Fast,
        cleanup_threshold: 0,
        ..SqlSettings::from_url(url)
    };
    let postgres = match SqlStore::connect(settings).await {
        Ok(store) => store,
        Err(error) => {
            assert!(!services_required(), "PostgreSQL is required: {error}");
            eprintln!("skipped: PostgreSQL is not reachable: {error}");
            return None;
        }
    };
    let redis =
        RedisStore::connect(RedisSettings { socket_timeout: SOCKET_TIMEOUT, ..RedisSettings::from_url(redis_url) })
            .await
            .unwrap();
    let breaker =
        BreakerConfig { failure_threshold: 5, recovery_timeout: Duration::from_millis(500), ..Default::default() };
    let redis = CircuitBreaker::new(redis, "redis", breaker.clone()).unwrap();
    let guarded_postgres = CircuitBreaker::new(postgres.clone(), "postgres", breaker).unwrap();
    let config = MultiStoreConfig {
        multi_backend_strategy: Strategy::FirstHealthy,
        health_check_interval: HEALTH_INTERVAL,
        health_check_timeout: Duration::from_millis(500),
    };
    let members = [
        ("redis".to_owned(), SharedStore::new(redis.clone())),
        ("postgres".to_owned(), SharedStore::new(guarded_postgres)),
    ];
    let store = MultiStore::new(members, config).unwrap();
    Some(Chain { store, redis, postgres })
}

impl Chain {
    async fn drop_tables(&self) {
        self.postgres.drop_tables().await.unwrap();
    }
}

/// One finished request: when it started (since the load began), how long
/// it took, and whether it failed.
type Sample = (Duration, Duration, bool);

/// Load running in the background.
struct Load {
    began: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Waits for the tasks (after `stop` was set) and hands over the samples.
    async fn finish(self) -> Vec<Sample> {
        for task in self.tasks {
            task.await.unwrap();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// 16 tasks checking distinct keys in a loop until `stop`.
fn steady_load(store: MultiStore, stop: Arc<AtomicBool>) -> Load {
    let began = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let limit = Limit::new(Rate::new(1_000_000, Duration::from_secs(60)).unwrap(), Algorithm::FixedWindow);
    let tasks = (0..16)
        .map(|_| {
            let (store, stop, samples, counter) = (store.clone(), stop.clone(), samples.clone(), counter.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("f:load:{{{}}}", counter.fetch_add(1, Ordering::Relaxed) % 1000);
                    let checks = [LimitCheck { key: &key, limit: &limit }];
                    let started = Instant::now();
                    let result = store.check(CheckRequest::new(&checks, 1)).await;
                    samples.lock().unwrap().push((started - began, started.elapsed(), result.is_err()));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    Load { began, samples, tasks }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_over_to_postgres_and_comes_back() {
    if !redis_available() {
        return;
    }
    let mut server = Server::start(&[]);
    let Some(chain) = chain(&server.url(), "kill").await else { return };
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(chain.store.clone(), stop.clone());
    let began = load.began;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.cli(&["dbsize"]).trim().parse::<u64>().unwrap() > 0, "Redis serves first");
    let killed_at = began.elapsed();
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let open = chain.redis.status();
    assert_eq!(open.state, BreakerState::Open, "the breaker opens after the threshold: {open:?}");
    assert!(open.consecutive_failures >= 5, "{open:?}");

    let restarted = Instant::now();
    let restarted_at = began.elapsed();
    server.restart();
    // The restarted server is empty: a key there means traffic is back.
    let back_after = loop {
        if server.cli(&["dbsize"]).trim().parse::<u64>().unwrap_or(0) > 0 {
            break restarted.elapsed();
        }
        assert!(restarted.elapsed() < Duration::from_secs(5), "traffic did not return to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let samples = load.finish().await;
    let failed = samples.iter().filter(|s| s.2).count();
    assert_eq!(failed, 0, "no request fails while PostgreSQL is healthy ({} requests)", samples.len());
    // Once the breaker has opened (well before 1 s after the kill), no
    // request waits on Redis: every one is answered within the socket
    // timeout (PostgreSQL's own time included).
    let slowest = samples
        .iter()
        .filter(|s| s.0 > killed_at + Duration::from_secs(1) && s.0 < restarted_at)
        .map(|s| s.1)
        .max()
        .unwrap();
    assert!(slowest < SOCKET_TIMEOUT, "a request took {slowest:?} while the breaker was open");
    assert!(back_after < HEALTH_INTERVAL + Duration::from_millis(500), "traffic came back after {back_after:?}");
    eprintln!(
        "{} requests, 0 failed; slowest while open {slowest:?}; back on Redis {back_after:?} after its restart",
        samples.len()
    );
    chain.drop_tables().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_redis_never_holds_a_request_past_its_socket_timeout() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let proxy = Proxy::start(server.port).await;
    let Some(chain) = chain(&format!("redis://127.0.0.1:{}", proxy.port), "hole").await else { return };
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(chain.store.clone(), stop.clone());
    let began = load.began;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holed_at = began.elapsed();
    proxy.set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = load.finish().await;
    assert_eq!(samples.iter().filter(|s| s.2).count(), 0, "every request is answered by PostgreSQL");
    let after: Vec<&Sample> = samples.iter().filter(|s| s.0 >= holed_at).collect();
    assert!(after.len() > 100, "{} requests after the black hole", after.len());
    let slowest = after.iter().map(|s| s.1).max().unwrap();
    assert!(slowest < SOCKET_TIMEOUT + Duration::from_millis(150), "a request waited {slowest:?}");
    eprintln!("{} requests after the black hole, none failed, slowest {slowest:?}", after.len());
    chain.drop_tables().await;
}
