//! A custom backend from four counter operations.
//!
//! Implement [`CounterStore`] (increment with expiry, read, read the expiry,
//! delete) over any database and wrap it in [`CounterAdapter`] to get a
//! fixed-window store. This one keeps counters in a `HashMap` to stay
//! self-contained.
//!
//! ```sh
//! cargo run --example custom_store
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ratelimit_core::{
    Algorithm, CheckRequest, CounterAdapter, CounterStore, Limit, LimitCheck, Store, StoreError, store_key,
};

#[derive(Default)]
struct MapCounters {
    counters: Mutex<HashMap<String, (i64, Instant)>>,
}

impl MapCounters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Instant)>> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CounterStore for MapCounters {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, StoreError> {
        let mut map = self.lock();
        let now = Instant::now();
        let entry = map.entry(key.to_owned()).or_insert((0, now + ttl));
        if entry.1 <= now {
            *entry = (0, now + ttl);
        }
        entry.0 += delta;
        Ok(entry.0)
    }

    async fn get(&self, key: &str) -> Result<i64, StoreError> {
        Ok(self.lock().get(key).filter(|(_, exp)| *exp > Instant::now()).map_or(0, |(n, _)| *n))
    }

    async fn expires_in(&self, key: &str) -> Result<Option<Duration>, StoreError> {
        let now = Instant::now();
        Ok(self.lock().get(key).filter(|(_, exp)| *exp > now).map(|(_, exp)| *exp - now))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = CounterAdapter::new(MapCounters::default());
    let limit = Limit::new("3/m".parse()?, Algorithm::FixedWindow);
    let key = store_key::compose(store_key::DEFAULT_PREFIX, "demo", limit.algorithm(), "ip:192.0.2.1");
    let checks = [LimitCheck { key: &key, limit: &limit }];
    for attempt in 1..=4 {
        let decisions = store.check(CheckRequest::new(&checks, 1)).await?;
        let d = decisions[0];
        println!(
            "request {attempt}: allowed={} remaining={} reset_after={:?} retry_after={:?}",
            d.allowed, d.remaining, d.reset_after, d.retry_after
        );
    }
    // The same adapter plugs into the middleware:
    // RateLimitConfig::builder().rate("3/m").store(store).build()?
    Ok(())
}
