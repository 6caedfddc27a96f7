//! One time base shared by every rate limiter the process ever builds.
//!
//! Governor's `RateLimiter` measures time from the instant it was
//! constructed (its private `start`), and stores a bucket's theoretical
//! arrival time (TAT) as nanoseconds since that start. Two limiters built
//! at different moments therefore read the same stored number as two
//! different absolute times. Headroom keeps a user's TAT in the user's own
//! entry and checks it against whichever tier limiter the current `Policy`
//! holds, and a reload builds new limiters; if each limiter had its own
//! start, a reload would shift every stored TAT by the time between the two
//! constructions (a refill or a spurious penalty, depending on the sign).
//!
//! The fix is to give every limiter the same start: the process epoch held
//! by [`LimiterClock`]. Each limiter gets a [`TierClock`] that reads zero
//! ("the epoch") while the limiter is being built, so governor records the
//! epoch as its start, and reads real time since the epoch afterwards. Every
//! TAT is then nanoseconds since the one epoch, whichever limiter wrote it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::nanos::Nanos;

/// The process-wide time base for rate limiting: an inner governor clock
/// plus the instant (the epoch) from which all bucket times are measured.
///
/// Clones share the epoch (and, for governor's `FakeRelativeClock`, the
/// fake time), so every clone reads the same timeline. All policies whose
/// limiters check the same [`crate::UserBucket`]s must be compiled with
/// clones of one `LimiterClock`; [`crate::Policy::compile`] uses
/// [`LimiterClock::process`] for exactly that reason.
#[derive(Debug, Clone)]
pub struct LimiterClock<C: Clock = DefaultClock> {
    inner: C,
    epoch: C::Instant,
}

impl<C: Clock + Clone> LimiterClock<C> {
    /// Creates a time base whose epoch is `inner`'s current reading.
    ///
    /// Buckets checked by limiters on different `LimiterClock`s are not
    /// comparable: keep one per process (tests make their own with
    /// governor's `FakeRelativeClock`).
    pub fn new(inner: C) -> Self {
        let epoch = inner.now();
        Self { inner, epoch }
    }

    /// Time elapsed since the epoch. A clock reading earlier than the epoch
    /// (a clock that went backwards) saturates to zero.
    pub fn now(&self) -> Nanos {
        self.inner.now().duration_since(self.epoch)
    }

    /// The inner clock, e.g. to advance a `FakeRelativeClock` in tests.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// A clock for one new limiter, pinned at the epoch until
    /// [`TierClock::unpin`] is called.
    pub(crate) fn pinned(&self) -> TierClock<C> {
        TierClock {
            base: self.clone(),
            pinned: AtomicBool::new(true),
        }
    }
}

impl LimiterClock<DefaultClock> {
    /// The process-wide time base on governor's default (quanta) clock,
    /// created on first use and shared by every policy compiled with
    /// [`crate::Policy::compile`].
    pub fn process() -> &'static Self {
        static PROCESS: OnceLock<LimiterClock<DefaultClock>> = OnceLock::new();
        PROCESS.get_or_init(|| LimiterClock::new(DefaultClock::default()))
    }
}

/// The clock inside one tier limiter: time since the shared epoch, or
/// exactly zero while pinned (during the limiter's construction).
///
/// The pin flag is read with a relaxed load on every check. It is written
/// once, before the limiter is published; publication of the `Policy`
/// (an `Arc` swap or a thread spawn) orders that write before any read from
/// another thread.
#[derive(Debug)]
pub(crate) struct TierClock<C: Clock> {
    base: LimiterClock<C>,
    pinned: AtomicBool,
}

impl<C: Clock + Clone> TierClock<C> {
    /// Releases the pin: from now on the clock reads real time since the
    /// epoch.
    pub(crate) fn unpin(&self) {
        self.pinned.store(false, Ordering::Relaxed);
    }
}

impl<C: Clock + Clone> Clock for TierClock<C> {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        if self.pinned.load(Ordering::Relaxed) {
            Nanos::default()
        } else {
            self.base.now()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn clones_share_the_epoch_and_the_fake_time() {
        let fake = FakeRelativeClock::default();
        fake.advance(Duration::from_secs(7));
        let clock = LimiterClock::new(fake.clone());
        let copy = clock.clone();
        fake.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), Nanos::new(1_500_000_000));
        assert_eq!(copy.now(), clock.now());
    }

    #[test]
    fn pinned_tier_clock_reads_the_epoch_until_unpinned() {
        let fake = FakeRelativeClock::default();
        let clock = LimiterClock::new(fake.clone());
        fake.advance(Duration::from_secs(3));
        let tier_clock = clock.pinned();
        assert_eq!(tier_clock.now(), Nanos::new(0));
        tier_clock.unpin();
        assert_eq!(tier_clock.now(), Nanos::new(3_000_000_000));
    }

    #[test]
    fn process_clock_is_one_shared_instance() {
        let a = LimiterClock::process();
        let b = LimiterClock::process();
        assert!(std::ptr::eq(a, b));
        let first = a.now();
        assert!(b.now() >= first);
    }
}
