//! The sample application behind `headroom demo`: endpoints of different cost
//! and a limited number of worker slots, so that overload is real.
//!
//! Capacity is modelled, not burned: each request holds one of `workers` slots
//! (a fair tokio semaphore, so waiters are served in arrival order) for its
//! service time, which is spent in `tokio::time::sleep`. The demo machine has two
//! cores shared by the proxy and the load generator; burning CPU here would make
//! the proxy's own latency the bottleneck and hide what shaping does. A sleeping
//! slot behaves like a server thread blocked on a database: throughput is capped
//! at `workers / mean service time` and, past that, requests queue and latency
//! rises. With the defaults (16 slots, the reference mix in `route.rs`: mean slot
//! time about 9.1 ms) capacity is about 1,760 requests/s, and about 1,590 for
//! the synthetic workload's heavier mix; [`SampleAppHandle::capacity_rps`]
//! computes it from the configuration, including the ~0.3 ms per request that
//! tokio's 1 ms timer adds (measured: see `route.rs`).
//!
//! Connection setup has a cost, as it has at a real backend behind TLS or
//! per-connection authentication: each new connection waits `connect_cost`
//! (default 5 ms, the order of a TLS handshake with a per-connection
//! credential check on a LAN) before its first request is read, without holding a worker slot
//! (the handshake is the transport's work, not a worker's). Requests on a
//! kept-alive connection pay nothing. This is what lets a proxy that keeps
//! connections ready (pool warming) serve a sudden rise in demand faster
//! than one that must open them at that moment; on plain loopback a new
//! connection costs tens of microseconds and warming could not show.
//!
//! Beyond `queue_limit` waiting requests the app answers 503 with
//! `x-demo-app: queue-full`, so a report can tell its own overload apart from the
//! proxy's shedding. `GET /healthz` is free. The app echoes nothing from the
//! request; it only counts the `x-headroom-tier` header it receives, per tier.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::body::{payload, PacedBody};
use super::route::{Route, RouteCosts};
use crate::trace::mix64;

/// How long shutdown waits for open connections to finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Default [`SampleAppConfig::connect_cost`].
pub const DEFAULT_CONNECT_COST: Duration = Duration::from_millis(5);

/// At most this many distinct tier names are counted; others count as `other`.
const MAX_TIER_NAMES: usize = 32;

/// The response body type: a whole payload, or a paced export stream.
type AppBody = Either<Full<Bytes>, PacedBody<Slot>>;

/// Configuration of the sample application.
#[derive(Debug, Clone)]
pub struct SampleAppConfig {
    /// Listen address; must be a loopback address. Port 0 picks a free port.
    /// Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Worker slots: requests served at once. Default 16; 0 is treated as 1.
    pub workers: usize,
    /// Requests allowed to wait for a slot before the app answers 503; `None`
    /// waits without bound. Default `Some(256)`: about 0.16 s of queue at
    /// capacity, and below the load generator's 512 requests in flight, so the
    /// app's own overload shows as 503s rather than as requests not sent.
    pub queue_limit: Option<usize>,
    /// Service time and size of each endpoint class.
    pub costs: RouteCosts,
    /// Setup time of each new connection, spent before its first request is
    /// read (see the module docs). Default 5 ms; zero turns it off. Sleeps
    /// run on tokio's 1 ms timer, so a non-zero cost is rounded up to the
    /// next millisecond and may be late by up to about one more.
    pub connect_cost: Duration,
}

impl Default for SampleAppConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: 16,
            queue_limit: Some(256),
            costs: RouteCosts::default(),
            connect_cost: DEFAULT_CONNECT_COST,
        }
    }
}

/// Counters of a running sample application (a snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Requests received, `/healthz` included.
    pub requests: u64,
    /// Requests that got a worker slot and were served.
    pub served: u64,
    /// Requests answered 503 because the wait queue was full.
    pub rejected: u64,
    /// Connections accepted (each paid `connect_cost` once).
    pub connections: u64,
    /// Most requests seen waiting for a slot at once.
    pub peak_waiting: u64,
    /// Worker slots released so far (requests that held one).
    pub slots_released: u64,
    /// Total time those slots were held, in microseconds: service time, the
    /// timer's lateness on a busy machine, and export streaming.
    pub slot_busy_us: u64,
    /// Requests per `x-headroom-tier` value received (`none` when absent).
    pub by_tier: BTreeMap<String, u64>,
    /// Requests per endpoint class (`read`, `search`, ...).
    pub by_route: BTreeMap<&'static str, u64>,
}

