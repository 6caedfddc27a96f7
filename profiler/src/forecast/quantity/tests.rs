use super::*;
use crate::forecast::user::{
    forecast_user, peek_user_quantities, UserForecastContext, UserForecastState,
    UserHorizonForecast, UserQuantityForecast,
};
use crate::user::UserShape;

/// Ten-minute buckets: a day is 144 of them, so a few days run fast.
const SEASON: Seasonality = Seasonality {
    day: 144,
    week: 1_008,
};
const HORIZONS: [u32; 2] = [1, 6];

/// Deterministic noise in `[-1, 1]`.
fn noise(i: u64, salt: u64) -> f64 {
    // splitmix64's finaliser: a Weyl sequence alone is far from random.
    let mut x = (i ^ (salt << 32)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// A bucket with a daily cycle of requests, bytes of 2 kB per request with
/// a cycle of its own (large downloads at night), and 50 ms per request.
fn cyclic(i: u64) -> QuantitySample {
    let phase = (i % 144) as f64 / 144.0 * std::f64::consts::TAU;
    let requests = 600.0 + 300.0 * phase.sin() + 20.0 * noise(i, 1);
    let bytes = requests * (2_000.0 + 1_000.0 * phase.cos());
    let busy = requests * 0.05;
    QuantitySample {
        values: [requests, bytes, busy, requests / 600.0 * 0.05],
    }
}

#[test]
fn each_quantity_tracks_its_own_daily_pattern() {
    let mut f = QuantityForecaster::new(SEASON, &HORIZONS, None).expect("valid");
    for i in 0..144 * 5 {
        f.observe_all(&cyclic(i), |_| 1.0);
    }
    let next = cyclic(144 * 5 + 5);
    for q in Quantity::ALL {
        let forecast = f.forecast(q, 6);
        let actual = next.get(q);
        let error = (forecast.median - actual).abs() / actual;
        assert!(error < 0.1, "{q:?}: {forecast:?} vs {actual}");
        assert!(forecast.p90 >= forecast.median);
        assert!(f.scores(q, 6).points > 0);
    }
    // Bytes do not follow requests: its own forecaster learned the cosine.
    let bytes_per_request =
        f.forecast(Quantity::BytesOut, 1).median / f.forecast(Quantity::Requests, 1).median;
    let expected = next.get(Quantity::BytesOut) / next.get(Quantity::Requests);
    assert!(
        (bytes_per_request / expected - 1.0).abs() < 0.15,
        "{bytes_per_request} vs {expected}"
    );
}

#[test]
fn intervals_cover_about_ninety_percent_on_a_stationary_noisy_series() {
    // Scores with a half-life of 300 buckets: the warm-up is forgotten.
    let mut f = QuantityForecaster::new(SEASON, &HORIZONS, Some(300.0)).expect("valid");
    // Roughly normal noise: a sum of three uniforms.
    let bell =
        |i: u64, salt: u64| (noise(i, salt) + noise(i, salt + 7) + noise(i, salt + 13)) / 3.0;
    // Longer than the interval window (2 880 residuals), so warm-up errors
    // have left it.
    for i in 0..144 * 30 {
        let requests = 100.0 + 30.0 * bell(i, 2);
        let bytes = 5e6 + 2e6 * bell(i, 3);
        let busy = 20.0 + 8.0 * bell(i, 4);
        let sample = QuantitySample {
            values: [requests, bytes, busy, busy / 600.0],
        };
        f.observe_all(&sample, |_| 1.0);
    }
    for q in Quantity::ALL {
        for h in HORIZONS {
            let coverage = f.scores(q, h).coverage_p90;
            eprintln!("{q:?} h={h}: coverage {coverage:.3}");
            assert!((0.83..=0.96).contains(&coverage), "{q:?} h={h}: {coverage}");
        }
    }
}

#[test]
fn no_traffic_and_nan_give_zero_forecasts_not_panics() {
    let mut f = QuantityForecaster::new(SEASON, &HORIZONS, Some(100.0)).expect("valid");
    assert_eq!(f.forecast(Quantity::BytesOut, 1), Forecast::default());
    for i in 0..300 {
        let value = if i % 3 == 0 { f64::NAN } else { 0.0 };
        let sample = QuantitySample {
            values: [value, f64::INFINITY * 0.0, -5.0, value],
        };
        f.observe_all(&sample, |_| f64::NAN);
    }
    for q in Quantity::ALL {
        assert_eq!(f.observed(q), 300);
        let forecast = f.forecast(q, 6);
        assert_eq!(forecast, Forecast::new(0.0, 0.0), "{q:?}");
        assert_eq!(f.scores(q, 1).coverage_p90, 1.0, "{q:?}");
    }

    // Totals skip what is not a count; no responses means no latency.
    let mut totals = QuantityTotals::default();
    totals.add(f64::NAN, &ActivityRates::default());
    totals.add(10.0, &ActivityRates::default());
    let sample = totals.sample(60.0);
    assert_eq!(sample.values, [10.0, 0.0, 0.0, 0.0]);
    assert_eq!(Quantity::BytesOut.per_second(120.0, 60.0), 2.0);
    assert_eq!(Quantity::Concurrency.per_second(3.0, 60.0), 3.0);
}

#[test]
fn event_multipliers_scale_the_issued_forecasts_that_are_scored() {
    let mut plain = QuantityForecaster::new(SEASON, &HORIZONS, None).expect("valid");
    let mut doubled = QuantityForecaster::new(SEASON, &HORIZONS, None).expect("valid");
    for i in 0..400 {
        plain.observe_all(&cyclic(i), |_| 1.0);
        doubled.observe_all(&cyclic(i), |_| 2.0);
    }
    for q in Quantity::ALL {
        assert!(
            doubled.scores(q, 1).mae > 5.0 * plain.scores(q, 1).mae,
            "{q:?}"
        );
    }
}

#[test]
fn activity_rates_read_bytes_latency_and_littles_law_from_the_windows() {
    let windows = UserWindows::new(&UserShape::default());
    // One request per second for a minute: 4 kB and 250 ms each.
    for s in 0..60u64 {
        windows.record_arrival(s * 1_000, 0, 100);
        windows.record_response(s * 1_000 + 250, 200, 4_000, 250_000);
    }
    let rates = ActivityRates::read(&windows, 60_000);
    assert!((rates.responses_per_s - 1.0).abs() < 0.1, "{rates:?}");
    assert!((rates.bytes_out_per_s - 4_000.0).abs() < 400.0, "{rates:?}");
    assert!((rates.busy_s_per_s - 0.25).abs() < 0.03, "{rates:?}");
    let latency = rates.latency_s_per_response().expect("responses");
    assert!((latency - 0.25).abs() < 1e-9);

    let mut totals = QuantityTotals::default();
    totals.add(60.0, &rates);
    let sample = totals.sample(60.0);
    // One per second, 0.25 s each: a quarter of a request in flight.
    assert!(
        (sample.get(Quantity::Concurrency) - 0.25).abs() < 1e-6,
        "{sample:?}"
    );
    assert!((sample.get(Quantity::BackendSeconds) / 60.0 - 0.25).abs() < 0.03);

    // A clock behind the first sighting, and a user never seen: finite zeros.
    let behind = ActivityRates::read(&windows, 0);
    assert!(behind.bytes_out_per_s.is_finite() && behind.bytes_out_per_s >= 0.0);
    let never = UserWindows::new(&UserShape::default());
    assert_eq!(ActivityRates::read(&never, 5_000), ActivityRates::default());
}

/// Ticks a user every minute for `minutes`, with `per_minute` requests of
/// `bytes` bytes and `latency_us` each; returns the last tick's time.
fn tick_user(
    windows: &UserWindows,
    state: &UserForecastState,
    ctx: &UserForecastContext,
    minutes: u64,
    per_minute: u64,
    (bytes, latency_us): (u64, u64),
) -> u64 {
    let mut out = vec![UserHorizonForecast::default(); ctx.horizons_ms().len()];
    let mut now = 0;
    for _ in 0..minutes {
        for i in 0..per_minute {
            let at = now + i * 60_000 / per_minute;
            windows.record_arrival(at, 0, 0);
            windows.record_response(at + latency_us / 1_000, 200, bytes, latency_us);
        }
        now += 60_000;
        forecast_user(windows, state, now, ctx, &mut out);
    }
    now
}

#[test]
fn a_steady_users_bytes_backend_time_and_concurrency_follow_their_sizes() {
    let ctx = UserForecastContext::new(&[60_000, 900_000, 3_600_000], 60_000);
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let mut out = [UserQuantityForecast::default(); 3];
    assert!(peek_user_quantities(&windows, &state, 0, &ctx, &mut out).is_none());

    // 30 requests a minute, 10 kB and 200 ms each, for six hours.
    let now = tick_user(&windows, &state, &ctx, 360, 30, (10_000, 200_000));
    peek_user_quantities(&windows, &state, now, &ctx, &mut out).expect("ticked");
    for f in &out {
        let rps = f.get(Quantity::Requests);
        assert!((rps.median - 0.5).abs() < 0.05, "{f:?}");
        let bytes = f.get(Quantity::BytesOut);
        assert!((bytes.median - 5_000.0).abs() < 600.0, "{f:?}");
        let busy = f.get(Quantity::BackendSeconds);
        assert!((busy.median - 0.1).abs() < 0.012, "{f:?}");
        assert_eq!(
            f.get(Quantity::Concurrency),
            busy,
            "Little's law, same shape"
        );
        for q in Quantity::ALL {
            assert!(f.get(q).p90 >= f.get(q).median, "{q:?} {f:?}");
        }
    }
}

#[test]
fn a_quantitys_own_shape_moves_the_users_forecast() {
    let mut ctx = UserForecastContext::new(&[60_000, 3_600_000], 60_000);
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let now = tick_user(&windows, &state, &ctx, 120, 30, (10_000, 200_000));
    let mut before = [UserQuantityForecast::default(); 2];
    peek_user_quantities(&windows, &state, now, &ctx, &mut before).expect("ticked");

    // The series expects bytes to double in an hour while requests stay.
    ctx.set_quantity_multipliers(Quantity::BytesOut, &[1.0, 2.0]);
    let mut after = [UserQuantityForecast::default(); 2];
    peek_user_quantities(&windows, &state, now, &ctx, &mut after).expect("ticked");
    assert_eq!(after[0], before[0]);
    let ratio = after[1].get(Quantity::BytesOut).median / before[1].get(Quantity::BytesOut).median;
    assert!((ratio - 2.0).abs() < 1e-9, "{ratio}");
    assert_eq!(
        after[1].get(Quantity::Requests),
        before[1].get(Quantity::Requests)
    );
}

#[test]
fn a_clock_going_backwards_keeps_user_forecasts_finite() {
    let ctx = UserForecastContext::new(&[60_000, 3_600_000], 60_000);
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let now = tick_user(&windows, &state, &ctx, 30, 10, (1_000, 50_000));
    let mut counts = vec![UserHorizonForecast::default(); 2];
    // A tick and a read from an hour before the last tick.
    forecast_user(
        &windows,
        &state,
        now.saturating_sub(3_600_000),
        &ctx,
        &mut counts,
    );
    let mut out = [UserQuantityForecast::default(); 2];
    peek_user_quantities(&windows, &state, 0, &ctx, &mut out).expect("ticked");
    for f in &out {
        for q in Quantity::ALL {
            let v = f.get(q);
            assert!(
                v.median.is_finite() && v.p90.is_finite() && v.median >= 0.0,
                "{q:?} {v:?}"
            );
        }
    }
}
