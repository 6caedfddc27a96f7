//! Test set-up shared by the insights and admin unit tests: a real
//! [`Shared`] compiled from a YAML config the way `headroom run` builds it,
//! with nothing listening and an upstream set that is never probed.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use headroom_profiler::{SystemClock, UserTable};
use http::HeaderMap;
use pingora::lb::LoadBalancer;

use super::InsightsHub;
use crate::admission::AdmissionGate;
use crate::compile::{compile_runtime, table_config, IdentitySecret};
use crate::metrics::Metrics;
use crate::state::{Shared, UpstreamOptions};

/// A config with API keys (two users, one of them premium), a JWT-less
/// cookie source, client IPs last, two routes and an operator token.
pub(crate) const CONFIG: &str = "\
identity:
  secret: \"unit-test-identity-secret\"
  sources:
    - api_key:
        keys:
          k_alice: { user: alice, plan: premium, role: admin }
          k_bob: { user: bob }
    - cookie: { name: sid }
    - client_ip: {}
routes:
  - name: search
    prefix: /search
    cost: 2
  - name: export
    prefix: /export
    cost: 5
    kind: batch
tiers:
  - name: premium
    requests_per_second: 100
    burst: 200
  - name: free
    requests_per_second: 1
    burst: 5
rules:
  - when: { plan: premium }
    tier: premium
default_tier: free
admin_api:
  token: \"operator-token-for-unit-tests\"
";

/// The operator token of [`CONFIG`].
pub(crate) const TOKEN: &str = "operator-token-for-unit-tests";

/// The shared state for `yaml`.
///
/// # Panics
/// When `yaml` is not a valid config (a bug in the test).
pub(crate) fn shared_from(yaml: &str) -> Arc<Shared> {
    let config = headroom_config::load_str(yaml, "test.yaml").expect("test config is valid");
    let metrics = Metrics::new();
    let secret = IdentitySecret::random().expect("the OS has randomness");
    let runtime =
        compile_runtime(&config, Path::new("test.yaml"), &metrics, &secret).expect("compiles");
    let insights = InsightsHub::new(&config, &runtime.policy).expect("events declare");
    let users = UserTable::new(table_config(&config)).expect("valid table");
    let upstreams =
        Arc::new(LoadBalancer::try_from_iter(["127.0.0.1:9"]).expect("static upstream"));
    let admission = AdmissionGate::new(
        &config.admission,
        runtime.tier_queues.clone(),
        Box::new(SystemClock),
    );
    Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        overflow: Arc::clone(users.overflow()),
        users,
        metrics,
        clock: SystemClock,
        upstreams: Arc::clone(&upstreams),
        pools: crate::upstreams::UpstreamPools::single(upstreams),
        warm: crate::warmer::hub::WarmHub::detached(),
        upstream_options: UpstreamOptions::new(&config.upstream_timeouts, &config.warming),
        admission: Arc::new(admission),
        devices: headroom_policies::DeviceCache::new(),
        decisions: Arc::new(ArcSwap::from_pointee(
            crate::forecaster::Decisions::initial(config.profiler.forecast_tick),
        )),
        insights,
    })
}

/// The shared state for [`CONFIG`].
pub(crate) fn shared() -> Arc<Shared> {
    shared_from(CONFIG)
}

/// What the proxy's request phase does for one request at `now_ms` with
/// `headers` on `path`, up to and including the rate-limit decision, with
/// the same calls in the same order. Returns the user key.
///
/// # Panics
/// When the headers do not identify a user.
pub(crate) fn arrive(shared: &Shared, headers: &HeaderMap, path: &str, now_ms: u64) -> u64 {
    let rt = shared.runtime.load_full();
    let peer = "192.0.2.10".parse().ok();
    let identity = rt.identity.identify(peer, headers).expect("identified");
    // Every test user browses from a phone unless the headers say otherwise.
    let mut headers = headers.clone();
    if !headers.contains_key(http::header::USER_AGENT) {
        let phone = http::HeaderValue::from_static("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)");
        headers.insert(http::header::USER_AGENT, phone);
    }
    shared.arrive(&rt, &identity, &headers, path, now_ms);
    identity.key
}

/// Headers with one `name: value`.
pub(crate) fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, value.parse().expect("header value"));
    h
}
