//! The admin router and its access rules, called as pingora would call it,
//! over a real `Shared` compiled from a config.

use std::sync::Arc;

use headroom_profiler::Clock;
use http::{HeaderMap, Method, StatusCode};
use proptest::prelude::*;

use super::*;
use crate::insights::test_support::{arrive, headers, shared, shared_from, CONFIG, TOKEN};
use crate::state::Shared;

fn app(shared: &Arc<Shared>) -> AdminApp {
    AdminApp::new(Arc::clone(shared))
}

fn call(app: &AdminApp, method: &str, path: &str, headers: &HeaderMap, body: RequestBody) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    app.handle(&AdminRequest {
        method: &method,
        path,
        headers,
        peer: "192.0.2.10".parse().ok(),
        body,
    })
}

fn get(app: &AdminApp, path: &str, headers: &HeaderMap) -> Reply {
    call(app, "GET", path, headers, RequestBody::None)
}

fn operator() -> HeaderMap {
    headers("authorization", &format!("Bearer {TOKEN}"))
}

fn profile_path(key: u64) -> String {
    format!("/v1/profiles/{key:016x}")
}

/// A user arriving now (the profile reads the real clock).
fn arrive_now(shared: &Shared, h: &HeaderMap, path: &str) -> u64 {
    arrive(shared, h, path, shared.clock.now_ms())
}

#[test]
fn the_operator_reads_any_profile_with_tier_routes_and_scores() {
    let shared = shared();
    let alice = arrive_now(&shared, &headers("x-api-key", "k_alice"), "/search");
    let reply = get(&app(&shared), &profile_path(alice), &operator());
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json_body();
    assert_eq!(body["user"], format!("{alice:016x}"));
    assert_eq!(body["rate_limit"]["tier"], "premium");
    assert_eq!(body["rate_limit"]["verdict"], "allowed");
    assert_eq!(body["route_mix"][1]["route"], "search");
    assert_eq!(body["route_mix"][1]["requests"], 1);
    assert_eq!(body["behaviour"]["requests_total"], 1);
    let score = body["latency_sensitivity"]["score"]
        .as_f64()
        .expect("score");
    assert!((0.0..=1.0).contains(&score));
    let text = String::from_utf8(reply.body.clone()).expect("utf-8");
    for secret in ["k_alice", "alice", "192.0.2.10"] {
        assert!(
            !text.contains(&format!("\"{secret}\"")),
            "{secret} leaked: {text}"
        );
    }
}

#[test]
fn a_user_sees_their_own_profile_and_nobody_elses() {
    let shared = shared();
    let app = app(&shared);
    let alice = arrive_now(&shared, &headers("x-api-key", "k_alice"), "/search");
    let bob = arrive_now(&shared, &headers("x-api-key", "k_bob"), "/");

    let own = get(&app, &profile_path(alice), &headers("x-api-key", "k_alice"));
    assert_eq!(own.status, StatusCode::OK);
    let other = get(&app, &profile_path(bob), &headers("x-api-key", "k_alice"));
    let unknown = get(
        &app,
        &profile_path(0x1234),
        &headers("x-api-key", "k_alice"),
    );
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other, unknown, "another user must look exactly like nobody");

    let sid = arrive_now(&shared, &headers("cookie", "sid=c-42"), "/");
    let by_cookie = get(&app, &profile_path(sid), &headers("cookie", "sid=c-42"));
    assert_eq!(by_cookie.status, StatusCode::OK);
}

