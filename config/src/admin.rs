//! Validated settings of the admin API and the events declared in the file.
//!
//! The admin listener serves per-user profiles, cohorts, forecasts and
//! events. Profiles are personal data, so operator access needs a token, and
//! without one the operator endpoints stay off (users can still read and
//! delete their own profile with their own credentials). Declared events
//! (campaigns, launches) tell the forecaster about demand it cannot learn
//! from the past; they are also accepted at run time by `POST /v1/events`.

use crate::identity::Secret;

/// Shortest accepted `admin_api.token`, in bytes: short enough to type into
/// the dashboard, long enough that guessing it over the network is hopeless.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// Most events a file may declare (the profiler keeps at most 1 024 pending
/// or running at once, file and API together).
pub const MAX_DECLARED_EVENTS: usize = 1_024;

/// Largest declared multiplier: an event expected to multiply demand by
/// more than this is a typo.
pub const MAX_EVENT_MULTIPLIER: f64 = 1_000.0;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 128;

/// `admin_api`: who may use the admin listener's operator endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminApi {
    /// Operator token, sent as `Authorization: Bearer <token>`; at least 16
    /// bytes, literal or `env:NAME`. `None` (the default): the operator
    /// endpoints (`/v1/cohorts`, `/v1/forecast`, `/v1/events`, other users'
    /// profiles) answer 403. `/metrics`, `/healthz`, `/dashboard` (which
    /// holds no data) and `/v1/openapi.json` need no token.
    pub token: Option<Secret>,
}

/// Which demand a declared event affects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EventScope {
    /// All traffic (the default).
    #[default]
    All,
    /// One cohort, by id (0 to 7). Cohort ids are assigned by the
    /// clusterer at run time, so this is mostly useful from the API, where
    /// `GET /v1/cohorts` shows them.
    Cohort(u8),
    /// One route class, by its name in `routes` (`other` for requests no
    /// route matches).
    Route(String),
}

/// One entry of `events`: a window of time in which demand is expected to
/// change.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredEvent {
    /// What it is (`spring-sale`); events of the same name learn each
    /// other's measured effect. 1 to 128 bytes.
    pub name: String,
    /// Start, Unix milliseconds, inclusive.
    pub start_ms: u64,
    /// End, Unix milliseconds, exclusive; after `start_ms`.
    pub end_ms: u64,
    /// Which demand it affects. Default all.
    pub scope: EventScope,
    /// Expected multiplier on demand while it runs, in `(0, 1000]`; `None`
    /// (the default) expects what earlier events of the same name, else of
    /// the same scope, measured.
    pub multiplier: Option<f64>,
}
