//! Durations written as seconds (fractions allowed) in settings files.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| serde::de::Error::custom(format!("{secs} is not a duration in seconds")))
}

/// Checks a duration against its plausible range, in seconds: a value
/// outside it is most often milliseconds written where seconds are meant,
/// so the error says "seconds".
pub(crate) fn check(value: Duration, (min, max): (f64, f64)) -> Result<(), String> {
    let secs = value.as_secs_f64();
    if (min..=max).contains(&secs) {
        return Ok(());
    }
    Err(format!("{secs} seconds is outside {min}–{max} seconds (durations are in seconds, not milliseconds)"))
}
