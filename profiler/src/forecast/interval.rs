//! Prediction intervals from the model's own recent errors (conformal style).
//!
//! A p90 is only useful if the bucket really stays below it nine times in
//! ten. Parametric intervals (Poisson, normal) are wrong for web traffic,
//! which is overdispersed and bursty, so [`ResidualQuantiles`] keeps, per
//! horizon, the last `window` residuals of the forecasts actually issued and
//! reads their empirical 50th and 90th percentiles: split-conformal
//! calibration on a rolling window, which adapts as the error changes.
//!
//! Residuals are divided by `sqrt(max(forecast, 1))` before they are stored
//! and multiplied back when read, because count noise grows with the level:
//! a quiet night and a busy noon then share one calibration instead of the
//! night's interval being as wide as noon's.
//!
//! Until `min_points` residuals exist the interval is the Poisson one
//! ([`poisson_p90`], from statrs), the right shape for counts with no
//! history. Quantiles are recomputed every `refresh` scored buckets by
//! selection (O(window) each), so a step costs O(window / refresh)
//! amortised and a read O(1). The selection is std's
//! `select_nth_unstable_by`: statrs' `Data::quantile` does the same job but
//! took 80 % of a whole NASA evaluation's time.

use std::collections::VecDeque;

use statrs::distribution::{ContinuousCDF, DiscreteCDF, Normal, Poisson};

use super::Forecast;

/// Mean above which the Poisson p90 uses its normal approximation (the
/// exact inverse CDF costs a search over the support).
const POISSON_EXACT_BELOW: f64 = 1_000.0;

/// The standard normal's 0.9 quantile.
const Z90: f64 = 1.281_551_565_544_600_5;

/// The 90th percentile of a Poisson count with mean `mean`; see
/// [`poisson_quantile`].
pub fn poisson_p90(mean: f64) -> f64 {
    poisson_quantile(mean, 0.9)
}

/// The `p` quantile (the smallest count whose CDF reaches `p`) of a Poisson
/// count with mean `mean`; 0 for a mean that is not positive and finite or
/// a `p` that is not in `(0, 1)`.
///
/// Exact below a mean of 1 000, from statrs' Poisson CDF; above, the normal
/// approximation `mean + z_p * sqrt(mean)`. The search is done here rather
/// than with statrs' `inverse_cdf`, which panics whenever the answer is 0
/// (statrs 0.18: its bisection requires `cdf(0) < p`).
pub fn poisson_quantile(mean: f64, p: f64) -> f64 {
    if !(mean.is_finite() && mean > 0.0 && p > 0.0 && p < 1.0) {
        return 0.0;
    }
    if mean >= POISSON_EXACT_BELOW {
        let z = Normal::new(0.0, 1.0).map_or(Z90, |n| n.inverse_cdf(p));
        return (mean + z * mean.sqrt()).max(0.0);
    }
    let Ok(poisson) = Poisson::new(mean) else {
        return 0.0;
    };
    if poisson.cdf(0) >= p {
        return 0.0;
    }
    // Invariant: cdf(low) < p <= cdf(high).
    let (mut low, mut high) = (0u64, (mean + 10.0 * mean.sqrt() + 10.0).ceil() as u64);
    while poisson.cdf(high) < p && high < u64::MAX / 2 {
        high *= 2;
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if poisson.cdf(mid) >= p {
            high = mid;
        } else {
            low = mid;
        }
    }
    high as f64
}

/// The `tau` quantile of `values` (reordered in place), interpolated
/// linearly between order statistics (type 7); `None` when empty.
pub(crate) fn quantile(values: &mut [f64], tau: f64) -> Option<f64> {
    let last = values.len().checked_sub(1)?;
    let position = tau.clamp(0.0, 1.0) * last as f64;
    let below = (position.floor() as usize).min(last);
    let (_, &mut low, above) = values.select_nth_unstable_by(below, f64::total_cmp);
    // The next order statistic is the smallest of the upper partition.
    let high = above.iter().copied().fold(f64::INFINITY, f64::min);
    let fraction = position - below as f64;
    Some(if fraction > 0.0 && high.is_finite() {
        low + fraction * (high - low)
    } else {
        low
    })
}

