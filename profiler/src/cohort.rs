//! Cohorts: groups of users who behave alike, so that sparse users can
//! borrow their group's shape and the next-action model can learn per group.
//!
//! Most users of a service send too few requests for a model of their own.
//! Grouping them by how they behave (rate, response sizes, session length,
//! route-class mix, hours of activity) and by who they are (role, location,
//! device) gives every user a cohort with enough data: its daily shape, its
//! route mix, its transition counts.
//!
//! How it runs: a background task calls [`Clusterer::recluster_table`] every
//! few minutes. It samples up to a few thousand users, standardises their
//! [`BehaviourFeatures`], fits k-means++ for every k up to eight and keeps the
//! k with the best silhouette (or one cohort when there is no real structure),
//! then assigns every tracked user to the nearest centre and writes the
//! cohort into the user's [`LastAction`](crate::next_action::LastAction)
//! word, where the hot path picks it up. The result is an immutable
//! [`CohortSet`] to publish (e.g. behind an `ArcSwap`) for the forecaster and
//! `GET /v1/cohorts`.
//!
//! Ids are stable: each new centre is matched to the previous clustering's
//! centres (an optimal assignment on distance, in the new scale), and keeps
//! the matched id; a centre that matches none gets a free id and a new
//! [`Cohort::incarnation`], so consumers know to drop what they learnt under
//! an id that now means something else. Names come from each cohort's
//! dominant traits (see [`CohortNames`]).
//!
//! Everything is deterministic for a given seed and input; time is only
//! ever an argument.

mod clusterer;
mod features;
pub(crate) mod kmeans;
mod naming;
mod select;
pub mod signature;

#[cfg(test)]
mod tests;

pub use clusterer::{Clusterer, UserSample};
pub use features::{BehaviourFeatures, UserAttributes, ATTRIBUTE_VALUES};
pub use naming::CohortNames;
pub use signature::{ActivitySignature, SignatureValues, HOUR_BINS};

use serde::{Deserialize, Serialize};

use crate::activity::ROUTE_CLASSES;
use features::{Standardiser, Vector};

/// Most cohorts at once; ids are `0..MAX_COHORTS`.
pub const MAX_COHORTS: usize = 8;

/// A cohort's id, `0..MAX_COHORTS`, stable across re-clusterings while the
/// cohort keeps matching (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct CohortId(u8);

impl CohortId {
    /// The id `index`, `None` unless `index < MAX_COHORTS`.
    pub fn new(index: u8) -> Option<Self> {
        (usize::from(index) < MAX_COHORTS).then_some(Self(index))
    }

    /// The id as an index into per-cohort arrays.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl TryFrom<u8> for CohortId {
    type Error = CohortError;

    fn try_from(index: u8) -> Result<Self, CohortError> {
        Self::new(index).ok_or(CohortError::BadId { index })
    }
}

impl From<CohortId> for u8 {
    fn from(id: CohortId) -> u8 {
        id.0
    }
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CohortError {
    /// A [`CohortConfig`] field is out of range.
    #[error("invalid cohort config: {field} {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// What was expected.
        reason: &'static str,
    },
    /// A cohort id is not below [`MAX_COHORTS`].
    #[error("cohort id must be below {MAX_COHORTS}, got {index}")]
    BadId {
        /// The id given.
        index: u8,
    },
}

/// How cohorts are fitted. The defaults suit a table of up to a few hundred
/// thousand users re-clustered every few minutes: with them, re-clustering
/// 60 000 users took about 0.5 s of one core in a release build (mostly the
/// k-means fits on the 4 096-user sample), so it belongs in a background
/// task, never on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortConfig {
    /// Largest number of cohorts tried, 1 to [`MAX_COHORTS`]. Default 8.
    pub max_k: usize,
    /// Below this many users there is one cohort. At least 2. Default 30.
    pub min_users: usize,
    /// Users the clustering is fitted on (picked by a hash of their key, so
    /// the same users are picked while they stay). At least 10. Default
    /// 4 096.
    pub fit_sample: usize,
    /// Users the silhouette is computed on (quadratic cost). At least 10.
    /// Default 800.
    pub silhouette_sample: usize,
    /// Below this best silhouette there is one cohort; in `[-1, 1]`.
    /// Default 0.25.
    pub min_silhouette: f64,
    /// A fit with a cluster smaller than this share of the sample is not
    /// considered; in `[0, 0.5)`. Default 0.02.
    pub min_cluster_share: f64,
    /// k-means++ restarts per k (the best is kept). At least 1. Default 3.
    pub restarts: usize,
    /// Lloyd iterations per restart, at most. At least 1. Default 50.
    pub max_iterations: usize,
    /// Seed of every random choice. Default 0x4845_4144 ("HEAD").
    pub seed: u64,
    /// Words used in cohort names.
    pub names: CohortNames,
}

