//! Tier assignment: which tier a request's identity earns.
//!
//! The identity stage extracts a handful of attributes (plan, role,
//! location, device class, whether and how the user authenticated); the
//! rules, in file order, map them to a tier, and the first rule whose
//! conditions all hold wins. Compiling resolves each rule's tier name to a
//! [`TierId`] once, so evaluating a request only compares strings it
//! already has: no allocation, no lookup by name.

use headroom_config::{Condition, Device, Rule, SourceKind};

use crate::assignment::Cause;
use crate::predictive::{Predicate, Predictions};
use crate::tier::TierId;

/// Errors compiling the rule list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A rule names a tier the policy does not have.
    #[error("rules[{index}].tier: no tier named {tier:?}")]
    UnknownTier {
        /// Position of the rule in the config.
        index: usize,
        /// The name it used.
        tier: String,
    },
}

/// What the identity stage knows about a request, borrowed from it for the
/// duration of one tier decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// The user's plan (from an API key entry or a JWT claim), if any.
    pub plan: Option<&'a str>,
    /// The user's role, if any.
    pub role: Option<&'a str>,
    /// The location header's value (like a country code), if configured
    /// and present; compared ignoring ASCII case.
    pub location: Option<&'a str>,
    /// Device class guessed from the user agent
    /// ([`crate::classify_user_agent`]).
    pub device: Device,
    /// Whether an authenticating source (API key or JWT) identified the
    /// user.
    pub authenticated: bool,
    /// Which identity source identified the request.
    pub source: SourceKind,
}

impl Attributes<'_> {
    /// A request no source identified: no plan, role or location, device
    /// `Other`.
    pub const ANONYMOUS: Attributes<'static> = Attributes {
        plan: None,
        role: None,
        location: None,
        device: Device::Other,
        authenticated: false,
        source: SourceKind::Anonymous,
    };
}

/// Rules a predictive policy may have: one mask bit each (see
/// [`crate::predictive`]); `headroom_config` enforces the same bound.
pub(crate) const MASK_RULES: usize = headroom_config::MAX_PREDICTIVE_RULES;

/// One rule, its tier resolved.
#[derive(Debug, Clone)]
struct CompiledRule {
    plan: Option<Box<str>>,
    role: Option<Box<str>>,
    location: Option<Box<str>>,
    device: Option<Device>,
    authenticated: Option<bool>,
    source: Option<SourceKind>,
    tier: TierId,
    /// Conditions on predictions, evaluated by the background tick only.
    predicate: Predicate,
    /// Whether `predicate` has no condition (the rule decides per request).
    is_static: bool,
}

impl CompiledRule {
    fn new(when: &Condition, tier: TierId, route_class: &impl Fn(&str) -> Option<u8>) -> Self {
        let predicate = Predicate::new(when, route_class);
        let boxed = |text: &Option<String>| text.as_deref().map(Box::from);
        Self {
            plan: boxed(&when.plan),
            role: boxed(&when.role),
            location: boxed(&when.location),
            device: when.device,
            authenticated: when.authenticated,
            source: when.source,
            tier,
            is_static: !predicate.is_some(),
            predicate,
        }
    }

    /// Whether every condition this rule sets holds for `attrs`. An unset
    /// condition holds for anything; a set string condition never holds
    /// for a missing attribute.
    fn matches(&self, attrs: &Attributes<'_>) -> bool {
        let same = |want: &Option<Box<str>>, have: Option<&str>| match want {
            None => true,
            Some(want) => have == Some(&**want),
        };
        let location_ok = match (&self.location, attrs.location) {
            (None, _) => true,
            (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
            (Some(_), None) => false,
        };
        same(&self.plan, attrs.plan)
            && same(&self.role, attrs.role)
            && location_ok
            && self.device.is_none_or(|device| device == attrs.device)
            && self
                .authenticated
                .is_none_or(|auth| auth == attrs.authenticated)
            && self.source.is_none_or(|source| source == attrs.source)
    }
}

/// The ordered rules of one policy.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    rules: Box<[CompiledRule]>,
}

