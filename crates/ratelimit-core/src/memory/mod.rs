//! The in-process store: the default, with nothing to install.
//!
//! Keys are hashed once with aHash under per-store random keys (so clients
//! cannot aim for collisions) and spread over up to 64 shards, each behind its own
//! mutex held only for the arithmetic of one decision. A key's state is one
//! small value; checking a key the store already holds allocates nothing.
//! Two distinct keys share state only if their 64-bit keyed hashes collide:
//! with a million keys held, a new key meets one of them with odds of about
//! 5 in 10^14.
//!
//! The store holds at most `max_keys` keys. A full shard makes room for a
//! new key by dropping an eighth of itself at once (so a flood of new keys
//! costs a constant amount per key): first the keys whose state has expired
//! and so decides exactly like an absent key, then the least recently used,
//! and keys that are over their limit last of all, only when nothing else
//! is left. A flood of fresh keys therefore cannot buy a blocked client a
//! new allowance.

mod shard;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use self::shard::Shard;
use self::state::{Entry, State};
use crate::algorithm::{fixed_window, sliding_counter, sliding_log::SlidingLog, token_bucket};
use crate::clock::{Clock, SystemClock, UnixNanos};
use crate::store::{CheckRequest, Health, LimitCheck, Store};
use crate::{Algorithm, Decision, Decisions, Limit, StoreError};

/// The default bound on the number of keys.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// The default interval of the background sweep of expired keys.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(300);
const MAX_SHARDS: usize = 64;

/// A rate-limit store in this process's memory.
///
/// Clones share the same state. See the [module docs](self) for how it
/// is laid out.
///
/// ```
/// use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, MemoryStore, Rate, Store};
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new();
/// let limit = Limit::new("2/m".parse()?, Algorithm::TokenBucket);
/// let checks = [LimitCheck { key: "rl:demo:token_bucket:alice", limit: &limit }];
/// assert!(store.check(CheckRequest::new(&checks, 1)).await?.all_allowed());
/// assert!(store.check(CheckRequest::new(&checks, 1)).await?.all_allowed());
/// assert!(!store.check(CheckRequest::new(&checks, 1)).await?.all_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    shard_capacity: usize,
    clock: C,
    created: UnixNanos,
    max_keys: usize,
    /// The sweep of expired keys, when one runs.
    sweeper: crate::store::Periodic,
}

/// Configures a [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder<C = SystemClock> {
    max_keys: usize,
    cleanup_interval: Option<Duration>,
    clock: C,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self { max_keys: DEFAULT_MAX_KEYS, cleanup_interval: Some(DEFAULT_CLEANUP_INTERVAL), clock: SystemClock }
    }
}

impl<C: Clock> MemoryStoreBuilder<C> {
    /// Bounds the number of keys (default 10,000). When full, expired keys
    /// are dropped first, then the least recently used ones, and keys over
    /// their limit only when no other key is left.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// How often the background task sweeps expired keys (default 300 s);
    /// `None` turns the sweep off (full shards still evict on demand).
    pub fn cleanup_interval(mut self, interval: Option<Duration>) -> Self {
        self.cleanup_interval = interval.filter(|d| !d.is_zero());
        self
    }

    /// Reads time from `clock` instead of the system clock.
    pub fn clock<K: Clock>(self, clock: K) -> MemoryStoreBuilder<K> {
        MemoryStoreBuilder { max_keys: self.max_keys, cleanup_interval: self.cleanup_interval, clock }
    }

    /// Builds the store. The background sweep starts only when this runs
    /// inside a Tokio runtime; it stops when the last clone of the store is
    /// dropped.
    pub fn build(self) -> MemoryStore<C> {
        let shards = (self.max_keys / 128).clamp(1, MAX_SHARDS).next_power_of_two().min(MAX_SHARDS);
        // Shards split max_keys exactly: the first `max_keys % shards` hold one more.
        let shard_capacity = self.max_keys / shards;
        let created = self.clock.now();
        let interval = self.cleanup_interval;
        let handle = tokio::runtime::Handle::try_current().ok();
        let inner = Arc::new(Inner {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            shard_capacity,
            clock: self.clock,
            created,
            max_keys: self.max_keys,
            sweeper: crate::store::Periodic::default(),
        });
        if let (Some(every), Some(handle)) = (interval, handle) {
            inner.sweeper.start(&handle, &inner, every, |store| async move {
                store.sweep();
            });
        }
        MemoryStore { inner }
    }
}

impl MemoryStore {
    /// A store with the defaults: 10,000 keys, a sweep every 300 s.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// The number of keys held, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes expired keys now, one shard at a time; returns how many went.
    pub fn sweep(&self) -> usize {
        self.inner.sweep()
    }

