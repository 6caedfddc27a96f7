//! Whole-file tests: the shipped configs load, and broken files produce the
//! exact `FILE:LINE:COLUMN: message` lines `headroom check` prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::*;

/// A valid file to break in one place at a time.
const BASE: &str = "\
tiers:
  - name: premium
    requests_per_second: 50
    burst: 100
  - name: free
    requests_per_second: 2
    burst: 10
default_tier: free
";

/// An environment holding only the variables the shipped examples name.
fn example_env(name: &str) -> Option<String> {
    (name == "HEADROOM_JWT_SECRET").then(|| "0123456789abcdef0123456789abcdef".to_owned())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, "x.yaml", &no_env)
}

/// The rendered lines for a file that must fail.
fn error_lines(text: &str) -> Vec<String> {
    match load(text) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.lines(),
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_config_loads() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("examples"))
        .expect("config/examples exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    assert!(
        files.len() >= 3,
        "expected the three documented examples, found {files:?}"
    );
    files.push(manifest_dir().join("headroom.yaml"));

    for file in &files {
        if let Err(errors) = load_file_with_env(file, &example_env) {
            panic!("{} does not load:\n{errors}", file.display());
        }
    }
}

#[test]
fn default_config_has_the_documented_listeners_tiers_and_sources() {
    let config = load_file(&manifest_dir().join("headroom.yaml")).expect("default config loads");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin.to_string(), "127.0.0.1:9901");
    assert_eq!(config.upstreams[0].address.to_string(), "127.0.0.1:3000");
    let names: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["premium", "standard", "free"]);
    assert_eq!(config.default_tier, "standard");
    assert!(
        matches!(config.identity.sources[0], IdentitySource::ApiKey(ref k) if k.unknown_keys == UnknownKeys::Reject)
    );
    assert!(matches!(
        config.identity.sources[1],
        IdentitySource::ClientIp
    ));
    assert_eq!(config.identity.trusted_proxies.len(), 2);
    assert_eq!(config.max_route_cost(), 10);
}

#[test]
fn jwt_example_reads_the_key_file_next_to_it_and_the_env_secret() {
    let config = load_file_with_env(
        &manifest_dir().join("examples/jwt-identity.yaml"),
        &example_env,
    )
    .expect("jwt example loads");
    let IdentitySource::Jwt(jwt) = &config.identity.sources[0] else {
        panic!("first source is jwt: {:?}", config.identity.sources);
    };
    assert!(matches!(&jwt.keys[0].material, JwtKeyMaterial::Secret(s) if s.expose().len() == 32));
    assert!(
        matches!(&jwt.keys[1].material, JwtKeyMaterial::PublicKeyPem(p) if p.contains("BEGIN PUBLIC KEY"))
    );
    assert_eq!(config.rules[2].when.location.as_deref(), Some("no"));
}

#[test]
fn minimal_config_gets_every_default() {
    let config = load(BASE).expect("minimal config loads");
    assert_eq!(config.threads, 2);
    assert_eq!(config.grace_period, Duration::from_secs(5));
    assert!(config.upstreams.is_empty());
    assert_eq!(config.health_check, HealthCheck::default());
    assert_eq!(config.upstream_timeouts, UpstreamTimeouts::default());
    assert_eq!(config.profiler, ProfilerConfig::default());
    assert!(config.identity.sources.is_empty());
    assert_eq!(config.identity.anonymous.mode, AnonymousMode::PerIp);
    assert_eq!(config.identity.anonymous.tier, "free");
    assert_eq!(config.tiers[0].priority, 0);
    assert_eq!(config.tiers[0].weight, 1);
}

#[test]
fn unknown_key_is_rejected_at_its_line_and_column() {
    let text = BASE.replace("    burst: 10\n", "    burst: 10\n    brust: 10\n");
    let lines = error_lines(&text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("x.yaml:8:5: unknown field `brust`"),
        "{lines:?}"
    );
}

#[test]
fn duration_without_unit_names_key_position_and_expected_form() {
    let text = format!("grace_period: 5\n{BASE}");
    let lines = error_lines(&text);
    assert_eq!(
        lines,
        [format!(
            "x.yaml:1:15: grace_period: missing unit in \"5\": expected {DURATION_FORMAT}"
        )]
    );
    let lines = error_lines(&format!("health_check:\n  timeout: -2s\n{BASE}"));
    assert!(
        lines[0].starts_with("x.yaml:2:12: health_check.timeout: negative duration"),
        "{lines:?}"
    );
}

#[test]
fn rule_naming_an_undefined_tier_is_reported_at_the_value() {
    let text = format!("{BASE}rules:\n  - when: {{ plan: gold }}\n    tier: gold\n");
    assert_eq!(
        error_lines(&text),
        ["x.yaml:11:11: rules[0].tier: expected one of the defined tiers (premium, free), got gold"]
    );
}

#[test]
fn negative_rate_gives_the_documented_message() {
    let text = BASE.replace("requests_per_second: 2", "requests_per_second: -3");
    assert_eq!(
        error_lines(&text),
        ["x.yaml:6:26: tiers[1].requests_per_second: expected a positive number, got -3"]
    );
}

