//! The load generator: sends a [`Source`]'s requests on time, with a bounded
//! number in flight, and records what came back.
//!
//! Requests are sent on their schedule whether or not earlier ones answered (an
//! open-loop generator), because real users do not wait for each other: that is
//! what lets overload build up. The client is hyper's pooled keep-alive client.
//! At most `MAX_IN_FLIGHT` requests are outstanding; a request due while that
//! many are in flight is counted as not sent rather than queued, so the
//! generator's own backlog can never distort the latencies it reports. Each
//! request has a 5 s timeout, after which it counts as an error; the run ends at
//! its duration (or when the workload runs out) and then waits for requests in
//! flight for at most that timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::app::{SampleAppHandle, SlotUse};
use super::ramp::{Ramp, RampError, Warped, RAMP_WINDOW};
use super::recorder::{millis_since, Recorder};
use super::report::LoadReport;
use super::route::Route;
use super::workload::{synthetic_mix, Planned, Source, SyntheticSource, TraceSource};
use crate::trace::{self, Trace, TraceError, TraceRecord};

/// Requests outstanding at once, at most.
pub const MAX_IN_FLIGHT: usize = 2048;

/// A request with no complete response after this long counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Synthetic clients a counts-only trace is spread over.
const SYNTHETIC_TRACE_CLIENTS: u32 = 500;

/// Seed of the synthetic workload, fixed so runs are comparable.
const WORKLOAD_SEED: u64 = 0x6865_6164_726f_6f6d;

/// What `headroom demo` runs; the lead's command line fills it in.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// How long to send load. Default 30 s.
    pub duration: Duration,
    /// A trace to replay instead of the synthetic workload.
    pub trace: Option<PathBuf>,
    /// Trace time compression (`t_wall = t_trace / speed`). 0 or less picks the
    /// speed that makes the trace's mean rate `load` times the app's capacity.
    /// Default 0 (automatic). Ignored without a trace.
    pub speed: f64,
    /// Synthetic offered load as a multiple of the app's capacity. Default 1.5.
    pub load: f64,
    /// Print the final report as JSON instead of a table.
    pub json: bool,
    /// Whether the proxy shapes traffic (reported; the proxy is configured by the caller).
    pub shaping: bool,
    /// Whether the proxy warms pools (reported; configured by the caller).
    pub warming: bool,
    /// HS256 secret the synthetic users' tokens are signed with; the proxy must
    /// verify with the same secret.
    pub jwt_secret: String,
    /// A step in the synthetic load (see [`Ramp`]); `None` (the default)
    /// keeps `load` for the whole run. Not with a trace.
    pub ramp: Option<Ramp>,
    /// Requests sent in this first part of the run are left out of the
    /// tiers' latency percentiles: at the start the load generator opens its
    /// connections all at once and the proxy's state is cold. Default 2 s;
    /// at most a quarter of `duration` is used.
    pub warmup: Duration,
}

