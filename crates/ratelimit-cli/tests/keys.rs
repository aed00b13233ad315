//! `ratelimit check`, `peek` and `reset` on one key, across separate
//! runs of the tool sharing a SQLite file.

use std::process::Command;

fn ratelimit(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ratelimit")).args(args).arg("--config").arg(config).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap(), text)
}

#[test]
fn check_peek_and_reset_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("limits.toml");
    let url = format!("sqlite://{}", dir.path().join("limits.db").display());
    std::fs::write(&config, format!("backend = \"database\"\n[database]\nurl = \"{url}\"\n")).unwrap();
    // A policy built in code: `.policy("api").rate("2/m").algorithm(FixedWindow)`.
    // An hour's window: several processes run between check and peek.
    let client = ["--key", "ip:203.0.113.9", "--policy", "api", "--rate", "2/h", "--algorithm", "fixed_window"];
    let key = "ratelimit:api/2/h:fixed_window:{ip:203.0.113.9}";

    let (code, out) = ratelimit(&config, &[&["check", "--times", "3"][..], &client].concat());
    assert_eq!((code, out.trim()), (0, "admitted 2 of 3"));
    let (code, out) = ratelimit(&config, &[&["peek"][..], &client].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("key: {key}")), "the layer's key, computed: {out}");
    assert!(out.contains("next request: denied") && out.contains("remaining after it: 0"), "{out}");
    assert!(out.contains("retry after:"), "{out}");

    let (code, out) = ratelimit(&config, &[&["reset"][..], &client].concat());
    assert_eq!((code, out.trim()), (0, format!("reset {key}").as_str()));
    let (code, out) = ratelimit(&config, &[&["peek"][..], &client].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("next request: allowed") && out.contains("remaining after it: 1"), "{out}");

    // Bad settings: exit 2 with the reason.
    std::fs::write(&config, "bakend = \"memory\"").unwrap();
    let (code, out) = ratelimit(&config, &[&["peek"][..], &client].concat());
    assert_eq!(code, 2);
    assert!(out.contains("did you mean `backend`?"), "{out}");
}

/// Without `--algorithm`, a key is read under the store's own algorithm
/// when the settings give one: after two of two per day, a token bucket
/// has one token back in half a day (a fixed window would wait for its
/// end, when it is also full again).
#[test]
fn the_stores_algorithm_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("limits.toml");
    let url = format!("sqlite://{}", dir.path().join("limits.db").display());
    let text = format!(
        "backend = \"database\"\nalgorithm = \"fixed_window\"\n[database]\nurl = \"{url}\"\nalgorithm = \"token_bucket\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let client = ["--key", "ip:203.0.113.9", "--policy", "api", "--rate", "2/d"];
    let (code, out) = ratelimit(&config, &[&["check", "--times", "3"][..], &client].concat());
    assert_eq!((code, out.trim()), (0, "admitted 2 of 3"));
    let (code, out) = ratelimit(&config, &[&["peek"][..], &client].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("limit: 2/d (token_bucket)"), "{out}");
    let seconds = |label: &str| -> f64 {
        let line = out.lines().find_map(|l| l.trim().strip_prefix(label)).unwrap_or_else(|| panic!("{label} {out}"));
        line.trim().trim_end_matches(" s").parse().unwrap()
    };
    let (retry, full) = (seconds("retry after:"), seconds("full again in:"));
    assert!((43_100.0..=43_200.0).contains(&retry) && (86_300.0..=86_400.0).contains(&full), "{out}");
}

/// The keys the tool computes are the keys the layer writes: a request
/// through a layer built from the settings' `[middleware]` rules is seen
/// by `ratelimit peek` with the same `--path` and `--key`, in the same
/// SQLite file, and `ratelimit reset` gives the client its allowance back.
#[test]
fn peek_and_reset_see_what_the_layer_counted() {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_ratelimit_smart::RateLimitLayer;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("limits.toml");
    let url = format!("sqlite://{}", dir.path().join("limits.db").display());
    let text = format!(
        "backend = \"database\"\n[database]\nurl = \"{url}\"\n[middleware]\n[middleware.rate_limits]\n\"/auth/login\" = \"2/m\"\n"
    );
    std::fs::write(&config, &text).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = |path: &str| {
        runtime.block_on(async {
            let settings = ratelimit_core::Settings::from_toml(&text, "limits.toml", []).unwrap();
            let layer = RateLimitLayer::from_settings(&settings).await.unwrap();
            let ok = |_: Request<Full<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
            };
            let service = ServiceBuilder::new().layer(layer).service(service_fn(ok));
            let mut request = Request::builder().uri(path).body(Full::default()).unwrap();
            request.extensions_mut().insert("203.0.113.9:5000".parse::<SocketAddr>().unwrap());
            service.oneshot(request).await.unwrap().status()
        })
    };
    assert_eq!(status("/auth/login"), StatusCode::OK);
    let client = ["--key", "ip:203.0.113.9", "--path", "/auth/login"];
    let (code, out) = ratelimit(&config, &[&["peek"][..], &client].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("key: ratelimit:path_auth_login/2/m:sliding_window:{ip:203.0.113.9}"), "{out}");
    assert!(out.contains("remaining after it: 0"), "the layer's request is counted: {out}");
    assert_eq!(status("/auth/login"), StatusCode::OK);
    assert_eq!(status("/auth/login"), StatusCode::TOO_MANY_REQUESTS);
    let (code, out) = ratelimit(&config, &[&["reset"][..], &client].concat());
    assert_eq!(code, 0, "{out}");
    assert_eq!(status("/auth/login"), StatusCode::OK, "reset gives the client its allowance back");
    let (code, out) = ratelimit(&config, &["peek", "--key", "ip:203.0.113.9", "--path", "/elsewhere"]);
    assert_eq!(code, 2, "no rule covers the path: {out}");
}
