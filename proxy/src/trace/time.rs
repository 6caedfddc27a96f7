//! Calendar arithmetic for log timestamps.
//!
//! Access logs carry civil dates (`17/May/2015:10:05:03 +0000`, `30/Apr/1998` plus
//! `22:46:12`, ISO 8601 in counts files). The root package has no date crate, and
//! the readers only need "civil time to milliseconds since the Unix epoch" for
//! dates after 1970, so this module does that conversion with the proleptic
//! Gregorian day count and nothing else: no time zones beyond a fixed offset, no
//! leap seconds (a `:60` second is rejected).

/// Milliseconds in one second.
const MS_PER_SEC: i64 = 1_000;

/// Days from 1970-01-01 to the civil date `year-month-day` (proleptic Gregorian).
///
/// Negative before 1970. `month` is 1..=12 and `day` 1..=31; the caller checks ranges.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year so that it starts in March: the leap day is then the last
    // day of the shifted year and every month before it has a fixed length.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let shifted_month = if m > 2 { m - 3 } else { m + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The month number (1..=12) of an English three-letter abbreviation (`Jan`..`Dec`).
///
/// Matching ignores ASCII case; anything else is `None`.
pub(super) fn month_from_abbrev(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// A civil date and time of day, validated field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl CivilTime {
    /// Milliseconds since the Unix epoch of this time read at UTC offset
    /// `offset_minutes` (east positive, as in `+0200`).
    ///
    /// `None` when a field is out of range or the instant is before 1970.
    pub(super) fn unix_ms(&self, offset_minutes: i32) -> Option<u64> {
        let valid = (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.millis < 1_000;
        if !valid {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(offset_minutes) * 60;
        u64::try_from(secs * MS_PER_SEC + i64::from(self.millis)).ok()
    }
}

/// Parses a fixed-width run of ASCII digits; `None` on any other byte or an empty input.
pub(super) fn parse_digits(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses `dd/Mon/yyyy` (the Apache and World Cup date form) into (year, month, day).
///
/// The day may have one or two digits; the year must have four.
pub(super) fn parse_dmy(text: &str) -> Option<(i64, u32, u32)> {
    let mut parts = text.split('/');
    let day = parts
        .next()
        .filter(|d| d.len() <= 2)
        .and_then(parse_digits)?;
    let month = month_from_abbrev(parts.next()?)?;
    let year = parts
        .next()
        .filter(|y| y.len() == 4)
        .and_then(parse_digits)?;
    if parts.next().is_some() {
        return None;
    }
    Some((i64::from(year), month, day))
}

/// Parses `HH:MM:SS` (two digits each) into (hour, minute, second).
pub(super) fn parse_hms(text: &str) -> Option<(u32, u32, u32)> {
    let two_digits = |part: &str| {
        if part.len() == 2 {
            parse_digits(part)
        } else {
            None
        }
    };
    let mut parts = text.split(':');
    let hour = two_digits(parts.next()?)?;
    let minute = two_digits(parts.next()?)?;
    let second = two_digits(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some((hour, minute, second))
}

/// Parses a numeric UTC offset `+hhmm`, `-hhmm`, `+hh:mm` or `Z` into minutes east.
pub(super) fn parse_offset(text: &str) -> Option<i32> {
    if text == "Z" || text == "z" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return None;
    }
    let hours = i32::try_from(parse_digits(&digits[..2])?).ok()?;
    let minutes = i32::try_from(parse_digits(&digits[2..])?).ok()?;
    Some(sign * (hours * 60 + minutes))
}

/// Parses an ISO 8601 timestamp `YYYY-MM-DD[T| ]HH:MM[:SS[.fff]][Z|±hh:mm]` or a bare
/// date `YYYY-MM-DD`, into milliseconds since the Unix epoch. No offset means UTC.
pub(super) fn parse_iso8601(text: &str) -> Option<u64> {
    let text = text.trim();
    let date = text.get(..10)?;
    let mut parts = date.split('-');
    let year = i64::from(parse_digits(parts.next()?)?);
    let month = parse_digits(parts.next()?)?;
    let day = parse_digits(parts.next()?)?;
    let mut civil = CivilTime {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        millis: 0,
    };
    let rest = &text[10..];
    if rest.is_empty() {
        return civil.unix_ms(0);
    }

    // Split the time of day from a trailing offset, which starts at Z, + or -.
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let offset_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, offset) = rest.split_at(offset_at);
    let offset_minutes = if offset.is_empty() {
        0
    } else {
        parse_offset(offset)?
    };
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = clock.split(':');
    civil.hour = parse_digits(fields.next()?)?;
    civil.minute = parse_digits(fields.next()?)?;
    civil.second = fields.next().map_or(Some(0), parse_digits)?;
    if fields.next().is_some() {
        return None;
    }
    if !fraction.is_empty() {
        // Keep milliseconds; finer digits are truncated.
        let ms_digits = &fraction[..fraction.len().min(3)];
        let scale = 10u32.pow(3 - u32::try_from(ms_digits.len()).ok()?);
        civil.millis = parse_digits(ms_digits)? * scale;
    }
    civil.unix_ms(offset_minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates_convert_to_unix_ms() {
        let at = |y, mo, d, h, mi, s| CivilTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            millis: 0,
        };
        assert_eq!(at(1970, 1, 1, 0, 0, 0).unix_ms(0), Some(0));
        // 2015-05-17T10:05:03Z, checked with `date -u -d ... +%s`.
        assert_eq!(
            at(2015, 5, 17, 10, 5, 3).unix_ms(0),
            Some(1_431_857_103_000)
        );
        // Leap day 2000-02-29.
        assert_eq!(at(2000, 2, 29, 0, 0, 0).unix_ms(0), Some(951_782_400_000));
        // 1995-07-01T00:00:01-0400 is 04:00:01 UTC.
        assert_eq!(at(1995, 7, 1, 0, 0, 1).unix_ms(-240), Some(804_571_201_000));
    }

    #[test]
    fn out_of_range_fields_and_pre_epoch_dates_are_rejected() {
        let civil = CivilTime {
            year: 2015,
            month: 13,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
        };
        assert_eq!(civil.unix_ms(0), None);
        let civil = CivilTime {
            month: 1,
            year: 1969,
            ..civil
        };
        assert_eq!(civil.unix_ms(0), None);
    }

    #[test]
    fn apache_and_iso_forms_parse() {
        assert_eq!(parse_dmy("30/Apr/1998"), Some((1998, 4, 30)));
        assert_eq!(parse_dmy("30/Foo/1998"), None);
        assert_eq!(parse_hms("22:46:12"), Some((22, 46, 12)));
        assert_eq!(parse_hms("22:46:1"), None);
        assert_eq!(parse_dmy("30/Apr/98"), None);
        assert_eq!(parse_offset("+0200"), Some(120));
        assert_eq!(parse_offset("-04:00"), Some(-240));
        assert_eq!(parse_iso8601("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_iso8601("1970-01-01T00:01:00Z"), Some(60_000));
        assert_eq!(parse_iso8601("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(parse_iso8601("1970-01-01T00:00:01.25"), Some(1_250));
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}