/// How the app's worker slots were used between two [`AppStats`] snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SlotUse {
    /// Share of the slots' time that was held by requests (0..=1 up to
    /// requests that straddle the snapshots).
    pub utilisation: f64,
    /// Mean time a request held its slot, ms, as measured: on a busy
    /// machine the service sleeps wake late and this exceeds the model.
    pub mean_slot_ms: f64,
    /// `workers / mean_slot_ms`: the requests per second the app can serve
    /// at the slot times it really delivered (NaN with no slot released).
    pub capacity_measured_rps: f64,
}

impl AppStats {
    /// The slot use between `earlier` and `self`, taken `span` apart, for an
    /// app with `workers` slots.
    pub fn slot_use_since(&self, earlier: &Self, workers: usize, span: Duration) -> SlotUse {
        let busy_s = self.slot_busy_us.saturating_sub(earlier.slot_busy_us) as f64 / 1e6;
        let released = self.slots_released.saturating_sub(earlier.slots_released) as f64;
        let workers = workers.max(1) as f64;
        let mean_slot_s = busy_s / released;
        SlotUse {
            utilisation: busy_s / (workers * span.as_secs_f64()),
            mean_slot_ms: mean_slot_s * 1e3,
            capacity_measured_rps: workers / mean_slot_s,
        }
    }
}

/// State shared by every connection of one app.
struct Shared {
    config: SampleAppConfig,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    sequence: AtomicU64,
    requests: AtomicU64,
    served: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicU64,
    peak_waiting: AtomicUsize,
    slots_released: AtomicU64,
    slot_busy_us: AtomicU64,
    by_route: [AtomicU64; Route::ALL.len()],
    by_tier: Mutex<BTreeMap<String, u64>>,
}

/// The sample application's entry point.
pub struct SampleApp;

impl SampleApp {
    /// Binds `cfg.bind` and serves until [`SampleAppHandle::shutdown`].
    ///
    /// Fails when the address is not loopback (the demo never listens
    /// elsewhere) or cannot be bound. Must be called from inside a tokio
    /// runtime (it spawns the accept loop there).
    pub fn start(cfg: SampleAppConfig) -> io::Result<SampleAppHandle> {
        if !cfg.bind.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sample app must listen on loopback, not {}", cfg.bind),
            ));
        }
        let std_listener = std::net::TcpListener::bind(cfg.bind)?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let workers = cfg.workers.max(1);
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(workers)),
            config: SampleAppConfig { workers, ..cfg },
            waiting: AtomicUsize::new(0),
            sequence: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            served: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            peak_waiting: AtomicUsize::new(0),
            slots_released: AtomicU64::new(0),
            slot_busy_us: AtomicU64::new(0),
            by_route: Default::default(),
            by_tier: Mutex::new(BTreeMap::new()),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        let capacity_rps = shared.config.costs.capacity_rps(workers);
        tracing::info!(%addr, workers, capacity_rps, "sample app listening");
        Ok(SampleAppHandle {
            addr,
            shared,
            stop,
            task,
        })
    }
}

/// A running sample application.
pub struct SampleAppHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SampleAppHandle {
    /// The bound address (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration in force (`workers` at least 1).
    pub fn config(&self) -> &SampleAppConfig {
        &self.shared.config
    }

    /// Requests per second the app sustains for the reference mix
    /// ([`RouteCosts::REFERENCE_MIX`]): `workers / mean service time`.
    pub fn capacity_rps(&self) -> f64 {
        self.shared
            .config
            .costs
            .capacity_rps(self.shared.config.workers)
    }

    /// Requests per second the app sustains for `mix` (route, weight) pairs;
    /// weights need not sum to 1. An empty or all-`/healthz` mix gives infinity.
    pub fn capacity_rps_for(&self, mix: &[(Route, f64)]) -> f64 {
        self.shared
            .config
            .costs
            .capacity_rps_for(self.shared.config.workers, mix)
    }

    /// Connections accepted so far (one load, unlike [`Self::stats`]).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AppStats {
        let s = &self.shared;
        let by_tier = s.by_tier.lock().map(|t| t.clone()).unwrap_or_default();
        let by_route = Route::ALL
            .iter()
            .zip(&s.by_route)
            .map(|(route, n)| (route.name(), n.load(Ordering::Relaxed)))
            .collect();
        AppStats {
            requests: s.requests.load(Ordering::Relaxed),
            served: s.served.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            peak_waiting: s.peak_waiting.load(Ordering::Relaxed) as u64,
            slots_released: s.slots_released.load(Ordering::Relaxed),
            slot_busy_us: s.slot_busy_us.load(Ordering::Relaxed),
            by_tier,
            by_route,
        }
    }

    /// Stops accepting, lets open connections finish their current request
    /// (at most 2 s), then closes them.
    pub async fn shutdown(self) {
        // A send error means the accept loop already ended; nothing to stop.
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "sample app accept loop ended abnormally");
        }
        tracing::info!(addr = %self.addr, "sample app stopped");
    }
}

