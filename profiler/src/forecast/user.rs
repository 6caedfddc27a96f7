//! Per-user forecasts within the proxy's memory budget.
//!
//! A tracked user already costs about 890 bytes (their windows), and there
//! may be 100 000 of them, so a user cannot have a forecaster of their own
//! (a [`DemandForecaster`] keeps a week of history). Most users are also
//! far too sparse for one: a few requests an hour have no visible daily
//! shape. A user's forecast is therefore built
//! from shared parts and little state:
//! - the user's *recent rate*, read from the request window the proxy
//!   already keeps ([`UserWindows::requests`], the last minute by default);
//! - the user's *level*, a rate smoothed over about half an hour, kept in
//!   [`UserForecastState`] (16 bytes with the previous forecast and the
//!   request total it was updated from), and the levels of bytes out and
//!   backend time (8 more bytes, 24 in all), for [`peek_user_quantities`];
//! - a *demand multiplier* per horizon, shared by a cohort, from its
//!   forecaster ([`demand_multipliers`]): how much busier the service will
//!   be at the horizon than in the next bucket;
//! - a *ceiling* per horizon, the same forecaster's p90 rate
//!   ([`UserForecastContext::set_ceilings_rps`]): no user is forecast
//!   above the traffic they are part of;
//! - the *spread* of counts around a forecast, shared, learned from every
//!   user's previous forecast and what followed ([`CountCalibration`]).
//!
//! Per horizon the forecast rate is `multiplier * (w * recent + (1 - w) *
//! level)`, with `w` falling from 0.5 a minute ahead towards 0 an hour
//! ahead (the recent minute says little about the next hour). The median
//! and p90 of the count in a bucket are the calibration's for that mean,
//! or the Poisson ones (tabulated once with statrs) until the calibration
//! has data there. A user's forecast is a pass over the window plus a few
//! table reads, so one tick over 100 000 users stays well under a second
//! of one core.
//!
//! Approximations, with numbers: the Poisson table has 32 points per decade
//! of the mean (a quantile may be that of a mean 3.7 % off); the level is
//! updated from the user's request total, so requests recorded between two
//! ticks count towards the later tick; the calibration pairs the first
//! horizon's forecast with the requests of the next tick, which is exact
//! when ticks come every `count_bucket_ms` and the first horizon is one
//! bucket, as in `headroom eval`.

mod calibration;
mod quantities;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use calibration::{CountCalibration, CountQuantiles};
pub use quantities::{peek_user_quantities, UserQuantityForecast};

use super::quantity::{ActivityRates, Quantity};
use super::{poisson_quantile, DemandForecaster, Forecast, Forecaster};
use crate::user::UserWindows;

/// Half-life of a user's level, in milliseconds: 30 minutes.
pub const LEVEL_HALF_LIFE_MS: f64 = 30.0 * 60_000.0;

/// Idle time assumed before a user's first sighting, in milliseconds: one
/// level half-life (30 minutes). A young user's level is their request
/// count over their age plus this, so a one-off burst counts as spread over
/// half an hour. A one-minute prior made steady users' levels converge in
/// minutes but raised the per-user RMSE on the World Cup sample from 1.31
/// to 1.76 a minute ahead (`headroom eval`), so the known cost is kept: a
/// new steady user is forecast at about half their rate at first and
/// reaches 80 % of it after about 20 minutes.
pub const LEVEL_PRIOR_MS: f64 = LEVEL_HALF_LIFE_MS;

/// Horizon (ms) over which the recent rate's weight decays by `e`.
const RECENT_DECAY_MS: f64 = 5.0 * 60_000.0;

/// Weight of the recent rate at horizon 0.
const RECENT_WEIGHT_AT_ZERO: f64 = 0.5;

/// Bit of the total word marking a state updated at least once.
const INITIALISED: u32 = 1 << 31;

/// The bits of the stored request total (it wraps at 2^31).
const TOTAL_MASK: u32 = INITIALISED - 1;

