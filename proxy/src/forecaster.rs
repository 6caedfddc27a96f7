//! The forecaster: the background tick that turns what the profiler counted
//! into forecasts, scores them, and publishes the [`Decisions`] the hot path
//! reads.
//!
//! Every `profiler.forecast_tick` (one forecast bucket):
//! 1. the aggregate request count of the tick is fed to the aggregate
//!    [`QuantityForecaster`] (per quantity, an ensemble of seasonal and lag
//!    models weighted by recent accuracy), which scores the forecasts issued
//!    earlier for this bucket;
//! 2. every tracked user's forecast is refreshed from their window and a
//!    shared demand multiplier ([`forecast_user`]); it lands in the user's
//!    own 24-byte state, where the response filter reads it. The same pass
//!    sums the users' activity windows (bytes out, backend time) for the
//!    aggregate and per cohort;
//! 3. the aggregate's bytes out, backend time and concurrency, and all four
//!    quantities of every cohort, are observed; the scores of every quantity
//!    and horizon are exported as `headroom_forecast_error{horizon,metric}`
//!    ([`FORECAST_ERROR_METRICS`]);
//! 4. a new immutable [`Decisions`] snapshot is stored through `arc-swap`
//!    (and the admin API's forecast view is refreshed).
//!
//! Declared events (config or `POST /v1/events`) scale the forecasts of the
//! buckets they cover; each tick also reports the actual demand against the
//! forecast made without events, so an event's measured effect is learned
//! for the next one of its name. Only all-traffic events scale per-user
//! forecasts; cohort- and route-scoped ones show in the cohort views.
//!
//! Fallback: while the ensemble's best model one tick ahead is naive (the
//! forecast is no better than "same as now"), `Decisions::use_forecast` is
//! false and the headers carry the user's smoothed current rate instead,
//! with `Decisions::reason` saying why.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use headroom_profiler::cohort::MAX_COHORTS;
use headroom_profiler::forecast::user::{
    demand_multipliers, forecast_user, CountCalibration, UserForecastContext, UserHorizonForecast,
};
use headroom_profiler::forecast::{
    Forecast, ModelKind, Quantity, QuantityForecaster, QuantityTotals, Seasonality,
};
use headroom_profiler::{Clock, CohortId};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;

use crate::insights::{CohortForecastView, ForecastView, HorizonForecastView, QuantityBands};
use crate::metrics::FORECAST_METRICS;
use crate::state::Shared;

/// Horizons, in forecast ticks: with the default 1-minute tick, 1, 5, 15
/// and 60 minutes ahead.
pub const HORIZONS: [u32; 4] = [1, 5, 15, 60];

/// Half-life of the per-user count calibration, in ticks.
const CALIBRATION_HALF_LIFE_TICKS: f64 = 60.0;

/// Half-life of the exported accuracy scores, in scored forecasts.
const ACCURACY_HALF_LIFE: f64 = 1_440.0;

/// The `metric` label values of `headroom_forecast_error`: one row per
/// [`Quantity`] (in [`Quantity::ALL`] order), one column per score (as
/// [`FORECAST_METRICS`]). Requests keep the unprefixed names; the other
/// quantities prefix theirs. A closed set of 20 values.
pub const FORECAST_ERROR_METRICS: [[&str; 5]; 4] = [
    FORECAST_METRICS,
    [
        "bytes_out_mae",
        "bytes_out_smape",
        "bytes_out_mase",
        "bytes_out_pinball_p90",
        "bytes_out_coverage_p90",
    ],
    [
        "backend_seconds_mae",
        "backend_seconds_smape",
        "backend_seconds_mase",
        "backend_seconds_pinball_p90",
        "backend_seconds_coverage_p90",
    ],
    [
        "concurrency_mae",
        "concurrency_smape",
        "concurrency_mase",
        "concurrency_pinball_p90",
        "concurrency_coverage_p90",
    ],
];

