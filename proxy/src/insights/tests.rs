//! The insights wiring on simulated time: what the request path feeds,
//! what a tick does with it, and what it publishes.

use std::time::Duration;

use headroom_policies::RouteKind;
use headroom_profiler::{Event, Scope};

use super::test_support::{arrive, headers, shared, shared_from, CONFIG};
use super::*;

/// Tuesday 2026-03-03 09:00:00 UTC, in ms.
const T0: u64 = 1_772_528_400_000;

fn cookie(id: &str) -> http::HeaderMap {
    headers("cookie", &format!("sid={id}"))
}

#[test]
fn arrivals_store_attribute_codes_and_decisions() {
    let shared = shared();
    let key = arrive(&shared, &headers("x-api-key", "k_alice"), "/search", T0);
    let entry = shared.users.get(key).expect("tracked");
    let codes = entry.extra.attributes.load();
    // The key table's only role is "admin" (code 1); the agent is a phone.
    assert_eq!((codes.role, codes.location, codes.device), (1, 0, 2));
    let decision = entry.extra.decision.load().expect("decided");
    assert_eq!(decision.tier_index, 0, "premium is the first tier");
    assert_eq!(decision.kind, VerdictKind::Allowed);
    assert_eq!(decision.remaining, 198, "search costs 2 of 200");
}

#[test]
fn a_quick_retry_after_a_slow_response_counts_as_a_reaction() {
    let shared = shared();
    let key = arrive(&shared, &cookie("u1"), "/search", T0);
    let entry = shared.users.get(key).expect("tracked");
    record_response(
        &shared,
        &entry,
        T0 + 3_000,
        1,
        RouteKind::Interactive,
        3_000_000,
        false,
    );
    arrive(&shared, &cookie("u1"), "/search", T0 + 5_000);
    let counts = entry.windows.latency().counts();
    assert_eq!((counts.slow, counts.slow_reactions), (1, 1));

    // A hang-up after waiting long enough is a reaction at once; an early
    // one (under half the slow threshold) is not about latency.
    record_response(
        &shared,
        &entry,
        T0 + 9_000,
        1,
        RouteKind::Interactive,
        100_000,
        true,
    );
    assert_eq!(entry.windows.latency().counts().slow, 1);
    record_response(
        &shared,
        &entry,
        T0 + 9_500,
        1,
        RouteKind::Interactive,
        800_000,
        true,
    );
    assert_eq!(entry.windows.latency().counts().slow_reactions, 2);
}

#[test]
fn the_tick_sweeps_abandoned_slow_responses() {
    let shared = shared();
    let key = arrive(&shared, &cookie("u2"), "/export", T0);
    let entry = shared.users.get(key).expect("tracked");
    record_response(
        &shared,
        &entry,
        T0 + 20_000,
        2,
        RouteKind::Batch,
        20_000_000,
        false,
    );
    let mut ticker = Ticker::new(&shared).expect("ticker");
    ticker.tick(&shared, T0 + 60_000);
    assert_eq!(
        entry.windows.latency().counts().slow,
        0,
        "not yet abandoned"
    );
    ticker.tick(&shared, T0 + 20_000 + 300_001);
    let counts = entry.windows.latency().counts();
    assert_eq!((counts.slow, counts.slow_reactions), (1, 1));
}

/// Two kinds of users: searchers who call `/search` every 20 s, and
/// exporters who call `/export` every 2 minutes, for an hour.
fn two_populations(shared: &Shared, users: usize) -> u64 {
    let mut t = T0;
    for step in 0..180u64 {
        t = T0 + step * 20_000;
        for u in 0..users {
            let id = format!("s{u}");
            arrive(shared, &cookie(&id), "/search", t + u as u64);
            if step % 6 == 0 {
                let id = format!("e{u}");
                arrive(shared, &cookie(&id), "/export", t + u as u64);
            }
        }
    }
    t
}

#[test]
fn a_tick_clusters_assigns_builds_and_publishes() {
    let shared = shared();
    let end = two_populations(&shared, 40);
    let mut ticker = Ticker::new(&shared).expect("ticker");
    let report = ticker.tick(&shared, end + 1_000);
    assert_eq!(report.users, 80);
    assert!(report.reclustered && report.rebuilt);

    let insights = shared.insights.snapshot();
    assert_eq!(insights.tracked_users, 80);
    assert!(insights.cohorts.k() >= 2, "two populations, one cohort");
    let assigned: usize = insights.cohort_live.iter().map(|l| l.users).sum();
    assert_eq!(assigned, 80);
    assert_eq!(insights.live(None).users, 0, "everyone has a cohort");
    let names: Vec<&str> = insights
        .cohorts
        .cohorts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        names.iter().any(|n| n.contains("search")) && names.iter().any(|n| n.contains("export")),
        "{names:?}"
    );

    // Searchers' next action within a minute is far more likely a search.
    let table = insights.next_action.as_ref().expect("table built");
    let searcher = shared
        .users
        .get(arrive(&shared, &cookie("s0"), "/search", end + 2_000))
        .expect("tracked");
    let (last, cohort) = searcher.windows.last_action().load();
    let last = last.expect("has acted");
    let p_search = table
        .probability(cohort, last, end + 2_000, 1, 0)
        .expect("tabulated");
    let p_export = table
        .probability(cohort, last, end + 2_000, 2, 0)
        .expect("tabulated");
    assert!(p_search > 0.5 && p_export < 0.2, "{p_search} {p_export}");
}

