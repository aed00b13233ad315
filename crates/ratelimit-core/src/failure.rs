//! What a request gets when its store cannot answer: the one choice that
//! the layer's builder (`failure_policy`) and the settings file
//! (`failure_mode`) both make.

use serde::{Deserialize, Serialize};

/// What a request gets when the store cannot answer. Never 429: the
/// client did nothing wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Let the request through, flagged with `X-RateLimit-Status: degraded`
    /// and a warning in the logs (`open`).
    #[default]
    Open,
    /// Answer 503 Service Unavailable with a problem body (`closed`).
    Closed,
    /// Decide with a bounded in-process memory store (10,000 keys) while
    /// the configured store is down: limits hold per process instead of
    /// across the fleet (`local`).
    Local,
}
