//! The ramp's time warp, its report window and the metrics it reads.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::*;
use crate::demo::recorder::Recorder;
use crate::demo::workload::SyntheticSource;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn the_warp_keeps_times_before_the_step_and_compresses_after() {
    let at = SECS(10);
    assert_eq!(warp(SECS(4), at, 4.0), SECS(4));
    assert_eq!(warp(SECS(10), at, 4.0), SECS(10));
    assert_eq!(warp(SECS(18), at, 4.0), SECS(12));
    assert_eq!(warp(SECS(14), at, 0.5), SECS(18), "a factor below 1 slows");
    assert_eq!(warp(Duration::MAX, at, 1.0), Duration::MAX, "saturates");
}

/// Requests per cohort name prefix and in total over `[from, to)`.
fn count(source: &mut impl Source, until: Duration, split: Duration) -> ([u64; 2], [[u64; 4]; 2]) {
    let (mut totals, mut cohorts) = ([0u64; 2], [[0u64; 4]; 2]);
    while let Some((t, planned)) = source.next_request() {
        if t >= until {
            break;
        }
        let half = usize::from(t >= split);
        totals[half] += 1;
        // Users are numbered cohort by cohort: 40 premium, 200 standard, 50 free, 10 bulk.
        let cohort = match planned.user {
            0..40 => 0,
            40..240 => 1,
            240..290 => 2,
            _ => 3,
        };
        cohorts[half][cohort] += 1;
    }
    (totals, cohorts)
}

#[test]
fn after_the_step_the_same_cohorts_send_factor_times_faster() {
    let source = SyntheticSource::new(200.0, b"secret", 7).expect("signs");
    let mut warped = Warped::new(source, SECS(60), 3.0);
    let (totals, cohorts) = count(&mut warped, SECS(120), SECS(60));

    // 60 s at 200/s, then 60 s at 600/s: within a few percent (on/off noise).
    let ratio = totals[1] as f64 / totals[0] as f64;
    assert!((ratio - 3.0).abs() < 0.3, "{totals:?} ratio {ratio}");
    for cohort in 0..4 {
        let share = |half: usize| cohorts[half][cohort] as f64 / totals[half] as f64;
        assert!(
            (share(0) - share(1)).abs() < 0.04,
            "cohort {cohort}: {cohorts:?}"
        );
    }
}

#[test]
fn a_ramp_is_checked_against_the_run() {
    let run = SECS(40);
    let ramp = Ramp::check(25.0, 1.2, 0.3, run).expect("valid");
    assert_eq!(ramp.at, SECS(25));
    assert!((ramp.factor(0.3) - 4.0).abs() < 1e-12);
    assert_eq!(
        Ramp::check(40.0, 1.2, 0.3, run),
        Err(RampError::Outside {
            at_s: 40.0,
            duration_s: 40.0
        })
    );
    assert!(matches!(
        Ramp::check(-1.0, 1.2, 0.3, run),
        Err(RampError::Outside { .. })
    ));
    assert_eq!(
        Ramp::check(5.0, f64::NAN, 0.3, run).map_err(|e| e.to_string()),
        Err("--ramp-load must be a positive finite number, got NaN".into())
    );
    assert!(matches!(
        Ramp::check(5.0, 2_000.0, 1.0, run),
        Err(RampError::Factor(_))
    ));
    assert!(
        Ramp::check(5.0, 0.1, 1.0, run).is_ok(),
        "a step down is fine"
    );
}

