//! A predicted step in demand for `headroom demo --ramp-at SECS --ramp-load X`,
//! so that pool warming can be measured on and off.
//!
//! The step is a time warp of the synthetic workload: arrivals before
//! `at` keep their times, later ones come `X / load` times faster
//! (`t' = at + (t - at) / factor`). The same users, cohorts and endpoint mix
//! send, only more often, so the requests after the step differ from those
//! before in rate alone. Sessions shrink by the same factor (a warp of the
//! whole process, on/off periods included).
//!
//! The step is declared to the proxy ahead of time as an operator would
//! declare a launch: `POST /v1/events` on the admin listener with the token
//! of the generated config, scope `all`, multiplier `factor`, from the step
//! to well past the run's end. The forecaster scales the forecasts of the
//! buckets the event covers, and the warmer sizes the pool from the highest
//! forecast within `warming.lead`.
//!
//! What the report adds is here too: the outcomes of the requests *sent* in
//! the first [`RAMP_WINDOW`] after the step, per tier ([`RampAcc`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::workload::{Planned, Source};

/// The part of the run after the step that the report looks at.
pub const RAMP_WINDOW: Duration = Duration::from_secs(2);

/// How many of the first requests sent after the step are reported apart:
/// those that meet the pool as the step finds it, before a cold pool has
/// caught up (at 1.2x the demo app's capacity, about 40 ms of arrivals).
pub const FIRST_REQUESTS: usize = 100;

/// How long past the run's end the declared event lasts, so that forecasts
/// issued near the end still see it (the step does not end with the run).
const EVENT_TAIL: Duration = Duration::from_secs(300);

/// Largest multiplier the proxy accepts for an event (`POST /v1/events`).
pub const MAX_RAMP_FACTOR: f64 = 1_000.0;

/// How long the admin API may take to answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A step in offered load at `at` from the run's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    /// When the step happens, from the start of the load.
    pub at: Duration,
    /// Offered load after the step, as a multiple of the app's capacity.
    pub load: f64,
}

impl Ramp {
    /// How many times faster arrivals come after the step than before, for
    /// a run at `base_load` (both positive: see [`Ramp::check`]).
    pub fn factor(&self, base_load: f64) -> f64 {
        self.load / base_load
    }

    /// The step, when `at_s` lies strictly inside `(0, duration)` and
    /// `load` is positive and finite with `load / base_load` at most
    /// [`MAX_RAMP_FACTOR`]; otherwise why not, naming the flag.
    pub fn check(
        at_s: f64,
        load: f64,
        base_load: f64,
        duration: Duration,
    ) -> Result<Self, RampError> {
        if !(load > 0.0 && load.is_finite()) {
            return Err(RampError::Load(load));
        }
        let at = match Duration::try_from_secs_f64(at_s) {
            Ok(at) if at_s > 0.0 && at < duration => at,
            _ => {
                return Err(RampError::Outside {
                    at_s,
                    duration_s: duration.as_secs_f64(),
                })
            }
        };
        let factor = load / base_load;
        if !(factor > 0.0 && factor <= MAX_RAMP_FACTOR) {
            return Err(RampError::Factor(factor));
        }
        Ok(Self { at, load })
    }
}

/// Why a ramp cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RampError {
    /// `--ramp-load` is not a positive finite number.
    #[error("--ramp-load must be a positive finite number, got {0}")]
    Load(f64),
    /// `--ramp-at` is not inside the run.
    #[error("--ramp-at must be inside the run (0 < SECS < --duration {duration_s}), got {at_s}")]
    Outside {
        /// The value given.
        at_s: f64,
        /// The run's duration.
        duration_s: f64,
    },
    /// `--ramp-load` over `--load` beyond what an event may declare.
    #[error("--ramp-load / --load must be at most {MAX_RAMP_FACTOR}, got {0}")]
    Factor(f64),
    /// Only one of the two flags was given.
    #[error("--ramp-at and --ramp-load go together")]
    Half,
    /// A ramp warps the synthetic workload; a trace has its own shape.
    #[error("--ramp-at works on the synthetic workload, not with --trace")]
    Trace,
}

/// A source whose arrivals after `at` come `factor` times faster.
pub(crate) struct Warped<S> {
    inner: S,
    at: Duration,
    factor: f64,
}

impl<S: Source> Warped<S> {
    /// Warps `inner` at `at` by `factor` (positive and finite).
    pub(crate) fn new(inner: S, at: Duration, factor: f64) -> Self {
        Self { inner, at, factor }
    }
}

/// `t` after the warp: unchanged before `at`, compressed by `factor` after.
fn warp(t: Duration, at: Duration, factor: f64) -> Duration {
    match t.checked_sub(at) {
        None => t,
        Some(after) => {
            let compressed = Duration::try_from_secs_f64(after.as_secs_f64() / factor);
            at.saturating_add(compressed.unwrap_or(Duration::MAX))
        }
    }
}

impl<S: Source> Source for Warped<S> {
    fn next_request(&mut self) -> Option<(Duration, Planned)> {
        let (t, planned) = self.inner.next_request()?;
        Some((warp(t, self.at, self.factor), planned))
    }
}

