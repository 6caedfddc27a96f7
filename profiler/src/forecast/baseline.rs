//! The two baselines every forecast is scored against.
//!
//! A model earns its cost only by beating these: [`Naive`] repeats the newest
//! bucket (hard to beat at short horizons, since demand is persistent), and
//! [`SeasonalNaive`] repeats the same bucket one day earlier (hard to beat
//! where the daily pattern dominates). They are [`PointModel`]s like the
//! others, so they get intervals, scores and ensemble weights the same way.

use super::{History, PointModel};

/// Forecasts every horizon as the newest observed bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Naive;

impl PointModel for Naive {
    fn name(&self) -> &'static str {
        "naive"
    }

    fn observe(&mut self, _history: &History) {}

    /// The newest value; 0 before the first.
    fn predict(&self, history: &History, _horizon: u32) -> f64 {
        history.last()
    }
}

/// Forecasts a bucket as the value of the same bucket one day earlier.
///
/// For horizons beyond a day, the latest observed bucket at the same time
/// of day is used. Until a full day has been observed (or when that bucket
/// is no longer kept) it falls back to the newest value, like [`Naive`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SeasonalNaive;

impl PointModel for SeasonalNaive {
    fn name(&self) -> &'static str {
        "seasonal_naive"
    }

    fn observe(&mut self, _history: &History) {}

    fn predict(&self, history: &History, horizon: u32) -> f64 {
        let day = u64::from(history.season().day);
        let horizon = u64::from(horizon.max(1));
        // The target is `horizon - 1` buckets after the newest; going back
        // whole days until it is observed gives lag `k * day - (horizon - 1)`.
        let days_back = horizon.div_ceil(day).max(1);
        let lag = days_back * day + 1 - horizon;
        if lag > history.len() || lag > history.capacity() as u64 {
            return history.last();
        }
        history.value(lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Seasonality;

    fn history(values: &[f64]) -> History {
        let mut history = History::new(Seasonality { day: 4, week: 28 }, 64);
        for &v in values {
            history.push(v);
        }
        history
    }

    #[test]
    fn naive_repeats_the_newest_bucket_at_every_horizon() {
        let h = history(&[3.0, 9.0, 4.0]);
        assert_eq!(Naive.predict(&h, 1), 4.0);
        assert_eq!(Naive.predict(&h, 60), 4.0);
    }

    #[test]
    fn seasonal_naive_reads_the_same_bucket_one_day_back() {
        // Day of 4 buckets; indexes 0..8 observed, next is 8.
        let h = history(&[10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 23.0]);
        assert_eq!(SeasonalNaive.predict(&h, 1), 20.0, "index 8 - 4 = 4");
        assert_eq!(SeasonalNaive.predict(&h, 4), 23.0, "index 11 - 4 = 7");
        assert_eq!(SeasonalNaive.predict(&h, 5), 20.0, "index 12 - 8 = 4");
    }

    #[test]
    fn seasonal_naive_falls_back_to_the_newest_value_before_a_full_day() {
        let h = history(&[5.0, 6.0]);
        assert_eq!(SeasonalNaive.predict(&h, 1), 6.0);
    }
}
