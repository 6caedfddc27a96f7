//! Points in time for declared events: RFC 3339 date-times or Unix
//! milliseconds, both turned into Unix milliseconds.
//!
//! Events come from two places, the config file and `POST /v1/events`, and
//! both must accept the same spellings, so the parsing lives here once. The
//! crate has no date library on purpose (it reads a file and checks values);
//! the calendar arithmetic an RFC 3339 timestamp needs is small and is
//! written out below with its edge cases tested.
//!
//! Accepted: `2026-03-01T09:00:00Z`, `2026-03-01t09:00:00.250+01:00` (a
//! space may stand for the `T`), or a whole number of milliseconds since
//! 1970-01-01T00:00:00Z. Refused: dates without a time or an offset (a time
//! without a zone means different instants on different hosts), times before
//! [`MIN_EVENT_MS`] (almost always seconds written where milliseconds were
//! meant) and after [`MAX_EVENT_MS`].

/// Earliest accepted time, 2000-01-01T00:00:00Z in Unix ms. A Unix time in
/// *seconds* for any date after 1973 is below this, so the mistake is caught.
pub const MIN_EVENT_MS: u64 = 946_684_800_000;

/// Latest accepted time, 9999-12-31T23:59:59.999Z in Unix ms.
pub const MAX_EVENT_MS: u64 = 253_402_300_799_999;

/// What a timestamp must look like; quoted in every error.
pub const TIMESTAMP_FORMAT: &str =
    "an RFC 3339 date-time like 2026-03-01T09:00:00Z or Unix milliseconds like 1772355600000";

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not an RFC 3339 date-time (nor a run of digits).
    #[error("expected {TIMESTAMP_FORMAT}, got {0:?}")]
    Format(String),
    /// A field out of its range (month 13, February 30, hour 24, ...).
    #[error("{field} out of range in {text:?}: expected {TIMESTAMP_FORMAT}")]
    Range {
        /// The field that is out of range.
        field: &'static str,
        /// The text as given.
        text: String,
    },
    /// Before 2000 or after 9999: usually seconds given as milliseconds.
    #[error(
        "{ms} ms is outside 2000-01-01 to 9999-12-31; Unix times are in milliseconds \
         here (seconds times 1000)"
    )]
    Implausible {
        /// The value, in Unix milliseconds.
        ms: u64,
    },
}

/// Checks that `ms` (Unix milliseconds) is between [`MIN_EVENT_MS`] and
/// [`MAX_EVENT_MS`].
///
/// # Errors
/// [`TimestampError::Implausible`] outside that range.
pub fn check_unix_ms(ms: u64) -> Result<u64, TimestampError> {
    if (MIN_EVENT_MS..=MAX_EVENT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(TimestampError::Implausible { ms })
    }
}

/// Parses an RFC 3339 date-time, or a string of digits as Unix
/// milliseconds, into Unix milliseconds. Fractions of a second beyond the
/// millisecond are truncated; a leap second (`:60`) reads as the first
/// millisecond of the next minute.
///
/// # Errors
/// [`TimestampError`] saying what is wrong; see the module docs.
pub fn parse_timestamp_ms(text: &str) -> Result<u64, TimestampError> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let ms = trimmed
            .parse::<u64>()
            .map_err(|_| TimestampError::Format(text.to_owned()))?;
        return check_unix_ms(ms);
    }
    let ms = parse_rfc3339(trimmed.as_bytes()).map_err(|e| match e {
        Fail::Format => TimestampError::Format(text.to_owned()),
        Fail::Range(field) => TimestampError::Range {
            field,
            text: text.to_owned(),
        },
    })?;
    check_unix_ms(ms)
}

/// Internal failure, turned into a [`TimestampError`] with the text.
enum Fail {
    Format,
    Range(&'static str),
}

/// A fixed-width run of ASCII digits at `at`.
fn digits(s: &[u8], at: usize, len: usize) -> Result<u64, Fail> {
    let part = s.get(at..at + len).ok_or(Fail::Format)?;
    part.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u64::from(b - b'0'))
        } else {
            Err(Fail::Format)
        }
    })
}

