//! What a user did after each response, in two atomic words.
//!
//! After a response the user either acts again soon in the same route class
//! (a quick retry), stays away longer than the abandon gap (the session ended
//! there), or carries on normally; a client may also hang up before the
//! response (the proxy reports a disconnect). [`LatencySignals`] remembers the
//! latest response (time, class, fast or slow) until the user's next arrival
//! or until the abandon gap passes, then counts it as an exposure, and as a
//! reaction if it was a retry or an abandonment. Fast responses are counted
//! the same way, as the user's baseline: people who click through pages
//! "retry" the page class after fast responses too, and only the excess after
//! slow ones is sensitivity.
//!
//! Layout. `pending`: bits 0..48 the response time (ms), bits 48..51 the
//! route class, bits 51..53 the state (0 nothing pending, 1 fast, 2 slow).
//! `counts`: four 16-bit counters (slow exposures, reactions to slow, fast
//! exposures, reactions to fast); when one would pass 65 535 all four are
//! halved, so the ratios survive and old behaviour fades.
//!
//! Known approximation: only the latest response is pending. With several
//! requests in flight, an earlier response replaced before the next arrival
//! is not counted at all (neither exposure nor reaction), so ratios come from
//! the responses that were last before an arrival.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::activity::route_index;
use crate::sensitivity::SensitivityConfig;

const TIME_MASK: u64 = (1 << 48) - 1;
const CLASS_SHIFT: u32 = 48;
const STATE_SHIFT: u32 = 51;
const STATE_FAST: u64 = 1;
const STATE_SLOW: u64 = 2;

const SLOW: u32 = 0;
const SLOW_REACTIONS: u32 = 16;
const FAST: u32 = 32;
const FAST_REACTIONS: u32 = 48;

/// How a response went, from the user's side; see
/// [`SensitivityConfig::classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSpeed {
    /// Within the route kind's latency threshold.
    Fast,
    /// Slower than the threshold.
    Slow,
    /// The client hung up after waiting long enough for it to count as a
    /// reaction to latency (the proxy's 499-like event).
    Disconnected,
}

/// A plain copy of a user's counters (decayed, see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalCounts {
    /// Slow responses followed by an arrival or by the abandon gap, plus
    /// disconnects.
    pub slow: u16,
    /// Of those, retries, abandonments and disconnects.
    pub slow_reactions: u16,
    /// Fast responses followed by an arrival or by the abandon gap.
    pub fast: u16,
    /// Of those, retries and abandonments.
    pub fast_reactions: u16,
}

/// One user's latency signals; see the module docs.
#[derive(Debug, Default)]
pub struct LatencySignals {
    pending: AtomicU64,
    counts: AtomicU64,
}

impl LatencySignals {
    /// Notes a response at `now_ms` to a request in `route_class`. Atomic
    /// operations only, for the proxy's response hook.
    pub fn on_response(&self, now_ms: u64, route_class: u8, speed: ResponseSpeed) {
        let class = route_index(route_class) as u64;
        let state = match speed {
            ResponseSpeed::Fast => STATE_FAST,
            ResponseSpeed::Slow => STATE_SLOW,
            ResponseSpeed::Disconnected => {
                // The hang-up is the reaction; nothing is left pending.
                self.pending.store(0, Ordering::Relaxed);
                self.count(SLOW, SLOW_REACTIONS, true);
                return;
            }
        };
        let word = now_ms.min(TIME_MASK) | (class << CLASS_SHIFT) | (state << STATE_SHIFT);
        // Relaxed: each word is self-contained.
        self.pending.store(word, Ordering::Relaxed);
    }

    /// Notes an arrival at `now_ms` in `route_class`: settles the pending
    /// response, if any, as a retry (same class within `retry_gap_ms`), an
    /// abandonment (after more than `abandon_gap_ms`) or neither.
    pub fn on_arrival(&self, now_ms: u64, route_class: u8, config: &SensitivityConfig) {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        let word = self.pending.swap(0, Ordering::Relaxed);
        let Some((at_ms, class, slow)) = decode(word) else {
            return;
        };
        let gap_ms = now_ms.saturating_sub(at_ms);
        let retry = class == route_index(route_class) as u8 && gap_ms <= config.retry_gap_ms;
        let abandoned = gap_ms > config.abandon_gap_ms;
        self.settle(slow, retry || abandoned);
    }

    /// For the background tick: settles a response pending for longer than
    /// `abandon_gap_ms` at `now_ms` as an abandonment.
    pub fn sweep(&self, now_ms: u64, config: &SensitivityConfig) {
        let word = self.pending.load(Ordering::Relaxed);
        let Some((at_ms, _, slow)) = decode(word) else {
            return;
        };
        if now_ms.saturating_sub(at_ms) <= config.abandon_gap_ms {
            return;
        }
        // Only the thread that clears this very word counts it; an arrival
        // or a newer response wins otherwise.
        if self
            .pending
            .compare_exchange(word, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.settle(slow, true);
        }
    }

