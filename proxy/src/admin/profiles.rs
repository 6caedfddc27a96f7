//! `GET` and `DELETE /v1/profiles/{user}`: one user's behaviour, and the
//! privacy control that forgets it.
//!
//! `{user}` is the pseudonymous id the upstream sees as `x-headroom-user`
//! (16 hex digits). A user may reach only their own id; for any other id,
//! tracked or not, they get the same 404 an unknown id gets, so the API
//! never tells whether someone else exists. A profile holds the user's
//! windows and derived scores, and never a credential, an address or
//! anyone else's data.
//!
//! Deleting removes the user's entry from the table: windows, sessions,
//! habits, latency signals, cohort assignment, tier and rate-limit state.
//! A user deleting their own profile must wait until their rate-limit
//! bucket is full (409 with `Retry-After` until then), or deletion would be
//! a way to refill it; the operator can always delete.

use headroom_policies::Policy;
use headroom_profiler::forecast::user::{peek_user_quantities, UserQuantityForecast};
use headroom_profiler::next_action::ActionMark;
use headroom_profiler::{Clock, CohortId, UserEntry, UserSnapshot};
use http::header::RETRY_AFTER;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::auth::Caller;
use super::reply::Reply;
use super::views::{next_action_horizons_s, route_classes, RouteShare};
use crate::insights::{DecisionMark, Insights, QuantityBands, VerdictKind};
use crate::state::{Shared, UserState};

/// The one answer for an id the caller may not see or that is not tracked.
const NOT_FOUND: &str = "no such profile";

/// The profile as `GET` returns it.
#[derive(Debug, Serialize)]
struct ProfileView {
    /// The pseudonymous id.
    user: String,
    /// When the profile was read (ms, the profiler clock).
    at_ms: u64,
    /// The tier and rate-limit state of the latest request.
    rate_limit: Option<RateLimitView>,
    /// The predictive tier assignment and pre-allocation, if any.
    tiering: Option<TieringView>,
    /// Arrivals per route in the activity window, by route name.
    route_mix: Vec<RouteShare>,
    /// How much the user minds slow responses.
    latency_sensitivity: SensitivityView,
    /// The user's cohort, once assigned.
    cohort: Option<CohortRef>,
    /// Likelihoods of the user's next action, once the table is built.
    next_action: Option<NextActionView>,
    /// The user's forecasts, once a forecast tick has seen them.
    forecast: Option<UserForecastView>,
    /// Rates, bytes, responses and sessions from the user's windows.
    behaviour: UserSnapshot,
}

/// A user's demand forecast at each horizon.
#[derive(Debug, Serialize)]
struct UserForecastView {
    /// Whether `x-headroom-forecast-rps` carries this forecast now (else
    /// the smoothed current rate), and why.
    used_in_headers: bool,
    reason: &'static str,
    horizons: Vec<UserHorizonView>,
}

/// One horizon, every quantity per second: requests, bytes out, backend
/// time (busy seconds per second) and concurrency (mean requests in
/// flight). Requests come from the user's calibrated count forecast; the
/// others are that count times the user's smoothed size per request, moved
/// by each quantity's own aggregate shape (see
/// `headroom_profiler::forecast::user::peek_user_quantities`).
#[derive(Debug, Serialize)]
struct UserHorizonView {
    horizon_s: u64,
    #[serde(flatten)]
    quantities: QuantityBands,
}

