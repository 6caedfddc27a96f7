//! Set-up shared by the criterion benches and the allocation test
//! (`tests/alloc_free_decision_path.rs` includes this file by path).
//!
//! Everything is built through the proxy's public API, as `headroom run`
//! builds it: `benches/headroom-bench.yaml` goes through
//! `headroom_config::load_str` and `headroom::compile::compile_runtime`, the
//! user table is sized from the file's `profiler` section, and the result is
//! a real `headroom::state::Shared`. Nothing listens and nothing connects:
//! the upstream set is a static list that is never probed.
//!
//! [`decide`] and [`finish`] are the per-request steps of
//! `HeadroomProxy::request_filter` and of `response_filter`/`logging`, in the
//! same order and with the same calls, on a request that pingora has already
//! parsed. They are a copy of the glue (the components they call are the real
//! ones) because the proxy keeps that glue inside its pingora hooks, which
//! need a live `Session`; should the glue change, change them with it.

#![allow(dead_code)]

pub mod measurement;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use futures::FutureExt;
use headroom::admission::{AdmissionGate, Permit};
use headroom::compile::{compile_runtime, table_config, IdentitySecret};
use headroom::forecaster::Decisions;
use headroom::identity::IdentityError;
use headroom::insights::InsightsHub;
use headroom::metrics::{Metrics, Outcome};
use headroom::state::{Runtime, Shared, UpstreamOptions, UserState};
use headroom_policies::{DeviceCache, RouteKind, TierId, Verdict};
use headroom_profiler::{Clock, SystemClock, UserEntry, UserTable};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::lb::LoadBalancer;

/// `request_filter`'s cap on the recorded request size (1 TiB).
const MAX_RECORDED_BODY: u64 = 1 << 40;

/// The benchmark configuration: every feature on, quotas too high to limit.
pub const CONFIG_YAML: &str = include_str!("../headroom-bench.yaml");

/// Where [`CONFIG_YAML`] lives, for error messages.
pub const CONFIG_PATH: &str = "benches/headroom-bench.yaml";

/// Distinct users in the request sets: the ~1 000 users of the load test.
pub const USERS: usize = 1_000;

/// The HS256 secret of the config's JWT source.
pub const JWT_SECRET: &[u8] = b"bench-jwt-secret-0123456789abcdef-0123456789";

/// A request as pingora hands it to `request_filter`: TCP peer, path and
/// parsed headers.
pub struct BenchRequest {
    /// The TCP peer address.
    pub peer: IpAddr,
    /// The path and query.
    pub path: &'static str,
    /// The request headers.
    pub headers: HeaderMap,
}

/// What the request phase decided, as `RequestCtx` keeps it.
pub struct Decision {
    /// When the request arrived.
    pub started: Instant,
    /// When the admission gate let it through (`None` when it would have had
    /// to queue, which the benches never drive it to).
    pub admitted_at: Option<Instant>,
    /// The admission slot, released when the decision is dropped.
    pub permit: Option<Permit>,
    /// The request's route class.
    pub route: u8,
    /// The route class's latency sensitivity.
    pub route_kind: RouteKind,
    /// The policy snapshot the request was decided under.
    pub runtime: Arc<Runtime>,
    /// The user's entry.
    pub user: Arc<UserEntry<UserState>>,
    /// The pseudonymous user key.
    pub key: u64,
    /// The tier the request is served in.
    pub tier: TierId,
    /// The rate-limit verdict.
    pub verdict: Verdict,
}