    /// Decides synchronously; the async [`Store`] methods call this.
    pub fn decide(&self, request: CheckRequest<'_>, charge: bool) -> Result<Decisions, StoreError> {
        request.validate()?;
        let now = request.at.unwrap_or_else(|| self.inner.clock.now());
        if let [single] = request.limits {
            return Ok(self.decide_one(single, request.cost, now, charge));
        }
        let hashes: SmallVec<[u64; 2]> = request.limits.iter().map(|l| self.inner.hasher.hash_one(l.key)).collect();
        let mut order: SmallVec<[usize; 2]> = hashes.iter().map(|&h| self.inner.shard_of(h)).collect();
        order.sort_unstable();
        order.dedup();
        // Shards are locked in index order, so concurrent multi-limit
        // checks never wait on each other in a cycle.
        let mut guards: SmallVec<[(usize, MutexGuard<'_, Shard>); 2]> =
            order.iter().map(|&i| (i, lock(&self.inner.shards[i]))).collect();
        let mut decisions = Decisions::new();
        let mut updates: SmallVec<[Option<State>; 2]> = SmallVec::new();
        let touched = self.inner.touched(now);
        for (check, &hash) in request.limits.iter().zip(&hashes) {
            let shard = shard_for(&mut guards, self.inner.shard_of(hash));
            let entry = shard.map.get_mut(&hash).filter(|e| e.state.algorithm() == check.limit.algorithm());
            let state = entry.map(|e| {
                // Denied clients count as active too (see `decide_one`).
                e.touched = touched;
                &mut e.state
            });
            let (decision, update) = evaluate(state, now, check.limit, request.cost);
            decisions.push(decision);
            updates.push(update);
        }
        if !decisions.all_allowed() {
            // Nothing is charged: limits that would have admitted the request
            // report themselves as they stand.
            for (i, (check, &hash)) in request.limits.iter().zip(&hashes).enumerate() {
                let Some(decision) = decisions.get_mut(i).filter(|d| d.allowed) else { continue };
                let shard = shard_for(&mut guards, self.inner.shard_of(hash));
                let entry = shard.map.get_mut(&hash).filter(|e| e.state.algorithm() == check.limit.algorithm());
                *decision = evaluate(entry.map(|e| &mut e.state), now, check.limit, 0).0;
            }
        }
        if charge && request.cost > 0 && decisions.all_allowed() {
            for (((check, &hash), update), decision) in request.limits.iter().zip(&hashes).zip(updates).zip(&decisions)
            {
                let index = self.inner.shard_of(hash);
                let shard = shard_for(&mut guards, index);
                self.inner.commit(shard, index, hash, check.limit, update, decision, now, request.cost);
            }
        }
        Ok(decisions)
    }
}

impl<C: Clock> MemoryStore<C> {
    /// The common case of one limit: one shard, one lookup.
    fn decide_one(&self, check: &LimitCheck<'_>, cost: u64, now: UnixNanos, charge: bool) -> Decisions {
        let inner = &self.inner;
        let hash = inner.hasher.hash_one(check.key);
        let limit = check.limit;
        let index = inner.shard_of(hash);
        let mut shard = lock(&inner.shards[index]);
        let mut decisions = Decisions::new();
        let charge = charge && cost > 0;
        match shard.map.get_mut(&hash).filter(|e| e.state.algorithm() == limit.algorithm()) {
            Some(entry) => {
                let decision = match &mut entry.state {
                    State::Log(log) => log.decide(now, limit, cost, charge),
                    state => {
                        let (decision, next) = evaluate(Some(state), now, limit, cost);
                        if charge && decision.allowed {
                            if let Some(next) = next {
                                *state = next;
                            }
                        }
                        decision
                    }
                };
                let (charged, remaining) = (charge && decision.allowed, decision.remaining);
                decisions.push(decision);
                // Only a charge changes the state; a denial leaves it, and
                // so the instant it admits again, as it was.
                if charged {
                    entry.blocked_until = inner.blocked_until(&mut entry.state, remaining, now, limit);
                }
                // Denied clients count as active too.
                entry.touched = inner.touched(now);
            }
            None => {
                let (decision, update) = evaluate(None, now, limit, cost);
                if charge && decision.allowed {
                    inner.commit(&mut shard, index, hash, limit, update, &decision, now, cost);
                }
                decisions.push(decision);
            }
        }
        decisions
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic elsewhere while holding the lock cannot leave a state
    // half-written (updates are single assignments), so keep serving.
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shard_for<'g, 's>(guards: &'g mut [(usize, MutexGuard<'s, Shard>)], index: usize) -> &'g mut Shard {
    let position = guards.iter().position(|(i, _)| *i == index).unwrap_or(0);
    &mut guards[position].1
}

/// Runs the algorithm on the current state. Returns the decision and, for
/// the fixed-size states, the state to store if the request is charged;
/// the sliding log is charged in place by `commit`.
fn evaluate(state: Option<&mut State>, now: UnixNanos, limit: &Limit, cost: u64) -> (Decision, Option<State>) {
    match limit.algorithm() {
        Algorithm::FixedWindow => {
            let current = match state.as_deref() {
                Some(State::Window(w)) => Some(*w),
                _ => None,
            };
            let (d, next) = fixed_window::decide(current, now, limit, cost);
            (d, Some(State::Window(next)))
        }
        Algorithm::TokenBucket => {
            let current = match state.as_deref() {
                Some(State::Bucket(b)) => Some(*b),
                _ => None,
            };
            let (d, next) = token_bucket::decide(current, now, limit, cost);
            (d, Some(State::Bucket(next)))
        }
        Algorithm::SlidingWindowCounter => {
            let current = state.as_deref().and_then(|s| s.counter(limit));
            let (d, next) = sliding_counter::decide(current, now, limit, cost);
            (d, Some(State::from_counter(next, limit)))
        }
        Algorithm::SlidingLog => match state {
            Some(State::Log(log)) => (log.decide(now, limit, cost, false), None),
            _ => (SlidingLog::new().decide(now, limit, cost, false), None),
        },
    }
}

/// When a state with no unit left admits one again. Kept out of line: only
/// the charge that uses up the last unit gets here.
#[cold]
#[inline(never)]
fn unblocked_at(state: &mut State, now: UnixNanos, limit: &Limit) -> Option<UnixNanos> {
    let (next, _) = evaluate(Some(state), now, limit, 1);
    let wait = next.retry_after?;
    Some(now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)))
}

