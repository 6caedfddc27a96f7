//! A user's long-run behaviour in two words: when in the day they are
//! active, which route classes they use, and how large their responses are.
//!
//! The request and activity windows forget everything after a minute, which
//! is right for rates but wrong for clustering: a user idle for the last
//! minute would look like nobody. [`ActivitySignature`] keeps decayed counts
//! that survive idle spells, in 16 bytes per user, so that the cohort
//! clusterer can read every user's habits without a second per-user table.
//!
//! Layout. `hours_bytes` packs eight 6-bit counts of active minutes, one per
//! three-hour bin of the UTC day (bin 0 is 00:00-02:59), in bits 0..48, and
//! a moving average of `log2(1 + bytes)` per successful response, as 8.8 fixed
//! point plus one (0 means "no response yet"), in bits 48..64. `routes`
//! packs eight 8-bit arrival counts, one per route class.
//!
//! Decay: when a count would pass its maximum (63 minutes, 255 arrivals),
//! every count of that word is halved first, so the shares keep their
//! proportions while old behaviour fades (a bin holding one count drops to
//! zero at a halving: shares below about 1/64 of the busiest bin are lost).
//! The byte average weighs each new response 1/8.
//!
//! Every update is one compare-and-swap loop on one word, without locks;
//! updates of the same user from several threads may retry but never lose
//! a count.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::activity::{route_index, ROUTE_CLASSES};

/// Bins of the day in the activity-hours signature (three hours each).
pub const HOUR_BINS: usize = 8;

/// Hours of the day covered by one bin.
pub const HOURS_PER_BIN: u64 = 24 / HOUR_BINS as u64;

const MS_PER_MINUTE: u64 = 60_000;
const MS_PER_HOUR: u64 = 3_600_000;
const HOUR_BITS: u32 = 6;
const HOUR_MAX: u64 = (1 << HOUR_BITS) - 1;
const HOURS_FIELD: u64 = (1 << (HOUR_BITS * HOUR_BINS as u32)) - 1;
const BYTES_SHIFT: u32 = 48;
const ROUTE_MAX: u64 = 0xff;

/// Weight of a new response in the byte average: `1 / 2^BYTES_EWMA_SHIFT`.
const BYTES_EWMA_SHIFT: u32 = 3;

/// The bin of the UTC day that `t_ms` (Unix milliseconds) falls in.
pub fn hour_bin(t_ms: u64) -> usize {
    ((t_ms / MS_PER_HOUR % 24) / HOURS_PER_BIN) as usize
}

/// A plain copy of an [`ActivitySignature`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureValues {
    /// Decayed active minutes per three-hour bin of the UTC day.
    pub hours: [u8; HOUR_BINS],
    /// Decayed arrivals per route class.
    pub routes: [u8; ROUTE_CLASSES],
    /// Moving average of `log2(1 + bytes)` per successful response, in
    /// 1/256ths; `None` before the first one.
    log2_bytes_fixed: Option<u16>,
}

impl SignatureValues {
    /// Share of active minutes in each bin, summing to 1; all zero before
    /// the first arrival.
    pub fn hour_mix(&self) -> [f64; HOUR_BINS] {
        shares(&self.hours)
    }

    /// Share of arrivals in each route class, summing to 1; all zero
    /// before the first arrival.
    pub fn route_mix(&self) -> [f64; ROUTE_CLASSES] {
        shares(&self.routes)
    }

    /// Moving average of `log2(1 + bytes)` over successful responses
    /// (0 for empty bodies, 20 for 1 MiB), `None` before the first one.
    pub fn log2_bytes(&self) -> Option<f64> {
        self.log2_bytes_fixed.map(|v| f64::from(v) / 256.0)
    }
}

/// Counts as shares of their sum, or all zero when the sum is zero.
fn shares<const N: usize>(counts: &[u8; N]) -> [f64; N] {
    let total: u32 = counts.iter().map(|&c| u32::from(c)).sum();
    if total == 0 {
        return [0.0; N];
    }
    counts.map(|c| f64::from(c) / f64::from(total))
}

/// One user's decayed habits; see the module docs.
#[derive(Debug, Default)]
pub struct ActivitySignature {
    hours_bytes: AtomicU64,
    routes: AtomicU64,
}

impl ActivitySignature {
    /// Notes an arrival at `now_ms` (Unix milliseconds) in `route_class`
    /// (clamped like the activity counters). `previous_ms` is the user's
    /// previous arrival, if any: the arrival counts as a new active minute
    /// only when it falls in a different minute, so a burst of requests
    /// weighs as much in the hours signature as a single one.
    pub fn record_arrival(&self, now_ms: u64, route_class: u8, previous_ms: Option<u64>) {
        let shift = 8 * route_index(route_class) as u32;
        update(&self.routes, |word| bump(word, shift, 8, ROUTE_MAX));

        let same_minute = previous_ms.is_some_and(|p| p / MS_PER_MINUTE == now_ms / MS_PER_MINUTE);
        if !same_minute {
            let shift = HOUR_BITS * hour_bin(now_ms) as u32;
            update(&self.hours_bytes, |word| {
                let hours = bump(word & HOURS_FIELD, shift, HOUR_BITS, HOUR_MAX);
                (word & !HOURS_FIELD) | hours
            });
        }
    }

