//! Shared, thread-safe accumulation of response outcomes while a run is live.
//!
//! Every response task records into one mutex-guarded state: a few counter
//! increments and a histogram update, held for well under a microsecond, which
//! at the few thousand requests/s a two-core demo reaches costs far less than
//! per-task sharding would save. Latencies go into HdrHistograms in
//! microseconds with two significant digits (1 % resolution) up to one hour.
//!
//! With a ramp, the requests *sent* in the window after the step are also
//! accumulated apart ([`RampAcc`]); a request's send time is taken as its
//! response time minus its latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::ramp::{RampAcc, RampReport, WindowOutcome};
use super::report::{score_forecasts, LoadReport, RunTotals, TierReport};

/// Largest latency the histograms hold, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// At most this many distinct tier names are kept; others count as `other`.
const MAX_TIERS: usize = 32;

/// Tier name for responses without an `x-headroom-tier` header.
const NO_TIER: &str = "none";

/// A latency histogram in microseconds.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("constant bounds are valid")
}

/// Accumulated outcomes of one tier.
struct TierAcc {
    name: String,
    report: TierReport,
    latency: Histogram<u64>,
}

/// Per-user state: the last tier seen and sampled forecasts.
#[derive(Default)]
struct UserAcc {
    last_tier: Option<usize>,
    /// (ms since start, forecast requests/s), at most one per second.
    samples: Vec<(u32, f64)>,
}

/// Counters for the live summary line.
struct LiveAcc {
    ok: u64,
    app_rejected: u64,
    limited: u64,
    shed: u64,
    errors: u64,
    interval: Histogram<u64>,
}

/// Everything behind the mutex.
struct Inner {
    tiers: Vec<TierAcc>,
    users: Vec<UserAcc>,
    live: LiveAcc,
    ramp: Option<RampAcc>,
}

