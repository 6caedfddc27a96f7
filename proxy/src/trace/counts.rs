//! Aggregate demand series: request counts per fixed time step, with no clients.
//!
//! Two shapes are read. The NASA-HTTP file in `shared/traces` is one line of
//! space-separated integers, one per second (5,059,950 values): it is parsed byte
//! by byte from the reader's buffer, without building a `String` for the line, so
//! memory stays at one `u32` per value and a release build parses it in well under
//! a second. The other shape is a CSV file whose header names a timestamp column
//! and a count column (`period,count`); its rows are bucketed by the smallest gap
//! between distinct timestamps.
//!
//! A plain series carries no timestamps, so its `start_ms` is 0 and its step is
//! assumed to be one second (true of the NASA file). A malformed value keeps its
//! slot as a zero so that later values stay aligned in time; it is counted in
//! [`TraceStats::malformed`].

use std::io::{self, BufRead};
use std::sync::Arc;

use super::time::parse_iso8601;
use super::{TraceError, TraceRecord, TraceStats};

/// Buckets beyond which a CSV series is refused rather than allocated (about
/// 400 MB of counts); a finer step than the data supports usually causes it.
const MAX_BUCKETS: u64 = 100_000_000;

/// Header names accepted for the timestamp column (ASCII case ignored).
const TIME_COLUMNS: [&str; 9] = [
    "period",
    "timestamp",
    "time",
    "ts",
    "date",
    "datetime",
    "minute",
    "hour",
    "bucket",
];

/// Header names accepted for the count column (ASCII case ignored).
const COUNT_COLUMNS: [&str; 7] = ["count", "counts", "requests", "value", "hits", "n", "rps"];

/// Requests per time step, from `start_ms` onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountSeries {
    /// Start of the first bucket, in milliseconds since the Unix epoch; 0 when the
    /// file carries no timestamps (then times are relative to the first value).
    pub start_ms: u64,
    /// Width of every bucket in milliseconds; never 0.
    pub step_ms: u64,
    /// Requests observed in each bucket, in time order.
    pub counts: Vec<u32>,
}

impl CountSeries {
    /// Total requests over the whole series.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// Expands the series into individual requests from `clients` synthetic clients
    /// (`synthetic-0` ..), for replay where no client identity exists.
    ///
    /// Requests of a bucket are spread evenly across it; each goes to a client
    /// picked by a fixed hash of its position, so the result is deterministic.
    /// `t_ms` is relative to the series start. Stops before `until_ms` (relative)
    /// when given, so a short replay of a long series stays small. `clients == 0`
    /// is treated as 1. Method `GET`, path `/`, no status, size or User-Agent.
    pub fn expand(&self, clients: u32, until_ms: Option<u64>) -> Vec<TraceRecord> {
        let clients = clients.max(1);
        let names: Vec<Arc<str>> = (0..clients)
            .map(|i| Arc::from(format!("synthetic-{i}")))
            .collect();
        let path: Arc<str> = Arc::from("/");
        let mut records = Vec::new();
        for (bucket, &count) in (0u64..).zip(&self.counts) {
            let bucket_start = bucket * self.step_ms;
            if until_ms.is_some_and(|until| bucket_start >= until) {
                break;
            }
            for j in 0..u64::from(count) {
                let t_ms = bucket_start + j * self.step_ms / u64::from(count);
                let pick = mix64(bucket.wrapping_mul(0x1_0000_0001) ^ j) % u64::from(clients);
                let client = usize::try_from(pick).expect("pick < clients, which is a u32");
                records.push(TraceRecord {
                    t_ms,
                    client: Arc::clone(&names[client]),
                    method: http::Method::GET,
                    path: Arc::clone(&path),
                    status: None,
                    bytes: None,
                    user_agent: None,
                });
            }
        }
        records
    }
}

/// A 64-bit finaliser (SplitMix64's): a fixed, well-spread hash of `x`.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Reads whitespace-separated integers (any mix of spaces, tabs and newlines).
///
/// Each value is one step of one second. In [`TraceStats`], each value counts
/// as a line; a token that is not a `u32` is malformed and stored as 0.
pub(super) fn read_plain<R: BufRead>(mut reader: R) -> io::Result<(CountSeries, TraceStats)> {
    let mut counts = Vec::new();
    let mut stats = TraceStats::default();
    let mut value: u64 = 0;
    let mut in_token = false;
    let mut bad = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        for &byte in chunk {
            if byte.is_ascii_digit() {
                in_token = true;
                value = value
                    .saturating_mul(10)
                    .saturating_add(u64::from(byte - b'0'));
                bad |= value > u64::from(u32::MAX);
            } else if byte.is_ascii_whitespace() {
                if in_token {
                    push_value(&mut counts, &mut stats, value, bad);
                }
                (value, in_token, bad) = (0, false, false);
            } else {
                // Any other byte spoils the token it belongs to.
                (value, in_token, bad) = (0, true, true);
            }
        }
        let used = chunk.len();
        reader.consume(used);
    }
    if in_token {
        push_value(&mut counts, &mut stats, value, bad);
    }
    Ok((
        CountSeries {
            start_ms: 0,
            step_ms: 1_000,
            counts,
        },
        stats,
    ))
}

/// Appends one token's value, or a zero placeholder when it was malformed.
fn push_value(counts: &mut Vec<u32>, stats: &mut TraceStats, value: u64, bad: bool) {
    stats.lines += 1;
    match u32::try_from(value) {
        Ok(count) if !bad => {
            stats.parsed += 1;
            counts.push(count);
        }
        _ => {
            stats.malformed += 1;
            counts.push(0);
        }
    }
}

