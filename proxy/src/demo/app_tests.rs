//! Behaviour of the sample application over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::*;
use crate::demo::route::ServiceTime;

type TestClient = Client<HttpConnector, Empty<Bytes>>;

/// Costs where every class takes exactly `ms` milliseconds.
fn flat_costs(ms: u64) -> RouteCosts {
    let flat = ServiceTime::millis(ms, ms);
    RouteCosts {
        read: flat,
        search: flat,
        export_setup: flat,
        static_file: flat,
        page: flat,
        ..RouteCosts::default()
    }
}

fn start(workers: usize, queue_limit: Option<usize>, costs: RouteCosts) -> SampleAppHandle {
    let cfg = SampleAppConfig {
        workers,
        queue_limit,
        costs,
        ..SampleAppConfig::default()
    };
    SampleApp::start(cfg).expect("binding 127.0.0.1:0 works in tests")
}

/// GET `path` with `headers`; returns status, headers, body length and latency.
async fn get(
    client: &TestClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &'static str)],
) -> (StatusCode, HeaderMap, usize, Duration) {
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).expect("a valid request");
    let started = Instant::now();
    let response = client.request(request).await.expect("the app answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body arrives").to_bytes();
    (parts.status, parts.headers, body.len(), started.elapsed())
}

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_a_slot_so_latency_rises_under_overload() {
    let app = start(2, None, flat_costs(50));
    let client = client();

    // Ten at once on two 50 ms slots: five rounds, the last pair waits four slots.
    let results = concurrent_gets(&client, app.addr(), 10, |i| format!("/page/{i}")).await;
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.3).collect();
    latencies.sort();
    assert!(results.iter().all(|r| r.0 == StatusCode::OK));
    assert!(latencies[0] < Duration::from_millis(150), "{latencies:?}");
    assert!(latencies[9] >= Duration::from_millis(240), "{latencies:?}");
    assert!(latencies[9] < Duration::from_millis(1_000), "{latencies:?}");

    let stats = app.stats();
    assert_eq!(stats.served, 10);
    assert_eq!(stats.rejected, 0);
    assert!(stats.peak_waiting >= 6, "{stats:?}");
    // Every request held a slot for at least its 50 ms.
    assert_eq!(stats.slots_released, 10);
    assert!(stats.slot_busy_us >= 10 * 50_000, "{stats:?}");
    app.shutdown().await;
}

