//! One user's forecasts of bytes out, backend time and concurrency, read
//! on demand (the profile API), never per request.
//!
//! A user's request count already has a calibrated forecast (median and
//! p90 from [`CountCalibration`](super::CountCalibration)). The other
//! quantities are that count times what one of the user's requests costs,
//! times how differently from requests the quantity is expected to move:
//! - the *size* of a request in each quantity: its ratio to responses in
//!   the user's activity window (the last minute by default), or, for a
//!   user without responses there, the user's smoothed level of the
//!   quantity over their smoothed request level (both with the same
//!   half-life, kept in [`UserForecastState`]);
//! - the *shape*: the quantity's demand multiplier at the horizon over the
//!   requests' one, both from the forecasters of the series the context
//!   was built from (the aggregate, or a cohort), so that a service whose
//!   bytes peak later than its requests moves the user's bytes that way.
//!
//! Concurrency is the request rate times the latency per request (Little's
//! law), so for one user it equals backend time in busy seconds per second
//! up to the shape; the aggregate and cohort series forecast them apart.
//!
//! Approximations: the p90 of a quantity is the count's p90 times the mean
//! size, so it leaves out the spread of sizes between requests; a user
//! whose requests vary a lot in size is covered less than 90 % of the
//! time. The aggregate and cohort p90s are calibrated on their own
//! residuals and scored per quantity.

use super::{fill, recent_rps, UserForecastContext, UserForecastState, UserHorizonForecast};
use crate::forecast::quantity::{ActivityRates, Quantity};
use crate::forecast::Forecast;
use crate::user::UserWindows;

/// One user's forecasts at one horizon, per quantity, in per-second units
/// (requests per second, bytes per second, busy seconds per second, mean
/// requests in flight).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserQuantityForecast {
    /// How far ahead (ms).
    pub horizon_ms: u64,
    /// Median and p90, indexed by [`Quantity::index`].
    pub per_second: [Forecast; 4],
}

impl UserQuantityForecast {
    /// The forecast of `q`.
    pub fn get(&self, q: Quantity) -> Forecast {
        self.per_second[q.index()]
    }
}

/// Writes the user's forecast of every quantity at each of `ctx`'s
/// horizons into `out` (extra slots are left alone) from the state the
/// latest tick kept, without updating it. `None` before the first tick
/// that saw the user.
pub fn peek_user_quantities(
    windows: &UserWindows,
    state: &UserForecastState,
    now_ms: u64,
    ctx: &UserForecastContext,
    out: &mut [UserQuantityForecast],
) -> Option<()> {
    let level = state.level_rps()?;
    let (bytes_level, busy_level) = state.activity_levels()?;
    let recent = recent_rps(windows, now_ms).unwrap_or(level);
    let mut counts = vec![UserHorizonForecast::default(); ctx.horizons_ms().len()];
    fill(ctx, recent, level, &mut counts);

    // What one request costs, in bytes and busy seconds.
    let rates = ActivityRates::read(windows, now_ms);
    let bytes_per_request = size(bytes_level, level, rates.bytes_out_per_s, &rates);
    let busy_per_request = size(busy_level, level, rates.busy_s_per_s, &rates);

    let bucket_s = ctx.count_bucket_ms() as f64 / 1_000.0;
    for (i, (slot, count)) in out.iter_mut().zip(&counts).enumerate() {
        let requests = ctx.quantity_multiplier(Quantity::Requests, i);
        let shape = |q: Quantity| {
            if requests > 0.0 {
                ctx.quantity_multiplier(q, i) / requests
            } else {
                1.0
            }
        };
        let rps = Forecast::new(count.count.median / bucket_s, count.count.p90 / bucket_s);
        let scaled =
            |per_request: f64| Forecast::new(rps.median * per_request, rps.p90 * per_request);
        *slot = UserQuantityForecast {
            horizon_ms: ctx.horizons_ms()[i],
            per_second: [
                rps,
                scaled(bytes_per_request * shape(Quantity::BytesOut)),
                scaled(busy_per_request * shape(Quantity::BackendSeconds)),
                scaled(busy_per_request * shape(Quantity::Concurrency)),
            ],
        };
    }
    Some(())
}

/// Per-request size of a quantity: its window rate over the window's
/// response rate, or its level over the request level, or 0. Never
/// negative or NaN.
fn size(level: f64, level_rps: f64, rate: f64, rates: &ActivityRates) -> f64 {
    let ratio = if rates.responses_per_s > 0.0 {
        rate / rates.responses_per_s
    } else if level_rps > 1e-9 && level > 0.0 {
        level / level_rps
    } else {
        0.0
    };
    if ratio.is_finite() {
        ratio.max(0.0)
    } else {
        0.0
    }
}