/// The aggregate forecast at one horizon.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HorizonForecast {
    /// How far ahead, in seconds.
    pub horizon_s: u64,
    /// Median forecast of the aggregate request rate, requests per second.
    pub median_rps: f64,
    /// 90th percentile, requests per second.
    pub p90_rps: f64,
    /// The ensemble member currently weighted highest at this horizon.
    pub best_model: &'static str,
}

/// What the latest tick decided; immutable, swapped whole.
#[derive(Clone, Debug, Serialize)]
pub struct Decisions {
    /// Clock time of the tick, in milliseconds.
    pub computed_at_ms: u64,
    /// Tick (and forecast bucket) length, in seconds.
    pub tick_s: f64,
    /// Whether per-user headers carry the forecast (true) or the current
    /// smoothed rate (false).
    pub use_forecast: bool,
    /// Why, in a few words.
    pub reason: &'static str,
    /// Aggregate forecasts, one per horizon; empty before the first tick.
    pub aggregate: Vec<HorizonForecast>,
    /// Every quantity of the aggregate (requests, bytes out, backend time,
    /// concurrency), per second, in the order of `aggregate`.
    pub aggregate_quantities: Vec<QuantityBands>,
    /// What per-user forecasts are computed with (multipliers, spread), for
    /// reading one user's forecast between ticks; `None` before the first.
    #[serde(skip)]
    pub user_context: Option<Arc<UserForecastContext>>,
}

impl Decisions {
    /// The snapshot in force before the first tick: no forecast yet.
    pub fn initial(tick: Duration) -> Self {
        Self {
            computed_at_ms: 0,
            tick_s: tick.as_secs_f64(),
            use_forecast: false,
            reason: "no forecast yet: waiting for the first tick",
            aggregate: Vec::new(),
            aggregate_quantities: Vec::new(),
            user_context: None,
        }
    }
}

/// The admin API's view of `decisions`.
fn forecast_view(decisions: &Decisions) -> ForecastView {
    ForecastView {
        computed_at_ms: decisions.computed_at_ms,
        model: decisions
            .aggregate
            .first()
            .map_or("ensemble", |h| h.best_model)
            .to_owned(),
        fallback_to_current_rate: !decisions.use_forecast,
        reason: decisions.reason.to_owned(),
        horizons: decisions
            .aggregate
            .iter()
            .zip(&decisions.aggregate_quantities)
            .map(|(h, quantities)| HorizonForecastView {
                horizon_s: h.horizon_s,
                median_rps: h.median_rps,
                p90_rps: h.p90_rps,
                quantities: *quantities,
            })
            .collect(),
    }
}

/// The horizon label of `horizon` ticks of `tick`, like `"900s"`.
pub fn horizon_label(horizon: u32, tick: Duration) -> String {
    format!("{}s", u64::from(horizon) * tick.as_secs())
}

/// The forecaster background task.
pub struct ForecasterService {
    shared: Arc<Shared>,
    decisions: Arc<ArcSwap<Decisions>>,
    tick: Duration,
}

impl ForecasterService {
    /// A forecaster over `shared`, publishing into `decisions` every `tick`.
    pub fn new(shared: Arc<Shared>, decisions: Arc<ArcSwap<Decisions>>, tick: Duration) -> Self {
        // Every series exists from the start; unscored reads NaN, the
        // Prometheus convention for "unknown".
        for &h in &HORIZONS {
            let label = horizon_label(h, tick);
            for metric in FORECAST_ERROR_METRICS.iter().flatten() {
                shared
                    .metrics
                    .forecast_error
                    .with_label_values(&[label.as_str(), metric])
                    .set(f64::NAN);
            }
        }
        Self {
            shared,
            decisions,
            tick,
        }
    }
}

