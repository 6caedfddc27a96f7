//! A user's latest tier and rate-limit verdict, in one atomic word, for the
//! profile API.
//!
//! The tier is decided per request from attributes, and the governor bucket
//! only stores a theoretical arrival time: neither says "what tier is this
//! user in, and how much budget do they have" without taking tokens. So the
//! request path stores its decision here (one relaxed store) and
//! `GET /v1/profiles/{user}` reads it back.
//!
//! Layout: bits 0..32 the remaining units, 32..54 the seconds until the
//! bucket is full (saturating at about 48 days), 54..56 the verdict kind
//! (0 none yet, 1 allowed, 2 limited, 3 cost above the burst), 56..64 the
//! tier index.
//!
//! Known approximation: with requests of one user in flight on several
//! threads, the word holds whichever decision was stored last, which may
//! not be the latest decided by a few microseconds.

use std::sync::atomic::{AtomicU64, Ordering};

use headroom_policies::{TierId, Verdict};

const RESET_SHIFT: u32 = 32;
const RESET_MAX: u64 = (1 << 22) - 1;
const KIND_SHIFT: u32 = 54;
const TIER_SHIFT: u32 = 56;

/// What the rate limit said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// The request took its cost from the bucket.
    Allowed,
    /// Refused with 429: too few units now.
    Limited,
    /// Refused: the route costs more than the tier's whole burst.
    CostExceedsBurst,
}

/// One stored decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionMark {
    /// Index of the tier in the policy that decided (look the name up in
    /// the current policy; a reload that reorders tiers changes it).
    pub tier_index: usize,
    /// The verdict.
    pub kind: VerdictKind,
    /// Units left in the bucket after the decision.
    pub remaining: u32,
    /// Seconds from the decision until the bucket was full again.
    pub reset_secs: u32,
}

/// The packed word; see the module docs.
#[derive(Debug, Default)]
pub struct LastDecision(AtomicU64);

impl LastDecision {
    /// Stores the decision `verdict` made under `tier`. One relaxed store.
    pub fn record(&self, tier: TierId, verdict: &Verdict) {
        let kind: u64 = match verdict {
            Verdict::Allowed { .. } => 1,
            Verdict::Limited { .. } => 2,
            Verdict::CostExceedsBurst { .. } => 3,
        };
        let reset = u64::from(verdict.reset_secs()).min(RESET_MAX);
        let word = u64::from(verdict.remaining())
            | reset << RESET_SHIFT
            | kind << KIND_SHIFT
            | (tier.index() as u64 & 0xff) << TIER_SHIFT;
        // Relaxed: self-contained, read only for display.
        self.0.store(word, Ordering::Relaxed);
    }

    /// The latest decision, `None` before the first.
    pub fn load(&self) -> Option<DecisionMark> {
        let word = self.0.load(Ordering::Relaxed);
        let kind = match (word >> KIND_SHIFT) & 0x3 {
            1 => VerdictKind::Allowed,
            2 => VerdictKind::Limited,
            3 => VerdictKind::CostExceedsBurst,
            _ => return None,
        };
        Some(DecisionMark {
            tier_index: (word >> TIER_SHIFT) as usize,
            kind,
            remaining: word as u32,
            reset_secs: ((word >> RESET_SHIFT) & RESET_MAX) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip_and_long_resets_saturate() {
        let cell = LastDecision::default();
        assert_eq!(cell.load(), None);
        let yaml = "tiers:\n".to_owned()
            + &["a", "b", "c", "d"]
                .map(|n| format!("  - {{ name: {n}, requests_per_second: 1, burst: 1 }}\n"))
                .concat()
            + "default_tier: a\n";
        let config = headroom_config::load_str(&yaml, "x.yaml").expect("valid");
        let policy = headroom_policies::Policy::compile(&config).expect("compiles");
        let tier = policy.tier_by_name("d").expect("tier d");
        cell.record(
            tier,
            &Verdict::Limited {
                retry_after_secs: 2,
                remaining: 0,
                reset_secs: u32::MAX,
            },
        );
        let mark = cell.load().expect("stored");
        assert_eq!(mark.tier_index, 3);
        assert_eq!(mark.kind, VerdictKind::Limited);
        assert_eq!(mark.reset_secs, RESET_MAX as u32);

        cell.record(
            tier,
            &Verdict::Allowed {
                remaining: u32::MAX,
                reset_secs: 7,
            },
        );
        let mark = cell.load().expect("stored");
        assert_eq!((mark.remaining, mark.reset_secs), (u32::MAX, 7));
        assert_eq!(mark.kind, VerdictKind::Allowed);
    }
}