/// The user's forecasts from the latest tick's context, read-only.
fn user_forecast(
    shared: &Shared,
    entry: &UserEntry<UserState>,
    now_ms: u64,
) -> Option<UserForecastView> {
    let decisions = shared.decisions.load();
    let ctx = decisions.user_context.as_ref()?;
    // Read as of the latest tick, so the view shows the numbers the tick
    // decided tiers and headers with (the window's completed buckets up to
    // the tick are unchanged for one window span after it).
    let at_ms = if decisions.computed_at_ms > 0 {
        decisions.computed_at_ms.min(now_ms)
    } else {
        now_ms
    };
    let mut out = vec![UserQuantityForecast::default(); ctx.horizons_ms().len()];
    peek_user_quantities(&entry.windows, &entry.extra.forecast, at_ms, ctx, &mut out)?;
    let horizons = out
        .iter()
        .map(|f| UserHorizonView {
            horizon_s: f.horizon_ms / 1_000,
            quantities: QuantityBands::from_fn(|q| f.get(q)),
        })
        .collect();
    Some(UserForecastView {
        used_in_headers: decisions.use_forecast,
        reason: decisions.reason,
        horizons,
    })
}

#[derive(Debug, Serialize)]
struct RateLimitView {
    tier: Option<String>,
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    verdict: VerdictKind,
    remaining: u32,
    reset_secs: u32,
    decided_at_ms: Option<u64>,
    bucket_full_now: bool,
}

#[derive(Debug, Serialize)]
struct SensitivityView {
    score: f64,
    slow_responses: u16,
    slow_reactions: u16,
    fast_responses: u16,
    fast_reactions: u16,
}

#[derive(Debug, Serialize)]
struct CohortRef {
    id: CohortId,
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct NextActionView {
    horizons_s: Vec<u64>,
    last_route: Option<String>,
    idle_ms: u64,
    calibrated: bool,
    likelihoods: Vec<Likelihood>,
}

#[derive(Debug, Serialize)]
struct Likelihood {
    route: String,
    within: Vec<Option<f64>>,
}

/// The key of a 16-hex-digit id, `None` otherwise.
pub fn parse_user(id: &str) -> Option<u64> {
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
}

/// The entry of `id` if `caller` may see it and it is tracked.
fn visible(
    shared: &Shared,
    caller: Caller,
    id: &str,
) -> Result<(u64, std::sync::Arc<UserEntry<UserState>>), Reply> {
    let Some(key) = parse_user(id) else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "user id must be 16 hex digits (the x-headroom-user value)",
        ));
    };
    let allowed = match caller {
        Caller::Operator => true,
        Caller::User(own) => own == key,
    };
    match shared.users.get(key) {
        Some(entry) if allowed => Ok((key, entry)),
        _ => Err(Reply::error(StatusCode::NOT_FOUND, NOT_FOUND)),
    }
}

/// `GET /v1/profiles/{user}`.
pub fn get(shared: &Shared, caller: Caller, id: &str) -> Reply {
    let (key, entry) = match visible(shared, caller, id) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let now_ms = shared.clock.now_ms();
    let runtime = shared.runtime.load();
    let policy = &runtime.policy;
    let insights = shared.insights.snapshot();
    let windows = &entry.windows;
    let behaviour = windows.snapshot(now_ms);
    let (last, cohort) = windows.last_action().load();

    let counts = windows.latency().counts();
    let kinds = crate::insights::route_kinds(policy);
    let view = ProfileView {
        user: format!("{key:016x}"),
        at_ms: now_ms,
        rate_limit: entry
            .extra
            .decision
            .load()
            .map(|mark| rate_limit(policy, &entry.extra, mark, last.map(|l| l.at_ms))),
        tiering: tiering(policy, &entry.extra, now_ms),
        route_mix: RouteShare::of_counts(policy, &behaviour.route_requests),
        latency_sensitivity: SensitivityView {
            score: shared.insights.sensitivity.user_score(windows, &kinds),
            slow_responses: counts.slow,
            slow_reactions: counts.slow_reactions,
            fast_responses: counts.fast,
            fast_reactions: counts.fast_reactions,
        },
        cohort: cohort.map(|id| CohortRef {
            id,
            name: insights.cohorts.get(id).map(|c| c.name.clone()),
        }),
        next_action: last.and_then(|l| next_action(&insights, policy, cohort, l, now_ms)),
        forecast: user_forecast(shared, &entry, now_ms),
        behaviour,
    };
    Reply::json(StatusCode::OK, &view)
}

