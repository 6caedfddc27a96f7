//! The tick's shaping pass on a real `Shared`, on simulated time: tier
//! assignment with hysteresis read back by the request path, reservations
//! made, used and expired, and reload safety.

use std::path::Path;

use headroom_profiler::forecast::user::UserHorizonForecast;
use headroom_profiler::forecast::Forecast;

use super::*;
use crate::compile::{compile_runtime, IdentitySecret};
use crate::insights::test_support::{headers, shared_from};

const CONFIG: &str = "\
identity:
  secret: \"unit-test-identity-secret\"
  sources:
    - api_key:
        keys:
          k_pro: { user: pro, plan: pro }
          k_other: { user: other, plan: pro }
          k_free: { user: free }
tiers:
  - { name: standard, requests_per_second: 100, burst: 200 }
  - { name: bulk, requests_per_second: 100, burst: 200 }
  - { name: free, requests_per_second: 100, burst: 200 }
rules:
  - when: { plan: pro, predicted_rps_p90_above: 5 }
    tier: bulk
  - when: { plan: pro }
    tier: standard
default_tier: free
tiering: { min_dwell: 60s }
admission: { adaptive: false, max_concurrency: 8 }
preallocate:
  when: { plan: pro, predicted_rps_p90_above: 2 }
  horizon: 30s
  max_reserved_slots: 1
";

const T0: u64 = 1_700_000_000_000;

/// The request phase for `key_header` at `now_ms`: the tier's name and
/// whether the user held a pre-allocation.
fn request(shared: &Shared, api_key: &str, now_ms: u64) -> (String, bool, u64) {
    let rt = shared.runtime.load_full();
    let h = headers("x-api-key", api_key);
    let identity = rt.identity.identify(None, &h).expect("identified");
    let arrival = shared.arrive(&rt, &identity, &h, "/", now_ms);
    let name = rt.policy.tier(arrival.tier).name().to_owned();
    (name, arrival.reserved, identity.key)
}

/// A first-horizon forecast with this p90 rate (the test tick is 1 s).
fn p90(rps: f64) -> UserHorizonForecast {
    UserHorizonForecast {
        rps,
        count: Forecast::new(rps, rps),
    }
}

/// One tick at `now_ms` where every user's p90 is `rps[key]`.
fn tick(shaper: &mut Shaper, shared: &Shared, now_ms: u64, rps: impl Fn(u64) -> f64) {
    let mut pass = shaper.begin(now_ms);
    shared
        .users
        .for_each(|key, entry| pass.user(key, entry, Some(&p90(rps(key)))));
    pass.finish();
}

#[test]
fn a_predicted_heavy_user_changes_tier_at_most_once_per_dwell() {
    let shared = shared_from(CONFIG);
    let mut shaper = Shaper::new(&shared, Duration::from_secs(1));
    // Before any tick: the static rules (the predictive rule is skipped).
    let (tier, _, key) = request(&shared, "k_pro", T0);
    assert_eq!(tier, "standard");

    tick(&mut shaper, &shared, T0, |_| 8.3);
    assert_eq!(request(&shared, "k_pro", T0 + 1).0, "bulk");
    let entry = shared.users.get(key).expect("tracked");
    let rt = shared.runtime.load();
    let a = entry
        .extra
        .shaping
        .assignment(rt.policy.generation(), T0 / 1000)
        .expect("assigned");
    assert_eq!(rt.policy.reason(&a), "rule 0: predicted p90 8.3 rps > 5");

    // Demand falls at once, but the tier is held for the dwell time.
    tick(&mut shaper, &shared, T0 + 10_000, |_| 0.5);
    assert_eq!(request(&shared, "k_pro", T0 + 10_001).0, "bulk");
    tick(&mut shaper, &shared, T0 + 59_000, |_| 0.5);
    assert_eq!(request(&shared, "k_pro", T0 + 59_001).0, "bulk");
    tick(&mut shaper, &shared, T0 + 61_000, |_| 0.5);
    assert_eq!(request(&shared, "k_pro", T0 + 61_001).0, "standard");
    // And back up only after another dwell.
    tick(&mut shaper, &shared, T0 + 70_000, |_| 9.0);
    assert_eq!(request(&shared, "k_pro", T0 + 70_001).0, "standard");
    tick(&mut shaper, &shared, T0 + 122_000, |_| 9.0);
    assert_eq!(request(&shared, "k_pro", T0 + 122_001).0, "bulk");
    // A user no predictive rule can match keeps the static tier.
    assert_eq!(request(&shared, "k_free", T0 + 122_002).0, "free");
}

