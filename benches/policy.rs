//! Policy evaluation, step by step: the tier rules (`Policy::tier_for`),
//! route classification (`Policy::classify`), the user-agent device guess
//! (`classify_user_agent`) and the GCRA check (`Policy::check`), each on the
//! cases that take its shortest and longest paths.
//!
//! Two real policies: the bench config (`benches/headroom-bench.yaml`: five
//! rules, four routes, quotas too high to limit) and the default
//! `config/headroom.yaml`, whose free tier (2 requests/s, burst 10) refuses
//! a user who keeps asking, for the limited-verdict row.
//!
//! Times are the measuring thread's CPU time (`support::measurement`).
//!
//! Run: `cargo bench --bench policy`.

mod support;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use headroom_policies::{classify_user_agent, Attributes, Device, Policy, SourceKind, UserBucket};
use support::measurement::ThreadCpu;

/// The default configuration shipped with the proxy.
const DEFAULT_CONFIG: &str = include_str!("../config/headroom.yaml");

fn compile(yaml: &str, origin: &str) -> Policy {
    let config = headroom_config::load_str(yaml, origin)
        .unwrap_or_else(|e| panic!("{origin} does not load: {e}"));
    Policy::compile(&config).unwrap_or_else(|e| panic!("{origin} does not compile: {e}"))
}

fn tier_for(c: &mut Criterion<ThreadCpu>) {
    let policy = compile(support::CONFIG_YAML, support::CONFIG_PATH);
    let api_key = |plan, role| Attributes {
        plan,
        role,
        location: Some("SE"),
        device: Device::Desktop,
        authenticated: true,
        source: SourceKind::ApiKey,
    };
    let cases = [
        // The first rule (role admin, authenticated) matches.
        ("first_rule", api_key(Some("premium"), Some("admin"))),
        // A plan that only the third rule mentions, in the wrong location.
        ("third_rule_misses", api_key(Some("free"), None)),
        // No plan: every rule is tried, then default_tier.
        ("no_rule_default", api_key(None, None)),
        ("anonymous", Attributes::ANONYMOUS),
    ];
    let mut group = c.benchmark_group("tier_for");
    group.throughput(Throughput::Elements(1));
    for (name, attrs) in cases {
        group.bench_function(name, |b| b.iter(|| policy.tier_for(black_box(&attrs))));
    }
    group.finish();
}

fn classify(c: &mut Criterion<ThreadCpu>) {
    let policy = compile(support::CONFIG_YAML, support::CONFIG_PATH);
    let paths = [
        ("first_route", "/search?q=shoes"),
        ("last_route", "/api/v1/items/42"),
        ("no_route", "/account/settings/notifications"),
    ];
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));
    for (name, path) in paths {
        group.bench_function(name, |b| b.iter(|| policy.classify(black_box(path))));
    }
    group.finish();
}

fn user_agent(c: &mut Criterion<ThreadCpu>) {
    let agents = [
        ("desktop_chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        ("mobile_safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"),
        ("bot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
        ("curl", "curl/8.5.0"),
    ];
    let mut group = c.benchmark_group("classify_user_agent");
    group.throughput(Throughput::Elements(1));
    for (name, agent) in agents {
        group.bench_function(name, |b| b.iter(|| classify_user_agent(black_box(agent))));
    }
    group.finish();
}

fn check(c: &mut Criterion<ThreadCpu>) {
    let generous = compile(support::CONFIG_YAML, support::CONFIG_PATH);
    let strict = compile(DEFAULT_CONFIG, "config/headroom.yaml");
    let cost = NonZeroU32::MIN;
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));

    let tier = generous.default_tier();
    let bucket = UserBucket::new();
    group.bench_function("allowed", |b| {
        b.iter(|| generous.check(black_box(&bucket), tier, cost))
    });

    // The free tier's burst is spent within the first few iterations; every
    // later check is refused.
    let free = strict
        .tier_by_name("free")
        .expect("the default config has a free tier");
    let bucket = UserBucket::new();
    group.bench_function("limited", |b| {
        b.iter(|| strict.check(black_box(&bucket), free, cost))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = tier_for, classify, user_agent, check
}
criterion_main!(benches);
