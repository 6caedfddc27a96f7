//! The per-user evaluation: every client of a log becomes a user of the
//! profiler's real [`UserTable`], and each tick forecasts them with
//! [`forecast_user`], exactly as the proxy's background tick would.
//!
//! Simulated time runs bucket by bucket. At the start of bucket `t` (all
//! requests before it recorded, none after) the tick evicts idle users,
//! refreshes the shared demand multipliers from the global forecaster and
//! forecasts every tracked user; at an origin, users with enough history
//! (at least [`MIN_REQUESTS`] requests so far) have their forecasts kept
//! for scoring, together with the per-user naive forecast (their count in
//! bucket `t - 1`). Then bucket `t`'s requests are recorded and the global
//! forecaster observes its total.
//!
//! Only users still in the table are scored: the proxy forecasts tracked
//! users, and a user idle for longer than the table's idle timeout (10
//! minutes) has been evicted, so quiet stretches are not scored as easy
//! zeros.

use std::collections::HashMap;
use std::sync::Arc;

use headroom_profiler::forecast::user::{
    demand_multipliers, forecast_user, CountCalibration, UserForecastContext, UserForecastState,
    UserHorizonForecast,
};
use headroom_profiler::forecast::{DemandForecaster, Forecast, Forecaster};
use headroom_profiler::{TableConfig, UserTable};

use super::series::{BucketSeries, Protocol};
use super::EvalError;
use crate::trace::{mix64, RequestTrace};

/// Requests a user must have made before an origin to be scored there.
pub const MIN_REQUESTS: u64 = 10;

/// Half-life of the shared count calibration, in ticks: a day of 60 s
/// buckets.
const CALIBRATION_HALF_LIFE_TICKS: f64 = 1_440.0;

/// Scores of one horizon over the scored users.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserHorizonScores {
    /// The horizon in buckets.
    pub horizon: u32,
    /// Forecasts scored (user and origin pairs).
    pub points: u64,
    /// Mean absolute error of the model's median.
    pub model_mae: f64,
    /// sMAPE of the model's median, percent.
    pub model_smape: f64,
    /// Pinball loss of the model's p90 at 0.9.
    pub model_pinball_p90: f64,
    /// Share of actual counts at or below the model's p90.
    pub model_coverage_p90: f64,
    /// Root mean squared error of the model's mean (its rate times the
    /// bucket): how good the rate the proxy advertises is.
    pub model_rmse: f64,
    /// Mean absolute error of the user's last bucket as the forecast.
    pub naive_mae: f64,
    /// sMAPE of the per-user naive forecast, percent.
    pub naive_smape: f64,
    /// Root mean squared error of the per-user naive forecast.
    pub naive_rmse: f64,
    /// Mean absolute error of forecasting no requests at all: sparse users
    /// are mostly idle, so this is the bar a median must clear to be more
    /// than "nothing".
    pub zero_mae: f64,
}

/// What the per-user run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct UsersRun {
    /// Distinct users scored at least once.
    pub users_scored: usize,
    /// Clients in the trace.
    pub clients: usize,
    /// Scores per protocol horizon.
    pub horizons: Vec<UserHorizonScores>,
}

/// One kept per-user forecast.
struct Issued {
    client: u32,
    target: u64,
    horizon: usize,
    forecast: Forecast,
    /// The forecast mean count (the rate times the bucket).
    mean: f64,
    naive: f64,
}

