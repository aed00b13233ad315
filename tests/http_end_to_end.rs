//! End-to-end: a real axum server on 127.0.0.1:0, a real HTTP client.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use ratelimit_core::conformance::DownStore;
use ratelimit_core::{Decisions, FakeClock, MemoryStore};
use reqwest::StatusCode;
use tower_ratelimit_smart::{
    Algorithm, FailurePolicy, HeaderStyle, Key, MissingKey, Mode, RateLimitConfig, RateLimitConfigBuilder,
    RateLimitLayer, UserId,
};

/// 15 s into a minute: fixed windows of one minute end 45 s later.
const START_SECS: u64 = 60 * 28_333_333 + 15;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    format!("http://{addr}")
}

fn fake_store() -> (MemoryStore<FakeClock>, FakeClock) {
    let clock = FakeClock::at_secs(START_SECS);
    (MemoryStore::builder().clock(clock.clone()).build(), clock)
}

/// Five per minute in fixed windows, whose reset this file's tests know.
fn five_per_minute() -> RateLimitConfigBuilder {
    RateLimitConfig::builder().rate("5/m").algorithm(Algorithm::FixedWindow).key(Key::ip())
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn get_status(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn sixth_request_gets_429_with_exact_headers() {
    let (store, _clock) = fake_store();
    let config = five_per_minute().store(store).build().unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    for remaining in (0..5).rev() {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit"), "5");
        assert_eq!(header(&response, "x-ratelimit-remaining"), remaining.to_string());
        assert_eq!(header(&response, "x-ratelimit-reset"), "45");
        assert_eq!(header(&response, "ratelimit-policy"), "\"5/m\";q=5;w=60");
        assert_eq!(header(&response, "ratelimit"), format!("\"5/m\";r={remaining};t=45"));
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "45");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&response, "x-ratelimit-reset"), "45");
    assert_eq!(header(&response, "ratelimit"), "\"5/m\";r=0;t=45");
    assert_eq!(header(&response, "content-type"), "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["retry-after"], 45);
    assert_eq!(body["title"], "Too Many Requests");
    assert!(body["type"].as_str().unwrap().ends_with("quota-exceeded"));
}

#[tokio::test]
async fn window_reset_lets_the_client_back_in() {
    let (store, clock) = fake_store();
    let config = RateLimitConfig::builder().rate("1/m").algorithm(Algorithm::FixedWindow).store(store).build().unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, &url, &[]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &url, &[]).await, StatusCode::TOO_MANY_REQUESTS);
    clock.advance(std::time::Duration::from_secs(45));
    assert_eq!(get_status(&client, &url, &[]).await, StatusCode::OK);
}