/// Collects the outcomes of one run.
pub(crate) struct Recorder {
    start: Instant,
    /// Requests sent before this (from the start) count everywhere but in
    /// the tiers' latency percentiles.
    warmup: Duration,
    sent: AtomicU64,
    not_sent: AtomicU64,
    invalid: AtomicU64,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// A recorder whose times count from `start`.
    pub(crate) fn new(start: Instant) -> Self {
        let live = LiveAcc {
            ok: 0,
            app_rejected: 0,
            limited: 0,
            shed: 0,
            errors: 0,
            interval: latency_histogram(),
        };
        Self {
            start,
            warmup: Duration::ZERO,
            sent: AtomicU64::new(0),
            not_sent: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                tiers: Vec::new(),
                users: Vec::new(),
                live,
                ramp: None,
            }),
        }
    }

    /// Leaves the requests sent in the first `warmup` out of the tiers'
    /// latency percentiles (they still count as sent, admitted, shed...).
    pub(crate) fn with_warmup(mut self, warmup: Duration) -> Self {
        self.warmup = warmup;
        self
    }

    /// Also accumulates, apart, the requests sent in `[from, until)` from the
    /// start: the ramp window.
    pub(crate) fn with_ramp_window(self, from: Duration, until: Duration) -> Self {
        if let Ok(mut inner) = self.inner.lock() {
            inner.ramp = Some(RampAcc::new(from, until));
        }
        self
    }

    /// Counts a request handed to the client.
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent so far.
    pub(crate) fn sent_count(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Counts a request dropped because the in-flight bound was reached.
    pub(crate) fn not_sent(&self) {
        self.not_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a trace request whose path could not form a URI.
    pub(crate) fn invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a response to `user` received after `latency`.
    pub(crate) fn response(
        &self,
        user: u32,
        status: StatusCode,
        headers: &HeaderMap,
        latency: Duration,
    ) {
        let now_ms = millis_since(self.start);
        let tier_name = headers.get("x-headroom-tier").and_then(|v| v.to_str().ok());
        let forecast = headers
            .get("x-headroom-forecast-rps")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0);
        let app_overload = headers.get("x-demo-app").is_some_and(|v| v == "queue-full");
        let shed =
            status == StatusCode::SERVICE_UNAVAILABLE && tier_name.is_some() && !app_overload;
        let limited = status == StatusCode::TOO_MANY_REQUESTS;
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let sent = self.start.elapsed().checked_sub(latency);

        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        let tier = tier_index(&mut inner.tiers, tier_name.unwrap_or(NO_TIER));
        let acc = &mut inner.tiers[tier];
        acc.report.requests += 1;
        let outcome = if limited {
            acc.report.limited += 1;
            inner.live.limited += 1;
            WindowOutcome::Limited
        } else if shed {
            acc.report.shed += 1;
            inner.live.shed += 1;
            WindowOutcome::Shed
        } else if app_overload {
            // Passed the proxy, refused by the app: admitted, but neither a
            // success nor a latency sample.
            acc.report.admitted += 1;
            acc.report.app_rejected += 1;
            inner.live.app_rejected += 1;
            WindowOutcome::AppRejected
        } else {
            let ok = status.is_success();
            acc.report.admitted += 1;
            acc.report.ok += u64::from(ok);
            if sent.map_or(self.warmup.is_zero(), |t| t >= self.warmup) {
                acc.latency.saturating_record(micros);
            }
            inner.live.ok += 1;
            inner.live.interval.saturating_record(micros);
            WindowOutcome::Served { ok, micros }
        };
        if let Some(ramp) = inner.ramp.as_mut() {
            ramp.record(tier, sent, outcome);
        }

        // Remember the tier, and keep the first forecast of each second.
        let user = user_acc(&mut inner.users, user);
        user.last_tier = Some(tier);
        if let Some(forecast) = forecast {
            let second = |ms: u32| ms / 1_000;
            if user
                .samples
                .last()
                .is_none_or(|&(t, _)| second(t) != second(now_ms))
            {
                user.samples.push((now_ms, forecast));
            }
        }
    }

    /// Records a request to `user` that got no response after `waited`.
    pub(crate) fn error(&self, user: u32, waited: Duration) {
        let sent = self.start.elapsed().checked_sub(waited);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        let last = user_acc(&mut inner.users, user).last_tier;
        let tier = last.unwrap_or_else(|| tier_index(&mut inner.tiers, NO_TIER));
        inner.tiers[tier].report.requests += 1;
        inner.tiers[tier].report.errors += 1;
        inner.live.errors += 1;
        if let Some(ramp) = inner.ramp.as_mut() {
            ramp.record(tier, sent, WindowOutcome::Error);
        }
    }

    /// The live summary line; resets the interval latency histogram.
    pub(crate) fn live_line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let sent = self.sent.load(Ordering::Relaxed);
        let not_sent = self.not_sent.load(Ordering::Relaxed);
        let Ok(mut inner) = self.inner.lock() else {
            return String::new();
        };
        let live = &mut inner.live;
        let p99 = if live.interval.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1}ms",
                live.interval.value_at_quantile(0.99) as f64 / 1_000.0
            )
        };
        live.interval.reset();
        format!(
            "[{elapsed:6.1}s] sent {sent} ok {} 429 {} 503 {} app-503 {} err {} unsent {not_sent} p99(1s) {p99}",
            live.ok, live.limited, live.shed, live.app_rejected, live.errors
        )
    }

    /// The final report. `sends[u]` are user *u*'s send times in ms (sorted) and
    /// `sending` is how long requests were sent for.
    pub(crate) fn finish(
        &self,
        sending: Duration,
        sends: &[Vec<u32>],
        offered_load: f64,
        shaping: bool,
        warming: bool,
    ) -> LoadReport {
        let sent = self.sent.load(Ordering::Relaxed);
        let seconds = sending.as_secs_f64();
        let totals = RunTotals {
            sent,
            not_sent: self.not_sent.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            users: sends.iter().filter(|s| !s.is_empty()).count() as u64,
            sent_rps: if seconds > 0.0 {
                sent as f64 / seconds
            } else {
                0.0
            },
        };
        let Ok(inner) = self.inner.lock() else {
            return LoadReport {
                totals,
                ..LoadReport::default()
            };
        };
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let tiers = inner
            .tiers
            .iter()
            .map(|acc| {
                let quantile_ms = |q: f64| {
                    if acc.latency.is_empty() {
                        f64::NAN
                    } else {
                        acc.latency.value_at_quantile(q) as f64 / 1_000.0
                    }
                };
                let report = TierReport {
                    p50_ms: quantile_ms(0.5),
                    p99_ms: quantile_ms(0.99),
                    goodput_rps: per_s(acc.report.ok),
                    ..acc.report.clone()
                };
                (acc.name.clone(), report)
            })
            .collect();
        let samples: Vec<Vec<(u32, f64)>> = inner.users.iter().map(|u| u.samples.clone()).collect();
        let end_ms = u32::try_from(sending.as_millis()).unwrap_or(u32::MAX);
        let ok: u64 = inner.tiers.iter().map(|acc| acc.report.ok).sum();
        let ramp = inner.ramp.as_ref().map(|ramp| RampReport {
            window_s: ramp.window_s(),
            first: ramp.first(),
            tiers: ramp.tiers(|i| inner.tiers[i].name.as_str()),
            ..RampReport::default()
        });
        LoadReport {
            duration_s: seconds,
            offered_load,
            shaping,
            warming,
            tiers,
            forecast: score_forecasts(sends, &samples, end_ms),
            goodput_rps: per_s(ok),
            warmup_s: self.warmup.as_secs_f64(),
            capacity_rps: None,
            app: None,
            ramp,
            totals,
        }
    }
}

