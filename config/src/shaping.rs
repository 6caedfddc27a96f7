//! Validated settings of predictive shaping: conditions on predictions in
//! tier rules, the hysteresis of predictive tiers (`tiering`), and capacity
//! held ahead of time for users predicted to arrive (`preallocate`, with its
//! optional application hook).
//!
//! Predictions are evaluated by the proxy's background tick, never per
//! request; these types only carry what the file says.

use std::net::SocketAddr;
use std::time::Duration;

use crate::schema::Condition;

/// Most rules a config may have when any of them (or `preallocate.when`)
/// conditions on predictions: the proxy keeps, per user, one bit per rule
/// saying whether the rule's static conditions held on the latest request.
pub const MAX_PREDICTIVE_RULES: usize = 22;

/// A condition on the next-action model: "the user is likely to call
/// `route` within `within`".
#[derive(Clone, Debug, PartialEq)]
pub struct NextActionCondition {
    /// A route name from `routes`, or `other`.
    pub route: String,
    /// How far ahead, 1 s to 1 h. The model is tabulated at 1, 5, 15 and
    /// 60 minutes; the smallest of those at least this long is used.
    pub within: Duration,
    /// The likelihood must be strictly above this, in [0, 1).
    pub likelihood_above: f64,
}

/// How predictive tier assignments settle (`tiering`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiering {
    /// A user's tier changes at most once per this interval; the first
    /// assignment is immediate. `0s` disables the hysteresis. At most 24 h.
    /// Default 5 min.
    pub min_dwell: Duration,
}

impl Default for Tiering {
    fn default() -> Self {
        Tiering {
            min_dwell: Duration::from_secs(300),
        }
    }
}

/// Capacity held for users predicted to be active soon (`preallocate`).
/// Absent from the file means off.
#[derive(Clone, Debug, PartialEq)]
pub struct Preallocate {
    /// Who gets a reservation: at least one predictive condition, plus any
    /// static ones (same keys as a rule's `when`).
    pub when: Condition,
    /// How long a reservation lasts, 1 s to 1 h. Default 15 min.
    pub horizon: Duration,
    /// Admission slots held per pre-allocated user, 1 to 64. Default 1.
    pub slots_per_user: u32,
    /// Most slots held for all users together, 1 to 100 000 and below
    /// `admission.max_concurrency`. Default 8.
    pub max_reserved_slots: u32,
    /// The application's pre-allocation hook, if any.
    pub hook: Option<PreallocHook>,
}

/// `preallocate.hook`: a plain-HTTP POST to the application for every
/// reservation made, from a background worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreallocHook {
    /// The URL as written, for messages and logs.
    pub url: String,
    /// Where to connect: an IP literal and port (no DNS lookups).
    pub address: SocketAddr,
    /// The `Host` header value: the URL's authority as written.
    pub host: String,
    /// Path and query to POST to; starts with `/`.
    pub path: String,
    /// Whole-call limit (connect, send, response head). 1 ms to 10 s.
    /// Default 200 ms.
    pub timeout: Duration,
    /// Calls at once, 1 to 64. Default 4.
    pub max_in_flight: usize,
    /// Calls waiting at most, 1 to 65 536; past it new calls are dropped
    /// and counted. Default 256.
    pub queue: usize,
}

impl PreallocHook {
    /// Whether the hook would call the listener bound to `listener`: the
    /// same address, or the same port on loopback when the listener is
    /// bound to every address (`0.0.0.0` or `::`).
    #[must_use]
    pub fn targets(&self, listener: SocketAddr) -> bool {
        let (hook, bound) = (self.address, listener);
        hook.port() == bound.port()
            && (hook.ip() == bound.ip() || (bound.ip().is_unspecified() && hook.ip().is_loopback()))
    }
}

impl Condition {
    /// Whether any condition needs predictions (and so the background
    /// tick) rather than the request alone.
    #[must_use]
    pub fn is_predictive(&self) -> bool {
        self.predicted_rps_p90_above.is_some()
            || self.latency_sensitive.is_some()
            || self.next_action.is_some()
    }
}
