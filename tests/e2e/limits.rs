//! Rate limits: the exact request past the burst, headers, reloads.

use crate::common::{get, EchoBackend, Proxy};

fn config(rate: &str, extra_tier: &str) -> String {
    format!(
        r#"
upstreams: []
health_check: {{ interval: 0s }}
identity:
  sources:
    - api_key: {{ header: x-api-key, unknown_keys: as_id }}
tiers:
  - {{ name: standard, priority: 10, requests_per_second: {rate}, burst: 3 }}
{extra_tier}
default_tier: standard
"#
    )
}

#[test]
fn request_past_burst_gets_429_with_retry_after_and_ratelimit_headers() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("0.1", ""), backend.addr);
    let key = [("x-api-key", "u1")];

    for i in 0..3 {
        let ok = get(proxy.listen, "/", &key);
        assert_eq!(ok.status, 200, "request {i} is within the burst");
        assert!(ok.header("ratelimit").is_some());
    }
    let limited = get(proxy.listen, "/", &key);

    assert_eq!(limited.status, 429);
    let retry: u64 = limited
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("secs");
    assert!(
        (1..=10).contains(&retry),
        "0.1 req/s refills one token in 10 s, got {retry}"
    );
    assert_eq!(limited.header("x-headroom-tier"), Some("standard"));
    let policy = limited.header("ratelimit-policy").expect("policy header");
    assert!(
        policy.contains("standard") && policy.contains("q=3"),
        "{policy}"
    );
    let state = limited.header("ratelimit").expect("ratelimit header");
    assert!(state.contains("r=0"), "{state}");
    assert_eq!(backend.hits.load(std::sync::atomic::Ordering::SeqCst), 3);

    // Another user has their own bucket.
    assert_eq!(get(proxy.listen, "/", &[("x-api-key", "u2")]).status, 200);
}

#[test]
fn reload_does_not_refill_a_bucket() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("0.1", ""), backend.addr);
    let key = [("x-api-key", "u1")];
    for _ in 0..3 {
        assert_eq!(get(proxy.listen, "/", &key).status, 200);
    }
    assert_eq!(get(proxy.listen, "/", &key).status, 429);

    // A new policy (an added tier) is swapped in...
    let extra = "  - { name: bulk, priority: 1, requests_per_second: 1, burst: 5 }";
    proxy.rewrite_config(&config("0.1", extra));
    proxy.wait_metric_at_least(r#"headroom_config_reloads_total{result="ok"}"#, 1.0);

    // ...and the user's spent bucket is still spent.
    assert_eq!(get(proxy.listen, "/", &key).status, 429);
}

#[test]
fn bad_reload_is_counted_and_keeps_the_policy_in_force() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("1000", ""), backend.addr);

    proxy.rewrite_config("tiers: [ { name: BAD NAME } ]\nnot_a_key: 1\n");
    proxy.wait_metric_at_least(r#"headroom_config_reloads_total{result="error"}"#, 1.0);

    let resp = get(proxy.listen, "/", &[("x-api-key", "u1")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-headroom-tier"), Some("standard"));
}

#[test]
fn sighup_reloads_the_config() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("1000", ""), backend.addr);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    proxy.wait_metric_at_least(r#"headroom_config_reloads_total{result="ok"}"#, 1.0);
    assert_eq!(get(proxy.listen, "/", &[("x-api-key", "u1")]).status, 200);
}