/// The proxy's shared state compiled from the bench config, with an empty
/// user table.
///
/// # Panics
/// When the bench config does not compile: a bug in this repository.
pub fn shared() -> Arc<Shared> {
    let config = headroom_config::load_str(CONFIG_YAML, CONFIG_PATH)
        .unwrap_or_else(|e| panic!("{CONFIG_PATH} does not load: {e}"));
    let metrics = Metrics::new();
    let secret = IdentitySecret::random().expect("the OS has randomness");
    let runtime = compile_runtime(&config, Path::new(CONFIG_PATH), &metrics, &secret)
        .unwrap_or_else(|e| panic!("{CONFIG_PATH} does not compile: {e}"));
    let users = UserTable::new(table_config(&config))
        .expect("the bench config's profiler section is valid");
    let upstreams = config.upstreams.iter().map(|u| u.address);
    let upstreams = Arc::new(LoadBalancer::try_from_iter(upstreams).expect("static upstream list"));
    let admission = AdmissionGate::new(
        &config.admission,
        runtime.tier_queues.clone(),
        Box::new(SystemClock),
    );
    let insights = InsightsHub::new(&config, &runtime.policy)
        .unwrap_or_else(|e| panic!("{CONFIG_PATH}: insights: {e}"));
    let decisions = Decisions::initial(config.profiler.forecast_tick);
    Arc::new(Shared {
        admission: Arc::new(admission),
        devices: DeviceCache::new(),
        decisions: Arc::new(ArcSwap::from_pointee(decisions)),
        insights,
        runtime: ArcSwap::from_pointee(runtime),
        overflow: Arc::clone(users.overflow()),
        users,
        metrics,
        clock: SystemClock,
        upstreams: Arc::clone(&upstreams),
        pools: headroom::upstreams::UpstreamPools::single(upstreams),
        warm: headroom::warmer::hub::WarmHub::detached(),
        upstream_options: UpstreamOptions::new(&config.upstream_timeouts, &config.warming),
    })
}

/// `HeadroomProxy::new_ctx` and `request_filter` for a request that goes
/// on to the upstream: snapshot, identity, attributes, tier, route, user
/// lookup, arrival, rate-limit check, and the admission gate's uncontended
/// path (polled once: a request that would queue gets no permit).
///
/// # Errors
/// The identity error the proxy would answer with 401.
pub fn decide(shared: &Shared, req: &BenchRequest) -> Result<Decision, IdentityError> {
    let started = Instant::now();
    let rt = shared.runtime.load_full();
    let identity = rt.identity.identify(Some(req.peer), &req.headers)?;

    let arrival = shared.arrive(
        &rt,
        &identity,
        &req.headers,
        req.path,
        shared.clock.now_ms(),
    );
    let (user, tier, route, verdict) = (arrival.user, arrival.tier, arrival.route, arrival.verdict);

    // Admission: the gate's fast path resolves on the first poll.
    let permit = shared
        .admission
        .acquire(tier.index())
        .now_or_never()
        .and_then(Result::ok);
    let admitted_at = permit.as_ref().map(|_| Instant::now());
    if let Some(waited) = admitted_at.and_then(|at| at.checked_duration_since(started)) {
        if waited.as_micros() > 100 {
            rt.tier(tier).metrics.wait.observe(waited.as_secs_f64());
        }
    }
    // Pacing only sets a rate in the context; read it as the proxy does.
    if let Some(pacing) = rt.pacing.get(tier.index()).copied().flatten() {
        std::hint::black_box(pacing.always || shared.admission.is_saturated());
    }
    Ok(Decision {
        started,
        admitted_at,
        permit,
        route: route.id,
        route_kind: route.kind,
        runtime: rt,
        user,
        key: identity.key,
        tier,
        verdict,
    })
}

/// The bookkeeping of `response_filter` and `logging` for an answered
/// request, without building header values: the admission gate's latency
/// sample, the forecast (or smoothed rate) read, the admission slot
/// released, the response recorded into the windows and the insights, the
/// outcome and duration counted. Returns the rate sent as
/// `x-headroom-forecast-rps` (requests per second).
pub fn finish(shared: &Shared, mut decision: Decision, status: u16, bytes_out: u64) -> f64 {
    let now_ms = shared.clock.now_ms();
    if let Some(admitted_at) = decision.admitted_at {
        shared
            .admission
            .on_latency(decision.route, admitted_at.elapsed());
    }
    let user = &decision.user;
    let rps = shared
        .decisions
        .load()
        .use_forecast
        .then(|| user.extra.forecast.forecast_rps())
        .flatten()
        .unwrap_or_else(|| user.windows.smoothed_rps(now_ms));

    drop(decision.permit.take());
    let elapsed = decision.started.elapsed();
    let now_ms = shared.clock.now_ms();
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    decision
        .user
        .windows
        .record_response(now_ms, status, bytes_out, latency_us);
    if decision.admitted_at.is_some() {
        headroom::insights::record_response(
            shared,
            &decision.user,
            now_ms,
            decision.route,
            decision.route_kind,
            latency_us,
            false,
        );
    }
    let metrics = &decision.runtime.tier(decision.tier).metrics;
    metrics.count(if decision.verdict.is_allowed() {
        Outcome::Admitted
    } else {
        Outcome::Limited
    });
    metrics.duration.observe(elapsed.as_secs_f64());
    rps
}

