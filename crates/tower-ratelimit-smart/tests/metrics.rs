//! Decisions are counted in `metrics`, labelled by policy.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ratelimit_smart::{METRIC_ALLOWED, METRIC_LIMITED, RateLimitConfig, RateLimitLayer};

async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::default()))
}

#[test]
fn allowed_and_limited_requests_are_counted_per_policy() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let config = RateLimitConfig::builder().policy("login").rate("2/m").build().unwrap();
            let service = ServiceBuilder::new().layer(RateLimitLayer::new(config)).service(service_fn(ok));
            for _ in 0..5 {
                let mut request = Request::new(Full::default());
                request.extensions_mut().insert("192.0.2.9:5000".parse::<SocketAddr>().unwrap());
                service.clone().oneshot(request).await.unwrap();
            }
        });
    });
    let counts: Vec<(String, Vec<String>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((
                key.key().name().to_owned(),
                key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect(),
                n,
            )),
            _ => None,
        })
        .collect();
    assert!(counts.contains(&(METRIC_ALLOWED.to_owned(), vec!["policy=login".to_owned()], 2)), "{counts:?}");
    assert!(
        counts.contains(&(METRIC_LIMITED.to_owned(), vec!["policy=login".to_owned(), "mode=enforce".to_owned()], 3)),
        "{counts:?}"
    );
}
