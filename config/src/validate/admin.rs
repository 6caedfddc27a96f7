//! Checks for `admin_api` (the operator token) and `events` (declared
//! demand events).
//!
//! The token is a secret like `identity.secret`: resolved from `env:NAME`
//! at load time and never echoed in a message. Events are checked the way
//! `POST /v1/events` checks them, so a file that passes `headroom check`
//! declares exactly what an operator could have posted.

use serde_saphyr::Spanned;

use super::identity::secret;
use super::Ctx;
use crate::admin::{
    AdminApi, DeclaredEvent, EventScope, MAX_DECLARED_EVENTS, MAX_EVENT_MULTIPLIER,
    MAX_EVENT_NAME_BYTES, MIN_ADMIN_TOKEN_BYTES,
};
use crate::raw::{RawAdminApi, RawEvent, Scalar, SpannedList};
use crate::schema::Route;
use crate::timestamp::{check_unix_ms, parse_timestamp_ms, TIMESTAMP_FORMAT};

/// Name of the route class of requests that match no route.
const OTHER_ROUTE: &str = "other";

/// Highest cohort id.
const MAX_COHORT_ID: u64 = 7;

/// Checks `admin_api`; absent means no token (operator endpoints off).
pub(super) fn admin_api(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawAdminApi>>) -> AdminApi {
    let Some(written) = raw.and_then(|r| r.value.token.as_ref()) else {
        return AdminApi::default();
    };
    let key = "admin_api.token";
    let Some(token) = secret(ctx, key, written, MIN_ADMIN_TOKEN_BYTES) else {
        return AdminApi::default();
    };
    // The token travels in a header: visible ASCII, no spaces.
    if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
        let message = "the token must be visible ASCII without spaces (it is sent in the \
                       Authorization header)";
        ctx.invalid(&written.referenced, key, message);
        return AdminApi::default();
    }
    AdminApi { token: Some(token) }
}

/// Checks `events`; `routes` are the valid routes, for route scopes.
pub(super) fn events(
    ctx: &mut Ctx<'_>,
    list: &SpannedList<RawEvent>,
    routes: &[Route],
) -> Vec<DeclaredEvent> {
    let Some(list) = list else { return Vec::new() };
    if let Some(extra) = list.value.get(MAX_DECLARED_EVENTS) {
        let message = format!(
            "at most {MAX_DECLARED_EVENTS} events are allowed, got {}",
            list.value.len()
        );
        ctx.invalid(&extra.referenced, "events", message);
    }
    list.value
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| event(ctx, &format!("events[{i}]"), entry, routes))
        .collect()
}

/// One event; `None` when any part of it is invalid (each part reported).
fn event(
    ctx: &mut Ctx<'_>,
    key: &str,
    entry: &Spanned<RawEvent>,
    routes: &[Route],
) -> Option<DeclaredEvent> {
    let raw = &entry.value;
    let at = &entry.referenced;

    let name_key = format!("{key}.name");
    let name = ctx
        .require(&raw.name, at, &name_key, "a name of 1 to 128 bytes")
        .and_then(|v| event_name(ctx, &name_key, v));
    let start_key = format!("{key}.start");
    let start = ctx
        .require(&raw.start, at, &start_key, TIMESTAMP_FORMAT)
        .and_then(|v| timestamp(ctx, &start_key, v));
    let end_key = format!("{key}.end");
    let end = ctx
        .require(&raw.end, at, &end_key, TIMESTAMP_FORMAT)
        .and_then(|v| timestamp(ctx, &end_key, v));
    if let (Some(start), Some(end), Some(written)) = (start, end, &raw.end) {
        if end <= start {
            let message = format!("must be after start ({start} ms), got {end} ms");
            ctx.invalid(&written.referenced, &end_key, message);
        }
    }
    let scope = scope(ctx, key, raw, at, routes);
    let multiplier = raw
        .multiplier
        .as_ref()
        .map(|v| multiplier(ctx, &format!("{key}.multiplier"), v));

    let (start_ms, end_ms) = (start?, end?);
    Some(DeclaredEvent {
        name: name?,
        start_ms,
        end_ms: (end_ms > start_ms).then_some(end_ms)?,
        scope: scope?,
        multiplier: multiplier.map_or(Some(None), |m| m.map(Some))?,
    })
}

