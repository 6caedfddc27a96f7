//! Next action: the probability that a user takes a given route class within
//! a horizon ("starts a large export within 15 minutes"), per cohort, from
//! the user's last route class and how long they have been idle.
//!
//! Model. Between two actions a user is "at risk" of acting again; how soon,
//! and in which class, depends on the class of the last action and on the
//! time since it. [`NextActionModel`] learns this as a competing-risks
//! survival model with piecewise-constant hazards: for each cohort, last
//! class `a` and idle-time bucket `b` (edges at 5 s, 15 s, 30 s, 1, 2, 5, 10,
//! 15, 30 min, 1, 2, 4 h), the rate of next actions of class `c` is the count
//! of transitions `a -> c` whose gap fell in `b`, divided by the total time
//! users with last class `a` spent idle inside `b` (the exposure). Counting
//! exposure, and not only the transitions, is what makes users who never came
//! back count: they add exposure and no event, which is exactly right for a
//! user evicted or gone (independent censoring).
//!
//! Online learning. The hot path calls [`NextActionModel::observe`] with the
//! [`Transition`] that [`UserWindows::record_arrival`] returns (one event
//! count and the exposure of the closed gap since the last tick: a few
//! relaxed `fetch_add`s on shared counters); the background tick calls
//! [`NextActionModel::begin_tick`] and [`NextActionModel::accrue`] for every
//! tracked user, adding the exposure of the open gaps. Counts carry
//! conjugate Gamma priors, shrunk in three levels (cohort and last class ->
//! all cohorts for that class -> everyone), so a cohort with little data
//! reads like everyone.
//!
//! Prediction. [`NextActionModel::build`] turns the counts into a
//! [`NextActionTable`] of probabilities of "some action of class `c` within
//! `H`", computed by dynamic programming over the hazards (after an action of
//! another class the clock restarts from that class), tabulated on a grid of
//! idle times and interpolated; it is immutable and can be published for
//! cheap lookups. A build with every cohort, target and horizon took about
//! 40 ms of one core in a release build, so rebuild it in the background
//! every few minutes. [`Calibration`] maps raw probabilities through isotonic
//! regression fitted on a holdout, and [`replay`] runs the whole loop over a
//! trace and scores it (Brier score against the base rate).
//!
//! Censoring. A user is only watched while the table holds it: once evicted,
//! its exposure stops, and if it comes back it is a new user. Near the idle
//! timeout this is lopsided (a user who returns just before eviction counts
//! an event, one who does not may be evicted before its last exposure was
//! added), which would inflate the hazards there. So the model takes a
//! censoring point ([`NextActionModel::with_censoring`], set a little below
//! the idle timeout): gaps past it count neither as events nor as exposure,
//! and hazards past it are extrapolated from the last bucket before it.
//!
//! Known approximation: exposure of a user who arrives while a tick is
//! visiting other users may be lost for that tick (a share of at most the
//! tick's duration over its interval).
//!
//! [`UserWindows::record_arrival`]: crate::UserWindows::record_arrival

mod calibrate;
pub mod last_action;
mod predict;
mod replay;

#[cfg(test)]
mod tests;

pub use calibrate::{brier_score, Calibration, Isotonic, Reliability, ReliabilityBin};
pub use last_action::{ActionMark, LastAction, Transition};
pub use predict::{NextActionConfig, NextActionTable};
pub use replay::{replay, ActionEvent, ReplayConfig, ReplayReport, TargetScore};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::activity::ROUTE_CLASSES;
use crate::cohort::{CohortError, CohortId, CohortSet, MAX_COHORTS};
use crate::user::UserWindows;

/// Upper edges (ms) of the idle-time buckets; the last bucket is open.
pub const ELAPSED_EDGES_MS: [u64; 12] = [
    5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
    7_200_000, 14_400_000,
];

/// Number of idle-time buckets.
pub const ELAPSED_BUCKETS: usize = ELAPSED_EDGES_MS.len() + 1;

/// Per-cohort slots: one per cohort id, plus one for users not yet in a
/// cohort.
const SLOTS: usize = MAX_COHORTS + 1;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NextActionError {
    /// A configuration field is out of range.
    #[error("invalid next-action config: {field} {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// What was expected.
        reason: &'static str,
    },
    /// The cohort settings of a replay are invalid.
    #[error("invalid cohort settings: {0}")]
    Cohort(#[from] CohortError),
    /// A replay was given no events.
    #[error("no events to replay")]
    NoEvents,
}

