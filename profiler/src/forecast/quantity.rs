//! Forecasts of the four quantities a profile shows: request rate, bytes
//! out per second, backend time and concurrency.
//!
//! Capacity is not only requests: a user downloading exports costs bytes,
//! one calling slow reports costs backend time. A [`QuantityForecaster`]
//! keeps one full [`DemandForecaster`] per quantity over one series (the
//! aggregate, or one cohort: there are few of them), and scores each
//! quantity's forecasts with its own [`AccuracyTracker`], so the p90 of
//! every quantity is calibrated from its own residuals and its coverage is
//! reported per quantity and horizon.
//!
//! What one bucket's value is, per quantity ([`QuantitySample`]):
//! - requests: the arrivals in the bucket (exact, from request totals);
//! - bytes out: response bytes per second over the completed part of each
//!   user's activity window, times the bucket length;
//! - backend time: the same for the summed response latency (busy seconds);
//!   latency is measured from arrival to the end of the response, so it
//!   includes admission queueing and pacing;
//! - concurrency: Little's law, the bucket's arrival rate times the mean
//!   latency per response over the same windows (mean requests in flight).
//!
//! Approximations, with numbers: bytes and backend time are read from the
//! activity window (three coarse buckets over the request window's span,
//! 60 s by default), so a bucket's value is the rate over the last 40 to
//! 60 s, not exactly the bucket's own; with the default 1-minute tick that
//! lags by about half a minute. Backend time and concurrency estimate the
//! same number when the load is steady (Little's law); they part when it
//! changes (backend time follows completed responses, concurrency follows
//! arrivals) or when responses are long relative to the window.

use super::{AccuracyTracker, DemandForecaster, Forecast, ForecastError, Forecaster, Scores};
use super::{ModelKind, Seasonality};
use crate::user::{UserWindows, ACTIVITY_BUCKETS};
use crate::window::WindowShape;

/// One forecast quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Arrivals, in requests per second.
    Requests,
    /// Response bytes, in bytes per second.
    BytesOut,
    /// Summed response latency, in busy seconds per second.
    BackendSeconds,
    /// Mean requests in flight.
    Concurrency,
}

impl Quantity {
    /// Every quantity, in index order.
    pub const ALL: [Quantity; 4] = [
        Quantity::Requests,
        Quantity::BytesOut,
        Quantity::BackendSeconds,
        Quantity::Concurrency,
    ];

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lowercase name for reports and metric labels (`bytes_out`).
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Requests => "requests",
            Quantity::BytesOut => "bytes_out",
            Quantity::BackendSeconds => "backend_seconds",
            Quantity::Concurrency => "concurrency",
        }
    }

    /// A bucket's value of this quantity as a per-second figure: the
    /// first three are totals per bucket (divided by `bucket_s`),
    /// concurrency is already a level. `bucket_s` below 1 ms reads as 1 ms.
    pub fn per_second(self, value: f64, bucket_s: f64) -> f64 {
        match self {
            Quantity::Concurrency => value,
            _ => value / bucket_s.max(1e-3),
        }
    }
}

/// What a user's activity window shows, per second; all 0 without
/// activity. Never negative or NaN.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ActivityRates {
    /// Responses per second.
    pub responses_per_s: f64,
    /// Response bytes per second.
    pub bytes_out_per_s: f64,
    /// Summed response latency, seconds per second.
    pub busy_s_per_s: f64,
}

/// Shortest span (ms) a rate is divided by, so that a user seen for a few
/// milliseconds does not read as a huge rate.
const MIN_RATE_SPAN_MS: u64 = 1_000;

impl ActivityRates {
    /// Reads `windows`' activity window at `now_ms`: its sums over the
    /// time it covers, or since the user was first seen when that is
    /// shorter (at least 1 s). A clock behind the user's first sighting
    /// reads over 1 s.
    pub fn read(windows: &UserWindows, now_ms: u64) -> Self {
        let Some(first_ms) = windows.sessions().first_seen_ms() else {
            return Self::default();
        };
        let totals = windows.activity(now_ms);
        let covered = activity_covered_ms(windows, now_ms);
        let span_ms = covered
            .min(now_ms.saturating_sub(first_ms))
            .max(MIN_RATE_SPAN_MS);
        let per_s = |x: f64| x * 1_000.0 / span_ms as f64;
        Self {
            responses_per_s: per_s(totals.responses as f64),
            bytes_out_per_s: per_s(totals.bytes_out as f64),
            busy_s_per_s: per_s(totals.latency_us as f64 / 1e6),
        }
    }

    /// Mean latency per response in seconds, `None` without responses.
    pub fn latency_s_per_response(&self) -> Option<f64> {
        (self.responses_per_s > 0.0).then(|| self.busy_s_per_s / self.responses_per_s)
    }
}

/// The time (ms) `windows`' activity window covers at `now_ms`: its shape
/// is derived from the request window's as [`UserShape`] does.
///
/// [`UserShape`]: crate::UserShape
fn activity_covered_ms(windows: &UserWindows, now_ms: u64) -> u64 {
    let span = windows.requests().shape().span_ms();
    let bucket_ms = span.div_ceil(u64::from(ACTIVITY_BUCKETS));
    WindowShape::new(bucket_ms, ACTIVITY_BUCKETS).map_or(span, |shape| shape.covered_ms(now_ms))
}