/// A name of 1 to [`MAX_EVENT_NAME_BYTES`] bytes, not blank.
fn event_name(ctx: &mut Ctx<'_>, key: &str, value: &Spanned<String>) -> Option<String> {
    let name = ctx.non_empty(key, value)?;
    if name.len() > MAX_EVENT_NAME_BYTES {
        let message = format!(
            "expected at most {MAX_EVENT_NAME_BYTES} bytes, got {}",
            name.len()
        );
        ctx.invalid(&value.referenced, key, message);
        return None;
    }
    Some(name)
}

/// An RFC 3339 string or a whole number of Unix milliseconds.
fn timestamp(ctx: &mut Ctx<'_>, key: &str, value: &Spanned<Scalar>) -> Option<u64> {
    let parsed = match &value.value {
        Scalar::Str(text) => parse_timestamp_ms(text),
        Scalar::UInt(ms) => check_unix_ms(*ms),
        _ => {
            let message = format!("expected {TIMESTAMP_FORMAT}, got {}", ctx.shown(value));
            ctx.invalid(&value.referenced, key, message);
            return None;
        }
    };
    parsed
        .map_err(|e| ctx.invalid(&value.referenced, key, e.to_string()))
        .ok()
}

/// `scope` with the `cohort` or `route` key it needs, and neither key
/// without it.
fn scope(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawEvent,
    at: &serde_saphyr::Location,
    routes: &[Route],
) -> Option<EventScope> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        All,
        Cohort,
        Route,
    }
    let options = [
        ("all", Kind::All),
        ("cohort", Kind::Cohort),
        ("route", Kind::Route),
    ];
    let scope_key = format!("{key}.scope");
    let kind = match &raw.scope {
        Some(v) => ctx.choice(&scope_key, v, &options)?,
        None => Kind::All,
    };

    // A key that belongs to another scope is a mistake, not a no-op.
    let cohort_key = format!("{key}.cohort");
    let route_key = format!("{key}.route");
    if let (Some(v), false) = (&raw.cohort, kind == Kind::Cohort) {
        ctx.invalid(
            &v.referenced,
            &cohort_key,
            "only allowed with scope: cohort",
        );
        return None;
    }
    if let (Some(v), false) = (&raw.route, kind == Kind::Route) {
        ctx.invalid(&v.referenced, &route_key, "only allowed with scope: route");
        return None;
    }

    match kind {
        Kind::All => Some(EventScope::All),
        Kind::Cohort => {
            let v = ctx.require(&raw.cohort, at, &cohort_key, "a cohort id from 0 to 7")?;
            let id = ctx.integer(&cohort_key, v, 0, MAX_COHORT_ID)?;
            Some(EventScope::Cohort(u8::try_from(id).ok()?))
        }
        Kind::Route => {
            let v = ctx.require(&raw.route, at, &route_key, "the name of a route")?;
            let known = v.value == OTHER_ROUTE || routes.iter().any(|r| r.name == v.value);
            if known {
                return Some(EventScope::Route(v.value.clone()));
            }
            let names: Vec<&str> = std::iter::once(OTHER_ROUTE)
                .chain(routes.iter().map(|r| r.name.as_str()))
                .collect();
            let message = format!(
                "expected one of the routes ({}), got {}",
                names.join(", "),
                ctx.shown_str(v)
            );
            ctx.invalid(&v.referenced, &route_key, message);
            None
        }
    }
}