/// Declares the step to the proxy's admin API at `admin` as an all-traffic
/// event from `start` (wall clock) to `run_end` plus a tail, with
/// multiplier `factor`. Fails with the proxy's answer when it is not 201.
pub async fn declare_event(
    admin: SocketAddr,
    token: &str,
    start: SystemTime,
    run_end: SystemTime,
    factor: f64,
) -> Result<(), String> {
    let unix_ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|_| "the clock is before 1970".to_owned())
    };
    let body = serde_json::json!({
        "name": "demo-ramp",
        "start": unix_ms(start)?,
        "end": unix_ms(run_end + EVENT_TAIL)?,
        "scope": "all",
        "multiplier": factor,
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{admin}/v1/events"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("cannot build the event request: {e}"))?;
    let (status, text) = admin_call(request).await?;
    if status == StatusCode::CREATED {
        tracing::info!(factor, "ramp declared to the proxy as an event");
        Ok(())
    } else {
        Err(format!(
            "the proxy refused the ramp event ({status}): {text}"
        ))
    }
}

/// Connection figures read from the proxy's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmingReading {
    /// The warmer's target connections, summed over pools.
    pub target: u64,
    /// Connections the warmer has opened so far.
    pub opened: u64,
    /// Client requests so far that had to open a new upstream connection.
    pub request_opened: u64,
}

/// The warmer's gauges and the request-path connection count, read from the
/// proxy's `/metrics`.
pub async fn warming_metrics(admin: SocketAddr) -> Result<WarmingReading, String> {
    let request = Request::get(format!("http://{admin}/metrics"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("cannot build the metrics request: {e}"))?;
    let (status, text) = admin_call(request).await?;
    if status != StatusCode::OK {
        return Err(format!("/metrics answered {status}"));
    }
    Ok(parse_warming(&text))
}

/// Sums `headroom_warming_target_connections` (every pool) and reads
/// `headroom_warming_connections_opened_total` and
/// `headroom_request_connections_opened_total` from Prometheus text;
/// missing or unparsable samples count as 0.
pub(crate) fn parse_warming(text: &str) -> WarmingReading {
    let mut reading = WarmingReading::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value = value.trim().parse::<f64>().unwrap_or(0.0).max(0.0) as u64;
        let metric = name.split('{').next().unwrap_or("");
        match metric {
            "headroom_warming_target_connections" => reading.target += value,
            "headroom_warming_connections_opened_total" => reading.opened += value,
            "headroom_request_connections_opened_total" => reading.request_opened += value,
            _ => {}
        }
    }
    reading
}

/// One request to the admin listener: its status and body as text.
async fn admin_call(request: Request<Full<Bytes>>) -> Result<(StatusCode, String), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let call = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    match tokio::time::timeout(ADMIN_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| format!("admin API: {e}")),
        Err(_) => Err("admin API: no answer within 5 s".into()),
    }
}

/// How a response in the window ended, for [`RampAcc::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowOutcome {
    /// Let through and answered by the app (any status but its queue-full
    /// 503); `ok` when 2xx. Latency in microseconds.
    Served { ok: bool, micros: u64 },
    /// 429 from the proxy.
    Limited,
    /// 503 from the proxy's shedding.
    Shed,
    /// 503 from the app's full queue, passed through.
    AppRejected,
    /// No response.
    Error,
}

/// Outcomes of one tier's requests sent in the ramp window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RampTierReport {
    /// Requests sent in the window, errors included.
    pub requests: u64,
    /// 2xx responses.
    pub ok: u64,
    /// 429 responses.
    pub limited: u64,
    /// 503 responses from the proxy (shed).
    pub shed_503: u64,
    /// 503 responses from the app's full queue.
    pub app_503: u64,
    /// Requests with no response.
    pub errors: u64,
    /// Median latency of served requests (as in the tier report), ms; NaN
    /// (JSON `null`) when none were served.
    pub p50_ms: f64,
    /// 99th percentile of the same, ms; NaN when none.
    pub p99_ms: f64,
}

/// The ramp part of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RampReport {
    /// When the step happened, seconds from the start of the load.
    pub at_s: f64,
    /// Offered load after the step (multiple of capacity).
    pub load: f64,
    /// Arrivals after the step over arrivals before (the event's multiplier).
    pub factor: f64,
    /// Seconds after the step whose requests are reported (2, or less when
    /// the run ends sooner).
    pub window_s: f64,
    /// Whether the proxy accepted the step as a declared event.
    pub declared: bool,
    /// The warmer's target connections (all pools), read from the proxy's
    /// `/metrics` once a second: the last reading before the step, and the
    /// largest before it; `null` without readings.
    pub warming_target_before: Option<u64>,
    /// Largest target read before the step.
    pub warming_target_peak_before: Option<u64>,
    /// Connections the warmer opened between the first reading and the last
    /// one before the step.
    pub warming_opened_before: Option<u64>,
    /// Client requests that waited for a new upstream connection (none was
    /// idle in the pool) from just before the step to the end of the window,
    /// each paying the app's connection cost: what warming avoids; `null`
    /// when not measured.
    pub request_connections_in_window: Option<u64>,
    /// Connections the sample app accepted in the same span, the warmer's
    /// and the proxy's health checks' included; `null` when not measured.
    pub app_connections_in_window: Option<u64>,
    /// The first [`FIRST_REQUESTS`] requests sent after the step (all tiers)
    /// that the app served.
    pub first: FirstRequests,
    /// Per tier name, the requests sent in the window.
    pub tiers: BTreeMap<String, RampTierReport>,
}

