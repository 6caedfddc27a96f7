//! An online regression per horizon on lags, window means and the seasonal
//! profile: the model that gets an online forecaster near the offline
//! gradient-boosting-on-lags figures.
//!
//! Holt-Winters commits to one structure (level times season plus trend);
//! the regression instead learns, per horizon, how much to trust the last
//! few minutes, the last hour, the same time yesterday and last week, and
//! the mean daily profile, re-weighting them as the series changes. Each
//! horizon has its own [`Rls`] fit, trained when its target bucket arrives
//! on the features that were known when the forecast was issued, so it never
//! sees the future.
//!
//! Features are divided by a slow scale (the mean of the kept history,
//! about a week), so the weights are ratios and the same defaults suit a
//! series of 3 or 3 000 requests per bucket. Window lengths are in minutes
//! and converted to buckets, so they mean the same at any bucket width.

use std::collections::VecDeque;

use super::{History, PointModel, Rls};

/// Features per horizon.
const FEATURES: usize = 12;

/// Window lengths of the recent means, in minutes.
const RECENT_MINUTES: [f64; 3] = [5.0, 15.0, 60.0];

/// Half-width of the smoothing around "the same time" a day or week back,
/// in minutes.
const SEASONAL_HALF_WIDTH_MINUTES: f64 = 7.0;

/// Days of the mean daily profile.
const PROFILE_DAYS: u64 = 7;

/// One horizon's fit and the forecasts still waiting for their target.
#[derive(Debug, Clone)]
struct HorizonFit {
    horizon: u32,
    rls: Rls,
    /// Features and scale of each issued forecast, oldest first.
    pending: VecDeque<([f64; FEATURES], f64)>,
}

/// Per-horizon recursive least squares on lag features; see the module docs.
#[derive(Debug, Clone)]
pub struct LagRegression {
    fits: Vec<HorizonFit>,
    /// Buckets per minute (at least a tiny positive number).
    per_minute: f64,
}

impl LagRegression {
    /// Forgetting factor per bucket used by [`Self::for_horizons`]: a
    /// memory of about 2 000 buckets (1.4 days at 60 s).
    pub const DEFAULT_LAMBDA: f64 = 0.9998;

    /// One fit per horizon in `horizons` (buckets; 0 is read as 1,
    /// duplicates kept once) for a series whose day is `day` buckets,
    /// forgetting `lambda` per bucket.
    pub fn new(day: u32, horizons: &[u32], lambda: f64) -> Self {
        let mut hs: Vec<u32> = horizons.iter().map(|&h| h.max(1)).collect();
        hs.sort_unstable();
        hs.dedup();
        // Start as "the mean of the last 15 minutes" until data says more.
        let mut initial = [0.0; FEATURES];
        initial[3] = 1.0;
        let fits = hs
            .into_iter()
            .map(|horizon| HorizonFit {
                horizon,
                rls: Rls::new(FEATURES, lambda, 1.0, &initial),
                pending: VecDeque::with_capacity(horizon as usize + 1),
            })
            .collect();
        Self {
            fits,
            per_minute: (f64::from(day) / 1_440.0).max(1e-9),
        }
    }

    /// [`Self::new`] with [`Self::DEFAULT_LAMBDA`].
    pub fn for_horizons(day: u32, horizons: &[u32]) -> Self {
        Self::new(day, horizons, Self::DEFAULT_LAMBDA)
    }

    /// The learned weights for `horizon` (its nearest fitted horizon), in
    /// feature order: intercept, last value, means over 5, 15 and 60
    /// minutes, yesterday, last week, daily profile, profile-adjusted and
    /// yesterday-adjusted hourly level, and the exact bucket a day and an
    /// hour before the target (unsmoothed, for series with sharp periodic
    /// bursts such as hourly jobs).
    pub fn weights(&self, horizon: u32) -> Option<&[f64]> {
        self.fit_for(horizon).map(|fit| fit.rls.weights())
    }

    /// The fit trained for the horizon closest to `horizon`.
    fn fit_for(&self, horizon: u32) -> Option<&HorizonFit> {
        self.fits
            .iter()
            .min_by_key(|fit| fit.horizon.abs_diff(horizon.max(1)))
    }

