//! The aggregate evaluation: total requests per bucket, forecast by the
//! ensemble and by the baselines under the same protocol.
//!
//! The baselines run as [`Calibrated`] forecasters on the raw series, so
//! `naive` is exactly "the last observed bucket" and `seasonal_naive` "the
//! same bucket a day earlier", outages included, as DESIGN.md defines
//! them. The ensemble's members are scored too (point forecasts only), to
//! show which model carries each horizon.

use headroom_profiler::forecast::{
    AccuracyTracker, Calibrated, DemandForecaster, Forecast, Forecaster, ModelKind, Naive,
    SeasonalNaive,
};

use super::series::{BucketSeries, Protocol, Step};
use super::EvalError;

/// Tracker rows: the ensemble, the two baselines, then each member.
pub const MODEL: usize = 0;
/// Tracker row of the naive baseline.
pub const NAIVE: usize = 1;
/// Tracker row of the seasonal-naive baseline.
pub const SEASONAL_NAIVE: usize = 2;
/// Tracker row of the first member ([`ModelKind::ALL`] order follows).
pub const FIRST_MEMBER: usize = 3;

/// What the aggregate run produced.
#[derive(Debug)]
pub struct AggregateRun {
    /// Scores of every row at every protocol horizon.
    pub tracker: AccuracyTracker,
    /// Buckets the ensemble treated as outage (imputed).
    pub outage_buckets: u64,
    /// The ensemble's member weights per protocol horizon at the end.
    pub weights: Vec<Vec<f64>>,
}

/// Runs the protocol over `series` with the ensemble and the baselines.
///
/// # Errors
/// [`EvalError::Forecast`] when the forecasters cannot be built for the
/// protocol's horizons.
pub fn run(series: &BucketSeries, protocol: &Protocol) -> Result<AggregateRun, EvalError> {
    let horizons = &protocol.horizons;
    let mut model = DemandForecaster::new(protocol.season, horizons)?;
    let mut naive = Calibrated::new(Naive, protocol.season, horizons)?;
    let mut seasonal = Calibrated::new(SeasonalNaive, protocol.season, horizons)?;
    let rows = FIRST_MEMBER + ModelKind::ALL.len();
    let mut tracker = AccuracyTracker::new(rows, horizons, None);

    protocol.drive(|step| match step {
        Step::Issue(t) => {
            for &h in horizons {
                let Some(target) = protocol.target(t, h) else {
                    continue;
                };
                tracker.issue(MODEL, h, target, model.forecast(h));
                tracker.issue(NAIVE, h, target, naive.forecast(h));
                tracker.issue(SEASONAL_NAIVE, h, target, seasonal.forecast(h));
                for (i, &kind) in ModelKind::ALL.iter().enumerate() {
                    let point = model.member_forecast(kind, h);
                    tracker.issue(FIRST_MEMBER + i, h, target, Forecast::new(point, point));
                }
            }
        }
        Step::Observe(t) => {
            let value = f64::from(series.counts[t as usize]);
            model.observe(value);
            naive.observe(value);
            seasonal.observe(value);
            tracker.observe(t, value);
        }
    });

    let weights = horizons.iter().map(|&h| model.weights(h)).collect();
    Ok(AggregateRun {
        outage_buckets: model.outage_buckets(),
        weights,
        tracker,
    })
}
