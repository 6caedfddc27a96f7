use super::series::{bucket_requests, rebucket, Protocol, Step};
use super::*;
use crate::trace::{mix64, CountSeries, TraceFormat, TraceStats};

/// A counts trace of one value per minute.
fn minutes(values: impl IntoIterator<Item = u32>) -> Trace {
    Trace::Counts {
        format: TraceFormat::CountCsv,
        series: CountSeries {
            start_ms: 0,
            step_ms: 60_000,
            counts: values.into_iter().collect(),
        },
        stats: TraceStats::default(),
    }
}

#[test]
fn protocol_scores_the_second_half_of_a_short_trace_and_14_days_of_a_long_one() {
    let day = 1_440;
    let short = Protocol::new(10 * day, 60_000, None).expect("valid");
    assert_eq!(short.scored_from, 5 * day);
    let long = Protocol::new(40 * day, 60_000, None).expect("valid");
    assert_eq!(long.scored_from, 26 * day);
    assert_eq!(long.horizons, vec![1, 5, 15, 60]);
    assert_eq!(long.origin_every, 15);
    let chosen = Protocol::new(40 * day, 60_000, Some(1.0)).expect("valid");
    assert_eq!(chosen.scored_from, 39 * day);
}

#[test]
fn protocol_keeps_only_horizons_that_are_whole_buckets() {
    let five = Protocol::new(2_000, 300_000, None).expect("valid");
    assert_eq!(five.horizons, vec![1, 3, 12]);
    assert_eq!(five.origin_every, 3);
    assert!(matches!(
        Protocol::new(100, 7_200_000, None),
        Err(EvalError::Forecast(_))
    ));
}

#[test]
fn protocol_refuses_to_score_everything() {
    assert!(matches!(
        Protocol::new(1_440, 60_000, Some(1.0)),
        Err(EvalError::NoWarmUp { .. })
    ));
}

#[test]
fn origins_are_issued_before_their_first_target_is_observed() {
    let protocol = Protocol::new(3_000, 60_000, None).expect("valid");
    let mut observed = 0u64;
    let mut origins = Vec::new();
    protocol.drive(|step| match step {
        Step::Issue(t) => {
            assert_eq!(observed, t, "exactly the buckets before the origin");
            origins.push(t);
        }
        Step::Observe(t) => {
            assert_eq!(observed, t);
            observed += 1;
        }
    });
    assert_eq!(observed, 3_000);
    assert_eq!(origins.first(), Some(&1_500));
    assert!(origins.windows(2).all(|w| w[1] - w[0] == 15));
    assert_eq!(protocol.target(2_990, 60), None);
    assert_eq!(protocol.target(1_500, 1), Some(1_500));
}

#[test]
fn unpredictable_noise_cannot_be_forecast_so_no_forecast_peeks_at_its_target() {
    // Uniform noise on 0..=100: the best MAE without the future is 25. A
    // forecast that saw its target (an off-by-one in the clock) would score
    // near 0 for naive at one bucket, and low for the model.
    let values = (0..6 * 1_440u64).map(|t| (mix64(t) % 101) as u32);
    let report = evaluate(&minutes(values), "noise", 60, None).expect("evaluates");
    for h in &report.horizons {
        assert!(h.points > 0);
        assert!(
            h.naive.mae > 25.0,
            "naive at {} s: {}",
            h.horizon_s,
            h.naive.mae
        );
        assert!(
            h.model.mae > 22.0,
            "model at {} s: {}",
            h.horizon_s,
            h.model.mae
        );
    }
}

