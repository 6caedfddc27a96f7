//! World Cup 1998 CSV rows: `ClientID,Date,Time,URL,ResponseCode,Size`.
//!
//! This is the AMPLab conversion of the ITA WorldCup98 binary logs (see
//! `shared/traces/SOURCES.md`): no header, times in GMT, `-` for an unknown status
//! or size, rows not in time order. The conversion dropped the request method; the
//! site served static content, so every row is read as `GET`. A URL may in
//! principle contain a comma, so the URL is everything between the third field
//! and the last two.

use super::time::{parse_digits, parse_dmy, parse_hms, CivilTime};

/// The fields of one parsed World Cup row, borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wc98Row<'a> {
    /// The anonymised integer client id, as written (digits only).
    pub client: &'a str,
    /// Milliseconds since the Unix epoch (the file's times are GMT).
    pub unix_ms: u64,
    /// The requested URL (a path).
    pub path: &'a str,
    /// The response code; `None` when written as `-`.
    pub status: Option<u16>,
    /// The response size in bytes; `None` when written as `-`.
    pub bytes: Option<u64>,
}

/// Parses one row; `None` when it does not have the World Cup CSV shape.
pub(super) fn parse_row(line: &str) -> Option<Wc98Row<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut head = line.splitn(4, ',');
    let client = head.next()?;
    let date = head.next()?;
    let clock = head.next()?;
    let tail = head.next()?;
    parse_digits(client)?;

    // The last two fields are status and size; the URL is what precedes them.
    let (rest, size) = tail.rsplit_once(',')?;
    let (path, status) = rest.rsplit_once(',')?;
    if !path.starts_with('/') {
        return None;
    }
    let (year, month, day) = parse_dmy(date)?;
    let (hour, minute, second) = parse_hms(clock)?;
    let unix_ms = CivilTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        millis: 0,
    }
    .unix_ms(0)?;
    let status = match status {
        "-" => None,
        code => Some(
            code.parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))?,
        ),
    };
    let bytes = match size {
        "-" => None,
        n => Some(n.parse::<u64>().ok()?),
    };
    Some(Wc98Row {
        client,
        unix_ms,
        path,
        status,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_yields_client_time_path_status_and_size() {
        let row = parse_row("1044,30/Apr/1998,22:46:12,/images/11104.gif,200,508\n")
            .expect("a valid row");
        assert_eq!(row.client, "1044");
        assert_eq!(row.unix_ms, 893_976_372_000);
        assert_eq!(row.path, "/images/11104.gif");
        assert_eq!(row.status, Some(200));
        assert_eq!(row.bytes, Some(508));
    }

    #[test]
    fn dashes_and_commas_in_the_url_are_accepted() {
        let row = parse_row("7,01/May/1998,00:00:00,/a,b.htm,-,-").expect("a valid row");
        assert_eq!(row.path, "/a,b.htm");
        assert_eq!(row.status, None);
        assert_eq!(row.bytes, None);
    }

    #[test]
    fn rows_of_another_shape_are_rejected() {
        assert_eq!(parse_row("ClientID,Date,Time,URL,ResponseCode,Size"), None);
        assert_eq!(parse_row("x1,30/Apr/1998,22:46:12,/a,200,1"), None);
        assert_eq!(parse_row("1,30/Apr/1998,25:46:12,/a,200,1"), None);
        assert_eq!(parse_row("1,30/Apr/1998,22:46:12,/a,200"), None);
        assert_eq!(parse_row("1,30/Apr/1998,22:46:12,/a,abc,1"), None);
    }
}
