//! Passwords never leave the process: settings whose every password field
//! and URL carries a marker are driven through the CLI's error paths (bad
//! settings, refused and failing connections, a server that rejects the
//! password) and its health report; the marker never appears in what it
//! prints.

use std::process::{Command, Output};

const MARKER: &str = "Zq7MarkerSecret";

fn free_port() -> u16 {
    // Bound and released: nothing listens there afterwards.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(settings: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    std::fs::write(&path, settings).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ratelimit"));
    command.args(args).arg("--config").arg(&path).env_remove("RATELIMIT_BACKEND");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// Runs `args` on `settings` and asserts the run failed and that nothing
/// it printed holds the marker.
fn assert_failed_without_marker(case: &str, settings: &str, args: &[&str], env: &[(&str, &str)]) {
    let output = run(settings, args, env);
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!printed.contains(MARKER), "{case}: the password leaked:\n{printed}");
    assert!(!output.status.success(), "{case}: expected a failure, got:\n{printed}");
    assert!(printed.contains("error"), "{case}: no error reported:\n{printed}");
}

fn cases() -> Vec<(&'static str, String)> {
    let down = free_port();
    let m = MARKER;
    vec![
        (
            "redis url with a wrong scheme",
            format!("backend = \"redis\"\n[redis]\nurl = \"http://user:{m}@127.0.0.1:{down}/0\""),
        ),
        ("redis url without a scheme", format!("backend = \"redis\"\n[redis]\nurl = \"user:{m}@127.0.0.1:{down}\"")),
        ("redis url refused", format!("backend = \"redis\"\n[redis]\nurl = \"redis://user:{m}@127.0.0.1:{down}/0\"")),
        (
            "redis password refused",
            format!(
                "backend = \"redis\"\n[redis]\nhost = \"127.0.0.1\"\nport = {down}\nusername = \"u\"\npassword = \"{m}\""
            ),
        ),
        (
            "redis password rejected by the server",
            format!("backend = \"redis\"\n[redis]\nurl = \"redis://:{m}@127.0.0.1:6379/0\""),
        ),
        (
            "sentinel passwords",
            format!(
                "backend = \"redis\"\n[redis]\nsentinels = [[\"127.0.0.1\", {down}]]\nservice_name = \"mymaster\"\npassword = \"{m}\"\nsentinel_password = \"{m}\""
            ),
        ),
        (
            "cluster password",
            format!(
                "backend = \"redis\"\n[redis]\nstartup_nodes = [{{ host = \"127.0.0.1\", port = {down} }}]\npassword = \"{m}\""
            ),
        ),
        ("sql url with a wrong scheme", format!("backend = \"database\"\n[database]\nurl = \"oracle://u:{m}@db/x\"")),
        (
            "postgres refused, both password forms",
            format!(
                "backend = \"database\"\n[database]\nurl = \"postgres://postgres:{m}@127.0.0.1:{down}/test?password={m}\"\nconnect_timeout = 0.5"
            ),
        ),
        (
            "mysql password rejected by the server",
            format!(
                "backend = \"database\"\n[database]\nurl = \"mysql://root:{m}@127.0.0.1:3306/test\"\nconnect_timeout = 2"
            ),
        ),
        (
            "sql bad field beside a password",
            format!("backend = \"database\"\n[database]\nurl = \"postgres://u:{m}@h/x\"\nmax_connections = 0"),
        ),
        (
            "multi-store members",
            format!(
                r#"backend = "multi"
[[backends]]
name = "r"
backend = "redis"
config = {{ url = "redis://:{m}@127.0.0.1:{down}/0", password = "{m}" }}
[[backends]]
name = "db"
backend = "database"
config = {{ url = "postgres://u:{m}@127.0.0.1:{down}/x", connect_timeout = 0.5 }}
"#
            ),
        ),
        (
            "multi-store member with a bad field",
            format!(
                "backend = \"multi\"\n[[backends]]\nname = \"r\"\nbackend = \"redis\"\nconfig = {{ url = \"redis://:{m}@h:1/0\", port = 0 }}"
            ),
        ),
    ]
}

#[test]
fn health_never_prints_a_password() {
    for (case, settings) in cases() {
        for args in [&["health", "--json", "--verbose"][..], &["health", "--verbose"][..]] {
            assert_failed_without_marker(case, &settings, args, &[]);
        }
    }
}

#[test]
fn key_commands_never_print_a_password() {
    for (case, settings) in cases() {
        assert_failed_without_marker(case, &settings, &["check", "--key", "u:k", "--rate", "5/m"], &[]);
    }
}

#[test]
fn passwords_from_the_environment_are_kept_too() {
    let down = free_port();
    let env = [
        ("RATELIMIT_BACKEND", "redis"),
        ("RATELIMIT_REDIS_PASSWORD", MARKER),
        ("RATELIMIT_REDIS_PORT", &*down.to_string()),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_failed_without_marker("environment", "", &["health", "--json", "--verbose"], &env);
    let bad_url = format!("ftp://u:{MARKER}@h");
    assert_failed_without_marker(
        "environment url",
        "backend = \"redis\"",
        &["health", "--json", "--verbose"],
        &[("RATELIMIT_REDIS_URL", &bad_url)],
    );
}
