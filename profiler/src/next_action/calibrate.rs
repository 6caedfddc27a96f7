//! Calibration: making a predicted 30% come true 30% of the time.
//!
//! The next-action model's probabilities rest on assumptions (constant
//! hazards within a bucket, a fresh start after each action) that real users
//! bend, so raw probabilities can be systematically high or low. [`Isotonic`]
//! fits the monotone map from predicted to observed frequency that fits a
//! holdout best (pool-adjacent-violators), with each block's rate shrunk
//! slightly towards its mean prediction so that small blocks cannot jump to
//! 0 or 1. [`Calibration`] keeps one map per horizon and target class.
//!
//! Scores: [`brier_score`] (mean squared error of the probability; lower is
//! better, and a useful model beats the constant base rate), and
//! [`Reliability`] bins to show calibration directly.

use crate::activity::ROUTE_CLASSES;

/// Pseudo-observations at the block's mean prediction added to each
/// isotonic block.
const BLOCK_PRIOR: f64 = 2.0;

/// A monotone map from raw to calibrated probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Isotonic {
    /// (mean raw probability, calibrated probability) per block, both
    /// non-decreasing.
    points: Vec<(f64, f64)>,
}

impl Isotonic {
    /// Fewest holdout points a map is fitted from.
    pub const MIN_SAMPLES: usize = 200;

    /// Fits the map to `(raw probability, outcome)` pairs; `None` with fewer
    /// than [`Self::MIN_SAMPLES`] pairs or without both outcomes present
    /// (nothing to learn from). Non-finite probabilities are ignored.
    pub fn fit(pairs: &[(f64, bool)]) -> Option<Self> {
        let mut sorted: Vec<(f64, bool)> = pairs
            .iter()
            .copied()
            .filter(|(p, _)| p.is_finite())
            .collect();
        let positives = sorted.iter().filter(|(_, y)| *y).count();
        if sorted.len() < Self::MIN_SAMPLES || positives == 0 || positives == sorted.len() {
            return None;
        }
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));

        // Pool adjacent violators: (sum of p, sum of y, count) per block.
        // Equal predictions start in one block: their order is arbitrary.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for (p, y) in sorted {
            let y = f64::from(u8::from(y));
            match blocks.last_mut() {
                Some(last) if last.0 / last.2 == p => {
                    *last = (last.0 + p, last.1 + y, last.2 + 1.0)
                }
                _ => blocks.push((p, y, 1.0)),
            }
            while blocks.len() > 1 {
                let (p2, y2, n2) = blocks[blocks.len() - 1];
                let (p1, y1, n1) = blocks[blocks.len() - 2];
                if y1 / n1 < y2 / n2 {
                    break;
                }
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (p1 + p2, y1 + y2, n1 + n2);
            }
        }

        // Shrink each block towards its mean prediction, then keep monotone.
        let mut floor: f64 = 0.0;
        let points = blocks
            .into_iter()
            .map(|(sp, sy, n)| {
                let mean_p = sp / n;
                let value = ((sy + BLOCK_PRIOR * mean_p) / (n + BLOCK_PRIOR)).max(floor);
                floor = value;
                (mean_p, value)
            })
            .collect();
        Some(Self { points })
    }

    /// The calibrated probability of `raw`: linear between block centres,
    /// the end blocks' values beyond them. NaN maps to NaN.
    pub fn apply(&self, raw: f64) -> f64 {
        let upper = self.points.partition_point(|&(x, _)| x <= raw);
        if upper == 0 {
            return self.points[0].1;
        }
        if upper == self.points.len() {
            return self.points[upper - 1].1;
        }
        let (x0, y0) = self.points[upper - 1];
        let (x1, y1) = self.points[upper];
        if x1 <= x0 {
            return y1;
        }
        y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.points.len()
    }
}

/// One [`Isotonic`] map (or none, meaning identity) per horizon and target
/// class.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Calibration {
    maps: Vec<Option<Isotonic>>,
}

impl Calibration {
    /// Fits one map per `(horizon, target)` from `pairs[horizon][target]`;
    /// a target without enough pairs keeps its raw probabilities.
    pub fn fit(pairs: &[[Vec<(f64, bool)>; ROUTE_CLASSES]]) -> Self {
        Self {
            maps: pairs
                .iter()
                .flat_map(|per_target| per_target.iter().map(|p| Isotonic::fit(p)))
                .collect(),
        }
    }

    /// The map for `horizon` and `target`, if one was fitted.
    pub fn map(&self, horizon: usize, target: usize) -> Option<&Isotonic> {
        self.maps.get(horizon * ROUTE_CLASSES + target)?.as_ref()
    }

    /// `raw` through the map for `horizon` and `target` (unchanged without
    /// one).
    pub fn apply(&self, horizon: usize, target: usize, raw: f64) -> f64 {
        self.map(horizon, target).map_or(raw, |m| m.apply(raw))
    }
}

/// Mean squared difference between probabilities and outcomes (0 perfect,
/// 0.25 for a coin flip on balanced outcomes); `None` for no pairs.
pub fn brier_score(pairs: impl IntoIterator<Item = (f64, bool)>) -> Option<f64> {
    let (sum, n) = pairs.into_iter().fold((0.0, 0u64), |(sum, n), (p, y)| {
        let d = p - f64::from(u8::from(y));
        (sum + d * d, n + 1)
    });
    (n > 0).then(|| sum / n as f64)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReliabilityBin {
    /// Lower edge of predicted probability (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, except 1.0 for the last bin).
    pub upper: f64,
    /// Predictions in the bin.
    pub count: u64,
    /// Their mean.
    pub mean_predicted: f64,
    /// Share of them that came true.
    pub observed_rate: f64,
}

/// Streaming reliability diagram over ten equal-width bins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reliability {
    /// (count, sum of predictions, sum of outcomes) per bin.
    bins: [(u64, f64, f64); 10],
}

