//! Per-user forecasts at different tick lengths, on simulated time, the way
//! the proxy's forecast tick computes them: the aggregate forecaster
//! observes the tick's requests, its demand multipliers and the count
//! calibration are refreshed, then the user is forecast.
//!
//! Regression tests for acceptance defect D1: with a 1 s tick, a steady
//! 5 rps user was forecast at 25 rps (p90 30), above the aggregate, because
//! the multipliers divided by a 10-minute EWMA still near zero after the
//! idle start.

use super::*;
use crate::forecast::Seasonality;
use crate::user::UserShape;

const HORIZONS: [u32; 4] = [1, 5, 15, 60];

/// One user alone behind a simulated proxy tick.
struct Sim {
    tick_ms: u64,
    global: DemandForecaster,
    ctx: UserForecastContext,
    calibration: CountCalibration,
    windows: UserWindows,
    state: UserForecastState,
    out: Vec<UserHorizonForecast>,
    now_ms: u64,
    next_arrival_ms: u64,
}

impl Sim {
    fn new(tick_ms: u64) -> Self {
        let season = Seasonality::for_bucket_ms(tick_ms).expect("valid tick");
        let horizons_ms: Vec<u64> = HORIZONS.iter().map(|&h| u64::from(h) * tick_ms).collect();
        Self {
            tick_ms,
            global: DemandForecaster::new(season, &HORIZONS).expect("valid"),
            ctx: UserForecastContext::new(&horizons_ms, tick_ms),
            calibration: CountCalibration::new(60.0),
            windows: UserWindows::new(&UserShape::default()),
            state: UserForecastState::default(),
            out: vec![UserHorizonForecast::default(); HORIZONS.len()],
            now_ms: 1_000_000,
            next_arrival_ms: 0,
        }
    }

    /// Advances one tick with the user sending `rps` (evenly spaced); runs
    /// the proxy's tick.
    fn tick(&mut self, rps: f64) {
        let end = self.now_ms + self.tick_ms;
        let mut count = 0;
        if rps > 0.0 {
            let gap = (1_000.0 / rps) as u64;
            self.next_arrival_ms = self.next_arrival_ms.max(self.now_ms);
            while self.next_arrival_ms < end {
                self.windows.record_arrival(self.next_arrival_ms, 0, 0);
                self.next_arrival_ms += gap;
                count += 1;
            }
        } else {
            self.next_arrival_ms = end;
        }
        self.now_ms = end;
        self.global.observe(f64::from(count));
        self.ctx
            .set_multipliers(&demand_multipliers(&self.global, &HORIZONS));
        let ceilings: Vec<f64> = (0..HORIZONS.len())
            .map(|i| self.aggregate_p90_rps(i))
            .collect();
        self.ctx.set_ceilings_rps(&ceilings);
        self.calibration.begin_tick();
        self.ctx.set_spread(self.calibration.quantiles());
        let tick = forecast_user(
            &self.windows,
            &self.state,
            self.now_ms,
            &self.ctx,
            &mut self.out,
        );
        if let Some(expected) = tick.expected {
            self.calibration.observe(expected, tick.observed);
        }
    }

    /// The aggregate's p90 forecast at the `i`-th horizon, rps.
    fn aggregate_p90_rps(&self, i: usize) -> f64 {
        self.global.forecast(HORIZONS[i]).p90 * 1_000.0 / self.tick_ms as f64
    }

    /// The aggregate's median forecast at the `i`-th horizon, rps.
    fn aggregate_rps(&self, i: usize) -> f64 {
        self.global.forecast(HORIZONS[i]).median * 1_000.0 / self.tick_ms as f64
    }
}

/// The tick lengths under test and how long a user must have been steady
/// before their forecast is expected near their rate (ms).
const TICKS: [(u64, u64); 3] = [(1_000, 60_000), (5_000, 60_000), (60_000, 600_000)];

#[test]
fn a_steady_user_is_forecast_near_their_rate_at_every_tick_length() {
    for (tick_ms, settle_ms) in TICKS {
        let mut sim = Sim::new(tick_ms);
        // The proxy ticks idle for a while before the user starts.
        for _ in 0..(120_000 / tick_ms).max(2) {
            sim.tick(0.0);
        }
        let ticks = 1_200_000 / tick_ms;
        for k in 1..=ticks {
            sim.tick(5.0);
            let first = sim.out[0];
            let p90_rps = first.count.p90 * 1_000.0 / tick_ms as f64;
            // Not above the service's median, the user being all of it.
            let aggregate = sim.aggregate_rps(0);
            assert!(
                first.rps <= aggregate * 1.1 + 0.2,
                "tick {tick_ms} ms, {k}: {first:?} above {aggregate}"
            );
            // Never far above the rate the user actually sends.
            assert!(
                first.rps <= 5.5 && p90_rps <= 8.5,
                "tick {tick_ms} ms, {k}: {first:?}, p90 {p90_rps} rps"
            );
            if k * tick_ms >= settle_ms {
                // The level's idle prior (LEVEL_PRIOR_MS) holds a new
                // user at about half their rate at first.
                assert!(
                    (2.5..=5.5).contains(&first.rps),
                    "tick {tick_ms} ms, {k}: {first:?}"
                );
                assert!(
                    (first.rps..=8.5).contains(&p90_rps),
                    "tick {tick_ms} ms, {k}: p90 {p90_rps} rps for {first:?}"
                );
            }
        }
    }
}

#[test]
fn one_user_is_never_forecast_above_the_aggregate_they_belong_to() {
    for (tick_ms, _) in TICKS {
        let mut sim = Sim::new(tick_ms);
        for _ in 0..(60_000 / tick_ms).max(2) {
            sim.tick(0.0);
        }
        // Steady, then a burst, then steady lower: the user is all the traffic.
        let plan = [(5.0, 300_000), (30.0, 120_000), (8.0, 300_000)];
        for (rps, span_ms) in plan {
            for k in 0..(span_ms / tick_ms).max(1) {
                sim.tick(rps);
                for (i, user) in sim.out.iter().enumerate() {
                    let aggregate = sim.aggregate_p90_rps(i);
                    assert!(
                        user.rps <= aggregate + 1e-9,
                        "tick {tick_ms} ms at {rps} rps, {k}, horizon {i}: \
                         user {user:?} above aggregate {aggregate}"
                    );
                }
            }
        }
    }
}

#[test]
fn demand_multipliers_are_one_on_a_flat_series_after_an_idle_start() {
    for (tick_ms, _) in TICKS {
        let mut sim = Sim::new(tick_ms);
        for _ in 0..(600_000 / tick_ms).max(2) {
            sim.tick(0.0);
        }
        for _ in 0..(300_000 / tick_ms).max(60) {
            sim.tick(5.0);
        }
        let m = demand_multipliers(&sim.global, &HORIZONS);
        assert_eq!(m[0], 1.0, "tick {tick_ms} ms: {m:?}");
        // The longest horizon is left to the aggregate's own cold start.
        assert!(
            m[..3].iter().all(|m| (0.8..=1.25).contains(m)),
            "tick {tick_ms} ms: {m:?}"
        );
    }
}
