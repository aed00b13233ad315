//! Passwords never leave the process: settings whose every password field
//! and URL carries a marker, printed with `{:?}`, serialised, and driven
//! through failing connections (errors, their `Debug`, and the log lines
//! of the background connection); the marker appears nowhere.

#![cfg(all(feature = "redis", feature = "postgres", feature = "mysql", feature = "sqlite"))]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratelimit_core::redis::{RedisSettings, RedisStore};
use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::sql::{SqlSettings, SqlStore};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Settings, Store};
use support::redis_servers::{Server, redis_available};

const MARKER: &str = "Zq7MarkerSecret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn assert_hidden(what: &str, shown: &str) {
    assert!(!shown.contains(MARKER), "{what}: the password leaked: {shown}");
}

fn settings_with_every_secret(down: u16) -> String {
    let m = MARKER;
    format!(
        r#"
backend = "multi"
[redis]
url = "redis://user:{m}@127.0.0.1:{down}/0"
password = "{m}"
sentinel_password = "{m}"
[database]
url = "postgres://app:{m}@127.0.0.1:{down}/x?password={m}"
[[backends]]
name = "redis"
backend = "redis"
config = {{ url = "redis://:{m}@127.0.0.1:{down}/0", password = "{m}", sentinel_password = "{m}" }}
[[backends]]
name = "db"
backend = "database"
config = {{ url = "postgres://root:{m}@127.0.0.1:{down}/test?password={m}", connect_timeout = 0.5 }}
"#
    )
}

#[test]
fn settings_print_and_serialise_without_passwords() {
    let settings = Settings::from_toml(&settings_with_every_secret(1), "limits.toml", []).unwrap();
    assert_eq!(settings.redis.password.as_ref().map(|p| p.expose()), Some(MARKER), "the value itself is kept");
    assert_hidden("Debug", &format!("{settings:?}"));
    assert_hidden("Debug (pretty)", &format!("{settings:#?}"));
    assert_hidden("TOML", &toml::to_string(&settings).unwrap());
    assert_hidden("JSON", &serde_json::to_string(&settings).unwrap());
    assert_hidden("RedisSettings", &format!("{:?}", settings.redis));
    assert_hidden("SqlSettings", &format!("{:?}", settings.database));
    // What is shown still says which server was meant.
    assert!(format!("{:?}", settings.database).contains("postgres://app:***@127.0.0.1"));
}