impl Default for CohortConfig {
    fn default() -> Self {
        Self {
            max_k: MAX_COHORTS,
            min_users: 30,
            fit_sample: 4_096,
            silhouette_sample: 800,
            min_silhouette: 0.25,
            min_cluster_share: 0.02,
            restarts: 3,
            max_iterations: 50,
            seed: 0x4845_4144,
            names: CohortNames::default(),
        }
    }
}

impl CohortConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// The first field out of range, as [`CohortError::Config`].
    pub fn validate(&self) -> Result<(), CohortError> {
        let check = |ok: bool, field, reason| {
            if ok {
                Ok(())
            } else {
                Err(CohortError::Config { field, reason })
            }
        };
        check(
            (1..=MAX_COHORTS).contains(&self.max_k),
            "max_k",
            "must be 1 to 8",
        )?;
        check(self.min_users >= 2, "min_users", "must be at least 2")?;
        check(self.fit_sample >= 10, "fit_sample", "must be at least 10")?;
        check(
            self.silhouette_sample >= 10,
            "silhouette_sample",
            "must be at least 10",
        )?;
        check(
            (-1.0..=1.0).contains(&self.min_silhouette),
            "min_silhouette",
            "must be in [-1, 1]",
        )?;
        check(
            (0.0..0.5).contains(&self.min_cluster_share),
            "min_cluster_share",
            "must be in [0, 0.5)",
        )?;
        check(self.restarts >= 1, "restarts", "must be at least 1")?;
        check(
            self.max_iterations >= 1,
            "max_iterations",
            "must be at least 1",
        )
    }
}

/// One cohort of a [`CohortSet`], with aggregates over all its members.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// Stable id.
    pub id: CohortId,
    /// Name from its dominant traits, unique within the set.
    pub name: String,
    /// Bumped (from a clusterer-wide counter) whenever an id starts to mean
    /// a new group; unchanged while the cohort keeps matching.
    pub incarnation: u64,
    /// Users assigned to it.
    pub members: usize,
    /// Mean long-run rate of its members, requests per minute.
    pub mean_requests_per_min: f64,
    /// Sum of its members' current smoothed rates, requests per second.
    pub total_smoothed_rps: f64,
    /// Mean of its members' `log2(1 + bytes)` per response, `None` if no
    /// member had a response.
    pub mean_log2_bytes: Option<f64>,
    /// Mean current session length of its members, minutes.
    pub mean_session_min: f64,
    /// Mean route-class mix of its members (sums to 1, or all zero).
    pub route_mix: [f64; ROUTE_CLASSES],
    /// Mean share of active minutes per three-hour bin of the UTC day.
    pub hour_mix: [f64; HOUR_BINS],
    /// Hour-of-day activity factors (UTC), mean 1 over the day: the
    /// three-hour mix interpolated between bin centres. A forecaster scales
    /// it by a level: `level * hourly_shape[hour]`. All 1 without data.
    pub hourly_shape: [f64; 24],
    /// Centre in raw feature space (for matching the next clustering).
    #[serde(skip)]
    pub(crate) raw_centre: Vector,
}

/// The result of one clustering: immutable, cheap to share.
#[derive(Debug, Clone, Serialize)]
pub struct CohortSet {
    /// Counts clusterings by the same [`Clusterer`], from 1.
    pub generation: u64,
    /// When it was computed (ms, the profiler clock).
    pub computed_at_ms: u64,
    /// Users assigned.
    pub users: usize,
    /// Users the fit used.
    pub sampled: usize,
    /// Mean silhouette of the chosen fit, `None` for one cohort.
    pub silhouette: Option<f64>,
    /// Silhouette of every k tried.
    pub silhouette_by_k: Vec<(usize, f64)>,
    /// The cohorts, by id.
    pub cohorts: Vec<Cohort>,
    #[serde(skip)]
    standardiser: Option<Standardiser>,
    #[serde(skip)]
    centres: Vec<(CohortId, Vector)>,
}

impl CohortSet {
    /// A set with no cohorts (before the first clustering).
    pub fn empty() -> Self {
        Self {
            generation: 0,
            computed_at_ms: 0,
            users: 0,
            sampled: 0,
            silhouette: None,
            silhouette_by_k: Vec::new(),
            cohorts: Vec::new(),
            standardiser: None,
            centres: Vec::new(),
        }
    }

    /// Number of cohorts (the k chosen).
    pub fn k(&self) -> usize {
        self.cohorts.len()
    }

    /// The cohort with `id`, if any.
    pub fn get(&self, id: CohortId) -> Option<&Cohort> {
        self.cohorts.iter().find(|c| c.id == id)
    }

    /// The cohort nearest to `features`, `None` for an empty set.
    pub fn assign(&self, features: &BehaviourFeatures) -> Option<CohortId> {
        let standardiser = self.standardiser.as_ref()?;
        let point = standardiser.apply(&features::raw_vector(features));
        self.nearest(&point)
    }

    /// The id of the centre nearest to a standardised point.
    fn nearest(&self, point: &Vector) -> Option<CohortId> {
        self.centres
            .iter()
            .map(|(id, c)| (*id, kmeans::dist2(c, point)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id)
    }
}
