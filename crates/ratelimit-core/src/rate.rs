//! Parsing and printing of rates such as `100/h` or `10/30s`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::RateParseError;

/// The largest limit a rate may carry.
///
/// Counters are kept in 32 bits by the compact stores, and a per-period
/// limit of four billion is beyond any realistic policy.
pub const MAX_LIMIT: u64 = u32::MAX as u64;

/// The longest period a rate may span (one year of 366 days).
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// `limit` units per `period`.
///
/// Parsed from `"N/unit"` or `"N/Munit"`, where unit is `s`, `m`, `h` or `d`
/// (or `sec`, `second`, `min`, `minute`, `hour`, `day`, with an optional
/// plural `s`) and `M` is a positive multiplier: `"100/h"`, `"10/30s"`,
/// `"5/10m"`, `"1000/day"`.
///
/// ```
/// use ratelimit_core::Rate;
/// let rate: Rate = "10/30s".parse()?;
/// assert_eq!(rate.limit(), 10);
/// assert_eq!(rate.period().as_secs(), 30);
/// assert_eq!(rate.to_string(), "10/30s");
/// assert_eq!("5/m".parse::<Rate>()?.to_string(), "5/m");
/// # Ok::<(), ratelimit_core::RateParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u64,
    period: Duration,
}

impl Rate {
    /// Builds a rate from its parts; the same bounds as parsing apply.
    pub fn new(limit: u64, period: Duration) -> Result<Self, RateParseError> {
        let shown = format!("{limit} per {period:?}");
        if limit == 0 || limit > MAX_LIMIT {
            return Err(RateParseError::new(&shown, "the limit must be between 1 and 4294967295"));
        }
        if period.is_zero() || period > MAX_PERIOD || period.subsec_nanos() != 0 {
            return Err(RateParseError::new(
                &shown,
                "the period must be a whole number of seconds between 1 s and 366 days",
            ));
        }
        Ok(Self { limit, period })
    }

    /// `limit` per second.
    pub fn per_second(limit: u64) -> Result<Self, RateParseError> {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` per minute.
    pub fn per_minute(limit: u64) -> Result<Self, RateParseError> {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` per hour.
    pub fn per_hour(limit: u64) -> Result<Self, RateParseError> {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// How many units the rate admits per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period the limit applies to.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The period in nanoseconds, the unit every algorithm computes in.
    pub fn period_nanos(&self) -> u64 {
        // MAX_PERIOD keeps this far below u64::MAX.
        self.period.as_secs() * 1_000_000_000
    }
}

const UNITS: &[(&str, u64)] = &[
    ("s", 1),
    ("sec", 1),
    ("secs", 1),
    ("second", 1),
    ("seconds", 1),
    ("m", 60),
    ("min", 60),
    ("mins", 60),
    ("minute", 60),
    ("minutes", 60),
    ("h", 3600),
    ("hr", 3600),
    ("hour", 3600),
    ("hours", 3600),
    ("d", 86400),
    ("day", 86400),
    ("days", 86400),
];

fn unit_seconds(unit: &str) -> Option<u64> {
    UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)).map(|&(_, secs)| secs)
}

impl FromStr for Rate {
    type Err = RateParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let Some((count, per)) = trimmed.split_once('/') else {
            return Err(RateParseError::new(input, "expected a '/' between the limit and the period"));
        };
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RateParseError::new(input, "the limit must be a positive whole number"));
        }
        let limit: u64 = count.parse().map_err(|_| RateParseError::new(input, "the limit is too large"))?;
        let per = per.trim();
        let digits = per.bytes().take_while(u8::is_ascii_digit).count();
        let (multiplier, unit) = per.split_at(digits);
        let multiplier: u64 = if multiplier.is_empty() {
            1
        } else {
            multiplier.parse().map_err(|_| RateParseError::new(input, "the period multiplier is too large"))?
        };
        let Some(unit_secs) = unit_seconds(unit.trim()) else {
            return Err(RateParseError::new(input, "unknown period unit"));
        };
        let secs =
            multiplier.checked_mul(unit_secs).ok_or_else(|| RateParseError::new(input, "the period is too long"))?;
        Rate::new(limit, Duration::from_secs(secs)).map_err(|e| RateParseError::new(input, e.reason()))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        let (unit, size) = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
            .into_iter()
            .find(|&(_, size)| secs % size == 0)
            .unwrap_or(("s", 1));
        match secs / size {
            1 => write!(f, "{}/{unit}", self.limit),
            n => write!(f, "{}/{n}{unit}", self.limit),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Rate {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_short_and_long_units() {
        assert_eq!(parse("100/h"), Rate::new(100, Duration::from_secs(3600)).unwrap());
        assert_eq!(parse("10/s").period(), Duration::from_secs(1));
        assert_eq!(parse("1000/d").period(), Duration::from_secs(86400));
        assert_eq!(parse("10/30s").period(), Duration::from_secs(30));
        assert_eq!(parse("5/10m").period(), Duration::from_secs(600));
        for long in ["sec", "second", "min", "minute", "hour", "day", "seconds", "Minutes"] {
            assert!(long.parse::<Rate>().is_err());
            let rate = parse(&format!("7/{long}"));
            assert_eq!(rate.limit(), 7);
        }
        assert_eq!(parse(" 3 / 2 min ").period(), Duration::from_secs(120));
    }

    #[test]
    fn display_round_trips() {
        for s in ["100/h", "10/s", "1000/d", "10/30s", "5/10m", "1/90s", "4294967295/366d"] {
            let rate = parse(s);
            assert_eq!(rate.to_string(), s);
            assert_eq!(parse(&rate.to_string()), rate);
        }
        assert_eq!(parse("10/60s").to_string(), "10/m");
        assert_eq!(parse("2/minute").to_string(), "2/m");
    }

    #[test]
    fn rejects_bad_input_with_a_message_that_quotes_it() {
        for bad in [
            "",
            "/",
            "10",
            "0/s",
            "10/0s",
            "-1/s",
            "ten/s",
            "10/x",
            "10/s/s",
            "1.5/s",
            "99999999999999999999999/s",
            "4294967296/s",
            "10/99999999999999999999s",
            "10/367d",
            "10/184467440737095516h",
        ] {
            let err = bad.parse::<Rate>().expect_err(bad);
            let message = err.to_string();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
            assert!(message.contains("100/h"), "{message}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        use serde::de::value::{Error, StrDeserializer};
        let rate = Rate::deserialize(StrDeserializer::<Error>::new("5/10m")).unwrap();
        assert_eq!(rate, parse("5/10m"));
        let err = Rate::deserialize(StrDeserializer::<Error>::new("5/lightyear")).unwrap_err();
        assert!(err.to_string().contains("lightyear"));
    }
}
