//! Predictive tiering: rules that condition on what a user is predicted to
//! do, decided in the proxy's background tick and settled with hysteresis.
//!
//! Why the tick and not the request: predictions (a forecast quantile, a
//! sensitivity score, a next-action likelihood) cost lookups and floating
//! point that the hot path cannot afford, and they only change once per
//! forecast tick anyway. So the request path records which rules' *static*
//! conditions held for the user (a bit mask, [`crate::Policy::static_mask`])
//! and reads the tier the tick stored; the tick evaluates the rules in order
//! over that mask plus the user's [`Predictions`], first match wins, and
//! [`crate::Policy::settle`] applies the hysteresis: a user's tier changes
//! at most once per `tiering.min_dwell`, the first assignment immediately.
//!
//! A user the tick has not seen yet (or not since a reload) is served by
//! the static rules alone, predictive rules skipped
//! ([`crate::Policy::tier_for_mask`]).

use std::fmt::Write as _;

use headroom_config::Condition;

use crate::assignment::{Assignment, Cause, SINCE_MODULUS};
use crate::tier::TierId;

/// Sensitivity score at or above which a user is latency-sensitive.
pub const LATENCY_SENSITIVE_SCORE: f64 = 0.5;

/// Mask bit: the static conditions of `preallocate.when` held.
pub const PREALLOC_BIT: u32 = 1 << 22;

/// Mask bit: the identity was anonymous (the fallback is the anonymous tier).
pub const ANONYMOUS_BIT: u32 = 1 << 23;

/// Where [`crate::Policy::tagged_mask`] puts the policy generation: rule
/// indices mean nothing under another policy, so a mask is only used by the
/// policy that made it.
pub const MASK_GENERATION_SHIFT: u32 = 24;

/// What the background tick knows about one user's near future. Each
/// method returns `None` when the model has nothing yet, and a condition
/// on a missing prediction does not hold.
pub trait Predictions {
    /// Predicted request rate one forecast tick ahead, 90th percentile, in
    /// requests per second.
    fn rps_p90(&self) -> Option<f64>;
    /// Latency-sensitivity score in [0, 1].
    fn latency_score(&self) -> Option<f64>;
    /// Likelihood that the user calls route class `route_class` within
    /// `within_ms`.
    fn next_action(&self, route_class: u8, within_ms: u64) -> Option<f64>;
}

/// The prediction conditions of one rule (or of `preallocate.when`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Predicate {
    rps_p90_above: Option<f64>,
    latency_sensitive: Option<bool>,
    /// Route class, horizon (ms), threshold, route name for reasons.
    next_action: Option<(u8, u64, f64, Box<str>)>,
}

impl Predicate {
    /// The prediction part of `when`; `route_class` resolves route names.
    pub(crate) fn new(when: &Condition, route_class: impl Fn(&str) -> Option<u8>) -> Self {
        Self {
            rps_p90_above: when.predicted_rps_p90_above,
            latency_sensitive: when.latency_sensitive,
            next_action: when.next_action.as_ref().map(|n| {
                let within_ms = u64::try_from(n.within.as_millis()).unwrap_or(u64::MAX);
                let class = route_class(&n.route).unwrap_or(0);
                (
                    class,
                    within_ms,
                    n.likelihood_above,
                    n.route.as_str().into(),
                )
            }),
        }
    }

    /// Whether the predicate has any condition.
    pub(crate) fn is_some(&self) -> bool {
        self.rps_p90_above.is_some()
            || self.latency_sensitive.is_some()
            || self.next_action.is_some()
    }

