//! Two copies of `examples/server.rs` on one shared store, hit by a burst
//! from the moment they listen: exactly the limit is admitted, for every
//! shared store and algorithm.
//!
//! This is how an application is deployed: several processes, the same
//! settings file, a store they share, traffic from the first second. The
//! settings-driven stores start connecting when the layer is built, so the
//! burst lands while both processes may still be connecting; no request
//! may get through uncounted meanwhile, and every response must carry the
//! rate-limit headers (a degraded, fail-open response has none).
//!
//! Redis comes from a `redis-server` the test starts; PostgreSQL and
//! MariaDB from `RATELIMIT_TEST_POSTGRES_URL` and `RATELIMIT_TEST_MYSQL_URL`;
//! SQLite is a temporary file. A store that cannot be reached is skipped
//! with a message, or fails the test under `RATELIMIT_REQUIRE_SERVICES=1`.
//! The memory store, which is per process, runs as a control with one
//! server.

#[path = "../crates/ratelimit-core/tests/support/redis_servers.rs"]
mod redis_servers;
mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratelimit_core::sql::{SqlSettings, SqlStore};
use redis_servers::{redis_available, services_required};
use reqwest::StatusCode;
use support::{ServerProcess, example_binary};
use tokio::task::JoinSet;

const ALGORITHMS: [&str; 4] = ["fixed_window", "sliding_window", "sliding_window_counter", "token_bucket"];
/// Concurrent clients per case, each on a connection of its own, spread
/// evenly over the servers.
const CLIENTS: usize = 48;
/// Requests per case: several times any limit, so the burst is still
/// running when the limit is reached.
const REQUESTS: usize = 240;
/// How long a server may take to print `listening on`: generous, for a
/// busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn postgres_url() -> String {
    std::env::var("RATELIMIT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("RATELIMIT_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The limit of one algorithm's case: different per case (all within
/// 20..=50) so that a count that is right by coincidence for one is wrong
/// for another. Per hour: no window boundary or refill falls inside a
/// burst of a few seconds (a run across the full hour is retried, below).
fn limit_of(algorithm_index: usize) -> u64 {
    [50, 41, 33, 20][algorithm_index]
}

/// A name no other case, test process or earlier run uses, for key and
/// table prefixes (letters, digits and `_`: valid for both).
fn unique_prefix(store: &str, algorithm_index: usize, attempt: u32) -> String {
    let run = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % 1_000_000;
    format!("e2e{}_{run}_{store}{algorithm_index}_{attempt}_", std::process::id())
}

fn hour_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 3600
}

/// Where the cases' servers keep their counters.
#[derive(Clone)]
enum Backend {
    Memory,
    Redis {
        url: String,
    },
    /// A PostgreSQL or MariaDB server.
    Database {
        url: String,
    },
    /// A file of each case's own.
    Sqlite,
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis { .. } => "redis",
            Backend::Database { .. } | Backend::Sqlite => "database",
        }
    }

    /// The store's section of the settings file. `prefix` keeps this
    /// case's tables apart from every other case's; `case_dir` holds its
    /// files. (`{:?}` quotes a URL as a valid TOML string.)
    fn section(&self, prefix: &str, case_dir: &Path) -> String {
        // Decisions and connections get seconds, not the defaults'
        // fractions of one: on a busy machine a slow decision would fail
        // open too, and this test is about the start-up, not timeouts.
        let database = |url: &str| {
            // A small pool: up to eight servers run at once on one database.
            format!(
                "[database]\nurl = {url:?}\ntable_prefix = \"{prefix}\"\nmax_connections = 4\n\
                 connect_timeout = 10.0\ntimeout = 5.0\n"
            )
        };
        match self {
            Backend::Memory => String::new(),
            Backend::Redis { url } => {
                format!("[redis]\nurl = {url:?}\nsocket_timeout = 5.0\nsocket_connect_timeout = 10.0\n")
            }
            Backend::Database { url } => database(url),
            Backend::Sqlite => database(&format!("sqlite://{}", case_dir.join("limits.db").display())),
        }
    }
}

/// One case's settings file. The top-level keys come first: TOML puts
/// keys written after a `[section]` header into that section.
fn settings_file(backend: &Backend, algorithm: &str, limit: u64, prefix: &str, case_dir: &Path) -> String {
    format!(
        "backend = \"{}\"\nalgorithm = \"{algorithm}\"\nkey_prefix = \"{prefix}\"\nfailure_mode = \"open\"\n\n{}\n\
         [middleware]\ndefault_rate = \"{limit}/h\"\nkey = \"global\"\n",
        backend.name(),
        backend.section(prefix, case_dir),
    )
}