#[test]
fn newcomers_between_reclusterings_join_the_nearest_cohort() {
    let shared = shared();
    let end = two_populations(&shared, 20);
    let mut ticker = Ticker::new(&shared).expect("ticker");
    ticker.tick(&shared, end + 1_000);
    arrive(&shared, &cookie("late"), "/export", end + 5_000);
    let report = ticker.tick(&shared, end + 11_000);
    assert!(!report.reclustered);
    assert_eq!(report.assigned, 1);
    let snapshot = shared.insights.snapshot();
    assert_eq!(snapshot.live(None).users, 0);
    assert_eq!(snapshot.ticks, 2);
}

#[test]
fn ended_events_settle_and_leave_the_listing() {
    let shared = shared();
    let event = |name: &str, start_ms: u64, end_ms: u64| Event {
        name: name.into(),
        start_ms,
        end_ms,
        scope: Scope::Route(2),
        multiplier: Some(2.0),
    };
    shared
        .insights
        .declare(event("over", T0, T0 + 60_000))
        .expect("declared");
    shared
        .insights
        .declare(event("running", T0, T0 + 600_000))
        .expect("declared");
    let mut ticker = Ticker::new(&shared).expect("ticker");
    let report = ticker.tick(&shared, T0 + 120_000);
    assert_eq!(report.settled, 1);
    let listed: Vec<String> = shared
        .insights
        .declared_events()
        .into_iter()
        .map(|(_, e)| e.name)
        .collect();
    assert_eq!(listed, ["running"]);
    let active = &shared.insights.snapshot().active_events;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].multiplier, 2.0);
}

#[test]
fn published_forecasts_survive_later_ticks() {
    let shared = shared();
    let view = ForecastView {
        computed_at_ms: T0,
        model: "ensemble".into(),
        fallback_to_current_rate: false,
        reason: "a model beats naive one tick ahead".into(),
        horizons: vec![HorizonForecastView {
            horizon_s: 60,
            median_rps: 3.0,
            p90_rps: 4.5,
            quantities: QuantityBands::default(),
        }],
    };
    shared
        .insights
        .publish_forecast(Some(view.clone()), Vec::new());
    let mut ticker = Ticker::new(&shared).expect("ticker");
    ticker.tick(&shared, T0);
    assert_eq!(shared.insights.snapshot().aggregate_forecast, Some(view));
}

#[test]
fn config_events_are_declared_with_route_scopes_resolved() {
    let yaml = format!(
        "{CONFIG}events:\n  - name: launch\n    start: \"2026-03-03T10:00:00Z\"\n    \
         end: \"2026-03-03T12:00:00Z\"\n    scope: route\n    route: export\n"
    );
    let shared = shared_from(&yaml);
    let declared = shared.insights.declared_events();
    assert_eq!(declared.len(), 1);
    assert_eq!(declared[0].1.scope, Scope::Route(2));
    assert_eq!(declared[0].1.start_ms, T0 + 3_600_000);
    assert!(shared.insights.admin_token().is_some());
}

#[test]
fn censoring_leaves_one_tick_before_eviction() {
    let tick = Duration::from_secs(10);
    assert_eq!(censor_after_ms(Duration::from_secs(600), tick), 590_000);
    assert_eq!(censor_after_ms(Duration::from_secs(10), tick), 5_000);
    assert_eq!(censor_after_ms(Duration::from_secs(5), tick), 2_500);
}

#[test]
fn the_forecaster_publishes_a_forecast_for_every_cohort() {
    use crate::forecaster::{Decisions, ForecasterService};
    use arc_swap::ArcSwap;
    use std::time::Duration;

    let shared = shared();
    let end = two_populations(&shared, 40);
    let mut ticker = Ticker::new(&shared).expect("ticker");
    ticker.tick(&shared, end + 1_000);
    let k = shared.insights.snapshot().cohorts.k();
    let tick = Duration::from_secs(1);
    let decisions = Arc::new(ArcSwap::from_pointee(Decisions::initial(tick)));
    let service = ForecasterService::new(Arc::clone(&shared), decisions, tick);

    service.run_ticks_for_test(3);

    let insights = shared.insights.snapshot();
    assert_eq!(insights.cohort_forecasts.len(), k, "one per cohort");
    for c in &insights.cohort_forecasts {
        assert_eq!(c.forecast.horizons.len(), 4);
        assert!(c
            .forecast
            .horizons
            .iter()
            .all(|h| h.p90_rps >= h.median_rps));
    }
}