    /// The features of a forecast `horizon` buckets ahead, divided by the
    /// returned scale.
    fn features(per_minute: f64, history: &History, horizon: u32) -> ([f64; FEATURES], f64) {
        let buckets = |minutes: f64| (minutes * per_minute).round().max(1.0) as u64;
        let len = history.len();
        let season = history.season();
        let (day, week) = (u64::from(season.day), u64::from(season.week));
        let target = len - 1 + u64::from(horizon.max(1));
        let half = buckets(SEASONAL_HALF_WIDTH_MINUTES) - 1;
        let scale = history.mean(history.oldest(), len).unwrap_or(0.0).max(1e-3);

        let recent = RECENT_MINUTES.map(|m| history.mean_last(buckets(m)));
        let hour = buckets(60.0);
        let yesterday = history.mean_around(target, day, half);
        let last_week = history.mean_around(target, week, half).or(yesterday);

        // Mean profile at the target and over the last hour, same days.
        let (mut at_target, mut over_hour, mut days) = (0.0, 0.0, 0.0);
        for j in 1..=PROFILE_DAYS {
            let lag = j * day;
            let past_hour = len
                .checked_sub(lag + hour)
                .and_then(|start| history.mean(start, len - lag));
            if let (Some(t), Some(h)) = (history.mean_around(target, lag, half), past_hour) {
                at_target += t;
                over_hour += h;
                days += 1.0;
            }
        }
        let profile = (days > 0.0).then(|| (at_target / days, over_hour / days));
        let level = recent[2];
        let adjusted = |(at, over): (f64, f64)| {
            if over > 1e-9 {
                level * at / over
            } else {
                level
            }
        };
        let yesterday_hour = len
            .checked_sub(day + hour)
            .and_then(|start| history.mean(start, len - day));
        let yesterday_adjusted = yesterday.zip(yesterday_hour).map(adjusted);

        let raw = [
            history.last(),
            recent[0],
            recent[1],
            recent[2],
            yesterday.unwrap_or(recent[2]),
            last_week.unwrap_or(recent[2]),
            profile.map_or(recent[2], |(at, _)| at),
            profile.map_or(recent[2], adjusted),
            yesterday_adjusted.unwrap_or(recent[2]),
            history.mean_around(target, day, 0).unwrap_or(recent[2]),
            history.mean_around(target, hour, 0).unwrap_or(recent[2]),
        ];
        let mut x = [1.0; FEATURES];
        for (slot, value) in x[1..].iter_mut().zip(raw) {
            *slot = value / scale;
        }
        (x, scale)
    }
}

impl PointModel for LagRegression {
    fn name(&self) -> &'static str {
        "regression"
    }

    /// Trains every horizon whose target is the newest bucket (unless it
    /// was imputed during an outage), then queues this step's features.
    fn observe(&mut self, history: &History) {
        let y = history.last();
        let imputed = history.imputed_run() > 0;
        let per_minute = self.per_minute;
        for fit in &mut self.fits {
            let features = Self::features(per_minute, history, fit.horizon);
            if fit.pending.len() >= fit.horizon as usize {
                if let Some((x, scale)) = fit.pending.pop_front() {
                    if !imputed {
                        fit.rls.update(&x, y / scale);
                    }
                }
            }
            fit.pending.push_back(features);
        }
    }

    fn predict(&self, history: &History, horizon: u32) -> f64 {
        let Some(fit) = self.fit_for(horizon) else {
            return history.mean_last(15);
        };
        if history.is_empty() {
            return 0.0;
        }
        let (x, scale) = Self::features(self.per_minute, history, horizon);
        (fit.rls.predict(&x) * scale).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Seasonality;

    #[test]
    fn learns_to_forecast_a_repeating_day_better_than_the_recent_mean() {
        // A day of 96 buckets (15 minutes each) with a sharp evening peak.
        let season = Seasonality { day: 96, week: 672 };
        let value = |i: u64| {
            if (70..80).contains(&(i % 96)) {
                200.0
            } else {
                20.0
            }
        };
        let mut history = History::new(season, 800);
        let mut model = LagRegression::for_horizons(season.day, &[4]);
        // Stop just before a peak, where the recent mean (20) is badly wrong.
        let end = 96 * 20 + 68;
        for i in 0..end {
            history.push(value(i));
            model.observe(&history);
        }
        let target = value(end - 1 + 4);
        let got = model.predict(&history, 4);
        assert_eq!(target, 200.0);
        assert!((got - target).abs() < 20.0, "forecast {got}");
    }

    #[test]
    fn forecasts_are_finite_and_non_negative_on_an_empty_or_zero_series() {
        let season = Seasonality {
            day: 1_440,
            week: 10_080,
        };
        let mut history = History::new(season, 100);
        let mut model = LagRegression::for_horizons(season.day, &[1, 60]);
        assert_eq!(model.predict(&history, 1), 0.0);
        for _ in 0..300 {
            history.push(0.0);
            model.observe(&history);
        }
        for h in [1, 5, 60] {
            let got = model.predict(&history, h);
            assert!(got.is_finite() && got >= 0.0, "h={h}: {got}");
        }
    }
}
