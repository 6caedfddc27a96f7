//! Behaviour insights: cohorts, next-action likelihoods, latency
//! sensitivity and declared events, wired into the proxy.
//!
//! The profiler crate holds the models; this module decides when each part
//! runs and where its result lives. Three places:
//! - the request path feeds the counters, atomics only
//!   ([`record_arrival`], [`record_response`]);
//! - the background service ([`InsightsService`], span `insights`) ticks
//!   every [`InsightsSettings::tick`]: it adds the next-action exposure of
//!   every idle user, settles latency signals and ended events, re-clusters
//!   every few minutes (assigning newcomers in between), rebuilds the
//!   next-action table, and publishes an immutable [`Insights`] snapshot;
//! - the admin API reads the snapshot (one `ArcSwap` load) and the event
//!   book.
//!
//! Eviction: the tick does not evict and does not need to run before the
//! sweeper. The next-action model censors idle gaps at
//! `idle_timeout - tick` ([`censor_after_ms`]), so by the time the sweeper
//! (or a full table) can evict a user, a tick has already added that user's
//! exposure up to the censoring point; nothing the eviction drops was going
//! to be counted.
//!
//! Cost on the request path: [`NextActionModel::observe`] adds to counters
//! shared by every user of a cohort (`fetch_add` on one event cell and up to
//! a few exposure cells). With many cores these cache lines bounce between
//! them under load: it is the one contended write per request this module
//! adds. Everything else writes only the user's own entry.

mod attributes;
mod decision;
mod service;
mod tick;
mod views;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use headroom_config::{Config, EventScope, Secret};
use headroom_policies::{Attributes, Policy, RouteKind};
use headroom_profiler::events::ActiveEvent;
use headroom_profiler::{
    CohortId, CohortSet, Event, EventBook, EventError, EventId, NextActionModel, NextActionTable,
    Scope, SensitivityConfig, Transition, UserEntry, ROUTE_CLASSES,
};

pub use attributes::{AttributeCodes, UserAttributeCell};
pub use decision::{DecisionMark, LastDecision, VerdictKind};
pub use service::InsightsService;
pub use tick::{TickReport, Ticker};
pub use views::{
    Band, CohortForecastView, CohortLive, ForecastView, HorizonForecastView, QuantityBands,
};

use crate::state::{Shared, UserState};

/// How often the insights tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsightsSettings {
    /// Between two ticks. Default 10 s.
    pub tick: Duration,
    /// Between two re-clusterings. Default 5 minutes (a clustering of
    /// 60 000 users costs about half a second of one core).
    pub recluster_every: Duration,
    /// Between two rebuilds of the next-action table. Default 1 minute
    /// (about 40 ms each).
    pub rebuild_every: Duration,
    /// Half-life of the next-action counts, so recent behaviour weighs
    /// more. Default 1 day; applied once an hour.
    pub decay_half_life: Duration,
}

impl Default for InsightsSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            recluster_every: Duration::from_secs(300),
            rebuild_every: Duration::from_secs(60),
            decay_half_life: Duration::from_secs(86_400),
        }
    }
}

/// The idle time (ms) past which the next-action model counts nothing,
/// for users evicted after `idle_timeout` and ticks every `tick`: a tick
/// before that point always sees the user (see the module docs). Half the
/// timeout when the tick is not shorter than the timeout.
pub fn censor_after_ms(idle_timeout: Duration, tick: Duration) -> u64 {
    let idle_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let tick_ms = u64::try_from(tick.as_millis()).unwrap_or(u64::MAX);
    match idle_ms.checked_sub(tick_ms) {
        Some(left) if left > 0 => left,
        _ => idle_ms / 2,
    }
}

/// Why the insights could not be set up from a config.
#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    /// A declared event was refused by the event book.
    #[error("events[{index}]: {source}")]
    Event {
        /// Position in the config's `events`.
        index: usize,
        /// Why.
        source: EventError,
    },
    /// A declared event's scope names no route or cohort the proxy has.
    #[error("events[{index}].scope: {what}")]
    Scope {
        /// Position in the config's `events`.
        index: usize,
        /// What is missing.
        what: String,
    },
}

