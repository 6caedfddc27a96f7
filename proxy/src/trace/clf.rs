//! Common and Combined Log Format lines (Apache, nginx defaults).
//!
//! `host ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "METHOD target HTTP/x" status bytes`
//! optionally followed by `"referer" "user-agent"` (Combined). The parser works on
//! borrowed slices of one line and allocates nothing; the caller decides what to
//! copy or intern. Quoted fields may contain backslash-escaped quotes, as Apache
//! writes them. Lines whose request is not `METHOD target [protocol]` (for example
//! the `"-"` Apache logs for a connection closed before a request arrived) are
//! rejected, because there is nothing to replay.

use super::time::{parse_dmy, parse_hms, parse_offset, CivilTime};

/// The fields of one parsed access-log line, borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClfLine<'a> {
    /// The client host or address, as logged.
    pub host: &'a str,
    /// Milliseconds since the Unix epoch (UTC).
    pub unix_ms: u64,
    /// The request method, e.g. `GET`.
    pub method: &'a str,
    /// The request target, reduced to path and query when it was an absolute URL.
    pub path: &'a str,
    /// The response status; `None` when logged as `-`.
    pub status: Option<u16>,
    /// The response body size; `None` when logged as `-`.
    pub bytes: Option<u64>,
    /// The User-Agent of Combined lines; `None` for Common lines or `-`.
    pub user_agent: Option<&'a str>,
}

/// Parses one line; `None` when it is not a Common or Combined Log Format line.
pub(super) fn parse_line(line: &str) -> Option<ClfLine<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (host, rest) = line.split_once(' ')?;
    if host.is_empty() {
        return None;
    }

    // Skip ident and user (each may contain anything but a bracket in practice),
    // then read the bracketed timestamp.
    let open = rest.find('[')?;
    let close = open + rest[open..].find(']')?;
    let unix_ms = parse_timestamp(&rest[open + 1..close])?;
    let rest = rest[close + 1..].trim_start();

    let (request, rest) = take_quoted(rest)?;
    let (method, path) = split_request(request)?;
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status = parse_status(fields.next()?)?;
    let bytes = parse_dash_or(fields.next()?, |t| t.parse::<u64>().ok())?;

    // Combined format: "referer" "user-agent"; Common format stops here.
    let tail = fields.next().unwrap_or("").trim_start();
    let user_agent = match take_quoted(tail) {
        Some((_referer, after)) => take_quoted(after.trim_start())
            .map(|(agent, _)| agent)
            .filter(|agent| !agent.is_empty() && *agent != "-"),
        None => None,
    };
    Some(ClfLine {
        host,
        unix_ms,
        method,
        path,
        status,
        bytes,
        user_agent,
    })
}

/// `dd/Mon/yyyy:HH:MM:SS +zzzz` to Unix milliseconds; a missing offset means UTC.
fn parse_timestamp(text: &str) -> Option<u64> {
    let (stamp, offset) = text.split_once(' ').unwrap_or((text, "+0000"));
    let (date, clock) = stamp.split_once(':')?;
    let (year, month, day) = parse_dmy(date)?;
    let (hour, minute, second) = parse_hms(clock)?;
    let civil = CivilTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        millis: 0,
    };
    civil.unix_ms(parse_offset(offset.trim())?)
}

/// Reads a `"..."` field at the start of `text`, honouring `\"` escapes.
///
/// Returns the raw contents (escapes left in place) and the text after the
/// closing quote.
fn take_quoted(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('"')?;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&body[..i], &body[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Splits `METHOD target [protocol]` and reduces an absolute-URL target to its path.
fn split_request(request: &str) -> Option<(&str, &str)> {
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    let method = parts.next()?;
    let target = parts.next()?;
    let is_token = method
        .bytes()
        .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
    if method.len() > 16 || !is_token {
        return None;
    }
    let path = if target.starts_with('/') || target == "*" {
        target
    } else if let Some(after_scheme) = target.split_once("://").map(|(_, rest)| rest) {
        // Proxy-style request line: keep what follows the authority.
        after_scheme.find('/').map_or("/", |at| &after_scheme[at..])
    } else {
        return None;
    };
    Some((method, path))
}

/// A three-digit status in 100..=599, or `-` (kept as `None`).
fn parse_status(token: &str) -> Option<Option<u16>> {
    parse_dash_or(token, |t| {
        t.parse::<u16>().ok().filter(|s| (100..=599).contains(s))
    })
}

/// `Some(None)` for `-`, `Some(Some(v))` when `parse` accepts the token, else `None`.
fn parse_dash_or<T>(token: &str, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    if token == "-" {
        Some(None)
    } else {
        parse(token).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line_yields_every_field() {
        let line = r#"198.18.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a/b.png?x=1 HTTP/1.1" 200 203023 "http://ref/" "Mozilla/5.0 (X11)""#;
        let parsed = parse_line(line).expect("a valid combined line");
        assert_eq!(parsed.host, "198.18.0.1");
        assert_eq!(parsed.unix_ms, 1_431_857_103_000);
        assert_eq!(parsed.method, "GET");
        assert_eq!(parsed.path, "/a/b.png?x=1");
        assert_eq!(parsed.status, Some(200));
        assert_eq!(parsed.bytes, Some(203_023));
        assert_eq!(parsed.user_agent, Some("Mozilla/5.0 (X11)"));
    }

    #[test]
    fn common_line_with_dash_bytes_and_offset_parses() {
        let line = r#"host.example - frank [10/Oct/2000:13:55:36 -0700] "HEAD / HTTP/1.0" 304 -"#;
        let parsed = parse_line(line).expect("a valid common line");
        assert_eq!(parsed.method, "HEAD");
        assert_eq!(parsed.bytes, None);
        assert_eq!(parsed.user_agent, None);
        // 13:55:36 at -0700 is 20:55:36 UTC.
        assert_eq!(parsed.unix_ms, 971_211_336_000);
    }

    #[test]
    fn escaped_quotes_and_absolute_targets_are_handled() {
        let line = r#"1.2.3.4 - - [01/Jan/2020:00:00:00 +0000] "GET http://h.example/p?q HTTP/1.1" 200 5 "-" "say \"hi\"""#;
        let parsed = parse_line(line).expect("a valid line");
        assert_eq!(parsed.path, "/p?q");
        assert_eq!(parsed.user_agent, Some(r#"say \"hi\""#));
    }

    #[test]
    fn lines_without_a_request_or_timestamp_are_rejected() {
        assert_eq!(
            parse_line(r#"1.2.3.4 - - [01/Jan/2020:00:00:00 +0000] "-" 408 -"#),
            None
        );
        assert_eq!(
            parse_line(r#"1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 1"#),
            None
        );
        assert_eq!(
            parse_line(r#"1.2.3.4 - - [01/Jan/2020:00:00:00 +0000] "GET / HTTP/1.1" 999 1"#),
            None
        );
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line(""), None);
    }
}