#[test]
fn reservations_are_made_within_the_budget_used_and_expired() {
    let shared = shared_from(CONFIG);
    let mut shaper = Shaper::new(&shared, Duration::from_secs(1));
    let (_, _, pro) = request(&shared, "k_pro", T0);
    let (_, _, other) = request(&shared, "k_other", T0);
    let counters = &shared.admission.prealloc;

    // Both predicted active; the budget (1 slot) covers one of them.
    tick(&mut shaper, &shared, T0, |_| 3.0);
    assert_eq!(counters.made.get(), 1);
    assert_eq!(shared.admission.reserved(), 1);
    let reserved_key = if shared
        .users
        .get(pro)
        .expect("pro")
        .extra
        .shaping
        .reservation(T0 / 1000)
        .is_some()
    {
        pro
    } else {
        other
    };
    let api_key = if reserved_key == pro {
        "k_pro"
    } else {
        "k_other"
    };
    let unreserved = if reserved_key == pro {
        "k_other"
    } else {
        "k_pro"
    };
    // The reserved user's arrival is marked and counted once.
    assert!(request(&shared, api_key, T0 + 1_000).1);
    assert!(request(&shared, api_key, T0 + 2_000).1);
    assert!(!request(&shared, unreserved, T0 + 2_000).1);
    assert_eq!(counters.used.get(), 1);

    // At the horizon the used reservation expires (not counted unused) and
    // the other user gets the slot; that one expires unused.
    let waiting = if reserved_key == pro { other } else { pro };
    tick(&mut shaper, &shared, T0 + 31_000, |k| {
        if k == waiting {
            3.0
        } else {
            0.0
        }
    });
    assert_eq!((counters.made.get(), counters.expired_unused.get()), (2, 0));
    assert!(!request(&shared, api_key, T0 + 31_500).1);
    tick(&mut shaper, &shared, T0 + 62_000, |_| 0.0);
    assert_eq!(counters.expired_unused.get(), 1);
    assert_eq!(shared.admission.reserved(), 0);
    assert_eq!(counters.reserved_slots.get(), 0);
}

#[test]
fn a_reload_serves_static_rules_until_the_tick_sees_the_user_again() {
    let shared = shared_from(CONFIG);
    let mut shaper = Shaper::new(&shared, Duration::from_secs(1));
    request(&shared, "k_pro", T0);
    tick(&mut shaper, &shared, T0, |_| 8.0);
    assert_eq!(request(&shared, "k_pro", T0 + 1).0, "bulk");

    // The same file again: a new generation, so the old assignment is void.
    let config = headroom_config::load_str(CONFIG, "test.yaml").expect("valid");
    let secret = IdentitySecret::random().expect("randomness");
    let runtime = compile_runtime(&config, Path::new("test.yaml"), &shared.metrics, &secret)
        .expect("compiles");
    shared.runtime.store(Arc::new(runtime));
    assert_eq!(request(&shared, "k_pro", T0 + 2).0, "standard");
    tick(&mut shaper, &shared, T0 + 3_000, |_| 8.0);
    assert_eq!(request(&shared, "k_pro", T0 + 3_001).0, "bulk");
}

#[test]
fn static_configs_never_touch_the_cell() {
    let shared = crate::insights::test_support::shared();
    let mut shaper = Shaper::new(&shared, Duration::from_secs(1));
    let key =
        crate::insights::test_support::arrive(&shared, &headers("x-api-key", "k_bob"), "/", T0);
    tick(&mut shaper, &shared, T0, |_| 100.0);
    let entry = shared.users.get(key).expect("tracked");
    assert_eq!(entry.extra.shaping.mask.load(Ordering::Relaxed), 0);
    assert_eq!(entry.extra.shaping.assignment.load(Ordering::Relaxed), 0);
    assert_eq!(shared.admission.prealloc.made.get(), 0);
}

#[test]
fn the_shaping_cell_is_sixteen_bytes() {
    assert_eq!(std::mem::size_of::<ShapingCell>(), 16);
}
