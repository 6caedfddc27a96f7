//! The spread of a user's count around its forecast, learned across users.
//!
//! Per-user traffic is nothing like Poisson: a page view is a burst of
//! requests, and most users stop after a few. A median or p90 computed from
//! the forecast mean alone (Poisson, or a scaled Poisson) is badly wrong:
//! on the World Cup sample the median of the scaled Poisson was 2 to 5
//! times worse than the naive forecast. What the proxy can afford instead
//! is one shared table: for forecast means on a log-spaced grid, the
//! distribution of the counts that followed, across every user and tick.
//! Its quantiles then give each user's median and p90 in O(1).
//!
//! Each tick, every user with a previous forecast adds one pair (the mean
//! the previous tick forecast for the next tick, the requests that
//! actually came) to the histogram of that mean's bin. Histograms decay by
//! a factor per tick, so the table follows changes in behaviour.
//!
//! Approximations, with numbers: forecast means are grouped in bins of
//! 8 per decade (a factor of 1.33 wide); counts up to 63 are exact, above
//! they are grouped in powers of two and a quantile there reads as the
//! bin's lower edge (up to half the value low). The pairs are one tick
//! ahead, and the same spread is used at every horizon.

/// Bins of forecast means per decade.
const MEAN_BINS_PER_DECADE: f64 = 8.0;
/// Smallest binned mean: `10^-3`; smaller means share the first bin.
const MEAN_MIN_EXP: f64 = -3.0;
/// Mean bins: `10^-3` to `10^4`.
const MEAN_BINS: usize = 7 * 8 + 1;
/// Counts kept exactly: 0 to 63.
const EXACT_COUNTS: usize = 64;
/// Count bins: the exact ones, then `[2^k, 2^(k+1))` for k = 6 to 30.
const COUNT_BINS: usize = EXACT_COUNTS + 25;
/// A mean bin is trusted once its decayed weight reaches this.
const MIN_WEIGHT: f64 = 30.0;

/// Per-bin histograms of counts that followed a forecast mean.
#[derive(Debug, Clone)]
pub struct CountCalibration {
    /// `MEAN_BINS * COUNT_BINS` decayed weights, row per mean bin.
    weights: Vec<f64>,
    totals: Vec<f64>,
    decay: f64,
}

/// The median and p90 per mean bin, read from a [`CountCalibration`] once
/// per tick; `None` where the bin has too little data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountQuantiles {
    bins: Vec<Option<(f32, f32)>>,
}

impl CountQuantiles {
    /// The `(median, p90)` of the count that follows a forecast mean of
    /// `mean`, if that mean's bin is trusted.
    pub fn lookup(&self, mean: f64) -> Option<(f64, f64)> {
        let (median, p90) = (*self.bins.get(mean_bin(mean))?)?;
        Some((f64::from(median), f64::from(p90)))
    }
}

impl CountCalibration {
    /// An empty table whose weights halve every `half_life` ticks (at
    /// least 1).
    pub fn new(half_life: f64) -> Self {
        Self {
            weights: vec![0.0; MEAN_BINS * COUNT_BINS],
            totals: vec![0.0; MEAN_BINS],
            decay: 0.5_f64.powf(1.0 / half_life.max(1.0)),
        }
    }

    /// Ages every histogram by one tick; call once per tick.
    pub fn begin_tick(&mut self) {
        let decay = self.decay;
        self.weights.iter_mut().for_each(|w| *w *= decay);
        self.totals.iter_mut().for_each(|w| *w *= decay);
    }

    /// Adds one pair: `observed` requests came where `expected` were
    /// forecast. Pairs with a non-finite or negative side are skipped.
    pub fn observe(&mut self, expected: f64, observed: f64) {
        if !(expected.is_finite() && expected >= 0.0 && observed.is_finite() && observed >= 0.0) {
            return;
        }
        let row = mean_bin(expected);
        self.weights[row * COUNT_BINS + count_bin(observed)] += 1.0;
        self.totals[row] += 1.0;
    }

    /// The current median and p90 of every trusted bin.
    pub fn quantiles(&self) -> CountQuantiles {
        let bins = (0..MEAN_BINS)
            .map(|row| {
                let total = self.totals[row];
                if total < MIN_WEIGHT {
                    return None;
                }
                let histogram = &self.weights[row * COUNT_BINS..(row + 1) * COUNT_BINS];
                Some((
                    quantile(histogram, total, 0.5) as f32,
                    quantile(histogram, total, 0.9) as f32,
                ))
            })
            .collect();
        CountQuantiles { bins }
    }
}

/// The mean bin of a forecast mean.
fn mean_bin(mean: f64) -> usize {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    let position = ((mean.log10() - MEAN_MIN_EXP) * MEAN_BINS_PER_DECADE).round();
    (position.max(0.0) as usize).min(MEAN_BINS - 1)
}

/// The count bin of an observed count.
fn count_bin(count: f64) -> usize {
    let count = count.round() as u64;
    if count < EXACT_COUNTS as u64 {
        return count as usize;
    }
    // 64..128 is bin 64, 128..256 bin 65, and so on.
    let octave = 63 - count.leading_zeros() as usize;
    (EXACT_COUNTS + octave - 6).min(COUNT_BINS - 1)
}

/// The lower edge of a count bin.
fn bin_floor(bin: usize) -> f64 {
    if bin < EXACT_COUNTS {
        bin as f64
    } else {
        (1u64 << (bin - EXACT_COUNTS + 6)) as f64
    }
}

/// The smallest count bin whose cumulative weight reaches `tau * total`.
fn quantile(histogram: &[f64], total: f64, tau: f64) -> f64 {
    let goal = tau * total;
    let mut cumulative = 0.0;
    for (bin, &weight) in histogram.iter().enumerate() {
        cumulative += weight;
        if cumulative >= goal {
            return bin_floor(bin);
        }
    }
    bin_floor(histogram.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_means_land_in_the_right_bins() {
        assert_eq!(count_bin(0.0), 0);
        assert_eq!(count_bin(63.0), 63);
        assert_eq!(count_bin(64.0), 64);
        assert_eq!(count_bin(200.0), 65);
        assert_eq!(bin_floor(65), 128.0);
        assert_eq!(count_bin(1e30), COUNT_BINS - 1);
        assert_eq!(mean_bin(0.0), 0);
        assert_eq!(mean_bin(f64::NAN), 0);
        assert_eq!(mean_bin(1.0), 24);
        assert_eq!(mean_bin(1e9), MEAN_BINS - 1);
    }

    #[test]
    fn quantiles_follow_what_happened_after_each_mean() {
        let mut calibration = CountCalibration::new(1_000.0);
        // After a mean of 2: nothing seven times in ten, a burst of 12
        // three times in ten (a page view).
        for i in 0..100 {
            calibration.observe(2.0, if i % 10 < 7 { 0.0 } else { 12.0 });
        }
        let quantiles = calibration.quantiles();
        assert_eq!(quantiles.lookup(2.0), Some((0.0, 12.0)));
        assert_eq!(quantiles.lookup(50.0), None, "never observed");
    }

    #[test]
    fn old_pairs_fade_as_ticks_pass() {
        let mut calibration = CountCalibration::new(1.0);
        for _ in 0..100 {
            calibration.observe(5.0, 0.0);
        }
        for _ in 0..10 {
            calibration.begin_tick();
        }
        for _ in 0..40 {
            calibration.observe(5.0, 9.0);
        }
        assert_eq!(calibration.quantiles().lookup(5.0), Some((9.0, 9.0)));
    }
}
