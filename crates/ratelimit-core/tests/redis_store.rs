//! The Redis store against real redis-server processes.

#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use ratelimit_core::redis::{RedisSettings, RedisStore};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Store, StoreError, store_key};
use support::hammer::hammer;
use support::proxy::{Mode, Proxy};
use support::redis_servers::{Server, redis_available};

fn limit(rate: &str, algorithm: Algorithm) -> Limit {
    Limit::new(rate.parse::<Rate>().unwrap(), algorithm)
}

/// Timeouts far above any decision's time on a busy machine, for the
/// tests that are not about timeouts.
fn patient(settings: RedisSettings) -> RedisSettings {
    RedisSettings { socket_timeout: Duration::from_secs(5), socket_connect_timeout: Duration::from_secs(5), ..settings }
}

async fn connect(url: &str) -> RedisStore {
    RedisStore::connect(patient(RedisSettings::from_url(url))).await.unwrap()
}

async fn allowed(store: &RedisStore, key: &str, limit: &Limit, cost: u64) -> Result<bool, StoreError> {
    let checks = [LimitCheck { key, limit }];
    store.check(CheckRequest::new(&checks, cost)).await.map(|d| d.all_allowed())
}

/// Two stores (two app servers) with 64 tasks each on one key: exactly the limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_app_servers_admit_exactly_the_limit() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let stores = [connect(&server.url()).await, connect(&server.url()).await];
    for algorithm in Algorithm::ALL {
        assert_eq!(hammer(&stores, 64, algorithm).await, 100, "{algorithm}");
    }
}

#[tokio::test]
async fn every_written_key_expires_and_hostile_identities_are_safe() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let store = connect(&server.url()).await;
    let huge = "x".repeat(1 << 20);
    let identities = ["plain", "{braces}", "new\nline", "sp ace", huge.as_str(), "\u{0}nul"];
    for algorithm in Algorithm::ALL {
        let limit = limit("3/m", algorithm);
        for identity in identities {
            let key = store_key::compose("t:", "ttl", algorithm, identity);
            assert!(key.len() < 100);
            assert!(allowed(&store, &key, &limit, 1).await.unwrap());
            let pttl: i64 = server.cli(&["PTTL", &key]).trim().parse().unwrap();
            assert!(pttl > 0 && pttl <= 60_000 * 2, "{algorithm} {key}: PTTL {pttl}");
        }
    }
    // Each identity has its own state: six identities, four algorithms.
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "24");
}

#[tokio::test]
async fn one_script_call_per_decision() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let store = connect(&server.url()).await;
    // Load the script once, then count only the decisions.
    let warm = limit("10/s", Algorithm::FixedWindow);
    allowed(&store, "t:warm:{x}", &warm, 1).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    let limits = [limit("10/s", Algorithm::TokenBucket), limit("100/h", Algorithm::SlidingLog)];
    let keys = [
        store_key::compose("t:", "a", Algorithm::TokenBucket, "c"),
        store_key::compose("t:", "b", Algorithm::SlidingLog, "c"),
    ];
    let checks = [LimitCheck { key: &keys[0], limit: &limits[0] }, LimitCheck { key: &keys[1], limit: &limits[1] }];
    for _ in 0..25 {
        store.check(CheckRequest::new(&checks, 1)).await.unwrap();
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(calls("evalsha"), 25, "{stats}");
    assert_eq!(calls("eval"), 0, "{stats}");
}

