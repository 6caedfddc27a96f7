//! Latency sensitivity: how much a user minds slow responses, as a score in
//! `[0, 1]` that shaping can use to decide whom to delay first.
//!
//! People show it by what they do when a response is slow: they hang up
//! before it arrives, they retry the same thing at once, or they leave. The
//! per-user [`LatencySignals`] count those reactions after slow responses and,
//! as a baseline, after fast ones (see its module for how). [`score`] turns
//! the counts into the excess reaction rate after slow responses, shrunk
//! towards a prior taken from the route classes the user calls: a user of
//! interactive routes is presumed sensitive, a user of batch routes
//! (exports, uploads) tolerant, until their own behaviour says otherwise.
//!
//! The proxy calls [`LatencySignals::on_response`] (after
//! [`SensitivityConfig::classify`]) and [`LatencySignals::on_arrival`] on the
//! hot path; both are a few atomic operations. The background tick calls
//! [`LatencySignals::sweep`] to notice users who left after a response.
//!
//! [`score`]: SensitivityConfig::score

mod signals;

pub use signals::{LatencySignals, ResponseSpeed, SignalCounts};

use headroom_config::RouteKind;

use crate::activity::ROUTE_CLASSES;
use crate::user::UserWindows;

/// Thresholds and priors of the sensitivity score.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityConfig {
    /// A response to an interactive route slower than this (ms) is slow.
    /// Default 1 000.
    pub slow_interactive_ms: u64,
    /// A response to a batch route slower than this (ms) is slow. Default
    /// 10 000.
    pub slow_batch_ms: u64,
    /// A disconnect counts as a reaction to latency only after the client
    /// waited at least this share of the route's slow threshold; earlier
    /// hang-ups (navigating away, cancelled prefetches) are ignored.
    /// Default 0.5.
    pub disconnect_min_share: f64,
    /// An arrival in the same route class within this many ms of a response
    /// is a quick retry. Default 10 000.
    pub retry_gap_ms: u64,
    /// No arrival for longer than this (ms) after a response means the
    /// session ended there. Default 300 000 (5 minutes).
    pub abandon_gap_ms: u64,
    /// Prior score of a user of interactive routes only. Default 0.6.
    pub interactive_prior: f64,
    /// Prior score of a user of batch routes only. Default 0.1.
    pub batch_prior: f64,
    /// Weight of the prior, in slow responses: with this many slow
    /// responses observed, the user's own behaviour and the prior weigh the
    /// same. Default 5.
    pub prior_weight: f64,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        Self {
            slow_interactive_ms: 1_000,
            slow_batch_ms: 10_000,
            disconnect_min_share: 0.5,
            retry_gap_ms: 10_000,
            abandon_gap_ms: 300_000,
            interactive_prior: 0.6,
            batch_prior: 0.1,
            prior_weight: 5.0,
        }
    }
}

impl SensitivityConfig {
    /// The slow threshold of a route kind, in microseconds.
    fn slow_us(&self, kind: RouteKind) -> u64 {
        let ms = match kind {
            RouteKind::Interactive => self.slow_interactive_ms,
            RouteKind::Batch => self.slow_batch_ms,
        };
        ms.saturating_mul(1_000)
    }

    /// How a response that took `latency_us` on a route of `kind` went,
    /// `None` for a disconnect too early to be about latency (see
    /// [`Self::disconnect_min_share`]). A latency exactly at the threshold
    /// is fast.
    pub fn classify(
        &self,
        kind: RouteKind,
        latency_us: u64,
        disconnected: bool,
    ) -> Option<ResponseSpeed> {
        let slow_us = self.slow_us(kind);
        if disconnected {
            let min_us = slow_us as f64 * self.disconnect_min_share;
            return (latency_us as f64 >= min_us).then_some(ResponseSpeed::Disconnected);
        }
        Some(if latency_us > slow_us {
            ResponseSpeed::Slow
        } else {
            ResponseSpeed::Fast
        })
    }

