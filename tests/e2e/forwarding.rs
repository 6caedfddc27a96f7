//! Forwarding, header hygiene and metrics.

use crate::common::{get, EchoBackend, Proxy};

pub const BASIC: &str = r#"
upstreams: []
health_check: { interval: 0s }
identity:
  sources:
    - api_key: { header: x-api-key, unknown_keys: as_id }
    - client_ip: {}
tiers:
  - { name: standard, priority: 10, requests_per_second: 1000, burst: 1000 }
default_tier: standard
"#;

#[test]
fn request_is_forwarded_with_user_and_tier_headers() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(BASIC, backend.addr);

    let resp = get(proxy.listen, "/hello", &[("x-api-key", "abc")]);

    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = resp.echoed();
    let user = seen
        .get("x-headroom-user")
        .expect("user header reaches the upstream");
    assert_eq!(user.len(), 16);
    assert!(user.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!user.contains("abc"));
    assert_eq!(
        seen.get("x-headroom-tier").map(String::as_str),
        Some("standard")
    );
    assert_eq!(resp.header("x-headroom-tier"), Some("standard"));
    let forecast: f64 = resp
        .header("x-headroom-forecast-rps")
        .expect("forecast")
        .parse()
        .expect("number");
    assert!(forecast >= 0.0);
    assert!(resp.header("ratelimit").is_some() && resp.header("ratelimit-policy").is_some());
}

#[test]
fn client_sent_headroom_headers_are_removed() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(BASIC, backend.addr);

    let resp = get(
        proxy.listen,
        "/",
        &[
            ("x-api-key", "abc"),
            ("x-headroom-tier", "premium"),
            ("x-headroom-user", "0000000000000000"),
            ("x-headroom-priority", "999"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
        ],
    );

    let seen = resp.echoed();
    assert_eq!(
        seen.get("x-headroom-tier").map(String::as_str),
        Some("standard")
    );
    assert_ne!(
        seen.get("x-headroom-user").map(String::as_str),
        Some("0000000000000000")
    );
    assert!(!seen.contains_key("x-headroom-priority"));
    assert!(
        !seen.contains_key("x-drop-me"),
        "a header named by Connection is hop-by-hop"
    );
}

#[test]
fn metric_families_are_exported_without_user_labels() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(BASIC, backend.addr);
    for i in 0..5 {
        get(proxy.listen, "/", &[("x-api-key", &format!("key-{i}"))]);
    }

    let text = proxy.metrics();

    for family in [
        "headroom_requests_total",
        "headroom_request_duration_seconds",
        "headroom_tracked_users",
        "headroom_forecast_error",
        "headroom_config_reloads_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(
        text.contains(r#"headroom_requests_total{outcome="admitted",tier="standard"} 5"#),
        "{text}"
    );
    assert!(!text.contains("key-"), "no user id may appear in metrics");
    assert_eq!(proxy.metric("headroom_tracked_users"), Some(5.0));
}

#[test]
fn health_endpoint_answers() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(BASIC, backend.addr);
    assert_eq!(get(proxy.admin, "/healthz", &[]).status, 200);
    assert_eq!(get(proxy.admin, "/nope", &[]).status, 404);
}

#[test]
fn saturated_backend_sheds_with_503_and_retry_after() {
    // One slot, a short queue wait and a backend that never answers: the
    // first request holds the slot, the second waits 200 ms and is shed.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let yaml = BASIC.replace(
        "default_tier: standard",
        "default_tier: standard\nadmission: { adaptive: false, max_concurrency: 1 }\nupstream_timeouts: { read: 3s }",
    )
    .replace("burst: 1000 }", "burst: 1000, max_queue_time: 200ms }");
    let proxy = Proxy::start(&yaml, addr);
    let listen = proxy.listen;
    let holder = std::thread::spawn(move || get(listen, "/slow", &[("x-api-key", "a")]));
    std::thread::sleep(std::time::Duration::from_millis(300));

    let shed = get(proxy.listen, "/", &[("x-api-key", "b")]);

    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.header("x-headroom-tier"), Some("standard"));
    let _ = holder.join();
    assert!(proxy
        .metrics()
        .contains(r#"headroom_requests_total{outcome="shed",tier="standard"} 1"#));
    drop(silent);
}

#[test]
fn paced_tier_streams_large_bodies_at_its_bandwidth() {
    let backend = EchoBackend::start();
    let yaml = BASIC.replace(
        "burst: 1000 }",
        "burst: 1000, bandwidth_bytes_per_second: 200000, bandwidth_when: always }",
    );
    let proxy = Proxy::start(&yaml, backend.addr);
    let started = std::time::Instant::now();

    let resp = get(proxy.listen, "/bytes/600000", &[("x-api-key", "a")]);

    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 600_000);
    // 600 kB at 200 kB/s: the last chunk may not wait out its share, so at
    // least the first ~2.5 s are paced; an unpaced loopback copy takes ms.
    assert!(
        started.elapsed().as_secs_f64() > 2.0,
        "{:?}",
        started.elapsed()
    );
}