#[test]
fn missing_or_bad_credentials_get_401_and_an_address_is_not_a_credential() {
    let shared = shared();
    let app = app(&shared);
    let alice = arrive_now(&shared, &headers("x-api-key", "k_alice"), "/");
    let path = profile_path(alice);

    let none = get(&app, &path, &HeaderMap::new());
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none
        .headers
        .iter()
        .any(|(n, _)| n == http::header::WWW_AUTHENTICATE));
    assert!(none.json_body()["error"].as_str().is_some());

    let forwarded = headers("x-forwarded-for", "192.0.2.10");
    assert_eq!(
        get(&app, &path, &forwarded).status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = headers("authorization", "Bearer operator-token-for-unit-testz");
    assert_eq!(get(&app, &path, &wrong).status, StatusCode::UNAUTHORIZED);
    let unknown_key = headers("x-api-key", "k_mallory");
    assert_eq!(
        get(&app, &path, &unknown_key).status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn malformed_ids_are_400_and_untracked_ids_404_even_for_the_operator() {
    let shared = shared();
    let app = app(&shared);
    for id in ["xyz", "0123456789abcdeg", "0123456789abcdef0"] {
        let reply = get(&app, &format!("/v1/profiles/{id}"), &operator());
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{id}");
    }
    let reply = get(&app, &profile_path(42), &operator());
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json_body()["error"], "no such profile");
}

#[test]
fn the_operator_deletes_a_profile_and_the_user_is_forgotten() {
    let shared = shared();
    let app = app(&shared);
    let bob = arrive_now(&shared, &headers("x-api-key", "k_bob"), "/");
    assert_eq!(shared.users.len(), 1);
    let path = profile_path(bob);
    let reply = call(&app, "DELETE", &path, &operator(), RequestBody::None);
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(shared.users.is_empty());
    assert_eq!(get(&app, &path, &operator()).status, StatusCode::NOT_FOUND);
}

#[test]
fn self_deletion_waits_for_a_full_bucket_so_it_cannot_refill_one() {
    let shared = shared();
    let app = app(&shared);
    let bob = arrive_now(&shared, &headers("x-api-key", "k_bob"), "/");
    let path = profile_path(bob);
    let reply = call(
        &app,
        "DELETE",
        &path,
        &headers("x-api-key", "k_bob"),
        RequestBody::None,
    );
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply
        .headers
        .iter()
        .any(|(n, v)| n == http::header::RETRY_AFTER && v == "1"));
    assert_eq!(shared.users.len(), 1, "still tracked");

    // Someone else's id is just not found, budget or not.
    let alice = arrive_now(&shared, &headers("x-api-key", "k_alice"), "/");
    let reply = call(
        &app,
        "DELETE",
        &profile_path(alice),
        &headers("x-api-key", "k_bob"),
        RequestBody::None,
    );
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[test]
fn a_user_with_a_full_bucket_deletes_their_own_profile() {
    let shared = shared();
    let app = app(&shared);
    // Tracked without a rate-limit check, so the bucket is full.
    let h = headers("cookie", "sid=leaving");
    let rt = shared.runtime.load_full();
    let key = rt.identity.identify(None, &h).expect("cookie user").key;
    shared.user(key, shared.clock.now_ms(), false);
    let reply = call(&app, "DELETE", &profile_path(key), &h, RequestBody::None);
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    assert!(shared.users.get(key).is_none());
}

#[test]
fn operator_endpoints_refuse_users_and_are_off_without_a_token() {
    let shared = shared();
    let app = app(&shared);
    for path in ["/v1/cohorts", "/v1/forecast", "/v1/events"] {
        assert_eq!(
            get(&app, path, &operator()).status,
            StatusCode::OK,
            "{path}"
        );
        let user = get(&app, path, &headers("x-api-key", "k_alice"));
        assert_eq!(user.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            get(&app, path, &HeaderMap::new()).status,
            StatusCode::UNAUTHORIZED
        );
    }

    let without = CONFIG.replace(
        "admin_api:\n  token: \"operator-token-for-unit-tests\"\n",
        "",
    );
    let shared = shared_from(&without);
    let reply = get(&AdminApp::new(shared), "/v1/cohorts", &operator());
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.json_body()["error"]
        .as_str()
        .unwrap_or("")
        .contains("admin_api.token"));
}

