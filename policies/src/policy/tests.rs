//! Tests of the compiled policy against configs loaded the way the proxy
//! loads them, on governor's fake clock.

use super::*;
use governor::clock::FakeRelativeClock;
use headroom_config::{Device, RouteKind, SourceKind};
use std::time::Duration;

const CONFIG: &str = r#"
routes:
  - { name: export, prefix: /export, cost: 10, kind: batch }
  - { name: user_export, pattern: "/api/*/export", cost: 4, kind: batch }
tiers:
  - { name: premium, priority: 100, requests_per_second: 50, burst: 100, weight: 8 }
  - { name: standard, priority: 50, requests_per_second: 10, burst: 20, weight: 2 }
  - { name: free, priority: 0, requests_per_second: 1, burst: 10 }
rules:
  - when: { device: bot }
    tier: free
  - when: { plan: premium, authenticated: true }
    tier: premium
identity:
  sources:
    - client_ip: {}
  anonymous: { mode: per_ip, tier: free }
default_tier: standard
"#;

fn config() -> Config {
    headroom_config::load_str(CONFIG, "policy-test.yaml").expect("test config is valid")
}

fn fake_clock() -> LimiterClock<FakeRelativeClock> {
    LimiterClock::new(FakeRelativeClock::default())
}

fn compile(cfg: &Config, clock: &LimiterClock<FakeRelativeClock>) -> Policy<FakeRelativeClock> {
    Policy::compile_with_clock(cfg, clock).expect("test config compiles")
}

fn id(policy: &Policy<FakeRelativeClock>, name: &str) -> TierId {
    policy.tier_by_name(name).expect("tier exists")
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

fn identified(plan: Option<&str>, device: Device) -> Attributes<'_> {
    Attributes {
        plan,
        role: None,
        location: None,
        device,
        authenticated: true,
        source: SourceKind::ClientIp,
    }
}

#[test]
fn tiers_keep_config_order_and_precomputed_headers() {
    let policy = compile(&config(), &fake_clock());
    let names: Vec<_> = policy.tiers().iter().map(Tier::name).collect();
    assert_eq!(names, ["premium", "standard", "free"]);
    let premium = policy.tier(id(&policy, "premium"));
    assert_eq!(premium.priority(), 100);
    assert_eq!(premium.weight(), 8);
    assert_eq!(
        &premium.ratelimit_policy_header()[..],
        b"\"premium\";q=100;w=2"
    );
    assert_eq!(&premium.name_header()[..], b"premium");
    assert_eq!(policy.tier_by_name("gold"), None);
}

#[test]
fn rules_then_default_or_anonymous_tier_decide() {
    let policy = compile(&config(), &fake_clock());
    let premium_user = identified(Some("premium"), Device::Desktop);
    assert_eq!(policy.tier_for(&premium_user), id(&policy, "premium"));
    let premium_crawler = identified(Some("premium"), Device::Bot);
    assert_eq!(policy.tier_for(&premium_crawler), id(&policy, "free"));
    let plain_user = identified(None, Device::Mobile);
    assert_eq!(policy.tier_for(&plain_user), policy.default_tier());
    assert_eq!(policy.default_tier(), id(&policy, "standard"));
    assert_eq!(
        policy.tier_for(&Attributes::ANONYMOUS),
        policy.anonymous_tier()
    );
    assert_eq!(policy.anonymous_tier(), id(&policy, "free"));
}

#[test]
fn paths_are_classified_with_cost_kind_and_name() {
    let policy = compile(&config(), &fake_clock());
    let export = policy.classify("/export/all?format=csv");
    assert_eq!(
        (export.id, export.cost.get(), export.kind),
        (1, 10, RouteKind::Batch)
    );
    assert_eq!(policy.route_name(export.id), Some("export"));
    assert_eq!(policy.classify("/api/bob/export").id, 2);
    assert_eq!(policy.classify("/home"), RouteClass::OTHER);
    assert_eq!(policy.route_name(0), Some("other"));
    assert_eq!(policy.route_classes().count(), 3);
}

#[test]
fn route_cost_is_charged_against_the_tier_bucket() {
    let clock = fake_clock();
    let policy = compile(&config(), &clock);
    let free = id(&policy, "free");
    let bucket = UserBucket::new();
    let export = policy.classify("/export/all");

    let first = policy.check(&bucket, free, export.cost);
    assert_eq!(
        first,
        Verdict::Allowed {
            remaining: 0,
            reset_secs: 10
        }
    );
    assert_eq!(
        policy.check(&bucket, free, export.cost).retry_after_secs(),
        Some(10)
    );
    let value = policy.tier(free).ratelimit_value(&first);
    assert_eq!(value.as_str(), "\"free\";r=0;t=10");
}

