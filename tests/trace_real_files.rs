//! The trace readers on the real traces in `shared/traces`, checked against the
//! counts that `shared/traces/SOURCES.md` states (computed there with awk/sort/uniq).
//! The files are read in place, never copied into the repository.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use headroom::trace::{self, Trace, TraceFormat, TraceStats};

fn trace_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces")
        .join(name)
}

fn read_requests(name: &str) -> trace::RequestTrace {
    match trace::open(&trace_path(name)).expect("the shared trace is readable") {
        Trace::Requests(requests) => requests,
        Trace::Counts { format, .. } => panic!("{name} read as counts ({format:?})"),
    }
}

fn histogram<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> HashMap<K, usize> {
    let mut counts = HashMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[test]
fn elastic_apache_log_has_10000_requests_from_1753_clients() {
    let trace = read_requests("elastic_apache_logs.log");
    assert_eq!(trace.format, TraceFormat::CommonLog);
    assert_eq!(
        trace.stats,
        TraceStats {
            lines: 10_000,
            parsed: 10_000,
            malformed: 0
        }
    );
    assert_eq!(trace.distinct_clients(), 1_753);

    // 17/May/2015:10:05:00 to 20/May/2015:21:05:59 +0000.
    assert_eq!(trace.start_unix_ms, 1_431_857_100_000);
    assert_eq!(trace.span_ms(), ((3 * 24 + 11) * 3_600 + 59) * 1_000);
    assert!(trace.records.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));

    let statuses = histogram(trace.records.iter().map(|r| r.status));
    assert_eq!(statuses[&Some(200)], 9_126);
    assert_eq!(statuses[&Some(304)], 445);
    assert_eq!(statuses[&Some(404)], 213);
    let methods = histogram(trace.records.iter().map(|r| r.method.as_str().to_owned()));
    assert_eq!(
        (methods["GET"], methods["HEAD"], methods["POST"]),
        (9_952, 42, 5)
    );
    assert_eq!(
        trace.records.iter().filter(|r| r.bytes.is_none()).count(),
        669
    );
    assert!(trace.records.iter().all(|r| r.path.starts_with('/')));
}

#[test]
fn world_cup_sample_has_200000_rows_from_17506_clients() {
    let trace = read_requests("wc98_day6_sample.csv.gz");
    assert_eq!(trace.format, TraceFormat::WorldCupCsv);
    assert_eq!(
        trace.stats,
        TraceStats {
            lines: 200_000,
            parsed: 200_000,
            malformed: 0
        }
    );
    assert_eq!(trace.distinct_clients(), 17_506);

    // 30/Apr/1998 22:00:04 to 01/May/1998 21:59:55 GMT, sorted although the file is not.
    assert_eq!(trace.start_unix_ms, 893_973_604_000);
    assert_eq!(trace.span_ms(), (24 * 3_600 - 9) * 1_000);
    assert!(trace.records.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
    assert_eq!(
        trace.records.iter().filter(|r| r.bytes.is_none()).count(),
        8_667
    );
    assert_eq!(
        trace.records.iter().filter(|r| r.status.is_none()).count(),
        3
    );
    assert_eq!(
        trace
            .records
            .iter()
            .filter(|r| r.status == Some(304))
            .count(),
        25_457
    );
}

#[test]
fn nasa_series_has_5059950_seconds_summing_to_3461610_requests() {
    let started = Instant::now();
    let trace = trace::open(&trace_path("nasa95_requests_per_second.txt.gz"))
        .expect("the shared trace is readable");
    let elapsed = started.elapsed();
    let Trace::Counts {
        format,
        series,
        stats,
    } = trace
    else {
        panic!("the NASA file must read as a count series");
    };
    assert_eq!(format, TraceFormat::CountSeries);
    assert_eq!(
        stats,
        TraceStats {
            lines: 5_059_950,
            parsed: 5_059_950,
            malformed: 0
        }
    );
    assert_eq!(series.counts.len(), 5_059_950);
    assert_eq!(series.total(), 3_461_610);
    assert_eq!(series.counts.iter().max(), Some(&20));
    assert_eq!(series.step_ms, 1_000);
    eprintln!("nasa series parsed in {elapsed:?}");
}
