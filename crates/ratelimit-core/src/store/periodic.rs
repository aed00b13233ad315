//! Work done on a value at a fixed interval for as long as the value
//! lives: the memory store's sweep of expired keys, the multi-store's
//! health checks. The task holds only a weak pointer, so it never keeps
//! the value alive, and the value aborts it when dropped, so it does not
//! outlive it asleep.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::AbortHandle;

/// A periodic task, owned by the value it works on; dropping it aborts it.
#[derive(Debug, Default)]
pub(crate) struct Periodic(OnceLock<AbortHandle>);

impl Periodic {
    /// Runs `work` on `target` every `every`, the first time one interval
    /// from now, on `runtime`. Set once, right after `target` is built, so
    /// the task can never run before what it works on exists.
    pub(crate) fn start<T, F, Fut>(&self, runtime: &Handle, target: &Arc<T>, every: Duration, work: F)
    where
        T: Send + Sync + 'static,
        F: Fn(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let target = Arc::downgrade(target);
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(target) = target.upgrade() else { break };
                work(target).await;
            }
        });
        let _ = self.0.set(task.abort_handle());
    }

    /// The running task, for tests that watch it end.
    #[cfg(test)]
    pub(crate) fn task(&self) -> Option<AbortHandle> {
        self.0.get().cloned()
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        if let Some(task) = self.0.get() {
            task.abort();
        }
    }
}