/// The bucket of an idle time in ms.
pub fn elapsed_bucket(elapsed_ms: u64) -> usize {
    ELAPSED_EDGES_MS.partition_point(|&edge| edge <= elapsed_ms)
}

/// Lower edge (ms) of bucket `b`.
pub(crate) fn bucket_start(b: usize) -> u64 {
    if b == 0 {
        0
    } else {
        ELAPSED_EDGES_MS[b - 1]
    }
}

/// The counter slot of a cohort (the last slot for none).
fn slot(cohort: Option<CohortId>) -> usize {
    cohort.map_or(MAX_COHORTS, CohortId::index)
}

/// The span of one background tick, from [`NextActionModel::begin_tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExposureTick {
    from_ms: Option<u64>,
    to_ms: u64,
}

/// Transition and exposure counts; see the module docs.
#[derive(Debug)]
pub struct NextActionModel {
    /// `[slot][from][bucket][to]` transition counts.
    events: Box<[AtomicU64]>,
    /// `[slot][from][bucket]` idle time in ms.
    exposure_ms: Box<[AtomicU64]>,
    /// Time of the latest tick plus one; 0 before the first.
    last_tick_plus_one: AtomicU64,
    /// The cohort incarnation each slot's counts belong to.
    incarnations: [AtomicU64; MAX_COHORTS],
    /// Idle time (ms) past which nothing is counted.
    censor_after_ms: u64,
    /// Bit `s` set when slot `s` belongs to a cohort of the latest
    /// clustering (or to no cohort); only those get their own table.
    live_slots: AtomicU64,
}

impl Default for NextActionModel {
    fn default() -> Self {
        Self::new()
    }
}

/// A plain copy of the counts, for building tables.
#[derive(Debug, Clone)]
pub(crate) struct Counts {
    pub events: Vec<f64>,
    pub exposure_ms: Vec<f64>,
}

pub(crate) fn event_index(slot: usize, from: usize, bucket: usize, to: usize) -> usize {
    ((slot * ROUTE_CLASSES + from) * ELAPSED_BUCKETS + bucket) * ROUTE_CLASSES + to
}

pub(crate) fn exposure_index(slot: usize, from: usize, bucket: usize) -> usize {
    (slot * ROUTE_CLASSES + from) * ELAPSED_BUCKETS + bucket
}

impl NextActionModel {
    /// A model with no counts (about 60 KiB of counters) that counts every
    /// gap, for users watched until they come back (offline traces).
    pub fn new() -> Self {
        Self::with_censoring(u64::MAX)
    }

