//! A user's predictive tier assignment, packed into one `u64` so the proxy
//! can keep it in an atomic in the user's entry and the hot path can read
//! it with one load.
//!
//! Layout (bit 0 is the least significant):
//! - 0..16: the predicted value behind the reason, as the top half of its
//!   `f32` bits (bfloat16: 8 significant bits, about 2-3 decimal digits);
//! - 16..40: the second the assignment started, modulo 2^24 (194 days);
//! - 40..46: the deciding rule's index, [`NO_RULE`] for the default tier;
//! - 46..48: which condition decided ([`Cause`]);
//! - 48..56: the tier index;
//! - 56..64: the policy generation (1 to 255; 0 means "no assignment").
//!
//! Known approximations: the start second wraps every 194 days, so
//! [`Assignment::unpack`] recovers it only for assignments younger than
//! that (the tick re-stamps older ones, see [`crate::Policy::settle`]); and
//! generations wrap after 255 reloads, so a word written 255 reloads ago
//! and never re-evaluated since would be read as current. The tick
//! re-evaluates every tracked user each forecast tick, so that needs 255
//! reloads within one tick.

use crate::tier::TierId;

/// Rule index meaning "no rule matched: the default (or anonymous) tier".
pub const NO_RULE: u8 = 63;

/// Seconds the start field can represent before wrapping.
pub(crate) const SINCE_MODULUS: u64 = 1 << 24;

const SINCE_SHIFT: u32 = 16;
const RULE_SHIFT: u32 = 40;
const CAUSE_SHIFT: u32 = 46;
const TIER_SHIFT: u32 = 48;
const GENERATION_SHIFT: u32 = 56;

/// Which condition of the deciding rule the reason quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Static conditions only (or the default tier).
    Static = 0,
    /// `predicted_rps_p90_above`; the value is the predicted p90 (rps).
    PredictedRps = 1,
    /// `latency_sensitive`; the value is the sensitivity score.
    LatencySensitive = 2,
    /// `next_action`; the value is the likelihood.
    NextAction = 3,
}

impl Cause {
    fn from_bits(bits: u64) -> Self {
        match bits & 0x3 {
            1 => Cause::PredictedRps,
            2 => Cause::LatencySensitive,
            3 => Cause::NextAction,
            _ => Cause::Static,
        }
    }
}

/// One assignment: the tier, why, and since when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assignment {
    /// The tier in force.
    pub tier: TierId,
    /// Index of the rule that decided, `None` for the default tier.
    pub rule: Option<u8>,
    /// Which of its conditions the reason quotes.
    pub cause: Cause,
    /// The predicted value behind the cause (bfloat16 precision once
    /// packed); 0 for [`Cause::Static`].
    pub value: f32,
    /// When the tier started, in seconds on the caller's clock.
    pub since_s: u64,
}

impl Assignment {
    /// The packed word under policy generation `generation` (1..=255).
    pub fn pack(&self, generation: u8) -> u64 {
        // Rounded to the nearest bfloat16 (saturating keeps NaN a NaN).
        let value = u64::from(self.value.to_bits().saturating_add(0x8000) >> 16);
        let since = self.since_s % SINCE_MODULUS;
        let rule = u64::from(self.rule.map_or(NO_RULE, |r| r.min(NO_RULE - 1)));
        value
            | since << SINCE_SHIFT
            | rule << RULE_SHIFT
            | (self.cause as u64) << CAUSE_SHIFT
            | (self.tier.index() as u64 & 0xff) << TIER_SHIFT
            | u64::from(generation) << GENERATION_SHIFT
    }

    /// The assignment in `word` if it was packed under `generation`, with
    /// its start recovered relative to `now_s` (see the module docs).
    pub fn unpack(word: u64, generation: u8, now_s: u64) -> Option<Self> {
        let tier = Self::tier_of(word, generation)?;
        let since_mod = (word >> SINCE_SHIFT) % SINCE_MODULUS;
        let age = (now_s % SINCE_MODULUS + SINCE_MODULUS - since_mod) % SINCE_MODULUS;
        let rule = ((word >> RULE_SHIFT) & 0x3f) as u8;
        Some(Self {
            tier,
            rule: (rule != NO_RULE).then_some(rule),
            cause: Cause::from_bits(word >> CAUSE_SHIFT),
            value: f32::from_bits(((word & 0xffff) as u32) << 16),
            since_s: now_s.saturating_sub(age),
        })
    }

    /// Only the tier of `word`, if it was packed under `generation`: the
    /// hot path's read. Two shifts and a compare.
    #[inline]
    pub fn tier_of(word: u64, generation: u8) -> Option<TierId> {
        let written = (word >> GENERATION_SHIFT) as u8;
        if written == 0 || written != generation {
            return None;
        }
        TierId::from_index(((word >> TIER_SHIFT) & 0xff) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(i: usize) -> TierId {
        TierId::from_index(i).expect("small")
    }

    #[test]
    fn assignments_round_trip_under_their_generation_only() {
        let a = Assignment {
            tier: tier(3),
            rule: Some(2),
            cause: Cause::PredictedRps,
            value: 8.3,
            since_s: 1_700_000_000,
        };
        let word = a.pack(7);
        let back = Assignment::unpack(word, 7, 1_700_000_090).expect("same generation");
        assert_eq!(
            (back.tier, back.rule, back.cause),
            (tier(3), Some(2), Cause::PredictedRps)
        );
        assert_eq!(back.since_s, 1_700_000_000);
        assert!((back.value - 8.3).abs() < 0.05, "{}", back.value);
        assert_eq!(Assignment::tier_of(word, 7), Some(tier(3)));
        assert_eq!(Assignment::tier_of(word, 8), None);
        assert_eq!(Assignment::tier_of(0, 0), None);
    }

    #[test]
    fn the_default_tier_has_no_rule_and_starts_survive_wrapping() {
        let a = Assignment {
            tier: tier(0),
            rule: None,
            cause: Cause::Static,
            value: 0.0,
            since_s: SINCE_MODULUS - 5,
        };
        let back = Assignment::unpack(a.pack(1), 1, SINCE_MODULUS + 10).expect("valid");
        assert_eq!(back.rule, None);
        assert_eq!(back.since_s, SINCE_MODULUS - 5);
    }
}
