//! A user's latest arrival and cohort, packed in one atomic word.
//!
//! The next-action model learns from transitions: "after an action of class
//! `a`, this user's next action came `gap` later and was of class `b`". To see
//! a transition at the moment it happens, the hot path swaps the user's
//! latest (time, class) for the new one; the background tick reads the same
//! word to tell how long each user has been idle. The word also carries the
//! user's cohort, written by the re-clustering task, so that the hot path can
//! attribute a transition to a cohort without a lookup.
//!
//! Layout: bits 0..48 the arrival time in milliseconds (Unix times fit until
//! the year 10 889; larger times are clamped), bits 48..51 the route class
//! (0 to 7), bit 51 set once an arrival was recorded, bits 52..56 the cohort
//! (0 to 7; 15 for none).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::activity::route_index;
use crate::cohort::CohortId;

const TIME_MASK: u64 = (1 << 48) - 1;
const CLASS_SHIFT: u32 = 48;
const VALID_BIT: u64 = 1 << 51;
const COHORT_SHIFT: u32 = 52;
const COHORT_NONE: u64 = 0xf;

/// One past action: when it arrived and in which route class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionMark {
    /// Arrival time (ms, the profiler clock).
    pub at_ms: u64,
    /// Route class, 0 to 7.
    pub route_class: u8,
}

/// What one arrival tells the next-action model; returned by
/// [`UserWindows::record_arrival`](crate::UserWindows::record_arrival).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new arrival.
    pub to: ActionMark,
    /// The user's previous arrival, `None` for a user's first.
    pub from: Option<ActionMark>,
    /// The user's cohort when the arrival was recorded.
    pub cohort: Option<CohortId>,
}

impl Transition {
    /// Milliseconds from the previous arrival to this one (0 when the clock
    /// went backwards), `None` for a user's first arrival.
    pub fn gap_ms(&self) -> Option<u64> {
        self.from.map(|f| self.to.at_ms.saturating_sub(f.at_ms))
    }
}

/// The packed word; see the module docs.
#[derive(Debug)]
pub struct LastAction {
    word: AtomicU64,
}

impl Default for LastAction {
    fn default() -> Self {
        Self {
            word: AtomicU64::new(COHORT_NONE << COHORT_SHIFT),
        }
    }
}

impl LastAction {
    /// Records an arrival at `now_ms` in `route_class` (clamped to 0..=7)
    /// and returns the transition from the previous one.
    ///
    /// A time earlier than the stored one (a clock that went backwards, or
    /// a racing thread with an older reading) keeps the later time, stores
    /// the new class, and reports a gap of 0.
    pub fn record(&self, now_ms: u64, route_class: u8) -> Transition {
        let class = route_index(route_class) as u64;
        let now = now_ms.min(TIME_MASK);
        // Relaxed: the word is self-contained; nothing else is published
        // through it.
        let previous = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                let time = if word & VALID_BIT != 0 {
                    (word & TIME_MASK).max(now)
                } else {
                    now
                };
                let cohort = word & (COHORT_NONE << COHORT_SHIFT);
                Some(time | (class << CLASS_SHIFT) | VALID_BIT | cohort)
            })
            .unwrap_or_else(|word| word);
        Transition {
            to: ActionMark {
                at_ms: now,
                route_class: class as u8,
            },
            from: decode_mark(previous),
            cohort: decode_cohort(previous),
        }
    }

    /// The latest arrival and the cohort, from one load.
    pub fn load(&self) -> (Option<ActionMark>, Option<CohortId>) {
        let word = self.word.load(Ordering::Relaxed);
        (decode_mark(word), decode_cohort(word))
    }

    /// Puts the user in `cohort` (or in none), keeping the latest arrival.
    pub fn set_cohort(&self, cohort: Option<CohortId>) {
        let field = cohort.map_or(COHORT_NONE, |c| u64::from(c.index() as u8));
        let _ = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                Some((word & !(COHORT_NONE << COHORT_SHIFT)) | (field << COHORT_SHIFT))
            });
    }
}

fn decode_mark(word: u64) -> Option<ActionMark> {
    (word & VALID_BIT != 0).then_some(ActionMark {
        at_ms: word & TIME_MASK,
        route_class: ((word >> CLASS_SHIFT) & 0x7) as u8,
    })
}

fn decode_cohort(word: u64) -> Option<CohortId> {
    // The "none" value (15) is past MAX_COHORTS, so `new` turns it into None.
    CohortId::new(((word >> COHORT_SHIFT) & COHORT_NONE) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_arrival_has_no_previous_and_later_ones_report_the_gap() {
        let l = LastAction::default();
        assert_eq!(l.load(), (None, None));
        let t = l.record(1_000, 3);
        assert_eq!((t.from, t.gap_ms(), t.cohort), (None, None, None));
        let t = l.record(61_000, 5);
        assert_eq!(
            t.from,
            Some(ActionMark {
                at_ms: 1_000,
                route_class: 3
            })
        );
        assert_eq!(t.gap_ms(), Some(60_000));
        assert_eq!(l.load().0.map(|m| m.route_class), Some(5));
    }

    #[test]
    fn cohort_survives_arrivals_and_arrivals_survive_cohort_changes() {
        let l = LastAction::default();
        l.record(5, 1);
        l.set_cohort(CohortId::new(6));
        let t = l.record(9, 2);
        assert_eq!(t.cohort, CohortId::new(6));
        assert_eq!(l.load().1, CohortId::new(6));
        l.set_cohort(None);
        assert_eq!(
            l.load(),
            (
                Some(ActionMark {
                    at_ms: 9,
                    route_class: 2
                }),
                None
            )
        );
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_later_time_with_a_zero_gap() {
        let l = LastAction::default();
        l.record(10_000, 0);
        let t = l.record(4_000, 1);
        assert_eq!(t.gap_ms(), Some(0));
        assert_eq!(l.load().0.map(|m| m.at_ms), Some(10_000));
    }

    #[test]
    fn classes_and_times_past_their_fields_are_clamped() {
        let l = LastAction::default();
        l.record(u64::MAX, 200);
        let (mark, cohort) = l.load();
        assert_eq!(
            mark,
            Some(ActionMark {
                at_ms: TIME_MASK,
                route_class: 7
            })
        );
        assert_eq!(cohort, None);
    }
}