/// User agents of the request sets: a desktop browser, a phone, a script.
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
];

/// Paths of the request sets: one per configured route and one of none.
const PATHS: [&str; 5] = [
    "/api/items/42",
    "/search?q=shoes",
    "/static/app.js",
    "/export/orders.csv",
    "/account",
];

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("bench header values are visible ASCII")
}

/// Headers every bench request carries, like a browser or SDK would send.
fn common_headers(i: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::HOST, value("api.example.test"));
    h.insert(http::header::USER_AGENT, value(USER_AGENTS[i % 3]));
    h.insert(http::header::ACCEPT, value("application/json"));
    h.insert(http::header::ACCEPT_ENCODING, value("gzip, br"));
    if i.is_multiple_of(4) {
        h.insert(HeaderName::from_static("x-country"), value("NO"));
    }
    if i.is_multiple_of(5) {
        h.insert(http::header::CONTENT_LENGTH, value("512"));
    }
    h
}

/// `n` requests of `n` users identified by `x-api-key: k_bench_<i>`, the
/// load test's scheme: users 0 to 3 are in the key table, the rest are their
/// own ids.
pub fn api_key_requests(n: usize) -> Vec<BenchRequest> {
    (0..n)
        .map(|i| {
            let mut headers = common_headers(i);
            headers.insert(
                HeaderName::from_static("x-api-key"),
                value(&format!("k_bench_{i}")),
            );
            BenchRequest {
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                path: PATHS[i % PATHS.len()],
                headers,
            }
        })
        .collect()
}

/// `n` requests of `n` anonymous users, each named by `x-forwarded-for` from
/// the trusted loopback peer (the demo's and replay's scheme), behind one
/// trusted hop. The addresses are in the IPv6 documentation prefix and are
/// header text only: nothing is sent to them.
pub fn client_ip_requests(n: usize) -> Vec<BenchRequest> {
    (0..n)
        .map(|i| {
            let mut headers = common_headers(i);
            let ip = format!("2001:db8::{:x}, 127.0.0.2", i + 1);
            headers.insert(HeaderName::from_static("x-forwarded-for"), value(&ip));
            BenchRequest {
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                path: PATHS[i % PATHS.len()],
                headers,
            }
        })
        .collect()
}

/// `n` requests of `n` users, each with a valid HS256 bearer token for the
/// config's JWT source (valid for an hour).
pub fn jwt_requests(n: usize) -> Vec<BenchRequest> {
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        + 3_600;
    (0..n)
        .map(|i| {
            let claims = serde_json::json!({
                "sub": format!("jwt-user-{i}"),
                "plan": if i % 2 == 0 { "premium" } else { "free" },
                "iss": "bench",
                "aud": "headroom-bench",
                "exp": exp,
            });
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            let token = jsonwebtoken::encode(&header, &claims, &key).expect("HS256 signs");
            let mut headers = common_headers(i);
            headers.insert(
                http::header::AUTHORIZATION,
                value(&format!("Bearer {token}")),
            );
            BenchRequest {
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                path: PATHS[i % PATHS.len()],
                headers,
            }
        })
        .collect()
}

/// Runs every request once so that its user is in the table: the benches
/// and the allocation test measure users already known.
///
/// # Panics
/// When a request is refused at identity: the request sets are all valid.
pub fn warm(shared: &Shared, requests: &[BenchRequest]) {
    for req in requests {
        let decision = decide(shared, req).expect("bench requests identify");
        finish(shared, decision, 200, 3);
    }
}
