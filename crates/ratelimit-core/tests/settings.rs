//! Settings files, environment overrides, errors, and stores built from them.

use std::time::Duration;

use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::store::multi::Strategy;
use ratelimit_core::{
    Algorithm, CheckRequest, FailurePolicy, Limit, LimitCheck, MemoryStore, SecretUrl, Settings, SharedStore, Store,
};

const FULL: &str = r#"
backend = "redis"
algorithm = "token_bucket"
key_prefix = "rl:"
failure_mode = "closed"
multi_backend_strategy = "round_robin"
health_check_interval = 10
health_check_timeout = 2

[memory]
max_keys = 500
cleanup_interval = 60

[redis]
host = "10.0.0.5"
port = 6380
socket_timeout = 0.2

[database]
url = "postgres://postgres@127.0.0.1:5432/test"
cleanup_threshold = 500

[[backends]]
name = "primary"
backend = "redis"
config = { host = "127.0.0.1", port = 6379 }

[[backends]]
name = "fallback"
backend = "memory"

[circuit_breaker]
failure_threshold = 3
recovery_timeout = 30

[middleware]
default_rate = "100/m"
key = "header:x-api-key"
block = false
skip_paths = ["/health"]

[middleware.rate_limits]
"/auth/login" = "5/m"
"/api/" = "1000/h"
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn every_section_is_read() {
    let s = Settings::from_toml(FULL, "limits.toml", no_env()).unwrap();
    assert_eq!(s.backend, "redis");
    assert_eq!(s.algorithm, Algorithm::TokenBucket);
    assert_eq!(s.failure_mode, FailurePolicy::Closed);
    assert_eq!(s.memory.max_keys, 500);
    assert_eq!(s.redis.port, 6380);
    assert_eq!(s.redis.socket_timeout, Duration::from_millis(200));
    assert_eq!(s.database.cleanup_threshold, 500);
    assert_eq!(s.backends.len(), 2);
    assert_eq!(s.multi_backend_strategy, Strategy::RoundRobin);
    assert_eq!(s.health_check_timeout, Duration::from_secs(2));
    assert_eq!(s.circuit_breaker.as_ref().unwrap().failure_threshold, 3);
    // `[middleware]` is the HTTP layer's to read; it is kept as written,
    // in the file's order (the layer's first matching prefix wins).
    assert_eq!(s.middleware["key"].as_str(), Some("header:x-api-key"));
    let prefixes: Vec<&str> = s.middleware["rate_limits"].as_table().unwrap().keys().map(String::as_str).collect();
    assert_eq!(prefixes, ["/auth/login", "/api/"]);
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let s = Settings::from_toml("", "empty.toml", no_env()).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.backend, "memory");
    assert_eq!(s.algorithm, Algorithm::SlidingLog);
    assert_eq!(s.key_prefix, "ratelimit:");
}

#[test]
fn environment_variables_override_the_file() {
    let env = vec![
        ("RATELIMIT_BACKEND".to_owned(), "database".to_owned()),
        ("RATELIMIT_DATABASE_URL".to_owned(), "sqlite::memory:".to_owned()),
        ("RATELIMIT_REDIS_URL".to_owned(), "redis://10.1.1.1:6379".to_owned()),
        ("RATELIMIT_KEY_PREFIX".to_owned(), "env:".to_owned()),
        ("RATELIMIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD".to_owned(), "9".to_owned()),
        ("RATELIMIT_REQUIRE_SERVICES".to_owned(), "1".to_owned()),
    ];
    let s = Settings::from_toml(FULL, "limits.toml", env).unwrap();
    assert_eq!(s.backend, "database");
    assert_eq!(s.database.url.expose(), "sqlite::memory:");
    assert_eq!(s.redis.url.as_ref().map(SecretUrl::expose), Some("redis://10.1.1.1:6379"));
    assert_eq!(s.key_prefix, "env:");
    assert_eq!(s.circuit_breaker.unwrap().failure_threshold, 9);
}

fn error_of(text: &str) -> String {
    Settings::from_toml(text, "limits.toml", no_env()).unwrap_err().to_string()
}