/// The state the task keeps between ticks: the aggregate and cohort
/// forecasters (four quantities each, about a week of history), the count
/// calibration and the per-user context.
pub struct TickState {
    /// Every quantity of the aggregate series, with its scores.
    global: QuantityForecaster,
    calibration: CountCalibration,
    context: UserForecastContext,
    out: Vec<UserHorizonForecast>,
    last_total: Option<u64>,
    last_ms: u64,
    /// One forecaster per cohort id, fed each tick with the requests and
    /// activity of the users currently assigned to it.
    cohorts: Vec<QuantityForecaster>,
    /// The one-tick-ahead median issued last tick, before event multipliers:
    /// the baseline an event's measured effect is judged against.
    last_plain_forecast: Option<f64>,
    /// Predictive tiers and pre-allocation, decided in the same user pass.
    shaping: crate::tiering::Shaper,
}

impl ForecasterService {
    /// The state of a fresh forecaster (no history), or `None` when the
    /// tick is unusable as a forecast bucket (logged). The background task
    /// calls it once; the tick bench builds its own.
    pub fn new_state(&self) -> Option<TickState> {
        let tick_ms = u64::try_from(self.tick.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let season = match Seasonality::for_bucket_ms(tick_ms) {
            Ok(season) => season,
            Err(e) => {
                tracing::warn!(error = %e, "forecaster disabled: bad tick");
                return None;
            }
        };
        let global = match QuantityForecaster::new(season, &HORIZONS, Some(ACCURACY_HALF_LIFE)) {
            Ok(global) => global,
            Err(e) => {
                tracing::warn!(error = %e, "forecaster disabled");
                return None;
            }
        };
        let cohorts = (0..MAX_COHORTS)
            .map(|_| QuantityForecaster::new(season, &HORIZONS, Some(ACCURACY_HALF_LIFE)))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let horizons_ms: Vec<u64> = HORIZONS.iter().map(|&h| u64::from(h) * tick_ms).collect();
        let mut context = UserForecastContext::new(&horizons_ms, tick_ms);
        context.set_elapsed_ms(tick_ms);
        Some(TickState {
            global,
            calibration: CountCalibration::new(CALIBRATION_HALF_LIFE_TICKS),
            context,
            out: vec![UserHorizonForecast::default(); HORIZONS.len()],
            last_total: None,
            last_ms: self.shared.clock.now_ms(),
            last_plain_forecast: None,
            cohorts,
            shaping: crate::tiering::Shaper::new(&self.shared, self.tick),
        })
    }

    /// One tick: aggregate, users, scores, snapshot. What the background
    /// task runs every `profiler.forecast_tick` (public for the tick bench,
    /// `benches/forecaster_tick.rs`).
    pub fn tick(&self, st: &mut TickState) {
        let shared = &self.shared;
        let now_ms = shared.clock.now_ms();
        let totals = shared.users.totals(now_ms);
        let tick_s = self.tick.as_secs_f64();

        // 1. The aggregate series: this tick's requests.
        let events = &shared.insights.events;
        let all_traffic = |h: u32| events.multiplier_at(self.at_horizon(now_ms, h), None, None);
        let observed = st
            .last_total
            .map(|last| totals.requests_total.saturating_sub(last) as f64);
        if let Some(observed) = observed {
            if let Some(plain) = st.last_plain_forecast {
                // What events in force did to demand, for the next similar one.
                events.observe(now_ms, None, None, observed, plain);
            }
            st.global.observe(Quantity::Requests, observed, all_traffic);
            st.last_plain_forecast =
                Some(st.global.forecast(Quantity::Requests, HORIZONS[0]).median);
        }
        st.last_total = Some(totals.requests_total);

        // 2. Every user, from a shared multiplier and calibration.
        st.context
            .set_elapsed_ms(now_ms.saturating_sub(st.last_ms).max(1));
        st.last_ms = now_ms;
        let multipliers: Vec<f64> =
            demand_multipliers(st.global.forecaster(Quantity::Requests), &HORIZONS)
                .into_iter()
                .zip(HORIZONS)
                .map(|(m, h)| m * all_traffic(h))
                .collect();
        st.context.set_multipliers(&multipliers);
        // No user above the whole service: the aggregate's p90 caps them,
        // at no less than one request per tick (a quiet tick says little
        // about a user seen moments ago), and not before the aggregate has
        // observed a tick.
        let seen = !st
            .global
            .forecaster(Quantity::Requests)
            .history()
            .is_empty();
        let ceilings: Vec<f64> = HORIZONS
            .iter()
            .map(|&h| match seen {
                true => {
                    let p90 = st.global.forecast(Quantity::Requests, h).p90 * all_traffic(h);
                    p90.max(1.0) / tick_s
                }
                false => f64::INFINITY,
            })
            .collect();
        st.context.set_ceilings_rps(&ceilings);
        st.calibration.begin_tick();
        st.context.set_spread(st.calibration.quantiles());
        let (context, out, calibration) = (&st.context, &mut st.out, &mut st.calibration);
        let mut all = QuantityTotals::default();
        let mut per_cohort = [QuantityTotals::default(); MAX_COHORTS];
        let mut shaping = st.shaping.begin(now_ms);
        shared.users.for_each(|key, entry| {
            let tick = forecast_user(&entry.windows, &entry.extra.forecast, now_ms, context, out);
            shaping.user(key, entry, out.first());
            all.add(0.0, &tick.rates);
            // A first sighting has no previous forecast to calibrate, and its
            // requests are not counted in its cohort's series.
            let requests = tick.expected.map_or(0.0, |expected| {
                calibration.observe(expected, tick.observed);
                tick.observed
            });
            if let (_, Some(cohort)) = entry.windows.last_action().load() {
                per_cohort[cohort.index()].add(requests, &tick.rates);
            }
        });
        shaping.finish();

        // 3. The other quantities, the cohorts, and the scores.
        if let Some(observed) = observed {
            all.requests = observed;
            let sample = all.sample(tick_s);
            for q in &Quantity::ALL[1..] {
                st.global.observe(*q, sample.get(*q), all_traffic);
            }
        }
        for (i, (forecaster, totals)) in st.cohorts.iter_mut().zip(per_cohort).enumerate() {
            let id = u8::try_from(i).ok().and_then(CohortId::new);
            let scoped = |h: u32| events.multiplier_at(self.at_horizon(now_ms, h), id, None);
            forecaster.observe_all(&totals.sample(tick_s), scoped);
        }
        for q in &Quantity::ALL[1..] {
            let shape: Vec<f64> = demand_multipliers(st.global.forecaster(*q), &HORIZONS)
                .into_iter()
                .zip(HORIZONS)
                .map(|(m, h)| m * all_traffic(h))
                .collect();
            st.context.set_quantity_multipliers(*q, &shape);
        }
        self.export_scores(st);

        // 4. The snapshots (hot path, admin API).
        let decisions = self.decide(st, now_ms);
        let cohorts = self.cohort_views(st, now_ms);
        shared
            .insights
            .publish_forecast(Some(forecast_view(&decisions)), cohorts);
        self.decisions.store(Arc::new(decisions));
    }

    /// Runs `n` ticks at once (tests of the views built on the forecasts).
    #[cfg(test)]
    pub(crate) fn run_ticks_for_test(&self, n: usize) {
        let mut st = self.new_state().expect("valid tick");
        for _ in 0..n {
            self.tick(&mut st);
        }
    }

    /// Forecast views of the cohorts that exist now.
    fn cohort_views(&self, st: &TickState, now_ms: u64) -> Vec<CohortForecastView> {
        let tick_s = self.tick.as_secs_f64();
        let live = self.shared.insights.snapshot();
        st.cohorts
            .iter()
            .enumerate()
            .filter_map(|(i, forecaster)| {
                let id = CohortId::new(u8::try_from(i).ok()?)?;
                live.cohorts.get(id)?;
                let horizons = HORIZONS
                    .iter()
                    .map(|&h| {
                        let at = self.at_horizon(now_ms, h);
                        let m = self
                            .shared
                            .insights
                            .events
                            .multiplier_at(at, Some(id), None);
                        let quantities = bands(forecaster, h, m, tick_s);
                        HorizonForecastView {
                            horizon_s: u64::from(h) * self.tick.as_secs(),
                            median_rps: quantities.requests_per_second.median,
                            p90_rps: quantities.requests_per_second.p90,
                            quantities,
                        }
                    })
                    .collect();
                let best = forecaster.best(Quantity::Requests, HORIZONS[0]);
                Some(CohortForecastView {
                    cohort: id,
                    forecast: ForecastView {
                        computed_at_ms: now_ms,
                        model: best.map_or("none", ModelKind::name).to_owned(),
                        fallback_to_current_rate: matches!(best, None | Some(ModelKind::Naive)),
                        reason: "cohort series: requests and activity of the users assigned to it"
                            .to_owned(),
                        horizons,
                    },
                })
            })
            .collect()
    }

    /// Clock time `horizon` ticks after `now_ms`.
    fn at_horizon(&self, now_ms: u64, horizon: u32) -> u64 {
        let tick_ms = u64::try_from(self.tick.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_add(tick_ms.saturating_mul(u64::from(horizon)))
    }

    /// The multiplier of the events in force `horizon` ticks from now
    /// (all-traffic scope).
    fn event_multiplier(&self, now_ms: u64, horizon: u32) -> f64 {
        let at = self.at_horizon(now_ms, horizon);
        self.shared.insights.events.multiplier_at(at, None, None)
    }

    fn decide(&self, st: &TickState, now_ms: u64) -> Decisions {
        let tick_s = self.tick.as_secs_f64();
        let aggregate_quantities: Vec<QuantityBands> = HORIZONS
            .iter()
            .map(|&h| bands(&st.global, h, self.event_multiplier(now_ms, h), tick_s))
            .collect();
        let aggregate = HORIZONS
            .iter()
            .zip(&aggregate_quantities)
            .map(|(&h, quantities)| HorizonForecast {
                horizon_s: u64::from(h) * self.tick.as_secs(),
                median_rps: quantities.requests_per_second.median,
                p90_rps: quantities.requests_per_second.p90,
                best_model: st
                    .global
                    .best(Quantity::Requests, h)
                    .map_or("none", ModelKind::name),
            })
            .collect();
        let (use_forecast, reason) = match st.global.best(Quantity::Requests, HORIZONS[0]) {
            None => (false, "no forecast yet: not enough history"),
            Some(ModelKind::Naive) => (false, "forecast no better than naive: using current rates"),
            Some(_) => (true, "a model beats naive one tick ahead"),
        };
        Decisions {
            computed_at_ms: now_ms,
            tick_s,
            use_forecast,
            reason,
            aggregate,
            aggregate_quantities,
            user_context: Some(Arc::new(st.context.clone())),
        }
    }

    /// Sets `headroom_forecast_error` from the aggregate's scores of every
    /// quantity and horizon (series not scored yet stay NaN).
    fn export_scores(&self, st: &TickState) {
        let gauge = &self.shared.metrics.forecast_error;
        for &h in &HORIZONS {
            let label = horizon_label(h, self.tick);
            for (q, metrics) in Quantity::ALL.into_iter().zip(FORECAST_ERROR_METRICS) {
                let scores = st.global.scores(q, h);
                if scores.points == 0 {
                    continue;
                }
                let values = [
                    scores.mae,
                    scores.smape,
                    scores.mase,
                    scores.pinball_p90,
                    scores.coverage_p90,
                ];
                for (metric, value) in metrics.into_iter().zip(values) {
                    gauge
                        .with_label_values(&[label.as_str(), metric])
                        .set(value);
                }
            }
        }
    }
}

/// Every quantity of `forecaster` at `horizon`, scaled by the event
/// multiplier `m`, per second of a `tick_s` bucket.
fn bands(forecaster: &QuantityForecaster, horizon: u32, m: f64, tick_s: f64) -> QuantityBands {
    QuantityBands::from_fn(|q| {
        let f = forecaster.forecast(q, horizon);
        Forecast::new(
            q.per_second(f.median * m, tick_s),
            q.per_second(f.p90 * m, tick_s),
        )
    })
}

#[async_trait]
impl BackgroundService for ForecasterService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let span = tracing::info_span!("forecaster", tick_s = self.tick.as_secs_f64());
        let _enter = span.enter();
        let Some(mut st) = self.new_state() else {
            return;
        };
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => {}
            }
            self.tick(&mut st);
            tracing::debug!(users = self.shared.users.len(), "forecast tick");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::test_support::{arrive, headers, shared};

