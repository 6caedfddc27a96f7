//! A lock-free sliding window of one counter: a user's requests per bucket.
//!
//! This is the series the forecaster reads and the basis of the smoothed rate
//! the proxy advertises on every response, so it is recorded on every request
//! by many threads at once and must be cheap, exact and small (one is kept per
//! tracked user).
//!
//! The window is a ring of `N` buckets of `bucket_ms` each. Time is cut into
//! periods (`period = now_ms / bucket_ms`), and period `p` lives in slot
//! `p % N`. Each slot is a single `AtomicU32` packing a short tag of the
//! period it holds (its low `T` bits) and that period's count (the other
//! `32 - T` bits). Because tag and count share one word, moving a slot to a
//! new period and counting into it is one compare-and-swap: no increment can
//! race a reset, so the window is exact, unlike designs that keep the tag and
//! the counter in separate words (see [`crate::MultiWindow`] for that
//! trade-off). At 4 bytes per bucket a default window (60 buckets) costs 240
//! bytes per user.
//!
//! A short tag is enough because the window also keeps the newest period it
//! has counted (`newest`, full width), and whoever moves `newest` forward
//! empties the slots of the periods it skipped. So every non-empty slot holds
//! a period in `newest - N + 1 ..= newest`, and `T` is chosen so that
//! `2^T >= 4 N` (and at least 2^12): within that range, and for any reader
//! within `N` periods of it, the short tags name periods without ambiguity. Readers further than
//! `N` periods from `newest` see an empty window without looking at slots.
//!
//! Accuracy, with numbers:
//! - Every add is counted in its own period's bucket, except an add for a
//!   period at least one full window (`N` periods) older than the newest add,
//!   which lies outside the window of any reader at the current time; it is
//!   dropped and [`Window::add`] returns `false`.
//! - A bucket's count saturates at `2^(32 - T) - 1`: 1 048 575 for windows
//!   of up to 1 024 buckets (`T = 12`; a million requests per second for one
//!   user with 1 s buckets), 65 535 at the largest window of 10 000 buckets
//!   (`T = 16`). [`WindowShape::max_count`] gives the figure for a shape.
//! - A reader sums the slots one by one, so a sum taken while others add is
//!   not a snapshot of one instant; it counts each add either fully or not at
//!   all. For the few hundred nanoseconds in which a user's first add after
//!   an idle spell empties the skipped slots, a concurrent reader may count a
//!   bucket from before the idle spell whose short tag happens to match one
//!   in its window (never more than was added).
//! - After an idle spell of `2^(T-1) - N` periods or more (1 988 s for the
//!   default 60 x 1 s window) the short tags cannot tell old slots from new,
//!   so the first add empties every slot: an add for the same user made by
//!   another thread within those few hundred nanoseconds may be lost.
//! - A thread that stalls between its steps for `2^(T-1) - N` periods or
//!   more (33 minutes with the default window; a stress test with 1 ms
//!   periods on an overloaded machine gets close) may overwrite or empty a
//!   newer bucket. Shorter stalls are exact: tags are compared within half
//!   their range.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

impl WindowShape {
    /// Bits of a slot word that tag its period: the fewest that name
    /// `4 * buckets` periods apart, and at least 12 (see the module docs).
    pub(crate) fn tag_bits(self) -> u32 {
        (4 * self.buckets)
            .next_power_of_two()
            .trailing_zeros()
            .max(12)
    }

    /// The largest count one bucket holds: `2^(32 - tag bits) - 1`
    /// (1 048 575 up to 1 024 buckets, 65 535 at 10 000). Larger counts
    /// saturate.
    pub fn max_count(self) -> u32 {
        u32::MAX >> self.tag_bits()
    }
}

/// A slot word split into its period tag and count, for one window shape.
#[derive(Debug, Clone, Copy)]
struct Packing {
    count_bits: u32,
    tag_mask: u32,
    count_mask: u32,
}

impl Packing {
    fn of(shape: WindowShape) -> Self {
        let tag_bits = shape.tag_bits();
        Self {
            count_bits: 32 - tag_bits,
            tag_mask: u32::MAX >> (32 - tag_bits),
            count_mask: shape.max_count(),
        }
    }

