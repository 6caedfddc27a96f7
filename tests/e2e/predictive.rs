//! Predictive tiering against the real binary: a user whose predicted
//! demand crosses a rule's threshold is moved to another tier by the
//! forecast tick, and both the response header and the profile API say so.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{get, EchoBackend, Proxy};

const CONFIG: &str = r#"
upstreams: []
health_check: { interval: 0s }
profiler: { forecast_tick: 1s }
identity:
  sources:
    - api_key:
        keys:
          "k-heavy": { user: heavy, plan: pro }
tiers:
  - { name: standard, requests_per_second: 1000, burst: 1000 }
  - { name: bulk, requests_per_second: 1000, burst: 1000 }
rules:
  - when: { plan: pro, predicted_rps_p90_above: 3 }
    tier: bulk
  - when: { plan: pro }
    tier: standard
default_tier: standard
tiering: { min_dwell: 3s }
"#;

#[test]
fn a_users_tier_changes_by_prediction_and_shows_in_header_and_profile() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(CONFIG, backend.addr);
    let key = [("x-api-key", "k-heavy")];

    // Before any tick has seen the user: the static rule.
    let first = get(proxy.listen, "/", &key);
    assert_eq!(first.header("x-headroom-tier"), Some("standard"));
    let user = first.echoed()["x-headroom-user"].clone();

    // About 40 requests a second until the tick moves the user (at most 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tier = String::new();
    while Instant::now() < deadline {
        let resp = get(proxy.listen, "/", &key);
        assert_eq!(resp.status, 200);
        tier = resp
            .header("x-headroom-tier")
            .unwrap_or_default()
            .to_owned();
        if tier == "bulk" {
            break;
        }
        thread::sleep(Duration::from_millis(25));
    }
    if tier != "bulk" {
        let profile = get(proxy.admin, &format!("/v1/profiles/{user}"), &key);
        panic!("the tick never moved the user ({tier}): {}", profile.body);
    }

    let profile = get(proxy.admin, &format!("/v1/profiles/{user}"), &key);
    assert_eq!(profile.status, 200, "{}", profile.body);
    let json: Value = serde_json::from_str(&profile.body).expect("json");
    let tiering = &json["tiering"];
    assert_eq!(tiering["tier"], "bulk", "{json}");
    let reason = tiering["reason"].as_str().expect("reason");
    assert!(reason.starts_with("rule 0: predicted p90 "), "{reason}");
    assert!(reason.ends_with(" rps > 3"), "{reason}");
    assert!(
        tiering["since_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{json}"
    );
    // The upstream sees the assigned tier too.
    let seen = get(proxy.listen, "/", &key).echoed();
    assert_eq!(seen["x-headroom-tier"], "bulk");
}
