//! `headroom demo --ramp-at SECS --ramp-load X`, end to end: the real binary
//! starts the sample app and the proxy on 127.0.0.1, declares the step to
//! the proxy's admin API, and reports the window after it.

use std::process::{Command, Output};
use std::time::Instant;

fn demo(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("demo")
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run demo");
    assert!(
        started.elapsed().as_secs() < 60,
        "demo must stop at --duration"
    );
    out
}

#[test]
fn a_declared_ramp_steps_the_load_and_reports_the_window_after_it() {
    let out = demo(&[
        "--duration",
        "8",
        "--load",
        "0.2",
        "--ramp-at",
        "4",
        "--ramp-load",
        "0.6",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");

    // The contract's fields stay; the added ones are there.
    for key in ["duration_s", "offered_load", "tiers", "forecast", "warming"] {
        assert!(report.get(key).is_some(), "{key} missing: {report}");
    }
    let capacity = report["capacity_rps"].as_f64().expect("capacity_rps");
    assert!(capacity > 100.0, "{report}");
    assert!(report["goodput_rps"].as_f64() > Some(0.0), "{report}");
    assert!(report["tiers"]["premium"]["goodput_rps"].as_f64() > Some(0.0));

    // The proxy took the event, and the warmer kept at least its floor of 2.
    let ramp = &report["ramp"];
    assert_eq!(ramp["declared"], true, "{report}");
    let factor = ramp["factor"].as_f64().expect("factor");
    assert!((factor - 3.0).abs() < 1e-9, "{report}");
    assert_eq!(ramp["window_s"].as_f64(), Some(2.0), "{report}");
    assert!(
        ramp["warming_target_before"].as_u64() >= Some(2),
        "{report}"
    );

    // In the window, requests come at about the stepped rate: 0.6 x capacity.
    let tiers = ramp["tiers"].as_object().expect("ramp tiers");
    let sent: u64 = tiers.values().filter_map(|t| t["requests"].as_u64()).sum();
    let expected = 0.6 * capacity * 2.0;
    let ratio = sent as f64 / expected;
    assert!(
        (0.7..1.3).contains(&ratio),
        "{sent} vs {expected}: {report}"
    );
    let premium = &tiers["premium"];
    assert!(premium["requests"].as_u64() > Some(0), "{report}");
    assert_eq!(premium["shed_503"].as_u64(), Some(0), "{report}");
    assert!(premium["p50_ms"].as_f64() > Some(0.0), "{report}");
}

#[test]
fn a_ramp_outside_the_run_is_refused_with_a_clear_error() {
    let out = demo(&["--duration", "5", "--ramp-at", "5", "--ramp-load", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--ramp-at must be inside the run"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
