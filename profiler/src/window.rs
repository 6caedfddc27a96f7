//! A lock-free sliding window of one counter: a user's requests per bucket.
//!
//! This is the series the forecaster reads and the basis of the smoothed rate
//! the proxy advertises on every response, so it is recorded on every request
//! by many threads at once and must be cheap, exact and small (one is kept per
//! tracked user).
//!
//! The window is a ring of `N` buckets of `bucket_ms` each. Time is cut into
//! periods (`period = now_ms / bucket_ms`), and period `p` lives in slot
//! `p % N`. Each slot is a single `AtomicU64` packing the period it holds (its
//! tag, the low 32 bits of the period) and that period's count (32 bits).
//! Because tag and count share one word, moving a slot to a new period and
//! counting into it is one compare-and-swap: no increment can race a reset,
//! so the window is exact, unlike designs that keep the tag and the counter
//! in separate words (see [`crate::MultiWindow`] for that trade-off). It also
//! halves the memory: 8 bytes per bucket.
//!
//! Accuracy, with numbers:
//! - Every add is counted in its own period's bucket, except an add for a
//!   period whose slot already holds a later period. Such an add is at least
//!   one full window (`N` periods) older than the newest add, so it lies
//!   outside the window of any reader at the current time; it is dropped and
//!   [`Window::add`] returns `false`.
//! - A bucket's count saturates at `u32::MAX` (4 294 967 295): 4.3 million
//!   requests per second for one user with 1 s buckets.
//! - Tags are periods modulo 2^32, compared with wrapping arithmetic. A slot
//!   left untouched for 2^31 periods or more (24.8 days with 1 ms buckets,
//!   68 years with 1 s buckets) may be mistaken for a newer one. Idle users
//!   are evicted long before that.
//! - A reader sums the slots one by one, so a sum taken while others add is
//!   not a snapshot of one instant; it counts each add either fully or not at
//!   all.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a window shape is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// A bucket must span at least one millisecond.
    #[error("bucket width must be at least 1 ms, got 0")]
    ZeroBucketWidth,
    /// The bucket count is outside `1..=WindowShape::MAX_BUCKETS`.
    #[error("bucket count must be between 1 and {max}, got {buckets}")]
    BucketCount {
        /// The count asked for.
        buckets: u32,
        /// The largest count allowed.
        max: u32,
    },
}

/// The geometry of a window: `buckets` buckets of `bucket_ms` each.
///
/// Validated on construction, so windows built from it cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    bucket_ms: u64,
    buckets: u32,
}

impl WindowShape {
    /// The most buckets a window may have (the config's limit too).
    pub const MAX_BUCKETS: u32 = 10_000;

    /// A shape of `buckets` buckets (1 to [`Self::MAX_BUCKETS`]) of
    /// `bucket_ms` milliseconds (at least 1).
    ///
    /// # Errors
    /// [`WindowError::ZeroBucketWidth`] for `bucket_ms == 0`,
    /// [`WindowError::BucketCount`] for a count outside the range.
    pub fn new(bucket_ms: u64, buckets: u32) -> Result<Self, WindowError> {
        if bucket_ms == 0 {
            return Err(WindowError::ZeroBucketWidth);
        }
        if buckets == 0 || buckets > Self::MAX_BUCKETS {
            return Err(WindowError::BucketCount {
                buckets,
                max: Self::MAX_BUCKETS,
            });
        }
        Ok(Self { bucket_ms, buckets })
    }

    /// Width of one bucket in milliseconds (at least 1).
    pub fn bucket_ms(self) -> u64 {
        self.bucket_ms
    }

    /// Number of buckets (at least 1).
    pub fn buckets(self) -> u32 {
        self.buckets
    }

    /// Length of the whole window in milliseconds, `bucket_ms * buckets`,
    /// saturating at `u64::MAX`.
    pub fn span_ms(self) -> u64 {
        self.bucket_ms.saturating_mul(u64::from(self.buckets))
    }

    /// The period (bucket number since time 0) that `now_ms` falls in.
    pub fn period(self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms
    }

    /// Milliseconds of history a reading at `now_ms` covers: from the start
    /// of the oldest bucket still in the window to `now_ms` inclusive.
    ///
    /// It is `(buckets - 1) * bucket_ms` plus the elapsed part of the current
    /// bucket plus one, or `now_ms + 1` while fewer than `buckets` periods
    /// have passed since time 0. Never zero, so it is safe to divide by.
    pub fn covered_ms(self, now_ms: u64) -> u64 {
        let oldest = self
            .period(now_ms)
            .saturating_sub(u64::from(self.buckets) - 1);
        let start_ms = oldest.saturating_mul(self.bucket_ms);
        (now_ms - start_ms).saturating_add(1)
    }

    /// The slot of the ring that holds `period`.
    pub(crate) fn slot(self, period: u64) -> usize {
        // The remainder is below `buckets`, a u32, so it fits any usize.
        (period % u64::from(self.buckets)) as usize
    }
}

/// Bits of a slot word holding the period tag (the high half).
const TAG_SHIFT: u32 = 32;

