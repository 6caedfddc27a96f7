//! The proxy side of warming: recognising warm-up requests, holding each
//! round's requests until all of them own an upstream connection, the
//! upstream-time measurement and the warmer's metrics.
//!
//! A warm-up request is one whose path equals a marker that embeds 128
//! random bits drawn at start (`/.headroom/warm/<32 hex>`); the query names
//! the backend and the round (`?backend=IP:PORT&round=N`). Nobody outside
//! the process knows the marker, so a client cannot make its requests skip
//! identification or admission. The check on every request is one string
//! comparison (length first).
//!
//! In depth, should the marker leak: a marker request is a warm-up only if
//! it is a `GET` without a body, from a loopback peer (or the proxy's own
//! listen address, which is where the warmer connects from when the proxy
//! listens on one specific address), naming a configured upstream. Any
//! other marker request is served as ordinary traffic: identified,
//! limited, admitted and sent to the pool like any request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;

/// Why the hub could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// `warming.path` is not a valid request target.
    #[error("warming.path: {0}")]
    Path(String),
    /// The OS gave no randomness for the marker.
    #[error("no randomness for the warm-up marker: {0}")]
    Random(String),
}

/// Where one warm-up request goes, parsed from its query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmTarget {
    /// The backend whose pool it warms.
    pub backend: SocketAddr,
    /// The warmer's round, to ignore a late request from an older round.
    pub round: u64,
}

/// One round of warm-up requests to one backend.
struct Batch {
    round: u64,
    expected: usize,
    arrived: AtomicUsize,
    all_connected: Notify,
}

