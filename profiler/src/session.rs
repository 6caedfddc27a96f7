//! When a user was first and last seen, and how their visits split into
//! sessions.
//!
//! A session is a run of activity without a pause longer than the session
//! gap (default 30 minutes, the usual web-analytics convention). The
//! forecaster uses session starts and lengths to tell a returning user from a
//! continuing one; the table uses the last-seen time to evict idle users.
//!
//! Everything is a handful of atomics updated with `fetch_max` and plain
//! stores, so recording is lock-free. Fields are read one by one, so a
//! snapshot taken while another thread opens a session may pair the new
//! session count with the old start time for a moment.

use std::sync::atomic::{AtomicU64, Ordering};

/// Session bookkeeping for one user; see the module docs.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Latest activity time plus one; 0 means never active. The offset lets
    /// `fetch_max` tell "never" from "at time 0" in a single atomic step.
    last_seen_plus_one: AtomicU64,
    first_seen_ms: AtomicU64,
    session_start_ms: AtomicU64,
    started: AtomicU64,
}

impl Sessions {
    /// Notes activity at `now_ms`. An arrival (`opens_session`) after a pause
    /// longer than `gap_ms` since the latest activity starts a new session;
    /// the very first activity of any kind starts the first.
    ///
    /// A time earlier than the latest activity (a clock that went backwards,
    /// or a racing thread with an older reading) changes nothing except that
    /// it counts as activity at the latest time.
    pub fn note(&self, now_ms: u64, gap_ms: u64, opens_session: bool) {
        // fetch_max is one atomic step, so of several threads arriving
        // after the same pause exactly one sees the old time and opens the
        // session; the others measure their pause from its time or later.
        let previous = self
            .last_seen_plus_one
            .fetch_max(now_ms.saturating_add(1), Ordering::AcqRel);
        let pause_ms = match previous.checked_sub(1) {
            None => u64::MAX,
            Some(last_ms) if opens_session => now_ms.saturating_sub(last_ms),
            Some(_) => return,
        };
        if pause_ms <= gap_ms {
            return;
        }

        // Publish the start before the count: a reader that sees the count
        // (Acquire) also sees the start that goes with it.
        if previous == 0 {
            self.first_seen_ms.store(now_ms, Ordering::Relaxed);
        }
        self.session_start_ms.store(now_ms, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Release);
    }

    /// The latest activity time, or `None` if never active.
    pub fn last_seen_ms(&self) -> Option<u64> {
        self.last_seen_plus_one
            .load(Ordering::Acquire)
            .checked_sub(1)
    }

    /// The first activity time, or `None` if never active.
    pub fn first_seen_ms(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.first_seen_ms.load(Ordering::Relaxed))
    }

    /// Start of the current session, or `None` if never active.
    pub fn session_start_ms(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.session_start_ms.load(Ordering::Relaxed))
    }

    /// Sessions started so far (0 if never active).
    pub fn count(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// True when the latest activity is more than `timeout_ms` before
    /// `now_ms`. Never-active users are idle; a `now_ms` earlier than the
    /// latest activity is not.
    pub fn is_idle(&self, now_ms: u64, timeout_ms: u64) -> bool {
        self.last_seen_ms()
            .is_none_or(|last| now_ms.saturating_sub(last) > timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: u64 = 30 * 60 * 1_000;

    #[test]
    fn first_activity_opens_the_first_session_even_at_time_zero() {
        let s = Sessions::default();
        assert_eq!(
            (s.count(), s.last_seen_ms(), s.first_seen_ms()),
            (0, None, None)
        );
        s.note(0, GAP, true);
        assert_eq!(s.count(), 1);
        assert_eq!(s.first_seen_ms(), Some(0));
        assert_eq!(s.session_start_ms(), Some(0));
        assert_eq!(s.last_seen_ms(), Some(0));
    }

    #[test]
    fn a_pause_longer_than_the_gap_splits_sessions() {
        let s = Sessions::default();
        s.note(1_000, GAP, true);
        s.note(1_000 + GAP, GAP, true); // exactly the gap: same session
        assert_eq!(s.count(), 1);
        let back = 1_000 + 2 * GAP + 1;
        s.note(back, GAP, true);
        assert_eq!(s.count(), 2);
        assert_eq!(s.session_start_ms(), Some(back));
        assert_eq!(s.first_seen_ms(), Some(1_000));
    }

    #[test]
    fn responses_keep_a_session_alive_but_never_open_one() {
        let s = Sessions::default();
        s.note(0, GAP, true);
        // A long request: its response arrives after more than the gap.
        s.note(GAP + 5, GAP, false);
        assert_eq!(s.count(), 1, "a response does not start a session");
        s.note(GAP + 10, GAP, true);
        assert_eq!(s.count(), 1, "the pause is measured from the response");
    }

    #[test]
    fn clock_going_backwards_neither_panics_nor_opens_sessions() {
        let s = Sessions::default();
        s.note(50_000, 10, true);
        s.note(1_000, 10, true);
        s.note(u64::MAX, 10, true);
        s.note(0, 10, true);
        assert_eq!(s.count(), 2, "only the jump forward opened a session");
        assert_eq!(
            s.last_seen_ms(),
            Some(u64::MAX - 1),
            "saturates one below the maximum"
        );
    }

    #[test]
    fn idle_means_no_activity_for_longer_than_the_timeout() {
        let s = Sessions::default();
        assert!(s.is_idle(0, 100), "never active is idle");
        s.note(1_000, GAP, true);
        assert!(!s.is_idle(1_100, 100));
        assert!(s.is_idle(1_101, 100));
        assert!(
            !s.is_idle(0, 100),
            "a time before the last activity is not idle"
        );
    }

    #[test]
    fn concurrent_arrivals_after_a_pause_open_exactly_one_session() {
        let s = Sessions::default();
        s.note(0, 10, true);
        std::thread::scope(|scope| {
            for t in 0..8 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..1_000 {
                        s.note(1_000 + t + i % 3, 10, true);
                    }
                });
            }
        });
        assert_eq!(s.count(), 2);
    }
}
