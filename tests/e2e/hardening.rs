//! Acceptance hardening: ambiguous credentials are refused before any
//! accounting, and a pool with no healthy upstream answers 503 with
//! `Retry-After` and counts an upstream error.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{free_addr, get, EchoBackend, Proxy, Response};

const KEYS: &str = r#"
upstreams: []
health_check: { interval: 0s }
identity:
  sources:
    - api_key:
        header: x-api-key
        keys:
          "k-a": { user: alice }
          "k-b": { user: bob }
        unknown_keys: reject
    - cookie: { name: sid }
  anonymous: { mode: reject }
tiers:
  - { name: standard, requests_per_second: 1000, burst: 1000 }
default_tier: standard
"#;

#[test]
fn a_credential_sent_twice_is_refused_with_400_before_any_accounting() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(KEYS, backend.addr);

    let two_keys = get(
        proxy.listen,
        "/",
        &[("x-api-key", "k-a"), ("x-api-key", "k-b")],
    );
    let two_cookies = get(
        proxy.listen,
        "/",
        &[("cookie", "sid=a"), ("cookie", "sid=b")],
    );
    let cookie_twice_in_a_line = get(proxy.listen, "/", &[("cookie", "sid=a; sid=b")]);

    for resp in [&two_keys, &two_cookies, &cookie_twice_in_a_line] {
        assert_eq!(resp.status, 400, "{resp:?}");
        assert!(resp.body.contains("more than once"), "{resp:?}");
    }
    assert_eq!(backend.hits.load(Ordering::SeqCst), 0, "nothing forwarded");
    // No user was charged: the refusals are counted before any tier.
    assert_eq!(
        proxy.metric(r#"headroom_requests_total{outcome="unauthorized",tier="none"}"#),
        Some(3.0)
    );
    assert_eq!(
        proxy.metric(r#"headroom_requests_total{outcome="admitted",tier="standard"}"#),
        Some(0.0)
    );
    // One of each is still fine.
    let ok = get(
        proxy.listen,
        "/",
        &[("x-api-key", "k-a"), ("cookie", "sid=a")],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(backend.hits.load(Ordering::SeqCst), 1);
}

/// GETs `/` until the answer is not 200/502 (the health check has not yet
/// marked the backend down), for at most 10 s.
fn until_marked_down(proxy: &Proxy, headers: &[(&str, &str)]) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = get(proxy.listen, "/", headers);
        if resp.status == 503 || Instant::now() > deadline {
            return resp;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn assert_retry_later(resp: &Response) {
    assert_eq!(resp.status, 503, "{resp:?}");
    let retry_after: u64 = resp
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {resp:?}"));
    assert!(retry_after >= 1, "{resp:?}");
    assert!(resp.body.contains("no healthy upstream"), "{resp:?}");
}

#[test]
fn default_pool_without_a_healthy_upstream_answers_503_with_retry_after() {
    let dead = free_addr(); // nothing listens here
    let yaml = KEYS.replace("interval: 0s", "interval: 1500ms, timeout: 200ms");
    let proxy = Proxy::start(&yaml, dead);

    let resp = until_marked_down(&proxy, &[("x-api-key", "k-a")]);

    assert_retry_later(&resp);
    // 1.5 s to the next health check, rounded up.
    assert_eq!(resp.header("retry-after"), Some("2"));
    assert_eq!(resp.header("x-headroom-tier"), Some("standard"));
    proxy.wait_metric_at_least("headroom_upstream_errors_total", 1.0);
}

#[test]
fn tier_pool_without_a_healthy_member_answers_503_with_retry_after() {
    let default = EchoBackend::start();
    let dead = free_addr();
    let yaml = format!(
        "{}upstream_pools:\n  dedicated:\n    - {{ address: \"{dead}\" }}\n",
        KEYS.replace("interval: 0s", "interval: 200ms, timeout: 100ms")
            .replace("burst: 1000 }", "burst: 1000, pool: dedicated }")
    );
    let proxy = Proxy::start(&yaml, default.addr);

    let resp = until_marked_down(&proxy, &[("x-api-key", "k-a")]);

    assert_retry_later(&resp);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(default.hits.load(Ordering::SeqCst), 0, "no spill-over");
    proxy.wait_metric_at_least("headroom_upstream_errors_total", 1.0);
    // Each pool's healthy members, by pool name.
    assert_eq!(
        proxy.metric(r#"headroom_upstream_healthy{pool="dedicated"}"#),
        Some(0.0)
    );
    assert_eq!(
        proxy.metric(r#"headroom_upstream_healthy{pool="default"}"#),
        Some(1.0)
    );
}
