//! What the load generator measured: per-tier outcomes and latency, and how
//! well the proxy's `x-headroom-forecast-rps` header predicted each user's rate.
//!
//! A response is classified by what the proxy said: 429 is *limited*; 503 with an
//! `x-headroom-tier` header is *shed* (unless the sample app marked it
//! `x-demo-app: queue-full`, which is the app's own overload passed through);
//! anything else is *admitted*. A request with no response (connect failure,
//! reset, timeout) is an *error*, counted under the user's last seen tier.
//! Latency percentiles are over admitted requests, to the end of the body: they
//! say how the service felt to those it served.
//!
//! The forecast score compares, for each user, the forecast seen at time *t*
//! with the rate that user then sent over [t, t+H), H = 10 s of wall time, and the
//! naive forecast (the user's rate over [t-H, t)) with the same target. MASE is
//! model MAE over naive MAE (below 1 beats naive); sMAPE is the mean of
//! 2|f-a|/(|f|+|a|) as a fraction (0 to 2, 0 when both are 0). At most one
//! forecast per user per second is kept, so chatty users do not dominate; only
//! points with a full window on both sides count. With no points (no proxy in
//! front, or a run shorter than 2H) both are NaN, written `null` in JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::app::SlotUse;
use super::ramp::RampReport;

/// The forecast horizon H, in milliseconds.
pub(crate) const HORIZON_MS: u32 = 10_000;

/// Outcomes of one tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TierReport {
    /// Requests attributed to the tier, errors included.
    pub requests: u64,
    /// Responses the proxy let through (any status but 429 and the proxy's 503).
    pub admitted: u64,
    /// 429 responses.
    pub limited: u64,
    /// 503 responses from the proxy's shedding.
    pub shed: u64,
    /// Median latency of admitted requests in ms; NaN when none were admitted.
    pub p50_ms: f64,
    /// 99th percentile latency of admitted requests in ms; NaN when none.
    pub p99_ms: f64,
    /// 2xx responses per second of the run (added to the contract's fields).
    pub goodput_rps: f64,
    /// 2xx responses (not in the JSON).
    #[serde(skip)]
    pub ok: u64,
    /// Requests that got no response (not in the JSON contract).
    #[serde(skip)]
    pub errors: u64,
    /// Admitted requests the sample app refused as overloaded (not in the JSON).
    #[serde(skip)]
    pub app_rejected: u64,
}

/// Forecast accuracy against the naive last-window forecast.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ForecastReport {
    /// Model MAE / naive MAE; NaN without points or when naive was perfect.
    pub mase: f64,
    /// Mean symmetric absolute percentage error as a fraction (0..=2); NaN without points.
    pub smape: f64,
    /// Scored (user, time) points (not in the JSON contract).
    #[serde(skip)]
    pub points: u64,
}

/// Totals over the whole run that the JSON contract does not carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTotals {
    /// Requests sent.
    pub sent: u64,
    /// Requests not sent because the in-flight bound was reached.
    pub not_sent: u64,
    /// Trace requests skipped because their path could not form a valid URI.
    pub invalid: u64,
    /// Distinct users that sent at least one request.
    pub users: u64,
    /// Requests sent per second of the run.
    pub sent_rps: f64,
}

/// The final report of a demo or replay run.
///
/// Serialises to the `headroom demo --json` shape of DESIGN.md plus added
/// fields (`goodput_rps` overall and per tier, `capacity_rps`, `ramp`); the
/// fields marked as outside the contract appear only in the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Seconds during which requests were sent.
    pub duration_s: f64,
    /// Offered load as a multiple of the sample app's capacity; 0 for a replay
    /// against a target of unknown capacity.
    pub offered_load: f64,
    /// Whether the proxy shaped traffic (as configured by the caller).
    pub shaping: bool,
    /// Whether the proxy warmed upstream pools (as configured by the caller).
    pub warming: bool,
    /// Outcomes per tier name (`none` for responses without a tier header).
    pub tiers: BTreeMap<String, TierReport>,
    /// Forecast accuracy.
    pub forecast: ForecastReport,
    /// 2xx responses per second of the run, all tiers (added to the contract).
    pub goodput_rps: f64,
    /// Seconds at the start whose requests are left out of the tiers'
    /// latency percentiles (they count everywhere else): the load
    /// generator's and the proxy's cold start (added to the contract).
    pub warmup_s: f64,
    /// Requests per second the sample app sustains for the workload's mix;
    /// absent for a replay against a target of unknown capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_rps: Option<f64>,
    /// How busy the sample app's workers were over the run, measured by the
    /// app; absent for a replay against another target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<SlotUse>,
    /// The requests sent just after a ramp's step; absent without a ramp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampReport>,
    /// Run totals outside the JSON contract.
    #[serde(skip)]
    pub totals: RunTotals,
}