/// The divisor that makes residuals comparable across levels.
fn residual_scale(forecast: f64) -> f64 {
    forecast.max(1.0).sqrt()
}

/// One horizon's issued forecasts and recent scaled residuals.
#[derive(Debug, Clone)]
struct HorizonResiduals {
    horizon: u32,
    /// Point forecasts waiting for their target, oldest first.
    pending: VecDeque<f64>,
    /// Ring of the last `window` scaled residuals.
    residuals: Vec<f64>,
    next: usize,
    scored_since_refresh: u32,
    q50: f64,
    q90: f64,
}

/// Rolling empirical residual quantiles per horizon; see the module docs.
#[derive(Debug, Clone)]
pub struct ResidualQuantiles {
    per_horizon: Vec<HorizonResiduals>,
    window: usize,
    refresh: u32,
    min_points: usize,
    /// Reused buffer for the quantile selection.
    scratch: Vec<f64>,
}

impl ResidualQuantiles {
    /// Default residuals kept per horizon: two days at 60 s buckets.
    pub const DEFAULT_WINDOW: usize = 2_880;

    /// Tracks `horizons` (buckets; 0 read as 1, duplicates once), keeping
    /// `window` residuals each (at least 10), recomputing quantiles every
    /// `refresh` scored buckets (at least 1), and using the Poisson
    /// interval until `min(window, 100)` residuals exist.
    pub fn new(horizons: &[u32], window: usize, refresh: u32) -> Self {
        let mut hs: Vec<u32> = horizons.iter().map(|&h| h.max(1)).collect();
        hs.sort_unstable();
        hs.dedup();
        let window = window.max(10);
        let per_horizon = hs
            .into_iter()
            .map(|horizon| HorizonResiduals {
                horizon,
                pending: VecDeque::with_capacity(horizon as usize + 1),
                residuals: Vec::with_capacity(window),
                next: 0,
                scored_since_refresh: 0,
                q50: 0.0,
                q90: Z90,
            })
            .collect();
        Self {
            per_horizon,
            window,
            refresh: refresh.max(1),
            min_points: window.min(100),
            scratch: Vec::with_capacity(window),
        }
    }

    /// Scores the forecasts whose target is this bucket against `actual`
    /// (`None`: the bucket was not really observed, so they are dropped
    /// unscored), then issues this step's forecasts, `predict(horizon)`.
    pub fn record(&mut self, actual: Option<f64>, mut predict: impl FnMut(u32) -> f64) {
        let window = self.window;
        for i in 0..self.per_horizon.len() {
            let track = &mut self.per_horizon[i];
            if track.pending.len() >= track.horizon as usize {
                let issued = track.pending.pop_front();
                if let (Some(forecast), Some(actual)) = (issued, actual) {
                    let residual = (actual - forecast) / residual_scale(forecast);
                    if track.residuals.len() < window {
                        track.residuals.push(residual);
                    } else {
                        track.residuals[track.next] = residual;
                    }
                    track.next = (track.next + 1) % window;
                    track.scored_since_refresh += 1;
                    if track.scored_since_refresh >= self.refresh {
                        track.scored_since_refresh = 0;
                        Self::refresh_quantiles(track, &mut self.scratch);
                    }
                }
            }
            let horizon = track.horizon;
            let forecast = predict(horizon);
            self.per_horizon[i].pending.push_back(forecast);
        }
    }

    /// Recomputes one horizon's quantiles from its residual ring.
    fn refresh_quantiles(track: &mut HorizonResiduals, scratch: &mut Vec<f64>) {
        scratch.clear();
        scratch.extend_from_slice(&track.residuals);
        let (Some(q50), Some(q90)) = (quantile(scratch, 0.5), quantile(scratch, 0.9)) else {
            return;
        };
        if q50.is_finite() && q90.is_finite() {
            track.q50 = q50;
            track.q90 = q90.max(q50);
        }
    }

