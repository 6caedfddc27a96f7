//! From a trace to the evaluation's bucketed series and protocol.
//!
//! Every trace becomes requests per bucket first: per-request logs are
//! counted by timestamp, and count series are summed into wider buckets.
//! Buckets are aligned to multiples of the bucket width since the Unix
//! epoch, so with timestamped traces the forecasters' day starts at UTC
//! midnight; the NASA counts carry no timestamps and start at their first
//! second.
//!
//! The protocol (DESIGN.md) fixes which forecasts are scored: one issued
//! every 15 minutes (the origin) for the single bucket `h` ahead, over the
//! last `N` days, with everything before as warm-up.

use headroom_profiler::forecast::Seasonality;

use super::EvalError;
use crate::trace::{CountSeries, RequestTrace};

/// Horizons reported, in minutes.
pub const HORIZON_MINUTES: [u64; 4] = [1, 5, 15, 60];

/// Minutes between forecast origins.
pub const ORIGIN_EVERY_MINUTES: u64 = 15;

/// Days scored by default (traces of at least twice as long).
pub const DEFAULT_SCORED_DAYS: f64 = 14.0;

/// Requests per bucket, from `first_bucket` (bucket number since the epoch,
/// or since the series start when it has no timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSeries {
    /// Width of a bucket in milliseconds.
    pub bucket_ms: u64,
    /// Start of bucket 0, in milliseconds on the trace's clock.
    pub start_ms: u64,
    /// Requests in each bucket.
    pub counts: Vec<u32>,
}

/// Counts the requests of `trace` per bucket of `bucket_ms` (at least 1).
pub fn bucket_requests(trace: &RequestTrace, bucket_ms: u64) -> BucketSeries {
    let bucket_ms = bucket_ms.max(1);
    let start_ms = trace.start_unix_ms / bucket_ms * bucket_ms;
    let offset = trace.start_unix_ms - start_ms;
    let buckets = (offset + trace.span_ms()) / bucket_ms + 1;
    let mut counts = vec![
        0u32;
        if trace.records.is_empty() {
            0
        } else {
            buckets as usize
        }
    ];
    for record in &trace.records {
        let index = ((offset + record.t_ms) / bucket_ms) as usize;
        counts[index] = counts[index].saturating_add(1);
    }
    BucketSeries {
        bucket_ms,
        start_ms,
        counts,
    }
}

/// Sums a count series into buckets of `bucket_ms`, which must be a whole
/// multiple of the series' step.
///
/// # Errors
/// [`EvalError::BucketNotMultiple`] otherwise.
pub fn rebucket(series: &CountSeries, bucket_ms: u64) -> Result<BucketSeries, EvalError> {
    if bucket_ms == 0 || bucket_ms.checked_rem(series.step_ms) != Some(0) {
        return Err(EvalError::BucketNotMultiple {
            bucket_ms,
            step_ms: series.step_ms,
        });
    }
    let start_ms = series.start_ms / bucket_ms * bucket_ms;
    let offset = series.start_ms - start_ms;
    let mut counts: Vec<u32> = Vec::new();
    for (i, &count) in (0u64..).zip(&series.counts) {
        let index = ((offset + i * series.step_ms) / bucket_ms) as usize;
        if counts.len() <= index {
            counts.resize(index + 1, 0);
        }
        counts[index] = counts[index].saturating_add(count);
    }
    Ok(BucketSeries {
        bucket_ms,
        start_ms,
        counts,
    })
}

/// One tick of [`Protocol::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Issue forecasts at this origin: buckets before it are observed.
    Issue(u64),
    /// Bucket `t` has completed: observe it.
    Observe(u64),
}

/// Which buckets are warm-up and scored, where origins fall and which
/// horizons are reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// Width of a bucket in milliseconds.
    pub bucket_ms: u64,
    /// Seasons of the series in buckets.
    pub season: Seasonality,
    /// Reported horizons in buckets, ascending, each a whole number of
    /// buckets of one of [`HORIZON_MINUTES`].
    pub horizons: Vec<u32>,
    /// Buckets between origins (at least 1).
    pub origin_every: u64,
    /// First scored bucket; everything before it is warm-up.
    pub scored_from: u64,
    /// Buckets in the series.
    pub len: u64,
}

impl Protocol {
    /// The protocol for `len` buckets of `bucket_ms`, scoring the last
    /// `last_days` days (default: 14, or the second half when the series
    /// is shorter than 28 days).
    ///
    /// # Errors
    /// [`EvalError::Forecast`] for an unsupported bucket width,
    /// [`EvalError::NoHorizon`] when no reported horizon is a whole number
    /// of buckets, [`EvalError::NoWarmUp`] when nothing would be left to
    /// learn from or to score.
    pub fn new(len: u64, bucket_ms: u64, last_days: Option<f64>) -> Result<Self, EvalError> {
        let season = Seasonality::for_bucket_ms(bucket_ms)?;
        let horizons: Vec<u32> = HORIZON_MINUTES
            .iter()
            .map(|&m| m * 60_000)
            .filter(|&ms| ms >= bucket_ms && ms % bucket_ms == 0)
            .map(|ms| u32::try_from(ms / bucket_ms).expect("at most 3 600 buckets"))
            .collect();
        if horizons.is_empty() {
            return Err(EvalError::NoHorizon { bucket_ms });
        }
        let day = u64::from(season.day);
        let scored = match last_days {
            Some(days) => (days * day as f64).round() as u64,
            None if len >= (2.0 * DEFAULT_SCORED_DAYS * day as f64) as u64 => {
                (DEFAULT_SCORED_DAYS * day as f64) as u64
            }
            None => len / 2,
        };
        if scored == 0 || scored >= len {
            return Err(EvalError::NoWarmUp {
                buckets: len,
                scored,
            });
        }
        Ok(Self {
            bucket_ms,
            season,
            horizons,
            origin_every: (ORIGIN_EVERY_MINUTES * 60_000 / bucket_ms).max(1),
            scored_from: len - scored,
            len,
        })
    }

    /// Whether bucket `t` is an origin: scored, and on the 15-minute grid
    /// counted from the first scored bucket.
    pub fn is_origin(&self, t: u64) -> bool {
        t >= self.scored_from && (t - self.scored_from).checked_rem(self.origin_every) == Some(0)
    }

    /// The bucket a forecast issued at origin `t` for `horizon` targets
    /// (`t + horizon - 1`: horizon 1 is bucket `t` itself, the first one
    /// not yet observed), if it is inside the series.
    pub fn target(&self, t: u64, horizon: u32) -> Option<u64> {
        let target = t + u64::from(horizon) - 1;
        (target < self.len).then_some(target)
    }

    /// Runs the protocol's clock over the series: before bucket `t` is
    /// observed, `on(Step::Issue(t))` when `t` is an origin; then
    /// `on(Step::Observe(t))`. This ordering is what keeps forecasts from
    /// seeing their own targets.
    pub fn drive(&self, mut on: impl FnMut(Step)) {
        for t in 0..self.len {
            if self.is_origin(t) {
                on(Step::Issue(t));
            }
            on(Step::Observe(t));
        }
    }

    /// Days scored.
    pub fn scored_days(&self) -> f64 {
        (self.len - self.scored_from) as f64 / f64::from(self.season.day)
    }
}