impl LoadReport {
    /// The report as one JSON object (non-finite numbers become `null`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report has string keys and plain fields")
    }

    /// Prints [`LoadReport::table`] to stdout.
    pub fn print_table(&self) {
        print!("{}", self.table());
    }

    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let t = &self.totals;
        let mut out = String::new();
        // Writing to a String cannot fail; the results are ignored.
        let _ = writeln!(
            out,
            "{:.1} s, offered load {:.3}x capacity, shaping {}, warming {}",
            self.duration_s,
            self.offered_load,
            on_off(self.shaping),
            on_off(self.warming)
        );
        let _ = writeln!(
            out,
            "sent {} ({:.0}/s) from {} users; not sent (in-flight bound) {}; invalid {}\n",
            t.sent, t.sent_rps, t.users, t.not_sent, t.invalid
        );
        if self.warmup_s > 0.0 {
            let _ = writeln!(
                out,
                "latency percentiles leave out requests sent in the first {:.2} s (warm-up)",
                self.warmup_s
            );
        }
        let _ = writeln!(
            out,
            "{:<12}{:>10}{:>10}{:>10}{:>10}{:>8}{:>10}{:>10}{:>10}",
            "tier",
            "requests",
            "admitted",
            "limited",
            "shed",
            "errors",
            "app 503",
            "p50 ms",
            "p99 ms"
        );
        for (name, tier) in &self.tiers {
            let _ = writeln!(
                out,
                "{:<12}{:>10}{:>10}{:>10}{:>10}{:>8}{:>10}{:>10.1}{:>10.1}",
                name,
                tier.requests,
                tier.admitted,
                tier.limited,
                tier.shed,
                tier.errors,
                tier.app_rejected,
                tier.p50_ms,
                tier.p99_ms
            );
        }
        let capacity = self
            .capacity_rps
            .map_or_else(|| "unknown".to_owned(), |c| format!("{c:.0}/s"));
        let _ = writeln!(
            out,
            "\ngoodput (2xx) {:.0}/s; app capacity {capacity} (modelled)",
            self.goodput_rps
        );
        if let Some(app) = self.app.filter(|a| a.mean_slot_ms.is_finite()) {
            let _ = writeln!(
                out,
                "app workers busy {:.1}% of the run; mean slot time {:.2} ms measured, so the \
                 app's capacity on this machine is {:.0}/s",
                app.utilisation * 100.0,
                app.mean_slot_ms,
                app.capacity_measured_rps
            );
        }
        let f = &self.forecast;
        let _ = writeln!(
            out,
            "forecast vs actual per user, horizon {} s, {} points: MASE {:.3} (below 1 beats \
             naive), sMAPE {:.3}",
            HORIZON_MS / 1_000,
            f.points,
            f.mase,
            f.smape
        );
        if let Some(ramp) = &self.ramp {
            ramp_table(&mut out, ramp);
        }
        out
    }
}