#[tokio::test]
async fn per_route_limits_are_independent() {
    let store = MemoryStore::new();
    let strict = RateLimitConfig::builder().policy("strict").rate("2/m").store(store.clone()).build().unwrap();
    let loose = RateLimitConfig::builder().policy("loose").rate("4/m").store(store).build().unwrap();
    let app = Router::new()
        .route("/loose", get(|| async { "l" }))
        .route_layer(RateLimitLayer::new(loose))
        .route("/strict", get(|| async { "s" }).layer(RateLimitLayer::new(strict)));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    let strict_url = format!("{url}/strict");
    let loose_url = format!("{url}/loose");
    assert_eq!(get_status(&client, &strict_url, &[]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &strict_url, &[]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &strict_url, &[]).await, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..4 {
        assert_eq!(get_status(&client, &loose_url, &[]).await, StatusCode::OK);
    }
    assert_eq!(get_status(&client, &loose_url, &[]).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn several_limits_on_one_route_report_every_policy() {
    let config = RateLimitConfig::builder()
        .policy("api")
        .rate("2/s")
        .rate("3/h")
        .algorithm(Algorithm::TokenBucket)
        .store(fake_store().0)
        .build()
        .unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(header(&response, "ratelimit-policy"), "\"api/2/s\";q=2;w=1, \"api/3/h\";q=3;w=3600");
    assert_eq!(header(&response, "ratelimit"), "\"api/2/s\";r=1;t=1, \"api/3/h\";r=2;t=1200");
    assert_eq!(get_status(&client, &url, &[]).await, StatusCode::OK);
    let denied = client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // The per-second bucket binds: one unit back in half a second.
    assert_eq!(header(&denied, "retry-after"), "1");
}

#[tokio::test]
async fn header_keys_are_separate_buckets_and_fall_back_to_the_ip() {
    let config = RateLimitConfig::builder().rate("1/m").key(Key::header("x-api-key")).build().unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, &url, &[("x-api-key", "alpha")]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &url, &[("x-api-key", "alpha")]).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get_status(&client, &url, &[("x-api-key", "beta")]).await, StatusCode::OK);
    // No header: the client's own address bucket, not a shared "missing" one,
    // and a header that spells the address does not reach that bucket.
    assert_eq!(get_status(&client, &url, &[("x-api-key", "ip:127.0.0.1")]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &url, &[]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &url, &[]).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn missing_key_can_reject_or_skip() {
    let reject =
        RateLimitConfig::builder().rate("1/m").key(Key::user()).on_missing_key(MissingKey::Reject).build().unwrap();
    let skip =
        RateLimitConfig::builder().rate("1/m").key(Key::user()).on_missing_key(MissingKey::Skip).build().unwrap();
    let app = Router::new()
        .route("/reject", get(|| async { "ok" }).layer(RateLimitLayer::new(reject)))
        .route("/skip", get(|| async { "ok" }).layer(RateLimitLayer::new(skip)));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    let response = client.get(format!("{url}/reject")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "content-type"), "application/problem+json");
    for _ in 0..3 {
        assert_eq!(get_status(&client, &format!("{url}/skip"), &[]).await, StatusCode::OK);
    }
}

async fn fake_auth(mut request: Request, next: Next) -> Response {
    if let Some(user) = request.headers().get("x-user").and_then(|v| v.to_str().ok()) {
        let user = UserId::new(user);
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

#[tokio::test]
async fn user_keys_follow_the_identity_from_the_auth_layer() {
    let config = RateLimitConfig::builder().rate("1/m").key(Key::user()).build().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(config))
        .layer(middleware::from_fn(fake_auth));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, &url, &[("x-user", "ann")]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &url, &[("x-user", "ann")]).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get_status(&client, &url, &[("x-user", "bob")]).await, StatusCode::OK);
}

#[tokio::test]
async fn spoofed_forwarded_for_is_ignored_without_trusted_proxies() {
    let config = RateLimitConfig::builder().rate("1/m").build().unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, &url, &[("x-forwarded-for", "198.51.100.1")]).await, StatusCode::OK);
    for spoof in ["198.51.100.2", "203.0.113.9, 10.0.0.1", "garbage"] {
        let status = get_status(&client, &url, &[("x-forwarded-for", spoof), ("x-real-ip", spoof)]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{spoof}");
    }
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_honoured() {
    let config =
        RateLimitConfig::builder().rate("1/m").trusted_proxies(["127.0.0.1/32", "10.0.0.0/8"]).build().unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    // The rightmost untrusted hop is the client; what it claims to its left is ignored.
    let first = [("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.3")];
    assert_eq!(get_status(&client, &url, &first).await, StatusCode::OK);
    let same_client = [("x-forwarded-for", "2.2.2.2, 198.51.100.7")];
    assert_eq!(get_status(&client, &url, &same_client).await, StatusCode::TOO_MANY_REQUESTS);
    let other_client = [("x-forwarded-for", "198.51.100.8")];
    assert_eq!(get_status(&client, &url, &other_client).await, StatusCode::OK);
}

#[tokio::test]
async fn shadow_mode_never_blocks_and_sends_no_headers() {
    let config = RateLimitConfig::builder().rate("1/m").mode(Mode::Shadow).build().unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
        assert!(response.headers().get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn annotate_mode_hands_the_decision_to_the_handler() {
    let config = RateLimitConfig::builder().rate("2/m").mode(Mode::Annotate).store(fake_store().0).build().unwrap();
    let handler = |Extension(decisions): Extension<Decisions>| async move {
        format!("allowed={} remaining={}", decisions.all_allowed(), decisions[0].remaining)
    };
    let url = serve(Router::new().route("/", get(handler)).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit"), "2");
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(bodies, ["allowed=true remaining=1", "allowed=true remaining=0", "allowed=false remaining=0"]);
}

#[tokio::test]
async fn header_style_none_and_legacy() {
    let none = RateLimitConfig::builder().policy("n").rate("1/m").headers(HeaderStyle::None).build().unwrap();
    let legacy = RateLimitConfig::builder().policy("l").rate("1/m").headers(HeaderStyle::Legacy).build().unwrap();
    let app = Router::new()
        .route("/none", get(|| async { "ok" }).layer(RateLimitLayer::new(none)))
        .route("/legacy", get(|| async { "ok" }).layer(RateLimitLayer::new(legacy)));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    let response = client.get(format!("{url}/none")).send().await.unwrap();
    assert!(response.headers().get("x-ratelimit-limit").is_none() && response.headers().get("ratelimit").is_none());
    let response = client.get(format!("{url}/none")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some(), "a 429 always says when to retry");
    let response = client.get(format!("{url}/legacy")).send().await.unwrap();
    assert_eq!(header(&response, "x-ratelimit-limit"), "1");
    assert!(response.headers().get("ratelimit-policy").is_none());
}

#[tokio::test]
async fn store_failure_fails_open_or_closed_as_configured() {
    let open = RateLimitConfig::builder().policy("open").rate("1/m").store(DownStore).build().unwrap();
    let closed = RateLimitConfig::builder()
        .policy("closed")
        .rate("1/m")
        .store(DownStore)
        .failure_policy(FailurePolicy::Closed)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/open", get(|| async { "ok" }).layer(RateLimitLayer::new(open)))
        .route("/closed", get(|| async { "ok" }).layer(RateLimitLayer::new(closed)));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client.get(format!("{url}/open")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-status"), "degraded");
        let response = client.get(format!("{url}/closed")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response, "content-type"), "application/problem+json");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], 503);
    }
}

#[tokio::test]
async fn local_failure_policy_enforces_the_limit_in_process() {
    let config = RateLimitConfig::builder()
        .policy("local")
        .rate("2/m")
        .store(DownStore)
        .failure_policy(FailurePolicy::Local)
        .build()
        .unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }).layer(RateLimitLayer::new(config)));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = client.get(&url).send().await.unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::OK {
            assert_eq!(header(&response, "x-ratelimit-limit"), "2");
        }
    }
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]
    );
}