#[test]
fn reload_keeps_the_debt_and_tier_change_does_not_refill() {
    let clock = fake_clock();
    let before = compile(&config(), &clock);
    let bucket = UserBucket::new();
    let premium = id(&before, "premium");
    for _ in 0..100 {
        assert!(before.check(&bucket, premium, one()).is_allowed());
    }

    // A reload 1 s later that doubles premium's burst: the bucket keeps the
    // 2 s of debt it had minus the second that passed, so 4 s of capacity
    // less 1.02 s owed leaves 149 tokens, not 199.
    clock.inner().advance(Duration::from_secs(1));
    let mut cfg = config();
    cfg.tiers[0].burst = 200;
    let after = compile(&cfg, &clock);
    assert_eq!(after.check(&bucket, premium, one()).remaining(), 149);

    // Demoted to free (1/s, burst 10) with 1.02 s owed: 8 left, not 10.
    let free = id(&after, "free");
    let allowed = (0..20)
        .take_while(|_| after.check(&bucket, free, one()).is_allowed())
        .count();
    assert_eq!(allowed, 8);
}

#[test]
fn foreign_tier_ids_fall_back_to_the_default_tier() {
    let clock = fake_clock();
    let policy = compile(&config(), &clock);
    let stale = TierId::from_index(200).expect("fits a byte");
    assert_eq!(policy.tier(stale).name(), "standard");
    let bucket = UserBucket::new();
    assert_eq!(policy.check(&bucket, stale, one()).remaining(), 19);
}

#[test]
fn a_bucket_is_full_again_once_its_debt_has_elapsed() {
    let clock = fake_clock();
    let policy = compile(&config(), &clock);
    let bucket = UserBucket::new();
    assert!(policy.bucket_is_full(&bucket));
    policy.check(&bucket, id(&policy, "standard"), one());
    assert!(!policy.bucket_is_full(&bucket));
    clock.inner().advance(Duration::from_millis(100));
    assert!(policy.bucket_is_full(&bucket));
}

#[test]
fn process_clock_policies_share_buckets() {
    let cfg = config();
    let first = Policy::compile(&cfg).expect("compiles");
    let bucket = UserBucket::new();
    let free = first.tier_by_name("free").expect("tier exists");
    assert!(first
        .check(&bucket, free, NonZeroU32::new(10).expect("ten"))
        .is_allowed());
    let second = Policy::compile(&cfg).expect("compiles");
    assert!(!second.check(&bucket, free, one()).is_allowed());
}

#[test]
fn policy_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<Policy<FakeRelativeClock>>();
    assert_send_sync::<UserBucket>();
}

#[test]
fn unsound_configs_are_rejected_with_the_offending_key() {
    let clock = fake_clock();
    let compile_err = |cfg: &Config| Policy::compile_with_clock(cfg, &clock).err();

    let mut no_tiers = config();
    no_tiers.tiers.clear();
    assert_eq!(compile_err(&no_tiers), Some(PolicyError::NoTiers));

    let mut duplicate = config();
    duplicate.tiers[2].name = "premium".into();
    assert_eq!(
        compile_err(&duplicate),
        Some(PolicyError::DuplicateTier {
            name: "premium".into()
        })
    );

    let mut many = config();
    let template = many.tiers[0].clone();
    many.tiers = (0..=MAX_TIERS)
        .map(|i| headroom_config::Tier {
            name: format!("t{i}"),
            ..template.clone()
        })
        .collect();
    assert_eq!(
        compile_err(&many),
        Some(PolicyError::TooManyTiers {
            count: MAX_TIERS + 1
        })
    );

    let mut unknown = config();
    unknown.default_tier = "gold".into();
    let error = compile_err(&unknown).expect("rejected");
    assert_eq!(error.to_string(), "default_tier: no tier named \"gold\"");

    let mut bad_rate = config();
    bad_rate.tiers[1].requests_per_second = f64::NAN;
    let error = compile_err(&bad_rate).expect("rejected");
    assert!(
        error.to_string().starts_with("tiers[1]: tier \"standard\""),
        "{error}"
    );

    let mut reserved = config();
    reserved.routes[0].name = "other".into();
    assert_eq!(
        compile_err(&reserved),
        Some(PolicyError::Route(RouteError::ReservedName))
    );
}