/// The tick's tier for the user, why, and since when; and the user's
/// pre-allocation.
#[derive(Debug, Serialize)]
struct TieringView {
    /// The assigned tier (`null` before the tick assigned one under the
    /// current policy: the static rules decide until then).
    tier: Option<String>,
    /// Why, like `rule 2: predicted p90 8.3 rps > 5`.
    reason: Option<String>,
    /// When the tier started (ms, the profiler clock, whole seconds).
    since_ms: Option<u64>,
    /// The pre-allocation in force, if any.
    preallocation: Option<PreallocationView>,
}

#[derive(Debug, Serialize)]
struct PreallocationView {
    /// When it expires (ms, the profiler clock, whole seconds).
    until_ms: u64,
    /// Whether the user arrived while it held.
    used: bool,
}

fn tiering(policy: &Policy, state: &UserState, now_ms: u64) -> Option<TieringView> {
    let now_s = now_ms / 1000;
    let assignment = state.shaping.assignment(policy.generation(), now_s);
    let preallocation = state
        .shaping
        .reservation(now_s)
        .map(|(left_s, used)| PreallocationView {
            until_ms: (now_s + left_s) * 1000,
            used,
        });
    if assignment.is_none() && preallocation.is_none() {
        return None;
    }
    Some(TieringView {
        tier: assignment.map(|a| policy.tier(a.tier).name().to_owned()),
        reason: assignment.map(|a| policy.reason(&a)),
        since_ms: assignment.map(|a| a.since_s * 1000),
        preallocation,
    })
}

fn rate_limit(
    policy: &Policy,
    state: &UserState,
    mark: DecisionMark,
    decided_at_ms: Option<u64>,
) -> RateLimitView {
    let tier = policy.tiers().get(mark.tier_index);
    RateLimitView {
        tier: tier.map(|t| t.name().to_owned()),
        requests_per_second: tier.map(|t| t.requests_per_second()),
        burst: tier.map(|t| t.burst().get()),
        verdict: mark.kind,
        remaining: mark.remaining,
        reset_secs: mark.reset_secs,
        decided_at_ms,
        bucket_full_now: policy.bucket_is_full(&state.bucket),
    }
}

/// Likelihoods of each route class within each horizon for a user whose
/// last action was `last`.
fn next_action(
    insights: &Insights,
    policy: &Policy,
    cohort: Option<CohortId>,
    last: ActionMark,
    now_ms: u64,
) -> Option<NextActionView> {
    let table = insights.next_action.as_ref()?;
    let horizons = table.horizons_ms().len();
    let classes = route_classes(policy);
    let last_route = classes
        .iter()
        .find(|(class, _)| *class == last.route_class)
        .map(|(_, name)| name.clone());
    let likelihoods = classes
        .into_iter()
        .map(|(class, route)| Likelihood {
            route,
            within: (0..horizons)
                .map(|h| table.probability(cohort, last, now_ms, class, h))
                .collect(),
        })
        .collect();
    Some(NextActionView {
        horizons_s: next_action_horizons_s(table),
        last_route,
        idle_ms: now_ms.saturating_sub(last.at_ms),
        calibrated: table.calibration().is_some(),
        likelihoods,
    })
}

/// `DELETE /v1/profiles/{user}`.
pub fn delete(shared: &Shared, caller: Caller, id: &str) -> Reply {
    let (key, entry) = match visible(shared, caller, id) {
        Ok(found) => found,
        Err(reply) => return reply,
    };

    // Self-service deletion must not refill a rate-limit bucket.
    let runtime = shared.runtime.load();
    if caller != Caller::Operator && !runtime.policy.bucket_is_full(&entry.extra.bucket) {
        let wait = entry
            .extra
            .decision
            .load()
            .map_or(1, |m| m.reset_secs.max(1));
        return Reply::error(
            StatusCode::CONFLICT,
            "your rate-limit budget is in use; delete again once it has refilled",
        )
        .header(RETRY_AFTER, HeaderValue::from(wait));
    }

    if shared.users.remove(key) {
        tracing::info!(user.id = %format_args!("{key:016x}"), by_operator = caller == Caller::Operator, "profile deleted");
        Reply::empty(StatusCode::NO_CONTENT)
    } else {
        Reply::error(StatusCode::NOT_FOUND, NOT_FOUND)
    }
}

