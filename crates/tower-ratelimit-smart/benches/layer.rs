#![allow(missing_docs)] // criterion_group! generates undocumented items.

//! Per-request overhead of the layer over a bare `service_fn`, against
//! tower_governor with an IP key and headers on, in the same run.
//!
//! `cargo bench -p tower-ratelimit-smart --bench layer`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_ratelimit_smart::{Algorithm, HeaderStyle, Key, MemoryStore, RateLimitConfig, RateLimitLayer};

const KEYS: u32 = 1_000_000;

async fn ok(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

fn request(ip: u32) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ip)), 40_000);
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

/// Drives one request through `service` to completion; the memory store and
/// governor never wait, so a no-op waker suffices and keeps a runtime's
/// scheduling out of the numbers.
fn drive<S>(service: &mut S, request: Request<Body>) -> u16
where
    S: Service<Request<Body>>,
    S::Response: Status,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = service.poll_ready(&mut cx);
    let mut future = std::pin::pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(response)) => response.status(),
        _ => 0,
    }
}

trait Status {
    fn status(&self) -> u16;
}

impl<B> Status for Response<B> {
    fn status(&self) -> u16 {
        Response::status(self).as_u16()
    }
}

fn ours(rate: &str, style: HeaderStyle) -> RateLimitLayer {
    let store = MemoryStore::builder().max_keys(2 * KEYS as usize).cleanup_interval(None).build();
    let config = RateLimitConfig::builder()
        .rate(rate)
        .algorithm(Algorithm::TokenBucket)
        .key(Key::ip())
        .headers(style)
        .store(store)
        .build()
        .unwrap();
    RateLimitLayer::new(config)
}

fn layer_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");
    let bare = service_fn(ok);
    group.bench_function("bare_service_fn", |b| {
        let mut svc = bare;
        b.iter(|| black_box(drive(&mut svc, request(1))))
    });

    // Allow path on one client (a limit no benchmark reaches), with the
    // three legacy headers (as tower_governor sends) and with both sets.
    for (name, style) in [("ours_allow", HeaderStyle::Legacy), ("ours_allow_both_header_sets", HeaderStyle::Both)] {
        let mut svc = ours("4000000000/s", style).layer(service_fn(ok));
        group.bench_function(BenchmarkId::new(name, "one_ip"), |b| b.iter(|| black_box(drive(&mut svc, request(1)))));
    }
    let config =
        GovernorConfigBuilder::default().per_nanosecond(1).burst_size(u32::MAX).use_headers().finish().unwrap();
    let mut gov = GovernorLayer::new(config).layer(service_fn(ok));
    group.bench_function(BenchmarkId::new("tower_governor_allow", "one_ip"), |b| {
        b.iter(|| black_box(drive(&mut gov, request(1))))
    });

    // Allow path over a million clients.
    let mut svc = ours("4000000000/s", HeaderStyle::Legacy).layer(service_fn(ok));
    let mut i = 0u32;
    group.bench_function(BenchmarkId::new("ours_allow", "1M_ips"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(drive(&mut svc, request(i)))
        })
    });
    let config =
        GovernorConfigBuilder::default().per_nanosecond(1).burst_size(u32::MAX).use_headers().finish().unwrap();
    let mut gov = GovernorLayer::new(config).layer(service_fn(ok));
    let mut i = 0u32;
    group.bench_function(BenchmarkId::new("tower_governor_allow", "1M_ips"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(drive(&mut gov, request(i)))
        })
    });

    // Reject path: one request per hour, long used up.
    let mut svc = ours("1/h", HeaderStyle::Legacy).layer(service_fn(ok));
    assert_eq!(drive(&mut svc, request(1)), 200);
    assert_eq!(drive(&mut svc, request(1)), 429);
    group.bench_function(BenchmarkId::new("ours_429", "one_ip"), |b| b.iter(|| black_box(drive(&mut svc, request(1)))));
    let config = GovernorConfigBuilder::default().per_second(3600).burst_size(1).use_headers().finish().unwrap();
    let mut gov = GovernorLayer::new(config).layer(service_fn(ok));
    assert_eq!(drive(&mut gov, request(1)), 200);
    assert_eq!(drive(&mut gov, request(1)), 429);
    group.bench_function(BenchmarkId::new("tower_governor_429", "one_ip"), |b| {
        b.iter(|| black_box(drive(&mut gov, request(1))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = layer_overhead
}
criterion_main!(benches);