    /// Folds a successful response of `bytes` body bytes into the moving
    /// average. The caller decides what counts as successful (the user
    /// windows pass 2xx responses only, so that empty 304s and errors do
    /// not drag the figure down).
    pub fn record_response_bytes(&self, bytes: u64) {
        // log2(1 + bytes) in 1/256ths: at most 64 * 256 = 16 384.
        let sample = ((bytes as f64).ln_1p() / std::f64::consts::LN_2 * 256.0).round() as i64;
        update(&self.hours_bytes, |word| {
            let stored = (word >> BYTES_SHIFT) as i64;
            let next = if stored == 0 {
                sample
            } else {
                let current = stored - 1;
                current + ((sample - current) >> BYTES_EWMA_SHIFT)
            };
            let field = (next.clamp(0, i64::from(u16::MAX) - 1) + 1) as u64;
            (word & HOURS_FIELD) | (field << BYTES_SHIFT)
        });
    }

    /// A plain copy of the counts (two independent loads).
    pub fn load(&self) -> SignatureValues {
        let hours_bytes = self.hours_bytes.load(Ordering::Relaxed);
        let routes = self.routes.load(Ordering::Relaxed);
        let bytes_field = (hours_bytes >> BYTES_SHIFT) as u16;
        SignatureValues {
            hours: std::array::from_fn(|i| {
                ((hours_bytes >> (HOUR_BITS * i as u32)) & HOUR_MAX) as u8
            }),
            routes: std::array::from_fn(|i| ((routes >> (8 * i)) & ROUTE_MAX) as u8),
            log2_bytes_fixed: bytes_field.checked_sub(1),
        }
    }
}

/// Applies `f` to `word` atomically. Relaxed: each word is self-contained
/// and orders nothing else.
fn update(word: &AtomicU64, f: impl Fn(u64) -> u64) {
    // The closure never returns None, so fetch_update cannot fail.
    let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(f(w)));
}

/// Adds one to the `width`-bit field at `shift` of `packed`, halving every
/// field of the word first when that one is at `max`.
fn bump(packed: u64, shift: u32, width: u32, max: u64) -> u64 {
    let mut packed = packed;
    if (packed >> shift) & max == max {
        let fields = 64 / width;
        let mut halved = 0;
        for i in 0..fields {
            let s = i * width;
            halved |= (((packed >> s) & max) / 2) << s;
        }
        packed = halved;
    }
    packed + (1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = MS_PER_HOUR;

    #[test]
    fn hour_bins_split_the_utc_day_in_eight() {
        assert_eq!(hour_bin(0), 0);
        assert_eq!(hour_bin(3 * HOUR - 1), 0);
        assert_eq!(hour_bin(3 * HOUR), 1);
        assert_eq!(hour_bin(23 * HOUR + 59 * 60_000), 7);
        assert_eq!(hour_bin(24 * HOUR + 10 * HOUR), 3, "days wrap");
    }

    #[test]
    fn a_burst_in_one_minute_is_one_active_minute_but_many_arrivals() {
        let s = ActivitySignature::default();
        let t = 100 * 24 * HOUR + 10 * HOUR; // 10:00 UTC, bin 3
        s.record_arrival(t, 2, None);
        for i in 1..10 {
            s.record_arrival(t + i * 1_000, 2, Some(t + (i - 1) * 1_000));
        }
        s.record_arrival(t + 60_000, 5, Some(t + 9_000));
        let v = s.load();
        assert_eq!(v.hours[3], 2, "two distinct minutes");
        assert_eq!(v.routes[2], 10);
        assert_eq!(v.routes[5], 1);
        assert_eq!(v.hour_mix()[3], 1.0);
        assert!((v.route_mix()[2] - 10.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn saturating_counts_halve_the_whole_word_and_keep_proportions() {
        let s = ActivitySignature::default();
        for i in 0..900u64 {
            s.record_arrival(i * 60_000, u8::from(i % 3 == 0), None);
        }
        let v = s.load();
        let mix = v.route_mix();
        assert!(v.routes[0] < 255 && v.routes[1] < 255);
        assert!((mix[1] - 1.0 / 3.0).abs() < 0.05, "share kept: {mix:?}");
        // 900 distinct minutes from 00:00 fill bins 0 to 4; every bin
        // stays within its 6 bits and the latest bin is the heaviest.
        assert!(v.hours.iter().all(|&h| u64::from(h) <= HOUR_MAX));
        assert!(v.hours[4] > v.hours[0], "{:?}", v.hours);
    }

    #[test]
    fn byte_average_starts_at_the_first_response_and_moves_an_eighth() {
        let s = ActivitySignature::default();
        assert_eq!(s.load().log2_bytes(), None);
        s.record_response_bytes(1023); // log2(1024) = 10
        assert_eq!(s.load().log2_bytes(), Some(10.0));
        s.record_response_bytes((1 << 18) - 1); // 18: moves 1/8 of 8
        let v = s.load().log2_bytes().unwrap();
        assert!((v - 11.0).abs() < 0.01, "{v}");
        s.record_response_bytes(0);
        assert!(s.load().log2_bytes().unwrap() < v);
    }

    #[test]
    fn byte_updates_leave_the_hours_alone_and_vice_versa() {
        let s = ActivitySignature::default();
        s.record_arrival(5 * HOUR, 0, None);
        s.record_response_bytes(u64::MAX);
        s.record_arrival(5 * HOUR + 120_000, 0, Some(5 * HOUR));
        let v = s.load();
        assert_eq!(v.hours[1], 2);
        assert_eq!(v.log2_bytes(), Some(64.0));
    }

    #[test]
    fn concurrent_arrivals_lose_no_count_below_saturation() {
        let s = ActivitySignature::default();
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let s = &s;
                scope.spawn(move || {
                    for _ in 0..50 {
                        s.record_arrival(0, t, Some(0));
                    }
                });
            }
        });
        assert_eq!(&s.load().routes[..4], &[50, 50, 50, 50]);
    }
}
