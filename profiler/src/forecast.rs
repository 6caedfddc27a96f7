//! Demand forecasts over a bucketed count series, learned online.
//!
//! The proxy shapes capacity by what users are about to do, so it needs the
//! request count of a future bucket (1, 5, 15 and 60 minutes ahead) as a
//! median and a 90th percentile, updated as each bucket completes, within a
//! background tick's budget. Offline models fitted on the whole history (the
//! LightGBM-on-lags figures this module is measured against) cannot run
//! there, so every model here is online: [`PointModel::observe`] takes the
//! newest bucket in constant time and memory, and forecasts read the state.
//!
//! Layers, one file each:
//! - [`History`]: the recent series with running sums, shared by the models
//!   so that lags and window means cost O(1).
//! - Point models ([`PointModel`]): [`Naive`] and [`SeasonalNaive`] (the
//!   baselines), [`Ewma`] (the floor), [`HoltWinters`] (damped trend, daily
//!   season, optional weekly factor) and [`LagRegression`] (recursive least
//!   squares per horizon on lags, window means and the seasonal profile).
//! - [`Ensemble`]: weights the point models per horizon by their recent
//!   absolute error (the feedback loop).
//! - [`ResidualQuantiles`]: turns a point forecast into a median and p90
//!   from the recent empirical residual quantiles (conformal style).
//! - [`Calibrated`] and [`DemandForecaster`]: the complete [`Forecaster`]s,
//!   one model or the ensemble, with outage handling ([`OutageFilter`]).
//! - [`AccuracyTracker`]: scores issued forecasts once their target bucket
//!   arrives (MAE, sMAPE, MASE, pinball loss at p90, p90 coverage).
//! - [`QuantityForecaster`] ([`quantity`]): one forecaster per quantity
//!   (requests, bytes out, backend time, concurrency) over one series, for
//!   the aggregate and each cohort, scored per quantity and horizon.
//! - [`user`]: per-user forecasts for the many sparse users, from the
//!   user's existing windows and 16 bytes of state, scaled by a cohort's
//!   demand multipliers, with medians and p90s from a count calibration
//!   shared across users.
//!
//! Time is never read here: a series advances one bucket per `observe`, and
//! the time of day is the bucket's position modulo [`Seasonality::day`]
//! counted from the first observation. Callers that know wall time align
//! the first bucket to midnight (or accept a fixed phase: models learn the
//! season relative to whatever the first bucket was).

mod accuracy;
mod baseline;
mod calibrated;
mod ensemble;
mod ewma;
mod history;
mod holt_winters;
mod interval;
mod outage;
mod pipeline;
pub mod quantity;
mod regression;
mod rls;
pub mod user;

#[cfg(test)]
mod tests;

pub use accuracy::{AccuracyTracker, Scores};
pub use baseline::{Naive, SeasonalNaive};
pub use calibrated::Calibrated;
pub use ensemble::Ensemble;
pub use ewma::Ewma;
pub use history::History;
pub use holt_winters::{HoltWinters, HoltWintersParams, SeasonMode};
pub use interval::{poisson_p90, poisson_quantile, ResidualQuantiles};
pub use outage::OutageFilter;
pub use pipeline::{DemandForecaster, ModelKind};
pub use quantity::{Quantity, QuantityForecaster, QuantitySample, QuantityTotals};
pub use regression::LagRegression;
pub use rls::Rls;

/// The forecast of one future bucket: its median and its 90th percentile,
/// in the series' unit (requests per bucket).
///
/// Invariants kept by every forecaster here: both are finite, `median >= 0`
/// and `p90 >= median`.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Forecast {
    /// The central forecast (what MAE scores).
    pub median: f64,
    /// The value the bucket stays at or below with probability 0.9.
    pub p90: f64,
}

impl Forecast {
    /// A forecast clamped to the invariants: non-finite values become 0,
    /// negatives 0, and `p90` is raised to `median` when below it.
    pub fn new(median: f64, p90: f64) -> Self {
        let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        let median = clean(median);
        Self {
            median,
            p90: clean(p90).max(median),
        }
    }
}