/// What one case's burst got back.
#[derive(Debug, Default)]
struct Outcome {
    admitted: u64,
    limited: u64,
    /// Responses with another status, or no response at all.
    other: u64,
    /// Fail-open responses (`X-RateLimit-Status: degraded`).
    degraded: u64,
    /// Responses without the full set of rate-limit headers.
    without_headers: u64,
    /// The first of the odd responses, to show what went wrong.
    first_problem: Option<String>,
    /// The burst ran across the full hour: a fixed window ended inside it.
    crossed_hour: bool,
    took: Duration,
}

impl Outcome {
    fn is_exact(&self, limit: u64) -> bool {
        self.admitted == limit
            && self.limited == REQUESTS as u64 - limit
            && self.other == 0
            && self.degraded == 0
            && self.without_headers == 0
    }

    fn problem(&mut self, what: String) {
        self.first_problem.get_or_insert(what);
    }
}

/// Checks one response and counts it.
async fn record(outcome: &Mutex<Outcome>, limit: u64, result: reqwest::Result<reqwest::Response>) {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            let mut outcome = outcome.lock().unwrap();
            outcome.other += 1;
            outcome.problem(format!("request failed: {error}"));
            return;
        }
    };
    let status = response.status();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut missing: Vec<&str> = ["x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-policy", "ratelimit"]
        .into_iter()
        .filter(|name| header(name).is_none())
        .collect();
    if header("x-ratelimit-limit") != Some(limit.to_string()) {
        missing.push("x-ratelimit-limit (= the limit)");
    }
    if status == StatusCode::TOO_MANY_REQUESTS && header("retry-after").is_none() {
        missing.push("retry-after");
    }
    let degraded = header("x-ratelimit-status").is_some_and(|v| v == "degraded");
    // Drain the body so the connection is reused for the client's next request.
    let _ = response.bytes().await;

    let mut outcome = outcome.lock().unwrap();
    match status {
        StatusCode::OK => outcome.admitted += 1,
        StatusCode::TOO_MANY_REQUESTS => outcome.limited += 1,
        other => {
            outcome.other += 1;
            outcome.problem(format!("status {other}"));
        }
    }
    if degraded {
        outcome.degraded += 1;
    }
    if !missing.is_empty() {
        outcome.without_headers += 1;
        let marked = if degraded { " marked degraded (failed open)" } else { "" };
        outcome.problem(format!("a {status}{marked} without {}", missing.join(", ")));
    }
}

/// Starts `servers` copies of the example with one settings file and
/// fires the burst at each the moment it listens.
async fn burst(binary: &Path, settings: &Path, servers: usize, limit: u64) -> Outcome {
    let started = Instant::now();
    let hour_before = hour_now();
    let dir = settings.parent().unwrap();
    let config = settings.to_str().unwrap();
    // All processes first, then the waiting: they start together.
    let mut processes: Vec<ServerProcess> = (0..servers)
        .map(|i| {
            let stderr = dir.join(format!("server{i}.stderr"));
            ServerProcess::spawn(binary, &["--config", config, "--bind", "127.0.0.1:0"], stderr)
        })
        .collect();
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let mut per_server = JoinSet::new();
    for (index, process) in processes.iter_mut().enumerate() {
        let listening = process.listening(START_TIMEOUT);
        let outcome = outcome.clone();
        per_server.spawn(async move {
            let url = listening.await;
            let mut clients = JoinSet::new();
            // This server's share of the clients and of the requests.
            for client in (0..CLIENTS).filter(|c| c % servers == index) {
                let requests = (client..REQUESTS).step_by(CLIENTS).count();
                let (url, outcome) = (url.clone(), outcome.clone());
                clients.spawn(async move {
                    // One client, one connection: 48 clients are 48 connections.
                    let http = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().unwrap();
                    for _ in 0..requests {
                        record(&outcome, limit, http.get(&url).send().await).await;
                    }
                });
            }
            join_all(clients).await;
        });
    }
    join_all(per_server).await;
    drop(processes);
    let mut outcome = Arc::try_unwrap(outcome).unwrap().into_inner().unwrap();
    outcome.crossed_hour = hour_now() != hour_before;
    outcome.took = started.elapsed();
    outcome
}

/// Waits for every task; a task's panic becomes the caller's, message
/// and all.
async fn join_all<T: 'static>(mut tasks: JoinSet<T>) -> Vec<T> {
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => results.push(result),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    results
}

/// The result of one store/algorithm case.
struct CaseResult {
    algorithm: &'static str,
    limit: u64,
    outcome: Outcome,
}

