//! The rate-limiting algorithms, as pure state transitions.
//!
//! Every store runs the same arithmetic: the memory store calls these
//! functions under its shard lock, and the shared stores run equivalent
//! scripts or statements next to their data. All times are nanoseconds
//! since the Unix epoch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{AlgorithmParseError, LimitError, RateParseError};
use crate::rate::{MAX_LIMIT, Rate};

pub mod fixed_window;
pub mod sliding_counter;
pub mod sliding_log;
pub mod token_bucket;

/// How a limit counts requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Windows aligned to multiples of the period since the Unix epoch; at
    /// most `limit` units per window. Every client's window resets at the
    /// same instant. See [`fixed_window`].
    FixedWindow,
    /// An exact log of admitted requests: for every instant `t`, the units
    /// admitted in `(t - period, t]` never exceed `limit`. See [`sliding_log`].
    /// Written `sliding_window` in settings, django-smart-ratelimit's name,
    /// and the default there and in the builder: exact from the first
    /// request, for limits of up to 10,000 per period.
    #[default]
    SlidingLog,
    /// The previous and current fixed-window counts, the previous one
    /// weighted by how much of it the sliding window still covers. See
    /// [`sliding_counter`].
    SlidingWindowCounter,
    /// A bucket of `capacity` units refilled continuously at
    /// `limit / period` (GCRA on one timestamp). See [`token_bucket`].
    TokenBucket,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 4] =
        [Algorithm::FixedWindow, Algorithm::SlidingLog, Algorithm::SlidingWindowCounter, Algorithm::TokenBucket];

    /// The name used in settings, keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingLog => "sliding_window",
            Algorithm::SlidingWindowCounter => "sliding_window_counter",
            Algorithm::TokenBucket => "token_bucket",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = AlgorithmParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match normalized.as_str() {
            "fixed_window" | "fixed" => Algorithm::FixedWindow,
            "sliding_window" | "sliding_window_log" | "sliding_log" => Algorithm::SlidingLog,
            "sliding_window_counter" | "sliding_counter" => Algorithm::SlidingWindowCounter,
            "token_bucket" | "leaky_bucket" | "gcra" => Algorithm::TokenBucket,
            _ => return Err(AlgorithmParseError(s.to_owned())),
        })
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One limit: a rate, the algorithm that enforces it and, for the token
/// bucket, an optional burst capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    rate: Rate,
    algorithm: Algorithm,
    burst: Option<u64>,
}

impl Limit {
    /// A limit with the bucket capacity equal to the rate's limit.
    ///
    /// Every rate is accepted here; [`validate`](Self::validate) says
    /// whether the stores can enforce it with this algorithm.
    pub fn new(rate: Rate, algorithm: Algorithm) -> Self {
        Self { rate, algorithm, burst: None }
    }

    /// Checks that the stores can enforce this limit. The one rule: a
    /// [`SlidingLog`](Algorithm::SlidingLog) limit allows at most
    /// [`MAX_SLIDING_LOG_LIMIT`](sliding_log::MAX_SLIDING_LOG_LIMIT) per
    /// period. The layer's builder and the settings refuse such a limit,
    /// and every store answers a check naming one with
    /// [`StoreError::InvalidLimit`](crate::StoreError::InvalidLimit).
    ///
    /// ```
    /// use ratelimit_core::{Algorithm, Limit};
    /// assert!(Limit::new("10000/s".parse()?, Algorithm::SlidingLog).validate().is_ok());
    /// let error = Limit::new("10001/s".parse()?, Algorithm::SlidingLog).validate().unwrap_err();
    /// assert!(error.to_string().contains("sliding_window_counter"));
    /// assert!(Limit::new("10001/s".parse()?, Algorithm::SlidingWindowCounter).validate().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.algorithm == Algorithm::SlidingLog && self.rate.limit() > sliding_log::MAX_SLIDING_LOG_LIMIT {
            return Err(LimitError::SlidingLogTooLarge { rate: self.rate });
        }
        Ok(())
    }

    /// Sets the token bucket's capacity; other algorithms ignore it.
    pub fn with_burst(mut self, burst: u64) -> Result<Self, RateParseError> {
        if burst == 0 || burst > MAX_LIMIT {
            return Err(RateParseError::new(&format!("burst {burst}"), "the burst must be between 1 and 4294967295"));
        }
        self.burst = Some(burst);
        Ok(self)
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The largest cost one request can ever be granted.
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::TokenBucket => self.burst.unwrap_or(self.rate.limit()),
            _ => self.rate.limit(),
        }
    }

    /// The period in nanoseconds.
    pub fn period_nanos(&self) -> u64 {
        self.rate.period_nanos()
    }
}