/// A multiplier in `(0, MAX_EVENT_MULTIPLIER]`.
fn multiplier(ctx: &mut Ctx<'_>, key: &str, value: &Spanned<Scalar>) -> Option<f64> {
    let m = ctx.positive_number(key, value)?;
    if m > MAX_EVENT_MULTIPLIER {
        let message = format!("expected at most {MAX_EVENT_MULTIPLIER}, got {m}");
        ctx.invalid(&value.referenced, key, message);
        return None;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use crate::{load_str_with_env, Config, EventScope};

    const BASE: &str = "\
routes:
  - name: export
    prefix: /export
tiers:
  - name: free
    requests_per_second: 2
    burst: 10
default_tier: free
";

    fn env(name: &str) -> Option<String> {
        (name == "ADMIN_TOKEN").then(|| "operator-token-0123456789".to_owned())
    }

    fn load(extra: &str) -> Result<Config, Vec<String>> {
        load_str_with_env(&format!("{BASE}{extra}"), "x.yaml", &env).map_err(|e| e.lines())
    }

    #[test]
    fn without_an_admin_section_operator_access_is_off_and_no_events_exist() {
        let config = load("").expect("valid");
        assert!(config.admin_api.token.is_none());
        assert!(config.events.is_empty());
        let config = load("admin_api:\n  token: null\n").expect("valid");
        assert!(config.admin_api.token.is_none());
    }

    #[test]
    fn the_token_comes_from_the_environment_and_is_never_echoed() {
        let config = load("admin_api:\n  token: env:ADMIN_TOKEN\n").expect("valid");
        let token = config.admin_api.token.expect("token set");
        assert_eq!(token.expose(), "operator-token-0123456789");

        let lines = load("admin_api:\n  token: \"short-secret\"\n").expect_err("too short");
        assert_eq!(
            lines,
            ["x.yaml:10:10: admin_api.token: the secret is 12 bytes long; expected at least 16 bytes"]
        );
        let lines =
            load("admin_api:\n  token: \"has a space in it, too long\"\n").expect_err("space");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("x.yaml:10:10: admin_api.token: the token must be visible"));
        assert!(!lines[0].contains("has a space"), "{}", lines[0]);
        let lines = load("admin_api:\n  token: env:NOPE\n").expect_err("unset");
        assert!(lines[0].contains("environment variable NOPE is not set"));
        let lines = load("admin_api:\n  tokn: x\n").expect_err("typo");
        assert!(lines[0].contains("unknown field `tokn`"), "{lines:?}");
    }

    #[test]
    fn events_take_rfc3339_or_unix_ms_and_each_scope() {
        let config = load(
            "events:
  - name: spring-sale
    start: \"2026-03-01T09:00:00Z\"
    end: 1772398800000
    multiplier: 2.5
  - name: export-rush
    start: \"2026-03-02T00:00:00+01:00\"
    end: \"2026-03-02T06:00:00+01:00\"
    scope: route
    route: export
  - name: mobile-push
    start: 1772355600000
    end: 1772359200000
    scope: cohort
    cohort: 3
",
        )
        .expect("valid");
        let e = &config.events;
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].start_ms, e[0].end_ms, e[0].multiplier),
            (1_772_355_600_000, 1_772_398_800_000, Some(2.5))
        );
        assert_eq!(e[0].scope, EventScope::All);
        assert_eq!(e[1].scope, EventScope::Route("export".into()));
        assert_eq!(e[1].start_ms, 1_772_406_000_000);
        assert_eq!(e[1].multiplier, None);
        assert_eq!(e[2].scope, EventScope::Cohort(3));
    }

    #[test]
    fn bad_events_are_reported_at_their_keys() {
        let lines = load(
            "events:
  - name: a
    start: 2026-03-01T09:00:00Z
    end: 1772355600
    multiplier: 0
  - name: \"\"
    start: \"2026-03-01T09:00:00Z\"
    end: \"2026-03-01T08:00:00Z\"
    scope: route
    route: exports
  - start: yesterday
    end: \"2026-03-01T08:00:00Z\"
    scope: cohort
    cohort: 8
    multiplier: 1001
  - name: b
    start: \"2026-03-01T09:00:00Z\"
    end: \"2026-03-01T10:00:00Z\"
    route: export
",
        )
        .expect_err("invalid");
        let expected = [
            "x.yaml:12:10: events[0].end: 1772355600 ms is outside 2000-01-01 to 9999-12-31; \
             Unix times are in milliseconds here (seconds times 1000)",
            "x.yaml:13:17: events[0].multiplier: expected a positive number, got 0",
            "x.yaml:14:11: events[1].name: expected a non-empty string, got an empty one",
            "x.yaml:16:10: events[1].end: must be after start (1772355600000 ms), got \
             1772352000000 ms",
            "x.yaml:18:12: events[1].route: expected one of the routes (other, export), got \
             exports",
            "x.yaml:19:5: events[2].name: missing required key: expected a name of 1 to 128 bytes",
            "x.yaml:19:12: events[2].start: expected an RFC 3339 date-time like \
             2026-03-01T09:00:00Z or Unix milliseconds like 1772355600000, got \"yesterday\"",
            "x.yaml:22:13: events[2].cohort: expected an integer from 0 to 7, got 8",
            "x.yaml:23:17: events[2].multiplier: expected at most 1000, got 1001",
            "x.yaml:27:12: events[3].route: only allowed with scope: route",
        ];
        assert_eq!(lines, expected);
    }
}
