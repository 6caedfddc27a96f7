//! Each identity source, trusted proxies, and JWT refusal.

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::{get, EchoBackend, Proxy};

const SECRET: &str = "e2e-test-secret-0123456789abcdefghij";

fn config(trusted: &str) -> String {
    format!(
        r#"
upstreams: []
health_check: {{ interval: 0s }}
identity:
  trusted_proxies: {trusted}
  sources:
    - api_key:
        header: x-api-key
        keys:
          "k-gold": {{ user: alice, plan: premium }}
        unknown_keys: reject
    - jwt:
        header: authorization
        keys:
          - {{ algorithm: HS256, secret: "{SECRET}" }}
    - cookie: {{ name: sid }}
    - client_ip: {{}}
tiers:
  - {{ name: premium, priority: 100, requests_per_second: 1000, burst: 1000 }}
  - {{ name: standard, priority: 10, requests_per_second: 1000, burst: 1000 }}
rules:
  - {{ when: {{ plan: premium }}, tier: premium }}
default_tier: standard
"#
    )
}

fn token(claims: serde_json::Value, secret: &str) -> String {
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode");
    format!("Bearer {t}")
}

fn user_of(resp: &crate::common::Response) -> String {
    resp.echoed()
        .get("x-headroom-user")
        .cloned()
        .expect("user header")
}

#[test]
fn api_key_gives_user_and_plan_tier_and_unknown_key_is_refused() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[]"), backend.addr);

    let ok = get(proxy.listen, "/", &[("x-api-key", "k-gold")]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-headroom-tier"), Some("premium"));

    let bad = get(proxy.listen, "/", &[("x-api-key", "k-unknown")]);
    assert_eq!(bad.status, 401);
    assert_eq!(backend.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn valid_jwt_identifies_user_with_plan_claim() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[]"), backend.addr);
    let exp = get_current_timestamp() + 600;
    let auth = token(json!({"sub": "bob", "plan": "premium", "exp": exp}), SECRET);

    let a = get(proxy.listen, "/", &[("authorization", &auth)]);
    let b = get(proxy.listen, "/", &[("authorization", &auth)]);

    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-headroom-tier"), Some("premium"));
    assert_eq!(user_of(&a), user_of(&b));
}

#[test]
fn forged_expired_and_unsigned_tokens_get_401() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[]"), backend.addr);
    let exp = get_current_timestamp() + 600;
    let forged = token(
        json!({"sub": "bob", "plan": "premium", "exp": exp}),
        "not-the-secret-at-all-000000000000",
    );
    let expired = token(
        json!({"sub": "bob", "exp": get_current_timestamp() - 3600}),
        SECRET,
    );
    // {"alg":"none","typ":"JWT"}.{"sub":"bob","plan":"premium","exp":9999999999}.
    let none = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJib2IiLCJwbGFuIjoicHJlbWl1bSIsImV4cCI6OTk5OTk5OTk5OX0.";

    for auth in [forged.as_str(), expired.as_str(), none] {
        let resp = get(proxy.listen, "/", &[("authorization", auth)]);
        assert_eq!(resp.status, 401, "{auth}");
        assert!(resp
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
    }
    assert_eq!(backend.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn cookie_identifies_user() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[]"), backend.addr);

    let a1 = get(proxy.listen, "/", &[("cookie", "theme=dark; sid=s-1")]);
    let a2 = get(proxy.listen, "/", &[("cookie", "sid=s-1")]);
    let b = get(proxy.listen, "/", &[("cookie", "sid=s-2")]);

    assert_eq!(user_of(&a1), user_of(&a2));
    assert_ne!(user_of(&a1), user_of(&b));
}

#[test]
fn forwarding_header_from_untrusted_peer_is_ignored() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[]"), backend.addr);

    let a = get(proxy.listen, "/", &[("x-forwarded-for", "198.18.0.1")]);
    let b = get(proxy.listen, "/", &[("x-forwarded-for", "198.18.0.2")]);

    assert_eq!(user_of(&a), user_of(&b), "both are the peer 127.0.0.1");
}

#[test]
fn forwarding_header_from_trusted_peer_names_the_client() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[\"127.0.0.0/8\"]"), backend.addr);

    let a = get(proxy.listen, "/", &[("x-forwarded-for", "198.18.0.1")]);
    let a_again = get(
        proxy.listen,
        "/",
        &[("x-forwarded-for", "6.6.6.6, 198.18.0.1")],
    );
    let b = get(proxy.listen, "/", &[("x-forwarded-for", "198.18.0.2")]);

    assert_ne!(user_of(&a), user_of(&b));
    assert_eq!(
        user_of(&a),
        user_of(&a_again),
        "only the nearest untrusted hop counts"
    );
}

#[test]
fn verified_user_displaces_unverified_ones_from_a_full_table() {
    let backend = EchoBackend::start();
    let yaml = config("[\"127.0.0.0/8\"]").replace(
        "tiers:",
        "profiler: { max_users: 3, idle_timeout: 10m }\ntiers:",
    );
    let proxy = Proxy::start(&yaml, backend.addr);
    for i in 1..=5 {
        let ip = format!("198.18.0.{i}");
        assert_eq!(
            get(proxy.listen, "/", &[("x-forwarded-for", &ip)]).status,
            200
        );
    }
    let untracked = proxy
        .metric("headroom_untracked_requests_total")
        .expect("counter");
    assert_eq!(untracked, 2.0, "two IP users found the table full");

    let gold = get(proxy.listen, "/", &[("x-api-key", "k-gold")]);

    assert_eq!(gold.status, 200);
    assert_eq!(proxy.metric("headroom_untracked_requests_total"), Some(2.0));
    assert_eq!(proxy.metric("headroom_tracked_users"), Some(3.0));
}

#[test]
fn app_sees_the_real_peer_not_a_forged_forwarding_header() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config("[]"), backend.addr);

    let resp = get(proxy.listen, "/", &[("x-forwarded-for", "6.6.6.6")]);

    assert_eq!(
        resp.echoed().get("x-forwarded-for").map(String::as_str),
        Some("127.0.0.1")
    );
}