/// The byte at `at` must be `want` (any of them).
fn expect(s: &[u8], at: usize, want: &[u8]) -> Result<(), Fail> {
    match s.get(at) {
        Some(b) if want.contains(b) => Ok(()),
        _ => Err(Fail::Format),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` to Unix ms.
fn parse_rfc3339(s: &[u8]) -> Result<u64, Fail> {
    // Date and time: fixed positions.
    let year = digits(s, 0, 4)?;
    expect(s, 4, b"-")?;
    let month = digits(s, 5, 2)?;
    expect(s, 7, b"-")?;
    let day = digits(s, 8, 2)?;
    expect(s, 10, b"Tt ")?;
    let hour = digits(s, 11, 2)?;
    expect(s, 13, b":")?;
    let minute = digits(s, 14, 2)?;
    expect(s, 16, b":")?;
    let second = digits(s, 17, 2)?;

    // Optional fraction: keep the first three digits.
    let mut at = 19;
    let mut millis = 0;
    if s.get(at) == Some(&b'.') {
        let start = at + 1;
        let len = s[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(Fail::Format);
        }
        for i in 0..3 {
            let digit = if i < len {
                u64::from(s[start + i] - b'0')
            } else {
                0
            };
            millis = millis * 10 + digit;
        }
        at = start + len;
    }

    // Zone: Z, or an offset to subtract.
    let offset_min: i64 = match s.get(at) {
        Some(b'Z' | b'z') if s.len() == at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if s.len() == at + 6 => {
            let h = digits(s, at + 1, 2)?;
            expect(s, at + 3, b":")?;
            let m = digits(s, at + 4, 2)?;
            if h > 23 || m > 59 {
                return Err(Fail::Range("offset"));
            }
            let total = (h * 60 + m) as i64;
            if sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return Err(Fail::Format),
    };

    // Ranges, then the day count.
    if !(1..=12).contains(&month) {
        return Err(Fail::Range("month"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(Fail::Range("day"));
    }
    if hour > 23 {
        return Err(Fail::Range("hour"));
    }
    if minute > 59 {
        return Err(Fail::Range("minute"));
    }
    if second > 60 {
        return Err(Fail::Range("second"));
    }
    let days = days_since_epoch(year, month, day).ok_or(Fail::Range("year"))?;
    let local_s = days * 86_400 + (hour * 3_600 + minute * 60 + second) as i64;
    let utc_ms = (local_s - offset_min * 60) * 1_000 + millis as i64;
    u64::try_from(utc_ms).map_err(|_| Fail::Range("year"))
}

/// Whether `year` is a Gregorian leap year.
fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Days in `month` (1-12) of `year`.
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (valid, year 1970 or later):
/// whole years first, then whole months of the last year. `None` before
/// 1970.
fn days_since_epoch(year: u64, month: u64, day: u64) -> Option<i64> {
    if year < 1970 {
        return None;
    }
    // Leap days in the years [1970, year): leap years below `year` minus
    // those below 1970.
    let leaps_before = |y: u64| (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
    let leap_days = leaps_before(year) - leaps_before(1970);
    let year_days = (year - 1970) * 365 + leap_days;
    let month_days: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    i64::try_from(year_days + month_days + day - 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_date_times_and_offsets_give_unix_milliseconds() {
        assert_eq!(parse_timestamp_ms("2000-01-01T00:00:00Z"), Ok(MIN_EVENT_MS));
        assert_eq!(
            parse_timestamp_ms("2026-03-01T09:00:00Z"),
            Ok(1_772_355_600_000)
        );
        assert_eq!(
            parse_timestamp_ms("2026-03-01t10:00:00.250+01:00"),
            Ok(1_772_355_600_250)
        );
        assert_eq!(
            parse_timestamp_ms("2026-03-01 04:30:00.1234-04:30"),
            Ok(1_772_355_600_123)
        );
        assert_eq!(
            parse_timestamp_ms("9999-12-31T23:59:59.999Z"),
            Ok(MAX_EVENT_MS)
        );
    }

    #[test]
    fn leap_days_and_leap_seconds_are_counted() {
        assert_eq!(
            parse_timestamp_ms("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        assert_eq!(
            parse_timestamp_ms("2016-12-31T23:59:60Z"),
            parse_timestamp_ms("2017-01-01T00:00:00Z")
        );
        assert!(matches!(
            parse_timestamp_ms("2023-02-29T00:00:00Z"),
            Err(TimestampError::Range { field: "day", .. })
        ));
        assert!(matches!(
            parse_timestamp_ms("2100-02-29T00:00:00Z"),
            Err(TimestampError::Range { field: "day", .. })
        ));
    }

    #[test]
    fn digits_are_milliseconds_and_seconds_are_caught() {
        assert_eq!(parse_timestamp_ms("1772355600000"), Ok(1_772_355_600_000));
        assert_eq!(
            parse_timestamp_ms("1772355600"),
            Err(TimestampError::Implausible { ms: 1_772_355_600 })
        );
        assert!(check_unix_ms(MAX_EVENT_MS + 1).is_err());
        assert!(parse_timestamp_ms("99999999999999999999999").is_err());
    }

    #[test]
    fn malformed_and_zoneless_times_are_refused() {
        for bad in [
            "",
            "2026-03-01",
            "2026-03-01T09:00:00",
            "2026-03-01T09:00Z",
            "2026-3-01T09:00:00Z",
            "2026-03-01T09:00:00.Z",
            "2026-03-01T09:00:00+0100",
            "2026-03-01T09:00:00Zjunk",
            "yesterday",
            "2026-03-01T09:00:00\u{00e9}",
        ] {
            assert!(
                matches!(parse_timestamp_ms(bad), Err(TimestampError::Format(_))),
                "{bad:?}"
            );
        }
        for (bad, field) in [
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-04-31T00:00:00Z", "day"),
            ("2026-03-01T24:00:00Z", "hour"),
            ("2026-03-01T00:60:00Z", "minute"),
            ("2026-03-01T00:00:61Z", "second"),
            ("2026-03-01T00:00:00+24:00", "offset"),
            ("1969-12-31T23:59:59Z", "year"),
        ] {
            assert!(
                matches!(parse_timestamp_ms(bad), Err(TimestampError::Range { field: f, .. }) if f == field),
                "{bad:?}"
            );
        }
    }
}
