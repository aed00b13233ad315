//! The choices a configuration makes: which headers, report or enforce,
//! what a missing key means, what a store failure means.

/// The most limits one layer may check together.
pub const MAX_RATES: usize = 8;

/// Which rate-limit headers responses carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    /// The IETF draft fields `RateLimit-Policy` and `RateLimit`.
    Ietf,
    /// Both sets.
    #[default]
    Both,
    /// No rate-limit headers (a 429 still carries `Retry-After`).
    None,
}

impl HeaderStyle {
    pub(crate) fn legacy(self) -> bool {
        matches!(self, HeaderStyle::Legacy | HeaderStyle::Both)
    }
    pub(crate) fn ietf(self) -> bool {
        matches!(self, HeaderStyle::Ietf | HeaderStyle::Both)
    }
}

/// What the layer does with a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Answer limited requests with 429.
    #[default]
    Enforce,
    /// Decide and report (tracing, metrics) but never block and add no
    /// headers: for trying a limit on live traffic.
    Shadow,
    /// Never block; put the [`Decisions`] into the request extensions for
    /// the handler to act on. Headers are added as in `Enforce`.
    Annotate,
}

/// What happens when the key cannot be derived from a request (a missing
/// header, no authenticated user).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// Count the request under the client's IP address instead, so
    /// clients without the key never share one bucket.
    #[default]
    FallbackToIp,
    /// Answer 400 Bad Request.
    Reject,
    /// Let the request through unlimited.
    Skip,
}