#[test]
fn posted_events_round_trip_and_bad_ones_say_which_field() {
    let shared = shared();
    let app = app(&shared);
    let body = br#"{"name": "spring-sale", "start": "2030-03-01T09:00:00Z",
        "end": 1898672400000, "scope": "route", "route": "export", "multiplier": 2.5}"#;
    let reply = call(
        &app,
        "POST",
        "/v1/events",
        &operator(),
        RequestBody::Bytes(body.to_vec()),
    );
    assert_eq!(reply.status, StatusCode::CREATED);
    let made = reply.json_body();
    assert_eq!(made["route"], "export");
    assert_eq!(made["status"], "pending");
    assert_eq!(made["expected_multiplier"], 2.5);
    assert_eq!(made["multiplier_source"], "declared");

    let listed = get(&app, "/v1/events", &operator()).json_body();
    assert_eq!(listed["events"][0]["id"], made["id"]);
    assert_eq!(listed["events"][0]["name"], "spring-sale");

    for (bad, field) in [
        (&br#"{"name": "x", "start": 1, "end": 2}"#[..], "start"),
        (br#"{"name": "x", "start": "2030-03-01T09:00:00Z", "end": "2030-03-01T08:00:00Z"}"#, "end"),
        (br#"{"name": "", "start": 1898672400000, "end": 1898672400001}"#, "name"),
        (br#"{"name": "x", "start": 1898672400000, "end": 1898672400001, "multiplier": 0}"#, "multiplier"),
        (br#"{"name": "x", "start": 1898672400000, "end": 1898672400001, "scope": "route", "route": "nope"}"#, "route"),
        (br#"{"name": "x", "start": 1898672400000, "end": 1898672400001, "cohort": 1}"#, "cohort"),
        (br#"{"name": "x", "start": 1898672400000, "end": 1898672400001, "colour": 1}"#, "colour"),
        (br#"[1, 2]"#, "object"),
        (br#"{"name": "x""#, "JSON"),
    ] {
        let reply = call(&app, "POST", "/v1/events", &operator(), RequestBody::Bytes(bad.to_vec()));
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(bad));
        let message = reply.json_body()["error"].as_str().unwrap_or("").to_owned();
        assert!(message.contains(field), "{message:?} should name {field}");
    }
    let big = call(
        &app,
        "POST",
        "/v1/events",
        &operator(),
        RequestBody::TooLarge,
    );
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let empty = call(&app, "POST", "/v1/events", &operator(), RequestBody::None);
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let shared = shared();
    let app = app(&shared);
    let reply = get(&app, "/nope", &HeaderMap::new());
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json_body()["error"], "not found");
    let reply = call(&app, "PATCH", "/v1/events", &operator(), RequestBody::None);
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply
        .headers
        .iter()
        .any(|(n, v)| n == http::header::ALLOW && v == "GET, POST"));
    let metrics = get(&app, "/metrics", &HeaderMap::new());
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&metrics.body).contains("headroom_tracked_users"));
    assert_eq!(
        get(&app, "/v1/openapi.json", &HeaderMap::new()).status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/dashboard", &HeaderMap::new()).content_type,
        "text/html; charset=utf-8"
    );
}

#[test]
fn cohorts_and_forecast_views_show_the_snapshot() {
    let shared = shared();
    let app = app(&shared);
    let now = shared.clock.now_ms();
    for u in 0..40 {
        arrive(
            &shared,
            &headers("cookie", &format!("sid=u{u}")),
            "/search",
            now,
        );
    }
    let mut ticker = crate::insights::Ticker::new(&shared).expect("ticker");
    ticker.tick(&shared, now + 1_000);
    let cohorts = get(&app, "/v1/cohorts", &operator()).json_body();
    assert_eq!(cohorts["generation"], 1);
    assert_eq!(cohorts["users"], 40);
    let first = &cohorts["cohorts"][0];
    assert!(first["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(first["live"]["users"], 40);
    assert_eq!(
        cohorts["next_action_horizons_s"],
        serde_json::json!([60, 300, 900, 3600])
    );
    assert_eq!(
        first["next_action"][0]["within"][0]["p"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    let forecast = get(&app, "/v1/forecast", &operator()).json_body();
    assert_eq!(forecast["status"], "pending");
    assert_eq!(forecast["cohorts"][0]["users"], 40);
}

/// Odd methods, paths, headers and bodies.
fn odd_request() -> impl Strategy<Value = (String, String, Vec<(String, String)>, Vec<u8>)> {
    let method = prop::sample::select(vec![
        "GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "TRACE", "BREW",
    ])
    .prop_map(str::to_owned);
    let segment = prop_oneof![
        prop::sample::select(vec![
            "v1",
            "profiles",
            "cohorts",
            "events",
            "forecast",
            "metrics",
            "healthz",
            "dashboard",
            "openapi.json",
            "",
            "..",
            "%00",
            "ffffffffffffffff",
            "FFFFFFFFFFFFFFFF",
        ])
        .prop_map(str::to_owned),
        "[0-9a-f]{16}",
        "\\PC{0,20}",
    ];
    let path = prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/")));
    let header = prop_oneof![
        Just(("authorization".to_owned(), format!("Bearer {TOKEN}"))),
        "[ -~]{0,40}".prop_map(|v| ("authorization".to_owned(), v)),
        "[ -~]{0,40}".prop_map(|v| ("x-api-key".to_owned(), v)),
        "[ -~]{0,40}".prop_map(|v| ("cookie".to_owned(), v)),
        "[ -~]{0,40}".prop_map(|v| ("x-forwarded-for".to_owned(), v)),
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\PC{0,200}".prop_map(String::into_bytes),
        Just(br#"{"name":"n","start":1898672400000,"end":1898672400001}"#.to_vec()),
    ];
    (method, path, prop::collection::vec(header, 0..3), body)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_router_never_panics_and_errors_are_json((method, path, hdrs, body) in odd_request()) {
        let shared = shared();
        arrive_now(&shared, &headers("x-api-key", "k_alice"), "/");
        let app = app(&shared);
        let mut map = HeaderMap::new();
        for (name, value) in hdrs {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                map.append(http::HeaderName::from_static(match name.as_str() {
                    "authorization" => "authorization",
                    "x-api-key" => "x-api-key",
                    "cookie" => "cookie",
                    _ => "x-forwarded-for",
                }), value);
            }
        }
        let reply = call(&app, &method, &path, &map, RequestBody::Bytes(body));
        prop_assert!(reply.status != StatusCode::INTERNAL_SERVER_ERROR);
        if !reply.status.is_success() && !path.starts_with("/healthz") {
            prop_assert_eq!(reply.content_type, reply::JSON);
            let error = reply.json_body();
            prop_assert!(error["error"].as_str().is_some(), "{:?}", error);
        }
    }
}
