//! A lock-free sliding window of several counters that share one time tag.
//!
//! A user's errors, bytes, latency and route mix all need the same "last
//! minute" view. Giving each its own [`crate::Window`] would repeat the period
//! tag per counter and force every counter into a tagged 64-bit word; here
//! one slot holds one tag and a whole set of counters (any type implementing
//! [`BucketCounters`]), each as narrow as its totals allow. The user's 14
//! activity counters take 80 bytes per bucket this way, against 112 as
//! tagged words.
//!
//! The price is that moving a slot to a new period is no longer a single
//! atomic step, so the protocol below lets a rollover race with adds, and the
//! race has a documented, bounded effect.
//!
//! Rollover protocol (the slot's tag is an `AtomicU64` holding the period and
//! a RETIRING flag in the top bit). A thread recording at period `p` whose
//! slot holds an older, settled period `t`:
//! 1. reads a copy of every counter (the old period's totals),
//! 2. claims the slot with a CAS of the tag from `t` to `p | RETIRING`; if the
//!    CAS fails, somebody else changed the slot, and it starts over,
//! 3. subtracts the copy from the counters (wrapping arithmetic), which
//!    removes the old period's totals but keeps anything added for `p` since
//!    step 2,
//! 4. stores the settled tag `p`.
//!
//! Adds for `p` go straight into the counters, even while the slot is
//! RETIRING, since step 3 only removes what was there before the claim. No
//! counter is ever reset to zero, so a thread preempted between the steps
//! cannot wipe other threads' adds.
//!
//! Accuracy, with numbers:
//! - An add for `p` that `record` reports as counted stays in `p`'s bucket
//!   until the slot moves to a later period.
//! - An add for the slot's previous period that straddles the claim (its
//!   thread read the old tag before step 2 and added after step 1) is counted
//!   in the new period instead. Each record reads the clock and then the tag
//!   afresh, so with clock readings that do not go backwards this moves at
//!   most one record per other recording thread into each new bucket (the
//!   one it had in flight when the claim became visible to it): with 8
//!   threads recording into one user, at most 7 requests per rollover.
//! - A record is dropped (`record` returns `false`) when its slot holds a
//!   later period (its time is at least one window older than the newest
//!   recorded time) or is still being retired for an older period by a
//!   thread that stalled since (for at least one whole window).
//! - Readers skip a bucket while it is RETIRING (a few nanoseconds) and a
//!   bucket whose tag changes while they read it (it left the window).
//! - Counters may be narrower than the totals they could reach; the
//!   arithmetic is modular, so a bucket is exact as long as one period's true
//!   total fits the counter.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::window::WindowShape;

/// A set of counters kept per bucket of a [`MultiWindow`].
///
/// Implementations hold atomics, add to them with wrapping `fetch_add` (the
/// closure given to [`MultiWindow::record`] does that) and must make
/// [`Self::subtract`] the exact wrapping inverse of what [`Self::load`] read:
/// the rollover protocol relies on `x + adds - x == adds` for every counter.
pub trait BucketCounters: Default + Send + Sync {
    /// A plain copy of every counter's value.
    type Values: Copy;

    /// Reads every counter. Relaxed loads are enough: the window orders them
    /// against its tag.
    fn load(&self) -> Self::Values;

    /// Subtracts `values` from the counters, wrapping, with relaxed atomics.
    fn subtract(&self, values: &Self::Values);
}

/// Top bit of a tag: set while the slot's old period is being subtracted.
const RETIRING: u64 = 1 << 63;

/// The largest period a tag can hold; later times are clamped to it (they
/// would need a clock past 2^63 ms with 1 ms buckets).
const MAX_PERIOD: u64 = RETIRING - 1;

/// One bucket: the period it holds and that period's counters.
#[derive(Debug, Default)]
struct Slot<C> {
    tag: AtomicU64,
    counters: C,
}

/// A ring of buckets of counters `C`; see the module docs for the protocol.
///
/// Memory: `(8 + size_of::<C>()) * buckets` bytes on the heap (rounded up to
/// `C`'s alignment) plus 32 bytes inline.
#[derive(Debug)]
pub struct MultiWindow<C> {
    shape: WindowShape,
    slots: Box<[Slot<C>]>,
}