/// Default [`DemoOptions::warmup`].
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(30),
            trace: None,
            speed: 0.0,
            load: 1.5,
            json: false,
            shaping: true,
            warming: true,
            jwt_secret: String::new(),
            ramp: None,
            warmup: DEFAULT_WARMUP,
        }
    }
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A synthetic user's token could not be signed.
    #[error("cannot sign demo token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// The target is not an `http://host:port` URL.
    #[error("target {0:?} is not an http://host:port URL")]
    Target(String),
    /// The speed or load is not a positive finite number.
    #[error("{name} must be a positive finite number, got {value}")]
    NotPositive {
        /// Which option.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// An option that may be zero is negative or not finite.
    #[error("{name} must be zero or a positive finite number, got {value}")]
    Negative {
        /// Which option.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// The trace holds no request within the run.
    #[error("trace has no requests within the run to replay")]
    EmptyTrace,
    /// The ramp flags are not usable.
    #[error(transparent)]
    Ramp(#[from] RampError),
}

/// Sends the demo's load through the proxy at `proxy_url` (e.g.
/// `http://127.0.0.1:8080`) for `opts.duration`, printing a live line to stderr
/// every second, and returns the final report (not printed).
///
/// Offered load is `opts.load` times `app`'s capacity for the synthetic mix, or,
/// with a trace, the measured send rate over the app's capacity for the trace's
/// mix of endpoints. With `opts.ramp`, the synthetic workload steps up (or
/// down) at the ramp's time and the report carries the ramp window; the
/// caller fills in what the proxy was told ([`super::ramp::RampReport`]).
pub async fn run_load(
    opts: &DemoOptions,
    proxy_url: &str,
    app: &SampleAppHandle,
) -> Result<LoadReport, LoadError> {
    let run = Run {
        base: base_url(proxy_url)?,
        duration: opts.duration,
        live: true,
        window: None,
        warmup: opts.warmup.min(opts.duration / 4),
    };
    let Some(path) = &opts.trace else {
        positive("load", opts.load)?;
        let capacity = app.capacity_rps_for(&synthetic_mix());
        let source = SyntheticSource::new(
            opts.load * capacity,
            opts.jwt_secret.as_bytes(),
            WORKLOAD_SEED,
        )?;
        let load = async {
            match opts.ramp {
                None => Ok(run
                    .execute(source, opts.load, opts.shaping, opts.warming, |_| 1.0)
                    .await),
                Some(ramp) => {
                    let checked =
                        Ramp::check(ramp.at.as_secs_f64(), ramp.load, opts.load, opts.duration)?;
                    let factor = checked.factor(opts.load);
                    let source = Warped::new(source, checked.at, factor);
                    let window = (checked.at, (checked.at + RAMP_WINDOW).min(opts.duration));
                    let mut report = run
                        .with_window(window)
                        .execute(source, opts.load, opts.shaping, opts.warming, |_| 1.0)
                        .await;
                    if let Some(out) = report.ramp.as_mut() {
                        out.at_s = checked.at.as_secs_f64();
                        out.load = checked.load;
                        out.factor = factor;
                    }
                    Ok::<_, LoadError>(report)
                }
            }
        };
        let (report, slots) = with_slot_use(app, load).await;
        let mut report = report?;
        report.capacity_rps = Some(capacity);
        report.app = Some(slots);
        return Ok(report);
    };
    if opts.ramp.is_some() {
        return Err(RampError::Trace.into());
    }

    // A trace: compress its time so that it fills the run at the asked load.
    let (records, speed, profile) = load_trace(path, opts.duration, opts.speed, |profile| {
        positive("load", opts.load)?;
        Ok(opts.load * app.capacity_rps_for(&profile.mix) / profile.mean_rps)
    })?;
    let capacity = app.capacity_rps_for(&profile.mix);
    let source = TraceSource::new(records, speed);
    let offered = |sent_rps: f64| sent_rps / capacity;
    let (mut report, slots) = with_slot_use(
        app,
        run.execute(source, 0.0, opts.shaping, opts.warming, offered),
    )
    .await;
    report.capacity_rps = Some(capacity);
    report.app = Some(slots);
    Ok(report)
}

/// Runs `load` and measures how `app`'s worker slots were used meanwhile.
async fn with_slot_use<T>(
    app: &SampleAppHandle,
    load: impl std::future::Future<Output = T>,
) -> (T, SlotUse) {
    let (before, started) = (app.stats(), std::time::Instant::now());
    let out = load.await;
    let used = app
        .stats()
        .slot_use_since(&before, app.config().workers, started.elapsed());
    (out, used)
}

/// Replays the trace at `trace` against `target` at `speed` (positive), for
/// `duration` or until the trace ends; see [`run_load`] for the mechanics.
/// `offered_load` is 0 in the report: the target's capacity is unknown.
pub(crate) async fn replay_trace(
    trace: &Path,
    target: &str,
    speed: f64,
    duration: Option<Duration>,
    live: bool,
) -> Result<LoadReport, LoadError> {
    let base = base_url(target)?;
    positive("speed", speed)?;
    // Without a duration, run to the end of the trace (its span / speed).
    let within = duration.unwrap_or(Duration::MAX);
    let (records, speed, _) = load_trace(trace, within, speed, |_| Ok(speed))?;
    let span_s = records.last().map_or(0, |r| r.t_ms) as f64 / 1_000.0 / speed;
    let span = Duration::try_from_secs_f64(span_s).unwrap_or(Duration::MAX);
    let until_end = span.saturating_add(Duration::from_millis(1));
    let run = Run {
        base,
        duration: duration.unwrap_or(until_end),
        live,
        window: None,
        warmup: Duration::ZERO,
    };
    let source = TraceSource::new(records, speed);
    Ok(run.execute(source, 0.0, false, false, |_| 0.0).await)
}

/// A trace's mean rate (requests per second of trace time) and endpoint mix.
struct TraceProfile {
    mean_rps: f64,
    mix: Vec<(Route, f64)>,
}

impl TraceProfile {
    /// The profile of a whole trace; a span under one second counts as one second.
    fn of(trace: &Trace) -> Self {
        match trace {
            Trace::Requests(requests) => {
                let span_s = (requests.span_ms() as f64 / 1_000.0).max(1.0);
                let mean_rps = requests.records.len() as f64 / span_s;
                Self {
                    mean_rps,
                    mix: trace_mix(&requests.records),
                }
            }
            Trace::Counts { series, .. } => {
                let span_ms = series.counts.len() as f64 * series.step_ms as f64;
                let mean_rps = series.total() as f64 / (span_ms / 1_000.0).max(1.0);
                // Expanded series requests all go to `/`.
                Self {
                    mean_rps,
                    mix: vec![(Route::classify("/"), 1.0)],
                }
            }
        }
    }
}

/// Reads a trace and returns the requests that fall within `duration` when
/// replayed at `speed`, or at `auto_speed(profile)` when `speed` is not
/// positive, with the speed used and the trace's profile. A counts series is
/// expanded only as far as the run reaches, so a short replay of the 58-day
/// NASA series stays small.
fn load_trace(
    path: &Path,
    duration: Duration,
    speed: f64,
    auto_speed: impl FnOnce(&TraceProfile) -> Result<f64, LoadError>,
) -> Result<(Vec<TraceRecord>, f64, TraceProfile), LoadError> {
    let trace = trace::open(path)?;
    let stats = trace.stats();
    let format = trace.format();
    tracing::info!(path = %path.display(), ?format, lines = stats.lines, malformed = stats.malformed, "trace read");
    let profile = TraceProfile::of(&trace);
    if profile.mean_rps <= 0.0 {
        return Err(LoadError::EmptyTrace);
    }
    let speed = if speed > 0.0 {
        speed
    } else {
        auto_speed(&profile)?
    };
    positive("speed", speed)?;

    // Trace time the run covers; beyond u64 milliseconds means "all of it".
    let until_ms = duration.as_secs_f64() * 1_000.0 * speed;
    let until_ms = (until_ms < u64::MAX as f64).then(|| until_ms.ceil() as u64);
    let records = trace.into_records(SYNTHETIC_TRACE_CLIENTS, until_ms);
    if records.is_empty() {
        return Err(LoadError::EmptyTrace);
    }
    tracing::info!(speed, requests = records.len(), "trace replay planned");
    Ok((records, speed, profile))
}

/// The share of requests per endpoint class in the records.
fn trace_mix(records: &[TraceRecord]) -> Vec<(Route, f64)> {
    let mut counts = [0u64; Route::ALL.len()];
    for record in records {
        counts[Route::classify(&record.path) as usize] += 1;
    }
    Route::ALL
        .iter()
        .zip(counts)
        .map(|(&route, n)| (route, n as f64))
        .collect()
}

/// `Ok` when `value` is positive and finite.
fn positive(name: &'static str, value: f64) -> Result<(), LoadError> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(LoadError::NotPositive { name, value })
    }
}

/// The URL prefix requests are built on: `http://authority` without a trailing slash.
fn base_url(url: &str) -> Result<String, LoadError> {
    let uri: Uri = url.parse().map_err(|_| LoadError::Target(url.to_owned()))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) if uri.path() == "/" || uri.path().is_empty() => {
            Ok(format!("http://{authority}"))
        }
        _ => Err(LoadError::Target(url.to_owned())),
    }
}

