//! Plain, serializable parts of the [`Insights`](super::Insights) snapshot
//! that are not the profiler's own types: live per-cohort figures, and the
//! forecast slots the forecaster fills.

use headroom_profiler::forecast::{Forecast, Quantity};
use headroom_profiler::CohortId;
use serde::Serialize;

/// What a cohort's members are doing at one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CohortLive {
    /// Tracked users currently assigned to it.
    pub users: usize,
    /// Sum of their smoothed request rates, requests per second.
    pub smoothed_rps: f64,
    /// Mean of their latency-sensitivity scores (`[0, 1]`), `None` without
    /// members.
    pub mean_latency_sensitivity: Option<f64>,
}

/// Median and 90th percentile of one forecast quantity (`p90 >= median`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Band {
    /// The central forecast.
    pub median: f64,
    /// The value not exceeded with probability 0.9.
    pub p90: f64,
}

impl From<Forecast> for Band {
    fn from(f: Forecast) -> Self {
        Self {
            median: f.median,
            p90: f.p90,
        }
    }
}

/// The four forecast quantities at one horizon, per second (see
/// [`headroom_profiler::forecast::quantity`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct QuantityBands {
    /// Arrivals, requests per second.
    pub requests_per_second: Band,
    /// Response bytes per second.
    pub bytes_out_per_second: Band,
    /// Summed response latency, busy seconds per second (measured from
    /// arrival to the end of the response).
    pub backend_seconds_per_second: Band,
    /// Mean requests in flight (Little's law).
    pub concurrency: Band,
}

impl QuantityBands {
    /// The bands of `per_second(q)` for every quantity.
    pub fn from_fn(per_second: impl Fn(Quantity) -> Forecast) -> Self {
        Self {
            requests_per_second: per_second(Quantity::Requests).into(),
            bytes_out_per_second: per_second(Quantity::BytesOut).into(),
            backend_seconds_per_second: per_second(Quantity::BackendSeconds).into(),
            concurrency: per_second(Quantity::Concurrency).into(),
        }
    }
}

/// One horizon of a demand forecast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HorizonForecastView {
    /// How far ahead, in seconds.
    pub horizon_s: u64,
    /// Median forecast, requests per second (as `requests_per_second`).
    pub median_rps: f64,
    /// 90th-percentile forecast, requests per second (at least the median).
    pub p90_rps: f64,
    /// Every quantity's median and p90, flattened into this object.
    #[serde(flatten)]
    pub quantities: QuantityBands,
}

/// A demand forecast as the admin API shows it; filled by the forecaster
/// through [`InsightsHub::publish_forecast`](super::InsightsHub::publish_forecast).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastView {
    /// When it was computed (ms, the profiler clock).
    pub computed_at_ms: u64,
    /// The model (or ensemble) that produced it, lowercase.
    pub model: String,
    /// True when recent accuracy was worse than naive and decisions use the
    /// current rate instead.
    pub fallback_to_current_rate: bool,
    /// Why the forecast is or is not used, in a few words.
    pub reason: String,
    /// One entry per horizon, shortest first.
    pub horizons: Vec<HorizonForecastView>,
}

/// One cohort's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortForecastView {
    /// The cohort.
    pub cohort: CohortId,
    /// Its forecast.
    pub forecast: ForecastView,
}
