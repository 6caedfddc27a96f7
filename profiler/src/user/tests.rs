use super::*;
use crate::activity::ROUTE_CLASSES;
use crate::clock::{Clock, ManualClock};

fn user() -> UserWindows {
    UserWindows::new(&UserShape::default())
}

/// Sends `rps` evenly spaced arrivals per second for `seconds`, from `clock`.
fn steady(w: &UserWindows, clock: &ManualClock, rps: u64, seconds: u64) {
    for _ in 0..seconds * rps {
        w.record_arrival(clock.now_ms(), 0, 0);
        clock.advance(1_000 / rps);
    }
}

#[test]
fn default_shape_is_one_minute_of_seconds_with_coarse_activity() {
    let shape = UserShape::default();
    assert_eq!(
        (shape.requests().bucket_ms(), shape.requests().buckets()),
        (1_000, 60)
    );
    assert_eq!(
        (shape.activity().bucket_ms(), shape.activity().buckets()),
        (20_000, 3)
    );
    assert_eq!(shape.session_gap_ms(), 30 * 60 * 1_000);
    assert!((shape.smoothing_half_life_ms() - 10_000.0).abs() < 1e-9);
    assert_eq!(UserShape::new(0, 60, 1), Err(WindowError::ZeroBucketWidth));
}

#[test]
fn per_user_state_fits_the_memory_budget() {
    let shape = UserShape::default();
    let inline = size_of::<UserWindows>();
    let total = shape.bytes_per_user();
    eprintln!("UserWindows: {inline} bytes inline, {total} bytes with its buckets");
    assert_eq!(total, inline + 60 * 4 + 3 * 80);
    assert!(
        total <= 700,
        "{total} bytes leaves too little of 1 KiB for the map"
    );
}