    /// Residuals scored so far for the tracked horizon nearest `horizon`
    /// (at most the window).
    pub fn points(&self, horizon: u32) -> usize {
        self.track(horizon).map_or(0, |t| t.residuals.len())
    }

    /// The tracked horizon nearest `horizon`.
    fn track(&self, horizon: u32) -> Option<&HorizonResiduals> {
        self.per_horizon
            .iter()
            .min_by_key(|t| t.horizon.abs_diff(horizon.max(1)))
    }

    /// The median and p90 around the point forecast `point` at `horizon`.
    ///
    /// With enough residuals the p90 is `point` widened by the residuals'
    /// 90th percentile, and with `debias` the median is `point` shifted by
    /// the residuals' median, which removes a persistent bias (without it,
    /// the median is `point` itself: baselines must stay exactly what they
    /// are). Before that: `point` and its Poisson p90.
    pub fn interval(&self, horizon: u32, point: f64, debias: bool) -> Forecast {
        let point = if point.is_finite() {
            point.max(0.0)
        } else {
            0.0
        };
        match self.track(horizon) {
            Some(track) if track.residuals.len() >= self.min_points => {
                let scale = residual_scale(point);
                let shift = if debias { track.q50 * scale } else { 0.0 };
                Forecast::new(point + shift, point + track.q90 * scale)
            }
            _ => Forecast::new(point, poisson_p90(point)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_p90_matches_known_quantiles_and_handles_edges() {
        assert_eq!(poisson_p90(0.0), 0.0);
        assert_eq!(poisson_p90(0.01), 0.0, "cdf(0) already above 0.9");
        assert_eq!(poisson_quantile(0.5, 0.5), 0.0);
        assert_eq!(poisson_quantile(3.0, 0.5), 3.0);
        assert_eq!(poisson_quantile(3.0, 1.0), 0.0);
        assert_eq!(poisson_p90(f64::NAN), 0.0);
        assert_eq!(poisson_p90(1.0), 2.0);
        assert_eq!(poisson_p90(10.0), 14.0);
        let big = poisson_p90(10_000.0);
        assert!((big - 10_128.2).abs() < 0.1, "{big}");
    }

    #[test]
    fn quantile_interpolates_between_order_statistics() {
        let mut values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut values, 0.5), Some(3.0));
        assert_eq!(quantile(&mut values, 0.9), Some(4.6));
        assert_eq!(quantile(&mut values, 1.0), Some(5.0));
        assert_eq!(quantile(&mut values, 0.0), Some(1.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn p90_covers_about_nine_in_ten_of_a_noisy_series() {
        // A deterministic spread of errors: uniform on [-10, 10] around 100.
        let mut q = ResidualQuantiles::new(&[1], 500, 10);
        let mut covered = 0;
        let mut scored = 0;
        for i in 0..2_000u32 {
            let actual = 100.0 + f64::from((i * 37) % 21) - 10.0;
            if i > 600 {
                scored += 1;
                if actual <= q.interval(1, 100.0, false).p90 {
                    covered += 1;
                }
            }
            q.record(Some(actual), |_| 100.0);
        }
        let coverage = f64::from(covered) / f64::from(scored);
        assert!((0.85..=0.95).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn a_persistent_bias_shifts_the_median() {
        let mut q = ResidualQuantiles::new(&[5], 200, 1);
        for _ in 0..400 {
            q.record(Some(60.0), |_| 50.0);
        }
        let f = q.interval(5, 50.0, true);
        assert!((f.median - 60.0).abs() < 1e-9, "{f:?}");
        assert_eq!(q.interval(5, 50.0, false).median, 50.0);
    }

    #[test]
    fn unscored_buckets_leave_the_residuals_unchanged() {
        let mut q = ResidualQuantiles::new(&[1], 50, 1);
        for _ in 0..10 {
            q.record(None, |_| 5.0);
        }
        assert_eq!(q.points(1), 0);
        assert_eq!(q.interval(1, 10.0, true), Forecast::new(10.0, 14.0));
    }
}