#[tokio::test]
async fn allow_list_skip_and_method_filter_bypass_the_limit() {
    let allow = RateLimitConfig::builder().policy("allow").rate("1/m").allow_ips(["127.0.0.0/8"]).build().unwrap();
    let skip = RateLimitConfig::builder()
        .policy("skip")
        .rate("1/m")
        .skip(|parts| parts.uri.query() == Some("health"))
        .build()
        .unwrap();
    let methods = RateLimitConfig::builder().policy("post").rate("1/m").methods([http::Method::POST]).build().unwrap();
    let app = Router::new()
        .route("/allow", get(|| async { "ok" }).layer(RateLimitLayer::new(allow)))
        .route("/skip", get(|| async { "ok" }).layer(RateLimitLayer::new(skip)))
        .route("/post", get(|| async { "ok" }).post(|| async { "ok" }).layer(RateLimitLayer::new(methods)));
    let url = serve(app).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(get_status(&client, &format!("{url}/allow"), &[]).await, StatusCode::OK);
        assert_eq!(get_status(&client, &format!("{url}/skip?health"), &[]).await, StatusCode::OK);
        assert_eq!(get_status(&client, &format!("{url}/post"), &[]).await, StatusCode::OK);
    }
    assert_eq!(get_status(&client, &format!("{url}/skip"), &[]).await, StatusCode::OK);
    assert_eq!(get_status(&client, &format!("{url}/skip"), &[]).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(client.post(format!("{url}/post")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(client.post(format!("{url}/post")).send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn cost_function_charges_several_units() {
    let config = RateLimitConfig::builder()
        .rate("10/m")
        .store(fake_store().0)
        .cost(|parts| parts.headers.get("x-cost").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1))
        .build()
        .unwrap();
    let url = serve(Router::new().route("/", get(|| async { "ok" })).layer(RateLimitLayer::new(config))).await;
    let client = reqwest::Client::new();
    let response = client.get(&url).header("x-cost", "7").send().await.unwrap();
    assert_eq!(header(&response, "x-ratelimit-remaining"), "3");
    let response = client.get(&url).header("x-cost", "4").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "x-ratelimit-remaining"), "3", "a denied request is not charged");
    let response = client.get(&url).header("x-cost", "11").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_none(), "waiting cannot help a request above capacity");
    let response = client.get(&url).header("x-cost", "3").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn middleware_settings_apply_prefix_rules_default_rate_and_skip_paths() {
    let text = r#"
[middleware]
default_rate = "3/m"
skip_paths = ["/health"]
[middleware.rate_limits]
"/auth/login" = "2/m"
"/api/" = "4/m"
"#;
    let settings = ratelimit_core::Settings::from_toml(text, "limits.toml", Vec::new()).unwrap();
    let layer = RateLimitLayer::from_settings(&settings).await.unwrap();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route("/health", get(|| async { "ok" }))
        .route("/auth/login", get(|| async { "in" }))
        .route("/api/{item}", get(|| async { "item" }))
        .layer(layer);
    let url = serve(app).await;
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(format!("{url}{path}")).send().await.unwrap().status() }
    };
    // Every path under a prefix counts in one bucket per client.
    for path in ["/api/a", "/api/b", "/api/c", "/api/d"] {
        assert_eq!(status(path).await, StatusCode::OK, "{path}");
    }
    assert_eq!(status("/api/e").await, StatusCode::TOO_MANY_REQUESTS);
    // Other prefixes and the default rate have buckets of their own.
    assert_eq!(status("/auth/login").await, StatusCode::OK);
    assert_eq!(status("/auth/login").await, StatusCode::OK);
    assert_eq!(status("/auth/login").await, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..3 {
        assert_eq!(status("/").await, StatusCode::OK);
    }
    assert_eq!(status("/").await, StatusCode::TOO_MANY_REQUESTS);
    // Skipped paths are never limited.
    for _ in 0..10 {
        assert_eq!(status("/health").await, StatusCode::OK);
    }
    let response = client.get(format!("{url}/api/f")).send().await.unwrap();
    assert!(header(&response, "ratelimit-policy").contains("path_api"), "{:?}", response.headers());
}

