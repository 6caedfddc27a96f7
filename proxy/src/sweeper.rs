//! The sweeper: evicts idle users, keeps the user gauge current, and scores
//! the rate forecast the proxy advertises.
//!
//! Scoring: every tick the sum of all users' smoothed rates is a forecast of
//! the aggregate request rate over the next tick. When the tick has passed
//! it is compared with the arrivals actually counted, and so is the naive
//! forecast (the previous tick's measured rate). The running mean absolute
//! errors give `headroom_forecast_error{horizon="10s",metric="mae"|"mase"|
//! "smape"}`; MASE below 1 means the forecast beats naive.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use headroom_profiler::Clock;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::metrics::{FORECAST_HORIZON, FORECAST_METRICS};
use crate::state::Shared;

/// Tick length, which is also the scored forecast horizon.
const TICK: Duration = Duration::from_secs(10);

/// Running accuracy of a one-tick-ahead forecast against naive.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Accuracy {
    points: u64,
    abs_error: f64,
    naive_abs_error: f64,
    smape_sum: f64,
}

impl Accuracy {
    /// Scores one forecast `predicted` and the naive `naive` against `actual`
    /// (all in requests per second). Non-finite inputs are ignored.
    pub fn score(&mut self, predicted: f64, naive: f64, actual: f64) {
        if !(predicted.is_finite() && naive.is_finite() && actual.is_finite()) {
            return;
        }
        self.points += 1;
        self.abs_error += (predicted - actual).abs();
        self.naive_abs_error += (naive - actual).abs();
        let denom = predicted.abs() + actual.abs();
        if denom > 0.0 {
            self.smape_sum += 2.0 * (predicted - actual).abs() / denom;
        }
    }

    /// Mean absolute error, or `None` before the first point.
    pub fn mae(&self) -> Option<f64> {
        (self.points > 0).then(|| self.abs_error / self.points as f64)
    }

    /// MAE relative to naive's; `None` until naive has made an error.
    pub fn mase(&self) -> Option<f64> {
        (self.naive_abs_error > 0.0).then(|| self.abs_error / self.naive_abs_error)
    }

    /// Symmetric MAPE in [0, 2]; `None` before the first point.
    pub fn smape(&self) -> Option<f64> {
        (self.points > 0).then(|| self.smape_sum / self.points as f64)
    }
}

/// The sweeper background task.
pub struct Sweeper {
    shared: Arc<Shared>,
}

impl Sweeper {
    /// A sweeper over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let span = tracing::info_span!("sweeper");
        let _enter = span.enter();
        let mut tick = tokio::time::interval(TICK);
        let mut accuracy = Accuracy::default();
        let mut last: Option<(u64, f64, u64)> = None; // (arrivals, forecast rps, at ms)
        let mut last_rate = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let now_ms = self.shared.clock.now_ms();
            self.shared.admission.expire();
            let evicted = self.shared.users.evict_idle(now_ms);
            self.shared.metrics.evicted_users.inc_by(evicted as u64);
            self.shared
                .metrics
                .tracked_users
                .set(i64::try_from(self.shared.users.len()).unwrap_or(i64::MAX));

            // Aggregate forecast for the next tick, and arrivals so far.
            let totals = self.shared.users.totals(now_ms);
            let (arrivals, forecast) = (totals.requests_total, totals.smoothed_rps);
            if let Some((prev_arrivals, prev_forecast, prev_ms)) = last {
                let secs = (now_ms.saturating_sub(prev_ms)) as f64 / 1000.0;
                if secs > 0.0 {
                    let actual = arrivals.saturating_sub(prev_arrivals) as f64 / secs;
                    if let Some(naive) = last_rate {
                        accuracy.score(prev_forecast, naive, actual);
                        self.publish(&accuracy);
                    }
                    last_rate = Some(actual);
                }
            }
            last = Some((arrivals, forecast, now_ms));
            tracing::debug!(evicted, users = self.shared.users.len(), "sweep");
        }
    }
}

impl Sweeper {
    fn publish(&self, accuracy: &Accuracy) {
        let gauge = &self.shared.metrics.forecast_error;
        let values = [accuracy.mae(), accuracy.mase(), accuracy.smape()];
        for (metric, value) in FORECAST_METRICS.iter().zip(values) {
            if let Some(v) = value {
                gauge.with_label_values(&[FORECAST_HORIZON, metric]).set(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_forecast_has_zero_error_and_mase() {
        let mut a = Accuracy::default();
        a.score(5.0, 3.0, 5.0);
        a.score(2.0, 5.0, 2.0);
        assert_eq!(a.mae(), Some(0.0));
        assert_eq!(a.mase(), Some(0.0));
        assert_eq!(a.smape(), Some(0.0));
    }

    #[test]
    fn no_points_means_no_scores() {
        let a = Accuracy::default();
        assert_eq!(a.mae(), None);
        assert_eq!(a.mase(), None);
    }

    #[test]
    fn worse_than_naive_gives_mase_above_one() {
        let mut a = Accuracy::default();
        a.score(10.0, 4.0, 5.0);
        assert_eq!(a.mase(), Some(5.0));
        a.score(f64::NAN, 1.0, 1.0);
        assert_eq!(a.mae(), Some(5.0));
    }
}
