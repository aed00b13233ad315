//! `ratelimit health` exit codes and JSON for healthy, degraded and down
//! setups, and for an invalid settings file.

use std::process::Command;

fn free_port() -> u16 {
    // Bound and released: nothing listens there afterwards.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `ratelimit health --json` on `settings`; returns the exit code and the report.
fn health(settings: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    std::fs::write(&path, settings).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ratelimit"))
        .args(["health", "--json", "--config"])
        .arg(&path)
        .args(extra)
        .env_remove("RATELIMIT_BACKEND")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)));
    (output.status.code().unwrap(), report)
}

#[test]
fn a_healthy_memory_store_exits_0() {
    let (code, report) = health("backend = \"memory\"", &["--verbose"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["backend"], "memory");
    assert_eq!(report["strategy"], serde_json::Value::Null);
    let store = &report["stores"][0];
    assert_eq!(store["name"], "memory");
    assert_eq!(store["kind"], "memory");
    assert_eq!(store["healthy"], true);
    assert!(store["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(store["error"], serde_json::Value::Null);
    assert!(store["details"].is_object(), "--verbose adds details: {report}");
}

#[test]
fn a_chain_with_one_store_down_is_degraded_and_exits_1() {
    let port = free_port();
    let settings = format!(
        r#"
backend = "multi"
multi_backend_strategy = "first_healthy"
[[backends]]
name = "primary_redis"
backend = "redis"
config = {{ host = "127.0.0.1", port = {port} }}
[[backends]]
name = "local"
backend = "memory"
[circuit_breaker]
failure_threshold = 5
"#
    );
    let (code, report) = health(&settings, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["status"], "degraded");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["strategy"], "first_healthy");
    let redis = &report["stores"][0];
    assert_eq!(redis["name"], "primary_redis");
    assert_eq!(redis["healthy"], false);
    assert!(redis["error"].as_str().unwrap().contains("redis"), "{report}");
    assert_eq!(report["stores"][1]["healthy"], true);
    assert_eq!(report["stores"][1]["circuit"], "closed");
}

#[test]
fn a_single_store_down_exits_2() {
    let port = free_port();
    let (code, report) = health(&format!("backend = \"redis\"\n[redis]\nport = {port}"), &[]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["status"], "down");
    assert_eq!(report["stores"][0]["healthy"], false);
}

#[test]
fn an_invalid_settings_file_exits_2_and_says_why() {
    let (code, report) = health("bakend = \"memory\"", &[]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["status"], "down");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("limits.toml") && error.contains("did you mean `backend`?"), "{error}");
}

/// The machine's Redis and PostgreSQL behind one chain.
#[test]
fn real_servers_report_healthy() {
    let postgres = std::env::var("RATELIMIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let settings = format!(
        r#"
backend = "multi"
[[backends]]
name = "redis"
backend = "redis"
config = {{ url = "redis://127.0.0.1:6379" }}
[[backends]]
name = "postgres"
backend = "database"
config = {{ url = "{postgres}", table_prefix = "cli_health_", migrate = false }}
"#
    );
    let (code, report) = health(&settings, &["--verbose"]);
    let required = std::env::var("RATELIMIT_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    if code != 0 && !required {
        eprintln!("skipped: Redis or PostgreSQL is not reachable: {report}");
        return;
    }
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["stores"][1]["details"]["engine"], "postgres");
}

/// A variable that is not UTF-8 elsewhere in the environment changes
/// nothing; a `RATELIMIT_*` one is an error that names it.
#[test]
fn a_non_utf8_environment_is_no_crash() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    std::fs::write(&path, "backend = \"memory\"").unwrap();
    let run = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_ratelimit"))
            .args(["health", "--json", "--config"])
            .arg(&path)
            .env_remove("RATELIMIT_BACKEND")
            .env(name, OsString::from_vec(vec![b'x', 0xff]))
            .output()
            .unwrap()
    };
    let elsewhere = run("SOME_OTHER_VARIABLE");
    assert_eq!(elsewhere.status.code(), Some(0), "{}", String::from_utf8_lossy(&elsewhere.stdout));
    let ours = run("RATELIMIT_BACKEND");
    assert_eq!(ours.status.code(), Some(2));
    let report = String::from_utf8_lossy(&ours.stdout);
    assert!(report.contains("RATELIMIT_BACKEND") && report.contains("UTF-8"), "{report}");
}
