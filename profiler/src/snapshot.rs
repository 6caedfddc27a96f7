//! A plain, serializable copy of one user's behaviour at one instant.
//!
//! The admin API (`GET /v1/profiles/{user}`), the forecaster and the
//! snapshotter read users through this type rather than through the atomics,
//! so they get consistent units and never hold a reference into the table.

use serde::{Deserialize, Serialize};

use crate::activity::ROUTE_CLASSES;

/// One user's behaviour as of `at_ms`; built by
/// [`UserWindows::snapshot`](crate::UserWindows::snapshot).
///
/// Two windows feed it. The request window (`bucket_ms * buckets`, 60 s by
/// default) gives the request count and rate. The activity window covers
/// the same span in a few coarse buckets and gives everything measured per
/// response; it covers between two thirds of the span and the whole span,
/// depending on where `at_ms` falls in its bucket (`activity_window_ms`
/// says how much). Rates divide by the covered time, so a user first seen
/// recently reads low: use `smoothed_rps` for a current rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSnapshot {
    /// When the snapshot was taken (ms, the profiler clock).
    pub at_ms: u64,
    /// Milliseconds of history behind `requests` (at most the window span).
    pub window_ms: u64,
    /// Arrivals in the request window.
    pub requests: u64,
    /// `requests` per second of `window_ms`.
    pub requests_per_sec: f64,
    /// Smoothed current request rate in requests per second (see
    /// [`UserWindows::smoothed_rps`](crate::UserWindows::smoothed_rps)).
    pub smoothed_rps: f64,
    /// Arrivals since the user was first seen (not windowed).
    pub requests_total: u64,
    /// Milliseconds of history behind the per-response fields below.
    pub activity_window_ms: u64,
    /// Responses recorded in the activity window.
    pub responses: u64,
    /// Responses with status 500 or above.
    pub errors_5xx: u64,
    /// Responses with status 400 to 499.
    pub errors_4xx: u64,
    /// `errors_5xx / responses`, or 0 when there were no responses.
    pub error_ratio: f64,
    /// Request bytes in the activity window.
    pub bytes_in: u64,
    /// Response bytes in the activity window.
    pub bytes_out: u64,
    /// `bytes_in` per second of `activity_window_ms`.
    pub bytes_in_per_sec: f64,
    /// `bytes_out` per second of `activity_window_ms`.
    pub bytes_out_per_sec: f64,
    /// Mean response latency in microseconds, `None` without responses.
    pub mean_latency_us: Option<f64>,
    /// Arrivals per route class in the activity window.
    pub route_requests: [u64; ROUTE_CLASSES],
    /// First activity (ms), `None` if never active.
    pub first_seen_ms: Option<u64>,
    /// Latest arrival or response (ms), `None` if never active.
    pub last_seen_ms: Option<u64>,
    /// Start of the current session (ms), `None` if never active.
    pub session_start_ms: Option<u64>,
    /// Sessions started so far.
    pub sessions: u64,
    /// From the current session's start to the latest activity (ms).
    pub session_duration_ms: u64,
}

impl UserSnapshot {
    /// Share of the activity window's arrivals in each route class, each in
    /// `[0, 1]` and summing to 1; all zero when there were no arrivals.
    pub fn route_mix(&self) -> [f64; ROUTE_CLASSES] {
        let total: u64 = self.route_requests.iter().sum();
        if total == 0 {
            return [0.0; ROUTE_CLASSES];
        }
        self.route_requests.map(|n| n as f64 / total as f64)
    }
}

/// `count` per second over `covered_ms` (which is never zero).
pub(crate) fn per_sec(count: u64, covered_ms: u64) -> f64 {
    count as f64 * 1_000.0 / covered_ms.max(1) as f64
}

/// `part / whole`, or 0 when `whole` is 0.
pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_mix_is_shares_or_all_zero() {
        let mut snapshot = UserSnapshot {
            at_ms: 0,
            window_ms: 1,
            requests: 0,
            requests_per_sec: 0.0,
            smoothed_rps: 0.0,
            requests_total: 0,
            activity_window_ms: 1,
            responses: 0,
            errors_5xx: 0,
            errors_4xx: 0,
            error_ratio: 0.0,
            bytes_in: 0,
            bytes_out: 0,
            bytes_in_per_sec: 0.0,
            bytes_out_per_sec: 0.0,
            mean_latency_us: None,
            route_requests: [0; ROUTE_CLASSES],
            first_seen_ms: None,
            last_seen_ms: None,
            session_start_ms: None,
            sessions: 0,
            session_duration_ms: 0,
        };
        assert_eq!(snapshot.route_mix(), [0.0; ROUTE_CLASSES]);
        snapshot.route_requests[0] = 3;
        snapshot.route_requests[7] = 1;
        let mix = snapshot.route_mix();
        assert_eq!((mix[0], mix[7]), (0.75, 0.25));
        assert!((mix.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn helpers_never_divide_by_zero() {
        assert_eq!(per_sec(5, 0), 5_000.0);
        assert_eq!(per_sec(30, 60_000), 0.5);
        assert_eq!(ratio(1, 0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
    }
}
