//! Predictive tiering through the compiled policy: masks, decisions,
//! fallbacks, reasons and reload safety.

use headroom_config::{Device, SourceKind};

use super::*;
use crate::assignment::Assignment;

const CONFIG: &str = "\
routes:
  - { name: export, prefix: /export, kind: batch }
tiers:
  - { name: premium, requests_per_second: 50, burst: 100 }
  - { name: standard, requests_per_second: 10, burst: 20 }
  - { name: bulk, requests_per_second: 2, burst: 10 }
  - { name: free, requests_per_second: 1, burst: 5 }
rules:
  - when: { plan: premium }
    tier: premium
  - when: { plan: pro, latency_sensitive: true }
    tier: premium
  - when: { predicted_rps_p90_above: 5 }
    tier: bulk
  - when: { next_action: { route: export, within: 10m, likelihood_above: 0.5 } }
    tier: bulk
  - when: { plan: pro }
    tier: standard
default_tier: free
preallocate:
  when: { plan: pro, next_action: { route: export, within: 5m, likelihood_above: 0.3 } }
";

struct P {
    rps: Option<f64>,
    score: Option<f64>,
    export: Option<f64>,
}

impl Predictions for P {
    fn rps_p90(&self) -> Option<f64> {
        self.rps
    }
    fn latency_score(&self) -> Option<f64> {
        self.score
    }
    fn next_action(&self, route_class: u8, _within_ms: u64) -> Option<f64> {
        // `export` is the first configured route: class 1.
        (route_class == 1).then_some(self.export).flatten()
    }
}

const NOTHING: P = P {
    rps: None,
    score: None,
    export: None,
};

fn policy() -> Policy {
    let config = headroom_config::load_str(CONFIG, "p.yaml").expect("valid");
    Policy::compile(&config).expect("compiles")
}

fn attrs(plan: Option<&str>) -> Attributes<'_> {
    Attributes {
        plan,
        device: Device::Desktop,
        authenticated: true,
        source: SourceKind::ApiKey,
        ..Attributes::ANONYMOUS
    }
}

fn name(policy: &Policy, tier: TierId) -> &str {
    policy.tier(tier).name()
}

#[test]
fn static_first_match_skips_predictive_rules_for_unassigned_users() {
    let p = policy();
    assert!(p.is_predictive());
    let pro = p.static_mask(&attrs(Some("pro")));
    // Rules 1 (pro + prediction), 2, 3 (prediction only) and 4 (pro) hold statically.
    assert_eq!(pro & 0x1f, 0b11110);
    assert_ne!(pro & PREALLOC_BIT, 0);
    assert_eq!(name(&p, p.tier_for_mask(pro)), "standard");
    assert_eq!(p.tier_for_mask(pro), p.tier_for(&attrs(Some("pro"))));
    let anonymous = p.static_mask(&Attributes::ANONYMOUS);
    assert_ne!(anonymous & ANONYMOUS_BIT, 0);
    assert_eq!(anonymous & PREALLOC_BIT, 0);
    assert_eq!(name(&p, p.tier_for_mask(anonymous)), "free");
}

#[test]
fn the_tick_combines_static_conditions_with_predictions_in_rule_order() {
    let p = policy();
    let pro = p.static_mask(&attrs(Some("pro")));
    let sensitive = P {
        score: Some(0.8),
        rps: Some(9.0),
        ..NOTHING
    };
    let c = p.decide(pro, &sensitive);
    assert_eq!((name(&p, c.tier), c.rule), ("premium", Some(1)));

    let heavy = P {
        score: Some(0.1),
        rps: Some(8.3),
        ..NOTHING
    };
    let c = p.decide(pro, &heavy);
    assert_eq!(
        (name(&p, c.tier), c.rule, c.cause),
        ("bulk", Some(2), Cause::PredictedRps)
    );
    let a = p.settle(None, c, 1_000).assignment;
    assert_eq!(p.reason(&a), "rule 2: predicted p90 8.3 rps > 5");

    let exporter = P {
        export: Some(0.7),
        ..NOTHING
    };
    let c = p.decide(pro, &exporter);
    assert_eq!((name(&p, c.tier), c.rule), ("bulk", Some(3)));
    // Nothing predicted: the static rule 4.
    assert_eq!(name(&p, p.decide(pro, &NOTHING).tier), "standard");
    // A premium plan wins before any prediction is looked at.
    let premium = p.static_mask(&attrs(Some("premium")));
    assert_eq!(p.decide(premium, &heavy).rule, Some(0));
    // No rule: the default tier, and the reason says so.
    let c = p.decide(p.static_mask(&attrs(None)), &NOTHING);
    let a = p.settle(None, c, 5).assignment;
    assert_eq!(
        (name(&p, c.tier), p.reason(&a).as_str()),
        ("free", "no rule matched: default tier")
    );
}

#[test]
fn preallocation_needs_its_static_and_predicted_conditions() {
    let p = policy();
    let likely = P {
        export: Some(0.4),
        ..NOTHING
    };
    let pro = p.static_mask(&attrs(Some("pro")));
    let (cause, value) = p.wants_preallocation(pro, &likely).expect("pre-allocated");
    assert_eq!(cause, Cause::NextAction);
    assert_eq!(
        p.preallocation_reason(cause, value),
        "next action export within 300s likely 0.40 > 0.3"
    );
    assert_eq!(
        p.wants_preallocation(p.static_mask(&attrs(None)), &likely),
        None
    );
    assert_eq!(p.wants_preallocation(pro, &NOTHING), None);
    let settings = p.preallocation().expect("on");
    assert_eq!(settings.horizon.as_secs(), 900);
}

#[test]
fn a_reload_never_applies_an_assignment_from_the_old_policy() {
    let old = policy();
    let new = policy();
    assert_ne!(old.generation(), new.generation());
    let tagged = old.tagged_mask(&attrs(Some("pro")));
    assert_eq!(
        old.untag_mask(tagged),
        Some(old.static_mask(&attrs(Some("pro"))))
    );
    assert_eq!(new.untag_mask(tagged), None);
    let c = old.decide(old.static_mask(&attrs(Some("premium"))), &NOTHING);
    let word = old.settle(None, c, 10).assignment.pack(old.generation());
    assert!(Assignment::tier_of(word, old.generation()).is_some());
    assert_eq!(Assignment::tier_of(word, new.generation()), None);
    assert_eq!(Assignment::unpack(word, new.generation(), 20), None);
}

#[test]
fn static_only_configs_are_not_predictive() {
    let text = "tiers:\n  - { name: a, requests_per_second: 1, burst: 1 }\ndefault_tier: a\n";
    let config = headroom_config::load_str(text, "s.yaml").expect("valid");
    assert!(!Policy::compile(&config).expect("compiles").is_predictive());
}