/// The published state of the insights: immutable, replaced whole by each
/// tick (and by [`InsightsHub::publish_forecast`]).
#[derive(Debug, Clone)]
pub struct Insights {
    /// When the tick ran (ms, the profiler clock); 0 before the first.
    pub computed_at_ms: u64,
    /// Ticks so far.
    pub ticks: u64,
    /// Tracked users at the tick.
    pub tracked_users: usize,
    /// The latest clustering (empty before the first).
    pub cohorts: Arc<CohortSet>,
    /// Live figures per cohort id; the last entry is users without a
    /// cohort yet. Length [`MAX_COHORTS`](headroom_profiler::cohort::MAX_COHORTS) + 1.
    pub cohort_live: Vec<CohortLive>,
    /// The next-action table, once built.
    pub next_action: Option<Arc<NextActionTable>>,
    /// When the table was built (ms).
    pub next_action_built_at_ms: Option<u64>,
    /// Events in force at the tick, with the multiplier forecasts apply.
    pub active_events: Vec<ActiveEvent>,
    /// The aggregate demand forecast, once the forecaster publishes one.
    pub aggregate_forecast: Option<ForecastView>,
    /// Per-cohort forecasts, once the forecaster publishes them.
    pub cohort_forecasts: Vec<CohortForecastView>,
}

impl Insights {
    /// The state before the first tick.
    pub fn empty() -> Self {
        Self {
            computed_at_ms: 0,
            ticks: 0,
            tracked_users: 0,
            cohorts: Arc::new(CohortSet::empty()),
            cohort_live: vec![CohortLive::default(); headroom_profiler::cohort::MAX_COHORTS + 1],
            next_action: None,
            next_action_built_at_ms: None,
            active_events: Vec::new(),
            aggregate_forecast: None,
            cohort_forecasts: Vec::new(),
        }
    }

    /// Live figures of `cohort` (`None`: users without a cohort).
    pub fn live(&self, cohort: Option<CohortId>) -> CohortLive {
        let slot = cohort.map_or(self.cohort_live.len().saturating_sub(1), CohortId::index);
        self.cohort_live.get(slot).copied().unwrap_or_default()
    }
}

/// Everything the insights keep in [`Shared`]: the models the request path
/// feeds, the event book, the admin token, and the published snapshot.
pub struct InsightsHub {
    /// Transition and exposure counts per cohort.
    pub next_action: NextActionModel,
    /// Thresholds of the latency-sensitivity signals.
    pub sensitivity: SensitivityConfig,
    /// Declared events and what past ones measured.
    pub events: EventBook,
    /// Role and location codes for the clusterer.
    pub attribute_codes: AttributeCodes,
    /// Tick intervals.
    pub settings: InsightsSettings,
    admin_token: Option<Secret>,
    /// Events declared and not yet settled, for listing (the book lists
    /// only those in force).
    declared: Mutex<Vec<(EventId, Event)>>,
    snapshot: ArcSwap<Insights>,
}

impl Default for InsightsHub {
    /// No admin token, no events, default settings and thresholds, and a
    /// next-action model censored for the default 10-minute idle timeout.
    fn default() -> Self {
        let settings = InsightsSettings::default();
        let censor = censor_after_ms(Duration::from_secs(600), settings.tick);
        Self {
            next_action: NextActionModel::with_censoring(censor),
            sensitivity: SensitivityConfig::default(),
            events: EventBook::new(),
            attribute_codes: AttributeCodes::default(),
            settings,
            admin_token: None,
            declared: Mutex::new(Vec::new()),
            snapshot: ArcSwap::from_pointee(Insights::empty()),
        }
    }
}

impl InsightsHub {
    /// The hub for `config`, compiled as `policy`: the admin token, the
    /// attribute vocabulary, and the file's events declared (route scopes
    /// resolved to class ids; the profiler tracks classes 0 to 7, so the
    /// eighth configured route shares class 7 with the seventh).
    ///
    /// # Errors
    /// [`InsightsError::Event`] if the event book refuses a declared event.
    pub fn new(config: &Config, policy: &Policy) -> Result<Self, InsightsError> {
        let settings = InsightsSettings::default();
        let censor = censor_after_ms(config.profiler.idle_timeout, settings.tick);
        let hub = Self {
            next_action: NextActionModel::with_censoring(censor),
            attribute_codes: AttributeCodes::from_config(config),
            settings,
            admin_token: config.admin_api.token.clone(),
            ..Self::default()
        };
        for (index, declared) in config.events.iter().enumerate() {
            let missing = |what: String| InsightsError::Scope { index, what };
            let scope = match &declared.scope {
                EventScope::All => Scope::All,
                EventScope::Cohort(id) => Scope::Cohort(
                    CohortId::new(*id).ok_or_else(|| missing(format!("no cohort id {id}")))?,
                ),
                EventScope::Route(name) => Scope::Route(
                    route_id(policy, name).ok_or_else(|| missing(format!("no route {name:?}")))?,
                ),
            };
            let event = Event {
                name: declared.name.clone(),
                start_ms: declared.start_ms,
                end_ms: declared.end_ms,
                scope,
                multiplier: declared.multiplier,
            };
            hub.declare(event)
                .map_err(|source| InsightsError::Event { index, source })?;
        }
        Ok(hub)
    }