#[test]
fn warming_gauges_are_summed_over_pools_from_prometheus_text() {
    let text = "\
# HELP headroom_warming_target_connections Connections the warmer keeps ready.
# TYPE headroom_warming_target_connections gauge
headroom_warming_target_connections{pool=\"default\"} 12
headroom_warming_target_connections{pool=\"dedicated\"} 3
headroom_warming_connections_opened_total 40
headroom_request_connections_opened_total 7
headroom_warming_failures_total 2
headroom_requests_total{tier=\"premium\",outcome=\"ok\"} 999
";
    let reading = |target, opened, request_opened| WarmingReading {
        target,
        opened,
        request_opened,
    };
    assert_eq!(parse_warming(text), reading(15, 40, 7));
    assert_eq!(parse_warming(""), reading(0, 0, 0));
    assert_eq!(
        parse_warming("headroom_warming_target_connections x\n"),
        reading(0, 0, 0)
    );
}

fn tier(name: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-headroom-tier", HeaderValue::from_static(name));
    headers
}

#[test]
fn only_requests_sent_in_the_window_are_reported_apart() {
    // The window is the whole first hour; requests "sent" before the start
    // (latency longer than the time elapsed) fall outside it.
    let start = Instant::now();
    let recorder = Recorder::new(start).with_ramp_window(Duration::ZERO, SECS(3_600));
    let ms = Duration::from_millis;
    let premium = tier("premium");
    recorder.response(0, StatusCode::OK, &premium, ms(0));
    recorder.response(0, StatusCode::OK, &premium, ms(0));
    recorder.response(0, StatusCode::SERVICE_UNAVAILABLE, &premium, ms(0));
    let mut app_full = tier("premium");
    app_full.insert("x-demo-app", HeaderValue::from_static("queue-full"));
    recorder.response(0, StatusCode::SERVICE_UNAVAILABLE, &app_full, ms(0));
    recorder.response(1, StatusCode::TOO_MANY_REQUESTS, &tier("free"), ms(0));
    recorder.error(1, ms(0));
    // Sent long before the recorder started: not in the window.
    recorder.response(1, StatusCode::OK, &tier("free"), SECS(86_400));

    let report = recorder.finish(SECS(2), &[vec![0], vec![0]], 1.0, true, true);
    let ramp = report.ramp.expect("a window was asked for");
    assert!((ramp.window_s - 3_600.0).abs() < 1e-9);
    let p = &ramp.tiers["premium"];
    assert_eq!(
        (p.requests, p.ok, p.shed_503, p.app_503, p.limited, p.errors),
        (4, 2, 1, 1, 0, 0)
    );
    assert!(p.p50_ms.is_finite() && p.p50_ms <= p.p99_ms, "{p:?}");
    let f = &ramp.tiers["free"];
    assert_eq!((f.requests, f.ok, f.limited, f.errors), (2, 0, 1, 1));
    assert!(f.p50_ms.is_nan(), "nothing served in the window");
    assert_eq!(
        ramp.first.count, 2,
        "the two premium 2xx, all tiers together"
    );

    // The whole-run report counts the late one and the 2xx rates.
    assert_eq!(report.tiers["free"].requests, 3);
    assert!((report.tiers["premium"].goodput_rps - 1.0).abs() < 1e-9);
    assert!((report.goodput_rps - 1.5).abs() < 1e-9, "3 ok over 2 s");
}

#[test]
fn without_a_window_there_is_no_ramp_report() {
    let recorder = Recorder::new(Instant::now());
    recorder.response(0, StatusCode::OK, &tier("premium"), Duration::ZERO);
    let report = recorder.finish(SECS(1), &[vec![0]], 1.0, true, true);
    assert!(report.ramp.is_none());
    assert!(!report.to_json().contains("\"ramp\""));
}

#[test]
fn the_first_requests_are_the_earliest_sent_not_the_earliest_answered() {
    let ms = Duration::from_millis;
    // Sent at 0..200 ms, listed out of order; latency 1 ms each, except the
    // earliest ten (sent at 0..10 ms), which took 6 ms: a cold pool's cost.
    let mut served: Vec<(Duration, u64)> = (0..200u64)
        .rev()
        .map(|i| (ms(i), if i < 10 { 6_000 } else { 1_000 }))
        .collect();
    served.swap(3, 150);
    let first = FirstRequests::of(&served, 100);
    assert_eq!(first.count, 100);
    assert!((first.mean_ms - 1.5).abs() < 1e-9, "{first:?}");
    assert!((first.p50_ms - 1.0).abs() < 1e-9, "{first:?}");
    assert!(
        (first.p90_ms - 1.0).abs() < 1e-9,
        "the 90th of 100 is still warm: {first:?}"
    );
    assert!((first.max_ms - 6.0).abs() < 1e-9, "{first:?}");

    let fewer = FirstRequests::of(&served[..4], 100);
    assert_eq!(fewer.count, 4);
    let none = FirstRequests::of(&[], 100);
    assert_eq!(none.count, 0);
    assert!(none.mean_ms.is_nan() && none.max_ms.is_nan());
}
