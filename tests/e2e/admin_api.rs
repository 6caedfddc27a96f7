//! The admin API against the real binary: profiles with their access
//! rules, the privacy DELETE, events, the dashboard and the OpenAPI
//! document.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use headroom::identity::Pseudonymizer;
use headroom_policies::SourceKind;

use serde_json::Value;

use crate::common::{get, request, EchoBackend, Proxy};

const TOKEN: &str = "e2e-operator-token-0123456789";
const IDENTITY_SECRET: &str = "e2e-identity-secret-0123456789";

fn config() -> String {
    format!(
        r#"
upstreams: []
health_check: {{ interval: 0s }}
identity:
  secret: "{IDENTITY_SECRET}"
  sources:
    - api_key:
        keys:
          "k-alice": {{ user: alice, plan: premium }}
          "k-bob": {{ user: bob }}
    - client_ip: {{}}
routes:
  - {{ name: export, prefix: /export, cost: 5, kind: batch }}
tiers:
  - {{ name: premium, requests_per_second: 1000, burst: 1000 }}
  - {{ name: free, requests_per_second: 1000, burst: 1000 }}
rules:
  - {{ when: {{ plan: premium }}, tier: premium }}
default_tier: free
admin_api:
  token: "{TOKEN}"
"#
    )
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// The pseudonymous id the backend saw for a request with `key`.
fn user_id(proxy: &Proxy, key: &str) -> String {
    let resp = get(proxy.listen, "/export/report", &[("x-api-key", key)]);
    assert_eq!(resp.status, 200);
    resp.echoed()
        .get("x-headroom-user")
        .cloned()
        .expect("x-headroom-user sent upstream")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Sends `method path` with a body and returns (status, body). Write errors
/// are ignored: a server refusing a large body may close before reading it.
fn send_body(addr: SocketAddr, method: &str, path: &str, auth: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\
         Authorization: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn a_user_sees_their_own_profile_and_not_another_users() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config(), backend.addr);
    let alice = user_id(&proxy, "k-alice");
    let bob = user_id(&proxy, "k-bob");
    let path = |id: &str| format!("/v1/profiles/{id}");

    let own = get(proxy.admin, &path(&alice), &[("x-api-key", "k-alice")]);
    assert_eq!(own.status, 200, "{}", own.body);
    let profile = json(&own.body);
    assert_eq!(profile["user"], alice.as_str());
    assert_eq!(profile["rate_limit"]["tier"], "premium");
    assert_eq!(profile["route_mix"][1]["route"], "export");
    assert_eq!(profile["behaviour"]["requests_total"], 1);
    assert!(!own.body.contains("k-alice") && !own.body.contains("127.0.0.1"));

    let other = get(proxy.admin, &path(&bob), &[("x-api-key", "k-alice")]);
    let nobody = get(
        proxy.admin,
        &path("0000000000000001"),
        &[("x-api-key", "k-alice")],
    );
    assert_eq!((other.status, nobody.status), (404, 404));
    assert_eq!(other.body, nobody.body);

    assert_eq!(get(proxy.admin, &path(&bob), &[]).status, 401);
    let wrong = get(
        proxy.admin,
        &path(&bob),
        &[("authorization", "Bearer nope")],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(
        json(&wrong.body)["error"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );
    let operator = get(proxy.admin, &path(&bob), &[("authorization", &bearer())]);
    assert_eq!(operator.status, 200);
    assert_eq!(json(&operator.body)["rate_limit"]["tier"], "free");
}

#[test]
fn delete_forgets_the_user_and_the_tracked_gauge_drops() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config(), backend.addr);
    user_id(&proxy, "k-alice");
    let bob = user_id(&proxy, "k-bob");
    assert_eq!(proxy.metric("headroom_tracked_users"), Some(2.0));

    let path = format!("/v1/profiles/{bob}");
    let deleted = request(
        proxy.admin,
        "DELETE",
        &path,
        &[("authorization", &bearer())],
    );
    assert_eq!(deleted.status, 204);
    assert_eq!(proxy.metric("headroom_tracked_users"), Some(1.0));
    let gone = get(proxy.admin, &path, &[("authorization", &bearer())]);
    assert_eq!(gone.status, 404);
}

#[test]
fn events_post_round_trips_and_bad_bodies_are_refused() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config(), backend.addr);
    let body = br#"{"name": "launch", "start": "2030-01-01T00:00:00Z",
        "end": "2030-01-02T00:00:00Z", "scope": "route", "route": "export", "multiplier": 3}"#;
    let (status, made) = send_body(proxy.admin, "POST", "/v1/events", &bearer(), body);
    assert_eq!(status, 201, "{made}");
    let made = json(&made);
    assert!(made["id"].as_u64().is_some());
    assert_eq!(made["start_ms"], 1_893_456_000_000_u64);
    assert_eq!(made["status"], "pending");

    let listed = get(proxy.admin, "/v1/events", &[("authorization", &bearer())]);
    let listed = json(&listed.body);
    assert_eq!(listed["events"][0]["id"], made["id"]);
    assert_eq!(listed["events"][0]["route"], "export");

    let (status, error) = send_body(
        proxy.admin,
        "POST",
        "/v1/events",
        &bearer(),
        b"{\"name\": 1}",
    );
    assert_eq!(status, 400);
    assert!(json(&error)["error"]
        .as_str()
        .is_some_and(|e| e.contains("name")));
    let huge = vec![b' '; 70 * 1024];
    let (status, error) = send_body(proxy.admin, "POST", "/v1/events", &bearer(), &huge);
    assert_eq!(status, 413);
    assert!(json(&error)["error"].as_str().is_some());
    let (status, _) = send_body(proxy.admin, "POST", "/v1/events", "Bearer nope", body);
    assert_eq!(status, 401);
}