/// The (timestamp, count) column indexes named by a CSV header line, if any.
pub(super) fn csv_columns(header: &str) -> Option<(usize, usize)> {
    let names: Vec<String> = header
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let time = names
        .iter()
        .position(|n| TIME_COLUMNS.contains(&n.as_str()))?;
    let count = names
        .iter()
        .position(|n| COUNT_COLUMNS.contains(&n.as_str()))?;
    Some((time, count))
}

/// Reads a CSV counts file whose first line is a header naming the columns.
///
/// Timestamps may be ISO 8601 or integers (Unix seconds below 10^11, else
/// milliseconds); counts are non-negative integers or decimals (rounded).
/// Rows may come in any order; equal timestamps add up. The header line is not
/// counted in [`TraceStats`].
pub(super) fn read_csv<R: BufRead>(mut reader: R) -> Result<(CountSeries, TraceStats), TraceError> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let (time_col, count_col) = csv_columns(&line).ok_or(TraceError::UnknownFormat)?;

    // Collect (time, count) pairs, then bucket them once the step is known.
    let mut stats = TraceStats::default();
    let mut rows: Vec<(u64, u64)> = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        let fields: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').collect();
        let row = fields
            .get(time_col)
            .and_then(|t| parse_time(t.trim().trim_matches('"')))
            .zip(
                fields
                    .get(count_col)
                    .and_then(|c| parse_count(c.trim().trim_matches('"'))),
            );
        match row {
            Some(row) => {
                stats.parsed += 1;
                rows.push(row);
            }
            None => stats.malformed += 1,
        }
    }
    Ok((bucket_rows(rows)?, stats))
}

/// Places rows into buckets as wide as the smallest gap between distinct times.
fn bucket_rows(mut rows: Vec<(u64, u64)>) -> Result<CountSeries, TraceError> {
    rows.sort_by_key(|&(t, _)| t);
    let Some(&(start_ms, _)) = rows.first() else {
        return Ok(CountSeries {
            start_ms: 0,
            step_ms: 1_000,
            counts: Vec::new(),
        });
    };
    let step_ms = rows
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|&gap| gap > 0)
        .min()
        .unwrap_or(1_000);
    let last = rows.last().map_or(start_ms, |&(t, _)| t);
    let buckets = (last - start_ms) / step_ms + 1;
    if buckets > MAX_BUCKETS {
        return Err(TraceError::SeriesTooLong { buckets });
    }
    let len = usize::try_from(buckets).map_err(|_| TraceError::SeriesTooLong { buckets })?;
    let mut counts = vec![0u32; len];
    for (t, count) in rows {
        let index = usize::try_from((t - start_ms) / step_ms).expect("index < buckets <= len");
        let slot = &mut counts[index];
        *slot = slot.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
    }
    Ok(CountSeries {
        start_ms,
        step_ms,
        counts,
    })
}

/// A timestamp cell: integer Unix seconds or milliseconds, or ISO 8601.
fn parse_time(cell: &str) -> Option<u64> {
    if !cell.is_empty() && cell.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = cell.parse().ok()?;
        return Some(if n < 100_000_000_000 { n * 1_000 } else { n });
    }
    parse_iso8601(cell)
}

/// A count cell: a non-negative integer, or a finite non-negative decimal (rounded).
fn parse_count(cell: &str) -> Option<u64> {
    if let Ok(n) = cell.parse::<u64>() {
        return Some(n);
    }
    let x: f64 = cell.parse().ok()?;
    // Float-to-int `as` saturates; the range check keeps the meaning exact.
    (x.is_finite() && (0.0..1e18).contains(&x)).then(|| x.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_series_counts_values_and_keeps_slots_for_malformed_tokens() {
        let input = b"1 0 2\n3 x4 5 99999999999\t7";
        let (series, stats) = read_plain(&input[..]).expect("in-memory read");
        assert_eq!(series.counts, vec![1, 0, 2, 3, 0, 5, 0, 7]);
        assert_eq!(series.step_ms, 1_000);
        assert_eq!(
            stats,
            TraceStats {
                lines: 8,
                parsed: 6,
                malformed: 2
            }
        );
        assert_eq!(series.total(), 18);
    }

    #[test]
    fn csv_series_buckets_by_smallest_gap_and_fills_holes() {
        let input = "period,count\n1970-01-01T00:02:00Z,4\n60,2\n\n0,1\nbad,3\n180,2.6\n60,1\n";
        let (series, stats) = read_csv(input.as_bytes()).expect("valid csv");
        assert_eq!(series.start_ms, 0);
        assert_eq!(series.step_ms, 60_000);
        assert_eq!(series.counts, vec![1, 3, 4, 3]);
        assert_eq!(
            stats,
            TraceStats {
                lines: 6,
                parsed: 5,
                malformed: 1
            }
        );
    }

    #[test]
    fn csv_without_a_time_and_count_header_is_refused() {
        assert!(matches!(
            read_csv("a,b\n1,2\n".as_bytes()),
            Err(TraceError::UnknownFormat)
        ));
        assert_eq!(csv_columns("Timestamp, Requests"), Some((0, 1)));
    }

    #[test]
    fn expand_spreads_each_bucket_over_its_step_and_stops_at_the_limit() {
        let series = CountSeries {
            start_ms: 0,
            step_ms: 1_000,
            counts: vec![2, 0, 4, 1],
        };
        let records = series.expand(3, Some(3_000));
        let times: Vec<u64> = records.iter().map(|r| r.t_ms).collect();
        assert_eq!(times, vec![0, 500, 2_000, 2_250, 2_500, 2_750]);
        assert!(records.iter().all(|r| r.client.starts_with("synthetic-")));
        assert_eq!(series.expand(0, None).len(), 7);
    }
}