/// The per-user state of the forecast: the smoothed level, the previous
/// tick's first-horizon forecast (both rates as `f32`), the request total
/// they were computed from, and the smoothed levels of bytes out and
/// backend time. 24 bytes with alignment; updated with relaxed atomics by
/// the one tick that owns it, so it can live in an entry shared with the
/// hot path.
#[derive(Debug, Default)]
pub struct UserForecastState {
    /// Level rps (high half) and previous forecast rps (low half).
    rates: AtomicU64,
    /// Bytes out per second (high half) and busy seconds per second (low
    /// half), smoothed like the request level.
    levels: AtomicU64,
    /// Request total (low 31 bits) and [`INITIALISED`].
    total: AtomicU32,
}

impl UserForecastState {
    /// The smoothed level in requests per second; `None` before the first
    /// tick that saw this user.
    pub fn level_rps(&self) -> Option<f64> {
        self.load().map(|(level, _, _)| level)
    }

    /// The forecast rate one horizon ahead from the latest tick, in requests
    /// per second (what `x-headroom-forecast-rps` carries); `None` before
    /// the first tick that saw this user.
    pub fn forecast_rps(&self) -> Option<f64> {
        self.load().map(|(_, forecast, _)| forecast)
    }

    /// The smoothed levels of bytes out (bytes per second) and backend
    /// time (busy seconds per second); `None` before the first tick that
    /// saw this user.
    pub fn activity_levels(&self) -> Option<(f64, f64)> {
        self.load()?;
        let levels = self.levels.load(Ordering::Relaxed);
        Some((
            f64::from(f32::from_bits((levels >> 32) as u32)),
            f64::from(f32::from_bits(levels as u32)),
        ))
    }

    /// Stores the levels of bytes out and backend time (per second).
    fn store_levels(&self, bytes_out_per_s: f64, busy_s_per_s: f64) {
        let levels = (u64::from((bytes_out_per_s as f32).to_bits()) << 32)
            | u64::from((busy_s_per_s as f32).to_bits());
        self.levels.store(levels, Ordering::Relaxed);
    }

    /// Level, previous forecast and last total, if initialised.
    fn load(&self) -> Option<(f64, f64, u32)> {
        let total = self.total.load(Ordering::Relaxed);
        if total & INITIALISED == 0 {
            return None;
        }
        let rates = self.rates.load(Ordering::Relaxed);
        let level = f64::from(f32::from_bits((rates >> 32) as u32));
        let forecast = f64::from(f32::from_bits(rates as u32));
        Some((level, forecast, total & TOTAL_MASK))
    }

    /// Stores a level and first-horizon forecast (rps) and a request total.
    fn store(&self, level_rps: f64, forecast_rps: f64, total: u64) {
        let rates = (u64::from((level_rps as f32).to_bits()) << 32)
            | u64::from((forecast_rps as f32).to_bits());
        self.rates.store(rates, Ordering::Relaxed);
        self.total
            .store((total as u32 & TOTAL_MASK) | INITIALISED, Ordering::Relaxed);
    }
}

/// The median and p90 of Poisson counts on a log-spaced grid of means.
#[derive(Debug, Clone)]
struct PoissonTable {
    /// `(median, p90)` at means `10^(MIN_EXP + i / PER_DECADE)`.
    quantiles: Vec<(f32, f32)>,
}

/// Grid points per decade of the mean.
const PER_DECADE: f64 = 32.0;
/// Smallest tabulated mean: `10^-3` (below it both quantiles are 0).
const MIN_EXP: f64 = -3.0;
/// Largest tabulated mean: `10^4` (above it, the normal approximation).
const MAX_EXP: f64 = 4.0;

impl PoissonTable {
    /// Tabulates the quantiles (statrs' Poisson CDF, via [`poisson_quantile`]).
    fn new() -> Self {
        let points = ((MAX_EXP - MIN_EXP) * PER_DECADE) as usize + 1;
        let quantiles = (0..points)
            .map(|i| {
                let mean = 10f64.powf(MIN_EXP + i as f64 / PER_DECADE);
                (
                    poisson_quantile(mean, 0.5) as f32,
                    poisson_quantile(mean, 0.9) as f32,
                )
            })
            .collect();
        Self { quantiles }
    }

    /// `(median, p90)` of a Poisson count with mean `mean`.
    fn lookup(&self, mean: f64) -> (f64, f64) {
        if !(mean.is_finite() && mean > 0.0) {
            return (0.0, 0.0);
        }
        let position = ((mean.log10() - MIN_EXP) * PER_DECADE).round();
        if position < 0.0 {
            return (0.0, 0.0);
        }
        match self.quantiles.get(position as usize) {
            Some(&(median, p90)) => (f64::from(median), f64::from(p90)),
            None => (mean, mean + 1.281_551_6 * mean.sqrt()),
        }
    }
}

