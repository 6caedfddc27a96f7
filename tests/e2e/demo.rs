//! `headroom demo` runs the sample app, the proxy and the load, and reports.

use std::process::Command;
use std::time::Instant;

fn demo(args: &[&str]) -> serde_json::Value {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("demo")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "error")
        .output()
        .expect("run demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "demo must stop at --duration"
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn demo_runs_ten_seconds_and_reports_per_tier() {
    let report = demo(&["--duration", "10", "--load", "1.5"]);

    assert_eq!(report["duration_s"].as_f64().map(f64::round), Some(10.0));
    assert_eq!(report["shaping"], true);
    let tiers = report["tiers"].as_object().expect("tiers");
    for tier in ["premium", "standard", "free"] {
        let t = &tiers[tier];
        let requests = t["requests"].as_u64().expect("requests");
        assert!(requests > 0, "{tier}: {t}");
        let parts = t["admitted"].as_u64().unwrap_or(0)
            + t["limited"].as_u64().unwrap_or(0)
            + t["shed"].as_u64().unwrap_or(0);
        assert!(parts <= requests, "{tier}: {t}");
    }
    // At 1.5x capacity the free tier's tight limit bites; premium's does not.
    assert!(tiers["free"]["limited"].as_u64() > Some(0), "{report}");
    assert_eq!(tiers["premium"]["limited"].as_u64(), Some(0), "{report}");
    assert!(report["forecast"].is_object());
}

#[test]
fn demo_replays_a_real_access_log() {
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/traces/elastic_apache_logs.log"
    );
    let report = demo(&["--trace", trace, "--speed", "3000", "--duration", "8"]);

    let tiers = report["tiers"].as_object().expect("tiers");
    let total: u64 = tiers.values().filter_map(|t| t["requests"].as_u64()).sum();
    assert!(total > 100, "{report}");
    assert!(tiers.contains_key("standard"), "{report}");
}