/// Sum and count of upstream times (admission to end of response), read as
/// deltas by the warmer. Two relaxed atomic adds per request.
#[derive(Default)]
pub struct UpstreamTiming {
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl UpstreamTiming {
    /// Records one request's time at the upstream.
    pub fn record(&self, held: Duration) {
        let us = u64::try_from(held.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(sum in µs, count)` since start. The two loads are not one atomic
    /// snapshot: a request recorded in between skews one round's mean by at
    /// most one sample.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Base of the group key of client requests beyond the warmer's core set.
const OVERFLOW_GROUP: u64 = 0x6f76_6572_666c_6f77;

/// The least fall in the warmer's core (with a fall to half or less) that
/// moves the pool to a new generation: smaller swings are forecast noise.
pub const GENERATION_DROP: u32 = 2;

/// The warmer's metric families (no user labels; `pool` is a config name).
pub struct WarmMetrics {
    /// `headroom_warming_connections_opened_total`.
    pub opened: IntCounter,
    /// `headroom_request_connections_opened_total`: client requests that
    /// found no idle pooled connection and waited for a new one (what
    /// warming is there to avoid).
    pub request_opened: IntCounter,
    /// `headroom_warming_failures_total`.
    pub failures: IntCounter,
    /// `headroom_warming_target_connections{pool}`, per upstream.
    pub target: IntGaugeVec,
}

impl WarmMetrics {
    /// Creates the families and registers them in `registry`.
    ///
    /// # Panics
    /// Never in practice: the names are fixed and registered once.
    pub fn register(registry: &Registry) -> Self {
        let opened = IntCounter::new(
            "headroom_warming_connections_opened_total",
            "New upstream connections opened by warm-up requests.",
        )
        .expect("valid metric");
        let request_opened = IntCounter::new(
            "headroom_request_connections_opened_total",
            "Client requests that opened a new upstream connection (none idle in the pool).",
        )
        .expect("valid metric");
        let failures = IntCounter::new(
            "headroom_warming_failures_total",
            "Warm-up requests that failed or were not answered with 2xx/3xx.",
        )
        .expect("valid metric");
        let target = IntGaugeVec::new(
            Opts::new(
                "headroom_warming_target_connections",
                "Connections the warmer keeps ready per upstream, by pool.",
            ),
            &["pool"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(opened.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_opened.clone()),
            Box::new(failures.clone()),
            Box::new(target.clone()),
        ] {
            // A second registration (tests building two servers on one
            // registry) keeps the first; both handles count the same way.
            let _ = registry.register(collector);
        }
        Self {
            opened,
            request_opened,
            failures,
            target,
        }
    }
}

/// Shared between the warmer and the proxy phases.
pub struct WarmHub {
    marker: String,
    /// What the backend is asked for instead of the marker.
    backend_path: http::Uri,
    /// How long a warm-up request waits for the rest of its round.
    hold: Duration,
    batches: Mutex<HashMap<SocketAddr, Arc<Batch>>>,
    /// The proxy's own listen IP when it is a specific non-loopback one:
    /// the warmer's connections then come from it.
    own_ip: Option<IpAddr>,
    /// Upstream time of user requests, for Little's law.
    pub timing: UpstreamTiming,
    /// The warmer's metrics.
    pub metrics: WarmMetrics,
    /// Connections the warmer keeps in all (its targets summed over
    /// upstreams): client requests beyond this many in flight use the
    /// overflow part of the pool (see [`WarmHub::group_key`]).
    core: AtomicU32,
    /// The largest core since the pool generation last changed (written by
    /// the warmer only).
    peak_core: AtomicU32,
    /// Pool generation, part of every group key: bumped when demand falls.
    generation: AtomicU64,
}

impl WarmHub {
    /// A hub with a fresh random marker; warm-up requests fetch
    /// `backend_path` (`/` when `None`) and wait at most `hold` for the rest
    /// of their round.
    pub fn new(
        hold: Duration,
        backend_path: Option<&str>,
        registry: &Registry,
    ) -> Result<Self, WarmError> {
        let backend_path = backend_path
            .unwrap_or("/")
            .parse()
            .map_err(|e: http::uri::InvalidUri| WarmError::Path(e.to_string()))?;
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| WarmError::Random(e.to_string()))?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            marker: format!("/.headroom/warm/{hex}"),
            backend_path,
            hold,
            batches: Mutex::new(HashMap::new()),
            own_ip: None,
            timing: UpstreamTiming::default(),
            metrics: WarmMetrics::register(registry),
            core: AtomicU32::new(0),
            peak_core: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        })
    }

    /// Sets the connections the warmer keeps in all (after each round's
    /// targets are known).
    ///
    /// When the core falls to half its peak or less (by at least
    /// [`GENERATION_DROP`] connections), demand has fallen: the pool moves to
    /// a new generation. Every group key changes with it, so no request
    /// reuses the old generation's connections again and they close after
    /// the idle timeout, while the round that follows warms the new one.
    pub fn set_core(&self, connections: u32) {
        self.core.store(connections, Ordering::Relaxed);
        let peak = self.peak_core.load(Ordering::Relaxed).max(connections);
        if connections.saturating_mul(2) <= peak && peak - connections >= GENERATION_DROP {
            self.generation.fetch_add(1, Ordering::Relaxed);
            self.peak_core.store(connections, Ordering::Relaxed);
        } else {
            self.peak_core.store(peak, Ordering::Relaxed);
        }
    }

    /// The pool group key for a request: a warm-up (`warm_up`) or a client
    /// request that makes `in_flight` requests at the upstreams.
    ///
    /// pingora hands out the oldest idle connection first, so steady light
    /// traffic would keep every connection a past burst opened alive by
    /// touching each in turn. Two things prevent it. Client requests beyond
    /// the warmer's core set use a group of their own, whose connections
    /// nothing touches once the burst is over. And when demand falls, the
    /// generation changes (see [`WarmHub::set_core`]), leaving every
    /// connection of the busier past to close after the idle timeout. With
    /// warming off the key is pingora's default, 0.
    pub fn group_key(&self, in_flight: u32, warm_up: bool) -> u64 {
        let generation = self.generation.load(Ordering::Relaxed);
        let core = self.core.load(Ordering::Relaxed);
        let overflow = !warm_up && core > 0 && in_flight > core;
        if overflow {
            OVERFLOW_GROUP.wrapping_add(generation)
        } else {
            generation
        }
    }

    /// A hub whose metrics are registered nowhere (tests and benches).
    ///
    /// # Panics
    /// When the OS has no randomness to offer.
    pub fn detached() -> Self {
        Self::new(Duration::from_secs(1), None, &Registry::new()).expect("the OS has randomness")
    }

    /// Tells the hub where the proxy listens: a specific address is also
    /// accepted as a warm-up request's peer (the warmer connects to it, so
    /// the kernel picks it as the source). Loopback is always accepted.
    #[must_use]
    pub fn with_listen_address(mut self, listen: SocketAddr) -> Self {
        let ip = listen.ip().to_canonical();
        self.own_ip = (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip);
        self
    }

    /// The target of a marker request if it is the warmer's own: a
    /// well-formed query naming an upstream for which `is_upstream` holds,
    /// method `GET`, no body (no `Transfer-Encoding`, `Content-Length`
    /// absent or 0), and a peer on loopback or the proxy's own listen IP.
    /// `None` otherwise: the caller then serves it as ordinary traffic.
    pub fn accept(
        &self,
        peer: Option<IpAddr>,
        method: &http::Method,
        headers: &http::HeaderMap,
        query: Option<&str>,
        is_upstream: impl Fn(SocketAddr) -> bool,
    ) -> Option<WarmTarget> {
        let peer = peer?.to_canonical();
        if !(peer.is_loopback() || Some(peer) == self.own_ip) || method != http::Method::GET {
            return None;
        }
        let empty = |name| headers.get(name).is_none_or(|v| v.as_bytes() == b"0");
        if headers.contains_key(http::header::TRANSFER_ENCODING)
            || !empty(http::header::CONTENT_LENGTH)
        {
            return None;
        }
        Self::parse(query).filter(|t| is_upstream(t.backend))
    }

    /// The path warm-up requests fetch from the backend.
    pub fn backend_path(&self) -> &http::Uri {
        &self.backend_path
    }

    /// Whether a request path is the warm-up marker (the hot-path check).
    #[inline]
    pub fn is_marker(&self, path: &str) -> bool {
        path == self.marker
    }

    /// The request target of a warm-up request to `backend` in `round`.
    pub fn uri(&self, backend: SocketAddr, round: u64) -> String {
        format!("{}?backend={backend}&round={round}", self.marker)
    }

    /// Parses the query of a marker request; `None` when malformed.
    pub fn parse(query: Option<&str>) -> Option<WarmTarget> {
        let mut backend = None;
        let mut round = None;
        for pair in query?.split('&') {
            match pair.split_once('=')? {
                ("backend", v) => backend = v.parse().ok(),
                ("round", v) => round = v.parse().ok(),
                _ => return None,
            }
        }
        Some(WarmTarget {
            backend: backend?,
            round: round?,
        })
    }

    /// Opens a round of `expected` requests to `backend`.
    pub fn begin(&self, backend: SocketAddr, round: u64, expected: usize) {
        let batch = Arc::new(Batch {
            round,
            expected,
            arrived: AtomicUsize::new(0),
            all_connected: Notify::new(),
        });
        self.lock().insert(backend, batch);
    }

    /// Closes the round to `backend` (late requests then pass straight on).
    pub fn end(&self, backend: SocketAddr, round: u64) {
        let mut batches = self.lock();
        if batches.get(&backend).is_some_and(|b| b.round == round) {
            batches.remove(&backend);
        }
    }

    /// Called once a warm-up request owns an upstream connection: counts a
    /// new connection, then waits (at most the hold time) until every
    /// request of the round owns one, so that none of them can reuse
    /// another's connection and the round leaves `expected` distinct
    /// connections in the pool.
    pub async fn connected(&self, target: WarmTarget, reused: bool) {
        if !reused {
            self.metrics.opened.inc();
        }
        let batch = self.lock().get(&target.backend).cloned();
        let Some(batch) = batch.filter(|b| b.round == target.round) else {
            return;
        };
        let notified = batch.all_connected.notified();
        tokio::pin!(notified);
        // Register before counting, so the last arrival's wake-up is not lost.
        notified.as_mut().enable();
        if batch.arrived.fetch_add(1, Ordering::AcqRel) + 1 >= batch.expected {
            batch.all_connected.notify_waiters();
            return;
        }
        let _ = tokio::time::timeout(self.hold, notified).await;
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Batch>>> {
        // The map holds no invariant a panicking holder could break.
        self.batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> WarmHub {
        WarmHub::new(
            Duration::from_millis(200),
            Some("/health"),
            &Registry::new(),
        )
        .expect("random")
    }

    #[test]
    fn group_keys_split_the_core_from_the_overflow_and_change_when_demand_falls() {
        let hub = WarmHub::detached();
        assert_eq!(
            hub.group_key(50, false),
            0,
            "no core yet: pingora's default"
        );
        hub.set_core(4);
        assert_eq!(
            hub.group_key(4, false),
            0,
            "the fourth in flight is still core"
        );
        let overflow = hub.group_key(5, false);
        assert_ne!(overflow, 0);
        assert_eq!(hub.group_key(5, true), 0, "warm-ups always fill the core");
        // Demand rises, then swings a little: same generation.
        hub.set_core(32);
        hub.set_core(20);
        assert_eq!(hub.group_key(1, false), 0);
        assert_eq!(hub.group_key(40, false), overflow);
        // Demand falls to half the peak: every key changes.
        hub.set_core(16);
        let (core, over) = (hub.group_key(1, false), hub.group_key(40, false));
        assert!(core != 0 && over != overflow && core != over);
        // A fall of one connection from a tiny peak is noise.
        hub.set_core(1);
        hub.set_core(2);
        hub.set_core(1);
        assert_ne!(hub.group_key(1, false), core, "16 -> 1 moved it once");
        let settled = hub.group_key(1, false);
        hub.set_core(2);
        hub.set_core(1);
        assert_eq!(hub.group_key(1, false), settled);
    }

    #[test]
    fn marker_matches_only_itself() {
        let hub = hub();
        let uri: http::Uri = hub
            .uri("127.0.0.1:9".parse().expect("valid"), 3)
            .parse()
            .expect("valid");
        assert!(hub.is_marker(uri.path()));
        assert!(!hub.is_marker("/.headroom/warm/"));
        assert!(!hub.is_marker("/"));
        let other = self::hub();
        assert!(
            !other.is_marker(uri.path()),
            "markers are random per process"
        );
        assert_eq!(
            WarmHub::parse(uri.query()),
            Some(WarmTarget {
                backend: "127.0.0.1:9".parse().expect("valid"),
                round: 3
            })
        );
    }

    #[test]
    fn malformed_queries_are_refused() {
        for q in [
            "",
            "backend=x&round=1",
            "round=1",
            "backend=127.0.0.1:1",
            "a=b",
        ] {
            assert_eq!(WarmHub::parse(Some(q)), None, "{q}");
        }
        assert_eq!(WarmHub::parse(None), None);
    }

    fn loopback() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn only_a_bodiless_get_from_loopback_to_a_configured_upstream_is_a_warm_up() {
        let hub = hub();
        let query = Some("backend=127.0.0.1:9&round=1");
        let known = |a: SocketAddr| a.port() == 9;
        let none = http::HeaderMap::new();
        let get = &http::Method::GET;

        assert!(hub.accept(loopback(), get, &none, query, known).is_some());
        let mapped_v6 = Some("::ffff:127.0.0.1".parse().expect("valid"));
        assert!(hub.accept(mapped_v6, get, &none, query, known).is_some());
        let v6 = Some("::1".parse().expect("valid"));
        assert!(hub.accept(v6, get, &none, query, known).is_some());

        let remote = Some(IpAddr::from([192, 0, 2, 7]));
        assert_eq!(hub.accept(remote, get, &none, query, known), None);
        assert_eq!(hub.accept(None, get, &none, query, known), None);
        let other = Some("backend=127.0.0.1:10&round=1");
        assert_eq!(hub.accept(loopback(), get, &none, other, known), None);
        let post = &http::Method::POST;
        assert_eq!(hub.accept(loopback(), post, &none, query, known), None);
        let mut body = http::HeaderMap::new();
        body.insert("content-length", http::HeaderValue::from_static("5"));
        assert_eq!(hub.accept(loopback(), get, &body, query, known), None);
        let mut chunked = http::HeaderMap::new();
        chunked.insert(
            "transfer-encoding",
            http::HeaderValue::from_static("chunked"),
        );
        assert_eq!(hub.accept(loopback(), get, &chunked, query, known), None);
        let mut zero = http::HeaderMap::new();
        zero.insert("content-length", http::HeaderValue::from_static("0"));
        assert!(hub.accept(loopback(), get, &zero, query, known).is_some());
    }

    #[test]
    fn a_specific_listen_address_is_accepted_as_the_warmers_peer() {
        let listen: SocketAddr = "192.0.2.7:8080".parse().expect("valid");
        let hub = hub().with_listen_address(listen);
        let query = Some("backend=127.0.0.1:9&round=1");
        let none = http::HeaderMap::new();
        let get = &http::Method::GET;

        let own = Some(listen.ip());
        assert!(hub.accept(own, get, &none, query, |_| true).is_some());
        let neighbour = Some(IpAddr::from([192, 0, 2, 8]));
        assert_eq!(hub.accept(neighbour, get, &none, query, |_| true), None);
        let any = self::hub().with_listen_address("0.0.0.0:8080".parse().expect("valid"));
        assert_eq!(any.own_ip, None, "an unspecified listen adds nothing");
    }

    #[tokio::test]
    async fn a_round_waits_for_all_its_requests_then_releases_them() {
        let hub = Arc::new(hub());
        let backend: SocketAddr = "127.0.0.1:9".parse().expect("valid");
        hub.begin(backend, 1, 3);
        let target = WarmTarget { backend, round: 1 };
        let started = tokio::time::Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let hub = Arc::clone(&hub);
                tokio::spawn(async move { hub.connected(target, false).await })
            })
            .collect();
        for w in waiters {
            w.await.expect("task");
        }
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "released early"
        );
        assert_eq!(hub.metrics.opened.get(), 3);
    }

    #[tokio::test]
    async fn an_incomplete_round_is_released_by_the_hold_time() {
        let hub = hub();
        let backend: SocketAddr = "127.0.0.1:9".parse().expect("valid");
        hub.begin(backend, 1, 2);
        let started = tokio::time::Instant::now();
        hub.connected(WarmTarget { backend, round: 1 }, true).await;
        assert!(started.elapsed() >= Duration::from_millis(190));
        assert_eq!(
            hub.metrics.opened.get(),
            0,
            "a reused connection is not new"
        );
    }
}
