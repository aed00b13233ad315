//! A server whose rate limits come from a settings file's `[middleware]`
//! section, applied to every route.
//!
//! ```sh
//! cargo run --example server -- --config examples/limits.toml [--bind 127.0.0.1:3000]
//! curl -si http://127.0.0.1:3000/auth/login -X POST
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use ratelimit_core::Settings;
use tower_ratelimit_smart::RateLimitLayer;

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The limiter's warnings (a store that fails or cannot connect) on stderr.
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let (config, bind) = arguments()?;
    let settings = Settings::from_file(&config)?;
    let limiter = RateLimitLayer::from_settings(&settings).await?;
    let app = Router::new()
        .route("/", get(|| async { "home\n" }))
        .route("/api/items", get(|| async { "items: apple, pear\n" }))
        .route("/auth/login", post(|| async { "logged in\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .layer(limiter);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    // Printed once the socket accepts connections: scripts wait for it.
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

/// `--config FILE` (required) and `--bind ADDR` (default 127.0.0.1:3000).
fn arguments() -> Result<(String, String), String> {
    let usage = "usage: server --config FILE [--bind ADDR]";
    let mut config = None;
    let mut bind = "127.0.0.1:3000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(args.next().ok_or(usage)?),
            "--bind" => bind = args.next().ok_or(usage)?,
            other => return Err(format!("unknown argument {other:?}; {usage}")),
        }
    }
    Ok((config.ok_or(usage)?, bind))
}
