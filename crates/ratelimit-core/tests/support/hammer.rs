//! Exactness under concurrency: many tasks on several independent stores
//! (app servers) charging one key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Store, store_key};

/// `tasks_per_store` tasks on each store, four checks each, on one key
/// with limit 100 per hour; returns how many were admitted.
pub async fn hammer<S: Store + Clone>(stores: &[S], tasks_per_store: usize, algorithm: Algorithm) -> usize {
    let limit = Arc::new(Limit::new("100/h".parse::<Rate>().unwrap(), algorithm));
    let key: Arc<str> = store_key::compose("t:", "race", algorithm, "one-client").into();
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for store in stores {
        for _ in 0..tasks_per_store {
            let (store, limit, key, admitted) = (store.clone(), limit.clone(), key.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..4 {
                    let checks = [LimitCheck { key: &key, limit: &limit }];
                    if store.check(CheckRequest::new(&checks, 1)).await.unwrap().all_allowed() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    admitted.load(Ordering::SeqCst)
}
