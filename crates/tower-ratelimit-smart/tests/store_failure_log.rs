//! Floods do not become log floods: an outage, or requests without a peer
//! address, are logged at most once a second per policy, with the number
//! held back in between; limited requests are counted, never logged.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, StatusCode};
use http_body_util::Full;
use ratelimit_core::conformance::DownStore;
use support::ok;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{RateLimitConfig, RateLimitLayer};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Counts events at `WARN` and above (`.0`) and all events (`.1`).
#[derive(Clone, Default)]
struct Warnings(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        self.1.fetch_add(1, Ordering::SeqCst);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn an_outage_logs_once_a_second_not_once_a_request() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let config = RateLimitConfig::builder().policy("outage").rate("5/m").store(DownStore).build().unwrap();
        let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(ok));
        let send = || async {
            let mut request = Request::new(Full::default());
            request.extensions_mut().insert("192.0.2.9:5000".parse::<SocketAddr>().unwrap());
            service.clone().oneshot(request).await.unwrap().status()
        };
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(send().await, StatusCode::OK, "fail open");
        }
        // One line per second started: a busy machine may stretch the burst.
        let allowed = 1 + started.elapsed().as_secs() as usize;
        let logged = warnings.0.load(Ordering::SeqCst);
        assert!((1..=allowed).contains(&logged), "{logged} warnings for a burst of failures");
        tokio::time::sleep(std::time::Duration::from_millis(1_050)).await;
        send().await;
        assert_eq!(warnings.0.load(Ordering::SeqCst), logged + 1, "another warning after a second");
    });
}

#[test]
fn requests_without_a_peer_address_are_reported_once() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let config = RateLimitConfig::builder().policy("no-peer").rate("5/m").build().unwrap();
        let layer = RateLimitLayer::new(config);
        assert!(layer.needs_connect_info(), "an IP key needs the peer address");
        let service = ServiceBuilder::new().layer(layer).service(service_fn(ok));
        for i in 0..100 {
            if i == 50 {
                // Past the old once-a-second throttle: still nothing more.
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            }
            // No ConnectInfo: the server was not set up to pass the peer address.
            let status = service.clone().oneshot(Request::new(Full::default())).await.unwrap().status();
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert_eq!(warnings.0.load(Ordering::SeqCst), 1, "one error line for a hundred requests");
        let by_user = RateLimitConfig::builder()
            .rate("5/m")
            .key(tower_ratelimit_smart::Key::user())
            .on_missing_key(tower_ratelimit_smart::MissingKey::Reject)
            .build()
            .unwrap();
        assert!(!RateLimitLayer::new(by_user).needs_connect_info(), "a user key that rejects without one does not");
        let global = RateLimitConfig::builder().rate("5/m").key(tower_ratelimit_smart::Key::global()).build().unwrap();
        assert!(!RateLimitLayer::new(global).needs_connect_info(), "nor a global key");
        let by_header = RateLimitConfig::builder()
            .rate("5/m")
            .key(tower_ratelimit_smart::Key::header("x-api-key"))
            .build()
            .unwrap();
        assert!(RateLimitLayer::new(by_header).needs_connect_info(), "a header key falls back to the address");
    });
}

#[test]
fn limited_requests_are_not_logged() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let config = RateLimitConfig::builder().policy("flood").rate("1/h").build().unwrap();
        let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(ok));
        let mut limited = 0;
        for _ in 0..100 {
            let mut request = Request::new(Full::default());
            request.extensions_mut().insert("192.0.2.9:5000".parse::<SocketAddr>().unwrap());
            if service.clone().oneshot(request).await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
                limited += 1;
            }
        }
        assert_eq!(limited, 99);
        assert_eq!(warnings.1.load(Ordering::SeqCst), 0, "no event for limited requests");
    });
}