/// Packs a period tag and a count into one slot word.
fn pack(tag: u32, count: u32) -> u64 {
    (u64::from(tag) << TAG_SHIFT) | u64::from(count)
}

/// Splits a slot word into (tag, count).
fn unpack(word: u64) -> (u32, u32) {
    // Truncations are the point: each half is exactly 32 bits.
    ((word >> TAG_SHIFT) as u32, word as u32)
}

/// True when `slot_tag` is a later period than `tag`, in wrapping order.
fn is_later(slot_tag: u32, tag: u32) -> bool {
    let ahead = slot_tag.wrapping_sub(tag);
    ahead != 0 && ahead < 1 << 31
}

/// A lock-free sliding window of one counter; see the module docs.
///
/// Memory: `8 * buckets` bytes on the heap plus 32 bytes inline.
#[derive(Debug)]
pub struct Window {
    shape: WindowShape,
    /// One packed (tag, count) word per bucket. A count of zero means the
    /// slot holds nothing, whatever its tag (adds of zero are not recorded).
    slots: Box<[AtomicU64]>,
}

impl Window {
    /// An empty window of the given shape.
    pub fn new(shape: WindowShape) -> Self {
        let slots = (0..shape.buckets()).map(|_| AtomicU64::new(0)).collect();
        Self { shape, slots }
    }

    /// The window's geometry.
    pub fn shape(&self) -> WindowShape {
        self.shape
    }

    /// Heap bytes a window of `shape` allocates: 8 per bucket.
    pub fn heap_bytes_for(shape: WindowShape) -> usize {
        shape.buckets() as usize * std::mem::size_of::<AtomicU64>()
    }

    /// Counts `n` events at `now_ms` (at most `u32::MAX` per bucket; larger
    /// `n` saturate).
    ///
    /// Returns `false` when the add was dropped because its slot already
    /// holds a later period, which happens only for a time at least one full
    /// window older than a time already recorded (a clock that went
    /// backwards by that much, or a thread that stalled that long). Adding
    /// zero records nothing and returns `true`.
    pub fn add(&self, now_ms: u64, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        let period = self.shape.period(now_ms);
        // Tags are periods modulo 2^32; see the module docs on wrapping.
        let tag = period as u32;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let slot = &self.slots[self.shape.slot(period)];

        // Read the slot, decide its next value, and publish it with one CAS;
        // if another thread changed the slot in between, decide again from
        // what it wrote. Relaxed is enough everywhere: the word is the whole
        // state (no other memory is published through it), and all CASes on
        // one word are totally ordered, so no update can be lost.
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (slot_tag, count) = unpack(current);
            let next = if slot_tag == tag && count != 0 {
                // Same period: count into it.
                pack(tag, count.saturating_add(n))
            } else if count != 0 && is_later(slot_tag, tag) {
                // The slot already moved past our period: we are too old.
                return false;
            } else {
                // Empty, or an older period: replace it with ours.
                pack(tag, n)
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => {
                    #[cfg(test)]
                    crate::stress::note_collision();
                    current = actual;
                }
            }
        }
    }

    /// Total count over the window ending at `now_ms`: the buckets of the
    /// last `buckets` periods, the current one included.
    ///
    /// Buckets of older periods are ignored, and so are buckets of periods
    /// after `now_ms` (left by a clock that has since gone backwards).
    pub fn sum(&self, now_ms: u64) -> u64 {
        let tag = self.shape.period(now_ms) as u32;
        let buckets = self.shape.buckets();
        self.slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Relaxed)))
            .filter(|&(slot_tag, count)| count != 0 && tag.wrapping_sub(slot_tag) < buckets)
            .map(|(_, count)| u64::from(count))
            .sum()
    }

    /// Events per second over the window ending at `now_ms`: [`Self::sum`]
    /// divided by [`WindowShape::covered_ms`]. Zero for an empty window;
    /// never NaN or infinite.
    pub fn rate_per_sec(&self, now_ms: u64) -> f64 {
        self.sum(now_ms) as f64 * 1_000.0 / self.shape.covered_ms(now_ms) as f64
    }

    /// The count of one period, or 0 when its slot holds another period.
    pub fn count_in(&self, period: u64) -> u64 {
        let slot = &self.slots[self.shape.slot(period)];
        let (slot_tag, count) = unpack(slot.load(Ordering::Relaxed));
        if slot_tag == period as u32 {
            u64::from(count)
        } else {
            0
        }
    }

    /// The per-bucket counts of the window ending at `now_ms`, oldest first:
    /// always `buckets` values, the last being the current (partial) bucket.
    /// Periods before time 0 and periods with no events read as 0.
    pub fn buckets(&self, now_ms: u64) -> impl Iterator<Item = u64> + '_ {
        let newest = self.shape.period(now_ms);
        (0..u64::from(self.shape.buckets()))
            .rev()
            .map(move |age| newest.checked_sub(age).map_or(0, |p| self.count_in(p)))
    }
}

#[cfg(test)]
mod tests;
