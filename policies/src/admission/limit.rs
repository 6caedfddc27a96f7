//! An adaptive concurrency limit from latency (gradient style).
//!
//! Two exponentially weighted latency estimates are kept: a fast one (the
//! latency now) and a slow baseline that follows decreases quickly and
//! increases slowly (the latency of an unloaded backend). Every update period
//! the limit moves toward `limit * gradient + sqrt(limit)`, where
//! `gradient = clamp(tolerance * baseline / now, 0.5, 1)`: with latency near
//! the baseline the `sqrt` term grows the limit, and once latency exceeds
//! `tolerance` times the baseline the limit shrinks in proportion, at most
//! halving per period. Growth is only allowed while the limit is actually
//! being used (in flight at least half of it), so an idle proxy does not
//! talk itself into a huge limit it never tested.
//!
//! State is a handful of atomics; samples race benignly (a lost EWMA update
//! shifts an estimate by at most one sample's weight), and one caller per
//! period wins the CAS that recomputes the limit.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Limit settings, validated by the config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitSettings {
    /// The limit never goes below this; >= 1.
    pub min: u32,
    /// The limit never goes above this (the configured maximum); >= min.
    pub max: u32,
    /// Starting limit, clamped into [min, max].
    pub initial: u32,
    /// Adapt from latency (true) or hold `max` fixed (false).
    pub adaptive: bool,
    /// How many times the baseline latency is tolerated before shrinking;
    /// > 1, typically 1.5-2.
    pub tolerance: f64,
}

/// How often the limit is recomputed, in milliseconds of the caller's clock.
const UPDATE_PERIOD_MS: u64 = 100;
/// Weight of one sample in the fast estimate.
const FAST_WEIGHT: f64 = 0.1;
/// Weight of one sample in the baseline when latency rises: a time constant
/// of 5,000 samples, so a saturated backend's queueing shows as a gradient
/// for seconds, while a backend that really got slower is followed within
/// a minute at a few hundred requests per second.
const SLOW_RISE_WEIGHT: f64 = 0.0002;
/// Weight of one sample in the baseline when latency falls.
const SLOW_FALL_WEIGHT: f64 = 0.2;
/// Share of the computed target taken per period.
const SMOOTHING: f64 = 0.3;

/// An adaptive (or fixed) concurrency limit.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    settings: LimitSettings,
    limit: AtomicU32,
    fast_us: AtomicU64,
    baseline_us: AtomicU64,
    last_update_ms: AtomicU64,
}

impl ConcurrencyLimit {
    /// A limit starting at `settings.initial` (or `max` when not adaptive).
    pub fn new(settings: LimitSettings) -> Self {
        let max = settings.max.max(settings.min).max(1);
        let start = if settings.adaptive {
            settings.initial.clamp(settings.min.max(1), max)
        } else {
            max
        };
        Self {
            settings: LimitSettings { max, ..settings },
            limit: AtomicU32::new(start),
            fast_us: AtomicU64::new(0),
            baseline_us: AtomicU64::new(0),
            last_update_ms: AtomicU64::new(0),
        }
    }

    /// The current limit.
    pub fn current(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// The settings in force.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Feeds one completed request's backend latency, with the number in
    /// flight when it completed, at `now_ms`. A zero latency is ignored.
    pub fn on_sample(&self, latency_us: u64, in_flight: u32, now_ms: u64) {
        if !self.settings.adaptive || latency_us == 0 {
            return;
        }
        let sample = latency_us as f64;
        update_f64(&self.fast_us, |old| ewma(old, sample, FAST_WEIGHT));
        update_f64(&self.baseline_us, |old| {
            let weight = if sample < old {
                SLOW_FALL_WEIGHT
            } else {
                SLOW_RISE_WEIGHT
            };
            ewma(old, sample, weight)
        });

        // One caller per period recomputes; a clock that went backwards
        // simply waits until it passes the last update again.
        let last = self.last_update_ms.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(UPDATE_PERIOD_MS)
            || self
                .last_update_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.recompute(in_flight);
    }

    fn recompute(&self, in_flight: u32) {
        let fast = f64::from_bits(self.fast_us.load(Ordering::Relaxed));
        let baseline = f64::from_bits(self.baseline_us.load(Ordering::Relaxed));
        if !(fast > 0.0 && baseline > 0.0) {
            return;
        }
        let limit = f64::from(self.current());
        let gradient = (self.settings.tolerance * baseline / fast).clamp(0.5, 1.0);
        let mut target = limit * gradient + limit.sqrt();
        if f64::from(in_flight) < limit / 2.0 {
            // Not using what we have: no evidence that more would be safe.
            target = target.min(limit);
        }
        let next = limit * (1.0 - SMOOTHING) + target * SMOOTHING;
        let next = (next.round() as u32).clamp(self.settings.min.max(1), self.settings.max);
        self.limit.store(next, Ordering::Relaxed);
    }
}

/// An EWMA step; the first sample (old == 0) is taken as is.
fn ewma(old: f64, sample: f64, weight: f64) -> f64 {
    if old == 0.0 {
        sample
    } else {
        old + weight * (sample - old)
    }
}

/// CAS loop over an f64 stored as bits.
fn update_f64(cell: &AtomicU64, f: impl Fn(f64) -> f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some(f(f64::from_bits(bits)).to_bits())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            min: 2,
            max: 200,
            initial: 20,
            adaptive: true,
            tolerance: 2.0,
        }
    }

    /// Drives the limit for `periods` update periods with `latency_us`, the
    /// caller keeping the limit fully used.
    fn drive(limit: &ConcurrencyLimit, start_ms: u64, periods: u64, latency_us: u64) -> u64 {
        let mut now = start_ms;
        for _ in 0..periods {
            for _ in 0..20 {
                limit.on_sample(latency_us, limit.current(), now);
            }
            now += UPDATE_PERIOD_MS;
        }
        now
    }

    #[test]
    fn steady_latency_grows_the_limit_up_to_max() {
        let limit = ConcurrencyLimit::new(settings());
        drive(&limit, 1_000, 300, 5_000);
        assert_eq!(limit.current(), 200);
    }

    #[test]
    fn rising_latency_shrinks_the_limit() {
        let limit = ConcurrencyLimit::new(settings());
        let now = drive(&limit, 1_000, 50, 5_000);
        let grown = limit.current();
        drive(&limit, now, 50, 50_000);
        assert!(
            limit.current() < grown / 2,
            "{} vs {grown}",
            limit.current()
        );
        assert!(limit.current() >= 2);
    }

    #[test]
    fn unused_limit_does_not_grow() {
        let limit = ConcurrencyLimit::new(settings());
        let mut now = 1_000;
        for _ in 0..100 {
            limit.on_sample(5_000, 1, now);
            now += UPDATE_PERIOD_MS;
        }
        assert!(limit.current() <= 20);
    }

    #[test]
    fn fixed_limit_ignores_latency() {
        let limit = ConcurrencyLimit::new(LimitSettings {
            adaptive: false,
            max: 64,
            ..settings()
        });
        drive(&limit, 1_000, 50, 1_000_000);
        assert_eq!(limit.current(), 64);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let limit = ConcurrencyLimit::new(settings());
        drive(&limit, 10_000, 10, 5_000);
        let before = limit.current();
        drive(&limit, 0, 10, 5_000);
        assert!(limit.current() >= 2 && limit.current() <= 200 && before >= 2);
    }
}
