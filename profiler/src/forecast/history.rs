//! The recent series, kept once and read by every model.
//!
//! Seasonal models need the value one day and one week back and the mean
//! over the last 5, 15 or 60 buckets at every step. Keeping each model's own
//! copy would multiply the largest piece of state (a week of buckets), and
//! summing windows afresh would cost O(window) per read. [`History`] keeps a
//! ring of *cumulative* sums instead: any value or window sum inside the
//! kept span is one subtraction.
//!
//! Precision: values are `f64`; window sums are differences of running
//! totals, which lose about `total * 2^-52` each. The totals are rebased to
//! the oldest kept one whenever they pass 2^40 (about 1.1e12 requests), so
//! the error stays below 2.5e-4 of a request per read.

use super::Seasonality;

/// Running totals above which the ring is rebased.
const REBASE_ABOVE: f64 = (1u64 << 40) as f64;

/// The last `capacity` values of a series and its season lengths.
#[derive(Debug, Clone)]
pub struct History {
    /// `cum[i % slots]` is the sum of the values of indexes `0..i`, for
    /// `i` from `len - kept` to `len` (`slots = capacity + 1`).
    cum: Vec<f64>,
    /// Values observed so far; the next value gets this index.
    len: u64,
    /// How many of the newest values were imputed rather than observed.
    imputed_run: u64,
    season: Seasonality,
}

impl History {
    /// An empty history keeping `capacity` values (at least 1).
    pub fn new(season: Seasonality, capacity: usize) -> Self {
        Self {
            cum: vec![0.0; capacity.max(1) + 1],
            len: 0,
            imputed_run: 0,
            season,
        }
    }

    /// The season lengths the models read.
    pub fn season(&self) -> Seasonality {
        self.season
    }

    /// Values observed so far (the index the next one will get).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the first observation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most values that can be read back.
    pub fn capacity(&self) -> usize {
        self.cum.len() - 1
    }

    /// The oldest index still readable.
    pub fn oldest(&self) -> u64 {
        self.len.saturating_sub(self.capacity() as u64)
    }

    /// Consecutive newest values that were imputed (0 when the newest was
    /// observed). Models skip training on imputed targets.
    pub fn imputed_run(&self) -> u64 {
        self.imputed_run
    }

    /// Appends the next observed value. Non-finite and negative values are
    /// stored as 0.
    pub fn push(&mut self, value: f64) {
        self.imputed_run = 0;
        self.append(value);
    }

    /// Appends a value standing in for one that was not really observed
    /// (an outage), so that lags stay aligned in time.
    pub fn push_imputed(&mut self, value: f64) {
        self.imputed_run += 1;
        self.append(value);
    }

    /// Stores the next value and its running total.
    fn append(&mut self, value: f64) {
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let next = self.cum_at(self.len) + value;
        self.len += 1;
        let slot = self.slot(self.len);
        self.cum[slot] = next;
        if next > REBASE_ABOVE {
            self.rebase();
        }
    }

    /// The newest value, 0 before the first.
    pub fn last(&self) -> f64 {
        self.value(1)
    }

    /// The value `lag` buckets back (1 = newest). 0 when `lag` is 0, before
    /// the first value or beyond the kept span.
    pub fn value(&self, lag: u64) -> f64 {
        if lag == 0 || lag > self.len || lag > self.capacity() as u64 {
            return 0.0;
        }
        let i = self.len - lag;
        self.cum_at(i + 1) - self.cum_at(i)
    }

    /// Sum of the values of indexes `start..end`, clipped to the kept span,
    /// and how many values that was.
    pub fn sum(&self, start: u64, end: u64) -> (f64, u64) {
        let start = start.max(self.oldest());
        let end = end.min(self.len);
        if start >= end {
            return (0.0, 0);
        }
        (self.cum_at(end) - self.cum_at(start), end - start)
    }

    /// Mean of the values of indexes `start..end` clipped to the kept span;
    /// `None` when nothing of it is kept.
    pub fn mean(&self, start: u64, end: u64) -> Option<f64> {
        let (sum, n) = self.sum(start, end);
        (n > 0).then(|| sum / n as f64)
    }

    /// Mean of the newest `n` values (fewer when fewer are kept); 0 when
    /// empty.
    pub fn mean_last(&self, n: u64) -> f64 {
        self.mean(self.len.saturating_sub(n), self.len)
            .unwrap_or(0.0)
    }

    /// Mean of the `2 * half_width + 1` values centred `lag` buckets before
    /// `target` (an index, possibly in the future), clipped to what is kept
    /// and observed; `None` when none of it is. This is "the same time
    /// yesterday" for `lag = day`, smoothed over neighbouring buckets.
    pub fn mean_around(&self, target: u64, lag: u64, half_width: u64) -> Option<f64> {
        let centre = target.checked_sub(lag)?;
        self.mean(centre.saturating_sub(half_width), centre + half_width + 1)
    }

    /// Position of index `i` in the ring.
    fn slot(&self, i: u64) -> usize {
        (i % self.cum.len() as u64) as usize
    }

    /// The running total before index `i` (valid inside the kept span).
    fn cum_at(&self, i: u64) -> f64 {
        self.cum[self.slot(i)]
    }

    /// Subtracts the oldest kept total from every kept total.
    fn rebase(&mut self) {
        let base = self.cum_at(self.oldest());
        for total in &mut self.cum {
            *total -= base;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn season() -> Seasonality {
        Seasonality { day: 4, week: 28 }
    }

    #[test]
    fn values_and_window_sums_read_back_inside_the_kept_span() {
        let mut history = History::new(season(), 5);
        for v in 1..=8 {
            history.push(f64::from(v));
        }
        assert_eq!(history.len(), 8);
        assert_eq!(history.last(), 8.0);
        assert_eq!(history.value(5), 4.0);
        assert_eq!(history.value(6), 0.0, "beyond the kept span");
        assert_eq!(history.sum(0, 8), (4.0 + 5.0 + 6.0 + 7.0 + 8.0, 5));
        assert_eq!(history.mean_last(2), 7.5);
        assert_eq!(history.mean(7, 20), Some(8.0));
        assert_eq!(history.mean(8, 9), None, "nothing observed yet");
    }

    #[test]
    fn mean_around_a_future_target_reads_the_same_time_a_season_back() {
        let mut history = History::new(season(), 16);
        for v in [1.0, 10.0, 2.0, 3.0, 5.0, 20.0, 7.0, 9.0] {
            history.push(v);
        }
        // Target index 9 is one bucket ahead; a day (4) back is index 5.
        assert_eq!(history.mean_around(9, 4, 0), Some(20.0));
        assert_eq!(history.mean_around(9, 4, 1), Some((5.0 + 20.0 + 7.0) / 3.0));
        assert_eq!(history.mean_around(3, 4, 0), None);
    }

    #[test]
    fn negative_and_nan_values_are_stored_as_zero() {
        let mut history = History::new(season(), 4);
        history.push(-3.0);
        history.push(f64::NAN);
        history.push(2.0);
        assert_eq!(history.sum(0, 3), (2.0, 3));
    }

    #[test]
    fn huge_totals_are_rebased_without_changing_what_reads_back() {
        let mut history = History::new(season(), 3);
        let big = REBASE_ABOVE / 2.0;
        for _ in 0..10 {
            history.push(big);
        }
        history.push(1.0);
        assert_eq!(history.last(), 1.0);
        assert_eq!(history.value(2), big);
        assert!(history.cum.iter().all(|&c| c <= 4.0 * big));
    }
}
