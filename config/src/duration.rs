//! Human-written durations: `250ms`, `5s`, `1m`, `1h`, `1d`.
//!
//! Config files state time spans as a whole number followed by a unit. A bare
//! number is refused on purpose: `timeout: 5` could mean seconds or
//! milliseconds depending on who wrote the file, and a silent factor of 1000
//! is the kind of mistake that only shows up under load. The unit set is
//! deliberately small (no `us`, no fractions, no compound `1h30m`): every
//! setting in Headroom is comfortably expressed in whole milliseconds, and
//! `90m` covers what `1h30m` would.

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// What a duration must look like; quoted in every parse error.
pub const DURATION_FORMAT: &str =
    "a whole number with a unit: ms, s, m, h or d (like 250ms, 5s, 1m, 1h, 1d)";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text was empty or only whitespace.
    #[error("expected {DURATION_FORMAT}, got an empty value")]
    Empty,
    /// A number without a unit, such as `5`.
    #[error("missing unit in {0:?}: expected {DURATION_FORMAT}")]
    MissingUnit(String),
    /// A leading minus sign: durations cannot be negative.
    #[error("negative duration {0:?}: expected {DURATION_FORMAT}")]
    Negative(String),
    /// The number part is missing or not a plain run of digits (`1.5s`, `s`, `1_000ms`).
    #[error("invalid number in {0:?}: expected {DURATION_FORMAT}")]
    InvalidNumber(String),
    /// The unit is not one of `ms`, `s`, `m`, `h`, `d`.
    #[error("unknown unit {unit:?} in {text:?}: expected {DURATION_FORMAT}")]
    UnknownUnit {
        /// The whole text as written.
        text: String,
        /// The unit part that was not recognised.
        unit: String,
    },
    /// The value does not fit in 64 bits of milliseconds (about 584 million years).
    #[error("duration {0:?} is too large: expected at most {max} ms", max = u64::MAX)]
    Overflow(String),
}

/// A non-negative time span parsed from text such as `250ms` or `5s`.
///
/// Resolution is one millisecond. `0s` (or `0ms`, ...) is a valid zero
/// duration; whether zero is meaningful depends on the setting (for example
/// `health_check.interval: 0s` disables health checks). `Display` prints the
/// largest unit that represents the value exactly, so `90s` prints as `90s`
/// and `120s` as `2m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(StdDuration);

impl Duration {
    /// The zero duration (`0s`).
    pub const ZERO: Duration = Duration(StdDuration::ZERO);

    /// A duration of `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    /// A duration of `secs` seconds.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    /// The value as a standard library duration.
    #[must_use]
    pub const fn get(self) -> StdDuration {
        self.0
    }

    /// Whether this is the zero duration.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<StdDuration> for Duration {
    /// Keeps the value as is; `Display` shows it in whole milliseconds.
    fn from(value: StdDuration) -> Self {
        Duration(value)
    }
}

impl From<Duration> for StdDuration {
    fn from(value: Duration) -> Self {
        value.0
    }
}

/// Units in the order `Display` tries them, largest first, with their length in ms.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DurationError::Empty);
        }
        if trimmed.starts_with('-') {
            return Err(DurationError::Negative(text.to_owned()));
        }

        // Split at the first non-digit: everything before is the number, the rest the unit.
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        if number.is_empty() {
            return Err(DurationError::InvalidNumber(text.to_owned()));
        }
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(text.to_owned()));
        }
        if unit.starts_with(['.', '_', ',']) {
            return Err(DurationError::InvalidNumber(text.to_owned()));
        }

        let Some(&(_, unit_ms)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        };

        // Digits only, so a parse failure can only mean the number is too long for u64.
        let overflow = || DurationError::Overflow(text.to_owned());
        let count: u64 = number.parse().map_err(|_| overflow())?;
        let ms = count.checked_mul(unit_ms).ok_or_else(overflow)?;
        Ok(Duration::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole milliseconds are all a parsed Duration can hold; anything finer
        // (from a caller building one by hand) is truncated for display.
        let ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        let (name, unit_ms) = UNITS
            .iter()
            .find(|(_, unit_ms)| ms % unit_ms == 0)
            .copied()
            .unwrap_or(("ms", 1));
        write!(f, "{}{}", ms / unit_ms, name)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Accepts strings; numbers are refused with the same advice as [`DurationError::MissingUnit`].
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DURATION_FORMAT)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(E::custom(DurationError::MissingUnit(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if v < 0 {
            return Err(E::custom(DurationError::Negative(v.to_string())));
        }
        Err(E::custom(DurationError::MissingUnit(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(DurationError::InvalidNumber(v.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u128 {
        text.parse::<Duration>()
            .expect("valid duration")
            .get()
            .as_millis()
    }

    #[test]
    fn every_unit_parses_to_its_length_in_milliseconds() {
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("5s"), 5_000);
        assert_eq!(ms("1m"), 60_000);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("1d"), 86_400_000);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms(" 7s "), 7_000);
    }

    #[test]
    fn bare_number_is_rejected_for_missing_unit() {
        let err = "5".parse::<Duration>().expect_err("no unit");
        assert_eq!(err, DurationError::MissingUnit("5".into()));
        assert!(err.to_string().contains("ms, s, m, h or d"), "{err}");
    }

    #[test]
    fn negative_fractional_and_unknown_units_are_rejected() {
        assert!(matches!(
            "-5s".parse::<Duration>(),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            "1.5s".parse::<Duration>(),
            Err(DurationError::InvalidNumber(_))
        ));
        assert!(matches!(
            "s".parse::<Duration>(),
            Err(DurationError::InvalidNumber(_))
        ));
        assert!(matches!("".parse::<Duration>(), Err(DurationError::Empty)));
        let err = "5sec".parse::<Duration>().expect_err("unknown unit");
        assert_eq!(
            err,
            DurationError::UnknownUnit {
                text: "5sec".into(),
                unit: "sec".into()
            }
        );
        assert!(matches!(
            "5 s".parse::<Duration>(),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn values_beyond_u64_milliseconds_overflow() {
        assert!(matches!(
            "99999999999999999999ms".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            "300000000000d".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
        assert_eq!(ms("213503982334d"), 213_503_982_334 * 86_400_000);
    }

    #[test]
    fn display_uses_the_largest_exact_unit() {
        let show = |text: &str| text.parse::<Duration>().expect("valid").to_string();
        assert_eq!(show("120s"), "2m");
        assert_eq!(show("90s"), "90s");
        assert_eq!(show("1500ms"), "1500ms");
        assert_eq!(show("24h"), "1d");
        assert_eq!(show("0ms"), "0s");
    }

    #[test]
    fn deserialize_reads_strings_and_refuses_numbers() {
        let ok: Duration = serde_saphyr::from_str("250ms").expect("string duration");
        assert_eq!(ok, Duration::from_millis(250));
        let err = serde_saphyr::from_str::<Duration>("5").expect_err("no unit");
        assert!(err.to_string().contains("missing unit"), "{err}");
        let err = serde_saphyr::from_str::<Duration>("-3").expect_err("negative");
        assert!(err.to_string().contains("negative"), "{err}");
    }
}
