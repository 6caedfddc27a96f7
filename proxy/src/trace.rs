//! Readers for real HTTP request traces, used as load by `headroom demo --trace`
//! and `headroom replay`, and as input to offline evaluation.
//!
//! Real logs are the honest test of a demand forecaster: synthetic load only
//! shows what its author assumed. The formats are those of the traces kept in
//! `shared/traces` (see its `SOURCES.md`): Common and Combined Log Format, the
//! World Cup 1998 CSV, and aggregate count series (one line of per-second integers,
//! or CSV with a time and a count column). The format is detected from the content,
//! and gzip input is recognised by its magic bytes, so file names do not matter.
//!
//! Per-request formats are read line by line through a [`RecordStream`] that
//! holds one line at a time; [`open`] and [`read`] collect the stream, sort it by
//! time (stably: equal times keep file order) and rebase times to the first
//! request, because neither sample file is in time order. Malformed lines are
//! counted in [`TraceStats`] and skipped; they never fail a read. Client names,
//! paths and User-Agents are interned, so a 200,000-row trace holds each distinct
//! string once.

mod clf;
mod counts;
mod time;
mod wc98;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fixed 64-bit hash, shared with the demo for stable per-path choices.
pub(crate) use counts::mix64;
pub use counts::CountSeries;

/// Bytes read ahead to recognise compression and format.
const SNIFF_BYTES: usize = 64 * 1024;

/// Lines of the sniffed sample that format detection looks at.
const SNIFF_LINES: usize = 20;

/// Reader buffer size; large enough that the NASA series is read in few calls.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Errors from opening or reading a trace. Malformed lines are not errors.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened.
    #[error("cannot open trace {path}: {source}")]
    Open {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Reading or decompressing failed part-way.
    #[error("cannot read trace: {0}")]
    Io(#[from] io::Error),
    /// The content matched none of the supported formats.
    #[error(
        "unrecognised trace format: expected Common/Combined Log Format, World Cup CSV \
         (ClientID,Date,Time,URL,ResponseCode,Size), space-separated counts, or CSV with a \
         time and a count column"
    )]
    UnknownFormat,
    /// A counts CSV whose time span divided by its step is absurdly large.
    #[error("counts series would need {buckets} buckets, more than the 100000000 allowed")]
    SeriesTooLong {
        /// Buckets the series would have needed.
        buckets: u64,
    },
}

/// The trace formats this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Apache/nginx Common or Combined Log Format, one request per line.
    CommonLog,
    /// World Cup 1998 CSV `ClientID,Date,Time,URL,ResponseCode,Size`, no header.
    WorldCupCsv,
    /// Whitespace-separated integers, one count per second (the NASA file).
    CountSeries,
    /// CSV with a header naming a timestamp and a count column.
    CountCsv,
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// Milliseconds since the first request of the trace. From a [`RecordStream`],
    /// before rebasing, milliseconds since the Unix epoch instead.
    pub t_ms: u64,
    /// The client as the log names it: an address, a host name, or an integer id.
    pub client: Arc<str>,
    /// The request method (`GET` where the format has none).
    pub method: http::Method,
    /// The request path with its query string.
    pub path: Arc<str>,
    /// The logged response status, when the log has one.
    pub status: Option<u16>,
    /// The logged response body size in bytes, when the log has one.
    pub bytes: Option<u64>,
    /// The logged User-Agent, when the log has one.
    pub user_agent: Option<Arc<str>>,
}

/// Line counts of one read. Invariant: `lines == parsed + malformed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Non-blank lines read (for a plain count series: values read).
    pub lines: u64,
    /// Lines (values) that parsed.
    pub parsed: u64,
    /// Lines (values) that did not parse and were skipped (or kept as 0 in a series).
    pub malformed: u64,
}

/// A per-request trace, sorted by time.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The detected format.
    pub format: TraceFormat,
    /// Unix milliseconds of the first request; `t_ms` values are relative to it.
    pub start_unix_ms: u64,
    /// The requests, sorted by `t_ms` (stable).
    pub records: Vec<TraceRecord>,
    /// Line counts of the read.
    pub stats: TraceStats,
}

