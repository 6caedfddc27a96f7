//! `GET /v1/cohorts` and `GET /v1/forecast`: the aggregate views, for
//! operators only. Both read the latest insights snapshot and never touch
//! a user's entry.

use headroom_policies::Policy;
use headroom_profiler::events::ActiveEvent;
use headroom_profiler::next_action::ActionMark;
use headroom_profiler::{Cohort, CohortId, NextActionTable};
use http::StatusCode;
use serde::Serialize;

use super::reply::Reply;
use super::views::{next_action_horizons_s, route_classes, RouteShare};
use crate::insights::{CohortLive, ForecastView, Insights};
use crate::state::Shared;

/// The cohorts view.
#[derive(Debug, Serialize)]
struct CohortsView<'a> {
    /// Clusterings so far (0 before the first).
    generation: u64,
    /// When the clustering ran (ms).
    computed_at_ms: u64,
    /// When the figures under `live` were taken (ms).
    live_at_ms: u64,
    /// Users the clustering assigned, and the sample it was fitted on.
    users: usize,
    sampled: usize,
    /// Mean silhouette of the chosen fit (`null` for one cohort), and of
    /// every k tried.
    silhouette: Option<f64>,
    silhouette_by_k: &'a [(usize, f64)],
    /// Tracked users not yet in any cohort.
    unassigned: CohortLive,
    /// Horizons of the `next_action` likelihoods, seconds.
    next_action_horizons_s: Vec<u64>,
    cohorts: Vec<CohortView<'a>>,
}

#[derive(Debug, Serialize)]
struct CohortView<'a> {
    id: CohortId,
    name: &'a str,
    incarnation: u64,
    /// Members at the clustering.
    members: usize,
    /// Members, current rate and mean latency sensitivity at the last tick.
    live: CohortLive,
    mean_requests_per_min: f64,
    mean_log2_bytes: Option<f64>,
    mean_session_min: f64,
    route_mix: Vec<RouteShare>,
    /// Hour-of-day activity factors (UTC), mean 1.
    hourly_shape: &'a [f64; 24],
    /// For a member who just acted in route `after`: likelihood of each
    /// route within each horizon.
    next_action: Vec<AfterView>,
    /// The cohort's forecast of requests, bytes out, backend time and
    /// concurrency per horizon, once the forecaster has published it.
    forecast: Option<&'a ForecastView>,
}

#[derive(Debug, Serialize)]
struct AfterView {
    after: String,
    within: Vec<TargetView>,
}

#[derive(Debug, Serialize)]
struct TargetView {
    route: String,
    p: Vec<Option<f64>>,
}

/// `GET /v1/cohorts`.
pub fn cohorts(shared: &Shared) -> Reply {
    let insights = shared.insights.snapshot();
    let runtime = shared.runtime.load();
    let policy = &runtime.policy;
    let set = &insights.cohorts;
    let table = insights.next_action.as_deref();
    let view = CohortsView {
        generation: set.generation,
        computed_at_ms: set.computed_at_ms,
        live_at_ms: insights.computed_at_ms,
        users: set.users,
        sampled: set.sampled,
        silhouette: set.silhouette,
        silhouette_by_k: &set.silhouette_by_k,
        unassigned: insights.live(None),
        next_action_horizons_s: table.map(next_action_horizons_s).unwrap_or_default(),
        cohorts: set
            .cohorts
            .iter()
            .map(|c| cohort_view(c, &insights, policy, table))
            .collect(),
    };
    Reply::json(StatusCode::OK, &view)
}

fn cohort_view<'a>(
    c: &'a Cohort,
    insights: &'a Insights,
    policy: &Policy,
    table: Option<&NextActionTable>,
) -> CohortView<'a> {
    CohortView {
        id: c.id,
        name: &c.name,
        incarnation: c.incarnation,
        members: c.members,
        live: insights.live(Some(c.id)),
        mean_requests_per_min: c.mean_requests_per_min,
        mean_log2_bytes: c.mean_log2_bytes,
        mean_session_min: c.mean_session_min,
        route_mix: RouteShare::of_shares(policy, &c.route_mix),
        hourly_shape: &c.hourly_shape,
        next_action: table.map_or_else(Vec::new, |t| matrix(t, policy, c.id)),
        forecast: insights
            .cohort_forecasts
            .iter()
            .find(|f| f.cohort == c.id)
            .map(|f| &f.forecast),
    }
}

/// Likelihoods at idle time 0 after an action of each class.
fn matrix(table: &NextActionTable, policy: &Policy, cohort: CohortId) -> Vec<AfterView> {
    let classes = route_classes(policy);
    let horizons = table.horizons_ms().len();
    classes
        .iter()
        .map(|(from, after)| {
            let last = ActionMark {
                at_ms: 0,
                route_class: *from,
            };
            AfterView {
                after: after.clone(),
                within: classes
                    .iter()
                    .map(|(to, route)| TargetView {
                        route: route.clone(),
                        p: (0..horizons)
                            .map(|h| table.probability(Some(cohort), last, 0, *to, h))
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The forecast view.
#[derive(Debug, Serialize)]
struct ForecastResponse<'a> {
    /// When the insights were computed (ms).
    computed_at_ms: u64,
    /// `ok` once the forecaster has published, else `pending`.
    status: &'static str,
    /// Current total of users' smoothed rates, requests per second.
    current_rps: f64,
    aggregate: Option<&'a ForecastView>,
    cohorts: Vec<CohortForecastEntry<'a>>,
    /// Events in force, with the multipliers forecasts apply.
    active_events: &'a [ActiveEvent],
}

#[derive(Debug, Serialize)]
struct CohortForecastEntry<'a> {
    id: CohortId,
    name: &'a str,
    users: usize,
    current_rps: f64,
    forecast: Option<&'a ForecastView>,
}

/// `GET /v1/forecast`.
pub fn forecast(shared: &Shared) -> Reply {
    let insights = shared.insights.snapshot();
    let view = ForecastResponse {
        computed_at_ms: insights.computed_at_ms,
        status: if insights.aggregate_forecast.is_some() {
            "ok"
        } else {
            "pending"
        },
        current_rps: insights.cohort_live.iter().map(|l| l.smoothed_rps).sum(),
        aggregate: insights.aggregate_forecast.as_ref(),
        cohorts: insights
            .cohorts
            .cohorts
            .iter()
            .map(|c| {
                let live = insights.live(Some(c.id));
                CohortForecastEntry {
                    id: c.id,
                    name: &c.name,
                    users: live.users,
                    current_rps: live.smoothed_rps,
                    forecast: insights
                        .cohort_forecasts
                        .iter()
                        .find(|f| f.cohort == c.id)
                        .map(|f| &f.forecast),
                }
            })
            .collect(),
        active_events: &insights.active_events,
    };
    Reply::json(StatusCode::OK, &view)
}
