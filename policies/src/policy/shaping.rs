//! The predictive part of a [`Policy`]: the static-condition mask the hot
//! path records, the tick's rule decision with hysteresis, reasons, and
//! the pre-allocation settings. See [`crate::predictive`] for the design.

use std::time::Duration;

use governor::clock::Clock;
use headroom_config::{PreallocHook, Preallocate, Rule};

use super::Policy;
use crate::assignment::{Assignment, Cause};
use crate::predictive::{
    settle, Candidate, Predictions, Settled, ANONYMOUS_BIT, MASK_GENERATION_SHIFT, PREALLOC_BIT,
};
use crate::routes::Routes;
use crate::rules::{Attributes, RuleError, Rules};
use crate::tier::TierId;

/// Route classes the profiler tracks (0 to 7); later routes share class 7.
const PROFILER_CLASSES: u8 = 8;

/// The profiler class of the route called `name` (`other` is 0).
pub(super) fn route_class(routes: &Routes, name: &str) -> Option<u8> {
    routes
        .classes()
        .find(|(_, n)| *n == name)
        .map(|(class, _)| class.id.min(PROFILER_CLASSES - 1))
}

/// Compiled `preallocate` settings.
#[derive(Debug, Clone)]
pub struct Preallocation {
    /// `when`, compiled as a one-rule list (its tier is unused).
    condition: Rules,
    /// How long a reservation lasts.
    pub horizon: Duration,
    /// Admission slots held per pre-allocated user.
    pub slots_per_user: u32,
    /// Most slots held for everyone together.
    pub max_reserved_slots: u32,
    /// The application hook, if configured.
    pub hook: Option<PreallocHook>,
}

impl Preallocation {
    pub(super) fn compile(
        cfg: &Preallocate,
        any_tier: TierId,
        route_class: impl Fn(&str) -> Option<u8>,
    ) -> Result<Self, RuleError> {
        let rule = Rule {
            when: cfg.when.clone(),
            tier: String::new(),
        };
        Ok(Self {
            condition: Rules::compile(&[rule], |_| Some(any_tier), route_class)?,
            horizon: cfg.horizon,
            slots_per_user: cfg.slots_per_user,
            max_reserved_slots: cfg.max_reserved_slots,
            hook: cfg.hook.clone(),
        })
    }
}

impl<C: Clock + Clone> Policy<C> {
    /// Whether any rule or `preallocate` conditions on predictions; when
    /// false, [`Self::tier_for`] is the whole tier decision, as before.
    pub fn is_predictive(&self) -> bool {
        self.rules.is_predictive() || self.preallocation.is_some()
    }

    /// Whether any tier rule conditions on predictions (only then does the
    /// tick assign tiers).
    pub fn has_predictive_rules(&self) -> bool {
        self.rules.is_predictive()
    }

    /// This policy's generation, 1 to 255: tags stored assignments so that
    /// a reload never applies a tier id from an older policy.
    pub fn generation(&self) -> u8 {
        self.generation
    }

    /// `tiering.min_dwell` in seconds.
    pub fn min_dwell_s(&self) -> u64 {
        self.min_dwell_s
    }

    /// The pre-allocation settings, `None` when off.
    pub fn preallocation(&self) -> Option<&Preallocation> {
        self.preallocation.as_ref()
    }

    /// What the hot path records for the tick: bit `i` when rule `i`'s
    /// static conditions hold for `attrs` (first 22 rules), plus
    /// [`PREALLOC_BIT`] and [`ANONYMOUS_BIT`]. Allocation-free.
    pub fn static_mask(&self, attrs: &Attributes<'_>) -> u32 {
        let mut mask = self.rules.static_mask(attrs);
        if let Some(p) = &self.preallocation {
            if p.condition.static_mask(attrs) & 1 != 0 {
                mask |= PREALLOC_BIT;
            }
        }
        if attrs.source == headroom_config::SourceKind::Anonymous {
            mask |= ANONYMOUS_BIT;
        }
        mask
    }

