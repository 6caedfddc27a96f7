//! Per-horizon weights over several point models, from their recent errors.
//!
//! No single model is best everywhere: the naive forecast wins a minute
//! ahead on a smooth series, the seasonal models an hour ahead, the EWMA on
//! a sparse series. The ensemble is the feedback loop that decides: each
//! member's forecast for each tracked horizon is kept until its target
//! arrives, its absolute error goes into a running mean per member and
//! horizon (the plain mean of the errors until there are enough of them
//! for the running one), and the combined forecast weights the members by
//! `(best_error / error) ^ power`. A large power approaches picking the best
//! member; a small one averages. Members that have never been scored get
//! equal weights.

use std::collections::VecDeque;

/// Running absolute errors and pending forecasts of every member, per
/// horizon; see the module docs.
#[derive(Debug, Clone)]
pub struct Ensemble {
    members: usize,
    per_horizon: Vec<HorizonErrors>,
    alpha: f64,
    power: f64,
}

/// One horizon's state.
#[derive(Debug, Clone)]
struct HorizonErrors {
    horizon: u32,
    /// Member forecasts of each issued step, `members` values per step,
    /// oldest first.
    pending: VecDeque<f64>,
    /// Running mean absolute error per member.
    mae: Vec<f64>,
    scored: u64,
}

impl Ensemble {
    /// Default weight of the newest error: a memory of about 1 000 scored
    /// buckets (17 hours at 60 s).
    pub const DEFAULT_ALPHA: f64 = 0.001;
    /// Default sharpness of the weights.
    pub const DEFAULT_POWER: f64 = 30.0;

    /// Weights over `members` models (at least 1) for `horizons` (buckets;
    /// 0 read as 1, duplicates once); errors smoothed by `alpha` per
    /// scored bucket (clamped to `(0, 1]`) and weights sharpened by
    /// `power` (at least 0).
    pub fn new(members: usize, horizons: &[u32], alpha: f64, power: f64) -> Self {
        let members = members.max(1);
        let mut hs: Vec<u32> = horizons.iter().map(|&h| h.max(1)).collect();
        hs.sort_unstable();
        hs.dedup();
        Self {
            members,
            per_horizon: hs
                .into_iter()
                .map(|horizon| HorizonErrors {
                    horizon,
                    pending: VecDeque::with_capacity(members * (horizon as usize + 1)),
                    mae: vec![0.0; members],
                    scored: 0,
                })
                .collect(),
            alpha: if alpha.is_nan() {
                Self::DEFAULT_ALPHA
            } else {
                alpha.clamp(1e-9, 1.0)
            },
            power: if power.is_nan() { 0.0 } else { power.max(0.0) },
        }
    }

    /// Scores the member forecasts whose target is this bucket against
    /// `actual` (`None`: not really observed, dropped unscored), then queues
    /// this step's forecasts, `predict(member, horizon)`.
    pub fn record(&mut self, actual: Option<f64>, mut predict: impl FnMut(usize, u32) -> f64) {
        let (members, alpha) = (self.members, self.alpha);
        for track in &mut self.per_horizon {
            if track.pending.len() >= members * track.horizon as usize {
                // Until `1 / alpha` buckets are scored, the plain mean of the
                // errors so far: one early error (a cold start, a ramp from
                // idle) must not set the weights for the next thousand.
                let weight = alpha.max(1.0 / (track.scored as f64 + 1.0));
                for m in 0..members {
                    let issued = track.pending.pop_front();
                    if let (Some(forecast), Some(actual)) = (issued, actual) {
                        let error = (actual - forecast).abs();
                        let mae = &mut track.mae[m];
                        *mae += weight * (error - *mae);
                    }
                }
                if actual.is_some() {
                    track.scored += 1;
                }
            }
            for m in 0..members {
                track.pending.push_back(predict(m, track.horizon));
            }
        }
    }