#[tokio::test]
async fn middleware_settings_trust_only_the_listed_proxies() {
    let text = "[middleware]\ndefault_rate = \"1/m\"\ntrusted_proxies = [\"127.0.0.1/32\"]";
    let settings = ratelimit_core::Settings::from_toml(text, "limits.toml", Vec::new()).unwrap();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .layer(RateLimitLayer::from_settings(&settings).await.unwrap());
    let url = serve(app).await;
    let client = reqwest::Client::new();
    // The test client connects from 127.0.0.1, a trusted proxy: the
    // forwarded addresses are the clients, each with its own bucket.
    for client_ip in ["203.0.113.1", "203.0.113.2"] {
        let status = get_status(&client, &url, &[("x-forwarded-for", client_ip)]).await;
        assert_eq!(status, StatusCode::OK, "{client_ip}");
    }
    assert_eq!(get_status(&client, &url, &[("x-forwarded-for", "203.0.113.1")]).await, StatusCode::TOO_MANY_REQUESTS);

    let bad = "[middleware]\ndefault_rate = \"1/m\"\ntrusted_proxies = [\"10.0.0.0/99\"]";
    let settings = ratelimit_core::Settings::from_toml(bad, "limits.toml", Vec::new()).unwrap();
    let error = RateLimitLayer::from_settings(&settings).await.unwrap_err().to_string();
    assert!(error.contains("middleware.trusted_proxies"), "{error}");
}
