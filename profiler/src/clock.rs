//! Injected time for everything the profiler records.
//!
//! Windows, sessions and idle eviction all take "now" as an argument instead
//! of reading a clock themselves. The proxy passes [`SystemClock`] readings;
//! tests, `headroom eval` and trace replays pass [`ManualClock`] readings or
//! timestamps from a log, so the same code runs deterministically on
//! simulated time. This is the only module allowed to read the system clock.
//!
//! Times are milliseconds as `u64`. The epoch is arbitrary as far as the
//! profiler is concerned (it only subtracts and divides times); the system
//! clock uses the Unix epoch so that times in snapshots are readable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of "now" in milliseconds.
///
/// Readings should not decrease. If they do (a manual clock set back, an
/// out-of-order log line), nothing panics and no window is corrupted: each
/// window documents what it does with a time earlier than one it has already
/// seen (in short, the late arrival is counted in its own bucket while that
/// bucket is still in the window, and dropped otherwise).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the clock's epoch.
    fn now_ms(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// The process's real clock: Unix time in milliseconds, made monotonic.
///
/// The first reading in the process pins the Unix time and a monotonic
/// [`Instant`]; every later reading is that Unix time plus the monotonic time
/// elapsed since. Readings therefore never go backwards, even when NTP steps
/// the wall clock, at the price of drifting from wall time by however much
/// the wall clock is stepped while the process runs. All `SystemClock`
/// values share the same origin, so it is a zero-sized handle.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The origin shared by every `SystemClock`: (monotonic instant, Unix ms).
static ORIGIN: OnceLock<(Instant, u64)> = OnceLock::new();

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let (instant, unix_ms) = ORIGIN.get_or_init(|| {
            // A wall clock before 1970 only happens on a badly broken host;
            // starting at 0 keeps readings monotonic, which is what matters.
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            (Instant::now(), unix_ms)
        });
        let elapsed_ms = u64::try_from(instant.elapsed().as_millis()).unwrap_or(u64::MAX);
        unix_ms.saturating_add(elapsed_ms)
    }
}

/// A clock that only moves when told to, for tests and simulated time.
///
/// It is shared between threads (wrap it in an [`Arc`]); every operation is a
/// single atomic step, so a reader sees either the old or the new time. It may
/// be set backwards on purpose to exercise that edge.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(start_ms),
        }
    }

    /// Sets the reading to `ms`, which may be earlier than the current one.
    pub fn set_ms(&self, ms: u64) {
        // Relaxed: the clock publishes only its own value; callers that need
        // ordering with other memory get it from their own synchronisation.
        self.now_ms.store(ms, Ordering::Relaxed);
    }

    /// Moves the reading forward by `delta_ms`, saturating at `u64::MAX`.
    /// Returns the new reading.
    pub fn advance(&self, delta_ms: u64) -> u64 {
        let previous = self
            .now_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ms| {
                Some(ms.saturating_add(delta_ms))
            })
            .unwrap_or_else(|ms| ms);
        previous.saturating_add(delta_ms)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        assert_eq!(clock.advance(250), 1_250);
        assert_eq!(clock.now_ms(), 1_250);
        clock.set_ms(10);
        assert_eq!(clock.now_ms(), 10, "setting backwards is allowed");
    }

    #[test]
    fn manual_clock_advance_saturates_instead_of_wrapping() {
        let clock = ManualClock::new(u64::MAX - 1);
        assert_eq!(clock.advance(10), u64::MAX);
        assert_eq!(clock.now_ms(), u64::MAX);
    }

    #[test]
    fn shared_manual_clock_is_a_clock() {
        let clock = Arc::new(ManualClock::new(5));
        let as_dyn: Arc<dyn Clock> = clock.clone();
        clock.advance(5);
        assert_eq!(as_dyn.now_ms(), 10);
    }

    #[test]
    fn system_clock_is_unix_time_and_never_goes_backwards() {
        let clock = SystemClock;
        let first = clock.now_ms();
        // 2020-01-01 in Unix ms: any sane host is past it.
        assert!(first > 1_577_836_800_000, "reading {first} is not Unix ms");
        let mut previous = first;
        for _ in 0..1_000 {
            let now = clock.now_ms();
            assert!(now >= previous);
            previous = now;
        }
    }
}
