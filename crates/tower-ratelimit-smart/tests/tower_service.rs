//! The layer as a plain Tower middleware, without axum's router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use ratelimit_core::{CheckRequest, Decisions, Health, LimitCheck, MemoryStore, Store, StoreError};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{RateLimitConfig, RateLimitLayer};

fn request_from(peer: &str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from_static(b"hi")));
    request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
    request
}

async fn echo(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    Ok(Response::new(Full::new(body)))
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn works_in_a_service_builder_and_clones_share_the_store() {
    let config = RateLimitConfig::builder().rate("2/m").build().unwrap();
    let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(echo));
    let first = service.clone();
    let response = assert_send(first.oneshot(request_from("192.0.2.1:1000"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "hi");
    let response = service.clone().oneshot(request_from("192.0.2.1:1001")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = service.clone().oneshot(request_from("192.0.2.1:1002")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 429);
    // Another client has its own bucket.
    let response = service.oneshot(request_from("192.0.2.2:1000")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A store that answers only after a delay, as a networked store would,
/// so the middleware takes its asynchronous path.
struct Slow(MemoryStore);

impl Store for Slow {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.0.check(request).await
    }
    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.0.peek(request).await
    }
    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        self.0.reset(limit).await
    }
    async fn health(&self) -> Result<Health, StoreError> {
        self.0.health().await
    }
}

#[tokio::test]
async fn stores_that_wait_are_awaited() {
    let config = RateLimitConfig::builder().rate("1/m").store(Slow(MemoryStore::new())).build().unwrap();
    let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(echo));
    let response = service.clone().oneshot(request_from("192.0.2.1:1000")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    let response = service.oneshot(request_from("192.0.2.1:1000")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn concurrent_requests_admit_exactly_the_limit() {
    let config = RateLimitConfig::builder().rate("100/h").store(Slow(MemoryStore::new())).build().unwrap();
    let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(echo));
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(request_from(&format!("198.51.100.4:{}", 1000 + i))).await })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().status() == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
}

#[test]
fn the_layer_fits_axum_method_routers_and_route_layers() {
    use axum::{Router, routing::get};
    let config = RateLimitConfig::builder().rate("1/s").build().unwrap();
    let layer = RateLimitLayer::new(config);
    let _: Router = Router::new()
        .route("/a", get(|| async { "a" }).layer(layer.clone()))
        .route("/b", get(|| async { "b" }))
        .route_layer(layer.clone())
        .layer(layer);
}

/// An `on_limited` handler sees the request's head and the decisions and
/// may return any response-like value; the layer still adds its headers.
#[tokio::test]
async fn a_limited_handler_sees_the_request_and_answers_its_own_way() {
    let config = RateLimitConfig::builder()
        .rate("1/m")
        .on_limited(|parts, decisions| {
            let remaining = decisions.as_slice()[0].remaining;
            (StatusCode::SERVICE_UNAVAILABLE, format!("slow down on {} ({remaining} left)", parts.uri.path()))
        })
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(echo));
    let at = |path: &str| {
        let mut request = request_from("192.0.2.9:1000");
        *request.uri_mut() = path.parse().unwrap();
        request
    };
    assert_eq!(service.clone().oneshot(at("/a")).await.unwrap().status(), StatusCode::OK);
    let response = service.clone().oneshot(at("/login")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"), "the layer's headers are added");
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "slow down on /login (0 left)");
}