impl Reliability {
    /// Adds one prediction (clamped to `[0, 1]`; NaN is ignored).
    pub fn add(&mut self, p: f64, outcome: bool) {
        if p.is_nan() {
            return;
        }
        let p = p.clamp(0.0, 1.0);
        let i = ((p * 10.0) as usize).min(9);
        let bin = &mut self.bins[i];
        bin.0 += 1;
        bin.1 += p;
        bin.2 += f64::from(u8::from(outcome));
    }

    /// The non-empty bins.
    pub fn bins(&self) -> Vec<ReliabilityBin> {
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, &(n, sp, sy))| ReliabilityBin {
                lower: i as f64 / 10.0,
                upper: (i + 1) as f64 / 10.0,
                count: n,
                mean_predicted: sp / n as f64,
                observed_rate: sy / n as f64,
            })
            .collect()
    }

    /// Expected calibration error: the count-weighted mean gap between mean
    /// prediction and observed rate over the bins (0 when empty).
    pub fn expected_calibration_error(&self) -> f64 {
        let total: u64 = self.bins.iter().map(|b| b.0).sum();
        if total == 0 {
            return 0.0;
        }
        self.bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|&(_, sp, sy)| (sp - sy).abs())
            .sum::<f64>()
            / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::kmeans::Rng;

    fn rng(seed: u64) -> Rng {
        Rng::new(seed)
    }

    /// Outcomes drawn with probability `truth(p)` for predictions `p`.
    fn draws(n: usize, truth: impl Fn(f64) -> f64) -> Vec<(f64, bool)> {
        let mut r = rng(11);
        (0..n)
            .map(|_| {
                let p = r.next_f64();
                (p, r.next_f64() < truth(p))
            })
            .collect()
    }

    #[test]
    fn isotonic_fixes_a_model_that_is_twice_too_confident() {
        let train = draws(20_000, |p| p / 2.0);
        let map = Isotonic::fit(&train).unwrap();
        let test = draws(20_000, |p| p / 2.0);
        let raw = brier_score(test.iter().copied()).unwrap();
        let fixed = brier_score(test.iter().map(|&(p, y)| (map.apply(p), y))).unwrap();
        assert!(fixed < raw - 0.02, "raw {raw}, calibrated {fixed}");
        assert!((map.apply(0.8) - 0.4).abs() < 0.05, "{}", map.apply(0.8));

        let mut diagram = Reliability::default();
        test.iter().for_each(|&(p, y)| diagram.add(map.apply(p), y));
        assert!(diagram.expected_calibration_error() < 0.03);
    }

    #[test]
    fn the_map_is_monotone_and_stays_inside_zero_one() {
        let map = Isotonic::fit(&draws(5_000, |p| (p * 3.0).sin().abs())).unwrap();
        let mut last = 0.0;
        for i in 0..=100 {
            let v = map.apply(f64::from(i) / 100.0);
            assert!((0.0..=1.0).contains(&v) && v >= last);
            last = v;
        }
        assert_eq!(map.apply(-5.0), map.apply(0.0));
        assert_eq!(map.apply(5.0), map.apply(1.0));
    }

    #[test]
    fn tied_predictions_share_one_calibrated_value() {
        // Everyone gets 1.0 while a third come true: the map must say 1/3.
        let pairs: Vec<(f64, bool)> = (0..900).map(|i| (1.0, i % 3 == 0)).collect();
        let mut with_low = pairs.clone();
        with_low.extend((0..300).map(|_| (0.1, false)));
        let map = Isotonic::fit(&with_low).unwrap();
        assert!(
            (map.apply(1.0) - 1.0 / 3.0).abs() < 0.01,
            "{}",
            map.apply(1.0)
        );
        assert!(map.apply(0.1) < 0.01);
    }

    #[test]
    fn too_few_or_one_sided_samples_fit_nothing() {
        assert!(Isotonic::fit(&draws(100, |p| p)).is_none());
        assert!(Isotonic::fit(&vec![(0.3, false); 1_000]).is_none());
        let c = Calibration::fit(&[std::array::from_fn(|_| Vec::new())]);
        assert_eq!(c.apply(0, 3, 0.42), 0.42, "no map is the identity");
    }

    #[test]
    fn brier_of_perfect_and_coin_flip_predictions() {
        assert_eq!(brier_score([(1.0, true), (0.0, false)]), Some(0.0));
        assert_eq!(brier_score([(0.5, true), (0.5, false)]), Some(0.25));
        assert_eq!(brier_score(std::iter::empty()), None);
    }

    #[test]
    fn reliability_bins_report_means_and_rates() {
        let mut r = Reliability::default();
        r.add(0.05, false);
        r.add(0.15, true);
        r.add(0.95, true);
        r.add(1.0, false);
        r.add(f64::NAN, true);
        let bins = r.bins();
        assert_eq!(bins.len(), 3);
        assert_eq!((bins[2].count, bins[2].observed_rate), (2, 0.5));
        assert!((r.expected_calibration_error() - (0.05 + 0.85 + 0.95) / 4.0).abs() < 1e-12);
    }
}