/// Bytes a trace path may contain unescaped in a request target.
fn is_uri_safe(byte: u8) -> bool {
    byte.is_ascii_graphic()
        && !matches!(
            byte,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// `base` + `path`, percent-encoding bytes a URI cannot carry; `None` if still invalid.
fn request_uri(base: &str, path: &str) -> Option<Uri> {
    let mut target = String::with_capacity(base.len() + path.len());
    target.push_str(base);
    for byte in path.bytes() {
        if is_uri_safe(byte) {
            target.push(char::from(byte));
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
    target.parse().ok()
}

/// One run of the engine.
pub(crate) struct Run {
    /// `http://authority` to send to.
    pub base: String,
    /// How long to send.
    pub duration: Duration,
    /// Whether to print the live line every second.
    pub live: bool,
    /// Requests sent before this are left out of latency percentiles.
    pub warmup: Duration,
    /// Requests sent in `[from, until)` are also reported apart (a ramp).
    pub window: Option<(Duration, Duration)>,
}

impl Run {
    /// The same run, reporting the requests sent in `window` apart.
    pub(crate) fn with_window(self, window: (Duration, Duration)) -> Self {
        Self {
            window: Some(window),
            ..self
        }
    }

    /// Sends `source`'s requests until the duration ends or the source runs out,
    /// waits for the stragglers, and builds the report. `offered(sent_rps)` gives
    /// the report's offered load when `load` is 0.
    pub(crate) async fn execute(
        self,
        mut source: impl Source,
        load: f64,
        shaping: bool,
        warming: bool,
        offered: impl Fn(f64) -> f64,
    ) -> LoadReport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build(connector);
        let start = Instant::now();
        let mut recorder = Recorder::new(start).with_warmup(self.warmup);
        if let Some((from, until)) = self.window {
            recorder = recorder.with_ramp_window(from, until);
        }
        let recorder = Arc::new(recorder);
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (stop_live, live_stopped) = watch::channel(false);
        let ticker = self
            .live
            .then(|| tokio::spawn(live_lines(Arc::clone(&recorder), live_stopped)));

        // Send on schedule; per-user send times feed the forecast score.
        let mut sends: Vec<Vec<u32>> = Vec::new();
        let mut tasks = JoinSet::new();
        while let Some((offset, planned)) = source.next_request() {
            if offset >= self.duration {
                break;
            }
            // An offset too far to represent is beyond any run.
            let Some(due) = start.checked_add(offset) else {
                break;
            };
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            while tasks.try_join_next().is_some() {}
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                recorder.not_sent();
                continue;
            };
            let Some(request) = build_request(&self.base, &planned) else {
                recorder.invalid();
                continue;
            };
            let user = usize::try_from(planned.user).expect("u32 fits usize");
            if sends.len() <= user {
                sends.resize_with(user + 1, Vec::new);
            }
            sends[user].push(millis_since(start));
            recorder.sent();
            let (client, recorder) = (client.clone(), Arc::clone(&recorder));
            tasks.spawn(async move {
                send(&client, request, planned.user, &recorder).await;
                drop(permit);
            });
        }
        // A workload that ran out early still runs to the end of the duration,
        // so the report covers the whole run and the process exits on time.
        if let Some(end) = start.checked_add(self.duration) {
            tokio::time::sleep_until(end).await;
        }
        let sending = start.elapsed().min(self.duration);

        // Every request times out by itself; the grace only guards against a bug.
        let drained = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "requests still in flight after the timeout"
            );
            tasks.abort_all();
        }
        let _ = stop_live.send(true);
        if let Some(ticker) = ticker {
            let _ = ticker.await;
        }

        let sent_rps = recorder.sent_count() as f64 / sending.as_secs_f64().max(1e-3);
        let offered_load = if load > 0.0 { load } else { offered(sent_rps) };
        recorder.finish(sending, &sends, offered_load, shaping, warming)
    }
}

