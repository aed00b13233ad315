//! The breaker's states and transitions, driven by a fake clock.

use super::*;
use crate::conformance::{Failure, FaultyStore};
use crate::{Algorithm, FakeClock, Limit, MemoryStore};

/// Extreme products saturate at the cap instead of panicking.
#[test]
fn the_backoff_saturates() {
    let max = Duration::from_secs(600);
    assert_eq!(backed_off(Duration::from_secs(30), 1e18, max), max);
    assert_eq!(backed_off(Duration::MAX, 100.0, max), max);
    assert_eq!(backed_off(Duration::from_secs(30), f64::INFINITY, max), max);
    assert_eq!(backed_off(Duration::from_secs(30), 2.0, max), Duration::from_secs(60));
}

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        recovery_timeout: Duration::from_secs(10),
        backoff_multiplier: 2.0,
        max_recovery_timeout: Duration::from_secs(30),
        half_open_max_calls: 1,
    }
}

fn setup() -> (CircuitBreaker<FaultyStore, FakeClock>, FaultyStore, FakeClock) {
    let flaky = FaultyStore::default();
    let clock = FakeClock::at_secs(1_000);
    let breaker = CircuitBreaker::with_clock(flaky.clone(), "flaky", config(), clock.clone()).unwrap();
    (breaker, flaky, clock)
}

async fn call(breaker: &CircuitBreaker<FaultyStore, FakeClock>) -> Result<Decisions, StoreError> {
    let limit = Limit::new("1000/s".parse().unwrap(), Algorithm::TokenBucket);
    let checks = [LimitCheck { key: "k", limit: &limit }];
    breaker.check(CheckRequest::new(&checks, 1)).await
}

#[tokio::test]
async fn opens_after_consecutive_failures_and_then_fails_fast() {
    let (breaker, flaky, _) = setup();
    flaky.fail_with(Some(Failure::Refused));
    for _ in 0..2 {
        assert!(matches!(call(&breaker).await, Err(StoreError::Backend { .. })));
    }
    // A success in between resets the count: failures must be consecutive.
    flaky.fail_with(None);
    call(&breaker).await.unwrap();
    flaky.fail_with(Some(Failure::Refused));
    for _ in 0..3 {
        assert!(matches!(call(&breaker).await, Err(StoreError::Backend { .. })));
    }
    assert_eq!(breaker.status().state, BreakerState::Open);
    let before = flaky.calls();
    for _ in 0..5 {
        match call(&breaker).await {
            Err(StoreError::CircuitOpen { retry_after, .. }) => assert_eq!(retry_after, Duration::from_secs(10)),
            other => panic!("expected a fast failure, got {other:?}"),
        }
    }
    assert_eq!(flaky.calls(), before, "an open breaker never touches the store");
    assert_eq!(breaker.status().rejected, 5);
}

#[tokio::test]
async fn probes_close_it_or_reopen_it_for_longer() {
    let (breaker, flaky, clock) = setup();
    flaky.fail_with(Some(Failure::Refused));
    for _ in 0..3 {
        let _ = call(&breaker).await;
    }
    clock.advance(Duration::from_secs(10));
    // The probe fails: open again, twice as long.
    assert!(matches!(call(&breaker).await, Err(StoreError::Backend { .. })));
    assert_eq!(breaker.status().state, BreakerState::Open);
    assert_eq!(breaker.status().retry_in, Some(Duration::from_secs(20)));
    clock.advance(Duration::from_secs(20));
    let _ = call(&breaker).await;
    // Capped at max_recovery_timeout.
    assert_eq!(breaker.status().retry_in, Some(Duration::from_secs(30)));
    clock.advance(Duration::from_secs(30));
    flaky.fail_with(None);
    call(&breaker).await.unwrap();
    let status = breaker.status();
    assert_eq!((status.state, status.consecutive_failures), (BreakerState::Closed, 0));
    // Back to the base timeout after closing.
    flaky.fail_with(Some(Failure::Refused));
    for _ in 0..3 {
        let _ = call(&breaker).await;
    }
    assert_eq!(breaker.status().retry_in, Some(Duration::from_secs(10)));
}