/// Latency of the first requests sent after the step, ms (NaN, JSON `null`,
/// when none were served).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirstRequests {
    /// How many were served (at most [`FIRST_REQUESTS`]).
    pub count: usize,
    /// Mean latency.
    pub mean_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile (nearest rank).
    pub p90_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl FirstRequests {
    /// The figures of the `n` earliest-sent of `served` (send time, latency
    /// in µs), in any order.
    fn of(served: &[(Duration, u64)], n: usize) -> Self {
        let mut by_send = served.to_vec();
        by_send.sort_unstable();
        let mut micros: Vec<u64> = by_send.iter().take(n).map(|&(_, us)| us).collect();
        micros.sort_unstable();
        let Some(&max) = micros.last() else {
            return Self {
                count: 0,
                mean_ms: f64::NAN,
                p50_ms: f64::NAN,
                p90_ms: f64::NAN,
                max_ms: f64::NAN,
            };
        };
        let rank =
            |q: f64| micros[((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len()) - 1];
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            count: micros.len(),
            mean_ms: micros.iter().sum::<u64>() as f64 / micros.len() as f64 / 1_000.0,
            p50_ms: ms(rank(0.5)),
            p90_ms: ms(rank(0.9)),
            max_ms: ms(max),
        }
    }
}

/// Accumulates the outcomes of requests sent in `[from, until)`, by the
/// recorder's tier index.
pub(crate) struct RampAcc {
    from: Duration,
    until: Duration,
    tiers: Vec<(RampTierReport, Histogram<u64>)>,
    /// Send time and latency (µs) of every served request in the window.
    served: Vec<(Duration, u64)>,
}

impl RampAcc {
    /// An accumulator for requests sent in `[from, until)` from the start.
    pub(crate) fn new(from: Duration, until: Duration) -> Self {
        Self {
            from,
            until,
            tiers: Vec::new(),
            served: Vec::new(),
        }
    }

    /// Whether a request sent at `sent` (from the start) is in the window.
    fn covers(&self, sent: Duration) -> bool {
        sent >= self.from && sent < self.until
    }

    /// Records one outcome of a request sent at `sent` for the tier at
    /// `tier` (the recorder's index), when the window covers `sent`.
    pub(crate) fn record(&mut self, tier: usize, sent: Option<Duration>, outcome: WindowOutcome) {
        let Some(sent) = sent.filter(|&t| self.covers(t)) else {
            return;
        };
        if self.tiers.len() <= tier {
            self.tiers.resize_with(tier + 1, || {
                (
                    RampTierReport::default(),
                    super::recorder::latency_histogram(),
                )
            });
        }
        let (report, latency) = &mut self.tiers[tier];
        report.requests += 1;
        match outcome {
            WindowOutcome::Served { ok, micros } => {
                report.ok += u64::from(ok);
                latency.saturating_record(micros);
                self.served.push((sent, micros));
            }
            WindowOutcome::Limited => report.limited += 1,
            WindowOutcome::Shed => report.shed_503 += 1,
            WindowOutcome::AppRejected => report.app_503 += 1,
            WindowOutcome::Error => report.errors += 1,
        }
    }

    /// The per-tier reports, named by `name(index)`; tiers with no request
    /// in the window are left out.
    pub(crate) fn tiers<'a>(
        &self,
        name: impl Fn(usize) -> &'a str,
    ) -> BTreeMap<String, RampTierReport> {
        let quantile_ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                f64::NAN
            } else {
                h.value_at_quantile(q) as f64 / 1_000.0
            }
        };
        self.tiers
            .iter()
            .enumerate()
            .filter(|(_, (report, _))| report.requests > 0)
            .map(|(i, (report, latency))| {
                let report = RampTierReport {
                    p50_ms: quantile_ms(latency, 0.5),
                    p99_ms: quantile_ms(latency, 0.99),
                    ..report.clone()
                };
                (name(i).to_owned(), report)
            })
            .collect()
    }

    /// The first [`FIRST_REQUESTS`] served requests sent in the window.
    pub(crate) fn first(&self) -> FirstRequests {
        FirstRequests::of(&self.served, FIRST_REQUESTS)
    }

    /// The window's length in seconds.
    pub(crate) fn window_s(&self) -> f64 {
        self.until.saturating_sub(self.from).as_secs_f64()
    }
}

#[cfg(test)]
#[path = "ramp_tests.rs"]
mod tests;