/// The HTTP request for a planned one; `None` when its path cannot form a URI.
fn build_request(base: &str, planned: &Planned) -> Option<Request<Empty<Bytes>>> {
    let uri = request_uri(base, &planned.path)?;
    let mut request = Request::builder().method(planned.method.clone()).uri(uri);
    let headers = request.headers_mut()?;
    headers.insert(planned.identity.0.clone(), planned.identity.1.clone());
    if let Some(agent) = &planned.user_agent {
        headers.insert(http::header::USER_AGENT, agent.clone());
    }
    request.body(Empty::new()).ok()
}

/// Sends one request, reads its whole body, and records the outcome.
async fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
    user: u32,
    recorder: &Recorder,
) {
    let started = Instant::now();
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let (parts, mut body) = response.into_parts();
        // Read frames without keeping them: an export is megabytes.
        while let Some(frame) = body.frame().await {
            frame.ok()?;
        }
        Some(parts)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Some(parts)) => recorder.response(user, parts.status, &parts.headers, started.elapsed()),
        Ok(None) | Err(_) => recorder.error(user, started.elapsed()),
    }
}

/// Prints the live summary line to stderr every second until stopped.
async fn live_lines(recorder: Arc<Recorder>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => eprintln!("{}", recorder.live_line()),
            _ = stop.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_plain_http_urls() {
        assert_eq!(
            base_url("http://127.0.0.1:8080").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080/").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(base_url("https://127.0.0.1:8080").is_err());
        assert!(base_url("127.0.0.1:8080").is_err());
        assert!(base_url("http://127.0.0.1:8080/prefix").is_err());
    }

    #[test]
    fn unsafe_path_bytes_are_percent_encoded() {
        let uri = request_uri("http://h:1", "/a b/\"q\"?x=ü").expect("encodable");
        assert_eq!(uri.to_string(), "http://h:1/a%20b/%22q%22?x=%C3%BC");
    }
}
