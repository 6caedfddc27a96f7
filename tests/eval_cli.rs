//! `headroom eval` end to end: the real binary on slices of the real traces
//! in `shared/traces`, checked for DESIGN.md's JSON shape and for beating
//! the naive forecast. The NASA slice is written to a temporary directory
//! (the traces are never copied into the repository).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Days of the NASA series in the slice: a week of warm-up and one scored.
const SLICE_DAYS: usize = 8;

fn trace_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces")
        .join(name)
}

/// The first `days` days of the NASA per-second counts, as a plain file in
/// a fresh temporary directory; returns the directory and the file.
fn nasa_slice(days: usize) -> (PathBuf, PathBuf) {
    let file = std::fs::File::open(trace_path("nasa95_requests_per_second.txt.gz"))
        .expect("the NASA trace is in shared/traces");
    // Values are at most "20 " each: three bytes a second is enough text.
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .take(3 * 86_400 * days as u64)
        .read_to_string(&mut text)
        .expect("the NASA trace decompresses");
    let slice: Vec<&str> = text.split_whitespace().take(days * 86_400).collect();
    assert_eq!(slice.len(), days * 86_400, "the series is long enough");

    let dir = std::env::temp_dir().join(format!("headroom-eval-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("nasa_slice.txt");
    std::fs::write(&path, slice.join(" ")).expect("write the slice");
    (dir, path)
}

/// Runs `headroom eval --json` with `args` and parses its one JSON object.
fn eval_json(trace: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("eval")
        .arg("--trace")
        .arg(trace)
        .arg("--json")
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Asserts DESIGN.md's fields and types on one horizon entry.
fn assert_horizon_shape(h: &Value) {
    assert!(h["horizon_s"].is_u64() && h["points"].is_u64(), "{h}");
    for key in ["mae", "smape", "pinball_p90", "coverage_p90"] {
        assert!(h["model"][key].is_f64(), "model.{key} in {h}");
    }
    for baseline in ["naive", "seasonal_naive"] {
        for key in ["mae", "smape"] {
            assert!(h[baseline][key].is_f64(), "{baseline}.{key} in {h}");
        }
    }
}

#[test]
fn eval_on_a_week_of_nasa_scores_the_last_day_and_beats_naive() {
    let (dir, slice) = nasa_slice(SLICE_DAYS);
    let report = eval_json(&slice, &["--last-days", "1"]);
    std::fs::remove_dir_all(&dir).expect("clean up");

    assert_eq!(report["trace"], "nasa_slice.txt");
    assert_eq!(report["bucket_s"], 60);
    assert_eq!(report["buckets"], SLICE_DAYS as u64 * 1_440);
    assert_eq!(report["warmup_buckets"], (SLICE_DAYS as u64 - 1) * 1_440);
    assert!(report.get("users").is_none(), "counts have no clients");

    let horizons = report["horizons"].as_array().expect("horizons");
    let seconds: Vec<u64> = horizons
        .iter()
        .filter_map(|h| h["horizon_s"].as_u64())
        .collect();
    assert_eq!(seconds, vec![60, 300, 900, 3_600]);
    for h in horizons {
        assert_horizon_shape(h);
        // A day of origins every 15 minutes (the last hour-ahead ones
        // would target past the end).
        assert!(
            (93..=96).contains(&h["points"].as_u64().unwrap_or(0)),
            "{h}"
        );
        let (model, naive) = (&h["model"]["mae"], &h["naive"]["mae"]);
        assert!(
            model.as_f64() < naive.as_f64(),
            "model MAE {model} is not below naive {naive} at {} s",
            h["horizon_s"]
        );
        let coverage = h["model"]["coverage_p90"].as_f64().unwrap_or(0.0);
        assert!((0.7..=1.0).contains(&coverage), "coverage {coverage}");
    }
}

#[test]
fn eval_on_the_world_cup_log_adds_per_user_scores() {
    let report = eval_json(&trace_path("wc98_day6_sample.csv.gz"), &[]);
    assert_eq!(report["trace"], "wc98_day6_sample.csv.gz");
    assert_eq!(report["buckets"], 1_440);
    for h in report["horizons"].as_array().expect("horizons") {
        assert_horizon_shape(h);
    }
    let users = &report["users"];
    assert_eq!(users["clients"], 17_506);
    assert!(
        users["users_scored"].as_u64().unwrap_or(0) > 1_000,
        "{users}"
    );
    for h in users["horizons"].as_array().expect("user horizons") {
        assert!(h["points"].as_u64().unwrap_or(0) > 1_000, "{h}");
        let (model, naive) = (&h["model"], &h["naive"]);
        assert!(model["mae"].as_f64() < naive["mae"].as_f64(), "{h}");
        assert!(model["rmse"].as_f64() < naive["rmse"].as_f64(), "{h}");
    }
}

#[test]
fn eval_explains_what_it_cannot_do_and_exits_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["eval", "--trace"])
        .arg(trace_path("wc98_day6_sample.csv.gz"))
        .args(["--last-days", "3"])
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warm-up"), "{stderr}");
}