    /// The tag of `period`: its low tag bits (the truncation is the point).
    fn tag(self, period: u64) -> u32 {
        period as u32 & self.tag_mask
    }

    fn pack(self, tag: u32, count: u32) -> u32 {
        (tag << self.count_bits) | count
    }

    /// Splits a slot word into (tag, count).
    fn unpack(self, word: u32) -> (u32, u32) {
        (word >> self.count_bits, word & self.count_mask)
    }

    /// Whether `slot_tag` names a later period than `tag`: ahead by less
    /// than half the tag range. Exact while the two periods are less than
    /// `2^(T-1)` apart (at least `2 N`): always so for slots within a window
    /// of `newest` and an add that passed the window check, and also for an
    /// add whose thread stalled up to that long after the check.
    fn is_later(self, slot_tag: u32, tag: u32) -> bool {
        let ahead = self.age(slot_tag, tag);
        ahead != 0 && ahead <= self.tag_mask / 2
    }

    /// How many periods `tag` lies before `reader_tag`, in wrapping order:
    /// exact when the true distance is in `-2^T + 1 .. 2^T` and reads as
    /// `2^T` minus the gap for a tag after the reader's.
    fn age(self, reader_tag: u32, tag: u32) -> u32 {
        reader_tag.wrapping_sub(tag) & self.tag_mask
    }
}

/// A lock-free sliding window of one counter; see the module docs.
///
/// Memory: `4 * buckets` bytes on the heap plus 40 bytes inline.
#[derive(Debug)]
pub struct Window {
    shape: WindowShape,
    /// The newest period counted so far (0 before the first add). Moves
    /// only forward (`fetch_max`); the thread that moves it empties the
    /// slots of the periods it skipped.
    newest: AtomicU64,
    /// One packed (tag, count) word per bucket. A count of zero means the
    /// slot holds nothing, whatever its tag (adds of zero are not recorded).
    slots: Box<[AtomicU32]>,
}

impl Window {
    /// An empty window of the given shape.
    pub fn new(shape: WindowShape) -> Self {
        let slots = (0..shape.buckets()).map(|_| AtomicU32::new(0)).collect();
        Self {
            shape,
            newest: AtomicU64::new(0),
            slots,
        }
    }

    /// The window's geometry.
    pub fn shape(&self) -> WindowShape {
        self.shape
    }

    /// Heap bytes a window of `shape` allocates: 4 per bucket.
    pub fn heap_bytes_for(shape: WindowShape) -> usize {
        shape.buckets() as usize * std::mem::size_of::<AtomicU32>()
    }