#[test]
fn slot_use_is_measured_between_snapshots() {
    let earlier = AppStats {
        slots_released: 100,
        slot_busy_us: 1_000_000,
        ..AppStats::default()
    };
    // 400 more requests held their slots 4 s in all (10 ms each), over 1 s
    // of a 16-slot app: a quarter busy, capacity 16 / 10 ms.
    let later = AppStats {
        slots_released: 500,
        slot_busy_us: 5_000_000,
        ..AppStats::default()
    };
    let used = later.slot_use_since(&earlier, 16, Duration::from_secs(1));
    assert!((used.utilisation - 0.25).abs() < 1e-9, "{used:?}");
    assert!((used.mean_slot_ms - 10.0).abs() < 1e-9, "{used:?}");
    assert!(
        (used.capacity_measured_rps - 1_600.0).abs() < 1e-6,
        "{used:?}"
    );
    let idle = earlier.slot_use_since(&earlier, 16, Duration::from_secs(1));
    assert_eq!(idle.utilisation, 0.0);
    assert!(
        idle.capacity_measured_rps.is_nan(),
        "no slot released: unknown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wait_queue_answers_503_with_retry_after() {
    let app = start(1, Some(1), flat_costs(200));
    let client = client();
    let results = concurrent_gets(&client, app.addr(), 4, |_| "/api/items/1".to_owned()).await;
    let rejected: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(rejected.len(), 2, "one served, one queued, two turned away");
    for (_, headers, _, latency) in rejected {
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(headers["x-demo-app"], "queue-full");
        assert!(*latency < Duration::from_millis(150));
    }
    assert_eq!(app.stats().rejected, 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_at_once_while_every_slot_is_busy() {
    let app = start(1, None, flat_costs(300));
    let client = client();
    let busy = get(&client, app.addr(), "/slow", &[]);
    let health = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        get(&client, app.addr(), "/healthz", &[]).await
    };
    let (busy, health) = tokio::join!(busy, health);
    assert_eq!(health.0, StatusCode::OK);
    assert!(health.3 < Duration::from_millis(100), "{:?}", health.3);
    assert!(busy.3 >= Duration::from_millis(300));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_its_size_and_tier_headers_are_counted() {
    let costs = RouteCosts {
        export_bytes_range: (300_000, 300_000),
        export_bytes_per_sec: 10_000_000,
        ..flat_costs(1)
    };
    let app = start(4, None, costs);
    let client = client();
    let premium = [("x-headroom-tier", "premium")];
    let (status, headers, len, latency) = get(&client, app.addr(), "/api/export", &premium).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(len, 300_000);
    assert_eq!(headers["content-length"], "300000");
    // Five 64 KiB chunks at 10 MB/s: the last is due after about 26 ms.
    assert!(latency >= Duration::from_millis(25), "{latency:?}");
    let (_, _, page_len, _) = get(&client, app.addr(), "/index.html", &[]).await;
    assert!((4_000..=24_000).contains(&page_len));

    let stats = app.stats();
    assert_eq!(stats.by_tier.get("premium"), Some(&1));
    assert_eq!(stats.by_tier.get("none"), Some(&1));
    assert_eq!(stats.by_route["export"], 1);
    assert_eq!(stats.by_route["page"], 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_request_on_a_connection_pays_the_connect_cost() {
    let cfg = SampleAppConfig {
        workers: 4,
        costs: flat_costs(1),
        connect_cost: Duration::from_millis(250),
        ..SampleAppConfig::default()
    };
    let app = SampleApp::start(cfg).expect("binding 127.0.0.1:0 works in tests");
    let pooled = client();

    // The first request opens the connection; the next ones reuse it.
    let first = get(&pooled, app.addr(), "/page/1", &[]).await;
    assert_eq!(first.0, StatusCode::OK);
    assert!(first.3 >= Duration::from_millis(250), "{:?}", first.3);
    for i in 0..3 {
        // Let the client put the connection back in its pool first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let again = get(&pooled, app.addr(), &format!("/page/{i}"), &[]).await;
        assert!(again.3 < Duration::from_millis(200), "{:?}", again.3);
    }
    // A free /healthz on a new connection pays it too: it is per connection.
    let health = get(&client(), app.addr(), "/healthz", &[]).await;
    assert!(health.3 >= Duration::from_millis(250), "{:?}", health.3);
    let stats = app.stats();
    assert_eq!((stats.connections, stats.served), (2, 4), "{stats:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_connect_cost_adds_nothing_and_the_default_is_five_ms() {
    assert_eq!(
        SampleAppConfig::default().connect_cost,
        Duration::from_millis(5)
    );
    let cfg = SampleAppConfig {
        costs: flat_costs(1),
        connect_cost: Duration::ZERO,
        ..SampleAppConfig::default()
    };
    let app = SampleApp::start(cfg).expect("binding 127.0.0.1:0 works in tests");
    let first = get(&client(), app.addr(), "/page/1", &[]).await;
    assert!(first.3 < Duration::from_millis(200), "{:?}", first.3);
    app.shutdown().await;
}

#[tokio::test]
async fn a_non_loopback_address_is_refused() {
    let cfg = SampleAppConfig {
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        ..SampleAppConfig::default()
    };
    let err = SampleApp::start(cfg)
        .err()
        .expect("0.0.0.0 is not loopback");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// Spawns `n` concurrent GETs of `path(i)` and returns their results.
async fn concurrent_gets(
    client: &TestClient,
    addr: SocketAddr,
    n: usize,
    path: impl Fn(usize) -> String,
) -> Vec<(StatusCode, HeaderMap, usize, Duration)> {
    let mut calls = JoinSet::new();
    for i in 0..n {
        let (client, path) = (client.clone(), path(i));
        calls.spawn(async move { get(&client, addr, &path, &[]).await });
    }
    calls.join_all().await
}
