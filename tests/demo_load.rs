//! The load generator against the sample application directly (no proxy in
//! between, so every response is tier `none`), and trace replay with the real
//! traces in `shared/traces`. Each run is bounded to about two seconds.

use std::path::PathBuf;
use std::time::Duration;

use headroom::demo::{
    run_load, DemoOptions, LoadReport, SampleApp, SampleAppConfig, SampleAppHandle,
};

fn small_app(workers: usize) -> SampleAppHandle {
    let cfg = SampleAppConfig {
        workers,
        ..SampleAppConfig::default()
    };
    SampleApp::start(cfg).expect("binding 127.0.0.1:0 works in tests")
}

fn options(load: f64) -> DemoOptions {
    DemoOptions {
        duration: Duration::from_secs(2),
        load,
        jwt_secret: "test-secret".to_owned(),
        ..DemoOptions::default()
    }
}

fn trace_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces")
        .join(name)
}

/// Checks what holds for any run straight against the app.
fn assert_sane_direct_report(report: &LoadReport) {
    assert_eq!(
        report.tiers.keys().collect::<Vec<_>>(),
        ["none"],
        "no proxy, no tiers"
    );
    let none = &report.tiers["none"];
    assert_eq!(
        none.requests, report.totals.sent,
        "every sent request is accounted for"
    );
    assert_eq!(none.limited + none.shed, 0, "only a proxy limits or sheds");
    assert_eq!(none.admitted + none.errors, none.requests);
    assert!(none.errors * 100 <= none.requests, "{none:?}");
    assert!(none.p50_ms > 0.0 && none.p50_ms <= none.p99_ms, "{none:?}");
    assert!(
        (report.duration_s - 2.0).abs() < 0.2,
        "{}",
        report.duration_s
    );
    assert_eq!(report.forecast.points, 0, "no proxy, no forecast header");
    assert!(report.forecast.mase.is_nan());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_load_below_capacity_is_served_quickly_by_the_app() {
    let app = small_app(4);
    let url = format!("http://{}", app.addr());
    let report = run_load(&options(0.5), &url, &app)
        .await
        .expect("the run starts");
    assert_sane_direct_report(&report);

    // Half of capacity for 2 s; session on/off makes the count vary.
    let expected = 0.5 * app.capacity_rps_for(&headroom::demo::synthetic_mix()) * 2.0;
    let sent = report.totals.sent as f64;
    assert!(
        sent > 0.5 * expected && sent < 1.5 * expected,
        "sent {sent}, expected {expected}"
    );
    assert!(report.totals.users > 100, "{:?}", report.totals);
    assert_eq!(report.totals.not_sent, 0);
    assert!(
        report.tiers["none"].p50_ms < 60.0,
        "{:?}",
        report.tiers["none"]
    );
    assert!((report.offered_load - 0.5).abs() < 1e-9);

    // The app saw every request, each without a tier header.
    let stats = app.stats();
    assert_eq!(stats.by_tier.get("none").copied(), Some(report.totals.sent));
    assert!(stats.by_route["search"] > 0 && stats.by_route["read"] > 0);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
    assert_eq!(json["tiers"]["none"]["requests"], report.totals.sent);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_makes_requests_queue_and_latency_rise() {
    let app = small_app(4);
    let url = format!("http://{}", app.addr());
    let report = run_load(&options(3.0), &url, &app)
        .await
        .expect("the run starts");
    assert_sane_direct_report(&report);

    // Three times capacity: slots stay full, waiters pile up, tail latency grows
    // to many service times (a search alone is 30-50 ms).
    let stats = app.stats();
    assert!(stats.peak_waiting > 50, "{stats:?}");
    assert!(
        report.tiers["none"].p99_ms > 150.0,
        "{:?}",
        report.tiers["none"]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_log_replays_with_one_user_per_client() {
    let app = small_app(16);
    let url = format!("http://{}", app.addr());
    // 10,000 requests over 3.5 days: 20,000x is about 660 requests/s.
    let trace = trace_path("elastic_apache_logs.log");
    let report = headroom::replay::replay(&trace, &url, 20_000.0, Some(Duration::from_secs(2)))
        .await
        .expect("the replay starts");
    assert_sane_direct_report(&report);
    assert!(report.totals.sent > 500, "{:?}", report.totals);
    assert!(report.totals.users > 20, "{:?}", report.totals);
    assert_eq!(report.offered_load, 0.0);
    let stats = app.stats();
    assert!(
        stats.by_route["static"] > 0 && stats.by_route["page"] > 0,
        "{stats:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_with_a_trace_picks_a_speed_for_the_asked_load() {
    let app = small_app(8);
    let url = format!("http://{}", app.addr());
    let opts = DemoOptions {
        trace: Some(trace_path("wc98_day6_sample.csv.gz")),
        ..options(0.5)
    };
    let report = run_load(&opts, &url, &app).await.expect("the run starts");
    assert_sane_direct_report(&report);
    // Automatic speed aims at half the capacity for this trace's mix.
    assert!(
        report.offered_load > 0.3 && report.offered_load < 0.7,
        "{}",
        report.offered_load
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counts_series_replays_over_synthetic_clients() {
    let app = small_app(16);
    let url = format!("http://{}", app.addr());
    // The NASA series averages 0.68 requests/s: 500x is about 340/s.
    let trace = trace_path("nasa95_requests_per_second.txt.gz");
    let report = headroom::replay::replay(&trace, &url, 500.0, Some(Duration::from_secs(1)))
        .await
        .expect("the replay starts");
    assert_eq!(report.tiers["none"].requests, report.totals.sent);
    assert!(report.totals.sent > 100, "{:?}", report.totals);
    assert!(
        report.totals.users > 50 && report.totals.users <= 500,
        "{:?}",
        report.totals
    );
    let stats = app.stats();
    assert_eq!(
        stats.by_route["page"], report.totals.sent,
        "expanded requests go to /"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn bad_targets_and_speeds_are_refused_before_sending() {
    let trace = trace_path("elastic_apache_logs.log");
    let bad_target = headroom::replay::replay(&trace, "ftp://127.0.0.1:1", 1.0, None).await;
    assert!(bad_target.is_err());
    let bad_speed = headroom::replay::replay(&trace, "http://127.0.0.1:1", 0.0, None).await;
    assert!(bad_speed.is_err());
    let missing = trace_path("nope.log");
    let missing = headroom::replay::replay(&missing, "http://127.0.0.1:1", 1.0, None).await;
    assert!(missing.is_err());
}