    /// `None` if a condition fails; otherwise the cause the reason quotes
    /// (the first prediction condition, in key order) and its value.
    pub(crate) fn holds(&self, p: &dyn Predictions) -> Option<(Cause, f64)> {
        let mut cause = (Cause::Static, 0.0);
        let mut note = |c: Cause, v: f64| {
            if cause.0 == Cause::Static {
                cause = (c, v);
            }
        };
        if let Some(above) = self.rps_p90_above {
            let rps = p.rps_p90().filter(|r| *r > above)?;
            note(Cause::PredictedRps, rps);
        }
        if let Some(want) = self.latency_sensitive {
            let score = p.latency_score()?;
            if (score >= LATENCY_SENSITIVE_SCORE) != want {
                return None;
            }
            note(Cause::LatencySensitive, score);
        }
        if let Some((class, within_ms, above, _)) = &self.next_action {
            let likelihood = p.next_action(*class, *within_ms).filter(|l| l > above)?;
            note(Cause::NextAction, likelihood);
        }
        Some(cause)
    }

    /// Writes the condition behind `cause` with the observed `value`, like
    /// `predicted p90 8.3 rps > 5`.
    pub(crate) fn describe(&self, cause: Cause, value: f32, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = match (cause, &self.next_action) {
            (Cause::PredictedRps, _) => write!(
                out,
                "predicted p90 {value:.1} rps > {}",
                self.rps_p90_above.unwrap_or(0.0)
            ),
            (Cause::LatencySensitive, _) => {
                let side = if self.latency_sensitive == Some(false) {
                    "<"
                } else {
                    ">="
                };
                write!(
                    out,
                    "latency sensitivity {value:.2} {side} {LATENCY_SENSITIVE_SCORE}"
                )
            }
            (Cause::NextAction, Some((_, within_ms, above, route))) => write!(
                out,
                "next action {route} within {}s likely {value:.2} > {above}",
                within_ms / 1000
            ),
            _ => write!(out, "static conditions"),
        };
    }
}

/// What the rules decide for one user at one tick, before hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The tier the rules give now.
    pub tier: TierId,
    /// The deciding rule, `None` for the fallback tier.
    pub rule: Option<u8>,
    /// Which condition the reason quotes.
    pub cause: Cause,
    /// Its predicted value.
    pub value: f64,
}

/// The result of settling a candidate against the assignment in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    /// The assignment to store.
    pub assignment: Assignment,
    /// Whether the tier changed (or was assigned for the first time).
    pub changed: bool,
    /// Whether a different tier was wanted but the dwell time held it.
    pub held: bool,
}