impl<C: BucketCounters> MultiWindow<C> {
    /// An empty window of the given shape. Every slot starts as an empty
    /// bucket of period 0.
    pub fn new(shape: WindowShape) -> Self {
        let slots = (0..shape.buckets()).map(|_| Slot::default()).collect();
        Self { shape, slots }
    }

    /// The window's geometry.
    pub fn shape(&self) -> WindowShape {
        self.shape
    }

    /// Heap bytes a window of `shape` allocates: the tag plus `C`, rounded
    /// up to `C`'s alignment, per bucket.
    pub fn heap_bytes_for(shape: WindowShape) -> usize {
        shape.buckets() as usize * std::mem::size_of::<Slot<C>>()
    }

    /// Records into the bucket of `now_ms`: moves the bucket's slot to that
    /// period if it holds an older one, then calls `add` with its counters.
    ///
    /// `add` should only add (wrapping `fetch_add`, relaxed). Returns `false`
    /// without calling `add` when the record is dropped (see the module docs:
    /// only for times a whole window older than one already recorded, or
    /// while a thread stalled for a whole window still retires the slot).
    pub fn record(&self, now_ms: u64, add: impl FnOnce(&C)) -> bool {
        let period = self.shape.period(now_ms).min(MAX_PERIOD);
        let slot = &self.slots[self.shape.slot(period)];
        loop {
            // Acquire pairs with the Release store of step 4 below: once we
            // see a settled tag, we also see its subtraction finished.
            let tag = slot.tag.load(Ordering::Acquire);
            let held = tag & !RETIRING;
            if held == period {
                // Our period, settled or still retiring: step 3 keeps adds
                // made after the claim, so add now.
                #[cfg(test)]
                if tag & RETIRING != 0 {
                    crate::stress::note_collision();
                }
                add(&slot.counters);
                return true;
            }
            if held > period || tag & RETIRING != 0 {
                return false;
            }

            // Step 1: the old period's totals, read before anyone can add
            // for the new period (nobody can until the claim succeeds).
            let old = slot.counters.load();
            // Step 2: claim. The CAS fails if the tag changed since we read
            // it, in which case our copy may be stale: start over.
            if slot
                .tag
                .compare_exchange(tag, period | RETIRING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                #[cfg(test)]
                crate::stress::note_collision();
                continue;
            }
            // Order the claim before the subtraction for readers: a reader
            // that sees any subtracted value (its Acquire fence pairs with
            // this one) then sees the changed tag and drops what it read.
            fence(Ordering::Release);
            // Step 3: remove the old totals, keep adds made since the claim.
            slot.counters.subtract(&old);
            // Step 4: settle. Only the claimer moves a RETIRING tag (others
            // never claim a RETIRING slot), so a plain store is enough.
            slot.tag.store(period, Ordering::Release);
            add(&slot.counters);
            return true;
        }
    }

    /// The counters of `period`, or `None` when its slot holds another
    /// period, is being retired, or changed while being read.
    pub fn bucket(&self, period: u64) -> Option<C::Values> {
        let slot = &self.slots[self.shape.slot(period)];
        // Seqlock-style read: tag, counters, tag again. Acquire on the first
        // load pairs with the settling store, so the counters we read
        // include the finished subtraction.
        let tag = slot.tag.load(Ordering::Acquire);
        if tag != period {
            return None;
        }
        let values = slot.counters.load();
        // Pairs with the claimer's Release fence: if we read a value from
        // after a later claim, the second tag load sees that claim.
        fence(Ordering::Acquire);
        (slot.tag.load(Ordering::Relaxed) == tag).then_some(values)
    }

    /// Calls `visit(period, values)` for each bucket in the window ending at
    /// `now_ms` (the last `buckets` periods, the current one included),
    /// oldest first, skipping buckets whose slot holds another period.
    ///
    /// Buckets of periods after `now_ms` (left by a clock that went
    /// backwards) are not visited.
    pub fn for_each_bucket(&self, now_ms: u64, mut visit: impl FnMut(u64, C::Values)) {
        let newest = self.shape.period(now_ms).min(MAX_PERIOD);
        for age in (0..u64::from(self.shape.buckets())).rev() {
            let Some(period) = newest.checked_sub(age) else {
                continue;
            };
            if let Some(values) = self.bucket(period) {
                visit(period, values);
            }
        }
    }
}

#[cfg(test)]
mod tests;