/// Runs the per-user protocol over `trace`, whose totals per bucket are
/// `series`.
///
/// # Errors
/// [`EvalError::Forecast`] or [`EvalError::Table`] when the forecaster or
/// the user table cannot be built.
pub fn run(
    trace: &RequestTrace,
    series: &BucketSeries,
    protocol: &Protocol,
) -> Result<UsersRun, EvalError> {
    let bucket_ms = series.bucket_ms;
    let offset = trace.start_unix_ms - series.start_ms;
    let bucket_of = |t_ms: u64| (offset + t_ms) / bucket_ms;

    // Client ids, and each client's requests per bucket for scoring.
    let mut ids: HashMap<&Arc<str>, u32> = HashMap::new();
    let mut clients: Vec<u32> = Vec::with_capacity(trace.records.len());
    let mut actual: HashMap<(u32, u64), u32> = HashMap::new();
    for record in &trace.records {
        let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let id = *ids.entry(&record.client).or_insert(next);
        clients.push(id);
        *actual.entry((id, bucket_of(record.t_ms))).or_insert(0) += 1;
    }
    let count = |id: u32, bucket: u64| f64::from(actual.get(&(id, bucket)).copied().unwrap_or(0));

    let table: UserTable<UserForecastState> = UserTable::new(TableConfig::default())?;
    let mut global = DemandForecaster::new(protocol.season, &protocol.horizons)?;
    let horizons_ms: Vec<u64> = protocol
        .horizons
        .iter()
        .map(|&h| u64::from(h) * bucket_ms)
        .collect();
    let mut ctx = UserForecastContext::new(&horizons_ms, bucket_ms);
    ctx.set_elapsed_ms(bucket_ms);
    let mut calibration = CountCalibration::new(CALIBRATION_HALF_LIFE_TICKS);
    let mut out = vec![UserHorizonForecast::default(); horizons_ms.len()];
    let mut issued: Vec<Issued> = Vec::new();
    let mut next_record = 0;

    for t in 0..protocol.len {
        let now_ms = series.start_ms + t * bucket_ms;

        // The tick: every tracked user is forecast, as in the proxy.
        table.evict_idle(now_ms);
        ctx.set_multipliers(&demand_multipliers(&global, &protocol.horizons));
        // As the proxy's tick: no user above the aggregate's p90 (at least one
        // request per bucket), once the aggregate has seen a bucket.
        let seen = !global.history().is_empty();
        let ceilings: Vec<f64> = protocol
            .horizons
            .iter()
            .map(|&h| match seen {
                true => global.forecast(h).p90.max(1.0) * 1_000.0 / bucket_ms as f64,
                false => f64::INFINITY,
            })
            .collect();
        ctx.set_ceilings_rps(&ceilings);
        calibration.begin_tick();
        ctx.set_spread(calibration.quantiles());
        let origin = protocol.is_origin(t);
        table.for_each(|key, entry| {
            let tick = forecast_user(&entry.windows, &entry.extra, now_ms, &ctx, &mut out);
            if let Some(expected) = tick.expected {
                calibration.observe(expected, tick.observed);
            }
            if !origin || entry.windows.requests_total() < MIN_REQUESTS {
                return;
            }
            let client = (key & u64::from(u32::MAX)) as u32;
            let naive = if t > 0 { count(client, t - 1) } else { 0.0 };
            for (i, &h) in protocol.horizons.iter().enumerate() {
                if let Some(target) = protocol.target(t, h) {
                    issued.push(Issued {
                        client,
                        target,
                        horizon: i,
                        forecast: out[i].count,
                        mean: out[i].rps * bucket_ms as f64 / 1_000.0,
                        naive,
                    });
                }
            }
        });

        // Then the bucket happens.
        while next_record < trace.records.len() && bucket_of(trace.records[next_record].t_ms) == t {
            let record = &trace.records[next_record];
            let time_ms = trace.start_unix_ms + record.t_ms;
            let key = user_key(clients[next_record]);
            if let Ok(entry) = table.get_or_insert(key, time_ms) {
                entry.windows.record_arrival(time_ms, 0, 0);
            }
            next_record += 1;
        }
        global.observe(f64::from(series.counts[t as usize]));
    }

    Ok(score(&issued, protocol, ids.len(), count))
}

/// A table key for client `id`: the id in the low 32 bits (so it can be
/// read back) and a hash of it above, which spreads users over the table's
/// segments as real keyed hashes would.
fn user_key(id: u32) -> u64 {
    (mix64(u64::from(id)) << 32) | u64::from(id)
}

/// Running sums of one horizon's scores.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    points: f64,
    abs: f64,
    smape: f64,
    pinball: f64,
    covered: f64,
    squared_mean: f64,
    naive_abs: f64,
    naive_smape: f64,
    naive_squared: f64,
    zero_abs: f64,
}

impl Sums {
    /// Adds one forecast whose target turned out to be `actual`.
    fn add(&mut self, item: &Issued, actual: f64) {
        let f = item.forecast;
        let over = actual - f.p90;
        self.points += 1.0;
        self.abs += (actual - f.median).abs();
        self.smape += smape(actual, f.median);
        self.pinball += if over >= 0.0 { 0.9 * over } else { -0.1 * over };
        self.covered += f64::from(u8::from(actual <= f.p90));
        self.squared_mean += (actual - item.mean).powi(2);
        self.naive_abs += (actual - item.naive).abs();
        self.naive_smape += smape(actual, item.naive);
        self.naive_squared += (actual - item.naive).powi(2);
        self.zero_abs += actual.abs();
    }

    /// The means, for horizon `horizon` (buckets).
    fn scores(&self, horizon: u32) -> UserHorizonScores {
        let n = self.points;
        let mean = |x: f64| if n > 0.0 { x / n } else { f64::NAN };
        UserHorizonScores {
            horizon,
            points: n as u64,
            model_mae: mean(self.abs),
            model_smape: mean(self.smape),
            model_pinball_p90: mean(self.pinball),
            model_coverage_p90: mean(self.covered),
            model_rmse: mean(self.squared_mean).sqrt(),
            naive_mae: mean(self.naive_abs),
            naive_smape: mean(self.naive_smape),
            naive_rmse: mean(self.naive_squared).sqrt(),
            zero_mae: mean(self.zero_abs),
        }
    }
}

/// Scores the kept forecasts against the clients' actual counts.
fn score(
    issued: &[Issued],
    protocol: &Protocol,
    clients: usize,
    count: impl Fn(u32, u64) -> f64,
) -> UsersRun {
    let mut sums = vec![Sums::default(); protocol.horizons.len()];
    let mut scored = std::collections::HashSet::new();
    for item in issued {
        sums[item.horizon].add(item, count(item.client, item.target));
        scored.insert(item.client);
    }
    UsersRun {
        users_scored: scored.len(),
        clients,
        horizons: protocol
            .horizons
            .iter()
            .zip(&sums)
            .map(|(&horizon, s)| s.scores(horizon))
            .collect(),
    }
}

/// One sMAPE term in percent; 0 when both are 0.
fn smape(actual: f64, forecast: f64) -> f64 {
    let denominator = actual.abs() + forecast.abs();
    if denominator > 0.0 {
        200.0 * (actual - forecast).abs() / denominator
    } else {
        0.0
    }
}
