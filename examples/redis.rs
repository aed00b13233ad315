//! Rate limiting shared by every app server, in Redis.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis
//! curl -si http://127.0.0.1:3000/
//! ```
//!
//! Start two copies on different `BIND` addresses: they share the limit,
//! because the counters and the clock that decides are Redis's.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use ratelimit_core::redis::{RedisSettings, RedisStore};
use tower_ratelimit_smart::{Algorithm, FailurePolicy, Key, RateLimitConfig, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = RedisStore::connect(RedisSettings::from_url(&url)).await?;
    let config = RateLimitConfig::builder()
        .policy("demo")
        .rate("10/m")
        .algorithm(Algorithm::SlidingLog)
        .key(Key::ip())
        .store(store)
        // If Redis goes away, let requests through (flagged) rather than fail them.
        .failure_policy(FailurePolicy::Open)
        .build()?;
    let app =
        Router::new().route("/", get(|| async { "hello from behind Redis\n" })).layer(RateLimitLayer::new(config));

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Listening on http://{} with counters in {url}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