impl RequestTrace {
    /// Number of distinct clients.
    pub fn distinct_clients(&self) -> usize {
        self.records
            .iter()
            .map(|r| &r.client)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Milliseconds from the first to the last request; 0 for an empty trace.
    pub fn span_ms(&self) -> u64 {
        self.records.last().map_or(0, |r| r.t_ms)
    }
}

/// A trace of either kind, as read from a file.
#[derive(Debug, Clone)]
pub enum Trace {
    /// Individual requests with client identities.
    Requests(RequestTrace),
    /// Aggregate counts with no clients.
    Counts {
        /// The detected format.
        format: TraceFormat,
        /// The counts.
        series: CountSeries,
        /// Line (value) counts of the read.
        stats: TraceStats,
    },
}

impl Trace {
    /// Line counts of the read.
    pub fn stats(&self) -> TraceStats {
        match self {
            Trace::Requests(trace) => trace.stats,
            Trace::Counts { stats, .. } => *stats,
        }
    }

    /// The detected format.
    pub fn format(&self) -> TraceFormat {
        match self {
            Trace::Requests(trace) => trace.format,
            Trace::Counts { format, .. } => *format,
        }
    }

    /// Requests to replay, sorted by `t_ms`: the records themselves, or a counts
    /// series expanded over `synthetic_clients` clients (see [`CountSeries::expand`]).
    /// Records at or after `until_ms` (relative) are dropped when it is given.
    pub fn into_records(self, synthetic_clients: u32, until_ms: Option<u64>) -> Vec<TraceRecord> {
        match self {
            Trace::Requests(mut trace) => {
                if let Some(until) = until_ms {
                    let keep = trace.records.partition_point(|r| r.t_ms < until);
                    trace.records.truncate(keep);
                }
                trace.records
            }
            Trace::Counts { series, .. } => series.expand(synthetic_clients, until_ms),
        }
    }
}

/// Opens and reads a trace file of any supported format, gzip or not.
pub fn open(path: &Path) -> Result<Trace, TraceError> {
    let file = File::open(path).map_err(|source| TraceError::Open {
        path: path.to_owned(),
        source,
    })?;
    read(file)
}

/// Reads a trace of any supported format from `reader`, gzip or not.
pub fn read<R: Read>(reader: R) -> Result<Trace, TraceError> {
    let (format, reader) = sniff(reader)?;
    let format = format.ok_or(TraceError::UnknownFormat)?;
    match format {
        TraceFormat::CommonLog | TraceFormat::WorldCupCsv => {
            let mut stream = RecordStream::new(format, reader);
            let mut records = stream.by_ref().collect::<io::Result<Vec<_>>>()?;
            Ok(Trace::Requests(sorted_trace(
                format,
                &mut records,
                stream.stats(),
            )))
        }
        TraceFormat::CountSeries => {
            let (series, stats) = counts::read_plain(reader)?;
            Ok(Trace::Counts {
                format,
                series,
                stats,
            })
        }
        TraceFormat::CountCsv => {
            let (series, stats) = counts::read_csv(reader)?;
            Ok(Trace::Counts {
                format,
                series,
                stats,
            })
        }
    }
}

/// Sorts records by time (stably) and rebases them to the first one.
fn sorted_trace(
    format: TraceFormat,
    records: &mut Vec<TraceRecord>,
    stats: TraceStats,
) -> RequestTrace {
    records.sort_by_key(|r| r.t_ms);
    let start_unix_ms = records.first().map_or(0, |r| r.t_ms);
    for record in records.iter_mut() {
        record.t_ms -= start_unix_ms;
    }
    RequestTrace {
        format,
        start_unix_ms,
        records: std::mem::take(records),
        stats,
    }
}

/// Unwraps gzip when present and detects the format from the first bytes.
///
/// Returns the detected format (if any) and a reader positioned at the start
/// of the (decompressed) content.
pub fn sniff<'a, R: Read + 'a>(
    reader: R,
) -> io::Result<(Option<TraceFormat>, Box<dyn BufRead + 'a>)> {
    let (magic, reader) = peek(reader, 2)?;
    let plain: Box<dyn Read + 'a> = if magic.starts_with(&[0x1f, 0x8b]) {
        let buffered = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else {
        Box::new(reader)
    };
    let (sample, reader) = peek(plain, SNIFF_BYTES)?;
    let format = detect(&sample, sample.len() < SNIFF_BYTES);
    Ok((
        format,
        Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, reader)),
    ))
}

