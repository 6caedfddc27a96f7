//! One point model made into a complete [`Forecaster`].
//!
//! The baselines and each model alone need the same interface as the
//! ensemble (observe a bucket, forecast a median and a p90) so that they are
//! scored identically. [`Calibrated`] owns a [`History`], feeds it to the
//! model and wraps the point forecast in [`ResidualQuantiles`]. The median
//! is the model's point forecast unchanged (no bias correction), so a
//! wrapped baseline is exactly the baseline.

use super::{
    history_capacity, Forecast, ForecastError, Forecaster, History, PointModel, ResidualQuantiles,
    Seasonality,
};

/// A point model with its own history and empirical intervals.
#[derive(Debug, Clone)]
pub struct Calibrated<M> {
    model: M,
    history: History,
    intervals: ResidualQuantiles,
}

impl<M: PointModel> Calibrated<M> {
    /// Wraps `model` for a series of seasons `season`, calibrating the
    /// intervals of `horizons` (buckets; others use the nearest).
    ///
    /// # Errors
    /// [`ForecastError::Horizons`] or [`ForecastError::HorizonTooLong`]
    /// (see [`history_capacity`]).
    pub fn new(model: M, season: Seasonality, horizons: &[u32]) -> Result<Self, ForecastError> {
        let capacity = history_capacity(season, horizons)?;
        Ok(Self {
            model,
            history: History::new(season, capacity),
            intervals: ResidualQuantiles::new(horizons, ResidualQuantiles::DEFAULT_WINDOW, 15),
        })
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The series so far.
    pub fn history(&self) -> &History {
        &self.history
    }
}

impl<M: PointModel> Forecaster for Calibrated<M> {
    fn name(&self) -> &'static str {
        self.model.name()
    }

    fn observe(&mut self, value: f64) {
        self.history.push(value);
        self.model.observe(&self.history);
        let (model, history) = (&self.model, &self.history);
        self.intervals
            .record(Some(history.last()), |h| model.predict(history, h));
    }

    fn forecast(&self, horizon: u32) -> Forecast {
        if self.history.is_empty() {
            return Forecast::default();
        }
        let point = self.model.predict(&self.history, horizon.max(1));
        self.intervals.interval(horizon, point, false)
    }
}
