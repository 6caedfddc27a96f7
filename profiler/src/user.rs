//! One user's live behaviour: the state the proxy updates on every request.
//!
//! [`UserWindows`] combines a request [`Window`] (the per-bucket series the
//! forecaster reads), an activity [`MultiWindow`] (responses, errors, bytes,
//! latency and route mix in a few coarse buckets over the same span),
//! [`Sessions`], and a cached smoothed request rate. The hot path calls
//! [`UserWindows::record_arrival`], [`UserWindows::smoothed_rps`] and
//! [`UserWindows::record_response`]; none of them locks or allocates.
//!
//! Three small atomic records ride along for the models that need a user's
//! history beyond the window: the latest arrival and cohort
//! ([`LastAction`], for the next-action model), decayed hours and route
//! habits ([`ActivitySignature`], for cohorts), and reactions to slow
//! responses ([`LatencySignals`], for latency sensitivity).
//!
//! Memory with the default shape (1 s x 60 buckets): 240 bytes of request
//! buckets, 240 bytes of activity buckets and 176 bytes inline, 656 in all;
//! [`UserShape::bytes_per_user`] gives the figure for any shape.

use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::activity::{ActivityCounters, ActivityTotals};
use crate::cohort::ActivitySignature;
use crate::multi_window::MultiWindow;
use crate::next_action::{LastAction, Transition};
use crate::sensitivity::LatencySignals;
use crate::session::Sessions;
use crate::snapshot::{per_sec, ratio, UserSnapshot};
use crate::window::{Window, WindowError, WindowShape};

/// Buckets of the activity window. Three coarse buckets over the request
/// window's span keep the activity counters at 240 bytes per user while
/// covering at least two thirds of the span.
pub const ACTIVITY_BUCKETS: u32 = 3;

/// Half-life of the smoothed rate as a share of the window span: 10 s for
/// the default 60 s window.
const SMOOTHING_HALF_LIFE_SHARE: f64 = 1.0 / 6.0;

/// The validated geometry shared by every user of a table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserShape {
    requests: WindowShape,
    activity: WindowShape,
    session_gap_ms: u64,
    /// Weight of a bucket relative to the next newer one in the smoothed
    /// rate: `0.5 ^ (1 / half-life in buckets)`, in `(0, 1)`.
    decay_per_bucket: f64,
}

impl UserShape {
    /// Default pause that ends a session: 30 minutes.
    pub const DEFAULT_SESSION_GAP_MS: u64 = 30 * 60 * 1_000;

    /// A shape with a request window of `buckets` buckets of `bucket_ms`
    /// (see [`WindowShape::new`] for the limits) and sessions split by
    /// pauses longer than `session_gap_ms` (0 makes every pause a new
    /// session).
    ///
    /// # Errors
    /// A [`WindowError`] when `bucket_ms` or `buckets` is out of range.
    pub fn new(bucket_ms: u64, buckets: u32, session_gap_ms: u64) -> Result<Self, WindowError> {
        let requests = WindowShape::new(bucket_ms, buckets)?;
        let activity_bucket_ms = requests.span_ms().div_ceil(u64::from(ACTIVITY_BUCKETS));
        let activity = WindowShape::new(activity_bucket_ms, ACTIVITY_BUCKETS)?;
        let half_life_buckets = f64::from(buckets) * SMOOTHING_HALF_LIFE_SHARE;
        Ok(Self {
            requests,
            activity,
            session_gap_ms,
            decay_per_bucket: 0.5_f64.powf(1.0 / half_life_buckets),
        })
    }

    /// Geometry of the request window.
    pub fn requests(&self) -> WindowShape {
        self.requests
    }

    /// Geometry of the activity window: [`ACTIVITY_BUCKETS`] buckets of
    /// `ceil(span / ACTIVITY_BUCKETS)` ms.
    pub fn activity(&self) -> WindowShape {
        self.activity
    }

    /// A pause longer than this (ms) between activity and the next arrival
    /// starts a new session.
    pub fn session_gap_ms(&self) -> u64 {
        self.session_gap_ms
    }

    /// Half-life of the smoothed rate in milliseconds: a sixth of the span.
    pub fn smoothing_half_life_ms(&self) -> f64 {
        self.requests.span_ms() as f64 * SMOOTHING_HALF_LIFE_SHARE
    }

    /// Bytes one [`UserWindows`] of this shape occupies, inline and on the
    /// heap (allocator rounding excluded).
    pub fn bytes_per_user(&self) -> usize {
        size_of::<UserWindows>()
            + Window::heap_bytes_for(self.requests)
            + MultiWindow::<ActivityCounters>::heap_bytes_for(self.activity)
    }
}