    /// The prior score of a user whose arrivals split over route classes as
    /// `route_mix` (shares; all zero means unknown and counts as
    /// interactive), with `kinds[c]` the kind of class `c`.
    pub fn prior(
        &self,
        route_mix: &[f64; ROUTE_CLASSES],
        kinds: &[RouteKind; ROUTE_CLASSES],
    ) -> f64 {
        let total: f64 = route_mix.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return self.interactive_prior;
        }
        let interactive: f64 = route_mix
            .iter()
            .zip(kinds)
            .filter(|(_, &kind)| kind == RouteKind::Interactive)
            .map(|(share, _)| share)
            .sum::<f64>()
            / total;
        interactive * self.interactive_prior + (1.0 - interactive) * self.batch_prior
    }

    /// The sensitivity score in `[0, 1]` from a user's counts and route mix.
    ///
    /// The observed part is the excess of the reaction rate after slow
    /// responses over the rate after fast ones, as a share of the room left
    /// above the fast rate: `(p_slow - p_fast) / (1 - p_fast)`, clamped at 0,
    /// each rate with a uniform prior (`(r + 1) / (n + 2)`). It is blended
    /// with [`Self::prior`] by weight `slow / (slow + prior_weight)`, so a
    /// user never seen slow gets the prior of their route classes.
    pub fn score(
        &self,
        counts: SignalCounts,
        route_mix: &[f64; ROUTE_CLASSES],
        kinds: &[RouteKind; ROUTE_CLASSES],
    ) -> f64 {
        let rate = |r: u16, n: u16| (f64::from(r) + 1.0) / (f64::from(n) + 2.0);
        let p_slow = rate(counts.slow_reactions, counts.slow);
        let p_fast = rate(counts.fast_reactions, counts.fast);
        // 1 - p_fast >= 1 / (fast + 2) > 0.
        let excess = ((p_slow - p_fast) / (1.0 - p_fast)).clamp(0.0, 1.0);
        let slow = f64::from(counts.slow);
        let weight = slow / (slow + self.prior_weight.max(f64::MIN_POSITIVE));
        let prior = self.prior(route_mix, kinds).clamp(0.0, 1.0);
        (weight * excess + (1.0 - weight) * prior).clamp(0.0, 1.0)
    }

    /// [`Self::score`] for a tracked user, with the route mix from the
    /// user's long-run signature. Two atomic loads.
    pub fn user_score(&self, user: &UserWindows, kinds: &[RouteKind; ROUTE_CLASSES]) -> f64 {
        let mix = user.signature().load().route_mix();
        self.score(user.latency().counts(), &mix, kinds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERACTIVE: [RouteKind; ROUTE_CLASSES] = [RouteKind::Interactive; ROUTE_CLASSES];

    fn mix(class: usize) -> [f64; ROUTE_CLASSES] {
        let mut m = [0.0; ROUTE_CLASSES];
        m[class] = 1.0;
        m
    }

    fn counts(slow: u16, slow_reactions: u16, fast: u16, fast_reactions: u16) -> SignalCounts {
        SignalCounts {
            slow,
            slow_reactions,
            fast,
            fast_reactions,
        }
    }

    #[test]
    fn thresholds_depend_on_the_route_kind_and_early_hangups_do_not_count() {
        let c = SensitivityConfig::default();
        let fast = Some(ResponseSpeed::Fast);
        let slow = Some(ResponseSpeed::Slow);
        assert_eq!(c.classify(RouteKind::Interactive, 1_000_000, false), fast);
        assert_eq!(c.classify(RouteKind::Interactive, 1_000_001, false), slow);
        assert_eq!(c.classify(RouteKind::Batch, 5_000_000, false), fast);
        assert_eq!(c.classify(RouteKind::Batch, 10_000_001, false), slow);
        assert_eq!(c.classify(RouteKind::Interactive, 100_000, true), None);
        assert_eq!(
            c.classify(RouteKind::Interactive, 500_000, true),
            Some(ResponseSpeed::Disconnected)
        );
    }

    #[test]
    fn without_slow_responses_the_score_is_the_route_prior() {
        let c = SensitivityConfig::default();
        let mut kinds = INTERACTIVE;
        kinds[3] = RouteKind::Batch;
        let none = SignalCounts::default();
        assert!((c.score(none, &mix(0), &kinds) - 0.6).abs() < 1e-12);
        assert!((c.score(none, &mix(3), &kinds) - 0.1).abs() < 1e-12);
        let mut half = [0.0; ROUTE_CLASSES];
        half[0] = 0.5;
        half[3] = 0.5;
        assert!((c.score(none, &half, &kinds) - 0.35).abs() < 1e-12);
        assert!((c.score(none, &[0.0; ROUTE_CLASSES], &kinds) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn reacting_to_slow_but_not_to_fast_responses_drives_the_score_up() {
        let c = SensitivityConfig::default();
        let reacts = c.score(counts(40, 36, 200, 20), &mix(0), &INTERACTIVE);
        let shrugs = c.score(counts(40, 4, 200, 20), &mix(0), &INTERACTIVE);
        assert!(reacts > 0.8, "{reacts}");
        assert!(shrugs < 0.15, "{shrugs}");
    }

    #[test]
    fn reactions_at_the_baseline_rate_are_not_sensitivity() {
        let c = SensitivityConfig::default();
        // Clicks through pages: "retries" half the time whatever the speed.
        let s = c.score(counts(100, 50, 1_000, 500), &mix(0), &INTERACTIVE);
        assert!(s < 0.1, "{s}");
    }

    #[test]
    fn signals_on_a_user_feed_the_score_end_to_end() {
        let c = SensitivityConfig::default();
        let user = UserWindows::new(&crate::UserShape::default());
        for i in 0..30u64 {
            let t = i * 60_000;
            user.record_arrival(t, 1, 0);
            let speed = c.classify(RouteKind::Interactive, 3_000_000, false);
            user.latency().on_response(t + 3_000, 1, speed.unwrap());
            // Retries two seconds later, gets a fast answer, then moves on.
            user.record_arrival(t + 5_000, 1, 0);
            user.latency().on_arrival(t + 5_000, 1, &c);
            user.latency()
                .on_response(t + 5_100, 1, ResponseSpeed::Fast);
            user.latency().on_arrival(t + 40_000, 2, &c);
        }
        let score = c.user_score(&user, &INTERACTIVE);
        assert!(score > 0.8, "{score}");
    }
}
