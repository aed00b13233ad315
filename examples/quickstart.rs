//! Limits `GET /` to 5 requests per minute per client IP, in memory.
//!
//! ```sh
//! cargo run --example quickstart          # BIND=0.0.0.0:8080 to change the address
//! for i in $(seq 6); do curl -si http://127.0.0.1:3000/ | head -1; done
//! ```

use std::net::SocketAddr;

use axum::{Router, routing::get};
use tower_ratelimit_smart::{Key, RateLimitConfig, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limiter = RateLimitLayer::new(RateLimitConfig::builder().rate("5/m").key(Key::ip()).build()?);
    let app = Router::new().route("/", get(|| async { "Hello! Try me six times within a minute.\n" })).layer(limiter);

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let url = format!("http://{}/", listener.local_addr()?);
    println!("Listening on {url} (5 requests per minute per client IP)");
    println!("Try: for i in $(seq 6); do curl -si {url} | grep -iE '^(HTTP|x-ratelimit|retry-after)'; done");
    // The IP key reads the peer address, which axum provides with connect info.
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
