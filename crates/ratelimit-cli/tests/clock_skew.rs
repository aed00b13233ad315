//! Two app servers whose clocks disagree by 30 s share one database
//! (PostgreSQL, MariaDB, Redis): the limit still holds exactly, because
//! decisions read the server's clock, never the app server's. The second
//! server is this crate's `ratelimit check` run under `faketime`
//! (libfaketime).

use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratelimit_core::sql::{SqlSettings, SqlStore};

fn required() -> bool {
    std::env::var("RATELIMIT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn faketime_available() -> bool {
    let found = Command::new("faketime").args(["-f", "+30s", "true"]).status().is_ok_and(|s| s.success());
    if !found {
        assert!(!required(), "faketime is not installed and RATELIMIT_REQUIRE_SERVICES=1");
        eprintln!("skipped: faketime is not installed");
    }
    found
}

/// `ratelimit check` on `key` (120 requests), with the process clock
/// shifted by `skew`; returns how many were admitted.
fn run(config: &std::path::Path, key: &str, algorithm: &str, skew: Option<&str>) -> u64 {
    let exe = env!("CARGO_BIN_EXE_ratelimit");
    let mut command = match skew {
        Some(skew) => {
            let mut c = Command::new("faketime");
            c.args(["-f", skew, exe]);
            c
        }
        None => Command::new(exe),
    };
    let output = command
        .args(["check", "--key", key, "--policy", "skew", "--rate", "50/m", "--algorithm", algorithm, "--times", "120"])
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    admitted(output)
}

fn admitted(output: Output) -> u64 {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.trim().strip_prefix("admitted ").and_then(|r| r.split(' ').next()).unwrap().parse().unwrap()
}

/// Waits until the current minute is 30 to 45 s old: a clock 30 s ahead
/// is then in the next one-minute window, and the real window does not
/// turn during a run.
fn half_past_the_minute() {
    loop {
        let second = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 60;
        if (30..=45).contains(&second) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One app server on time, then one 30 s ahead, on one key with limit 50
/// per minute: returns what each admitted, for both algorithms whose state
/// depends on the clock.
fn on_time_then_ahead(config: &std::path::Path, tag: &str) -> [(u64, u64); 2] {
    half_past_the_minute();
    let window = format!("skew:{tag}:fixed_window:{{c}}");
    let w = (run(config, &window, "fixed_window", None), run(config, &window, "fixed_window", Some("+30s")));
    let bucket = format!("skew:{tag}:token_bucket:{{c}}");
    let b = (run(config, &bucket, "token_bucket", None), run(config, &bucket, "token_bucket", Some("+30s")));
    [w, b]
}

fn write_config(dir: &std::path::Path, url: &str, prefix: &str) -> std::path::PathBuf {
    let config = dir.join("limits.toml");
    let toml = format!(
        "backend = \"database\"\n[database]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\ncleanup_threshold = 0\n"
    );
    std::fs::write(&config, toml).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_app_server_clocks_change_nothing() {
    if !faketime_available() {
        return;
    }
    // The control: SQLite decides with the process clock, so the server
    // 30 s ahead gets a fresh window and a refilled bucket. This shows the
    // skew reaches the store's decisions when a store reads the app clock.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("skew.db").display());
    let [(w1, w2), (b1, b2)] = on_time_then_ahead(&write_config(dir.path(), &sqlite, "skew_"), "sqlite");
    assert_eq!((w1, w2), (50, 50), "SQLite: the server ahead counts in the next window");
    assert!(b1 == 50 && b2 >= 24, "SQLite: the server ahead sees a refilled bucket: {b1} + {b2}");

    let urls = [
        std::env::var("RATELIMIT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        std::env::var("RATELIMIT_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
    ];
    for url in urls {
        let prefix = format!("skew{}_", std::process::id());
        let settings =
            SqlSettings { table_prefix: prefix.clone(), cleanup_threshold: 0, ..SqlSettings::from_url(&url) };
        let store = match SqlStore::connect(settings).await {
            Ok(store) => store,
            Err(error) => {
                assert!(!required(), "{url}: {error}");
                eprintln!("skipped: {error}");
                continue;
            }
        };
        let config = write_config(dir.path(), &url, &prefix);
        let started = Instant::now();
        let [(w1, w2), (b1, b2)] = on_time_then_ahead(&config, "server");
        assert_eq!((w1, w2), (50, 0), "{url}: the database's clock puts both in one window");
        // The bucket refills one token per 1.2 s of real time, nothing more.
        let refilled = (started.elapsed().as_secs_f64() / 1.2).ceil() as u64;
        assert!(b1 == 50 && b2 <= refilled, "{url}: token bucket {b1} + {b2}, real refill {refilled}");

        store.drop_tables().await.unwrap();
    }

    // Redis decides with the server's TIME inside its script.
    let redis_url = std::env::var("RATELIMIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = dir.path().join("redis.toml");
    let prefix = format!("skew{}:", std::process::id());
    std::fs::write(
        &config,
        format!("backend = \"redis\"\n[redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n"),
    )
    .unwrap();
    let started = Instant::now();
    let [(w1, w2), (b1, b2)] = on_time_then_ahead(&config, "redis");
    assert_eq!((w1, w2), (50, 0), "Redis: the server's clock puts both in one window");
    let refilled = (started.elapsed().as_secs_f64() / 1.2).ceil() as u64;
    assert!(b1 == 50 && b2 <= refilled, "Redis: token bucket {b1} + {b2}, real refill {refilled}");
}