#[cfg(test)]
mod forecast_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arc_swap::ArcSwap;

    use super::*;
    use crate::forecaster::{Decisions, ForecasterService};
    use crate::insights::test_support::{arrive, headers, shared};

    #[test]
    fn profile_and_forecast_views_show_all_four_quantities_after_a_tick() {
        let shared = shared();
        let decisions = Arc::new(ArcSwap::from_pointee(Decisions::initial(
            Duration::from_secs(1),
        )));
        let service = ForecasterService::new(
            Arc::clone(&shared),
            Arc::clone(&decisions),
            Duration::from_secs(1),
        );
        let now = shared.clock.now_ms();
        let bob = headers("x-api-key", "k_bob");
        // 50 requests over the last 5 s, each answered with 5 kB after 100 ms.
        let start = now - 5_000;
        let key = (0..50).fold(0, |_, i| arrive(&shared, &bob, "/", start + i * 100));
        let entry = shared.users.get(key).expect("tracked");
        for i in 0..50 {
            entry
                .windows
                .record_response(start + i * 100 + 100, 200, 5_000, 100_000);
        }

        // Before any tick: no forecast section.
        let before = get(&shared, Caller::Operator, &format!("{key:016x}"));
        let json: serde_json::Value = serde_json::from_slice(&before.body).expect("json");
        assert!(json["forecast"].is_null(), "{json}");

        service.run_ticks_for_test(2);
        // The test Shared has its own decisions cell: publish into it too.
        shared.decisions.store(decisions.load_full());

        let after = get(&shared, Caller::Operator, &format!("{key:016x}"));
        let json: serde_json::Value = serde_json::from_slice(&after.body).expect("json");
        let horizons = json["forecast"]["horizons"].as_array().expect("horizons");
        assert_eq!(horizons.len(), 4);
        let quantities = [
            "requests_per_second",
            "bytes_out_per_second",
            "backend_seconds_per_second",
            "concurrency",
        ];
        for h in horizons {
            for q in quantities {
                let (median, p90) = (h[q]["median"].as_f64(), h[q]["p90"].as_f64());
                assert!(median.is_some_and(|m| m >= 0.0), "{q}: {h}");
                assert!(p90 >= median, "{q}: {h}");
            }
        }
        // 5 kB and 0.1 s per request: bytes and backend time follow the requests.
        let first = &horizons[0];
        let rps = first["requests_per_second"]["p90"].as_f64().expect("p90");
        let bytes = first["bytes_out_per_second"]["p90"].as_f64().expect("p90");
        let busy = first["backend_seconds_per_second"]["p90"]
            .as_f64()
            .expect("p90");
        assert!(rps > 0.0, "{first}");
        assert!((bytes / rps - 5_000.0).abs() < 500.0, "{first}");
        assert!((busy / rps - 0.1).abs() < 0.01, "{first}");
        assert!(first["concurrency"]["p90"].as_f64() > Some(0.0), "{first}");
        assert!(json["forecast"]["reason"].is_string());

        // The aggregate view (published by the tick) carries the same four
        // quantities per horizon.
        let reply = super::super::cohorts::forecast(&shared);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        let aggregate = json["aggregate"]["horizons"].as_array().expect("horizons");
        assert_eq!(aggregate.len(), 4, "{json}");
        for h in aggregate {
            for q in quantities {
                assert!(h[q]["p90"].as_f64() >= h[q]["median"].as_f64(), "{q}: {h}");
            }
        }
    }
}
