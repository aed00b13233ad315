//! Metrics counters and their labels, built once per policy.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use metrics::{Key, Label, Level, Metadata};
use ratelimit_core::StoreError;

use crate::config::Mode;

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Counter names, each labelled with `policy`.
pub const ALLOWED: &str = "ratelimit_allowed_total";
/// Requests over the limit, labelled with the layer's `mode` (`enforce`
/// answered 429; `shadow` and `annotate` let them through).
pub const LIMITED: &str = "ratelimit_limited_total";
/// Checks the store could not answer.
pub const ERRORS: &str = "ratelimit_store_errors_total";

#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Allowed,
    Limited(Mode),
    StoreError,
}

/// Pre-built metric keys, so recording a decision allocates nothing.
pub(crate) struct Telemetry {
    allowed: Key,
    limited: [Key; 3],
    errors: Key,
    /// When the last store-failure warning was logged, in milliseconds
    /// since the process's first one (0: never).
    last_warning: AtomicU64,
    /// Failures not logged since then.
    suppressed: AtomicU64,
}

/// The shortest time between two store-failure warnings of one policy: an
/// outage must not flood the log with one line per request.
const WARNING_INTERVAL_MS: u64 = 1_000;

fn millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Offset by one interval so the first warning is never mistaken for "0: never".
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX) + WARNING_INTERVAL_MS
}

impl Telemetry {
    pub(crate) fn new(policy: &str) -> Self {
        let label = || Label::new("policy", policy.to_owned());
        Self {
            allowed: Key::from_parts(ALLOWED, vec![label()]),
            limited: ["enforce", "shadow", "annotate"]
                .map(|mode| Key::from_parts(LIMITED, vec![label(), Label::from_static_parts("mode", mode)])),
            errors: Key::from_parts(ERRORS, vec![label()]),
            last_warning: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Counts a failed check and logs it, at most once a second per
    /// policy, with the number of failures not logged in between.
    pub(crate) fn store_failed(&self, policy: &str, error: &StoreError, deciding_locally: bool) {
        self.record(Outcome::StoreError);
        let now = millis();
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= WARNING_INTERVAL_MS;
        if !due || self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if deciding_locally {
            tracing::warn!(policy, %error, suppressed, "rate limit store failed; deciding in process");
        } else {
            tracing::warn!(policy, %error, suppressed, "rate limit store failed");
        }
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        let key = match outcome {
            Outcome::Allowed => &self.allowed,
            Outcome::Limited(Mode::Shadow) => &self.limited[1],
            Outcome::Limited(Mode::Annotate) => &self.limited[2],
            Outcome::Limited(_) => &self.limited[0],
            Outcome::StoreError => &self.errors,
        };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }
}