    /// The operator token, if operator access is enabled.
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Insights> {
        self.snapshot.load_full()
    }

    /// Publishes a tick's snapshot, keeping the forecasts already published
    /// (they are replaced only by [`Self::publish_forecast`]).
    pub fn publish(&self, insights: Insights) {
        self.snapshot.rcu(|old| {
            let mut next = insights.clone();
            next.aggregate_forecast.clone_from(&old.aggregate_forecast);
            next.cohort_forecasts.clone_from(&old.cohort_forecasts);
            next
        });
    }

    /// Publishes forecasts into the snapshot (for the forecaster); later
    /// ticks keep them until the next call.
    pub fn publish_forecast(
        &self,
        aggregate: Option<ForecastView>,
        cohorts: Vec<CohortForecastView>,
    ) {
        self.snapshot.rcu(|old| {
            let mut next = Insights::clone(old);
            next.aggregate_forecast.clone_from(&aggregate);
            next.cohort_forecasts.clone_from(&cohorts);
            next
        });
    }

    /// Declares `event` in the book and remembers it for listing.
    ///
    /// # Errors
    /// The book's [`EventError`] (bad name, window, multiplier or route;
    /// too many pending).
    pub fn declare(&self, event: Event) -> Result<EventId, EventError> {
        let mut declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
        let id = self.events.declare(event.clone())?;
        declared.push((id, event));
        Ok(id)
    }

    /// Events declared and not yet past their end at the last tick, in
    /// declaration order.
    pub fn declared_events(&self) -> Vec<(EventId, Event)> {
        self.declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Settles the events that ended by `now_ms` and forgets them from the
    /// listing; returns how many settled.
    pub(crate) fn settle_events(&self, now_ms: u64) -> usize {
        let mut declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
        let settled = self.events.settle(now_ms);
        declared.retain(|(_, e)| e.end_ms > now_ms);
        settled.len()
    }
}

/// The class id of the route called `name` in `policy` (`other` is 0),
/// clamped to the profiler's classes 0 to 7.
pub fn route_id(policy: &Policy, name: &str) -> Option<u8> {
    policy
        .route_classes()
        .find(|(_, n)| *n == name)
        .map(|(class, _)| class.id.min(ROUTE_CLASSES as u8 - 1))
}

/// The kind of each profiler route class under `policy` (classes past the
/// last configured route are interactive, like `other`).
pub fn route_kinds(policy: &Policy) -> [RouteKind; ROUTE_CLASSES] {
    let mut kinds = [RouteKind::Interactive; ROUTE_CLASSES];
    for (class, _) in policy.route_classes() {
        if let Some(kind) = kinds.get_mut(usize::from(class.id)) {
            *kind = class.kind;
        }
    }
    kinds
}

/// Hot path, right after [`UserWindows::record_arrival`]: settles the
/// user's pending response for latency sensitivity, stores the request's
/// attribute codes, and teaches the next-action model the transition
/// (except for the shared overflow entry, whose "transitions" mix many
/// users). Atomic operations only; no allocation.
///
/// [`UserWindows::record_arrival`]: headroom_profiler::UserWindows::record_arrival
pub fn record_arrival(
    shared: &Shared,
    user: &Arc<UserEntry<UserState>>,
    transition: &Transition,
    route_class: u8,
    attrs: &Attributes<'_>,
) {
    let hub = &shared.insights;
    user.windows
        .latency()
        .on_arrival(transition.to.at_ms, route_class, &hub.sensitivity);
    user.extra.attributes.store(hub.attribute_codes.code(attrs));
    if !Arc::ptr_eq(user, &shared.overflow) {
        hub.next_action.observe(transition);
    }
}

/// Hot path, when a request that reached admission ends: classifies the
/// response for latency sensitivity (`latency_us` from arrival to the end,
/// on a route of `kind`; `disconnected` when the client hung up before the
/// response header) and notes it in the user's signals. Atomic operations
/// only.
pub fn record_response(
    shared: &Shared,
    user: &UserEntry<UserState>,
    now_ms: u64,
    route_class: u8,
    kind: RouteKind,
    latency_us: u64,
    disconnected: bool,
) {
    let hub = &shared.insights;
    if let Some(speed) = hub.sensitivity.classify(kind, latency_us, disconnected) {
        user.windows
            .latency()
            .on_response(now_ms, route_class, speed);
    }
}