#[test]
fn settings_errors_never_echo_a_password() {
    let m = MARKER;
    let env_url = format!("ftp://u:{m}@h");
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        (format!("backend = \"redis\"\n[redis]\nurl = \"http://u:{m}@h:1\""), vec![]),
        (format!("backend = \"redis\"\n[redis]\nurl = \"u:{m}@h:1\""), vec![]),
        (format!("backend = \"redis\"\n[redis]\npassword = \"{m}\"\nport = 0"), vec![]),
        (format!("backend = \"redis\"\n[redis]\npassword = {m}"), vec![]),
        (format!("backend = \"redis\"\n[redis]\npasword = \"{m}\""), vec![]),
        (format!("backend = \"database\"\n[database]\nurl = \"oracle://u:{m}@h\""), vec![]),
        (format!("backend = \"database\"\n[database]\nurl = \"postgres://u:{m}@h/x\"\ntimeout = 0"), vec![]),
        // Parameters the drivers do not read: PostgreSQL's would log the value.
        (format!("backend = \"database\"\n[database]\nurl = \"postgres://u@h/x?sslpassword={m}\""), vec![]),
        (format!("backend = \"database\"\n[database]\nurl = \"mysql://u@h/x?password={m}\""), vec![]),
        ("backend = \"redis\"".to_owned(), vec![("RATELIMIT_REDIS_URL".to_owned(), env_url)]),
        // Syntax errors quote their line: not one that may hold a secret.
        (format!("redis = {{ url = \"redis://:{m}@h\", port = }}"), vec![]),
        (format!("[[backends]]\nname = \"r\"\nconfig = {{ dsn = \"x\", pass = \"{m}\" = }}"), vec![]),
        (format!("[database]\nurl = \"sqlite:x.db?password={m}\"\nurl2 ="), vec![]),
        (format!("backend = \"database\"\n[database]\nurl = \"app@{m}:x@db\""), vec![]),
    ];
    for (text, env) in cases {
        let error = match Settings::from_toml(&text, "limits.toml", env) {
            Ok(settings) => {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                match runtime.block_on(build_store(&settings, &StoreRegistry::new(), "limits.toml")) {
                    Ok(_) => panic!("{text}: accepted"),
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        assert_hidden(&text, &error.to_string());
        assert_hidden(&text, &format!("{error:?}"));
    }
}

/// A password written as a number is a password: read as text, and when
/// it cannot be (a float), refused without quoting it.
#[test]
fn numeric_passwords_are_read_or_refused_unquoted() {
    let read = Settings::from_toml("[redis]\npassword = 48151623", "limits.toml", []).unwrap();
    assert_eq!(read.redis.password.as_ref().map(|p| p.expose()), Some("48151623"));
    for text in [
        "[redis]\npassword = 48151623.42",
        "[[backends]]\nname = 'r'\nbackend = 'redis'\nconfig = { password = 48151623.42 }",
    ] {
        let error = match Settings::from_toml(&format!("backend = 'multi'\n{text}"), "limits.toml", []) {
            Ok(settings) => {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(build_store(&settings, &StoreRegistry::new(), "limits.toml")).unwrap_err()
            }
            Err(error) => error,
        };
        assert!(!error.to_string().contains("48151623"), "{error}");
        assert!(error.to_string().contains("password"), "{error}");
    }
}

#[tokio::test]
async fn failing_connections_never_show_a_password() {
    let m = MARKER;
    let down = free_port();
    let redis_cases = [
        RedisSettings::from_url(format!("redis://user:{m}@127.0.0.1:{down}/0")),
        RedisSettings { password: Some(m.into()), username: Some("u".into()), port: down, ..Default::default() },
        // A server that has no such password refuses it.
        RedisSettings::from_url(format!("redis://:{m}@127.0.0.1:6379/0")),
        RedisSettings {
            sentinel_password: Some(m.into()),
            password: Some(m.into()),
            ..RedisSettings::sentinel([("127.0.0.1".to_owned(), down)], "mymaster")
        },
        RedisSettings { password: Some(m.into()), ..RedisSettings::cluster([("127.0.0.1".to_owned(), down)]) },
    ];
    for settings in redis_cases {
        let error = RedisStore::connect(settings.clone()).await.expect_err("connected with a wrong password");
        assert_hidden("redis error", &error.to_string());
        assert_hidden("redis error (Debug)", &format!("{error:?}"));
    }
    let sql_cases = [
        format!("postgres://postgres:{m}@127.0.0.1:{down}/test?password={m}"),
        format!("mysql://root:{m}@127.0.0.1:3306/test"),
        format!("oracle://u:{m}@h/x"),
    ];
    for url in sql_cases {
        let settings = SqlSettings { connect_timeout: Duration::from_secs(2), ..SqlSettings::from_url(&url) };
        let error = SqlStore::connect(settings).await.expect_err("connected with a wrong password");
        assert_hidden(&url, &error.to_string());
        assert_hidden(&url, &format!("{error:?}"));
    }
}

/// A writer the log subscriber appends to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn background_connections_log_without_passwords() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // One thread, so the background connection tasks log to this subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let settings = Settings::from_toml(&settings_with_every_secret(free_port()), "limits.toml", []).unwrap();
            let built = build_store(&settings, &StoreRegistry::new(), "limits.toml").await.unwrap();
            let limit = Limit::new(Rate::per_minute(5).unwrap(), Algorithm::FixedWindow);
            let checks = [LimitCheck { key: "k", limit: &limit }];
            for _ in 0..3 {
                let error = built.store.check(CheckRequest::new(&checks, 1)).await.expect_err("every store is down");
                assert_hidden("check error", &error.to_string());
                assert_hidden("check error (Debug)", &format!("{error:?}"));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
    });
    drop(runtime);
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("cannot connect"), "the failed connections were not logged: {logs}");
    assert_hidden("logs", &logs);
}

/// Masking is for display only: the password still reaches the server,
/// from the store's own section and from a `[[backends]]` entry.
#[tokio::test]
async fn passwords_in_settings_still_authenticate() {
    if !redis_available() {
        return;
    }
    let server = Server::start(&[]);
    server.cli(&["CONFIG", "SET", "requirepass", MARKER]);
    let port = server.port;
    let m = MARKER;
    // Generous bounds: the first decision waits for the connection, and
    // this test is about authentication, not speed.
    let slow = "socket_timeout = 5\nsocket_connect_timeout = 5";
    let inline = "socket_timeout = 5, socket_connect_timeout = 5";
    let files = [
        format!("backend = \"redis\"\n[redis]\nurl = \"redis://:{m}@127.0.0.1:{port}/0\"\n{slow}"),
        format!("backend = \"redis\"\n[redis]\nport = {port}\npassword = \"{m}\"\n{slow}"),
        format!(
            "backend = \"multi\"\n[[backends]]\nname = \"r\"\nbackend = \"redis\"\nconfig = {{ port = {port}, password = \"{m}\", {inline} }}"
        ),
    ];
    let limit = Limit::new(Rate::per_minute(5).unwrap(), Algorithm::FixedWindow);
    for text in files {
        let settings = Settings::from_toml(&text, "limits.toml", []).unwrap();
        let built = build_store(&settings, &StoreRegistry::new(), "limits.toml").await.unwrap();
        let checks = [LimitCheck { key: "auth", limit: &limit }];
        let decisions = built.store.check(CheckRequest::new(&checks, 1)).await;
        assert!(decisions.is_ok(), "{text}: {decisions:?}");
    }
}
