//! Scoring issued forecasts once their target bucket has happened.
//!
//! The feedback loop needs an honest record: each forecast is kept exactly
//! as issued until its target bucket arrives, then scored against it. The
//! same tracker serves `headroom eval` (cumulative scores over the scored
//! days) and the proxy's `headroom_forecast_error{horizon,metric}` gauge
//! (with a half-life, so the gauge shows recent accuracy).
//!
//! Metrics per model and horizon:
//! - MAE: mean `|actual - median|`.
//! - sMAPE, in percent (0 to 200): mean `200 |a - f| / (|a| + |f|)`; a
//!   bucket where both are 0 scores 0 (a perfect forecast of nothing).
//! - MASE: MAE divided by the mean absolute one-bucket change of the
//!   series observed so far (the in-sample naive error); `NaN` until the
//!   series has changed at least once.
//! - Pinball loss at 0.9 of the p90: `0.9 (a - q)` when the actual is above
//!   `q`, `0.1 (q - a)` when below.
//! - p90 coverage: the share of actuals at or below the p90 (calibrated:
//!   near 0.9).

use std::collections::VecDeque;

use super::Forecast;

/// Accuracy of one model at one horizon; `NaN` fields before any point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scores {
    /// Forecasts scored (with a half-life: their decayed weight, rounded).
    pub points: u64,
    /// Mean absolute error of the median, in requests per bucket.
    pub mae: f64,
    /// Symmetric mean absolute percentage error, in percent (0 to 200).
    pub smape: f64,
    /// Mean absolute scaled error (MAE over the in-sample naive MAE).
    pub mase: f64,
    /// Mean quantile loss of the p90 at level 0.9.
    pub pinball_p90: f64,
    /// Share of actuals at or below the p90.
    pub coverage_p90: f64,
}

/// Decayed sums of one model and horizon.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    weight: f64,
    abs: f64,
    smape: f64,
    pinball: f64,
    covered: f64,
}

/// Pending forecasts and scores per model and horizon; see the module docs.
#[derive(Debug, Clone)]
pub struct AccuracyTracker {
    models: usize,
    horizons: Vec<u32>,
    /// Per (model, horizon): issued forecasts by target index, ascending.
    pending: Vec<VecDeque<(u64, Forecast)>>,
    sums: Vec<Sums>,
    decay: f64,
    /// In-sample naive error: sum of |y_t - y_{t-1}| and its count.
    naive_abs: f64,
    naive_points: u64,
    last: Option<(u64, f64)>,
}

impl AccuracyTracker {
    /// A tracker for `models` models (at least 1) and `horizons` (buckets;
    /// forecasts for other horizons are ignored). `half_life` in scored
    /// points: `None` (or non-positive) keeps cumulative scores.
    pub fn new(models: usize, horizons: &[u32], half_life: Option<f64>) -> Self {
        let models = models.max(1);
        let cells = models * horizons.len();
        let decay = match half_life {
            Some(h) if h > 0.0 => 0.5_f64.powf(1.0 / h),
            _ => 1.0,
        };
        Self {
            models,
            horizons: horizons.to_vec(),
            pending: vec![VecDeque::new(); cells],
            sums: vec![Sums::default(); cells],
            decay,
            naive_abs: 0.0,
            naive_points: 0,
            last: None,
        }
    }

    /// The horizons tracked, as given.
    pub fn horizons(&self) -> &[u32] {
        &self.horizons
    }

    /// The cell of `model` at `horizon`, if both are tracked.
    fn cell(&self, model: usize, horizon: u32) -> Option<usize> {
        let h = self.horizons.iter().position(|&x| x == horizon)?;
        (model < self.models).then_some(model * self.horizons.len() + h)
    }

    /// Keeps `forecast`, issued by `model` for bucket index `target` at
    /// `horizon`, until that bucket is observed. Forecasts of one model and
    /// horizon must be issued in ascending target order; an out-of-order
    /// one, or one for an untracked model or horizon, is ignored.
    pub fn issue(&mut self, model: usize, horizon: u32, target: u64, forecast: Forecast) {
        let Some(cell) = self.cell(model, horizon) else {
            return;
        };
        let queue = &mut self.pending[cell];
        if queue.back().is_none_or(|&(t, _)| t < target) {
            queue.push_back((target, forecast));
        }
    }

    /// Scores every forecast whose target is bucket `index` against its
    /// `actual` value, and drops those for earlier buckets never observed.
    /// Buckets should be observed in ascending index order.
    pub fn observe(&mut self, index: u64, actual: f64) {
        if let Some((last_index, last_value)) = self.last {
            if index == last_index + 1 {
                self.naive_abs += (actual - last_value).abs();
                self.naive_points += 1;
            }
        }
        self.last = Some((index, actual));
        for cell in 0..self.pending.len() {
            while let Some(&(target, forecast)) = self.pending[cell].front() {
                if target > index {
                    break;
                }
                self.pending[cell].pop_front();
                if target == index {
                    self.score(cell, actual, forecast);
                }
            }
        }
    }

