//! What a user did in one bucket besides arriving: responses and their
//! status class, bytes each way, latency, and which route classes they hit.
//!
//! These counters ride in one [`MultiWindow`](crate::MultiWindow) per user so
//! that they share one period tag per bucket. They are sized for the per-user
//! memory budget: counts are 32-bit (one bucket would need more than 4.29
//! billion requests from one user to wrap them, and the window's arithmetic
//! is modular, so narrower counters are exact up to that point), sums of
//! bytes and microseconds are 64-bit. One bucket of counters takes 72 bytes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::multi_window::BucketCounters;

/// Number of route classes tracked per user. Route class indexes are
/// `0..ROUTE_CLASSES`; a larger index is counted in the last class.
pub const ROUTE_CLASSES: usize = 8;

/// One bucket of activity counters (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ActivityCounters {
    responses: AtomicU32,
    errors_5xx: AtomicU32,
    errors_4xx: AtomicU32,
    routes: [AtomicU32; ROUTE_CLASSES],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency_us: AtomicU64,
}

/// Clamps a route class index to `0..ROUTE_CLASSES`.
pub(crate) fn route_index(route_class: u8) -> usize {
    usize::from(route_class).min(ROUTE_CLASSES - 1)
}

impl ActivityCounters {
    /// Counts an arrival in `route_class` (clamped to the last class) that
    /// carried `bytes_in` request bytes.
    pub(crate) fn add_arrival(&self, route_class: u8, bytes_in: u64) {
        // Relaxed: the window orders counters against its tag; adds
        // themselves publish nothing else.
        self.routes[route_index(route_class)].fetch_add(1, Ordering::Relaxed);
        if bytes_in > 0 {
            self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        }
    }

    /// Counts a response with `status`, `bytes_out` response bytes and
    /// `latency_us` microseconds from arrival to the end of the response.
    pub(crate) fn add_response(&self, status: u16, bytes_out: u64, latency_us: u64) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors_5xx.fetch_add(1, Ordering::Relaxed);
        } else if status >= 400 {
            self.errors_4xx.fetch_add(1, Ordering::Relaxed);
        }
        if bytes_out > 0 {
            self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        }
        self.latency_us.fetch_add(latency_us, Ordering::Relaxed);
    }
}

/// A plain copy of one bucket's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActivityValues {
    responses: u32,
    errors_5xx: u32,
    errors_4xx: u32,
    routes: [u32; ROUTE_CLASSES],
    bytes_in: u64,
    bytes_out: u64,
    latency_us: u64,
}

impl BucketCounters for ActivityCounters {
    type Values = ActivityValues;

    fn load(&self) -> ActivityValues {
        let load32 = |c: &AtomicU32| c.load(Ordering::Relaxed);
        let load64 = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ActivityValues {
            responses: load32(&self.responses),
            errors_5xx: load32(&self.errors_5xx),
            errors_4xx: load32(&self.errors_4xx),
            routes: std::array::from_fn(|i| load32(&self.routes[i])),
            bytes_in: load64(&self.bytes_in),
            bytes_out: load64(&self.bytes_out),
            latency_us: load64(&self.latency_us),
        }
    }

    fn subtract(&self, v: &ActivityValues) {
        // fetch_sub wraps, the exact inverse of the wrapping fetch_add.
        let sub32 = |c: &AtomicU32, n: u32| c.fetch_sub(n, Ordering::Relaxed);
        let sub64 = |c: &AtomicU64, n: u64| c.fetch_sub(n, Ordering::Relaxed);
        sub32(&self.responses, v.responses);
        sub32(&self.errors_5xx, v.errors_5xx);
        sub32(&self.errors_4xx, v.errors_4xx);
        for (counter, &n) in self.routes.iter().zip(&v.routes) {
            sub32(counter, n);
        }
        sub64(&self.bytes_in, v.bytes_in);
        sub64(&self.bytes_out, v.bytes_out);
        sub64(&self.latency_us, v.latency_us);
    }
}

/// Activity summed over the buckets of a window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ActivityTotals {
    /// Responses recorded.
    pub responses: u64,
    /// Responses with status 500 or above.
    pub errors_5xx: u64,
    /// Responses with status 400 to 499.
    pub errors_4xx: u64,
    /// Arrivals per route class.
    pub routes: [u64; ROUTE_CLASSES],
    /// Request bytes.
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
    /// Sum of response latencies in microseconds.
    pub latency_us: u64,
}

impl ActivityTotals {
    /// Adds one bucket's values (saturating).
    pub(crate) fn add(&mut self, v: &ActivityValues) {
        self.responses = self.responses.saturating_add(u64::from(v.responses));
        self.errors_5xx = self.errors_5xx.saturating_add(u64::from(v.errors_5xx));
        self.errors_4xx = self.errors_4xx.saturating_add(u64::from(v.errors_4xx));
        for (total, &n) in self.routes.iter_mut().zip(&v.routes) {
            *total = total.saturating_add(u64::from(n));
        }
        self.bytes_in = self.bytes_in.saturating_add(v.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(v.bytes_out);
        self.latency_us = self.latency_us.saturating_add(v.latency_us);
    }

    /// Arrivals over all route classes.
    pub fn requests(&self) -> u64 {
        self.routes.iter().fold(0, |sum, &n| sum.saturating_add(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_split_5xx_from_4xx_and_count_every_response() {
        let c = ActivityCounters::default();
        for status in [0, 200, 302, 404, 429, 500, 503, 999] {
            c.add_response(status, 10, 1_000);
        }
        let mut totals = ActivityTotals::default();
        totals.add(&c.load());
        assert_eq!(totals.responses, 8);
        assert_eq!(totals.errors_4xx, 2);
        assert_eq!(totals.errors_5xx, 3);
        assert_eq!(totals.bytes_out, 80);
        assert_eq!(totals.latency_us, 8_000);
    }

    #[test]
    fn route_classes_past_the_last_are_counted_in_the_last() {
        let c = ActivityCounters::default();
        c.add_arrival(0, 100);
        c.add_arrival(7, 0);
        c.add_arrival(200, 5);
        let mut totals = ActivityTotals::default();
        totals.add(&c.load());
        assert_eq!(totals.routes, [1, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(totals.requests(), 3);
        assert_eq!(totals.bytes_in, 105);
    }

    #[test]
    fn subtract_is_the_wrapping_inverse_of_load() {
        let c = ActivityCounters::default();
        c.add_arrival(3, u64::MAX);
        c.add_response(500, 7, 9);
        let before = c.load();
        c.add_arrival(3, 2);
        c.add_response(404, 1, 1);
        c.subtract(&before);
        let mut left = ActivityTotals::default();
        left.add(&c.load());
        assert_eq!(left.routes[3], 1);
        assert_eq!(
            left.bytes_in, 2,
            "wrapping arithmetic stays exact past u64::MAX"
        );
        assert_eq!(
            (left.responses, left.errors_4xx, left.errors_5xx),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_bucket_of_counters_is_72_bytes() {
        assert_eq!(std::mem::size_of::<ActivityCounters>(), 72);
    }
}
