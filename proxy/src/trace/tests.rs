//! Format detection and whole-trace reads on small inline samples; the real
//! files in `shared/traces` are read by `tests/trace_real_files.rs`.

use std::io::Write;

use super::*;

const CLF_SAMPLE: &str = concat!(
    "10.0.0.2 - - [17/May/2015:10:05:03 +0000] \"GET /b HTTP/1.1\" 200 10 \"-\" \"agent-b\"\n",
    "this line is not a log line\n",
    "\n",
    "10.0.0.1 - - [17/May/2015:10:05:00 +0000] \"GET /a HTTP/1.1\" 200 - \"-\" \"agent-a\"\n",
    "10.0.0.1 - - [17/May/2015:10:05:03 +0000] \"POST /c HTTP/1.1\" 201 3\n",
    "10.0.0.3 - - [17/May/2015:10:05:0 +0000] \"GET /d HTTP/1.1\" 200 3\n",
);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("finishing into a Vec cannot fail")
}

fn requests(trace: Trace) -> RequestTrace {
    match trace {
        Trace::Requests(trace) => trace,
        Trace::Counts { format, .. } => panic!("expected requests, got {format:?}"),
    }
}

#[test]
fn common_log_is_detected_sorted_rebased_and_malformed_lines_counted() {
    let trace = requests(read(CLF_SAMPLE.as_bytes()).expect("in-memory read"));
    assert_eq!(trace.format, TraceFormat::CommonLog);
    assert_eq!(
        trace.stats,
        TraceStats {
            lines: 5,
            parsed: 3,
            malformed: 2
        }
    );
    assert_eq!(trace.start_unix_ms, 1_431_857_100_000);

    // Sorted by time; the two requests at +3 s keep their file order.
    let paths: Vec<&str> = trace.records.iter().map(|r| &*r.path).collect();
    assert_eq!(paths, vec!["/a", "/b", "/c"]);
    let times: Vec<u64> = trace.records.iter().map(|r| r.t_ms).collect();
    assert_eq!(times, vec![0, 3_000, 3_000]);
    assert_eq!(trace.records[2].method, http::Method::POST);
    assert_eq!(trace.records[0].user_agent.as_deref(), Some("agent-a"));
    assert_eq!(trace.records[0].bytes, None);
    assert_eq!(trace.distinct_clients(), 2);
    assert_eq!(trace.span_ms(), 3_000);
}

#[test]
fn gzip_input_is_recognised_by_magic_bytes() {
    let trace = requests(read(&gzip(CLF_SAMPLE.as_bytes())[..]).expect("in-memory read"));
    assert_eq!(trace.records.len(), 3);
    assert_eq!(trace.stats.malformed, 2);
}

#[test]
fn world_cup_rows_are_detected_and_clients_interned() {
    let sample = "2,01/May/1998,00:00:02,/x.gif,200,-\n1,01/May/1998,00:00:01,/y,304,0\n\
                  broken,row\n2,01/May/1998,00:00:01,/z,-,12\n";
    let trace = requests(read(sample.as_bytes()).expect("in-memory read"));
    assert_eq!(trace.format, TraceFormat::WorldCupCsv);
    assert_eq!(
        trace.stats,
        TraceStats {
            lines: 4,
            parsed: 3,
            malformed: 1
        }
    );
    let clients: Vec<&str> = trace.records.iter().map(|r| &*r.client).collect();
    assert_eq!(clients, vec!["1", "2", "2"]);
    assert!(Arc::ptr_eq(
        &trace.records[1].client,
        &trace.records[2].client
    ));
    assert_eq!(trace.records[1].status, None);
}

#[test]
fn count_formats_are_detected() {
    let trace = read(&gzip(b"3 1 4 1 5")[..]).expect("in-memory read");
    assert_eq!(trace.format(), TraceFormat::CountSeries);
    assert_eq!(trace.stats().parsed, 5);
    let trace = read("period,count\n0,2\n1,3\n".as_bytes()).expect("in-memory read");
    assert_eq!(trace.format(), TraceFormat::CountCsv);
    let Trace::Counts { series, .. } = trace else {
        panic!("expected a series")
    };
    assert_eq!((series.step_ms, series.counts), (1_000, vec![2, 3]));
}

#[test]
fn unrecognised_or_empty_input_is_an_error_not_a_panic() {
    assert!(matches!(
        read("hello\nworld\n".as_bytes()),
        Err(TraceError::UnknownFormat)
    ));
    assert!(matches!(read(&b""[..]), Err(TraceError::UnknownFormat)));
    assert!(matches!(
        read(&[0x1f, 0x8b, 0, 0][..]),
        Err(TraceError::Io(_))
    ));
    let missing = open(Path::new("/nonexistent/trace.log"));
    assert!(matches!(missing, Err(TraceError::Open { .. })));
}

#[test]
fn a_cut_last_line_of_the_sample_does_not_spoil_detection() {
    let mut sample = String::new();
    for _ in 0..3 {
        sample.push_str("1,01/May/1998,00:00:01,/y,304,0\n");
    }
    sample.push_str("1,01/Ma");
    assert_eq!(
        detect(sample.as_bytes(), false),
        Some(TraceFormat::WorldCupCsv)
    );
}

#[test]
fn into_records_truncates_at_the_limit_and_expands_series() {
    let trace = read(CLF_SAMPLE.as_bytes()).expect("in-memory read");
    assert_eq!(trace.into_records(1, Some(3_000)).len(), 1);
    let trace = read("2 2".as_bytes()).expect("in-memory read");
    assert_eq!(trace.into_records(10, None).len(), 4);
}
