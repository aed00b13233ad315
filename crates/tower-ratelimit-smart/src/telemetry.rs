//! Metrics counters, throttled logs and the health of each policy, built
//! once per policy so that recording a decision allocates nothing.
//!
//! Requests over the limit are counted, never logged one by one: a flood
//! of limited requests must not become a flood of log lines. Store
//! failures are logged at most once a second per policy, with the number
//! held back in between; requests without a peer address, a mistake in
//! how the server is started, are reported once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use metrics::{Key, Label, Level, Metadata};
use ratelimit_core::StoreError;

use crate::config::Mode;

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Counter names, each labelled with `policy`.
pub const METRIC_ALLOWED: &str = "ratelimit_allowed_total";
/// Requests over the limit, labelled with the layer's `mode` (`enforce`
/// answered 429; `shadow` and `annotate` let them through).
pub const METRIC_LIMITED: &str = "ratelimit_limited_total";
/// Checks the store could not answer.
pub const METRIC_STORE_ERRORS: &str = "ratelimit_store_errors_total";
/// Requests the store could not decide that were let through unchecked
/// (`decided_by = "fail_open"`) or decided by the in-process fallback
/// store (`decided_by = "local"`).
pub const METRIC_DEGRADED: &str = "ratelimit_degraded_total";

#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Allowed,
    Limited(Mode),
}

/// Who answered a request the store could not decide.
#[derive(Clone, Copy)]
pub(crate) enum Fallback {
    /// Let through unchecked.
    Open,
    /// Decided by the in-process store of `FailurePolicy::Local`.
    Local,
}

/// What the last check of a policy met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyState {
    /// No request has been checked yet.
    Idle,
    /// The store decided the last check.
    Ok,
    /// The store was still making its connection: the failure policy
    /// answered.
    Connecting,
    /// The store failed: the failure policy answered.
    Degraded,
}

/// The health of one policy of a layer, from the checks it made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyHealth {
    /// The policy's name.
    pub policy: String,
    /// What its last check met.
    pub state: PolicyState,
    /// Requests let through unchecked or decided in process since start.
    pub degraded_decisions: u64,
}

pub(crate) struct Telemetry {
    allowed: Key,
    limited: [Key; 3],
    errors: Key,
    degraded: [Key; 2],
    store_log: Throttle,
    /// Whether the missing peer address was reported: once is enough, it
    /// is a deployment mistake that every request repeats.
    address_reported: AtomicBool,
    state: AtomicU8,
    degraded_decisions: AtomicU64,
}

const STATE_IDLE: u8 = 0;
const STATE_OK: u8 = 1;
const STATE_CONNECTING: u8 = 2;
const STATE_DEGRADED: u8 = 3;

impl Telemetry {
    pub(crate) fn new(policy: &str) -> Self {
        let label = || Label::new("policy", policy.to_owned());
        Self {
            allowed: Key::from_parts(METRIC_ALLOWED, vec![label()]),
            limited: ["enforce", "shadow", "annotate"]
                .map(|mode| Key::from_parts(METRIC_LIMITED, vec![label(), Label::from_static_parts("mode", mode)])),
            errors: Key::from_parts(METRIC_STORE_ERRORS, vec![label()]),
            degraded: ["fail_open", "local"]
                .map(|by| Key::from_parts(METRIC_DEGRADED, vec![label(), Label::from_static_parts("decided_by", by)])),
            store_log: Throttle::default(),
            address_reported: AtomicBool::new(false),
            state: AtomicU8::new(STATE_IDLE),
            degraded_decisions: AtomicU64::new(0),
        }
    }

    /// Counts a decision; `by_store` is false for the in-process fallback's,
    /// which leave the policy's state as the store failure set it.
    pub(crate) fn record(&self, outcome: Outcome, by_store: bool) {
        let key = match outcome {
            Outcome::Allowed => &self.allowed,
            Outcome::Limited(Mode::Shadow) => &self.limited[1],
            Outcome::Limited(Mode::Annotate) => &self.limited[2],
            Outcome::Limited(_) => &self.limited[0],
        };
        increment(key);
        // A read first: the line stays shared between cores while healthy.
        if by_store && self.state.load(Ordering::Relaxed) != STATE_OK {
            self.state.store(STATE_OK, Ordering::Relaxed);
        }
    }

    /// Counts a failed check and logs it, throttled.
    pub(crate) fn store_failed(&self, policy: &str, error: &StoreError, deciding_locally: bool) {
        increment(&self.errors);
        let state = if matches!(error, StoreError::Connecting { .. }) { STATE_CONNECTING } else { STATE_DEGRADED };
        self.state.store(state, Ordering::Relaxed);
        let Some(suppressed) = self.store_log.due() else { return };
        if deciding_locally {
            tracing::warn!(policy, %error, suppressed, "rate limit store failed; deciding in process");
        } else {
            tracing::warn!(policy, %error, suppressed, "rate limit store failed");
        }
    }

    /// Counts a request that the failure policy answered instead of the store.
    pub(crate) fn fell_back(&self, by: Fallback) {
        self.degraded_decisions.fetch_add(1, Ordering::Relaxed);
        increment(&self.degraded[by as usize]);
    }

    /// Reports, once per policy, that a request had neither a key nor a
    /// peer address: the server was not set up to pass it.
    pub(crate) fn no_client_address(&self, policy: &str) {
        if self.address_reported.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::error!(
            policy,
            "rate limiter cannot identify clients: requests carry no peer address, so every one is answered \
             500; serve axum with into_make_service_with_connect_info::<SocketAddr>() (or insert a SocketAddr \
             extension); RateLimitLayer::needs_connect_info() says so at start-up. Reported once."
        );
    }

    pub(crate) fn health(&self, policy: &str) -> PolicyHealth {
        let state = match self.state.load(Ordering::Relaxed) {
            STATE_IDLE => PolicyState::Idle,
            STATE_OK => PolicyState::Ok,
            STATE_CONNECTING => PolicyState::Connecting,
            _ => PolicyState::Degraded,
        };
        PolicyHealth {
            policy: policy.to_owned(),
            state,
            degraded_decisions: self.degraded_decisions.load(Ordering::Relaxed),
        }
    }
}

fn increment(key: &Key) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
}

/// Lets one log line through per [`LOG_INTERVAL_MS`], counting the rest.
#[derive(Default)]
struct Throttle {
    /// When the last line was let through, in milliseconds since the
    /// process's first (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

/// The shortest time between two lines of one kind for one policy.
const LOG_INTERVAL_MS: u64 = 1_000;

impl Throttle {
    /// `Some(lines held back since the last one)` when a line is due.
    fn due(&self) -> Option<u64> {
        let now = millis();
        let last = self.last.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= LOG_INTERVAL_MS;
        if !due || self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

fn millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Offset by one interval so the first line is never mistaken for "0: never".
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX) + LOG_INTERVAL_MS
}
