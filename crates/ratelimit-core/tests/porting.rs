//! Settings ported from django-smart-ratelimit: every block of its backend
//! guide, as `docs/migrating.md` translates it, parses and means what the
//! guide says; and each mistake a port makes gets an error that names the
//! field (or the variable) and says what to write.

#![cfg(all(feature = "redis", feature = "sql"))]

mod support;

use std::time::Duration;

use ratelimit_core::redis::Deployment;
use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::store::multi::Strategy;
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Settings, Store};
use support::redis_servers::services_required;

/// The TOML block under `### {heading}` in docs/migrating.md.
fn block(heading: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/migrating.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split(&format!("\n### {heading}\n")).nth(1).unwrap_or_else(|| panic!("no block {heading:?}"));
    let section = section.split("\n### ").next().unwrap();
    section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap().to_owned()
}

fn read(heading: &str) -> Settings {
    Settings::from_toml(&block(heading), "docs/migrating.md", []).unwrap_or_else(|e| panic!("{heading}: {e}"))
}

/// One request under a 2/m limit, through the stores `settings` build.
async fn admits(settings: &Settings) -> bool {
    let built = build_store(settings, &StoreRegistry::new(), "docs/migrating.md").await.unwrap();
    let limit = Limit::new(Rate::per_minute(2).unwrap(), Algorithm::FixedWindow);
    let key = format!("porting:{}", std::process::id());
    let checks = [LimitCheck { key: &key, limit: &limit }];
    built.store.check(CheckRequest::new(&checks, 1)).await.map(|d| d.all_allowed()).unwrap_or(false)
}

#[tokio::test]
async fn redis_basic() {
    let settings = read("Redis, basic");
    assert_eq!(settings.backend, "redis");
    assert_eq!((settings.redis.host.as_str(), settings.redis.port, settings.redis.db), ("localhost", 6379, 0));
    assert!(settings.redis.password.is_none());
    // The guide's server is this machine's: the block works as written.
    let settings = Settings {
        redis: ratelimit_core::redis::RedisSettings {
            socket_connect_timeout: Duration::from_secs(5),
            socket_timeout: Duration::from_secs(5),
            ..settings.redis
        },
        ..settings
    };
    let admitted = admits(&settings).await;
    assert!(admitted || !services_required(), "the basic Redis block did not work against localhost:6379");
}

#[test]
fn redis_advanced() {
    let redis = read("Redis, advanced").redis;
    assert_eq!(redis.password.as_ref().map(|p| p.expose()), Some("your-redis-password"));
    assert_eq!(redis.socket_timeout, Duration::from_millis(100));
    assert_eq!(redis.socket_connect_timeout, Duration::from_millis(100));
    assert!(redis.socket_keepalive);
    assert_eq!(redis.max_connections, 50, "connection_pool_kwargs.max_connections");
    assert!(redis.retry_on_timeout, "connection_pool_kwargs.retry_on_timeout");
    assert_eq!(redis.key_prefix, "ratelimit:");
}

#[test]
fn redis_cluster() {
    let redis = read("Redis Cluster").redis;
    assert_eq!(redis.deployment(), Deployment::Cluster);
    assert_eq!(redis.startup_nodes.len(), 3);
    assert_eq!(redis.startup_nodes[2].host, "redis-node-3.example.com");
    assert_eq!(redis.password.as_ref().map(|p| p.expose()), Some("cluster-password"));
}

#[test]
fn redis_sentinel() {
    let redis = read("Redis Sentinel").redis;
    assert_eq!(redis.deployment(), Deployment::Sentinel);
    assert_eq!(redis.sentinels[0], ("sentinel-1.example.com".to_owned(), 26379));
    assert_eq!(redis.service_name.as_deref(), Some("mymaster"));
    assert_eq!(redis.password.as_ref().map(|p| p.expose()), Some("redis-password"));
    assert_eq!(redis.sentinel_password.as_ref().map(|p| p.expose()), Some("sentinel-password"));
}

#[test]
fn database_basic() {
    let settings = read("Database, basic");
    assert_eq!(settings.backend, "database");
    assert_eq!(settings.database.url.expose(), "postgres://app@db.example.com:5432/app");
}

