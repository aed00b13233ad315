//! A store's own `algorithm` (`[redis] algorithm`, `[database] algorithm`)
//! is the one a layer built from settings runs, seen from outside: in the
//! headers of a real HTTP exchange and in the keys left in Redis.
//!
//! The limit is 2 per day with the top-level `algorithm = "fixed_window"`.
//! Once two requests have passed, a fixed window answers the third with
//! `Retry-After` equal to `X-RateLimit-Reset`: both are the window's end.
//! A token bucket answers with half a day (one token's refill) and a
//! reset of a whole day (the bucket full again).

#[path = "../crates/ratelimit-core/tests/support/redis_servers.rs"]
mod redis_servers;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use ratelimit_core::Settings;
use redis_servers::redis_available;
use reqwest::StatusCode;
use tower_ratelimit_smart::RateLimitLayer;

const HALF_A_DAY: u64 = 43_200;
const A_DAY: u64 = 86_400;

/// The `Retry-After` and `X-RateLimit-Reset` of the third request to a
/// server limited at 2 per day by a layer built from `text`.
async fn third_request(text: &str) -> (u64, u64) {
    let settings = Settings::from_toml(text, "limits.toml", Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let layer = RateLimitLayer::from_settings(&settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/", get(|| async { "ok" })).layer(layer);
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    let client = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let seconds = |name: &str| -> u64 {
        let value = response.headers().get(name).unwrap_or_else(|| panic!("no {name}: {:?}", response.headers()));
        value.to_str().unwrap().parse().unwrap()
    };
    (seconds("retry-after"), seconds("x-ratelimit-reset"))
}

fn settings(store: &str, own_algorithm: Option<&str>) -> String {
    let own = own_algorithm.map(|a| format!("algorithm = \"{a}\"\n")).unwrap_or_default();
    format!(
        "backend = \"{}\"\nalgorithm = \"fixed_window\"\n{store}{own}\
         [middleware]\ndefault_rate = \"2/d\"\nkey = \"global\"\n",
        if store.starts_with("[redis]") { "redis" } else { "database" },
    )
}

fn assert_token_bucket((retry_after, reset): (u64, u64)) {
    // Headers round up to whole seconds; a second may pass meanwhile.
    assert!((HALF_A_DAY - 1..=HALF_A_DAY).contains(&retry_after), "retry after {retry_after} s");
    assert!((A_DAY - 1..=A_DAY).contains(&reset), "reset {reset} s");
}

fn assert_fixed_window((retry_after, reset): (u64, u64)) {
    assert_eq!(retry_after, reset, "a fixed window is retried when it resets");
    // A day-long window ends at midnight UTC, which tells it from a log or
    // a bucket (both full again a day after the first request).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let to_midnight = A_DAY - now % A_DAY;
    assert!(reset.abs_diff(to_midnight) <= 2, "reset {reset} s, the window ends in {to_midnight} s");
}

#[tokio::test]
async fn the_redis_stores_algorithm_is_the_layers_default() {
    if !redis_available() {
        return;
    }
    for (own, key_part) in [(Some("token_bucket"), ":token_bucket:"), (None, ":fixed_window:")] {
        let server = tokio::task::spawn_blocking(|| redis_servers::Server::start(&[])).await.unwrap();
        let store = format!("[redis]\nurl = {:?}\nsocket_timeout = 5.0\nsocket_connect_timeout = 5.0\n", server.url());
        let headers = third_request(&settings(&store, own)).await;
        match own {
            Some(_) => assert_token_bucket(headers),
            None => assert_fixed_window(headers),
        }
        let keys = server.cli(&["KEYS", "*"]);
        assert!(keys.lines().count() == 1 && keys.contains(key_part), "{own:?}: {keys}");
    }
}

#[tokio::test]
async fn the_database_stores_algorithm_is_the_layers_default() {
    let store = "[database]\nurl = \"sqlite::memory:\"\n";
    assert_token_bucket(third_request(&settings(store, Some("token_bucket"))).await);
    assert_fixed_window(third_request(&settings(store, None)).await);
}