#[test]
fn mistakes_name_the_file_and_the_field() {
    let typo = error_of("bakend = \"redis\"");
    assert!(typo.starts_with("limits.toml: "), "{typo}");
    assert!(typo.contains("unknown field `bakend`") && typo.contains("did you mean `backend`?"), "{typo}");

    let nested = error_of("[redis]\nhots = \"x\"");
    assert!(nested.contains("redis") && nested.contains("did you mean `host`?"), "{nested}");

    let kind = error_of("[redis]\nport = \"six\"");
    assert!(kind.contains("redis.port"), "{kind}");

    let mode = error_of("failure_mode = \"opne\"");
    assert!(mode.contains("failure_mode") && mode.contains("did you mean `open`?"), "{mode}");

    let multi = error_of("backend = \"multi\"");
    assert!(multi.contains("backends"), "{multi}");

    let misplaced = error_of("[[backends]]\nname = \"a\"\nbackend = \"memory\"\nhealth_check_interval = 5");
    assert!(misplaced.contains("move top-level keys above the first section"), "{misplaced}");

    let syntax = error_of("backend = ");
    assert!(syntax.contains("not valid TOML"), "{syntax}");

    let missing = Settings::from_file("/nonexistent/limits.toml").unwrap_err().to_string();
    assert!(missing.starts_with("/nonexistent/limits.toml: cannot read"), "{missing}");
}

fn limit() -> Limit {
    Limit::new("2/m".parse().unwrap(), Algorithm::FixedWindow)
}

async fn admits(store: &SharedStore, key: &str) -> bool {
    let limit = limit();
    let checks = [LimitCheck { key, limit: &limit }];
    store.check(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed()
}

#[tokio::test]
async fn unknown_stores_are_errors_and_registered_ones_are_built() {
    let settings = Settings::from_toml("backend = \"acme.store\"", "limits.toml", no_env()).unwrap();
    let error = build_store(&settings, &StoreRegistry::new(), "limits.toml").await.unwrap_err().to_string();
    assert!(error.contains("backend") && error.contains("unknown store \"acme.store\""), "{error}");

    let mut registry = StoreRegistry::new();
    registry.register("acme.store", |_config| async { Ok(SharedStore::new(MemoryStore::new())) });
    let built = build_store(&settings, &registry, "limits.toml").await.unwrap();
    assert!(admits(&built.store, "k").await);
    assert!(admits(&built.store, "k").await);
    assert!(!admits(&built.store, "k").await);
}

#[tokio::test]
async fn a_multi_store_chain_is_built_with_breakers_and_configs() {
    let text = r#"
backend = "multi"
[[backends]]
name = "custom"
backend = "acme.store"
config = { capacity = 7 }
[[backends]]
name = "local"
backend = "memory"
config = { max_keys = 100 }
[circuit_breaker]
failure_threshold = 2
"#;
    let settings = Settings::from_toml(text, "multi.toml", no_env()).unwrap();
    let mut registry = StoreRegistry::new();
    registry.register("acme.store", |config: toml::Table| async move {
        assert_eq!(config["capacity"].as_integer(), Some(7));
        Ok(SharedStore::new(MemoryStore::new()))
    });
    let built = build_store(&settings, &registry, "multi.toml").await.unwrap();
    assert_eq!(built.members.len(), 2);
    assert_eq!(built.strategy, Some(Strategy::FirstHealthy));
    assert_eq!(built.members[1].kind, "memory");
    let health = built.members[0].store.health().await.unwrap();
    assert!(health.details.contains(&("circuit".to_owned(), "closed".to_owned())), "{health:?}");
    assert!(admits(&built.store, "k").await);

    let bad = "backend = \"multi\"\n[[backends]]\nname = \"m\"\nbackend = \"memory\"\nconfig = { max_kyes = 1 }";
    // Store settings are checked when the file is read, before anything is built.
    let error = Settings::from_toml(bad, "multi.toml", no_env()).unwrap_err().to_string();
    assert!(error.contains("backends[0].config") && error.contains("did you mean `max_keys`?"), "{error}");
}

/// The TOML blocks of the docs and the example settings file parse.
#[test]
fn documented_settings_parse() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let text = std::fs::read_to_string(format!("{root}/docs/migrating.md")).unwrap();
    let block = text.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let settings = Settings::from_toml(block, "docs/migrating.md", no_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.backends.len(), 2);
    Settings::from_file(format!("{root}/examples/limits.toml")).unwrap();
}

