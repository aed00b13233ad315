//! The compact per-key state of the memory store.

use crate::algorithm::fixed_window::WindowState;
use crate::algorithm::sliding_counter::CounterState;
use crate::algorithm::sliding_log::SlidingLog;
use crate::algorithm::token_bucket::BucketState;
use crate::clock::UnixNanos;
use crate::{Algorithm, Limit};

/// One key's state. Fixed window and token bucket fit in 24 bytes; the
/// sliding log lives behind a pointer since its size is the limit's.
#[derive(Debug)]
pub(super) enum State {
    Window(WindowState),
    /// The counter's window end is `expires - period`; storing the expiry
    /// instead lets the sweeper judge the entry without knowing the period.
    Counter {
        expires: UnixNanos,
        previous: u32,
        current: u32,
    },
    Bucket(BucketState),
    Log(Box<SlidingLog>),
}

impl State {
    pub(super) fn expires_at(&self) -> UnixNanos {
        match self {
            State::Window(w) => w.expires_at(),
            State::Counter { expires, .. } => *expires,
            State::Bucket(b) => b.expires_at(),
            State::Log(log) => log.expires_at(),
        }
    }

    pub(super) fn algorithm(&self) -> Algorithm {
        match self {
            State::Window(_) => Algorithm::FixedWindow,
            State::Counter { .. } => Algorithm::SlidingWindowCounter,
            State::Bucket(_) => Algorithm::TokenBucket,
            State::Log(_) => Algorithm::SlidingLog,
        }
    }

    pub(super) fn counter(&self, limit: &Limit) -> Option<CounterState> {
        match *self {
            State::Counter { expires, previous, current } => Some(CounterState {
                window_end: expires.saturating_sub(limit.period_nanos()),
                previous: u64::from(previous),
                current: u64::from(current),
            }),
            _ => None,
        }
    }

    pub(super) fn from_counter(state: CounterState, limit: &Limit) -> Self {
        // Counts never exceed the capacity, which `Rate` bounds to u32.
        State::Counter {
            expires: state.expires_at(limit.period_nanos()),
            previous: u32::try_from(state.previous).unwrap_or(u32::MAX),
            current: u32::try_from(state.current).unwrap_or(u32::MAX),
        }
    }
}

/// A map entry: the state, when the key was last used and until when it is
/// over its limit, both in whole seconds since the store was created
/// (coarse on purpose: they only order evictions).
///
/// Whether a state is at its limit depends on the limit's capacity and
/// period, which the entry does not hold; so the instant the key next
/// admits a unit is worked out when its state changes, the one time the
/// limit is at hand, and kept here. It fills what was padding after
/// `touched`: the entry is no larger for it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) touched: u32,
    /// Rounded up, so a key is never taken for unblocked early.
    pub(super) blocked_until: u32,
    pub(super) state: State,
}

const _: () = assert!(std::mem::size_of::<Entry>() <= 32, "an entry is one half of a cache line");

impl Entry {
    /// The order of eviction among live keys, lowest first: the least
    /// recently used, and a key over its limit at `now_secs` only after
    /// every other one, since evicting it would hand it a fresh allowance.
    pub(super) fn eviction_rank(&self, now_secs: u32) -> u64 {
        (u64::from(self.blocked_until > now_secs) << 32) | u64::from(self.touched)
    }
}
