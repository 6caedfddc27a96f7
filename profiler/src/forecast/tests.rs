//! Behaviour of the complete forecasters, across the modules.

use super::*;

const SEASON: Seasonality = Seasonality {
    day: 1_440,
    week: 10_080,
};

/// A daily cycle around 60 requests a minute with deterministic noise.
fn demand(i: u64) -> f64 {
    let phase = (i % 1_440) as f64 / 1_440.0 * std::f64::consts::TAU;
    let noise = ((i.wrapping_mul(2_654_435_761) >> 7) % 13) as f64 - 6.0;
    (60.0 + 30.0 * phase.sin() + noise).max(0.0)
}

#[test]
fn seasons_follow_the_bucket_width_and_reject_what_they_cannot_model() {
    assert_eq!(Seasonality::for_bucket_ms(60_000), Ok(SEASON));
    assert_eq!(Seasonality::for_bucket_ms(1_000).map(|s| s.day), Ok(86_400));
    assert!(Seasonality::for_bucket_ms(999).is_err());
    assert!(Seasonality::for_bucket_ms(7_200_000).is_err());
}

#[test]
fn horizons_are_validated_when_the_forecaster_is_built() {
    assert!(matches!(
        DemandForecaster::new(SEASON, &[]),
        Err(ForecastError::Horizons { .. })
    ));
    assert!(matches!(
        DemandForecaster::new(SEASON, &[1, 0]),
        Err(ForecastError::Horizons { .. })
    ));
    assert_eq!(
        DemandForecaster::new(SEASON, &[721]).err(),
        Some(ForecastError::HorizonTooLong {
            horizon: 721,
            max: 720
        })
    );
}

#[test]
fn nothing_observed_forecasts_nothing() {
    let forecaster = DemandForecaster::new(SEASON, &[1, 60]).expect("valid");
    assert_eq!(forecaster.forecast(1), Forecast::default());
    let naive = Calibrated::new(Naive, SEASON, &[1]).expect("valid");
    assert_eq!(naive.forecast(5), Forecast::default());
}

#[test]
fn a_calibrated_baseline_keeps_its_point_forecast_as_the_median() {
    let mut naive = Calibrated::new(Naive, SEASON, &[1, 15]).expect("valid");
    for i in 0..3_000 {
        naive.observe(demand(i));
    }
    let forecast = naive.forecast(15);
    assert!((forecast.median - demand(2_999)).abs() < 1e-9);
    assert!(forecast.p90 > forecast.median);
}

#[test]
fn the_ensemble_learns_a_daily_cycle_and_weights_the_better_models() {
    let mut forecaster = DemandForecaster::new(SEASON, &[1, 60]).expect("valid");
    let mut tracker = AccuracyTracker::new(2, &[60], None);
    for i in 0..8 * 1_440u64 {
        if i >= 6 * 1_440 && i % 15 == 0 {
            tracker.issue(0, 60, i + 59, forecaster.forecast(60));
            let naive = forecaster.member_forecast(ModelKind::Naive, 60);
            tracker.issue(1, 60, i + 59, Forecast::new(naive, naive));
        }
        forecaster.observe(demand(i));
        tracker.observe(i, demand(i));
    }
    let (model, naive) = (tracker.scores(0, 60), tracker.scores(1, 60));
    assert!(model.mae < 0.5 * naive.mae, "{model:?} vs {naive:?}");
    assert!((0.8..=0.98).contains(&model.coverage_p90), "{model:?}");
    let weights = forecaster.weights(60);
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(
        weights[0] < 0.05,
        "naive is worse an hour ahead: {weights:?}"
    );
    assert_ne!(forecaster.best(60), Some(ModelKind::Naive));
}

#[test]
fn an_outage_is_bridged_and_does_not_teach_the_models_an_empty_day() {
    let mut forecaster = DemandForecaster::new(SEASON, &[1, 60]).expect("valid");
    let outage = 3 * 1_440..3 * 1_440 + 600;
    for i in 0..4 * 1_440u64 {
        let value = if outage.contains(&i) { 0.0 } else { demand(i) };
        forecaster.observe(value);
    }
    assert_eq!(forecaster.outage_buckets(), 600);
    // A day after the outage, the same time of day is forecast as usual.
    let next = 4 * 1_440u64 + 59;
    let forecast = forecaster.forecast(60).median;
    assert!(
        (forecast - demand(next)).abs() < 15.0,
        "{forecast} vs {}",
        demand(next)
    );
}

#[test]
fn forecasts_are_pure_reads_of_the_state() {
    let mut forecaster = DemandForecaster::new(SEASON, &[1, 5]).expect("valid");
    for i in 0..2_000 {
        forecaster.observe(demand(i));
    }
    let first = forecaster.forecast(5);
    for _ in 0..3 {
        assert_eq!(forecaster.forecast(5), first);
        assert_eq!(forecaster.forecast(7).median, forecaster.forecast(7).median);
    }
}

#[test]
fn a_cold_start_never_forecasts_beyond_ten_times_what_was_seen() {
    // Idle, then a step: the pattern on which an unscored regression
    // diverges in a freshly started proxy.
    let mut forecaster = DemandForecaster::new(SEASON, &[1, 5, 15, 60]).expect("valid");
    for i in 0..40 {
        forecaster.observe(if i < 20 { 0.0 } else { 10.0 });
        for h in [1, 5, 15, 60] {
            let f = forecaster.forecast(h);
            assert!(
                f.median <= 110.0 && f.p90.is_finite(),
                "step {i} h {h}: {f:?}"
            );
        }
    }
}
