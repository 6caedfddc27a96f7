//! `POST /v1/events` (declare a campaign or launch) and `GET /v1/events`
//! (what is declared and what past events measured), for operators.
//!
//! The body is checked field by field rather than by a derived
//! deserializer, so that every mistake gets a message naming the field and
//! what it takes:
//!
//! ```json
//! {"name": "spring-sale", "start": "2026-03-01T09:00:00Z",
//!  "end": 1772398800000, "scope": "route", "route": "export",
//!  "multiplier": 2.5}
//! ```
//!
//! `start` and `end` are RFC 3339 date-times or Unix milliseconds; `scope`
//! is `all` (default), `cohort` (with `cohort`: an id 0-7 or a current
//! cohort's name) or `route` (with `route`: a route name, or a class id
//! 0-7); `multiplier` is optional, in `(0, 1000]` (without it, the event
//! expects what earlier events of its name, else of its scope, measured).

use headroom_config::{check_unix_ms, parse_timestamp_ms, MAX_EVENT_MULTIPLIER};
use headroom_profiler::events::{MultiplierSource, Outcome};
use headroom_profiler::{Clock, CohortId, Event, EventError, EventId, Scope, ROUTE_CLASSES};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

use super::reply::Reply;
use super::views::route_classes;
use crate::state::Shared;

/// Largest accepted body, bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The fields a body may have.
const FIELDS: [&str; 7] = [
    "name",
    "start",
    "end",
    "scope",
    "cohort",
    "route",
    "multiplier",
];

/// A declared event as the API shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    id: EventId,
    name: String,
    start_ms: u64,
    end_ms: u64,
    scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cohort: Option<CohortId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    /// As declared (`null`: learned).
    multiplier: Option<f64>,
    /// What forecasts apply while it runs.
    expected_multiplier: Option<f64>,
    multiplier_source: Option<MultiplierSource>,
    /// `pending`, `running` or `ended` (settled at the next tick).
    status: &'static str,
}

#[derive(Debug, Serialize)]
struct EventsResponse {
    now_ms: u64,
    events: Vec<EventView>,
    /// The latest settled events with what they measured, oldest first.
    recent: Vec<Outcome>,
}

/// `GET /v1/events`.
pub fn list(shared: &Shared) -> Reply {
    let now_ms = shared.clock.now_ms();
    let events = shared
        .insights
        .declared_events()
        .into_iter()
        .map(|(id, event)| view(shared, id, event, now_ms))
        .collect();
    let response = EventsResponse {
        now_ms,
        events,
        recent: shared.insights.events.history(),
    };
    Reply::json(StatusCode::OK, &response)
}

/// `POST /v1/events` with `body`.
pub fn post(shared: &Shared, body: &[u8]) -> Reply {
    let event = match parse(shared, body) {
        Ok(event) => event,
        Err(message) => return Reply::error(StatusCode::BAD_REQUEST, &message),
    };
    match shared.insights.declare(event.clone()) {
        Ok(id) => {
            let now_ms = shared.clock.now_ms();
            Reply::json(StatusCode::CREATED, &view(shared, id, event, now_ms))
        }
        Err(EventError::Full) => Reply::error(StatusCode::CONFLICT, &EventError::Full.to_string()),
        Err(e) => Reply::error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn view(shared: &Shared, id: EventId, event: Event, now_ms: u64) -> EventView {
    // The book says what multiplier an event applies only while it is in
    // force: ask it about the event's own start for one that is pending.
    let at = now_ms.max(event.start_ms);
    let active = shared
        .insights
        .events
        .active_at(at)
        .into_iter()
        .find(|a| a.id == id);
    let status = if now_ms >= event.end_ms {
        "ended"
    } else if now_ms >= event.start_ms {
        "running"
    } else {
        "pending"
    };
    let runtime = shared.runtime.load();
    let (scope, cohort, route) = match event.scope {
        Scope::All => ("all", None, None),
        Scope::Cohort(c) => ("cohort", Some(c), None),
        Scope::Route(r) => {
            let name = route_classes(&runtime.policy)
                .into_iter()
                .find(|(class, _)| *class == r)
                .map_or_else(|| format!("route{r}"), |(_, name)| name);
            ("route", None, Some(name))
        }
    };
    EventView {
        id,
        name: event.name,
        start_ms: event.start_ms,
        end_ms: event.end_ms,
        scope,
        cohort,
        route,
        multiplier: event.multiplier,
        expected_multiplier: active.as_ref().map(|a| a.multiplier),
        multiplier_source: active.map(|a| a.source),
        status,
    }
}

/// The event a body declares, or what is wrong with it.
fn parse(shared: &Shared, body: &[u8]) -> Result<Event, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("body must be a JSON object".into());
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {unknown:?}; expected {}",
            FIELDS.join(", ")
        ));
    }

    let name = match fields.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err("name: expected a non-empty string".into()),
    };
    let start_ms = time(&fields, "start")?;
    let end_ms = time(&fields, "end")?;
    if end_ms <= start_ms {
        return Err(format!(
            "end: must be after start ({start_ms} ms), got {end_ms} ms"
        ));
    }
    let scope = scope(shared, &fields)?;
    let multiplier = match fields.get("multiplier") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(m) if m > 0.0 && m <= MAX_EVENT_MULTIPLIER => Some(m),
            _ => {
                let range = format!("above 0 and at most {MAX_EVENT_MULTIPLIER}");
                return Err(format!("multiplier: expected a number {range}, got {n}"));
            }
        },
        Some(_) => return Err("multiplier: expected a number or null".into()),
    };
    Ok(Event {
        name,
        start_ms,
        end_ms,
        scope,
        multiplier,
    })
}