/// Milliseconds since `start`, saturating at about 49 days.
pub(crate) fn millis_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// The index of tier `name`, added on first sight (beyond 32 names: `other`).
fn tier_index(tiers: &mut Vec<TierAcc>, name: &str) -> usize {
    if let Some(index) = tiers.iter().position(|t| t.name == name) {
        return index;
    }
    let name = if tiers.len() < MAX_TIERS {
        name
    } else {
        "other"
    };
    if let Some(index) = tiers.iter().position(|t| t.name == name) {
        return index;
    }
    tiers.push(TierAcc {
        name: name.to_owned(),
        report: TierReport::default(),
        latency: latency_histogram(),
    });
    tiers.len() - 1
}

/// The accumulator of `user`, growing the table as needed.
fn user_acc(users: &mut Vec<UserAcc>, user: u32) -> &mut UserAcc {
    let index = usize::try_from(user).expect("u32 fits usize");
    if users.len() <= index {
        users.resize_with(index + 1, UserAcc::default);
    }
    &mut users[index]
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn responses_are_classified_by_status_and_proxy_headers() {
        let recorder = Recorder::new(Instant::now());
        let ms = Duration::from_millis;
        let premium = headers(&[
            ("x-headroom-tier", "premium"),
            ("x-headroom-forecast-rps", "2.5"),
        ]);
        recorder.response(0, StatusCode::OK, &premium, ms(5));
        recorder.response(0, StatusCode::TOO_MANY_REQUESTS, &premium, ms(1));
        recorder.response(0, StatusCode::SERVICE_UNAVAILABLE, &premium, ms(1));
        let app_full = headers(&[("x-headroom-tier", "premium"), ("x-demo-app", "queue-full")]);
        recorder.response(0, StatusCode::SERVICE_UNAVAILABLE, &app_full, ms(7));
        recorder.response(1, StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), ms(2));
        recorder.error(0, Duration::ZERO);
        recorder.error(2, Duration::ZERO);

        let report = recorder.finish(
            Duration::from_secs(1),
            &[vec![0], vec![0]],
            1.0,
            true,
            false,
        );
        let premium = &report.tiers["premium"];
        assert_eq!(
            (
                premium.requests,
                premium.admitted,
                premium.limited,
                premium.shed
            ),
            (5, 2, 1, 1)
        );
        assert_eq!((premium.errors, premium.app_rejected), (1, 1));
        // The app's own 503 (7 ms) is not a latency sample: only the 5 ms OK is.
        assert!(premium.p50_ms >= 4.9 && premium.p99_ms < 5.1, "{premium:?}");
        let none = &report.tiers["none"];
        assert_eq!(
            (none.requests, none.admitted, none.shed, none.errors),
            (2, 1, 0, 1)
        );
        assert_eq!(report.totals.users, 2);
    }

    #[test]
    fn requests_sent_in_the_warm_up_count_but_are_not_latency_samples() {
        // The recorder started 3 s ago with a 2 s warm-up.
        let start = Instant::now() - Duration::from_secs(3);
        let recorder = Recorder::new(start).with_warmup(Duration::from_secs(2));
        let premium = headers(&[("x-headroom-tier", "premium")]);
        let ms = Duration::from_millis;
        // Sent 2.5 s in (answered now after 500 ms): a warm-up request.
        recorder.response(0, StatusCode::OK, &premium, ms(2_500));
        // Sent 2.99 s in: measured.
        recorder.response(0, StatusCode::OK, &premium, ms(10));
        let report = recorder.finish(Duration::from_secs(3), &[vec![0]], 1.0, true, true);
        let premium = &report.tiers["premium"];
        assert_eq!((premium.requests, premium.ok), (2, 2), "both counted");
        assert!(
            premium.p99_ms < 11.0,
            "only the 10 ms one is a sample: {premium:?}"
        );
        assert!((report.warmup_s - 2.0).abs() < 1e-9);
    }

    #[test]
    fn tier_names_beyond_the_bound_fold_into_other() {
        let mut tiers = Vec::new();
        for i in 0..40 {
            tier_index(&mut tiers, &format!("t{i}"));
        }
        assert_eq!(tiers.len(), MAX_TIERS + 1);
        assert_eq!(tiers[MAX_TIERS].name, "other");
    }
}