#[test]
fn openapi_lists_every_contract_route_and_the_dashboard_is_served() {
    let backend = EchoBackend::start();
    let proxy = Proxy::start(&config(), backend.addr);
    let doc = get(proxy.admin, "/v1/openapi.json", &[]);
    assert_eq!(doc.status, 200);
    let doc = json(&doc.body);
    for (path, method) in [
        ("/metrics", "get"),
        ("/healthz", "get"),
        ("/v1/profiles/{user}", "get"),
        ("/v1/profiles/{user}", "delete"),
        ("/v1/cohorts", "get"),
        ("/v1/forecast", "get"),
        ("/v1/events", "post"),
        ("/dashboard", "get"),
        ("/v1/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }

    let page = get(proxy.admin, "/dashboard", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("/v1/cohorts"));
    let cohorts = get(proxy.admin, "/v1/cohorts", &[("authorization", &bearer())]);
    assert_eq!(cohorts.status, 200);
    assert!(json(&cohorts.body)["cohorts"].is_array());
    let as_user = get(proxy.admin, "/v1/cohorts", &[("x-api-key", "k-alice")]);
    assert_eq!(as_user.status, 403);
}

/// A backend that answers every request after `delay`.
fn slow_backend(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                std::thread::sleep(delay);
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            });
        }
    });
    addr
}

#[test]
fn a_client_hanging_up_on_a_slow_response_counts_as_a_latency_reaction() {
    let backend = slow_backend(Duration::from_secs(3));
    let proxy = Proxy::start(&config(), backend);
    let alice =
        Pseudonymizer::from_secret(IDENTITY_SECRET.as_bytes()).key(SourceKind::ApiKey, b"alice");
    let path = format!("/v1/profiles/{alice:016x}");

    // Ask, wait past half the interactive threshold (1 s), hang up.
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nx-api-key: k-alice\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(900));
    drop(client);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = get(proxy.admin, &path, &[("x-api-key", "k-alice")]);
        if resp.status == 200 {
            let signals = &json(&resp.body)["latency_sensitivity"];
            if signals["slow_reactions"] == 1 {
                assert_eq!(signals["slow_responses"], 1);
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no disconnect recorded: {}",
            resp.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