/// Accepts connections until told to stop, then drains them.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Latency matters more than packet count on loopback.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream, Arc::clone(&shared), stop.clone()));
                }
                Err(e) => {
                    // Usually EMFILE under extreme load: back off briefly.
                    tracing::warn!(error = %e, "sample app accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Serves one connection until it closes or the app stops, after its setup
/// cost.
async fn serve(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // The connection's setup (a handshake, in a real backend) comes first.
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let cost = shared.config.connect_cost;
    if !cost.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(cost) => {}
            _ = stop.changed() => return,
        }
    }

    let service = service_fn(move |request| handle(Arc::clone(&shared), request));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "sample app connection ended with an error");
    }
}

/// Serves one request: count it, wait for a slot, spend the service time, answer.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<AppBody>, Infallible> {
    let route = Route::classify(request.uri().path());
    shared.requests.fetch_add(1, Ordering::Relaxed);
    shared.by_route[route as usize].fetch_add(1, Ordering::Relaxed);
    if route == Route::Health {
        return Ok(full_response(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"ok\n"),
        ));
    }
    count_tier(&shared, request.headers().get("x-headroom-tier"));

    // Take a slot, or join the bounded queue for one.
    let Some(slot) = acquire_slot(&shared).await else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        let mut response = full_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"sample app overloaded\n"),
        );
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert("x-demo-app", HeaderValue::from_static("queue-full"));
        return Ok(response);
    };

    // Spend the service time holding the slot; an export also holds it while streaming.
    let draw = mix64(shared.sequence.fetch_add(1, Ordering::Relaxed));
    let costs = &shared.config.costs;
    tokio::time::sleep(costs.service_time(route, draw)).await;
    shared.served.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path();
    if route == Route::Export {
        let total = costs.export_bytes(draw >> 32);
        let body = PacedBody::new(total, costs.export_bytes_per_sec, slot);
        let mut response = Response::new(Either::Right(body));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        return Ok(response);
    }
    drop(slot);
    let size = costs.body_bytes(route, path);
    Ok(full_response(
        StatusCode::OK,
        route.content_type(path),
        payload(size),
    ))
}

/// A worker slot held by one request. Dropping it frees the slot and adds
/// the time it was held to the app's counters, from which the demo measures
/// the capacity the app really delivers on this machine.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    since: Instant,
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.slot_busy_us.fetch_add(held, Ordering::Relaxed);
        self.shared.slots_released.fetch_add(1, Ordering::Relaxed);
    }
}

/// A worker slot, after waiting in the queue if needed; `None` when the queue is full.
async fn acquire_slot(shared: &Arc<Shared>) -> Option<Slot> {
    let slot = |permit| Slot {
        _permit: permit,
        since: Instant::now(),
        shared: Arc::clone(shared),
    };
    if let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() {
        return Some(slot(permit));
    }
    let waiting = shared.waiting.fetch_add(1, Ordering::AcqRel) + 1;
    if shared
        .config
        .queue_limit
        .is_some_and(|limit| waiting > limit)
    {
        shared.waiting.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    shared.peak_waiting.fetch_max(waiting, Ordering::Relaxed);
    let permit = Arc::clone(&shared.slots).acquire_owned().await;
    shared.waiting.fetch_sub(1, Ordering::AcqRel);
    // The semaphore is never closed while the app runs.
    permit.ok().map(slot)
}

/// Counts one request under its tier header value, bounding the distinct names.
fn count_tier(shared: &Shared, value: Option<&HeaderValue>) {
    let name = value.and_then(|v| v.to_str().ok()).unwrap_or("none");
    let Ok(mut tiers) = shared.by_tier.lock() else {
        return;
    };
    if let Some(count) = tiers.get_mut(name) {
        *count += 1;
    } else if tiers.len() < MAX_TIER_NAMES {
        tiers.insert(name.to_owned(), 1);
    } else {
        *tiers.entry("other".to_owned()).or_insert(0) += 1;
    }
}

/// A complete response with a content type.
fn full_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<AppBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
