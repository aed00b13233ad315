//! Different limits and keys on different routes:
//!
//! - `GET /public`: 30 per minute per client IP;
//! - `GET /api/items`: 10 per second and 1000 per hour per `x-api-key`
//!   (requests without the header fall back to the client IP);
//! - `POST /login`: 5 per 15 minutes per IP, sliding window, answered with
//!   a custom body.
//!
//! ```sh
//! cargo run --example per_route
//! curl -si -H 'x-api-key: demo' http://127.0.0.1:3000/api/items
//! ```

use std::net::SocketAddr;

use axum::{
    Router,
    routing::{get, post},
};
use tower_ratelimit_smart::{Algorithm, Key, MemoryStore, RateLimitConfig, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One store for all routes; the policy names keep their counters apart.
    let store = MemoryStore::new();

    let public =
        RateLimitConfig::builder().policy("public").rate("30/m").key(Key::ip()).store(store.clone()).build()?;
    let api = RateLimitConfig::builder()
        .policy("api")
        .rate("10/s")
        .rate("1000/h")
        .algorithm(Algorithm::TokenBucket)
        .key(Key::header("x-api-key"))
        .store(store.clone())
        .build()?;
    let login = RateLimitConfig::builder()
        .policy("login")
        .rate("5/15m")
        .algorithm(Algorithm::SlidingLog)
        .key(Key::ip())
        .store(store)
        .on_limited(|_parts, _decisions| (http::StatusCode::TOO_MANY_REQUESTS, "Too many login attempts.\n"))
        .build()?;

    let app = Router::new()
        .route("/public", get(|| async { "public\n" }).layer(RateLimitLayer::new(public)))
        .route("/api/items", get(|| async { "[]\n" }).layer(RateLimitLayer::new(api)))
        .route("/login", post(|| async { "welcome\n" }).layer(RateLimitLayer::new(login)));

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