#[test]
fn database_advanced() {
    assert_eq!(read("Database, advanced").database.cleanup_threshold, 1000);
}

#[tokio::test]
async fn memory_basic() {
    let settings = read("Memory, basic");
    assert_eq!(settings.backend, "memory");
    assert!(admits(&settings).await);
}

#[test]
fn memory_advanced() {
    let memory = read("Memory, advanced").memory;
    assert_eq!((memory.max_keys, memory.cleanup_interval), (10_000, 300));
}

#[test]
fn multi_backend_basic() {
    let settings = read("Multi-backend, basic");
    let names: Vec<(&str, &str)> = settings.backends.iter().map(|b| (b.name.as_str(), b.backend.as_str())).collect();
    assert_eq!(names, [("primary_redis", "redis"), ("fallback_redis", "redis"), ("emergency_database", "database")]);
}

#[test]
fn multi_backend_advanced() {
    let settings = read("Multi-backend, advanced");
    assert_eq!(settings.multi_backend_strategy, Strategy::FirstHealthy);
    assert_eq!(settings.health_check_interval, Duration::from_secs(30));
    assert_eq!(settings.health_check_timeout, Duration::from_secs(5));
    assert_eq!(settings.backends[1].config["password"].as_str(), Some("redis-password"));
    assert_eq!(settings.backends[2].config["cleanup_threshold"].as_integer(), Some(500));
}

#[tokio::test]
async fn round_robin() {
    let settings = read("Round robin");
    assert_eq!(settings.multi_backend_strategy, Strategy::RoundRobin);
    assert!(admits(&settings).await);
}

#[test]
fn algorithms() {
    assert_eq!(read("Fixed window").algorithm, Algorithm::FixedWindow);
    assert_eq!(read("Sliding window").algorithm, Algorithm::SlidingLog);
}

#[test]
fn a_default_algorithm_for_the_redis_store() {
    assert_eq!(read("A default algorithm for the Redis store").redis.algorithm, Some(Algorithm::SlidingLog));
}

#[test]
fn troubleshooting_redis_connections() {
    let redis = read("Troubleshooting Redis connections").redis;
    assert_eq!((redis.socket_timeout, redis.socket_connect_timeout), (Duration::from_secs(1), Duration::from_secs(1)));
    assert!(redis.retry_on_timeout);
}

/// A settings file, `RATELIMIT_*` variables, and the words the error must hold.
type Mistake = (&'static str, &'static [(&'static str, &'static str)], &'static [&'static str]);