#[test]
fn every_semantic_error_is_reported_in_file_order() {
    let text = "\
listen: \"localhost:8080\"
threads: 0
routes:
  - name: export
    prefix: export
    cost: 10
tiers:
  - name: Premium
    requests_per_second: 0
    burst: 5
  - name: free
    requests_per_second: 1
    burst: 20
default_tier: gold
";
    let lines = error_lines(text);
    assert_eq!(
        lines,
        [
            "x.yaml:1:9: listen: expected an IP:PORT address like 127.0.0.1:8080 or [::1]:8080, got \"localhost:8080\" (host names are not resolved; write an IP)",
            "x.yaml:2:10: threads: expected an integer from 1 to 1024, got 0",
            "x.yaml:5:13: routes[0].prefix: expected a path starting with / and without spaces, got export",
            "x.yaml:8:11: tiers[0].name: expected a name of 1 to 64 characters from a-z, 0-9, _ and -, got Premium",
            "x.yaml:9:26: tiers[0].requests_per_second: expected a positive number, got 0",
            "x.yaml:14:15: default_tier: expected one of the defined tiers (Premium, free), got gold",
        ]
    );
}

#[test]
fn burst_below_the_largest_route_cost_is_refused() {
    let text = format!("routes:\n  - name: export\n    prefix: /export\n    cost: 25\n{BASE}");
    assert_eq!(
        error_lines(&text),
        ["x.yaml:11:12: tiers[1].burst: 10 is below the cost 25 of routes[0] (\"export\"), so those requests could never be admitted; expected burst >= 25"]
    );
}

#[test]
fn syntax_error_reports_only_its_position() {
    let lines = error_lines("tiers:\n  - name: a\n   burst: 1\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("x.yaml:3:"), "{lines:?}");
}

#[test]
fn empty_file_reports_both_required_keys_at_the_start() {
    assert_eq!(
        error_lines("# nothing yet\n"),
        [
            "x.yaml:1:1: tiers: missing required key: expected a list of at least one tier",
            "x.yaml:1:1: default_tier: missing required key: expected the name of one of the tiers",
        ]
    );
}

#[test]
fn env_secret_is_resolved_and_a_missing_variable_is_named() {
    let text = format!("identity:\n  secret: \"env:HR_TEST_SECRET\"\n{BASE}");
    let env = |name: &str| (name == "HR_TEST_SECRET").then(|| "sixteen-bytes-ok".to_owned());
    let config = load_str_with_env(&text, "x.yaml", &env).expect("env secret resolves");
    let secret = config.identity.secret.expect("secret set");
    assert_eq!(secret.expose(), "sixteen-bytes-ok");

    let lines = error_lines(&text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "x.yaml:2:11: identity.secret: environment variable HR_TEST_SECRET is not set"
        ),
        "{lines:?}"
    );
}

#[test]
fn short_secrets_are_refused_without_echoing_them() {
    let text = format!("identity:\n  secret: \"hunter2\"\n{BASE}");
    let lines = error_lines(&text);
    assert_eq!(
        lines,
        ["x.yaml:2:11: identity.secret: the secret is 7 bytes long; expected at least 16 bytes"]
    );
}

#[test]
fn jwt_keys_must_match_their_algorithm() {
    let text = format!(
        "identity:
  sources:
    - jwt:
        keys:
          - algorithm: HS256
            public_key_pem: \"-----BEGIN PUBLIC KEY-----\"
          - algorithm: ES256
            secret: \"0123456789abcdef0123456789abcdef\"
          - algorithm: RS256
            public_key_pem: \"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\"
          - algorithm: ES256
            public_key_file: no/such/key.pem
          - algorithm: HS257
{BASE}"
    );
    let lines = error_lines(&text);
    let expected_starts = [
        "x.yaml:5:13: identity.sources[0].jwt.keys[0].secret: missing required key: expected a secret of at least 32 bytes for HS256",
        "x.yaml:6:29: identity.sources[0].jwt.keys[0].public_key_pem: HS256 verifies with a shared secret",
        "x.yaml:7:13: identity.sources[0].jwt.keys[1]: missing required key: ES256 needs public_key_pem or public_key_file",
        "x.yaml:8:21: identity.sources[0].jwt.keys[1].secret: ES256 verifies with a public key",
        "x.yaml:10:29: identity.sources[0].jwt.keys[2].public_key_pem: holds a PRIVATE key",
        "x.yaml:12:30: identity.sources[0].jwt.keys[3].public_key_file: cannot read \"no/such/key.pem\"",
        "x.yaml:13:24: identity.sources[0].jwt.keys[4].algorithm: expected one of HS256",
    ];
    assert_eq!(lines.len(), expected_starts.len(), "{lines:#?}");
    for (line, start) in lines.iter().zip(expected_starts) {
        assert!(
            line.starts_with(start),
            "{line}\n  should start with\n{start}"
        );
    }
}