impl Rules {
    /// Compiles `rules` in order; `resolve` maps a tier name to its id and
    /// `route_class` a route name to its profiler class (next-action
    /// conditions).
    pub(crate) fn compile(
        rules: &[Rule],
        resolve: impl Fn(&str) -> Option<TierId>,
        route_class: impl Fn(&str) -> Option<u8>,
    ) -> Result<Self, RuleError> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let tier = resolve(&rule.tier).ok_or_else(|| RuleError::UnknownTier {
                    index,
                    tier: rule.tier.clone(),
                })?;
                Ok(CompiledRule::new(&rule.when, tier, &route_class))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules: compiled })
    }

    /// The tier of the first rule whose conditions all hold, if any.
    /// Rules with prediction conditions are skipped: they are decided by
    /// the background tick ([`Self::decide`]).
    pub(crate) fn first_match(&self, attrs: &Attributes<'_>) -> Option<TierId> {
        self.rules
            .iter()
            .find(|rule| rule.is_static && rule.matches(attrs))
            .map(|rule| rule.tier)
    }

    /// Whether any rule has prediction conditions.
    pub(crate) fn is_predictive(&self) -> bool {
        self.rules.iter().any(|rule| !rule.is_static)
    }

    /// Bit `i` set when the static conditions of rule `i` hold, for the
    /// first [`MASK_RULES`] rules. Allocation-free.
    pub(crate) fn static_mask(&self, attrs: &Attributes<'_>) -> u32 {
        self.rules
            .iter()
            .take(MASK_RULES)
            .enumerate()
            .filter(|(_, rule)| rule.matches(attrs))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }

    /// The first static rule whose bit is set in `mask`.
    pub(crate) fn first_static_in(&self, mask: u32) -> Option<TierId> {
        self.rules
            .iter()
            .take(MASK_RULES)
            .enumerate()
            .find(|(i, rule)| rule.is_static && mask & 1 << i != 0)
            .map(|(_, rule)| rule.tier)
    }

    /// The first rule whose static bit is set in `mask` and whose
    /// prediction conditions hold for `predictions`: its index, tier and
    /// the cause its reason quotes.
    pub(crate) fn decide(
        &self,
        mask: u32,
        predictions: &dyn Predictions,
    ) -> Option<(u8, TierId, Cause, f64)> {
        self.rules
            .iter()
            .take(MASK_RULES)
            .enumerate()
            .filter(|(i, _)| mask & 1 << i != 0)
            .find_map(|(i, rule)| {
                let (cause, value) = rule.predicate.holds(predictions)?;
                Some((i as u8, rule.tier, cause, value))
            })
    }

    /// The prediction conditions of rule `index`, for reasons.
    pub(crate) fn predicate(&self, index: usize) -> Option<&Predicate> {
        self.rules.get(index).map(|rule| &rule.predicate)
    }

    /// Number of rules.
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREMIUM: usize = 0;
    const STANDARD: usize = 1;
    const FREE: usize = 2;

    fn id(index: usize) -> TierId {
        TierId::from_index(index).expect("small index")
    }

    fn resolve(name: &str) -> Option<TierId> {
        ["premium", "standard", "free"]
            .iter()
            .position(|tier| *tier == name)
            .map(id)
    }

    fn rule(when: Condition, tier: &str) -> Rule {
        Rule {
            when,
            tier: tier.into(),
        }
    }

    fn sample() -> Rules {
        let rules = [
            rule(
                Condition {
                    device: Some(Device::Bot),
                    ..Condition::default()
                },
                "free",
            ),
            rule(
                Condition {
                    plan: Some("premium".into()),
                    authenticated: Some(true),
                    ..Condition::default()
                },
                "premium",
            ),
            rule(
                Condition {
                    location: Some("de".into()),
                    source: Some(SourceKind::ApiKey),
                    ..Condition::default()
                },
                "premium",
            ),
            rule(
                Condition {
                    plan: Some("premium".into()),
                    ..Condition::default()
                },
                "standard",
            ),
        ];
        Rules::compile(&rules, resolve, |_| None).expect("tiers exist")
    }

    /// The sample's decision with `free` as the fallback.
    fn tier_for(rules: &Rules, attrs: &Attributes<'_>) -> TierId {
        rules.first_match(attrs).unwrap_or(id(FREE))
    }

    fn user(plan: Option<&str>, device: Device) -> Attributes<'_> {
        Attributes {
            plan,
            device,
            authenticated: true,
            source: SourceKind::Jwt,
            ..Attributes::ANONYMOUS
        }
    }

    #[test]
    fn first_matching_rule_wins_even_when_later_ones_match_too() {
        let rules = sample();
        // Rule 0 (bots -> free) shadows rule 1 for a premium crawler.
        assert_eq!(
            tier_for(&rules, &user(Some("premium"), Device::Bot)),
            id(FREE)
        );
        assert_eq!(
            tier_for(&rules, &user(Some("premium"), Device::Desktop)),
            id(PREMIUM)
        );
    }

    #[test]
    fn every_condition_of_a_rule_must_hold() {
        let rules = sample();
        let unauthenticated = Attributes {
            authenticated: false,
            ..user(Some("premium"), Device::Mobile)
        };
        // Rule 1 needs authentication; rule 3 (plan only) catches it.
        assert_eq!(tier_for(&rules, &unauthenticated), id(STANDARD));
    }

    #[test]
    fn location_matches_ignoring_case_and_never_when_missing() {
        let rules = sample();
        let from_germany = Attributes {
            location: Some("DE"),
            source: SourceKind::ApiKey,
            ..user(None, Device::Desktop)
        };
        assert_eq!(tier_for(&rules, &from_germany), id(PREMIUM));
        let unknown_place = Attributes {
            location: None,
            ..from_germany
        };
        assert_eq!(tier_for(&rules, &unknown_place), id(FREE));
    }

    #[test]
    fn plan_comparison_is_case_sensitive() {
        let rules = sample();
        assert_eq!(
            tier_for(&rules, &user(Some("Premium"), Device::Desktop)),
            id(FREE)
        );
    }

    #[test]
    fn no_match_falls_back_and_empty_conditions_match_everything() {
        assert_eq!(tier_for(&sample(), &Attributes::ANONYMOUS), id(FREE));
        assert_eq!(sample().first_match(&Attributes::ANONYMOUS), None);
        let catch_all =
            Rules::compile(&[rule(Condition::default(), "standard")], resolve, |_| None)
                .expect("tier exists");
        assert_eq!(
            catch_all.first_match(&Attributes::ANONYMOUS),
            Some(id(STANDARD))
        );
    }

    #[test]
    fn unknown_tier_names_are_rejected_with_the_rule_index() {
        let rules = [
            rule(Condition::default(), "free"),
            rule(Condition::default(), "gold"),
        ];
        assert_eq!(
            Rules::compile(&rules, resolve, |_| None).err(),
            Some(RuleError::UnknownTier {
                index: 1,
                tier: "gold".into()
            })
        );
    }
}