/// A store that cannot connect costs one connection attempt per backoff
/// step, not one per request: the first call waits for the attempt under
/// way, later ones fail at once until the next attempt, and the store is
/// used as soon as an attempt succeeds.
#[tokio::test]
async fn a_store_that_is_down_at_startup_is_retried_without_stalling_requests() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    let attempts = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(AtomicBool::new(false));
    let mut registry = StoreRegistry::new();
    let (a, u) = (attempts.clone(), up.clone());
    registry.register("slow.store", move |_config| {
        let (attempts, up) = (a.clone(), u.clone());
        async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            if up.load(Ordering::SeqCst) {
                Ok(SharedStore::new(MemoryStore::new()))
            } else {
                Err(ratelimit_core::StoreError::backend("slow", "connection refused"))
            }
        }
    });
    let settings = Settings::from_toml("backend = \"slow.store\"", "limits.toml", no_env()).unwrap();
    let built = build_store(&settings, &registry, "limits.toml").await.unwrap();
    let limit = limit();
    let checks = [LimitCheck { key: "k", limit: &limit }];
    assert!(built.store.check(CheckRequest::new(&checks, 1)).await.is_err());
    for _ in 0..50 {
        let started = Instant::now();
        let error = built.store.check(CheckRequest::new(&checks, 1)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(50), "failed fast: {error}");
        assert!(error.to_string().contains("connection refused"), "{error}");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(built.store.check(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed());
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

/// The single store's own `algorithm` is the default of limits that name
/// none; otherwise, and always for a multi-store, the top-level one.
#[test]
fn the_single_stores_algorithm_is_the_default() {
    let default_of = |text: &str, env: &[(&str, &str)]| {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::from_toml(text, "limits.toml", env).unwrap().default_algorithm()
    };
    let top = "algorithm = \"fixed_window\"\n";
    let redis = format!("{top}backend = \"redis\"\n[redis]\nalgorithm = \"token_bucket\"\n");
    assert_eq!(default_of(&redis, &[]), Algorithm::TokenBucket);
    assert_eq!(default_of(&format!("{top}backend = \"redis\""), &[]), Algorithm::FixedWindow);
    let database = format!("{top}backend = \"database\"\n[database]\nurl = \"sqlite::memory:\"\n");
    assert_eq!(default_of(&database, &[]), Algorithm::FixedWindow);
    let with_env = [("RATELIMIT_DATABASE_ALGORITHM", "sliding_window_counter")];
    assert_eq!(default_of(&database, &with_env), Algorithm::SlidingWindowCounter);
    // Another store's section does not apply.
    let memory = format!("{top}[redis]\nalgorithm = \"token_bucket\"\n");
    assert_eq!(default_of(&memory, &[]), Algorithm::FixedWindow);
    let multi = format!(
        "{top}backend = \"multi\"\n[redis]\nalgorithm = \"token_bucket\"\n\
         [[backends]]\nname = \"r\"\nbackend = \"redis\"\n"
    );
    assert_eq!(default_of(&multi, &[]), Algorithm::FixedWindow);
}

/// A multi-store's members decide the same limits in turn, so a member's
/// own `algorithm` is refused rather than ignored.
#[test]
fn a_multi_store_member_cannot_set_its_own_algorithm() {
    for (backend, config) in [
        ("redis", "{ algorithm = \"token_bucket\" }"),
        ("database", "{ url = \"sqlite::memory:\", algorithm = \"fixed_window\" }"),
    ] {
        let text =
            format!("backend = \"multi\"\n[[backends]]\nname = \"m\"\nbackend = \"{backend}\"\nconfig = {config}\n");
        let error = Settings::from_toml(&text, "multi.toml", no_env()).unwrap_err().to_string();
        assert!(error.contains("backends[0].config.algorithm") && error.contains("top-level"), "{error}");
    }
}