impl<C: Clock> Inner<C> {
    fn shard_of(&self, hash: u64) -> usize {
        // High bits choose the shard; the map inside uses the low bits and
        // the top seven, so the two never correlate.
        (hash >> 40) as usize & (self.shards.len() - 1)
    }

    fn capacity_of(&self, shard: usize) -> usize {
        self.shard_capacity + usize::from(shard < self.max_keys % self.shards.len())
    }

    fn touched(&self, now: UnixNanos) -> u32 {
        u32::try_from(now.saturating_sub(self.created) / 1_000_000_000).unwrap_or(u32::MAX)
    }

    /// The entry's `blocked_until` for a state just charged, with
    /// `remaining` units left: 0 while a unit is left, else when one is
    /// back, in whole seconds since the store was created, rounded up.
    fn blocked_until(&self, state: &mut State, remaining: u64, now: UnixNanos, limit: &Limit) -> u32 {
        if remaining > 0 {
            return 0;
        }
        unblocked_at(state, now, limit)
            .map_or(0, |at| u32::try_from(at.saturating_sub(self.created).div_ceil(1_000_000_000)).unwrap_or(u32::MAX))
    }

    /// Stores a charged decision's state: `update` for the fixed-size
    /// states, while the sliding log is charged in place.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        shard: &mut Shard,
        index: usize,
        hash: u64,
        limit: &Limit,
        update: Option<State>,
        decision: &Decision,
        now: UnixNanos,
        cost: u64,
    ) {
        let touched = self.touched(now);
        let algorithm = limit.algorithm();
        if let Some(entry) = shard.map.get_mut(&hash).filter(|e| e.state.algorithm() == algorithm) {
            let decision = match (&mut entry.state, update) {
                (State::Log(log), _) => log.decide(now, limit, cost, true),
                (slot, Some(next)) => {
                    *slot = next;
                    *decision
                }
                (_, None) => *decision,
            };
            entry.touched = touched;
            entry.blocked_until = self.blocked_until(&mut entry.state, decision.remaining, now, limit);
            return;
        }
        let (mut state, decision) = match update {
            Some(next) => (next, *decision),
            None => {
                let mut log = SlidingLog::new();
                let decision = log.decide(now, limit, cost, true);
                (State::Log(Box::new(log)), decision)
            }
        };
        let blocked_until = self.blocked_until(&mut state, decision.remaining, now, limit);
        if !shard.map.contains_key(&hash) {
            shard.make_room(self.capacity_of(index), now, touched);
        }
        shard.map.insert(hash, Entry { touched, blocked_until, state });
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now();
        self.shards.iter().map(|shard| lock(shard).sweep(now)).sum()
    }
}

impl<C: Clock> Store for MemoryStore<C> {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, true)
    }

    fn check_now(&self, request: CheckRequest<'_>) -> Option<Result<Decisions, StoreError>> {
        Some(self.decide(request, true))
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, false)
    }

    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        let hash = self.inner.hasher.hash_one(limit.key);
        lock(&self.inner.shards[self.inner.shard_of(hash)]).map.remove(&hash);
        Ok(())
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let started = Instant::now();
        let keys = self.len();
        Ok(Health {
            store: "memory",
            latency: started.elapsed(),
            details: vec![
                ("keys".to_owned(), keys.to_string()),
                ("max_keys".to_owned(), self.inner.max_keys.to_string()),
                ("shards".to_owned(), self.inner.shards.len().to_string()),
            ],
        })
    }
}

#[cfg(test)]
mod tests;