#[test]
fn key_files_resolve_against_the_config_directory() {
    let dir = manifest_dir().join("examples");
    let origin = dir.join("inline.yaml");
    let text = format!(
        "identity:\n  sources:\n    - jwt:\n        keys:\n          - algorithm: ES256\n            public_key_file: keys/es256-public.pem\n{BASE}"
    );
    let origin = origin.display().to_string();
    load_str_with_env(&text, &origin, &no_env).expect("key file found next to the origin");
    assert!(load_str_with_env(&text, "elsewhere/inline.yaml", &no_env).is_err());
}

#[test]
fn sources_allow_one_of_each_kind_with_client_ip_last() {
    let text = format!(
        "identity:\n  sources:\n    - client_ip: {{}}\n    - cookie: {{ name: sid }}\n    - cookie: {{}}\n{BASE}"
    );
    let lines = error_lines(&text);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("x.yaml:4:7: identity.sources[1]: unreachable: client_ip"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("x.yaml:5:7: identity.sources[2]: a second cookie source"),
        "{lines:?}"
    );
}

#[test]
fn trusted_proxies_must_be_network_addresses() {
    let text =
        format!("identity:\n  trusted_proxies: [\"10.0.0.1/8\", \"::1\", \"10.0.0.0/33\"]\n{BASE}");
    assert_eq!(
        error_lines(&text),
        [
            "x.yaml:2:21: identity.trusted_proxies[0]: 10.0.0.1/8 has host bits set; expected the network address 10.0.0.0/8",
            "x.yaml:2:42: identity.trusted_proxies[2]: expected a CIDR like 10.0.0.0/8 or fd00::/8 (or a single IP), got \"10.0.0.0/33\"",
        ]
    );
}

#[test]
fn routes_are_limited_to_eight_with_unique_names() {
    let mut text = String::from("routes:\n");
    for i in 0..9 {
        let name = if i == 1 {
            "r0".to_owned()
        } else {
            format!("r{i}")
        };
        text.push_str(&format!("  - name: {name}\n    prefix: /p{i}\n"));
    }
    text.push_str(BASE);
    let lines = error_lines(&text);
    assert_eq!(
        lines,
        [
            "x.yaml:4:11: routes[1].name: route name \"r0\" is already used by routes[0]",
            "x.yaml:18:5: routes: at most 8 routes are allowed, got 9",
        ]
    );
}

#[test]
fn yaml11_booleans_and_leading_zeros_get_pointed_messages() {
    let text =
        format!("{BASE}rules:\n  - when: {{ authenticated: yes }}\n    tier: free\nthreads: 08\n");
    let lines = error_lines(&text);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(
            "rules[0].when.authenticated: expected true or false, got yes (yes/no/on/off"
        ),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(
            "x.yaml:12:10: threads: expected an integer from 1 to 1024, got 08: YAML 1.1"
        ),
        "{lines:?}"
    );
}

#[test]
fn unreadable_file_is_one_error_at_the_start() {
    let missing = Path::new("/nonexistent/headroom.yaml");
    let errors = load_file(missing).expect_err("missing file");
    assert_eq!(errors.len(), 1);
    assert!(
        errors.lines()[0].starts_with("/nonexistent/headroom.yaml:1:1: cannot read config file:")
    );
}

#[test]
fn admission_bounds_and_tier_queue_settings_are_checked_with_positions() {
    let text = format!(
        "{BASE}admission:\n  max_concurrency: 8\n  min_concurrency: 16\n  latency_tolerance: 0.5\n"
    );
    let lines = error_lines(&text);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x.yaml:11:20:") && l.contains("min_concurrency")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("latency_tolerance")),
        "{lines:?}"
    );

    let bad_share = BASE.replace(
        "burst: 10\ndefault",
        "burst: 10\n    min_share: 1.5\ndefault",
    );
    let lines = error_lines(&bad_share);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x.yaml:8:16:") && l.contains("min_share")),
        "{lines:?}"
    );
}

#[test]
fn admission_and_queue_defaults_apply() {
    let config = load(BASE).expect("valid");
    assert_eq!(config.admission, Admission::default());
    assert_eq!(config.tiers[0].max_queue_time, Duration::from_secs(1));
    assert_eq!(config.tiers[0].min_share, 0.0);
}

#[test]
fn tier_bandwidth_is_checked_and_defaults_to_when_saturated() {
    let paced = BASE.replace(
        "burst: 10\ndefault",
        "burst: 10\n    bandwidth_bytes_per_second: 65536\ndefault",
    );
    let config = load(&paced).expect("valid");
    assert_eq!(config.tiers[1].bandwidth_bytes_per_second, Some(65536));
    assert_eq!(config.tiers[1].bandwidth_when, BandwidthWhen::WhenSaturated);

    let too_slow = BASE.replace(
        "burst: 10\ndefault",
        "burst: 10\n    bandwidth_bytes_per_second: 10\n    bandwidth_when: sometimes\ndefault",
    );
    let lines = error_lines(&too_slow);
    assert!(
        lines.iter().any(|l| l.starts_with("x.yaml:8:33:")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x.yaml:9:21:") && l.contains("sometimes")),
        "{lines:?}"
    );
}