/// Reads up to `n` bytes and returns them with a reader that replays them first.
fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, impl Read)> {
    let mut head = Vec::with_capacity(n);
    (&mut reader)
        .take(u64::try_from(n).unwrap_or(u64::MAX))
        .read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(reader)))
}

/// Detects the format of a sample of a file's (decompressed) start.
///
/// `complete` says the sample is the whole file; otherwise its last, possibly
/// cut, line is ignored. A per-line format wins when most sampled lines parse.
pub fn detect(sample: &[u8], complete: bool) -> Option<TraceFormat> {
    let text = String::from_utf8_lossy(sample);
    if !text.trim().is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_whitespace())
    {
        return Some(TraceFormat::CountSeries);
    }
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !complete && lines.len() > 1 {
        lines.pop();
    }
    let first = *lines.first()?;
    if counts::csv_columns(first).is_some() {
        return Some(TraceFormat::CountCsv);
    }
    lines.truncate(SNIFF_LINES);
    let majority = |ok: usize| ok * 2 > lines.len();
    if majority(
        lines
            .iter()
            .filter(|l| clf::parse_line(l).is_some())
            .count(),
    ) {
        Some(TraceFormat::CommonLog)
    } else if majority(
        lines
            .iter()
            .filter(|l| wc98::parse_row(l).is_some())
            .count(),
    ) {
        Some(TraceFormat::WorldCupCsv)
    } else {
        None
    }
}

/// A streaming reader of a per-request format: one line in memory at a time.
///
/// Yields records in file order with `t_ms` in Unix milliseconds; malformed and
/// blank lines are skipped (malformed ones counted). Ends at end of input; an
/// I/O error is yielded once, after which the stream ends.
pub struct RecordStream<R> {
    format: TraceFormat,
    reader: R,
    line: Vec<u8>,
    stats: TraceStats,
    strings: HashSet<Arc<str>>,
    failed: bool,
}

impl<R: BufRead> RecordStream<R> {
    /// A stream over `reader` (already decompressed) in `format`, which must be
    /// [`TraceFormat::CommonLog`] or [`TraceFormat::WorldCupCsv`]; for a counts
    /// format every line is malformed.
    pub fn new(format: TraceFormat, reader: R) -> Self {
        Self {
            format,
            reader,
            line: Vec::with_capacity(512),
            stats: TraceStats::default(),
            strings: HashSet::new(),
            failed: false,
        }
    }

    /// Line counts so far.
    pub fn stats(&self) -> TraceStats {
        self.stats
    }

    /// Parses the current line into a record, interning its strings.
    fn parse_current(&mut self) -> Option<TraceRecord> {
        let text: Cow<'_, str> = String::from_utf8_lossy(&self.line);
        let strings = &mut self.strings;
        match self.format {
            TraceFormat::CommonLog => clf::parse_line(&text).map(|line| TraceRecord {
                t_ms: line.unix_ms,
                client: intern(strings, line.host),
                method: http::Method::from_bytes(line.method.as_bytes())
                    .unwrap_or(http::Method::GET),
                path: intern(strings, line.path),
                status: line.status,
                bytes: line.bytes,
                user_agent: line.user_agent.map(|agent| intern(strings, agent)),
            }),
            TraceFormat::WorldCupCsv => wc98::parse_row(&text).map(|row| TraceRecord {
                t_ms: row.unix_ms,
                client: intern(strings, row.client),
                method: http::Method::GET,
                path: intern(strings, row.path),
                status: row.status,
                bytes: row.bytes,
                user_agent: None,
            }),
            TraceFormat::CountSeries | TraceFormat::CountCsv => None,
        }
    }
}

impl<R: BufRead> Iterator for RecordStream<R> {
    type Item = io::Result<TraceRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.line.clear();
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.stats.lines += 1;
            match self.parse_current() {
                Some(record) => {
                    self.stats.parsed += 1;
                    return Some(Ok(record));
                }
                None => self.stats.malformed += 1,
            }
        }
        None
    }
}

/// The shared copy of `text`, stored on first sight.
fn intern(strings: &mut HashSet<Arc<str>>, text: &str) -> Arc<str> {
    if let Some(existing) = strings.get(text) {
        return Arc::clone(existing);
    }
    let shared: Arc<str> = Arc::from(text);
    strings.insert(Arc::clone(&shared));
    shared
}

#[cfg(test)]
mod tests;
