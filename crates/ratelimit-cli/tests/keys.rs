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
    let key = "ratelimit:api:fixed_window:{203.0.113.9}";
    let limit = ["--rate", "2/m", "--algorithm", "fixed_window"];

    let (code, out) = ratelimit(&config, &[&["check", key, "--times", "3"][..], &limit].concat());
    assert_eq!((code, out.trim()), (0, "admitted 2 of 3"));
    let (code, out) = ratelimit(&config, &[&["peek", key][..], &limit].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("next request: denied") && out.contains("remaining after it: 0"), "{out}");
    assert!(out.contains("retry after:"), "{out}");

    let (code, out) = ratelimit(&config, &[&["reset", key][..], &limit].concat());
    assert_eq!((code, out.trim()), (0, format!("reset {key}").as_str()));
    let (code, out) = ratelimit(&config, &[&["peek", key][..], &limit].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("next request: allowed") && out.contains("remaining after it: 1"), "{out}");

    // Bad settings: exit 2 with the reason.
    std::fs::write(&config, "bakend = \"memory\"").unwrap();
    let (code, out) = ratelimit(&config, &[&["peek", key][..], &limit].concat());
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
    let key = "ratelimit:api:token_bucket:{203.0.113.9}";
    let (code, out) = ratelimit(&config, &["check", key, "--times", "3", "--rate", "2/d"]);
    assert_eq!((code, out.trim()), (0, "admitted 2 of 3"));
    let (code, out) = ratelimit(&config, &["peek", key, "--rate", "2/d"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("limit: 2/d (token_bucket)"), "{out}");
    let seconds = |label: &str| -> f64 {
        let line = out.lines().find_map(|l| l.strip_prefix(label)).unwrap_or_else(|| panic!("{label} {out}"));
        line.trim().trim_end_matches(" s").parse().unwrap()
    };
    let (retry, full) = (seconds("retry after:"), seconds("full again in:"));
    assert!((43_100.0..=43_200.0).contains(&retry) && (86_300.0..=86_400.0).contains(&full), "{out}");
}
