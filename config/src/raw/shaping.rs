//! The YAML shape of predictive shaping: prediction conditions inside
//! `rules[].when`, `tiering` and `preallocate`. Loose types, like the rest
//! of the raw layer; `validate::shaping` checks them.

use serde::Deserialize as DeriveDeserialize;

use super::{Field, RawCondition, Scalar};

/// `rules[].when.next_action`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNextAction {
    /// Route name or `other`; required.
    #[serde(default)]
    pub route: Field<String>,
    /// How far ahead, a duration 1s..=1h; required.
    #[serde(default)]
    pub within: Field<Scalar>,
    /// Likelihood threshold, number in [0, 1); required.
    #[serde(default)]
    pub likelihood_above: Field<Scalar>,
}

/// `tiering`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTiering {
    /// Least time between two tier changes of a user, a duration 0s..=24h.
    /// Default `5m`.
    #[serde(default)]
    pub min_dwell: Field<Scalar>,
}

/// `preallocate`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPreallocate {
    /// Who is pre-allocated; required, with a predictive condition.
    #[serde(default)]
    pub when: Field<RawCondition>,
    /// Reservation length, a duration 1s..=1h. Default `15m`.
    #[serde(default)]
    pub horizon: Field<Scalar>,
    /// Slots per user, integer 1..=64. Default 1.
    #[serde(default)]
    pub slots_per_user: Field<Scalar>,
    /// Slots for everyone together, integer 1..=100000. Default 8.
    #[serde(default)]
    pub max_reserved_slots: Field<Scalar>,
    /// Application hook. Default none.
    #[serde(default)]
    pub hook: Field<RawHook>,
}

/// `preallocate.hook`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHook {
    /// `http://IP:PORT/path`; required.
    #[serde(default)]
    pub url: Field<String>,
    /// Call time limit, a duration 1ms..=10s. Default `200ms`.
    #[serde(default)]
    pub timeout: Field<Scalar>,
    /// Calls at once, integer 1..=64. Default 4.
    #[serde(default)]
    pub max_in_flight: Field<Scalar>,
    /// Waiting calls at most, integer 1..=65536. Default 256.
    #[serde(default)]
    pub queue: Field<Scalar>,
}