    /// The tracked horizon nearest `horizon`.
    fn track(&self, horizon: u32) -> Option<&HorizonErrors> {
        self.per_horizon
            .iter()
            .min_by_key(|t| t.horizon.abs_diff(horizon.max(1)))
    }

    /// Running mean absolute error of each member at the tracked horizon
    /// nearest `horizon`; empty before anything was scored there.
    pub fn errors(&self, horizon: u32) -> &[f64] {
        match self.track(horizon) {
            Some(track) if track.scored > 0 => &track.mae,
            _ => &[],
        }
    }

    /// The member with the lowest recent error at `horizon`, if any was
    /// scored.
    pub fn best(&self, horizon: u32) -> Option<usize> {
        self.errors(horizon)
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(m, _)| m)
    }

    /// The normalised weight of each member at `horizon` (they sum to 1).
    pub fn weights(&self, horizon: u32) -> Vec<f64> {
        let errors = self.errors(horizon);
        if errors.is_empty() {
            return vec![1.0 / self.members as f64; self.members];
        }
        let best = errors.iter().copied().fold(f64::INFINITY, f64::min);
        // A floor keeps a perfect member (error 0) from dividing by zero.
        let floor = (best * 1e-6).max(1e-12);
        let raw: Vec<f64> = errors
            .iter()
            .map(|&e| ((best + floor) / (e + floor)).powf(self.power))
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter().map(|w| w / total).collect()
    }

    /// The weighted mean of `forecasts` (one per member) at `horizon`.
    pub fn combine(&self, horizon: u32, forecasts: &[f64]) -> f64 {
        self.weights(horizon)
            .iter()
            .zip(forecasts)
            .map(|(w, f)| w * f)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_with_the_smaller_recent_error_gets_the_larger_weight() {
        let mut ensemble = Ensemble::new(2, &[1, 3], 0.05, 4.0);
        for i in 0..200 {
            let actual = f64::from(i % 10);
            // Member 0 is exact one step ahead; member 1 is always 0.
            ensemble.record(Some(actual), |m, h| {
                if m == 0 {
                    f64::from((i + h) % 10)
                } else {
                    0.0
                }
            });
        }
        let weights = ensemble.weights(1);
        assert!(weights[0] > 0.99, "{weights:?}");
        assert_eq!(ensemble.best(3), Some(0));
        assert!((ensemble.combine(1, &[7.0, 0.0]) - 7.0).abs() < 0.05);
    }

    #[test]
    fn one_early_error_does_not_outweigh_the_many_after_it() {
        let mut ensemble = Ensemble::new(2, &[1], Ensemble::DEFAULT_ALPHA, Ensemble::DEFAULT_POWER);
        // The first scored bucket favours member 1 (a ramp from idle)...
        ensemble.record(Some(0.0), |m, _| if m == 0 { 0.0 } else { 10.0 });
        ensemble.record(Some(10.0), |m, _| if m == 0 { 10.0 } else { 0.0 });
        // ...and the next hundred member 0.
        for _ in 0..100 {
            ensemble.record(Some(10.0), |m, _| if m == 0 { 10.0 } else { 0.0 });
        }
        assert_eq!(ensemble.best(1), Some(0), "{:?}", ensemble.errors(1));
        assert!(ensemble.weights(1)[0] > 0.99);
    }

    #[test]
    fn unscored_members_share_the_weight_equally() {
        let ensemble = Ensemble::new(4, &[5], 0.01, 6.0);
        assert_eq!(ensemble.weights(5), vec![0.25; 4]);
        assert_eq!(ensemble.best(5), None);
    }

    #[test]
    fn errors_are_matched_to_the_forecast_issued_horizon_steps_earlier() {
        let mut ensemble = Ensemble::new(1, &[2], 1.0, 1.0);
        // Step i issues i + 2 for horizon 2: exactly right two steps later.
        for i in 0..10 {
            ensemble.record(Some(f64::from(i)), |_, h| f64::from(i + h));
        }
        assert_eq!(ensemble.errors(2), &[0.0]);
    }
}
