//! Telling an outage from a quiet spell.
//!
//! Real series have holes: the NASA-HTTP log has a day and a half of zeros
//! when the server was down, and minutes-long gaps around it. Fed to the
//! models as demand, an outage teaches them that the following days are
//! empty (through the day and week lags and the season) and wrecks the
//! residual quantiles. A zero bucket is therefore treated as *missing* when
//! two things hold:
//! - the series is one that is normally never empty: fewer than
//!   [`OutageFilter::MAX_ZERO_SHARE`] (1 %) of its recent observed buckets
//!   were zero (a share with a half-life of `memory` buckets, a day in the
//!   forecaster, counting only buckets judged real, after at least
//!   `memory / 24` of them). Sparse series, and series whose traffic comes
//!   in bursts with empty buckets between (a log written once an hour),
//!   never have outages: their zeros are demand;
//! - the zero is implausible: its Poisson probability where the model
//!   expected `expected` requests, `exp(-expected)`, is below
//!   [`OutageFilter::MAX_ZERO_PROBABILITY`] (0.1 %, an expectation above
//!   about 6.9 requests).
//!
//! Once an outage has started, further zeros continue it, whatever the
//! (by then imputed) expectation. A series that really stops must not be
//! imputed forever: after `max_run` consecutive outage buckets (two days in
//! the forecaster) zeros are accepted as real again until a non-zero bucket
//! ends the run.

/// Classifies each bucket as observed or outage; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct OutageFilter {
    /// Consecutive zero buckets so far in the current run.
    run: u64,
    /// Whether the current zero run was classified as an outage.
    in_outage: bool,
    max_run: u64,
    /// Decayed share of zeros among the buckets judged real, and the
    /// decayed count of those buckets.
    zeros: f64,
    weight: f64,
    decay: f64,
    /// Buckets judged real so far, and how many are needed to judge.
    real: u64,
    min_real: u64,
}

impl OutageFilter {
    /// Zero buckets less likely than this under the forecast are outages.
    pub const MAX_ZERO_PROBABILITY: f64 = 1e-3;

    /// Series with a larger recent share of zero buckets have no outages.
    pub const MAX_ZERO_SHARE: f64 = 0.01;

    /// A filter that bridges outages of at most `max_run` buckets and
    /// measures the share of zeros over about `memory` buckets (at least 1).
    pub fn new(max_run: u64, memory: u64) -> Self {
        let memory = memory.max(1);
        Self {
            run: 0,
            in_outage: false,
            max_run,
            zeros: 0.0,
            weight: 0.0,
            decay: 0.5_f64.powf(1.0 / memory as f64),
            real: 0,
            min_real: (memory / 24).max(1),
        }
    }

    /// Whether the bucket with `value` requests, where `expected` were
    /// forecast, is an outage (to be imputed rather than learned from).
    /// Call once per bucket, in order.
    pub fn is_outage(&mut self, value: f64, expected: f64) -> bool {
        if value > 0.0 {
            self.run = 0;
            self.in_outage = false;
            self.note_real(false);
            return false;
        }
        self.run += 1;
        if self.run == 1 {
            let dense =
                self.real >= self.min_real && self.zeros < Self::MAX_ZERO_SHARE * self.weight;
            self.in_outage = dense && (-expected).exp() < Self::MAX_ZERO_PROBABILITY;
        }
        let outage = self.in_outage && self.run <= self.max_run;
        if !outage {
            self.note_real(true);
        }
        outage
    }

    /// Counts a bucket judged real in the zero share.
    fn note_real(&mut self, zero: bool) {
        self.real += 1;
        self.zeros = self.zeros * self.decay + f64::from(u8::from(zero));
        self.weight = self.weight * self.decay + 1.0;
    }

    /// True while the newest bucket belongs to an outage being bridged.
    pub fn active(&self) -> bool {
        self.in_outage && self.run > 0 && self.run <= self.max_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter that has seen `n` busy buckets.
    fn warmed(n: u64) -> OutageFilter {
        let mut filter = OutageFilter::new(100, 240);
        for _ in 0..n {
            assert!(!filter.is_outage(40.0, 38.0));
        }
        filter
    }

    #[test]
    fn a_zero_where_many_requests_were_expected_starts_an_outage() {
        let mut filter = warmed(20);
        assert!(filter.is_outage(0.0, 38.0));
        // The imputed expectation no longer matters once inside.
        assert!(filter.is_outage(0.0, 0.0));
        assert!(filter.active());
        assert!(!filter.is_outage(12.0, 38.0));
        assert!(!filter.active());
    }

    #[test]
    fn nothing_is_an_outage_before_the_series_is_known() {
        let mut filter = warmed(3);
        assert!(!filter.is_outage(0.0, 38.0));
    }

    #[test]
    fn zeros_of_a_quiet_series_are_real() {
        let mut filter = warmed(20);
        for _ in 0..50 {
            assert!(!filter.is_outage(0.0, 0.4));
        }
    }

    #[test]
    fn a_series_that_is_often_empty_has_no_outages() {
        // Bursts once every ten buckets: zeros are most of the series.
        let mut filter = OutageFilter::new(100, 240);
        for i in 0..300 {
            let value = if i % 10 == 0 { 120.0 } else { 0.0 };
            assert!(!filter.is_outage(value, 50.0), "bucket {i}");
        }
    }

    #[test]
    fn a_run_longer_than_the_bridge_is_accepted_as_real() {
        let mut filter = OutageFilter::new(3, 240);
        for _ in 0..20 {
            filter.is_outage(40.0, 38.0);
        }
        let flags: Vec<bool> = (0..5).map(|_| filter.is_outage(0.0, 50.0)).collect();
        assert_eq!(flags, vec![true, true, true, false, false]);
    }
}