/// The sliding log writes one member per admitted request, whatever its
/// cost: a request of the whole capacity is one `ZADD` of one member, not
/// ten thousand.
#[tokio::test]
async fn a_sliding_log_stores_one_member_per_request() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let store = connect(&server.url()).await;
    let max = ratelimit_core::MAX_SLIDING_LOG_LIMIT;
    let log = Limit::new(Rate::per_hour(max).unwrap(), Algorithm::SlidingLog);
    let key = store_key::compose("t:", "big", Algorithm::SlidingLog, "c");
    assert!(allowed(&store, &key, &log, max - 1).await.unwrap());
    assert!(allowed(&store, &key, &log, 1).await.unwrap());
    assert!(!allowed(&store, &key, &log, 1).await.unwrap());
    assert_eq!(server.cli(&["ZCARD", &key]).trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_and_restart_do_not_stop_decisions() {
    if !redis_available() {
        return;
    }
    let mut server = Server::start(&[]);
    let store = connect(&server.url()).await;
    let limit = limit("1000000/h", Algorithm::TokenBucket);
    for i in 0..20 {
        if i == 10 {
            server.cli(&["SCRIPT", "FLUSH"]);
        }
        assert!(allowed(&store, "t:flush:{c}", &limit, 1).await.unwrap(), "call {i}");
    }
    server.restart();
    // Reconnection happens in the background: the first calls may fail, but
    // within a second every call must succeed again, with no app restart.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut recovered_at = None;
    while Instant::now() < deadline {
        if allowed(&store, "t:flush:{c}", &limit, 1).await.is_ok() {
            recovered_at.get_or_insert(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered_at.is_some(), "the store did not recover after the restart");
    for i in 0..50 {
        assert!(allowed(&store, "t:flush:{c}", &limit, 1).await.unwrap(), "call {i} after recovery");
    }
}

/// Settings for the server behind `proxy`, with a short socket timeout:
/// for the tests about a server that does not answer in time.
fn through(proxy: &Proxy) -> RedisSettings {
    RedisSettings {
        socket_timeout: Duration::from_millis(100),
        ..RedisSettings::from_url(format!("redis://127.0.0.1:{}", proxy.port))
    }
}

/// The script is loaded when the store connects: the first decisions of a
/// cold store run it by its hash, never sending the whole script.
#[tokio::test]
async fn the_script_is_loaded_on_connect() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    server.cli(&["SCRIPT", "FLUSH"]);
    let store = connect(&server.url()).await;
    let limit = limit("10/s", Algorithm::TokenBucket);
    for _ in 0..5 {
        assert!(allowed(&store, "t:cold:{c}", &limit, 1).await.unwrap());
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha:calls=5,"), "{stats}");
    assert!(!stats.contains("cmdstat_eval:"), "no decision fell back to EVAL: {stats}");
}

#[tokio::test]
async fn a_black_holed_server_times_out_instead_of_hanging() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let proxy = Proxy::start(server.port).await;
    let store = RedisStore::connect(through(&proxy)).await.unwrap();
    let limit = limit("10/s", Algorithm::FixedWindow);
    assert!(allowed(&store, "t:hole:{c}", &limit, 1).await.unwrap());
    proxy.set(Mode::BlackHole);
    for _ in 0..3 {
        let started = Instant::now();
        let result = allowed(&store, "t:hole:{c}", &limit, 1).await;
        let took = started.elapsed();
        assert!(result.is_err(), "a black-holed server cannot answer");
        // The margin holds on a loaded two-core machine; a hang would not.
        assert!(took < Duration::from_millis(100 + 900), "took {took:?}");
    }
}

/// What one limit on `key` has left, read without charging.
async fn remaining(store: &RedisStore, key: &str, limit: &Limit) -> u64 {
    let checks = [LimitCheck { key, limit }];
    // A peek of one unit reports what would remain after it: add it back.
    store.peek(CheckRequest::new(&checks, 1)).await.unwrap().as_slice()[0].remaining + 1
}

/// A decision whose reply comes after `socket_timeout` fails, and with
/// `retry_on_timeout` on it is still not sent again: the script ran once,
/// so it is charged once.
#[tokio::test]
async fn a_late_reply_is_not_charged_twice() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let proxy = Proxy::start(server.port).await;
    let store = RedisStore::connect(RedisSettings { retry_on_timeout: true, ..through(&proxy) }).await.unwrap();
    let direct = connect(&server.url()).await;
    for algorithm in Algorithm::ALL {
        let limit = limit("10/h", algorithm);
        let key = store_key::compose("t:", "late", algorithm, "c");
        assert!(allowed(&store, &key, &limit, 1).await.unwrap());
        proxy.delay_replies(Duration::from_millis(400));
        let late = allowed(&store, &key, &limit, 1).await;
        assert!(matches!(late, Err(StoreError::Timeout { .. })), "{algorithm}: {late:?}");
        proxy.delay_replies(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(remaining(&direct, &key, &limit).await, 8, "{algorithm}: charged once per decision sent");
    }
}

/// The same on a Cluster, whose client would resend a request after its
/// response timeout: the primaries hold every script back for a while
/// (`CLIENT PAUSE ... WRITE`), and each decision is still charged once.
#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cluster_reply_is_not_charged_twice() {
    use support::redis_servers::Cluster;
    if !redis_available() {
        return;
    }
    let cluster = Cluster::start(false);
    let settings = RedisSettings {
        socket_timeout: Duration::from_millis(100),
        retry_on_timeout: true,
        ..patient(RedisSettings::cluster(cluster.startup_nodes()))
    };
    let store = RedisStore::connect(settings).await.unwrap();
    let limit = limit("10/h", Algorithm::FixedWindow);
    let key = store_key::compose("t:", "late", Algorithm::FixedWindow, "c");
    assert!(allowed(&store, &key, &limit, 1).await.unwrap());
    for node in &cluster.nodes {
        node.cli(&["CLIENT", "PAUSE", "500", "WRITE"]);
    }
    let late = allowed(&store, &key, &limit, 1).await;
    assert!(late.is_err(), "a paused cluster cannot answer in time: {late:?}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let reader = RedisStore::connect(patient(RedisSettings::cluster(cluster.startup_nodes()))).await.unwrap();
    assert_eq!(remaining(&reader, &key, &limit).await, 8, "charged once per decision sent");
}

#[tokio::test]
async fn reset_and_peek() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let store = connect(&server.url()).await;
    for algorithm in Algorithm::ALL {
        let limit = limit("2/m", algorithm);
        let key = store_key::compose("t:", "reset", algorithm, "c");
        let checks = [LimitCheck { key: &key, limit: &limit }];
        assert!(allowed(&store, &key, &limit, 2).await.unwrap());
        assert!(!store.peek(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed());
        store.reset(checks[0]).await.unwrap();
        let peeked = store.peek(CheckRequest::new(&checks, 2)).await.unwrap();
        assert!(peeked.all_allowed(), "{algorithm}");
        assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0", "peek writes nothing");
    }
}

#[tokio::test]
async fn a_missing_server_is_an_error_not_a_hang() {
    let port = support::redis_servers::free_port();
    let started = Instant::now();
    let result = RedisStore::connect(RedisSettings::from_url(format!("redis://127.0.0.1:{port}"))).await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = RedisStore::connect(RedisSettings { port: 0, ..Default::default() }).await.unwrap_err();
    assert!(err.to_string().contains("redis.port"), "{err}");
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_each_decision_on_one_slot_and_spreads_clients() {
    use support::redis_servers::Cluster;
    if !redis_available() {
        return;
    }
    let cluster = Cluster::start(false);
    let settings = patient(RedisSettings::cluster(cluster.startup_nodes()));
    let stores = [RedisStore::connect(settings.clone()).await.unwrap(), RedisStore::connect(settings).await.unwrap()];
    for algorithm in Algorithm::ALL {
        assert_eq!(hammer(&stores, 64, algorithm).await, 100, "{algorithm} on the cluster");
    }
    // Two limits of one request share the identity's slot (no CROSSSLOT).
    let limits = [limit("5/s", Algorithm::TokenBucket), limit("50/h", Algorithm::FixedWindow)];
    for client in 0..200 {
        let identity = format!("client-{client}");
        let keys = [
            store_key::compose("t:", "a", Algorithm::TokenBucket, &identity),
            store_key::compose("t:", "b", Algorithm::FixedWindow, &identity),
        ];
        let checks = [LimitCheck { key: &keys[0], limit: &limits[0] }, LimitCheck { key: &keys[1], limit: &limits[1] }];
        assert!(stores[0].check(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed());
    }
    let spread = cluster.keys_per_primary();
    assert_eq!(spread.len(), 3);
    assert!(spread.iter().all(|&(_, keys)| keys > 50), "clients spread over every primary: {spread:?}");
    let health = stores[0].health().await.unwrap();
    assert!(health.details.iter().any(|(k, v)| k == "primaries" && v == "3"), "{health:?}");
}

#[cfg(feature = "redis-sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_without_an_app_restart() {
    use support::redis_servers::{SERVICE, SentinelSet};
    if !redis_available() {
        return;
    }
    let mut set = SentinelSet::start();
    let settings = RedisSettings {
        socket_timeout: Duration::from_millis(200),
        ..RedisSettings::sentinel([("127.0.0.1".to_owned(), set.sentinel_port)], SERVICE)
    };
    let store = RedisStore::connect(settings).await.unwrap();
    let limit = limit("1000000/h", Algorithm::TokenBucket);
    assert!(allowed(&store, "t:failover:{c}", &limit, 1).await.unwrap());
    let old_primary = set.primary.port;
    set.primary.kill();
    let killed = Instant::now();
    let mut first_failure = None;
    let mut recovered = None;
    while killed.elapsed() < Duration::from_secs(30) {
        match allowed(&store, "t:failover:{c}", &limit, 1).await {
            Ok(_) if first_failure.is_some() => {
                recovered = Some(killed.elapsed());
                break;
            }
            Ok(_) => {}
            Err(_) => {
                first_failure.get_or_insert(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = recovered.expect("decisions resumed after the failover");
    assert_ne!(set.primary_port(), old_primary, "sentinel promoted the replica");
    println!("sentinel failover: decisions failed for {recovered:?} after the primary was killed");
    for i in 0..20 {
        assert!(allowed(&store, "t:failover:{c}", &limit, 1).await.unwrap(), "call {i} after failover");
    }
}

fn conformance_options(tag: &str) -> ratelimit_core::conformance::ConformanceOptions {
    ratelimit_core::conformance::ConformanceOptions {
        // The scripts compute in microseconds.
        resolution_nanos: 1_000,
        key_prefix: format!("conf-{tag}:"),
        ..Default::default()
    }
}

#[tokio::test]
async fn standalone_passes_the_conformance_suite() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let store = connect(&server.url()).await;
    ratelimit_core::conformance::run_all(&store, &conformance_options("standalone")).await;
}

#[cfg(feature = "redis-cluster")]
#[tokio::test]
async fn cluster_passes_the_conformance_suite() {
    if !redis_available() {
        return;
    }
    let cluster = support::redis_servers::Cluster::start(false);
    let store = RedisStore::connect(patient(RedisSettings::cluster(cluster.startup_nodes()))).await.unwrap();
    ratelimit_core::conformance::run_all(&store, &conformance_options("cluster")).await;
}

#[cfg(feature = "redis-sentinel")]
#[tokio::test]
async fn sentinel_passes_the_conformance_suite() {
    use support::redis_servers::{SERVICE, SentinelSet};
    if !redis_available() {
        return;
    }
    let set = SentinelSet::start();
    let settings = patient(RedisSettings::sentinel([("127.0.0.1".to_owned(), set.sentinel_port)], SERVICE));
    let store = RedisStore::connect(settings).await.unwrap();
    ratelimit_core::conformance::run_all(&store, &conformance_options("sentinel")).await;
}

/// A CA and a server certificate for `localhost`, made with the openssl
/// command line tool; `None` (after saying why) when it is missing.
#[cfg(feature = "redis-tls")]
fn test_certificates(dir: &std::path::Path) -> Option<()> {
    use std::process::Command;
    let run =
        |args: &[&str]| Command::new("openssl").args(args).current_dir(dir).output().is_ok_and(|o| o.status.success());
    if !run(&["version"]) {
        assert!(!support::redis_servers::services_required(), "openssl is needed for the TLS test");
        eprintln!("skipped: openssl is not installed");
        return None;
    }
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=ratelimit test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for step in steps {
        assert!(run(step), "openssl {step:?} failed");
    }
    Some(())
}

#[cfg(feature = "redis-tls")]
#[tokio::test]
async fn tls_with_a_private_ca() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if test_certificates(dir.path()).is_none() {
        return;
    }
    let tls_port = support::redis_servers::free_port();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let tls_port_arg = tls_port.to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let _server = Server::start(&[
        "--tls-port",
        &tls_port_arg,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://localhost:{tls_port}");
    let settings = RedisSettings { tls_ca_cert: Some(dir.path().join("ca.crt")), ..RedisSettings::from_url(&url) };
    let store = RedisStore::connect(settings).await.unwrap();
    let limit = limit("2/m", Algorithm::TokenBucket);
    assert!(allowed(&store, "t:tls:{c}", &limit, 2).await.unwrap());
    assert!(!allowed(&store, "t:tls:{c}", &limit, 1).await.unwrap());
    assert!(store.health().await.is_ok());
    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisSettings { socket_connect_timeout: Duration::from_secs(2), ..RedisSettings::from_url(&url) };
    assert!(RedisStore::connect(untrusted).await.is_err(), "an unknown CA must be refused");
    // A CA file without TLS is a settings mistake.
    let plain = RedisSettings {
        tls_ca_cert: Some(dir.path().join("ca.crt")),
        ..RedisSettings::from_url("redis://localhost:1")
    };
    assert!(RedisStore::connect(plain).await.unwrap_err().to_string().contains("tls_ca_cert"));
}

/// This process's connections to `ports` once `ready` holds for them (or
/// after two seconds, for the caller's assertion to show); `None` where
/// the kernel's table cannot be read.
async fn settled_connections(
    ports: &[u16],
    ready: impl Fn(&[support::tcp::Connection]) -> bool,
) -> Option<Vec<support::tcp::Connection>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let connections = support::tcp::connections_to(ports)?;
        if ready(&connections) || Instant::now() > deadline {
            return Some(connections);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects one store with `socket_keepalive` on, then one with it off,
/// to the servers at `ports`, and reads both stores' sockets in the
/// kernel's table, telling them apart by inode: the first store's all run
/// a keepalive timer due within the store's idle time (not the kernel's
/// two-hour default), the second store's none. A socket with data in
/// flight shows its retransmit timer instead, so samples are repeated
/// until they settle; connections a store closes in between (a Sentinel
/// client's, once the primary is found) are not counted.
async fn check_keepalive(ports: &[u16], settings: RedisSettings) {
    let Some(before) = support::tcp::connections_to(ports) else {
        eprintln!("skipped: /proc/net/tcp cannot be read on this system");
        return;
    };
    assert!(before.is_empty(), "no connection yet: {before:?}");
    let with = RedisStore::connect(RedisSettings { socket_keepalive: true, ..settings.clone() }).await.unwrap();
    let first = settled_connections(ports, |c| !c.is_empty() && c.iter().all(|c| c.keepalive.is_some())).await.unwrap();
    assert!(!first.is_empty() && first.iter().all(|c| c.keepalive.is_some()), "{first:?}");
    for connection in &first {
        let due = connection.keepalive.unwrap();
        assert!(due <= Duration::from_secs(61), "first probe after 60 s idle at most: {connection:?}");
    }
    let ours: std::collections::HashSet<String> = first.iter().map(|c| c.inode.clone()).collect();
    let without = RedisStore::connect(RedisSettings { socket_keepalive: false, ..settings }).await.unwrap();
    let settled = |all: &[support::tcp::Connection]| {
        let (old, new): (Vec<_>, Vec<_>) = all.iter().partition(|c| ours.contains(&c.inode));
        !new.is_empty() && old.iter().all(|c| c.keepalive.is_some())
    };
    let all = settled_connections(ports, settled).await.unwrap();
    let (old, new): (Vec<_>, Vec<_>) = all.iter().partition(|c| ours.contains(&c.inode));
    assert!(old.iter().all(|c| c.keepalive.is_some()), "the first store's connections keep keepalive: {all:?}");
    assert!(!new.is_empty(), "the second store has connections of its own: {all:?}");
    assert!(new.iter().all(|c| c.keepalive.is_none()), "the second store's connections have none: {all:?}");
    drop((with, without));
}

#[tokio::test]
async fn socket_keepalive_sets_tcp_keepalive_on_standalone_connections() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    let settings = RedisSettings { max_connections: 3, ..patient(RedisSettings::from_url(server.url())) };
    check_keepalive(&[server.port], settings).await;
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_keepalive_sets_tcp_keepalive_on_cluster_connections() {
    if !redis_available() {
        return;
    }
    let cluster = support::redis_servers::Cluster::start(false);
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    check_keepalive(&ports, patient(RedisSettings::cluster(cluster.startup_nodes()))).await;
}

#[cfg(feature = "redis-sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_keepalive_sets_tcp_keepalive_on_sentinel_connections() {
    use support::redis_servers::{SERVICE, SentinelSet};
    if !redis_available() {
        return;
    }
    let set = SentinelSet::start();
    let settings = patient(RedisSettings::sentinel([("127.0.0.1".to_owned(), set.sentinel_port)], SERVICE));
    check_keepalive(&[set.sentinel_port, set.primary.port, set.replica.port], settings).await;
}

/// A refused password is reported as refused credentials, at once, even
/// with a connect timeout shorter than any retry backoff, naming the
/// settings to check and never their values; the right password connects
/// with the same timeout.
#[tokio::test]
async fn refused_credentials_are_reported_as_such_not_as_a_timeout() {
    use ratelimit_core::Secret;
    use ratelimit_core::redis::CredentialsRefused;
    if !redis_available() {
        return;
    }
    const PASSWORD: &str = "correct-horse-9f2c";
    const WRONG: &str = "wrong-battery-71ab";
    let server = Server::start(&[]);
    server.cli(&["CONFIG", "SET", "requirepass", PASSWORD]);
    let open = Server::start(&[]);
    let short =
        |settings: RedisSettings| RedisSettings { socket_connect_timeout: Duration::from_millis(100), ..settings };
    let at = |port: u16| short(RedisSettings { port, ..RedisSettings::default() });
    let cases = [
        (
            "a wrong password",
            RedisSettings { password: Some(Secret::from(WRONG)), ..at(server.port) },
            "authentication failed",
        ),
        (
            "a wrong password in the url",
            short(RedisSettings::from_url(format!("redis://:{WRONG}@127.0.0.1:{}", server.port))),
            "authentication failed",
        ),
        (
            "an unknown user",
            RedisSettings {
                username: Some("nobody".to_owned()),
                password: Some(Secret::from(PASSWORD)),
                ..at(server.port)
            },
            "authentication failed",
        ),
        ("no password", at(server.port), "requires a password and none was sent"),
        (
            "a password for a server that has none",
            RedisSettings { password: Some(Secret::from(WRONG)), ..at(open.port) },
            "authentication failed",
        ),
    ];
    for (case, settings, reason) in cases {
        let started = Instant::now();
        let error = RedisStore::connect(settings).await.unwrap_err();
        let took = started.elapsed();
        let (shown, debug) = (error.to_string(), format!("{error:?}"));
        assert!(!matches!(error, StoreError::Timeout { .. }), "{case}: {shown}");
        assert!(shown.contains("refused the credentials") && shown.contains("redis.password"), "{case}: {shown}");
        assert!(shown.contains(reason), "{case}: {shown}");
        let source = std::error::Error::source(&error);
        assert!(source.is_some_and(|s| s.is::<CredentialsRefused>()), "{case}: {debug}");
        for text in [&shown, &debug] {
            assert!(!text.contains(WRONG) && !text.contains(PASSWORD), "{case}: a password is shown: {text}");
        }
        assert!(took < Duration::from_secs(1), "{case}: took {took:?}");
    }
    let settings = RedisSettings { password: Some(Secret::from(PASSWORD)), ..at(server.port) };
    let store = RedisStore::connect(settings).await.unwrap();
    assert!(allowed(&store, "t:auth:{c}", &limit("5/m", Algorithm::FixedWindow), 1).await.unwrap());
}