/// The ramp section of the table.
fn ramp_table(out: &mut String, ramp: &RampReport) {
    let reading = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "\nramp at {:.1} s to {:.3}x capacity ({:.2}x arrivals), declared to the proxy: {}; \
         warming target before the step {} (peak {}), opened before it {}",
        ramp.at_s,
        ramp.load,
        ramp.factor,
        if ramp.declared { "yes" } else { "no" },
        reading(ramp.warming_target_before),
        reading(ramp.warming_target_peak_before),
        reading(ramp.warming_opened_before)
    );
    let first = &ramp.first;
    if first.count > 0 {
        let _ = writeln!(
            out,
            "first {} requests served after the step: mean {:.2} ms, p50 {:.1}, p90 {:.1}, max {:.1}",
            first.count, first.mean_ms, first.p50_ms, first.p90_ms, first.max_ms
        );
    }
    let _ = writeln!(
        out,
        "from the step to the window's end, requests that waited for a new upstream connection: \
         {}; connections the app accepted (the warmer's and health checks' included): {}",
        reading(ramp.request_connections_in_window),
        reading(ramp.app_connections_in_window)
    );
    let _ = writeln!(
        out,
        "requests sent in the first {:.1} s after the step:",
        ramp.window_s
    );
    let _ = writeln!(
        out,
        "{:<12}{:>10}{:>8}{:>10}{:>10}{:>10}{:>8}{:>10}{:>10}",
        "tier", "requests", "2xx", "limited", "shed 503", "app 503", "errors", "p50 ms", "p99 ms"
    );
    for (name, tier) in &ramp.tiers {
        let _ = writeln!(
            out,
            "{:<12}{:>10}{:>8}{:>10}{:>10}{:>10}{:>8}{:>10.1}{:>10.1}",
            name,
            tier.requests,
            tier.ok,
            tier.limited,
            tier.shed_503,
            tier.app_503,
            tier.errors,
            tier.p50_ms,
            tier.p99_ms
        );
    }
}