#[test]
fn a_daily_pattern_is_forecast_better_than_both_baselines() {
    // A smooth daily cycle with deterministic noise: the hour ahead needs
    // the season, the noise defeats yesterday's single value.
    let values = (0..10 * 1_440u64).map(|t| {
        let phase = (t % 1_440) as f64 / 1_440.0 * std::f64::consts::TAU;
        let noise = (mix64(t) % 21) as f64 - 10.0;
        (100.0 + 60.0 * phase.sin() + noise).round() as u32
    });
    let report = evaluate(&minutes(values), "daily", 60, None).expect("evaluates");
    assert_eq!(report.horizons.len(), 4);
    let hour = &report.horizons[3];
    assert_eq!(hour.horizon_s, 3_600);
    assert!(hour.model.mae < hour.naive.mae, "{hour:?}");
    assert!(hour.model.mae < hour.seasonal_naive.mae, "{hour:?}");
    assert!((0.8..=0.98).contains(&hour.model.coverage_p90), "{hour:?}");
    assert!(report.users.is_none());

    // The fixed JSON fields are there.
    let json = serde_json::to_value(&report).expect("serialises");
    assert_eq!(json["trace"], "daily");
    assert_eq!(json["bucket_s"], 60);
    let first = &json["horizons"][0];
    for key in ["mae", "smape", "pinball_p90", "coverage_p90"] {
        assert!(first["model"][key].is_number(), "model.{key}");
    }
    for key in ["mae", "smape"] {
        assert!(first["naive"][key].is_number(), "naive.{key}");
        assert!(
            first["seasonal_naive"][key].is_number(),
            "seasonal_naive.{key}"
        );
    }
    assert!(first["points"].is_u64() && first["horizon_s"].is_u64());
}

#[test]
fn count_series_are_summed_into_wider_buckets_aligned_to_the_epoch() {
    let series = CountSeries {
        start_ms: 30_000,
        step_ms: 10_000,
        counts: vec![1, 2, 3, 4, 5, 6, 7],
    };
    let wide = rebucket(&series, 60_000).expect("a multiple");
    assert_eq!(wide.start_ms, 0);
    // 30 s to 60 s: 1 + 2 + 3; 60 s to 100 s: 4 + 5 + 6 + 7.
    assert_eq!(wide.counts, vec![6, 22]);
    assert!(matches!(
        rebucket(&series, 15_000),
        Err(EvalError::BucketNotMultiple { .. })
    ));
}

#[test]
fn requests_are_counted_in_the_bucket_of_their_timestamp() {
    let text = "\
1.1.1.1 - - [01/Jan/2020:00:00:59 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"a\"
1.1.1.1 - - [01/Jan/2020:00:01:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"a\"
2.2.2.2 - - [01/Jan/2020:00:03:10 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"a\"
";
    let Trace::Requests(trace) = crate::trace::read(text.as_bytes()).expect("reads") else {
        panic!("a request log");
    };
    let series = bucket_requests(&trace, 60_000);
    assert_eq!(series.start_ms % 60_000, 0);
    assert_eq!(series.counts, vec![1, 1, 0, 1]);
}

#[test]
fn bad_arguments_are_reported_not_panicked_on() {
    let trace = minutes([1, 2, 3]);
    assert!(matches!(
        evaluate(&trace, "t", 60, Some(-1.0)),
        Err(EvalError::LastDays(_))
    ));
    assert!(matches!(
        evaluate(&minutes([]), "t", 60, None),
        Err(EvalError::Empty)
    ));
    assert!(matches!(
        evaluate(&trace, "t", 30, None),
        Err(EvalError::BucketNotMultiple { .. })
    ));
}

#[test]
fn malformed_and_absurd_rows_are_counted_and_shown_not_clamped() {
    // Two days of minutes; one unparsable row and one absurd count.
    let mut csv = String::from("period,count\n");
    for i in 0..2 * 1_440u64 {
        csv.push_str(&format!("{},{}\n", i * 60, 10 + i % 7));
    }
    csv.push_str("not-a-time,5\n");
    csv.push_str("999999,1e30\n");
    let trace = crate::trace::read(csv.as_bytes()).expect("a counts csv");
    let report = evaluate(&trace, "rows.csv", 60, None).expect("evaluates");
    assert_eq!(report.lines_read, 2 * 1_440 + 2);
    assert_eq!(report.malformed_lines, 2);
    let table = report::table(&report);
    assert!(
        table.contains("2882 lines read, 2 malformed skipped"),
        "{table}"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["malformed_lines"], 2);
}