/// Each mistake of a port, and the words its error must hold.
#[test]
fn mistakes_get_errors_that_say_what_to_write() {
    let cases: &[Mistake] = &[
        (
            "[redis]\nhost = \"localhost\"\npassword = None",
            &[],
            &["limits.toml", "line 3, column 12", "`password = ***`", "`None` is Python"],
        ),
        ("[redis]\nsocket_keepalive = True", &[], &["line 2", "`true`"]),
        ("[redis]\nconnection_pool_kwargs = {'max_connections': 50}", &[], &["line 2", "TOML inline tables use `=`"]),
        ("sentinels = [('h', 26379)]", &[], &["TOML has no tuples"]),
        (
            "backend = \"redis\"\n[redis]\nhost = \"redis://localhost:6379/1\"",
            &[],
            &["redis.host", "not a URL", "redis.url"],
        ),
        ("backend = \"redis\"\n[redis]\nhost = \"localhost:6379\"", &[], &["redis.host", "without a port"]),
        ("[redis]\ndecode_responses = true", &[], &["redis.decode_responses", "not needed"]),
        ("[redis]\nskip_full_coverage_check = true", &[], &["redis.skip_full_coverage_check", "not needed"]),
        (
            "[redis]\nsocket_keepalive_options = { TCP_KEEPIDLE = 60 }",
            &[],
            &["redis.socket_keepalive_options", "not supported"],
        ),
        (
            "[redis]\nmax_connections = 10\nconnection_pool_kwargs = { max_connections = 50 }",
            &[],
            &["redis.connection_pool_kwargs.max_connections", "disagrees with redis.max_connections"],
        ),
        (
            "[redis]\nsentinel_kwargs = { socket_timeout = 1 }",
            &[],
            &["redis.sentinel_kwargs.socket_timeout", "password"],
        ),
        ("RATELIMIT_BACKEND = \"redis\"", &[], &["RATELIMIT_BACKEND", "did you mean `backend`?"]),
        ("[RATELIMIT_REDIS]\nhost = \"h\"", &[], &["RATELIMIT_REDIS", "did you mean `[redis]`?"]),
        ("database_cleanup_threshold = 1000", &[], &["did you mean `cleanup_threshold` in `[database]`?"]),
        (
            "backend = \"django_smart_ratelimit.backends.redis_backend.RedisBackend\"",
            &[],
            &["backend", "class path", "did you mean `redis`?"],
        ),
        (
            "",
            &[("RATELIMIT_DATABASE_CLEANUP_THRESHOLD", "abc")],
            &["environment variable RATELIMIT_DATABASE_CLEANUP_THRESHOLD", "database.cleanup_threshold"],
        ),
        ("", &[("RATELIMIT_HEALTH_CHECK_INTERVAL", "30000")], &["RATELIMIT_HEALTH_CHECK_INTERVAL", "seconds"]),
        (
            "health_check_interval = 30000",
            &[],
            &["limits.toml", "health_check_interval", "30000 seconds", "not milliseconds"],
        ),
        ("[memory]\ncleanup_interval = 300000", &[], &["memory.cleanup_interval", "300000 seconds"]),
        ("[circuit_breaker]\nrecovery_timeout = 60000", &[], &["circuit_breaker.recovery_timeout", "60000 seconds"]),
        (
            "[circuit_breaker]\nrecovery_timeout = 900",
            &[],
            &["circuit_breaker.recovery_timeout", "max_recovery_timeout (600 seconds)"],
        ),
        ("backend = \"redis\"\n[redis]\nsocket_timeout = 100", &[], &["redis.socket_timeout", "100 seconds"]),
        (
            "backend = \"database\"\n[database]\nurl = \"sqlite::memory:\"\ntimeout = 500",
            &[],
            &["database.timeout", "500 seconds"],
        ),
    ];
    for (text, env, expected) in cases {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let error = match Settings::from_toml(text, "limits.toml", env) {
            Ok(_) => panic!("accepted: {text}"),
            Err(error) => error.to_string(),
        };
        for words in *expected {
            assert!(error.contains(words), "{text:?}: {error:?} lacks {words:?}");
        }
    }
}

/// django-smart-ratelimit keeps its Redis prefix in `RATELIMIT_REDIS`; here
/// `[redis] key_prefix` is then the one prefix of every key, never stacked
/// on the top-level one or added twice by the store.
#[tokio::test]
async fn a_redis_key_prefix_is_the_one_prefix() {
    let text = "backend = \"redis\"\nkey_prefix = \"app:\"\n[redis]\nkey_prefix = \"pfx:\"\n\
                socket_timeout = 5\nsocket_connect_timeout = 5";
    let settings = Settings::from_toml(text, "limits.toml", []).unwrap();
    assert_eq!(settings.default_key_prefix(), "pfx:");
    let built = build_store(&settings, &StoreRegistry::new(), "limits.toml").await.unwrap();
    let limit = Limit::new(Rate::per_minute(2).unwrap(), Algorithm::FixedWindow);
    let key = format!("{}stack:{{{}}}", settings.default_key_prefix(), std::process::id());
    let checks = [LimitCheck { key: &key, limit: &limit }];
    if let Err(error) = built.store.check(CheckRequest::new(&checks, 1)).await {
        assert!(!services_required(), "Redis on localhost:6379: {error}");
        return;
    }
    let client = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let written: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut connection).await.unwrap();
    let stacked: i64 = redis::cmd("EXISTS").arg(format!("pfx:{key}")).query_async(&mut connection).await.unwrap();
    let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut connection).await.unwrap();
    assert_eq!((written, stacked), (1, 0));
}