/// Sums over the users of one series during one bucket, turned into a
/// [`QuantitySample`] at the end.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QuantityTotals {
    /// Arrivals in the bucket.
    pub requests: f64,
    /// Summed activity rates of the users.
    pub rates: ActivityRates,
}

impl QuantityTotals {
    /// Adds one user: `requests` arrivals in the bucket and their window's
    /// `rates`. Non-finite or negative parts are skipped.
    pub fn add(&mut self, requests: f64, rates: &ActivityRates) {
        let ok = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        self.requests += ok(requests);
        self.rates.responses_per_s += ok(rates.responses_per_s);
        self.rates.bytes_out_per_s += ok(rates.bytes_out_per_s);
        self.rates.busy_s_per_s += ok(rates.busy_s_per_s);
    }

    /// The bucket's values for a bucket of `bucket_s` seconds (see the
    /// module docs). Without responses in the windows, concurrency is 0.
    pub fn sample(&self, bucket_s: f64) -> QuantitySample {
        let bucket_s = bucket_s.max(1e-3);
        let latency = self.rates.latency_s_per_response().unwrap_or(0.0);
        QuantitySample {
            values: [
                self.requests,
                self.rates.bytes_out_per_s * bucket_s,
                self.rates.busy_s_per_s * bucket_s,
                self.requests / bucket_s * latency,
            ],
        }
    }
}

/// One bucket's value of every quantity, in series units: requests,
/// bytes and busy seconds in the bucket, mean requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QuantitySample {
    /// Indexed by [`Quantity::index`].
    pub values: [f64; 4],
}

impl QuantitySample {
    /// The value of `q`.
    pub fn get(&self, q: Quantity) -> f64 {
        self.values[q.index()]
    }
}

/// A forecaster per quantity over one series, with accuracy scores per
/// quantity and horizon; see the module docs.
#[derive(Debug)]
pub struct QuantityForecaster {
    forecasters: Vec<DemandForecaster>,
    trackers: Vec<AccuracyTracker>,
    /// Buckets observed so far, per quantity.
    observed: [u64; 4],
    horizons: Vec<u32>,
}

impl QuantityForecaster {
    /// Forecasters of seasons `season` at `horizons` (buckets), keeping
    /// scores with a half-life of `score_half_life` scored forecasts
    /// (`None`: cumulative).
    ///
    /// # Errors
    /// As [`DemandForecaster::new`].
    pub fn new(
        season: Seasonality,
        horizons: &[u32],
        score_half_life: Option<f64>,
    ) -> Result<Self, ForecastError> {
        let forecasters = Quantity::ALL
            .iter()
            .map(|_| DemandForecaster::new(season, horizons))
            .collect::<Result<Vec<_>, _>>()?;
        let trackers = Quantity::ALL
            .iter()
            .map(|_| AccuracyTracker::new(1, horizons, score_half_life))
            .collect();
        Ok(Self {
            forecasters,
            trackers,
            observed: [0; 4],
            horizons: horizons.to_vec(),
        })
    }

    /// Observes the next bucket of `q` (non-finite or negative reads as 0),
    /// scores the forecasts issued for it, and issues the new ones, each
    /// scaled by `multiplier(horizon)` (declared events; non-finite or
    /// negative multipliers read as 1).
    pub fn observe(&mut self, q: Quantity, value: f64, multiplier: impl Fn(u32) -> f64) {
        let i = q.index();
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let index = self.observed[i];
        self.forecasters[i].observe(value);
        self.trackers[i].observe(index, value);
        self.observed[i] = index + 1;
        for &h in &self.horizons {
            let m = match multiplier(h) {
                m if m.is_finite() && m >= 0.0 => m,
                _ => 1.0,
            };
            let f = self.forecasters[i].forecast(h);
            let issued = Forecast::new(f.median * m, f.p90 * m);
            self.trackers[i].issue(0, h, index + u64::from(h), issued);
        }
    }

    /// Observes every quantity of `sample`; see [`Self::observe`].
    pub fn observe_all(&mut self, sample: &QuantitySample, multiplier: impl Fn(u32) -> f64) {
        for q in Quantity::ALL {
            self.observe(q, sample.get(q), &multiplier);
        }
    }

    /// The forecast of `q` `horizon` buckets ahead, in series units
    /// (zeros before any observation).
    pub fn forecast(&self, q: Quantity, horizon: u32) -> Forecast {
        self.forecasters[q.index()].forecast(horizon)
    }

    /// The forecaster of `q` (for its weights, best model, multipliers).
    pub fn forecaster(&self, q: Quantity) -> &DemandForecaster {
        &self.forecasters[q.index()]
    }

    /// The best member of `q` at `horizon`, once scored.
    pub fn best(&self, q: Quantity, horizon: u32) -> Option<ModelKind> {
        self.forecasters[q.index()].best(horizon)
    }

    /// The accuracy of `q`'s issued forecasts at `horizon` (all NaN with 0
    /// points before the first is scored).
    pub fn scores(&self, q: Quantity, horizon: u32) -> Scores {
        self.trackers[q.index()].scores(0, horizon)
    }

    /// Buckets of `q` observed so far.
    pub fn observed(&self, q: Quantity) -> u64 {
        self.observed[q.index()]
    }

    /// The horizons (buckets), as given.
    pub fn horizons(&self) -> &[u32] {
        &self.horizons
    }
}

#[cfg(test)]
#[path = "quantity/tests.rs"]
mod tests;