/// Scores forecasts against what users sent (see the module docs).
///
/// `sends[u]` are user *u*'s send times and `samples[u]` its (time, forecast)
/// pairs, both in ms from the start and sorted; `end_ms` is when sending stopped.
pub(crate) fn score_forecasts(
    sends: &[Vec<u32>],
    samples: &[Vec<(u32, f64)>],
    end_ms: u32,
) -> ForecastReport {
    let h = HORIZON_MS;
    let rate = |times: &[u32], from: u32, to: u32| {
        let n = times.partition_point(|&t| t < to) - times.partition_point(|&t| t < from);
        n as f64 * 1_000.0 / f64::from(to - from)
    };
    let (mut model_abs, mut naive_abs, mut smape_sum, mut points) = (0.0, 0.0, 0.0, 0u64);
    for (user, user_samples) in samples.iter().enumerate() {
        let times = sends.get(user).map_or(&[][..], Vec::as_slice);
        for &(t, forecast) in user_samples {
            if t < h || t.saturating_add(h) > end_ms {
                continue;
            }
            let actual = rate(times, t, t + h);
            let naive = rate(times, t - h, t);
            model_abs += (forecast - actual).abs();
            naive_abs += (naive - actual).abs();
            let denom = forecast.abs() + actual.abs();
            smape_sum += if denom > 0.0 {
                2.0 * (forecast - actual).abs() / denom
            } else {
                0.0
            };
            points += 1;
        }
    }
    if points == 0 {
        return ForecastReport {
            mase: f64::NAN,
            smape: f64::NAN,
            points,
        };
    }
    let mase = if naive_abs > 0.0 {
        model_abs / naive_abs
    } else {
        f64::NAN
    };
    ForecastReport {
        mase,
        smape: smape_sum / points as f64,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::ramp::RampTierReport;

    /// Send times at `rps` per second over [from_s, to_s).
    fn steady(rps: u32, from_s: u32, to_s: u32) -> Vec<u32> {
        (from_s * rps..to_s * rps)
            .map(|i| i * 1_000 / rps)
            .collect()
    }

    #[test]
    fn a_forecast_that_sees_a_rate_change_beats_naive() {
        // 1 req/s for 20 s, then 3 req/s for 20 s; forecasts at 15 s and 20 s.
        let mut sends = steady(1, 0, 20);
        sends.extend(steady(3, 20, 40));
        let perfect = vec![(15_000, 2.0), (20_000, 3.0)];
        let report = score_forecasts(&[sends.clone()], &[perfect], 40_000);
        assert_eq!(report.points, 2);
        assert!(report.mase.abs() < 1e-9, "{report:?}");
        assert!(report.smape.abs() < 1e-9);

        // Always saying 1 req/s: errors 1 and 2; naive errors 1 and 2 as well.
        let stale = vec![(15_000, 1.0), (20_000, 1.0)];
        let report = score_forecasts(&[sends], &[stale], 40_000);
        assert!((report.mase - 1.0).abs() < 1e-9, "{report:?}");
        // sMAPE: (2*1/3 + 2*2/4) / 2.
        assert!((report.smape - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn points_without_full_windows_are_not_scored() {
        let sends = steady(2, 0, 30);
        let samples = vec![(5_000, 2.0), (25_000, 2.0)];
        let report = score_forecasts(&[sends], &[samples], 30_000);
        assert_eq!(report.points, 0);
        assert!(report.mase.is_nan() && report.smape.is_nan());
    }

    #[test]
    fn json_has_the_contract_fields_plus_the_added_ones_and_nan_is_null() {
        let mut report = LoadReport {
            duration_s: 2.0,
            offered_load: 1.5,
            ..LoadReport::default()
        };
        let tier = TierReport {
            requests: 3,
            p50_ms: 1.0,
            p99_ms: f64::NAN,
            errors: 1,
            ..Default::default()
        };
        report.tiers.insert("none".to_owned(), tier);
        report.forecast = ForecastReport {
            mase: f64::NAN,
            smape: f64::NAN,
            points: 0,
        };
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        let sorted_keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
            keys.sort();
            keys
        };
        // DESIGN.md's fields, plus `goodput_rps` and `warmup_s`; no
        // capacity, app or ramp unless set.
        let expected = [
            "duration_s",
            "forecast",
            "goodput_rps",
            "offered_load",
            "shaping",
            "tiers",
            "warming",
            "warmup_s",
        ];
        assert_eq!(sorted_keys(&value), expected);
        let tier = &value["tiers"]["none"];
        let expected = [
            "admitted",
            "goodput_rps",
            "limited",
            "p50_ms",
            "p99_ms",
            "requests",
            "shed",
        ];
        assert_eq!(sorted_keys(tier), expected);
        assert_eq!(sorted_keys(&value["forecast"]), ["mase", "smape"]);
        assert!(tier["p99_ms"].is_null());
        assert!(value["forecast"]["mase"].is_null());
        assert!(report.table().contains("none"));
        assert!(report.table().contains("app capacity unknown"));
    }

    #[test]
    fn a_ramp_adds_its_object_and_capacity_to_the_json_and_table() {
        let mut ramp_tier = RampTierReport {
            requests: 10,
            ok: 7,
            shed_503: 2,
            app_503: 1,
            p50_ms: 3.0,
            p99_ms: 9.0,
            ..RampTierReport::default()
        };
        let mut report = LoadReport {
            goodput_rps: 120.0,
            capacity_rps: Some(1_590.0),
            ramp: Some(RampReport {
                at_s: 25.0,
                load: 1.2,
                factor: 4.0,
                window_s: 2.0,
                declared: true,
                warming_target_before: Some(30),
                ..RampReport::default()
            }),
            ..LoadReport::default()
        };
        if let Some(ramp) = report.ramp.as_mut() {
            ramp.tiers.insert("premium".to_owned(), ramp_tier.clone());
        }
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        assert_eq!(value["capacity_rps"], 1_590.0);
        assert_eq!(value["goodput_rps"], 120.0);
        let ramp = &value["ramp"];
        assert_eq!(ramp["factor"], 4.0);
        assert_eq!(ramp["declared"], true);
        assert_eq!(ramp["warming_target_before"], 30);
        assert!(ramp["warming_opened_before"].is_null());
        let premium = &ramp["tiers"]["premium"];
        assert_eq!(
            (premium["shed_503"].as_u64(), premium["app_503"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(premium["p99_ms"], 9.0);

        let table = report.table();
        assert!(table.contains("app capacity 1590/s"), "{table}");
        assert!(table.contains("ramp at 25.0 s"), "{table}");
        assert!(table.contains("premium"), "{table}");
        ramp_tier.p50_ms = f64::NAN;
        if let Some(ramp) = report.ramp.as_mut() {
            ramp.tiers.insert("premium".to_owned(), ramp_tier);
        }
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        assert!(value["ramp"]["tiers"]["premium"]["p50_ms"].is_null());
    }
}
