//! Live per-user behaviour for Headroom: what each user is doing right now.
//!
//! On every request the proxy hashes the user's identity to a `u64` key,
//! looks the user up in a [`UserTable`], records the arrival into the user's
//! [`UserWindows`], reads the user's smoothed rate for the
//! `x-headroom-forecast-rps` header, and on the response records status,
//! bytes and latency. This crate holds that state, and the forecaster,
//! the admin API and the sweeper read it back.
//!
//! It has no proxy dependency so that it can be tested and benchmarked
//! alone, and it never reads the system clock itself: every call takes
//! `now_ms` from an injected [`Clock`] ([`SystemClock`] in the proxy,
//! [`ManualClock`] or log timestamps in tests, `eval` and replays), so runs
//! on simulated time are deterministic.
//!
//! Hot-path contract: for a user already in the table, lookup, recording and
//! reading the smoothed rate take no lock beyond a shard read lock during
//! the lookup, allocate nothing and format nothing.
//!
//! Modules, one concept each:
//! - [`clock`]: the injected time source.
//! - [`window`]: the exact single-counter sliding window (the request series).
//! - [`multi_window`]: a sliding window of several counters sharing a tag.
//! - [`activity`]: the per-bucket response, byte, latency and route counters.
//! - [`session`]: first and last seen, and sessions split by a pause.
//! - [`user`]: one user's windows and smoothed rate; [`snapshot`]: a plain
//!   copy of them.
//! - [`table`]: the bounded concurrent map of users, with idle eviction.
//! - [`cohort`]: users grouped by behaviour and attributes, re-clustered in
//!   the background, with stable ids and names.
//! - [`next_action`]: per-cohort likelihood of each route class within a
//!   horizon, learnt online from transitions, calibrated, replayable.
//! - [`sensitivity`]: per-user latency sensitivity from reactions to slow
//!   responses.
//! - [`events`]: declared campaigns and launches, and their measured effect.
//!
//! Memory: about 930 bytes per tracked user at the default 60 x 1 s window
//! with an 8-byte proxy payload, map slot included
//! ([`UserTable::bytes_per_user`]).
//!
//! Known limitations: the per-user latency is a mean (no histogram or
//! percentile fits the 1 KiB budget); counts recorded into an entry after it
//! was evicted or removed are lost; each window's accuracy notes are in its
//! module docs.

// Tests may unwrap; the library itself is still linted for it, since
// `clippy --all-targets` also checks the non-test build.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod activity;
pub mod clock;
pub mod cohort;
pub mod events;
pub mod forecast;
pub mod multi_window;
pub mod next_action;
pub mod sensitivity;
pub mod session;
pub mod snapshot;
pub mod table;
pub mod user;
pub mod window;

#[cfg(test)]
mod stress;

pub use activity::{ActivityTotals, ROUTE_CLASSES};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cohort::{
    BehaviourFeatures, Clusterer, Cohort, CohortConfig, CohortId, CohortNames, CohortSet,
    UserAttributes, UserSample,
};
pub use events::{Event, EventBook, EventError, EventId, Scope};
pub use forecast::{AccuracyTracker, DemandForecaster, Forecast, Forecaster, Seasonality};
pub use multi_window::{BucketCounters, MultiWindow};
pub use next_action::{
    ActionMark, NextActionConfig, NextActionModel, NextActionTable, ReplayConfig, Transition,
};
pub use sensitivity::{LatencySignals, ResponseSpeed, SensitivityConfig};
pub use session::Sessions;
pub use snapshot::UserSnapshot;
pub use table::{
    KeyHasher, TableConfig, TableConfigError, TableFull, TableTotals, UserEntry, UserTable,
};
pub use user::{UserShape, UserWindows, ACTIVITY_BUCKETS};
pub use window::{Window, WindowError, WindowShape};