impl Default for UserShape {
    /// 60 buckets of 1 s and a 30 minute session gap.
    fn default() -> Self {
        Self::new(1_000, 60, Self::DEFAULT_SESSION_GAP_MS)
            .expect("the default shape is within every limit")
    }
}

/// One user's behaviour; see the module docs.
#[derive(Debug)]
pub struct UserWindows {
    requests: Window,
    activity: MultiWindow<ActivityCounters>,
    sessions: Sessions,
    requests_total: AtomicU64,
    /// Cached smoothed rate: the low 32 bits of the period it was computed
    /// for, then the rate as `f32` bits. Starts as (period 0, rate 0.0),
    /// which is the correct value for period 0.
    smoothed: AtomicU64,
    session_gap_ms: u64,
    decay_per_bucket: f64,
    last_action: LastAction,
    signature: ActivitySignature,
    latency: LatencySignals,
}

impl UserWindows {
    /// Empty windows of the given shape, for a user never seen yet.
    pub fn new(shape: &UserShape) -> Self {
        Self {
            requests: Window::new(shape.requests),
            activity: MultiWindow::new(shape.activity),
            sessions: Sessions::default(),
            requests_total: AtomicU64::new(0),
            smoothed: AtomicU64::new(0),
            session_gap_ms: shape.session_gap_ms,
            decay_per_bucket: shape.decay_per_bucket,
            last_action: LastAction::default(),
            signature: ActivitySignature::default(),
            latency: LatencySignals::default(),
        }
    }

    /// Records an arrival at `now_ms` in route class `route_class` (0 to 7;
    /// larger values count as class 7) carrying `bytes_in` request bytes.
    ///
    /// Counted whether or not the request is later admitted: this is demand.
    /// Returns the transition from the user's previous arrival, for
    /// [`NextActionModel::observe`](crate::NextActionModel::observe).
    pub fn record_arrival(&self, now_ms: u64, route_class: u8, bytes_in: u64) -> Transition {
        self.mark_arrival(now_ms);
        self.requests.add(now_ms, 1);
        // Relaxed: a statistic, read without ordering against anything.
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.activity
            .record(now_ms, |c| c.add_arrival(route_class, bytes_in));
        let transition = self.last_action.record(now_ms, route_class);
        let previous_ms = transition.from.map(|f| f.at_ms);
        self.signature
            .record_arrival(now_ms, route_class, previous_ms);
        transition
    }

    /// Records a response at `now_ms` with `status` (0 when none was sent;
    /// 500 and above count as errors, 400 to 499 separately), `bytes_out`
    /// response bytes and `latency_us` from arrival to the end of the
    /// response. Also counts as activity, without starting a session. The
    /// size of a 2xx response also feeds the long-run byte average.
    pub fn record_response(&self, now_ms: u64, status: u16, bytes_out: u64, latency_us: u64) {
        self.sessions.note(now_ms, self.session_gap_ms, false);
        self.activity
            .record(now_ms, |c| c.add_response(status, bytes_out, latency_us));
        if (200..300).contains(&status) {
            self.signature.record_response_bytes(bytes_out);
        }
    }

    /// Notes an arrival at `now_ms` for sessions and idleness without
    /// counting a request. The table calls it while it holds the user's
    /// shard, so that an evictor cannot remove a user being looked up.
    pub(crate) fn mark_arrival(&self, now_ms: u64) {
        self.sessions.note(now_ms, self.session_gap_ms, true);
    }

    /// Smoothed current request rate in requests per second: an exponentially
    /// weighted mean of the completed buckets of the request window, with a
    /// half-life of a sixth of the span (10 s by default).
    ///
    /// Cheap enough for every response: it is computed at most once per
    /// bucket period (one pass over the buckets) and cached; other calls are
    /// one atomic load. Edges: 0 until the user's first bucket has
    /// completed; it lags the current bucket by up to one bucket width;
    /// buckets before the user was first seen are left out rather than read
    /// as zeros, and the bucket of the first sighting counts as a full one,
    /// so early estimates read low by up to that bucket's share. With a
    /// one-bucket window there is no completed bucket and it is the window's
    /// plain rate instead. Never NaN or negative.
    pub fn smoothed_rps(&self, now_ms: u64) -> f64 {
        let shape = self.requests.shape();
        if shape.buckets() == 1 {
            // One slot to read, and it changes within the period: no cache.
            return self.requests.rate_per_sec(now_ms);
        }
        let period = shape.period(now_ms);
        // The cache key is the period modulo 2^32, like the window's tags.
        // Relaxed: the cache is one self-contained word; racing writers
        // store values computed from the same buckets.
        let cached = self.smoothed.load(Ordering::Relaxed);
        if (cached >> 32) as u32 == period as u32 {
            return f64::from(f32::from_bits(cached as u32));
        }
        let rate = self.compute_smoothed_rps(period) as f32;
        let word = (u64::from(period as u32) << 32) | u64::from(rate.to_bits());
        self.smoothed.store(word, Ordering::Relaxed);
        f64::from(rate)
    }

