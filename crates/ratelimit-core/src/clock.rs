//! Time sources. Every algorithm computes in nanoseconds since the Unix epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub type UnixNanos = u64;

/// A source of the current time.
///
/// Stores that keep state in this process (the memory store) read it on
/// every check; shared stores use their server's clock instead.
pub trait Clock: Send + Sync + Clone + 'static {
    /// The current time in nanoseconds since the Unix epoch.
    fn now(&self) -> UnixNanos;
}

/// The wall clock, read cheaply.
///
/// The Unix time is read from the operating system once per process; after
/// that, time advances with the CPU's monotonic counter (as `governor`
/// does), which costs a few nanoseconds instead of a system clock call and
/// never steps backwards when the wall clock is adjusted.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

fn wall_clock_nanos() -> UnixNanos {
    // A clock before 1970 reads as the epoch rather than failing a request.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Clock for SystemClock {
    fn now(&self) -> UnixNanos {
        static BASE: std::sync::OnceLock<(quanta::Instant, UnixNanos)> = std::sync::OnceLock::new();
        let (instant, unix) = BASE.get_or_init(|| (quanta::Instant::now(), wall_clock_nanos()));
        let elapsed = quanta::Instant::now().saturating_duration_since(*instant);
        unix.saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use ratelimit_core::{Clock, FakeClock};
/// use std::time::Duration;
/// let clock = FakeClock::at_secs(1_000);
/// let other = clock.clone();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(other.now(), 1_001_500_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock reading `nanos` since the epoch.
    pub fn new(nanos: UnixNanos) -> Self {
        Self { nanos: Arc::new(AtomicU64::new(nanos)) }
    }

    /// A fake clock reading `secs` seconds since the epoch.
    pub fn at_secs(secs: u64) -> Self {
        Self::new(secs.saturating_mul(1_000_000_000))
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the time (it may move backwards, as a real clock can).
    pub fn set(&self, nanos: UnixNanos) {
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> UnixNanos {
        self.nanos.load(Ordering::SeqCst)
    }
}