    /// Adds one scored forecast to a cell's decayed sums.
    fn score(&mut self, cell: usize, actual: f64, forecast: Forecast) {
        let sums = &mut self.sums[cell];
        let d = self.decay;
        let error = actual - forecast.median;
        let denominator = actual.abs() + forecast.median.abs();
        let smape = if denominator > 0.0 {
            200.0 * error.abs() / denominator
        } else {
            0.0
        };
        let above = actual - forecast.p90;
        let pinball = if above >= 0.0 {
            0.9 * above
        } else {
            -0.1 * above
        };
        sums.weight = sums.weight * d + 1.0;
        sums.abs = sums.abs * d + error.abs();
        sums.smape = sums.smape * d + smape;
        sums.pinball = sums.pinball * d + pinball;
        sums.covered = sums.covered * d + f64::from(u8::from(actual <= forecast.p90));
    }

    /// The scores of `model` at `horizon`; all-`NaN` with 0 points when
    /// nothing was scored or the pair is not tracked.
    pub fn scores(&self, model: usize, horizon: u32) -> Scores {
        let sums = self
            .cell(model, horizon)
            .map(|cell| self.sums[cell])
            .unwrap_or_default();
        let n = sums.weight;
        let mean = |x: f64| if n > 0.0 { x / n } else { f64::NAN };
        let scale = if self.naive_points > 0 {
            self.naive_abs / self.naive_points as f64
        } else {
            f64::NAN
        };
        let mae = mean(sums.abs);
        Scores {
            points: n.round() as u64,
            mae,
            smape: mean(sums.smape),
            mase: if scale > 0.0 { mae / scale } else { f64::NAN },
            pinball_p90: mean(sums.pinball),
            coverage_p90: mean(sums.covered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecasts_are_scored_when_their_target_arrives() {
        let mut tracker = AccuracyTracker::new(1, &[2], None);
        tracker.issue(0, 2, 3, Forecast::new(10.0, 12.0));
        tracker.issue(0, 2, 4, Forecast::new(10.0, 12.0));
        for (i, v) in [(1, 9.0), (2, 11.0), (3, 14.0)] {
            tracker.observe(i, v);
        }
        let s = tracker.scores(0, 2);
        assert_eq!(s.points, 1, "index 4 has not arrived");
        assert_eq!(s.mae, 4.0);
        assert!((s.smape - 200.0 * 4.0 / 24.0).abs() < 1e-9);
        assert!((s.pinball_p90 - 0.9 * 2.0).abs() < 1e-9);
        assert_eq!(s.coverage_p90, 0.0);
        // Naive changes so far: |11 - 9| and |14 - 11|, mean 2.5.
        assert!((s.mase - 4.0 / 2.5).abs() < 1e-9);

        tracker.observe(4, 10.0);
        let s = tracker.scores(0, 2);
        assert_eq!((s.points, s.mae, s.coverage_p90), (2, 2.0, 0.5));
        assert!((s.pinball_p90 - (1.8 + 0.2) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn both_zero_scores_zero_smape_and_empty_cells_are_nan() {
        let mut tracker = AccuracyTracker::new(2, &[1], None);
        tracker.issue(0, 1, 0, Forecast::new(0.0, 0.0));
        tracker.observe(0, 0.0);
        assert_eq!(tracker.scores(0, 1).smape, 0.0);
        assert_eq!(tracker.scores(0, 1).coverage_p90, 1.0);
        assert!(tracker.scores(1, 1).mae.is_nan());
        assert!(tracker.scores(0, 7).mae.is_nan());
    }

    #[test]
    fn forecasts_for_skipped_buckets_are_dropped_unscored() {
        let mut tracker = AccuracyTracker::new(1, &[1], None);
        tracker.issue(0, 1, 5, Forecast::new(1.0, 2.0));
        tracker.issue(0, 1, 6, Forecast::new(1.0, 2.0));
        tracker.observe(6, 1.0);
        assert_eq!(tracker.scores(0, 1).points, 1);
        assert_eq!(tracker.scores(0, 1).mae, 0.0);
    }

    #[test]
    fn a_half_life_weights_recent_errors_more() {
        let mut tracker = AccuracyTracker::new(1, &[1], Some(1.0));
        for i in 0..20 {
            let forecast = if i < 19 { 0.0 } else { 10.0 };
            tracker.issue(0, 1, i, Forecast::new(forecast, forecast));
            tracker.observe(i, 10.0);
        }
        // Nineteen errors of 10 then one of 0: the recent zero dominates.
        assert!(tracker.scores(0, 1).mae < 6.0);
    }
}