    /// The uncached smoothed rate; see [`Self::smoothed_rps`].
    fn compute_smoothed_rps(&self, period: u64) -> f64 {
        let shape = self.requests.shape();
        let Some(first_ms) = self.sessions.first_seen_ms() else {
            return 0.0;
        };

        // Completed buckets since the user was first seen, newest first.
        let seen_periods = period.saturating_sub(shape.period(first_ms));
        let depth = seen_periods.min(u64::from(shape.buckets()) - 1);
        let (mut weight, mut weighted_count, mut weight_sum) = (1.0, 0.0, 0.0);
        for age in 1..=depth {
            weighted_count += weight * self.requests.count_in(period - age) as f64;
            weight_sum += weight;
            weight *= self.decay_per_bucket;
        }
        if weight_sum == 0.0 {
            return 0.0;
        }
        weighted_count / weight_sum * 1_000.0 / shape.bucket_ms() as f64
    }

    /// The latest arrival or response time (ms), `None` if never active.
    pub fn last_seen_ms(&self) -> Option<u64> {
        self.sessions.last_seen_ms()
    }

    /// True when the user has had no activity for more than `timeout_ms`
    /// before `now_ms` (never-active users are idle; a `now_ms` before the
    /// latest activity is not).
    pub fn is_idle(&self, now_ms: u64, timeout_ms: u64) -> bool {
        self.sessions.is_idle(now_ms, timeout_ms)
    }

    /// Arrivals since the user was first seen (not windowed).
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// The request window, e.g. for [`Window::buckets`] (the forecaster's
    /// per-bucket series, oldest first).
    pub fn requests(&self) -> &Window {
        &self.requests
    }

    /// Session bookkeeping.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The latest arrival and the user's cohort.
    pub fn last_action(&self) -> &LastAction {
        &self.last_action
    }

    /// Decayed hours, route and byte habits.
    pub fn signature(&self) -> &ActivitySignature {
        &self.signature
    }

    /// Reactions to slow responses; the proxy feeds it from its hooks.
    pub fn latency(&self) -> &LatencySignals {
        &self.latency
    }

    /// The activity window's buckets ending at `now_ms`, summed.
    pub fn activity(&self, now_ms: u64) -> ActivityTotals {
        let mut totals = ActivityTotals::default();
        self.activity
            .for_each_bucket(now_ms, |_, values| totals.add(&values));
        totals
    }

    /// A plain copy of everything above as of `now_ms`. Fields are read one
    /// by one while other threads may record, so they can disagree by the
    /// requests recorded during the call.
    pub fn snapshot(&self, now_ms: u64) -> UserSnapshot {
        let window_ms = self.requests.shape().covered_ms(now_ms);
        let requests = self.requests.sum(now_ms);
        let activity_window_ms = self.activity.shape().covered_ms(now_ms);
        let a = self.activity(now_ms);
        let last_seen_ms = self.sessions.last_seen_ms();
        let session_start_ms = self.sessions.session_start_ms();
        let session_duration_ms = match (last_seen_ms, session_start_ms) {
            (Some(last), Some(start)) => last.saturating_sub(start),
            _ => 0,
        };
        UserSnapshot {
            at_ms: now_ms,
            window_ms,
            requests,
            requests_per_sec: per_sec(requests, window_ms),
            smoothed_rps: self.smoothed_rps(now_ms),
            requests_total: self.requests_total(),
            activity_window_ms,
            responses: a.responses,
            errors_5xx: a.errors_5xx,
            errors_4xx: a.errors_4xx,
            error_ratio: ratio(a.errors_5xx, a.responses),
            bytes_in: a.bytes_in,
            bytes_out: a.bytes_out,
            bytes_in_per_sec: per_sec(a.bytes_in, activity_window_ms),
            bytes_out_per_sec: per_sec(a.bytes_out, activity_window_ms),
            mean_latency_us: (a.responses > 0).then(|| a.latency_us as f64 / a.responses as f64),
            route_requests: a.routes,
            first_seen_ms: self.sessions.first_seen_ms(),
            last_seen_ms,
            session_start_ms,
            sessions: self.sessions.count(),
            session_duration_ms,
        }
    }
}

#[cfg(test)]
mod tests;
