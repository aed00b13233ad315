//! A request the store did not decide is visible: in a response header,
//! in a metric and in the layer's health, with "connecting" told apart
//! from a failure.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use ratelimit_core::conformance::DownStore;
use ratelimit_core::store::ConnectingStore;
use support::ok;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{
    FailurePolicy, METRIC_DEGRADED, MemoryStore, PolicyState, RateLimitConfig, RateLimitLayer, SharedStore,
};

/// Status and `X-RateLimit-Status` of one request through `layer`.
async fn send(layer: &RateLimitLayer) -> (StatusCode, Option<String>) {
    let service = ServiceBuilder::new().layer(layer.clone()).service(service_fn(ok));
    let mut request = Request::new(Full::default());
    request.extensions_mut().insert("192.0.2.9:5000".parse::<SocketAddr>().unwrap());
    let response = service.oneshot(request).await.unwrap();
    let status = response.headers().get("x-ratelimit-status").map(|v| v.to_str().unwrap().to_owned());
    (response.status(), status)
}

fn degraded_counts(snapshot: metrics_util::debugging::Snapshot) -> Vec<(Vec<String>, u64)> {
    snapshot
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == METRIC_DEGRADED)
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                Some((key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect(), n))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn fail_local_decisions_are_flagged_counted_and_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = RateLimitLayer::new(
        RateLimitConfig::builder()
            .policy("local")
            .rate("2/h")
            .store(DownStore)
            .failure_policy(FailurePolicy::Local)
            .build()
            .unwrap(),
    );
    assert_eq!(layer.health()[0].state, PolicyState::Idle);
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let answers = [send(&layer).await, send(&layer).await, send(&layer).await];
            let local = Some("local".to_owned());
            assert_eq!(
                answers,
                [
                    (StatusCode::OK, local.clone()),
                    (StatusCode::OK, local.clone()),
                    (StatusCode::TOO_MANY_REQUESTS, local)
                ]
            );
        });
    });
    let health = &layer.health()[0];
    assert_eq!((health.state, health.degraded_decisions), (PolicyState::Degraded, 3), "{health:?}");
    let counts = degraded_counts(snapshotter.snapshot());
    assert_eq!(counts, vec![(vec!["policy=local".to_owned(), "decided_by=local".to_owned()], 3)]);
}

#[test]
fn fail_open_decisions_are_flagged_counted_and_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer =
        RateLimitLayer::new(RateLimitConfig::builder().policy("open").rate("2/h").store(DownStore).build().unwrap());
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            for _ in 0..3 {
                assert_eq!(send(&layer).await, (StatusCode::OK, Some("degraded".to_owned())));
            }
        });
    });
    let health = &layer.health()[0];
    assert_eq!((health.state, health.degraded_decisions), (PolicyState::Degraded, 3), "{health:?}");
    let counts = degraded_counts(snapshotter.snapshot());
    assert_eq!(counts, vec![(vec!["policy=open".to_owned(), "decided_by=fail_open".to_owned()], 3)]);
}

/// A store still connecting after its connect timeout is reported as
/// connecting, and the layer's state returns to ok once it has connected.
#[tokio::test]
async fn a_store_still_connecting_is_reported_as_connecting() {
    let (release, ready) = tokio::sync::oneshot::channel::<()>();
    let ready = std::sync::Mutex::new(Some(ready));
    let store = ConnectingStore::start("slow", Duration::from_millis(50), move || {
        let ready = ready.lock().unwrap().take();
        Box::pin(async move {
            if let Some(ready) = ready {
                let _ = ready.await;
            }
            Ok(SharedStore::new(MemoryStore::new()))
        })
    });
    let layer = RateLimitLayer::new(
        RateLimitConfig::builder()
            .policy("slow")
            .rate("2/h")
            .store(store)
            .failure_policy(FailurePolicy::Closed)
            .build()
            .unwrap(),
    );
    assert_eq!(send(&layer).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(layer.health()[0].state, PolicyState::Connecting);
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while send(&layer).await.0 != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "the store never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(layer.health()[0].state, PolicyState::Ok);
}

/// A store that answers with the wrong number of decisions (an empty
/// answer, or one too many).
struct Malformed(usize);

impl tower_ratelimit_smart::Store for Malformed {
    async fn check<'a>(
        &'a self,
        request: ratelimit_core::CheckRequest<'a>,
    ) -> Result<tower_ratelimit_smart::Decisions, ratelimit_core::StoreError> {
        let one = MemoryStore::new().check(request).await?;
        let mut decisions = tower_ratelimit_smart::Decisions::new();
        for _ in 0..self.0 {
            decisions.push(one.as_slice()[0]);
        }
        Ok(decisions)
    }
    async fn peek<'a>(
        &'a self,
        request: ratelimit_core::CheckRequest<'a>,
    ) -> Result<tower_ratelimit_smart::Decisions, ratelimit_core::StoreError> {
        self.check(request).await
    }
    async fn reset<'a>(&'a self, _: ratelimit_core::LimitCheck<'a>) -> Result<(), ratelimit_core::StoreError> {
        Ok(())
    }
    async fn health(&self) -> Result<ratelimit_core::store::Health, ratelimit_core::StoreError> {
        MemoryStore::new().health().await
    }
}

/// A malformed answer is a store failure: the failure policy answers, the
/// request is neither waved through as "allowed" nor a panic in the headers.
#[tokio::test]
async fn a_malformed_store_answer_is_a_store_failure() {
    for count in [0, 2] {
        let closed = RateLimitLayer::new(
            RateLimitConfig::builder()
                .rate("2/h")
                .store(Malformed(count))
                .failure_policy(FailurePolicy::Closed)
                .build()
                .unwrap(),
        );
        assert_eq!(send(&closed).await.0, StatusCode::SERVICE_UNAVAILABLE, "{count} decisions");
        let open = RateLimitLayer::new(RateLimitConfig::builder().rate("2/h").store(Malformed(count)).build().unwrap());
        assert_eq!(send(&open).await, (StatusCode::OK, Some("degraded".to_owned())), "{count} decisions");
    }
}