/// What one user's forecast says about one horizon.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserHorizonForecast {
    /// Expected request rate at the horizon, requests per second.
    pub rps: f64,
    /// Median and p90 of the request count in one bucket of the
    /// context's `count_bucket_ms` at the horizon.
    pub count: Forecast,
}

/// What a tick learned from one user, for [`CountCalibration::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserTick {
    /// Requests since the previous tick.
    pub observed: f64,
    /// Requests the previous tick's first-horizon forecast expected over
    /// the same time; `None` for a user seen for the first time.
    pub expected: Option<f64>,
    /// The user's activity window as read by the tick, for the series of
    /// bytes, backend time and concurrency ([`super::quantity`]).
    pub rates: ActivityRates,
}

/// Everything shared by the users of one cohort during one tick.
#[derive(Debug, Clone)]
pub struct UserForecastContext {
    horizons_ms: Vec<u64>,
    multipliers: Vec<f64>,
    /// Per horizon, the demand multiplier of each [`Quantity`] (the
    /// requests slot mirrors `multipliers`).
    quantity_multipliers: Vec<[f64; 4]>,
    recent_weights: Vec<f64>,
    /// Per horizon, the highest rate a user may be forecast (rps): the
    /// aggregate's p90 there. Infinite until set.
    ceilings_rps: Vec<f64>,
    count_bucket_ms: u64,
    elapsed_ms: u64,
    spread: CountQuantiles,
    poisson: PoissonTable,
}

impl UserForecastContext {
    /// A context forecasting `horizons_ms` ahead (ms; the first should be
    /// the tick interval, see the module docs), with counts per bucket of
    /// `count_bucket_ms` (at least 1), multipliers of 1, Poisson spread
    /// and a tick interval of one bucket.
    pub fn new(horizons_ms: &[u64], count_bucket_ms: u64) -> Self {
        let recent_weights = horizons_ms
            .iter()
            .map(|&h| RECENT_WEIGHT_AT_ZERO * (-(h as f64) / RECENT_DECAY_MS).exp())
            .collect();
        Self {
            horizons_ms: horizons_ms.to_vec(),
            multipliers: vec![1.0; horizons_ms.len()],
            quantity_multipliers: vec![[1.0; 4]; horizons_ms.len()],
            recent_weights,
            ceilings_rps: vec![f64::INFINITY; horizons_ms.len()],
            count_bucket_ms: count_bucket_ms.max(1),
            elapsed_ms: count_bucket_ms.max(1),
            spread: CountQuantiles::default(),
            poisson: PoissonTable::new(),
        }
    }

    /// The horizons (ms), in the order of the forecasts written.
    pub fn horizons_ms(&self) -> &[u64] {
        &self.horizons_ms
    }

    /// Sets the demand multiplier of each horizon (see
    /// [`demand_multipliers`]); missing, non-finite or negative ones read
    /// as 1.
    pub fn set_multipliers(&mut self, multipliers: &[f64]) {
        for (i, slot) in self.multipliers.iter_mut().enumerate() {
            *slot = match multipliers.get(i) {
                Some(&m) if m.is_finite() && m >= 0.0 => m,
                _ => 1.0,
            };
            self.quantity_multipliers[i][Quantity::Requests.index()] = *slot;
        }
    }

    /// Sets the demand multiplier of `q` at each horizon, as
    /// [`Self::set_multipliers`] does for requests (which this also sets
    /// when `q` is [`Quantity::Requests`]).
    pub fn set_quantity_multipliers(&mut self, q: Quantity, multipliers: &[f64]) {
        if q == Quantity::Requests {
            self.set_multipliers(multipliers);
            return;
        }
        for (i, slot) in self.quantity_multipliers.iter_mut().enumerate() {
            slot[q.index()] = match multipliers.get(i) {
                Some(&m) if m.is_finite() && m >= 0.0 => m,
                _ => 1.0,
            };
        }
    }

