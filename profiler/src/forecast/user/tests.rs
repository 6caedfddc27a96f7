use super::*;
use crate::user::UserShape;

const MINUTE: u64 = 60_000;

/// A context for 1, 15 and 60 minutes ahead with minute buckets.
fn context() -> UserForecastContext {
    UserForecastContext::new(&[MINUTE, 15 * MINUTE, 60 * MINUTE], MINUTE)
}

/// Ticks every minute from `from` to `to` (ms), recording `per_minute`
/// evenly spread requests before each tick; returns the last forecasts.
fn run(
    windows: &UserWindows,
    state: &UserForecastState,
    ctx: &UserForecastContext,
    (from, to): (u64, u64),
    per_minute: u64,
) -> Vec<UserHorizonForecast> {
    let mut out = vec![UserHorizonForecast::default(); 3];
    let mut now = from;
    while now < to {
        for i in 0..per_minute {
            windows.record_arrival(now + i * MINUTE / per_minute, 0, 0);
        }
        now += MINUTE;
        forecast_user(windows, state, now, ctx, &mut out);
    }
    out
}

#[test]
fn a_steady_user_is_forecast_at_their_rate_at_every_horizon() {
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    assert_eq!(state.level_rps(), None);
    let out = run(&windows, &state, &context(), (0, 6 * 60 * MINUTE), 30);
    for forecast in &out {
        assert!((forecast.rps - 0.5).abs() < 0.01, "{forecast:?}");
        // Poisson(30): median 30, p90 37, read from a grid of means 3.7 %
        // apart, so one either way.
        assert!((forecast.count.median - 30.0).abs() <= 1.0, "{forecast:?}");
        assert!((forecast.count.p90 - 37.0).abs() <= 1.0, "{forecast:?}");
    }
    let level = state.level_rps().expect("ticked");
    assert!((level - 0.5).abs() < 0.01, "{level}");
}

#[test]
fn a_user_who_stopped_is_forecast_lower_soon_than_later() {
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let ctx = context();
    run(&windows, &state, &ctx, (0, 6 * 60 * MINUTE), 60);
    // Two quiet minutes: the window is empty, the level remembers.
    let out = run(&windows, &state, &ctx, (360 * MINUTE, 362 * MINUTE), 0);
    assert!(out[0].rps < out[2].rps, "{out:?}");
    assert!(out[2].rps > 0.8, "the level decays slowly: {out:?}");
}

#[test]
fn demand_multipliers_scale_each_horizon() {
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let mut ctx = context();
    ctx.set_multipliers(&[1.0, 2.0, f64::NAN]);
    let out = run(&windows, &state, &ctx, (0, 6 * 60 * MINUTE), 12);
    // 15 and 60 minutes ahead lean on the level alone, so compare those.
    assert!((out[1].rps / out[2].rps - 2.0).abs() < 0.05, "{out:?}");
    assert!((out[2].rps - 0.2).abs() < 0.01, "NaN reads as 1: {out:?}");
}

#[test]
fn the_tick_reports_what_came_against_what_was_forecast() {
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let ctx = context();
    let mut out = vec![UserHorizonForecast::default(); 3];
    for i in 0..6 {
        windows.record_arrival(i * 1_000, 0, 0);
    }
    let first = forecast_user(&windows, &state, MINUTE, &ctx, &mut out);
    assert_eq!(first.observed, 6.0);
    assert_eq!(first.expected, None, "no previous forecast");
    let forecast_rps = out[0].rps;
    assert!(forecast_rps > 0.0);
    for i in 0..9 {
        windows.record_arrival(MINUTE + i * 1_000, 0, 0);
    }
    let second = forecast_user(&windows, &state, 2 * MINUTE, &ctx, &mut out);
    assert_eq!(second.observed, 9.0);
    let expected = second.expected.expect("forecast at the first tick");
    assert!((expected - forecast_rps * 60.0).abs() < 1e-3, "{expected}");
}

#[test]
fn a_learned_spread_replaces_the_poisson_quantiles() {
    let mut calibration = CountCalibration::new(100.0);
    for i in 0..100 {
        calibration.observe(30.0, if i % 2 == 0 { 0.0 } else { 60.0 });
    }
    let mut ctx = context();
    ctx.set_spread(calibration.quantiles());
    let windows = UserWindows::new(&UserShape::default());
    let state = UserForecastState::default();
    let out = run(&windows, &state, &ctx, (0, 6 * 60 * MINUTE), 30);
    // Half the time nothing, half the time 60: the median is 0.
    assert_eq!(out[2].count, Forecast::new(0.0, 60.0));
}

#[test]
fn the_state_costs_24_bytes_per_user() {
    assert_eq!(std::mem::size_of::<UserForecastState>(), 24);
}