    /// [`Self::static_mask`] tagged with this policy's generation in the
    /// top byte: what the proxy stores per user.
    pub fn tagged_mask(&self, attrs: &Attributes<'_>) -> u32 {
        self.static_mask(attrs) | u32::from(self.generation) << MASK_GENERATION_SHIFT
    }

    /// The mask inside a word from [`Self::tagged_mask`], if this policy
    /// made it (else the user has not been seen since the last reload).
    pub fn untag_mask(&self, tagged: u32) -> Option<u32> {
        let generation = (tagged >> MASK_GENERATION_SHIFT) as u8;
        (generation == self.generation).then_some(tagged & ((1 << MASK_GENERATION_SHIFT) - 1))
    }

    /// The tier from `mask` without predictions (predictive rules skipped):
    /// for users the tick has not assigned yet. Equal to
    /// [`Self::tier_for`] of the attributes the mask was made from.
    pub fn tier_for_mask(&self, mask: u32) -> TierId {
        self.rules
            .first_static_in(mask)
            .unwrap_or_else(|| self.fallback(mask))
    }

    /// The tick's decision for a user with static `mask` and `predictions`:
    /// the first rule whose static bit is set and whose prediction
    /// conditions hold, else the fallback tier.
    pub fn decide(&self, mask: u32, predictions: &dyn Predictions) -> Candidate {
        match self.rules.decide(mask, predictions) {
            Some((rule, tier, cause, value)) => Candidate {
                tier,
                rule: Some(rule),
                cause,
                value,
            },
            None => Candidate {
                tier: self.fallback(mask),
                rule: None,
                cause: Cause::Static,
                value: 0.0,
            },
        }
    }

    /// Applies the hysteresis (`tiering.min_dwell`) to `candidate` against
    /// `prev`, the assignment in force under this policy, if any.
    pub fn settle(&self, prev: Option<Assignment>, candidate: Candidate, now_s: u64) -> Settled {
        settle(prev, candidate, now_s, self.min_dwell_s)
    }

    /// Whether a user with `mask` and `predictions` is to be pre-allocated,
    /// with the cause and value for the hook's reason.
    pub fn wants_preallocation(
        &self,
        mask: u32,
        predictions: &dyn Predictions,
    ) -> Option<(Cause, f64)> {
        let p = self.preallocation.as_ref()?;
        if mask & PREALLOC_BIT == 0 {
            return None;
        }
        p.condition
            .decide(1, predictions)
            .map(|(_, _, cause, value)| (cause, value))
    }

    /// A reason in words, like `rule 2: predicted p90 8.3 rps > 5`.
    pub fn reason(&self, a: &Assignment) -> String {
        let mut text = String::with_capacity(64);
        match a.rule {
            Some(rule) => {
                text.push_str("rule ");
                text.push_str(itoa::Buffer::new().format(rule));
                text.push_str(": ");
                if let Some(p) = self.rules.predicate(usize::from(rule)) {
                    p.describe(a.cause, a.value, &mut text);
                }
            }
            None => text.push_str("no rule matched: default tier"),
        }
        text
    }

    /// The pre-allocation reason for `cause` and `value`, like
    /// `predicted p90 8.3 rps > 5`.
    pub fn preallocation_reason(&self, cause: Cause, value: f64) -> String {
        let mut text = String::with_capacity(64);
        if let Some(p) = self
            .preallocation
            .as_ref()
            .and_then(|p| p.condition.predicate(0))
        {
            p.describe(cause, value as f32, &mut text);
        }
        text
    }

    /// The fallback tier for `mask`'s identity kind.
    fn fallback(&self, mask: u32) -> TierId {
        if mask & ANONYMOUS_BIT != 0 {
            self.anonymous_tier
        } else {
            self.default_tier
        }
    }
}

#[cfg(test)]
mod tests;