#[tokio::test]
async fn half_open_lets_only_the_probes_through() {
    let (breaker, flaky, clock) = setup();
    flaky.fail_with(Some(Failure::Refused));
    for _ in 0..3 {
        let _ = call(&breaker).await;
    }
    clock.advance(Duration::from_secs(10));
    flaky.fail_with(None);
    // Take the probe slot with a call that never finishes, then drop it.
    let limit = Limit::new("1000/s".parse().unwrap(), Algorithm::TokenBucket);
    let checks = [LimitCheck { key: "k", limit: &limit }];
    let admission = breaker.admit().unwrap();
    assert!(matches!(admission, Admission::Probe));
    assert!(matches!(call(&breaker).await, Err(StoreError::CircuitOpen { .. })), "one probe at a time");
    {
        let _abandoned = ProbeGuard { breaker: &breaker, armed: true };
    }
    // The slot is free again: a real probe closes the breaker.
    assert!(breaker.check(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed());
    assert_eq!(breaker.status().state, BreakerState::Closed);
}

#[tokio::test]
async fn timeouts_count_and_answers_about_the_request_do_not() {
    let (breaker, flaky, _) = setup();
    flaky.fail_with(Some(Failure::Timeout));
    for _ in 0..3 {
        let _ = call(&breaker).await;
    }
    assert_eq!(breaker.status().state, BreakerState::Open);
    let (breaker, _, _) = setup();
    for _ in 0..10 {
        let no_limits: [LimitCheck<'_>; 0] = [];
        assert!(matches!(breaker.check(CheckRequest::new(&no_limits, 1)).await, Err(StoreError::InvalidRequest(_))));
    }
    assert_eq!(breaker.status().state, BreakerState::Closed, "an invalid request is not a store failure");
}

#[tokio::test]
async fn health_shows_the_state_and_bad_config_is_refused() {
    let (breaker, flaky, _) = setup();
    let health = breaker.health().await.unwrap();
    assert!(health.details.contains(&("circuit".to_owned(), "closed".to_owned())));
    flaky.fail_with(Some(Failure::Refused));
    for _ in 0..3 {
        let _ = call(&breaker).await;
    }
    assert!(matches!(breaker.health().await, Err(StoreError::CircuitOpen { .. })));
    flaky.fail_with(None);
    let health = breaker.health().await.unwrap();
    assert!(health.details.contains(&("circuit".to_owned(), "open".to_owned())), "{health:?}");
    for (config, field) in [
        (BreakerConfig { failure_threshold: 0, ..config() }, "failure_threshold"),
        (BreakerConfig { backoff_multiplier: 0.5, ..config() }, "backoff_multiplier"),
        (BreakerConfig { backoff_multiplier: 1e18, ..config() }, "backoff_multiplier"),
        (BreakerConfig { max_recovery_timeout: Duration::from_secs(u64::MAX / 2), ..config() }, "max_recovery_timeout"),
        (BreakerConfig { max_recovery_timeout: Duration::from_secs(1), ..config() }, "max_recovery_timeout"),
        (BreakerConfig { half_open_max_calls: 0, ..config() }, "half_open_max_calls"),
    ] {
        let err = CircuitBreaker::new(FaultyStore::default(), "x", config).err().unwrap().to_string();
        assert!(err.contains(field), "{err}");
    }
}

#[tokio::test]
async fn memory_store_fast_path_goes_through_the_breaker() {
    let clock = FakeClock::at_secs(1_000);
    let breaker = CircuitBreaker::with_clock(MemoryStore::new(), "memory", config(), clock).unwrap();
    let limit = Limit::new("2/m".parse().unwrap(), Algorithm::FixedWindow);
    let checks = [LimitCheck { key: "k", limit: &limit }];
    let answer = breaker.check_now(CheckRequest::new(&checks, 1)).expect("the memory store answers at once");
    assert!(answer.unwrap().all_allowed());
}