#[test]
fn arrivals_and_responses_show_up_in_the_snapshot() {
    let w = user();
    let t = 100_000;
    w.record_arrival(t, 0, 100);
    w.record_arrival(t + 10, 2, 50);
    w.record_arrival(t + 20, 9, 0); // class 9 counts as class 7
    w.record_response(t + 30, 200, 1_000, 2_000);
    w.record_response(t + 40, 503, 10, 4_000);
    w.record_response(t + 50, 404, 0, 6_000);

    let s = w.snapshot(t + 50);
    assert_eq!((s.requests, s.requests_total), (3, 3));
    assert_eq!((s.responses, s.errors_5xx, s.errors_4xx), (3, 1, 1));
    assert!((s.error_ratio - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!((s.bytes_in, s.bytes_out), (150, 1_010));
    assert_eq!(s.mean_latency_us, Some(4_000.0));
    let mut routes = [0; ROUTE_CLASSES];
    routes[0] = 1;
    routes[2] = 1;
    routes[7] = 1;
    assert_eq!(s.route_requests, routes);
    assert_eq!((s.first_seen_ms, s.last_seen_ms), (Some(t), Some(t + 50)));
    assert_eq!(
        (s.sessions, s.session_start_ms, s.session_duration_ms),
        (1, Some(t), 50)
    );
    assert_eq!(w.last_seen_ms(), Some(t + 50));
}

#[test]
fn a_never_seen_user_reads_as_empty() {
    let w = user();
    let s = w.snapshot(5_000);
    assert_eq!((s.requests, s.responses, s.sessions), (0, 0, 0));
    assert_eq!(
        (s.first_seen_ms, s.last_seen_ms, s.mean_latency_us),
        (None, None, None)
    );
    assert_eq!(
        (s.requests_per_sec, s.smoothed_rps, s.error_ratio),
        (0.0, 0.0, 0.0)
    );
    assert!(w.is_idle(5_000, 1));
}

#[test]
fn window_rates_divide_by_the_covered_time() {
    let clock = ManualClock::new(0);
    let w = user();
    steady(&w, &clock, 10, 120); // two minutes at 10 rps, 1 KiB each way
    let now = clock.now_ms() - 1;
    let s = w.snapshot(now);
    assert_eq!(s.window_ms, 60_000);
    assert_eq!(s.requests, 600);
    assert!((s.requests_per_sec - 10.0).abs() < 1e-9);
    assert!(s.activity_window_ms >= 40_000 && s.activity_window_ms <= 60_000);
}

#[test]
fn smoothed_rate_is_zero_until_the_first_bucket_completes() {
    let w = user();
    w.record_arrival(5_100, 0, 0);
    w.record_arrival(5_200, 0, 0);
    assert_eq!(w.smoothed_rps(5_900), 0.0);
    // At 6 s, period 5 is complete: the user's only bucket, read in full.
    assert!((w.smoothed_rps(6_000) - 2.0).abs() < 1e-6);
}

#[test]
fn smoothed_rate_converges_to_a_steady_rate_and_halves_in_a_half_life() {
    let clock = ManualClock::new(0);
    let w = user();
    steady(&w, &clock, 20, 120);
    let rate = w.smoothed_rps(clock.now_ms());
    assert!((rate - 20.0).abs() < 0.01, "steady 20 rps read as {rate}");

    // The user stops. One half-life (10 s) later, the estimate has lost
    // about half: exactly (b^10 - b^59) / (1 - b^59) with b = 0.5^(1/10).
    clock.advance(10_000);
    let after = w.smoothed_rps(clock.now_ms()) / 20.0;
    let b: f64 = 0.5_f64.powf(0.1);
    let expected = (b.powi(10) - b.powi(59)) / (1.0 - b.powi(59));
    assert!(
        (after - expected).abs() < 1e-3,
        "kept {after}, expected {expected}"
    );
    clock.advance(60_000);
    assert_eq!(
        w.smoothed_rps(clock.now_ms()),
        0.0,
        "a whole idle window later"
    );
}

#[test]
fn smoothed_rate_ignores_the_time_before_the_user_appeared() {
    let clock = ManualClock::new(1_000_000);
    let w = user();
    steady(&w, &clock, 50, 5);
    let rate = w.smoothed_rps(clock.now_ms());
    assert!((rate - 50.0).abs() < 0.5, "5 s at 50 rps read as {rate}");
}

#[test]
fn smoothed_rate_is_cached_within_a_bucket() {
    let w = user();
    for t in (0..3_000).step_by(100) {
        w.record_arrival(t, 0, 0);
    }
    let first = w.smoothed_rps(3_000);
    w.record_arrival(3_001, 0, 0);
    w.record_arrival(1_999, 0, 0); // a late arrival into a completed bucket
    assert_eq!(
        w.smoothed_rps(3_999),
        first,
        "same period, same cached value"
    );
    assert_ne!(w.smoothed_rps(4_000), first, "the next period recomputes");
}

#[test]
fn one_bucket_window_smooths_to_its_plain_rate() {
    let w = UserWindows::new(&UserShape::new(1_000, 1, 10).unwrap());
    w.record_arrival(2_000, 0, 0);
    w.record_arrival(2_100, 0, 0);
    assert_eq!(w.smoothed_rps(2_499), w.requests().rate_per_sec(2_499));
    assert!(
        w.smoothed_rps(2_499) > w.smoothed_rps(2_999),
        "not frozen within the bucket"
    );
}

#[test]
fn sessions_split_on_arrivals_after_the_gap() {
    let shape = UserShape::new(1_000, 60, 60_000).unwrap();
    let w = UserWindows::new(&shape);
    w.record_arrival(0, 0, 0);
    w.record_arrival(30_000, 0, 0);
    w.record_response(30_500, 200, 0, 500_000);
    w.record_arrival(90_501, 0, 0); // 60.001 s after the response
    let s = w.snapshot(90_501);
    assert_eq!((s.sessions, s.session_start_ms), (2, Some(90_501)));
    assert_eq!(s.requests_total, 3);
    assert_eq!(s.requests, 1, "the earlier arrivals left the 60 s window");
}

#[test]
fn clock_going_backwards_never_panics_or_produces_nan() {
    let clock = ManualClock::new(500_000);
    let w = user();
    steady(&w, &clock, 10, 5);
    for t in [400_000, 0, 499_999, u64::MAX, 1] {
        clock.set_ms(t);
        w.record_arrival(t, 3, 10);
        w.record_response(t, 200, 10, 10);
        let s = w.snapshot(t);
        assert!(s.smoothed_rps.is_finite() && s.smoothed_rps >= 0.0);
        assert!(s.requests_per_sec.is_finite() && s.bytes_in_per_sec.is_finite());
        assert!(s.requests <= s.requests_total);
    }
}

#[test]
fn concurrent_recording_on_one_user_counts_every_request() {
    let w = user();
    std::thread::scope(|scope| {
        for thread in 0..4_u64 {
            let w = &w;
            scope.spawn(move || {
                for i in 0..10_000_u64 {
                    let t = 1_000_000 + (thread * 10_000 + i) % 5_000;
                    w.record_arrival(t, (i % 8) as u8, 1);
                    w.record_response(t, if i % 10 == 0 { 500 } else { 200 }, 2, 3);
                }
            });
        }
    });
    let s = w.snapshot(1_005_000);
    assert_eq!(
        (s.requests, s.requests_total, s.responses),
        (40_000, 40_000, 40_000)
    );
    assert_eq!(
        (s.errors_5xx, s.bytes_in, s.bytes_out),
        (4_000, 40_000, 80_000)
    );
    assert_eq!(s.route_requests, [5_000; ROUTE_CLASSES]);
    assert_eq!(s.mean_latency_us, Some(3.0));
}