    /// The counters.
    pub fn counts(&self) -> SignalCounts {
        let word = self.counts.load(Ordering::Relaxed);
        let field = |shift: u32| (word >> shift) as u16;
        SignalCounts {
            slow: field(SLOW),
            slow_reactions: field(SLOW_REACTIONS),
            fast: field(FAST),
            fast_reactions: field(FAST_REACTIONS),
        }
    }

    fn settle(&self, slow: bool, reacted: bool) {
        if slow {
            self.count(SLOW, SLOW_REACTIONS, reacted);
        } else {
            self.count(FAST, FAST_REACTIONS, reacted);
        }
    }

    /// Adds one exposure at `exposure` and, if `reacted`, one reaction at
    /// `reaction`, halving all four counters first if one would overflow.
    fn count(&self, exposure: u32, reaction: u32, reacted: bool) {
        let add = (1 << exposure) | (u64::from(reacted) << reaction);
        let _ = self
            .counts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                // Exposures are never below their reactions, so checking
                // the exposure field is enough.
                let word = if (word >> exposure) as u16 == u16::MAX {
                    (word >> 1) & 0x7fff_7fff_7fff_7fff
                } else {
                    word
                };
                Some(word + add)
            });
    }
}

/// (time, class, slow) of a pending word, `None` if nothing is pending.
fn decode(word: u64) -> Option<(u64, u8, bool)> {
    let state = (word >> STATE_SHIFT) & 0x3;
    (state != 0).then_some((
        word & TIME_MASK,
        ((word >> CLASS_SHIFT) & 0x7) as u8,
        state == STATE_SLOW,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SensitivityConfig {
        SensitivityConfig::default()
    }

    #[test]
    fn a_same_class_arrival_soon_after_a_slow_response_is_a_retry() {
        let s = LatencySignals::default();
        s.on_response(1_000, 2, ResponseSpeed::Slow);
        s.on_arrival(3_000, 2, &config());
        let c = s.counts();
        assert_eq!((c.slow, c.slow_reactions, c.fast), (1, 1, 0));
    }

    #[test]
    fn another_class_or_a_later_arrival_is_not_a_reaction() {
        let s = LatencySignals::default();
        s.on_response(1_000, 2, ResponseSpeed::Slow);
        s.on_arrival(2_000, 3, &config());
        s.on_response(10_000, 2, ResponseSpeed::Fast);
        s.on_arrival(10_000 + config().retry_gap_ms + 1, 2, &config());
        let c = s.counts();
        assert_eq!((c.slow, c.slow_reactions), (1, 0));
        assert_eq!((c.fast, c.fast_reactions), (1, 0));
    }

    #[test]
    fn silence_past_the_abandon_gap_counts_once_by_sweep_or_by_arrival() {
        let cfg = config();
        let s = LatencySignals::default();
        s.on_response(0, 1, ResponseSpeed::Slow);
        s.sweep(cfg.abandon_gap_ms, &cfg);
        assert_eq!(s.counts().slow, 0, "not yet past the gap");
        s.sweep(cfg.abandon_gap_ms + 1, &cfg);
        s.sweep(cfg.abandon_gap_ms + 2, &cfg);
        s.on_arrival(cfg.abandon_gap_ms + 3, 1, &cfg);
        assert_eq!(
            s.counts(),
            SignalCounts {
                slow: 1,
                slow_reactions: 1,
                ..SignalCounts::default()
            }
        );

        // The same user coming back late without a sweep: counted at arrival.
        s.on_response(10_000_000, 1, ResponseSpeed::Fast);
        s.on_arrival(10_000_000 + cfg.abandon_gap_ms + 1, 4, &cfg);
        assert_eq!((s.counts().fast, s.counts().fast_reactions), (1, 1));
    }

    #[test]
    fn a_disconnect_is_a_slow_exposure_and_a_reaction_at_once() {
        let s = LatencySignals::default();
        s.on_response(0, 0, ResponseSpeed::Fast);
        s.on_response(5, 0, ResponseSpeed::Disconnected);
        s.on_arrival(6, 0, &config());
        let c = s.counts();
        assert_eq!((c.slow, c.slow_reactions, c.fast), (1, 1, 0));
    }

    #[test]
    fn full_counters_halve_together() {
        let s = LatencySignals::default();
        for _ in 0..u32::from(u16::MAX) + 10 {
            s.on_response(0, 0, ResponseSpeed::Disconnected);
        }
        let c = s.counts();
        assert!(c.slow >= 32_768 && c.slow == c.slow_reactions, "{c:?}");
        assert_eq!((c.fast, c.fast_reactions), (0, 0));
    }

    #[test]
    fn concurrent_disconnects_lose_no_count() {
        let s = LatencySignals::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let s = &s;
                scope.spawn(move || {
                    for _ in 0..1_000 {
                        s.on_response(0, 1, ResponseSpeed::Disconnected);
                    }
                });
            }
        });
        assert_eq!(s.counts().slow, 4_000);
    }
}