    /// The multiplier of `q` at the `i`-th horizon (1 when out of range).
    pub fn quantity_multiplier(&self, q: Quantity, i: usize) -> f64 {
        self.quantity_multipliers
            .get(i)
            .map_or(1.0, |m| m[q.index()])
    }

    /// Sets the highest rate (rps) a user may be forecast at each horizon:
    /// the p90 of the series the multipliers come from (the aggregate, or a
    /// cohort), so that no user is forecast above the traffic they are part
    /// of. Missing, non-finite or negative ones read as no ceiling.
    pub fn set_ceilings_rps(&mut self, ceilings: &[f64]) {
        for (i, slot) in self.ceilings_rps.iter_mut().enumerate() {
            *slot = match ceilings.get(i) {
                Some(&c) if c.is_finite() && c >= 0.0 => c,
                _ => f64::INFINITY,
            };
        }
    }

    /// The length of the count buckets (ms).
    pub fn count_bucket_ms(&self) -> u64 {
        self.count_bucket_ms
    }

    /// Sets the time since the previous tick (ms, at least 1), over which
    /// each user's level is updated.
    pub fn set_elapsed_ms(&mut self, elapsed_ms: u64) {
        self.elapsed_ms = elapsed_ms.max(1);
    }

    /// Sets the learned spread of counts (from
    /// [`CountCalibration::quantiles`]).
    pub fn set_spread(&mut self, spread: CountQuantiles) {
        self.spread = spread;
    }

    /// Median and p90 of the count in a bucket whose forecast mean is
    /// `mean`: learned where possible, Poisson otherwise.
    fn count_quantiles(&self, mean: f64) -> Forecast {
        let (median, p90) = self
            .spread
            .lookup(mean)
            .unwrap_or_else(|| self.poisson.lookup(mean));
        Forecast::new(median, p90)
    }
}