    /// Counts `n` events at `now_ms` (at most [`WindowShape::max_count`]
    /// per bucket; larger counts saturate).
    ///
    /// Returns `false` when the add was dropped because it is at least one
    /// full window older than the newest add (a clock that went backwards
    /// by that much, or a thread that stalled that long). Adding zero
    /// records nothing and returns `true`.
    pub fn add(&self, now_ms: u64, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        let period = self.shape.period(now_ms);
        let buckets = u64::from(self.shape.buckets());

        // Move `newest` forward if this is a later period, and empty the
        // slots of the periods in between so no slot is left holding a
        // period a short tag could confuse with a later one. Most adds fall
        // in the newest period: a plain load then, so a busy user's window
        // is not written twice per request. Relaxed: the slot words carry
        // all the state readers need.
        let slot = &self.slots[self.shape.slot(period)];
        let mut current = slot.load(Ordering::Relaxed);
        let seen = self.newest.load(Ordering::Relaxed);
        let newest = if period > seen {
            self.newest.fetch_max(period, Ordering::Relaxed)
        } else {
            seen
        };
        // The thread that moves `newest` knows that what its slot held
        // before (`current`, read first) is an older period, however far
        // back: its first CAS may replace it without comparing tags, and
        // fails if anyone wrote since. Everyone else compares tags, which
        // covers a thread that stalled since reading `newest` by up to half
        // the tag range.
        let mut moved = period > newest;
        if moved {
            self.empty_skipped(newest, period);
        } else if newest - period >= buckets {
            return false;
        }

        // Decide the slot's next value from what it held, and publish it
        // with one CAS; if another thread changed the slot in between, decide
        // again from what it wrote. Relaxed is enough: the word is the whole state of
        // its bucket, and all CASes on one word are totally ordered, so no
        // update can be lost.
        let packing = Packing::of(self.shape);
        let tag = packing.tag(period);
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(packing.count_mask);
        loop {
            let (slot_tag, count) = packing.unpack(current);
            let next = if slot_tag == tag && count != 0 {
                // Same period: count into it.
                packing.pack(tag, count.saturating_add(n).min(packing.count_mask))
            } else if count != 0 && !moved && packing.is_later(slot_tag, tag) {
                // The slot holds a later period: ours is too old for it.
                return false;
            } else {
                // Empty, or an older period: replace it with ours.
                packing.pack(tag, n)
            };
            // A strong CAS: a spurious failure would cost the mover its
            // knowledge that `current` is older.
            match slot.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => {
                    #[cfg(test)]
                    crate::stress::note_collision();
                    current = actual;
                    moved = false;
                }
            }
        }
    }

    /// Empties the slots of the periods after `from` and before `to`, the
    /// newest period before and after this add moved it.
    ///
    /// After a short jump (less than `2^(T-1) - N` periods) every slot holds
    /// a period at most `N` before `from`, so its short tag tells it from a
    /// skipped period's: a slot is emptied unless it already holds its
    /// skipped period or a later one (written by others while this thread
    /// was between its steps). After a longer idle spell the tags no longer
    /// tell, and every slot is emptied, `to`'s own included: an add for this
    /// user made by another thread in the same instant may be lost (see the
    /// module docs).
    fn empty_skipped(&self, from: u64, to: u64) {
        let buckets = u64::from(self.shape.buckets());
        let packing = Packing::of(self.shape);
        let half_lap = u64::from(packing.tag_mask / 2) + 1;
        if to - from >= half_lap - buckets {
            for slot in &self.slots[..] {
                slot.store(0, Ordering::Relaxed);
            }
            return;
        }
        let first = (from + 1).max(to.saturating_sub(buckets - 1));
        for period in first..to {
            let slot = &self.slots[self.shape.slot(period)];
            let tag = packing.tag(period);
            let mut current = slot.load(Ordering::Relaxed);
            loop {
                let (slot_tag, count) = packing.unpack(current);
                if count == 0 || slot_tag == tag || packing.is_later(slot_tag, tag) {
                    break;
                }
                match slot.compare_exchange(current, 0, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(actual) => current = actual,
                }
            }
        }
    }

    /// Whether a reader at `period` can see any slot: the newest add is at
    /// most `buckets - 1` periods before it and less than `buckets` after.
    fn readable_at(&self, period: u64) -> bool {
        let buckets = u64::from(self.shape.buckets());
        let newest = self.newest.load(Ordering::Relaxed);
        period.abs_diff(newest) < buckets
    }

    /// Total count over the window ending at `now_ms`: the buckets of the
    /// last `buckets` periods, the current one included.
    ///
    /// Buckets of older periods are ignored, and so are buckets of periods
    /// after `now_ms` (left by a clock that has since gone backwards).
    pub fn sum(&self, now_ms: u64) -> u64 {
        let period = self.shape.period(now_ms);
        if !self.readable_at(period) {
            return 0;
        }
        let packing = Packing::of(self.shape);
        let tag = packing.tag(period);
        let buckets = self.shape.buckets();
        self.slots
            .iter()
            .map(|slot| packing.unpack(slot.load(Ordering::Relaxed)))
            .filter(|&(slot_tag, count)| count != 0 && packing.age(tag, slot_tag) < buckets)
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
        if !self.readable_at(period) {
            return 0;
        }
        let packing = Packing::of(self.shape);
        let slot = &self.slots[self.shape.slot(period)];
        let (slot_tag, count) = packing.unpack(slot.load(Ordering::Relaxed));
        if slot_tag == packing.tag(period) {
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