/// A required time field: RFC 3339 text or whole Unix milliseconds.
fn time(fields: &Map<String, Value>, key: &str) -> Result<u64, String> {
    let parsed = match fields.get(key) {
        Some(Value::String(s)) => parse_timestamp_ms(s),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms) => check_unix_ms(ms),
            None => return Err(format!("{key}: expected whole Unix milliseconds, got {n}")),
        },
        Some(_) => {
            return Err(format!(
                "{key}: expected an RFC 3339 string or Unix milliseconds"
            ))
        }
        None => return Err(format!("{key}: required (RFC 3339 or Unix milliseconds)")),
    };
    parsed.map_err(|e| format!("{key}: {e}"))
}

/// `scope` with its `cohort` or `route` field.
fn scope(shared: &Shared, fields: &Map<String, Value>) -> Result<Scope, String> {
    let kind = match fields.get("scope") {
        None | Some(Value::Null) => "all",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("scope: expected \"all\", \"cohort\" or \"route\"".into()),
    };
    for (key, wanted) in [("cohort", "cohort"), ("route", "route")] {
        if fields.contains_key(key) && kind != wanted {
            return Err(format!("{key}: only allowed with \"scope\": \"{wanted}\""));
        }
    }
    match kind {
        "all" => Ok(Scope::All),
        "cohort" => cohort(shared, fields.get("cohort")).map(Scope::Cohort),
        "route" => route(shared, fields.get("route")).map(Scope::Route),
        other => Err(format!(
            "scope: expected \"all\", \"cohort\" or \"route\", got {other:?}"
        )),
    }
}

fn cohort(shared: &Shared, value: Option<&Value>) -> Result<CohortId, String> {
    match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| u8::try_from(i).ok())
            .and_then(CohortId::new)
            .ok_or_else(|| format!("cohort: expected an id from 0 to 7, got {n}")),
        Some(Value::String(name)) => {
            let insights = shared.insights.snapshot();
            insights
                .cohorts
                .cohorts
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.id)
                .ok_or_else(|| format!("cohort: no current cohort is named {name:?}"))
        }
        _ => Err("cohort: required with scope cohort (an id 0-7 or a cohort name)".into()),
    }
}

fn route(shared: &Shared, value: Option<&Value>) -> Result<u8, String> {
    let runtime = shared.runtime.load();
    match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| u8::try_from(i).ok())
            .filter(|&i| usize::from(i) < ROUTE_CLASSES)
            .ok_or_else(|| format!("route: expected a class id from 0 to 7, got {n}")),
        Some(Value::String(name)) => {
            crate::insights::route_id(&runtime.policy, name).ok_or_else(|| {
                let names: Vec<String> = route_classes(&runtime.policy)
                    .into_iter()
                    .map(|(_, n)| n)
                    .collect();
                format!(
                    "route: expected one of the routes ({}), got {name:?}",
                    names.join(", ")
                )
            })
        }
        _ => Err("route: required with scope route (a route name or class id)".into()),
    }
}
