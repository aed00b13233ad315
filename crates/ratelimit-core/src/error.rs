//! Error types. Being rate limited is never an error: it is a [`Decision`](crate::Decision).

use std::time::Duration;

/// The forms [`Rate`](crate::Rate) accepts, quoted in every parse error.
pub const ACCEPTED_RATE_FORMS: &str = "\"N/unit\" or \"N/Munit\" with unit s, m, h or d (or sec, second, min, minute, hour, day), e.g. \"100/h\", \"10/30s\", \"5/10m\"";

/// A store setting that cannot work: its section (`redis`, `database`,
/// `memory`), the field, and what is wrong. Settings files report it at
/// the field's full path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {problem}", section_prefix(.section))]
pub struct FieldError {
    /// The settings section, e.g. `redis`; empty for a top-level field.
    pub section: &'static str,
    /// The field within it, e.g. `socket_timeout`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn cause_suffix(cause: &Option<Box<StoreError>>) -> String {
    cause.as_ref().map(|cause| format!(" ({cause})")).unwrap_or_default()
}

fn section_prefix(section: &str) -> String {
    if section.is_empty() { String::new() } else { format!("{section}.") }
}

impl FieldError {
    pub(crate) fn new(section: &'static str, field: &'static str, problem: impl Into<String>) -> Self {
        Self { section, field, problem: problem.into() }
    }
}

impl From<FieldError> for StoreError {
    fn from(error: FieldError) -> Self {
        StoreError::Config(error)
    }
}

/// A rate that could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {input:?}: {reason}; accepted forms: {ACCEPTED_RATE_FORMS}")]
pub struct RateParseError {
    input: String,
    reason: String,
}

impl RateParseError {
    pub(crate) fn new(input: &str, reason: &str) -> Self {
        Self { input: input.to_owned(), reason: reason.to_owned() }
    }

    /// The text that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// An algorithm name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown algorithm {0:?}; accepted: fixed_window, sliding_window, sliding_window_counter, token_bucket (also leaky_bucket, gcra)"
)]
pub struct AlgorithmParseError(pub(crate) String);

/// A limit that the stores cannot enforce as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A sliding-log limit above [`MAX_SLIDING_LOG_LIMIT`](crate::MAX_SLIDING_LOG_LIMIT)
    /// per period.
    #[error(
        "rate {rate} is too high for the sliding_window algorithm, which logs every admitted request and so allows at most {max} per period; use sliding_window_counter (two counters per key, any rate) or token_bucket",
        max = crate::MAX_SLIDING_LOG_LIMIT
    )]
    SlidingLogTooLarge {
        /// The rate asked for.
        rate: crate::Rate,
    },
}

/// A store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed or could not be reached.
    #[error("{store} store failed: {source}")]
    Backend {
        /// Which kind of store failed.
        store: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend did not answer in time.
    #[error("{store} store did not answer within {after:?}")]
    Timeout {
        /// Which kind of store timed out.
        store: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// The store cannot run this algorithm.
    #[error("the {store} store does not support the {algorithm} algorithm; use {supported}")]
    Unsupported {
        /// Which kind of store refused.
        store: &'static str,
        /// The algorithm asked for.
        algorithm: crate::Algorithm,
        /// What it supports instead.
        supported: &'static str,
    },
    /// The store is still making its first connection (or a new one after
    /// a failed attempt): the call waited for the attempt as long as the
    /// store's connect timeout allows.
    #[error("{store} store is still connecting (waited {waited:?})")]
    Connecting {
        /// Which kind of store.
        store: &'static str,
        /// How long the call waited.
        waited: Duration,
    },
    /// The store's circuit breaker is open: the call was refused without
    /// touching the store.
    #[error("the circuit breaker of store {store} is open; the next probe in {retry_after:?}{}", cause_suffix(.cause))]
    CircuitOpen {
        /// Which store (the breaker's name).
        store: String,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
        /// Why the store is failing, when the call reached it (a health
        /// check does, to watch the store recover).
        #[source]
        cause: Option<Box<StoreError>>,
    },
    /// The store's configuration cannot work, or its server refuses what
    /// it names (the database does not exist, the URL is wrong): the error
    /// names the setting to change.
    #[error("{0}")]
    Config(FieldError),
    /// The request itself is malformed (for example it names no limit).
    #[error("invalid check: {0}")]
    InvalidRequest(&'static str),
    /// The request names a limit no store enforces; see [`crate::Limit::validate`].
    #[error("invalid limit: {0}")]
    InvalidLimit(#[from] LimitError),
}

impl StoreError {
    /// Wraps any backend error.
    pub fn backend(store: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend { store, source: source.into() }
    }
}