/// Hysteresis: `candidate` replaces `prev` only if the tier is the same
/// (the reason is refreshed, the start kept), or `prev` is older than
/// `min_dwell_s`, or there is no `prev` (first assignment, immediate). A
/// clock that went backwards reads as no time elapsed.
pub fn settle(
    prev: Option<Assignment>,
    candidate: Candidate,
    now_s: u64,
    min_dwell_s: u64,
) -> Settled {
    let fresh = |since_s| Assignment {
        tier: candidate.tier,
        rule: candidate.rule,
        cause: candidate.cause,
        value: candidate.value as f32,
        since_s,
    };
    let Some(prev) = prev else {
        return Settled {
            assignment: fresh(now_s),
            changed: true,
            held: false,
        };
    };
    let age = now_s.saturating_sub(prev.since_s);
    if prev.tier == candidate.tier {
        // Keep the start, but never let it age past what the packed field
        // can recover (see `assignment`).
        let since = prev.since_s.max(now_s.saturating_sub(SINCE_MODULUS / 2));
        return Settled {
            assignment: fresh(since),
            changed: false,
            held: false,
        };
    }
    if age >= min_dwell_s {
        return Settled {
            assignment: fresh(now_s),
            changed: true,
            held: false,
        };
    }
    Settled {
        assignment: prev,
        changed: false,
        held: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        rps: Option<f64>,
        score: Option<f64>,
        next: Option<f64>,
    }

    impl Predictions for Fixed {
        fn rps_p90(&self) -> Option<f64> {
            self.rps
        }
        fn latency_score(&self) -> Option<f64> {
            self.score
        }
        fn next_action(&self, route_class: u8, within_ms: u64) -> Option<f64> {
            assert_eq!((route_class, within_ms), (2, 900_000));
            self.next
        }
    }

    fn predicate(yaml_when: &str) -> Predicate {
        let text = format!(
            "routes:\n  - {{ name: a, prefix: /a }}\n  - {{ name: export, prefix: /export }}\n\
             tiers:\n  - {{ name: t, requests_per_second: 1, burst: 1 }}\n\
             rules:\n  - when: {yaml_when}\n    tier: t\ndefault_tier: t\n"
        );
        let config = headroom_config::load_str(&text, "x.yaml").expect("valid");
        Predicate::new(&config.rules[0].when, |name| {
            (name == "export").then_some(2)
        })
    }

    #[test]
    fn every_prediction_condition_must_hold_and_missing_predictions_fail() {
        let p = predicate("{ predicted_rps_p90_above: 5, latency_sensitive: true }");
        let both = Fixed {
            rps: Some(8.3),
            score: Some(0.7),
            next: None,
        };
        assert_eq!(p.holds(&both), Some((Cause::PredictedRps, 8.3)));
        let slow = Fixed {
            rps: Some(5.0),
            ..both
        };
        assert_eq!(p.holds(&slow), None, "5 is not above 5");
        let tolerant = Fixed {
            score: Some(0.2),
            ..both
        };
        assert_eq!(p.holds(&tolerant), None);
        let unknown = Fixed { rps: None, ..both };
        assert_eq!(p.holds(&unknown), None);
    }

    #[test]
    fn next_action_reads_the_route_class_and_horizon() {
        let p = predicate("{ next_action: { route: export, within: 15m, likelihood_above: 0.5 } }");
        let likely = Fixed {
            rps: None,
            score: None,
            next: Some(0.62),
        };
        assert_eq!(p.holds(&likely), Some((Cause::NextAction, 0.62)));
        let mut text = String::new();
        p.describe(Cause::NextAction, 0.62, &mut text);
        assert_eq!(text, "next action export within 900s likely 0.62 > 0.5");
        assert_eq!(
            p.holds(&Fixed {
                next: Some(0.4),
                ..likely
            }),
            None
        );
    }

    fn candidate(tier: usize) -> Candidate {
        Candidate {
            tier: TierId::from_index(tier).expect("small"),
            rule: Some(tier as u8),
            cause: Cause::PredictedRps,
            value: tier as f64,
        }
    }

    #[test]
    fn hysteresis_changes_a_tier_at_most_once_per_dwell_on_a_fake_clock() {
        let dwell = 300;
        let mut now = 1_000;
        let mut current = settle(None, candidate(1), now, dwell);
        assert!(current.changed, "the first assignment is immediate");
        let mut changes = vec![now];
        // The rules flip between tiers 1 and 2 every 10 s for an hour.
        for step in 1..=360 {
            now += 10;
            let want = if step % 2 == 0 { 1 } else { 2 };
            let next = settle(Some(current.assignment), candidate(want), now, dwell);
            if next.changed {
                changes.push(now);
            }
            assert_eq!(
                next.held,
                !next.changed && current.assignment.tier.index() != want
            );
            current = next;
        }
        assert!(changes.len() >= 2, "{changes:?}");
        for pair in changes.windows(2) {
            assert!(
                pair[1] - pair[0] >= dwell,
                "changed twice within the dwell: {changes:?}"
            );
        }
        // A held tier keeps the reason it was assigned for.
        let held = settle(Some(current.assignment), candidate(5), now + 1, dwell);
        assert!(held.held);
        assert_eq!(held.assignment.rule, current.assignment.rule);
    }

    #[test]
    fn an_unchanged_tier_refreshes_the_reason_but_keeps_its_start() {
        let first = settle(None, candidate(1), 100, 60).assignment;
        let again = Candidate {
            value: 9.0,
            ..candidate(1)
        };
        let next = settle(Some(first), again, 500, 60);
        assert!(!next.changed && !next.held);
        assert_eq!(next.assignment.since_s, 100);
        assert_eq!(next.assignment.value, 9.0);
        // A clock that went backwards does not release the dwell.
        let back = settle(Some(first), candidate(2), 50, 60);
        assert!(back.held);
    }
}
