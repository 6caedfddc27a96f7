//! One insights tick, on whatever clock the caller reads: the background
//! service passes the proxy's clock, tests pass simulated times.
//!
//! Order within a tick, and why:
//! 1. Exposure and latency sweep over every user, with the cohorts they had
//!    during the interval that just ended (a re-clustering must not move
//!    that idle time to the new cohorts).
//! 2. Re-cluster when due (then reset the counts of cohort ids that now mean
//!    a new group), else put newcomers in the nearest cohort.
//! 3. Live figures per cohort, with the assignments just made.
//! 4. Decay and rebuild the next-action table when due (always after a
//!    re-clustering, whose cohorts the old table does not know).
//! 5. Settle ended events, then publish.

use std::sync::Arc;

use headroom_policies::RouteKind;
use headroom_profiler::cohort::{CohortError, MAX_COHORTS};
use headroom_profiler::{
    Clusterer, CohortConfig, NextActionConfig, NextActionTable, ROUTE_CLASSES,
};

use super::{route_kinds, CohortLive, Insights};
use crate::state::Shared;

/// Milliseconds between two decays of the next-action counts.
const DECAY_EVERY_MS: u64 = 3_600_000;

/// What one tick did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Tracked users visited.
    pub users: usize,
    /// Whether cohorts were fitted again.
    pub reclustered: bool,
    /// Newcomers put in an existing cohort.
    pub assigned: usize,
    /// Whether the next-action table was rebuilt.
    pub rebuilt: bool,
    /// Events settled.
    pub settled: usize,
}

/// The state the insights tick keeps between runs; owned by the one task
/// that ticks.
#[derive(Debug)]
pub struct Ticker {
    clusterer: Clusterer,
    build: NextActionConfig,
    last_recluster_ms: Option<u64>,
    last_build_ms: Option<u64>,
    last_decay_ms: Option<u64>,
    table: Option<Arc<NextActionTable>>,
    ticks: u64,
}

impl Ticker {
    /// A ticker for `shared`, naming cohorts with the route names of the
    /// policy in force now and the configured roles and locations.
    ///
    /// # Errors
    /// [`CohortError`] if the default cohort settings are refused (a bug).
    pub fn new(shared: &Shared) -> Result<Self, CohortError> {
        let runtime = shared.runtime.load();
        let routes = runtime
            .policy
            .route_classes()
            .map(|(_, name)| name.to_owned())
            .collect();
        let config = CohortConfig {
            names: shared.insights.attribute_codes.cohort_names(routes),
            ..CohortConfig::default()
        };
        Ok(Self {
            clusterer: Clusterer::new(config)?,
            build: NextActionConfig::default(),
            last_recluster_ms: None,
            last_build_ms: None,
            last_decay_ms: None,
            table: None,
            ticks: 0,
        })
    }

    /// Runs one tick at `now_ms`; see the module docs.
    pub fn tick(&mut self, shared: &Shared, now_ms: u64) -> TickReport {
        let hub = &shared.insights;
        let settings = hub.settings;
        let mut report = TickReport::default();

        // 1. Exposure of open gaps; abandoned responses.
        let exposure = hub.next_action.begin_tick(now_ms);
        shared.users.for_each(|_, entry| {
            hub.next_action.accrue_user(&exposure, &entry.windows);
            entry.windows.latency().sweep(now_ms, &hub.sensitivity);
            report.users += 1;
        });

        // 2. Cohorts.
        let attributes = |_: u64, e: &headroom_profiler::UserEntry<crate::state::UserState>| {
            e.extra.attributes.load()
        };
        if due(self.last_recluster_ms, now_ms, settings.recluster_every) && report.users > 0 {
            let set = self
                .clusterer
                .recluster_table(&shared.users, attributes, now_ms);
            hub.next_action.sync_cohorts(&set);
            self.last_recluster_ms = Some(now_ms);
            report.reclustered = true;
        } else {
            report.assigned = self.clusterer.assign_new(&shared.users, attributes);
        }

        // 3. Live figures per cohort.
        let kinds = route_kinds(&shared.runtime.load().policy);
        let cohort_live = live_figures(shared, now_ms, &kinds);

        // 4. Next-action counts and table.
        self.decay(shared, now_ms);
        if report.reclustered || due(self.last_build_ms, now_ms, settings.rebuild_every) {
            match hub.next_action.build(&self.build) {
                Ok(table) => {
                    self.table = Some(Arc::new(table));
                    self.last_build_ms = Some(now_ms);
                    report.rebuilt = true;
                }
                Err(e) => tracing::warn!(error = %e, "next-action table not rebuilt"),
            }
        }

        // 5. Events, then the snapshot.
        report.settled = hub.settle_events(now_ms);
        self.ticks += 1;
        let cohorts = self
            .clusterer
            .current()
            .cloned()
            .unwrap_or_else(|| Insights::empty().cohorts);
        hub.publish(Insights {
            computed_at_ms: now_ms,
            ticks: self.ticks,
            tracked_users: report.users,
            cohorts,
            cohort_live,
            next_action: self.table.clone(),
            next_action_built_at_ms: self.last_build_ms,
            active_events: hub.events.active_at(now_ms),
            aggregate_forecast: None,
            cohort_forecasts: Vec::new(),
        });
        report
    }

    /// Halves the next-action counts every `decay_half_life`, in hourly
    /// steps.
    fn decay(&mut self, shared: &Shared, now_ms: u64) {
        let Some(last) = self.last_decay_ms else {
            self.last_decay_ms = Some(now_ms);
            return;
        };
        let elapsed = now_ms.saturating_sub(last);
        if elapsed < DECAY_EVERY_MS {
            return;
        }
        let half_life = shared.insights.settings.decay_half_life.as_millis() as f64;
        if half_life > 0.0 {
            shared
                .insights
                .next_action
                .decay(0.5_f64.powf(elapsed as f64 / half_life));
        }
        self.last_decay_ms = Some(now_ms);
    }
}

/// True when nothing ran yet or `every` has passed since `last`.
fn due(last: Option<u64>, now_ms: u64, every: std::time::Duration) -> bool {
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    last.is_none_or(|t| now_ms.saturating_sub(t) >= every_ms)
}

/// Users, summed smoothed rates and mean sensitivity per cohort slot (the
/// last slot for users without a cohort).
fn live_figures(
    shared: &Shared,
    now_ms: u64,
    kinds: &[RouteKind; ROUTE_CLASSES],
) -> Vec<CohortLive> {
    let mut live = vec![CohortLive::default(); MAX_COHORTS + 1];
    let mut sensitivity = [0.0_f64; MAX_COHORTS + 1];
    let config = &shared.insights.sensitivity;
    shared.users.for_each(|_, entry| {
        let windows = &entry.windows;
        let slot = windows
            .last_action()
            .load()
            .1
            .map_or(MAX_COHORTS, |c| c.index());
        live[slot].users += 1;
        live[slot].smoothed_rps += windows.smoothed_rps(now_ms);
        sensitivity[slot] += config.user_score(windows, kinds);
    });
    for (figures, sum) in live.iter_mut().zip(sensitivity) {
        figures.mean_latency_sensitivity = (figures.users > 0).then(|| sum / figures.users as f64);
    }
    live
}