/// Runs the four algorithms' cases on `backend` at once, each with
/// `servers` processes, and fails unless each admitted exactly its limit.
async fn run_store(name: &'static str, backend: Backend, servers: usize, cleanup: Option<Arc<SqlCleanup>>) {
    // Blocks this test's runtime while cargo builds: nothing else runs yet.
    let binary = example_binary("server");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let started = Instant::now();
    let mut cases = JoinSet::new();
    for (index, algorithm) in ALGORITHMS.into_iter().enumerate() {
        let (binary, backend, dir, cleanup) = (binary.clone(), backend.clone(), dir.clone(), cleanup.clone());
        cases.spawn(async move {
            let limit = limit_of(index);
            let mut attempt = 0;
            loop {
                let prefix = unique_prefix(name, index, attempt);
                if let Some(cleanup) = &cleanup {
                    cleanup.add(&prefix);
                }
                let case_dir = dir.path().join(&prefix);
                std::fs::create_dir(&case_dir).unwrap();
                let settings = case_dir.join("settings.toml");
                std::fs::write(&settings, settings_file(&backend, algorithm, limit, &prefix, &case_dir)).unwrap();
                let outcome = burst(&binary, &settings, servers, limit).await;
                // A fixed window that ended inside the burst admits a second
                // limit; that is the algorithm working, not the bug: run again.
                if outcome.crossed_hour && attempt == 0 {
                    attempt += 1;
                    continue;
                }
                return CaseResult { algorithm, limit, outcome };
            }
        });
    }
    let mut results = join_all(cases).await;
    results.sort_by_key(|r| ALGORITHMS.iter().position(|a| *a == r.algorithm));

    let mut report = format!(
        "{name}, {servers} server(s), {CLIENTS} clients, {REQUESTS} requests per case, all cases in {:.1?}:\n",
        started.elapsed()
    );
    report.push_str("  algorithm               limit  200  429  other  degraded  no-headers  time\n");
    for r in &results {
        let o = &r.outcome;
        report.push_str(&format!(
            "  {:<22}  {:>5}  {:>3}  {:>3}  {:>5}  {:>8}  {:>10}  {:.1?}{}\n",
            r.algorithm,
            r.limit,
            o.admitted,
            o.limited,
            o.other,
            o.degraded,
            o.without_headers,
            o.took,
            o.first_problem.as_deref().map(|p| format!("  first problem: {p}")).unwrap_or_default()
        ));
    }
    let wrong: Vec<&str> = results.iter().filter(|r| !r.outcome.is_exact(r.limit)).map(|r| r.algorithm).collect();
    assert!(wrong.is_empty(), "{name}: not exactly the limit admitted, with headers, for {wrong:?}:\n{report}");
    eprint!("{report}");
}

/// Tables of the SQL cases, dropped when this is dropped (also when the
/// test fails), so runs leave nothing behind in the shared database.
struct SqlCleanup {
    url: String,
    prefixes: Mutex<Vec<String>>,
}

impl SqlCleanup {
    fn add(&self, prefix: &str) {
        self.prefixes.lock().unwrap().push(prefix.to_owned());
    }
}

impl Drop for SqlCleanup {
    fn drop(&mut self) {
        let url = self.url.clone();
        let prefixes = std::mem::take(&mut *self.prefixes.lock().unwrap_or_else(|e| e.into_inner()));
        // Async work from a destructor that may run inside a runtime: a
        // thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                for prefix in &prefixes {
                    let settings =
                        SqlSettings { migrate: false, table_prefix: prefix.clone(), ..SqlSettings::from_url(&url) };
                    if let Ok(store) = SqlStore::connect(settings).await {
                        let _ = store.drop_tables().await;
                    }
                }
            });
        })
        .join();
    }
}

/// The database at `url`, or `None` (after saying why) when it cannot be
/// reached and the test may be skipped.
async fn reachable_database(engine: &str, url: String) -> Option<Arc<SqlCleanup>> {
    let probe = SqlSettings { migrate: false, connect_timeout: Duration::from_secs(5), ..SqlSettings::from_url(&url) };
    match SqlStore::connect(probe).await {
        Ok(_) => Some(Arc::new(SqlCleanup { url, prefixes: Mutex::new(Vec::new()) })),
        Err(error) => {
            assert!(!services_required(), "{engine} is required (RATELIMIT_REQUIRE_SERVICES=1): {error}");
            eprintln!("skipped: {engine} is not reachable at {}: {error}", ratelimit_core::secret::redact_url(&url));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_servers_admit_exactly_the_limit() {
    if !redis_available() {
        return;
    }
    let redis = tokio::task::spawn_blocking(|| redis_servers::Server::start(&[])).await.unwrap();
    run_store("redis", Backend::Redis { url: redis.url() }, 2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_servers_admit_exactly_the_limit() {
    let url = postgres_url();
    let Some(cleanup) = reachable_database("PostgreSQL", url.clone()).await else { return };
    run_store("postgres", Backend::Database { url }, 2, Some(cleanup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_servers_admit_exactly_the_limit() {
    let url = mysql_url();
    let Some(cleanup) = reachable_database("MariaDB", url.clone()).await else { return };
    run_store("mariadb", Backend::Database { url }, 2, Some(cleanup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_servers_admit_exactly_the_limit() {
    run_store("sqlite", Backend::Sqlite, 2, None).await;
}

/// The control: the memory store counts per process, so one server. It
/// shows the harness itself counts exactly under this burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_one_server_admits_exactly_the_limit() {
    run_store("memory", Backend::Memory, 1, None).await;
}
