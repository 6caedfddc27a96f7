//! `headroom check`.

use std::process::Command;

use crate::common::TempDir;

fn check(yaml: &str) -> (i32, String, String, String) {
    let dir = TempDir::new();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn bad_config_is_reported_with_line_and_column_and_exit_1() {
    let yaml = "tiers:\n  - { name: standard, priority: 1, requests_per_second: 5, burst: 5 }\ndefault_tier: standard\nlisten: 127.0.0.1:8080\nbogus_key: 3\n";

    let (code, _, stderr, path) = check(yaml);

    assert_eq!(code, 1);
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&path))
        .expect("a FILE:LINE:COLUMN line");
    let rest = line.strip_prefix(&format!("{path}:")).expect("file prefix");
    let mut parts = rest.splitn(3, ':');
    assert_eq!(parts.next(), Some("5"), "{line}");
    assert_eq!(parts.next(), Some("1"), "{line}");
    assert!(
        parts.next().is_some_and(|m| m.contains("bogus_key")),
        "{line}"
    );
}

#[test]
fn semantic_error_names_the_position_of_the_bad_value() {
    let yaml = "tiers:\n  - { name: standard, priority: 1, requests_per_second: 5, burst: 5 }\ndefault_tier: gold\n";

    let (code, _, stderr, path) = check(yaml);

    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("{path}:3:")), "{stderr}");
    assert!(stderr.contains("gold"), "{stderr}");
}

#[test]
fn shipped_configs_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/config/headroom.yaml")];
    for entry in std::fs::read_dir(format!("{root}/config/examples")).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path.display().to_string());
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("check")
        .args(&files)
        .env(
            "HEADROOM_JWT_SECRET",
            "example-secret-for-ci-0123456789abcdef",
        )
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn listener_address_in_use_fails_fast_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = TempDir::new();
    let path = dir.path().join("ok.yaml");
    let yaml = "tiers:\n  - { name: standard, requests_per_second: 5, burst: 5 }\ndefault_tier: standard\n";
    std::fs::write(&path, yaml).expect("write");
    let started = std::time::Instant::now();

    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["run", "--config"])
        .arg(&path)
        .args(["--listen", &addr, "--upstream", "127.0.0.1:9"])
        .output()
        .expect("run");

    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed().as_secs() < 10);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn command_line_listeners_may_not_clash() {
    let dir = TempDir::new();
    let path = dir.path().join("ok.yaml");
    let yaml = "tiers:\n  - { name: standard, requests_per_second: 5, burst: 5 }\ndefault_tier: standard\n";
    std::fs::write(&path, yaml).expect("write");

    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["run", "--config"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:18555", "--admin", "127.0.0.1:18555"])
        .args(["--upstream", "127.0.0.1:9"])
        .output()
        .expect("run");

    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both 127.0.0.1:18555"));
}