    /// A model that counts idle time only up to `censor_after_ms`: gaps
    /// longer than that add exposure up to it and no event (see the module
    /// docs). For a table that evicts users idle longer than `T` and a tick
    /// (or sweep) interval `I`, use `T - I` or less.
    pub fn with_censoring(censor_after_ms: u64) -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            events: zeros(SLOTS * ROUTE_CLASSES * ELAPSED_BUCKETS * ROUTE_CLASSES),
            exposure_ms: zeros(SLOTS * ROUTE_CLASSES * ELAPSED_BUCKETS),
            last_tick_plus_one: AtomicU64::new(0),
            incarnations: std::array::from_fn(|_| AtomicU64::new(0)),
            censor_after_ms,
            live_slots: AtomicU64::new((1 << SLOTS) - 1),
        }
    }

    /// Learns from one arrival: counts the transition (if the user had a
    /// previous arrival) and the exposure of its gap not yet counted by a
    /// tick. Relaxed atomic adds only; for the hot path.
    pub fn observe(&self, transition: &Transition) {
        let (Some(from), Some(gap)) = (transition.from, transition.gap_ms()) else {
            return;
        };
        let s = slot(transition.cohort);
        let class = usize::from(from.route_class);
        let counted = self
            .last_tick()
            .map_or(0, |tick| tick.saturating_sub(from.at_ms))
            .min(gap);
        self.add_exposure(s, class, counted, gap);
        if gap >= self.censor_after_ms {
            return;
        }
        let to = usize::from(transition.to.route_class);
        self.events[event_index(s, class, elapsed_bucket(gap), to)].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts a background tick at `now_ms`: the exposure of open gaps up to
    /// `now_ms` is then added by [`Self::accrue`] for every tracked user.
    pub fn begin_tick(&self, now_ms: u64) -> ExposureTick {
        let previous = self
            .last_tick_plus_one
            .swap(now_ms.saturating_add(1), Ordering::AcqRel);
        ExposureTick {
            from_ms: previous.checked_sub(1),
            to_ms: now_ms,
        }
    }

    /// Adds the exposure of one user's open gap for `tick`: the idle time
    /// since `last` that fell between the previous tick and this one.
    pub fn accrue(&self, tick: &ExposureTick, last: ActionMark, cohort: Option<CohortId>) {
        if last.at_ms >= tick.to_ms {
            return;
        }
        let start = tick.from_ms.map_or(0, |f| f.saturating_sub(last.at_ms));
        let end = tick.to_ms - last.at_ms;
        self.add_exposure(slot(cohort), usize::from(last.route_class), start, end);
    }

    /// [`Self::accrue`] for a tracked user (one atomic load).
    pub fn accrue_user(&self, tick: &ExposureTick, user: &UserWindows) {
        if let (Some(mark), cohort) = user.last_action().load() {
            self.accrue(tick, mark, cohort);
        }
    }

    /// Forgets the counts of every cohort id of `set` that now belongs to a
    /// new incarnation, so that what was learnt for an old group does not
    /// leak into a new one, and notes which ids are in use: tables are
    /// built for those only (others read like users without a cohort).
    /// Call after each re-clustering.
    pub fn sync_cohorts(&self, set: &CohortSet) {
        let live = set
            .cohorts
            .iter()
            .fold(1 << MAX_COHORTS, |mask, c| mask | (1 << c.id.index()));
        self.live_slots.store(live, Ordering::Relaxed);
        for cohort in &set.cohorts {
            let known = &self.incarnations[cohort.id.index()];
            if known.swap(cohort.incarnation, Ordering::Relaxed) != cohort.incarnation {
                self.reset_slot(cohort.id.index());
            }
        }
    }

    /// Multiplies every count by `factor` (clamped to `[0, 1]`), so that
    /// recent behaviour weighs more; e.g. 0.5 every day gives a one-day
    /// half-life. Adds racing with it may be scaled or not.
    pub fn decay(&self, factor: f64) {
        let factor = factor.clamp(0.0, 1.0);
        for cell in self.events.iter().chain(self.exposure_ms.iter()) {
            let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v as f64 * factor) as u64)
            });
        }
    }

    /// Builds the probability table; see [`NextActionTable`].
    ///
    /// # Errors
    /// [`NextActionError::Config`] if `config` is invalid.
    pub fn build(&self, config: &NextActionConfig) -> Result<NextActionTable, NextActionError> {
        config.validate()?;
        let live = self.live_slots.load(Ordering::Relaxed);
        Ok(predict::build(&self.counts(), config, live))
    }

    /// A plain copy of the counts.
    pub(crate) fn counts(&self) -> Counts {
        let load = |cells: &[AtomicU64]| {
            cells
                .iter()
                .map(|c| c.load(Ordering::Relaxed) as f64)
                .collect()
        };
        Counts {
            events: load(&self.events),
            exposure_ms: load(&self.exposure_ms),
        }
    }

    fn last_tick(&self) -> Option<u64> {
        self.last_tick_plus_one
            .load(Ordering::Acquire)
            .checked_sub(1)
    }

    /// Adds the idle time from `start` to `end` (ms since the last action)
    /// to the buckets it spans.
    fn add_exposure(&self, slot: usize, from: usize, start: u64, end: u64) {
        let end = end.min(self.censor_after_ms);
        let mut lo = start;
        while lo < end {
            let b = elapsed_bucket(lo);
            let hi = ELAPSED_EDGES_MS.get(b).map_or(end, |&edge| edge.min(end));
            debug_assert!(bucket_start(b) <= lo);
            self.exposure_ms[exposure_index(slot, from, b)].fetch_add(hi - lo, Ordering::Relaxed);
            lo = hi;
        }
    }

    fn reset_slot(&self, slot: usize) {
        let per_slot_events = ROUTE_CLASSES * ELAPSED_BUCKETS * ROUTE_CLASSES;
        let per_slot_exposure = ROUTE_CLASSES * ELAPSED_BUCKETS;
        let events = &self.events[slot * per_slot_events..(slot + 1) * per_slot_events];
        let exposure = &self.exposure_ms[slot * per_slot_exposure..(slot + 1) * per_slot_exposure];
        for cell in events.iter().chain(exposure) {
            cell.store(0, Ordering::Relaxed);
        }
    }
}