/// How much busier than the next bucket the forecaster expects the series
/// to be at each horizon (buckets): its median forecast there over its
/// median forecast one bucket ahead, clamped to `[0.1, 10]`; 1 at horizon
/// 1, and all 1 while the one-bucket forecast is not positive.
///
/// The reference is the forecaster's own near-term forecast, not a
/// smoothed past level: a user's base rate already follows their recent
/// traffic, so dividing by a level that lags it (a 10-minute EWMA after a
/// ramp from idle) counted the ramp twice and scaled every user by up to
/// the clamp, above the aggregate itself (acceptance defect D1).
pub fn demand_multipliers(forecaster: &DemandForecaster, horizons: &[u32]) -> Vec<f64> {
    let now = forecaster.forecast(1).median;
    horizons
        .iter()
        .map(|&h| {
            if now > 0.0 {
                (forecaster.forecast(h).median / now).clamp(0.1, 10.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// The weight the level keeps over a tick of `elapsed_ms` that ends
/// `age_ms` after the user was first seen: the smaller of the half-life
/// decay and the running-mean weight `(age - elapsed + prior) / (age +
/// prior)`. Young users thus get the mean rate since first sight, counted
/// as if they had been idle for [`LEVEL_PRIOR_MS`] before it; users older
/// than about 40 minutes the plain half-life decay.
fn level_keep(elapsed_ms: u64, age_ms: u64) -> f64 {
    let decay = 0.5_f64.powf(elapsed_ms as f64 / LEVEL_HALF_LIFE_MS);
    let span = age_ms as f64 + LEVEL_PRIOR_MS;
    let mean = (span - elapsed_ms as f64).max(0.0) / span;
    decay.min(mean)
}

/// Updates one user's level from their request total and writes their
/// forecast for each of the context's horizons into `out` (extra slots are
/// left alone; missing ones are skipped). Returns what the tick saw, for
/// [`CountCalibration::observe`].
///
/// Call once per tick per user, with the tick's `now_ms`. The recent rate
/// is the mean over the window's completed buckets since the user was
/// first seen; a user first seen within the current bucket has no recent
/// rate and is forecast from their level alone.
pub fn forecast_user(
    windows: &UserWindows,
    state: &UserForecastState,
    now_ms: u64,
    ctx: &UserForecastContext,
    out: &mut [UserHorizonForecast],
) -> UserTick {
    let recent = recent_rps(windows, now_ms);
    let rates = ActivityRates::read(windows, now_ms);

    // The level moves towards the rate since the previous tick: a running
    // mean while the user is young, then a half-life decay.
    let total = windows.requests_total();
    let elapsed_s = ctx.elapsed_ms as f64 / 1_000.0;
    let age_ms = windows
        .sessions()
        .first_seen_ms()
        .map_or(0, |first| now_ms.saturating_sub(first));
    let (level, tick) = match state.load() {
        Some((level, forecast, last)) => {
            // Totals wrap at 2^31; the difference modulo 2^31 is exact.
            let observed = f64::from((total as u32).wrapping_sub(last) & TOTAL_MASK);
            let tick = UserTick {
                observed,
                expected: Some(forecast * elapsed_s),
                rates,
            };
            let keep = level_keep(ctx.elapsed_ms, age_ms);
            (keep * level + (1.0 - keep) * observed / elapsed_s, tick)
        }
        None => {
            // First sight: the requests so far over the time since the user
            // was first seen plus the idle prior. Most new users are one-off
            // visitors, and a first burst read as a steady rate
            // over-forecasts them by the burst's size (ten times on the
            // Elastic log); the prior keeps a burst at a fraction of that.
            let tick = UserTick {
                observed: total as f64,
                expected: None,
                rates,
            };
            let span_s = (age_ms as f64 + LEVEL_PRIOR_MS) / 1_000.0;
            (total as f64 / span_s, tick)
        }
    };
    let keep = level_keep(ctx.elapsed_ms, age_ms);

    let first_rps = fill(ctx, recent.unwrap_or(level), level, out);
    // Bytes and backend levels follow their window rates with the same
    // half-life, from zero at first sight like the request level, so that
    // their ratios to it are per-request sizes.
    let (bytes, busy) = state.activity_levels().unwrap_or((0.0, 0.0));
    let (bytes, busy) = (
        keep * bytes + (1.0 - keep) * rates.bytes_out_per_s,
        keep * busy + (1.0 - keep) * rates.busy_s_per_s,
    );
    state.store(level, first_rps, total);
    state.store_levels(bytes, busy);
    tick
}

/// The user's forecasts at `ctx`'s horizons from the level kept by the
/// latest tick, without updating anything: for reading a profile between
/// ticks. `None` before the first tick that saw the user.
pub fn peek_user(
    windows: &UserWindows,
    state: &UserForecastState,
    now_ms: u64,
    ctx: &UserForecastContext,
    out: &mut [UserHorizonForecast],
) -> Option<()> {
    let level = state.level_rps()?;
    let recent = recent_rps(windows, now_ms).unwrap_or(level);
    fill(ctx, recent, level, out);
    Some(())
}

/// Fills `out` per horizon from the recent rate and the level; returns the
/// first horizon's rate.
fn fill(
    ctx: &UserForecastContext,
    recent: f64,
    level: f64,
    out: &mut [UserHorizonForecast],
) -> f64 {
    let bucket_s = ctx.count_bucket_ms as f64 / 1_000.0;
    let mut first_rps = level;
    for (i, slot) in out.iter_mut().enumerate().take(ctx.horizons_ms.len()) {
        let w = ctx.recent_weights[i];
        let rps = (ctx.multipliers[i] * (w * recent + (1.0 - w) * level)).min(ctx.ceilings_rps[i]);
        if i == 0 {
            first_rps = rps;
        }
        *slot = UserHorizonForecast {
            rps,
            count: ctx.count_quantiles(rps * bucket_s),
        };
    }
    first_rps
}

/// Mean rate over the completed buckets of the request window since the
/// user was first seen; `None` when there is none yet.
fn recent_rps(windows: &UserWindows, now_ms: u64) -> Option<f64> {
    let shape = windows.requests().shape();
    let first_ms = windows.sessions().first_seen_ms()?;
    let now_period = shape.period(now_ms);
    let seen = now_period.saturating_sub(shape.period(first_ms));
    let usable = seen.min(u64::from(shape.buckets()) - 1);
    if usable == 0 {
        return None;
    }
    let sum: u64 = (1..=usable)
        .map(|age| windows.requests().count_in(now_period - age))
        .sum();
    Some(sum as f64 * 1_000.0 / (usable * shape.bucket_ms()) as f64)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tick_scale_tests;