    fn service(tick: Duration) -> (ForecasterService, Arc<ArcSwap<Decisions>>) {
        let decisions = Arc::new(ArcSwap::from_pointee(Decisions::initial(tick)));
        (
            ForecasterService::new(shared(), Arc::clone(&decisions), tick),
            decisions,
        )
    }

    #[test]
    fn every_error_series_exists_from_the_start_as_nan() {
        let (service, _) = service(Duration::from_secs(60));
        let text = String::from_utf8(service.shared.metrics.render()).expect("utf-8");
        for label in ["60s", "300s", "900s", "3600s"] {
            let line = format!("headroom_forecast_error{{horizon=\"{label}\",metric=\"mae\"}} NaN");
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn a_tick_forecasts_each_user_and_publishes_decisions() {
        let (service, decisions) = service(Duration::from_secs(1));
        let mut st = service.new_state().expect("valid tick");
        let now = service.shared.clock.now_ms();
        let bob = headers("x-api-key", "k_bob");
        let mut key = 0;
        for i in 0..30 {
            key = arrive(&service.shared, &bob, "/", now + i);
        }

        service.tick(&mut st);
        service.tick(&mut st);

        let user = service.shared.users.get(key).expect("tracked");
        assert!(user.extra.forecast.forecast_rps().is_some());
        let d = decisions.load();
        assert_eq!(d.aggregate.len(), HORIZONS.len());
        assert_eq!(d.aggregate[3].horizon_s, 60);
        assert!(d.aggregate.iter().all(|h| h.p90_rps >= h.median_rps));
        assert!(!d.reason.is_empty());
    }

    #[test]
    fn a_declared_event_scales_the_forecast_of_the_buckets_it_covers() {
        use headroom_profiler::events::{Event, Scope};

        let (service, decisions) = service(Duration::from_secs(1));
        let mut st = service.new_state().expect("valid tick");
        let now = service.shared.clock.now_ms();
        service.tick(&mut st);
        let bob = headers("x-api-key", "k_bob");
        for i in 0..20 {
            arrive(&service.shared, &bob, "/", now + i);
        }
        service.tick(&mut st);
        let plain = decisions.load().aggregate.clone();
        assert!(plain[3].median_rps > 0.0, "{plain:?}");

        // Triple demand from 30 s to 90 s from now: covers the 60 s horizon only.
        let event = Event {
            name: "launch".into(),
            start_ms: now + 30_000,
            end_ms: now + 90_000,
            scope: Scope::All,
            multiplier: Some(3.0),
        };
        service
            .shared
            .insights
            .events
            .declare(event)
            .expect("valid event");
        let d = service.decide(&st, now);

        assert_eq!(d.aggregate[0].median_rps, plain[0].median_rps);
        let ratio = d.aggregate[3].median_rps / plain[3].median_rps.max(f64::MIN_POSITIVE);
        assert!(
            plain[3].median_rps == 0.0 || (ratio - 3.0).abs() < 1e-9,
            "{ratio}"
        );
    }
}
