//! The synthetic workload's rates and tokens, and the trace replay's identities.

use jsonwebtoken::{decode, DecodingKey, Validation};

use super::*;

#[derive(serde::Deserialize)]
struct DecodedClaims {
    sub: String,
    plan: String,
    exp: u64,
}

/// Drains `source` up to `until`, returning the arrivals.
fn drain(source: &mut impl Source, until: Duration) -> Vec<(Duration, Planned)> {
    let mut out = Vec::new();
    while let Some((at, planned)) = source.next_request() {
        if at >= until {
            break;
        }
        out.push((at, planned));
    }
    out
}

#[test]
fn synthetic_load_sends_the_requested_rate_with_cohort_shares() {
    let mut source = SyntheticSource::new(1_000.0, b"secret", 7).expect("signing works");
    let arrivals = drain(&mut source, Duration::from_secs(300));
    assert!(
        arrivals.windows(2).all(|w| w[0].0 <= w[1].0),
        "arrivals in time order"
    );

    // 300 s at 1,000/s; sessions of 10-60 s make the count vary by a few percent.
    let total = arrivals.len() as f64;
    assert!((total - 300_000.0).abs() < 30_000.0, "{total}");
    let premium = arrivals.iter().filter(|(_, p)| p.user < 40).count() as f64;
    assert!((premium / total - 0.25).abs() < 0.05, "{}", premium / total);
    let distinct: std::collections::HashSet<u32> = arrivals.iter().map(|(_, p)| p.user).collect();
    assert_eq!(distinct.len(), 300);
    let exports = arrivals
        .iter()
        .filter(|(_, p)| p.path.starts_with("/api/export"))
        .count();
    assert!((exports as f64 / total - 0.0125).abs() < 0.006, "{exports}");
}

#[test]
fn users_alternate_between_sessions_and_pauses() {
    let mut source = SyntheticSource::new(1_000.0, b"secret", 11).expect("signing works");
    let arrivals = drain(&mut source, Duration::from_secs(600));
    // A free casual user (pauses average 30 s) shows gaps far above its
    // in-session spacing (about 0.08 s).
    let user = 250;
    let times: Vec<f64> = arrivals
        .iter()
        .filter(|(_, p)| p.user == user)
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    let longest_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(times.len() > 100, "{}", times.len());
    assert!(longest_gap > 5.0, "{longest_gap}");
}

#[test]
fn each_user_carries_a_verifiable_token_with_its_plan() {
    let mut source = SyntheticSource::new(100.0, b"demo-secret", 1).expect("signing works");
    let (_, planned) = source.next_request().expect("a non-empty workload");
    assert_eq!(planned.identity.0, header::AUTHORIZATION);
    let value = planned.identity.1.to_str().expect("ascii");
    let token = value.strip_prefix("Bearer ").expect("a bearer token");
    let key = DecodingKey::from_secret(b"demo-secret");
    let claims = decode::<DecodedClaims>(token, &key, &Validation::new(Algorithm::HS256))
        .expect("the token verifies with the shared secret")
        .claims;
    assert!(claims.sub.starts_with("demo-"));
    assert!(["premium", "standard", "free"].contains(&claims.plan.as_str()));
    assert!(
        claims.exp
            > SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_secs()
    );
    let wrong = DecodingKey::from_secret(b"other");
    assert!(decode::<DecodedClaims>(token, &wrong, &Validation::new(Algorithm::HS256)).is_err());
}

#[test]
fn synthetic_mix_shares_add_up_to_one() {
    let mix = synthetic_mix();
    let total: f64 = mix.iter().map(|m| m.1).sum();
    assert!((total - 1.0).abs() < 1e-9);
    let search = mix.iter().find(|m| m.0 == Route::Search).map(|m| m.1);
    // premium 0.25 x 0.15 + standard 0.55 x 0.10
    assert!((search.unwrap_or(0.0) - 0.0925).abs() < 1e-9);
}

#[test]
fn trace_clients_map_to_stable_addresses() {
    assert_eq!(client_address("198.18.3.4").to_string(), "198.18.3.4");
    assert_eq!(client_address("2001:db8::1").to_string(), "2001:db8::1");
    assert_eq!(client_address("1044").to_string(), "198.18.4.20");
    assert_eq!(client_address("131071").to_string(), "198.19.255.255");
    let host = client_address("piweba3y.prodigy.com");
    assert_eq!(host, client_address("piweba3y.prodigy.com"));
    let IpAddr::V4(v4) = host else {
        panic!("hashed names map to IPv4")
    };
    assert_eq!(v4.octets()[0], 198);
    assert!(v4.octets()[1] == 18 || v4.octets()[1] == 19);
}

#[test]
fn trace_replay_compresses_time_and_keeps_one_user_per_client() {
    let record = |t_ms, client: &str, agent: Option<&str>| TraceRecord {
        t_ms,
        client: Arc::from(client),
        method: Method::from_bytes(b"PROPFIND").expect("a valid extension method"),
        path: Arc::from("/x"),
        status: Some(200),
        bytes: None,
        user_agent: agent.map(Arc::from),
    };
    let records = vec![
        record(0, "7", Some("curl/8")),
        record(5_000, "9", None),
        record(10_000, "7", None),
    ];
    let mut source = TraceSource::new(records, 10.0);
    let arrivals = drain(&mut source, Duration::from_secs(60));
    let times: Vec<Duration> = arrivals.iter().map(|a| a.0).collect();
    assert_eq!(
        times,
        vec![
            Duration::ZERO,
            Duration::from_millis(500),
            Duration::from_secs(1)
        ]
    );
    let users: Vec<u32> = arrivals.iter().map(|a| a.1.user).collect();
    assert_eq!(users, vec![0, 1, 0]);
    assert_eq!(arrivals[0].1.identity.1, "198.18.0.7");
    assert_eq!(
        arrivals[0].1.user_agent.as_ref().map(|v| v.to_str().ok()),
        Some(Some("curl/8"))
    );
    assert_eq!(arrivals[0].1.method, Method::GET);
}