/// A model that predicts one number per horizon from the series so far.
///
/// `observe` is called once per completed bucket, in time order, after the
/// value was pushed into the shared [`History`] (so `history.last()` is the
/// value just observed). `predict` may be called any number of times
/// between observations.
pub trait PointModel {
    /// A short lowercase name for reports (`naive`, `holt_winters`).
    fn name(&self) -> &'static str;

    /// Updates the state with the newest bucket, `history.last()`.
    fn observe(&mut self, history: &History);

    /// The expected value of the bucket `horizon` buckets after the newest
    /// one (`horizon >= 1`; 0 is read as 1). May be negative or non-finite
    /// only if the model is broken; callers clamp through [`Forecast::new`].
    fn predict(&self, history: &History, horizon: u32) -> f64;
}

/// A complete forecaster: observe each bucket's value, forecast any horizon.
pub trait Forecaster {
    /// A short lowercase name for reports.
    fn name(&self) -> &'static str;

    /// Records the value of the next bucket (requests in it). Negative and
    /// non-finite values are read as 0.
    fn observe(&mut self, value: f64);

    /// The forecast `horizon` buckets after the newest observed one (1 is
    /// the next bucket; 0 is read as 1). Before any observation: zeros.
    fn forecast(&self, horizon: u32) -> Forecast;
}

/// Season lengths of a series in buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seasonality {
    /// Buckets per day (1 440 at 60 s).
    pub day: u32,
    /// Buckets per week: `7 * day`.
    pub week: u32,
}

impl Seasonality {
    /// Shortest bucket accepted: 1 s (a week is then 604 800 buckets).
    pub const MIN_BUCKET_MS: u64 = 1_000;
    /// Longest bucket accepted: 1 h (a day is then 24 buckets).
    pub const MAX_BUCKET_MS: u64 = 3_600_000;

    /// The seasons of a series of `bucket_ms` buckets. A day that is not a
    /// whole number of buckets is rounded to the nearest, so the season
    /// drifts by under half a bucket per day.
    ///
    /// # Errors
    /// [`ForecastError::BucketWidth`] outside 1 s to 1 h.
    pub fn for_bucket_ms(bucket_ms: u64) -> Result<Self, ForecastError> {
        if !(Self::MIN_BUCKET_MS..=Self::MAX_BUCKET_MS).contains(&bucket_ms) {
            return Err(ForecastError::BucketWidth { bucket_ms });
        }
        let day_ms: u64 = 86_400_000;
        let day = u32::try_from((day_ms + bucket_ms / 2) / bucket_ms)
            .expect("at most 86 400 buckets per day");
        Ok(Self { day, week: 7 * day })
    }
}

/// Values a [`History`] must keep for the models to forecast `horizons`:
/// a week, plus an hour and a few buckets of margin for the smoothed
/// week-ago reads and the profile over the past hour.
///
/// # Errors
/// [`ForecastError::Horizons`] for no horizons or a horizon of 0, and
/// [`ForecastError::HorizonTooLong`] beyond half a day (the day-ago
/// features would read the future).
pub fn history_capacity(season: Seasonality, horizons: &[u32]) -> Result<usize, ForecastError> {
    if horizons.is_empty() || horizons.contains(&0) {
        return Err(ForecastError::Horizons {
            horizons: horizons.to_vec(),
        });
    }
    let max = season.day / 2;
    if let Some(&horizon) = horizons.iter().find(|&&h| h > max) {
        return Err(ForecastError::HorizonTooLong { horizon, max });
    }
    let hour = season.day.div_ceil(24);
    Ok(season.week as usize + 2 * hour as usize + 2)
}

/// Why a forecaster could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// The bucket width is outside what the seasonal models support.
    #[error("bucket width must be between 1 s and 1 h, got {bucket_ms} ms")]
    BucketWidth {
        /// The width asked for (ms).
        bucket_ms: u64,
    },
    /// No horizons, or a horizon of 0 buckets.
    #[error("horizons must be non-empty and at least 1 bucket each, got {horizons:?}")]
    Horizons {
        /// The horizons asked for (buckets).
        horizons: Vec<u32>,
    },
    /// A horizon longer than the history kept for it.
    #[error("horizon of {horizon} buckets exceeds the longest supported, {max}")]
    HorizonTooLong {
        /// The horizon asked for (buckets).
        horizon: u32,
        /// The longest supported (buckets).
        max: u32,
    },
}
