//! Checks for the policy sections: routes, tiers, the default tier and rules.
//!
//! These sections refer to each other (a tier's burst must cover every route
//! cost, rules name tiers and identity sources), so the checks run in an
//! order where each one can see what it refers to.

use serde_saphyr::{Location, Spanned};

use super::identity::Written;
use super::server::http_path;
use super::Ctx;
use crate::raw::{Field, RawCondition, RawRoute, RawRule, RawTier, SpannedList};
use crate::schema::{
    BandwidthWhen, Condition, Device, Route, RouteKind, RouteMatch, Rule, SourceKind, Tier,
};

/// Most route classes; the hot path keeps per-route state in fixed arrays.
pub(crate) const MAX_ROUTES: usize = 8;
/// Largest token cost of one request.
const MAX_COST: u64 = 1_000_000;
/// Largest fair-queue weight of a tier.
const MAX_WEIGHT: u64 = 1_000_000;
/// Highest tier priority.
const MAX_PRIORITY: u64 = 1000;

/// The tiers that passed validation, plus every name written in the file.
pub(super) struct TierSet {
    /// Fully valid tiers, in file order.
    pub valid: Vec<Tier>,
    /// Every tier name as written, valid or not. A reference to a tier that
    /// exists but has a bad field is not reported a second time.
    written: Vec<String>,
}

impl TierSet {
    /// Checks that `value` names a tier; returns the name when it does.
    pub(super) fn reference(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        value: &Spanned<String>,
    ) -> Option<String> {
        if self.written.contains(&value.value) {
            return Some(value.value.clone());
        }
        // With no tiers at all, the missing `tiers` error already says everything.
        if !self.written.is_empty() {
            let got = ctx.shown_str(value);
            let message = format!(
                "expected one of the defined tiers ({}), got {got}",
                self.written.join(", ")
            );
            ctx.invalid(&value.referenced, key, message);
        }
        None
    }
}

/// `routes`: at most [`MAX_ROUTES`], unique names, exactly one matcher each.
pub(super) fn routes(ctx: &mut Ctx<'_>, list: &SpannedList<RawRoute>) -> Vec<Route> {
    let Some(list) = list else { return Vec::new() };
    if let Some(extra) = list.value.get(MAX_ROUTES) {
        let message = format!(
            "at most {MAX_ROUTES} routes are allowed, got {}",
            list.value.len()
        );
        ctx.invalid(&extra.referenced, "routes", message);
    }

    let mut out: Vec<Route> = Vec::with_capacity(list.value.len());
    for (i, entry) in list.value.iter().enumerate() {
        let key = format!("routes[{i}]");
        if let Some(route) = route(ctx, &key, &entry.value, &entry.referenced, &out) {
            out.push(route);
        }
    }
    out
}

/// One route; `earlier` are the valid routes before it, for duplicate and
/// shadowing checks.
fn route(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawRoute,
    at: &Location,
    earlier: &[Route],
) -> Option<Route> {
    let cost = ctx.integer_or(&format!("{key}.cost"), &raw.cost, (1, MAX_COST), 1);
    let kind_options = [
        ("interactive", RouteKind::Interactive),
        ("batch", RouteKind::Batch),
    ];
    let kind = ctx.choice_or(
        &format!("{key}.kind"),
        &raw.kind,
        &kind_options,
        RouteKind::Interactive,
    );
    let matcher = route_match(ctx, key, raw, at);

    let name_key = format!("{key}.name");
    let written = ctx.require(&raw.name, at, &name_key, "a route name")?;
    let name = ctx.label_name(&name_key, written)?;
    if let Some(first) = earlier.iter().position(|r| r.name == name) {
        ctx.invalid(
            &written.referenced,
            &name_key,
            format!("route name {name:?} is already used by routes[{first}]"),
        );
    }

    let matcher = matcher?;
    if let RouteMatch::Prefix(prefix) = &matcher {
        if let Some(shadow) = earlier
            .iter()
            .find(|r| matches!(r.matcher, RouteMatch::Prefix(_)) && r.matcher.matches(prefix))
        {
            if let Some(written) = &raw.prefix {
                let message = format!("unreachable: every path under {prefix:?} already matches the earlier route {:?}; list the more specific route first", shadow.name);
                ctx.invalid(&written.referenced, &format!("{key}.prefix"), message);
            }
        }
    }
    Some(Route {
        name,
        matcher,
        cost: u32::try_from(cost).unwrap_or(1),
        kind,
    })
}

/// Exactly one of `prefix` and `pattern`, each a well-formed path.
fn route_match(ctx: &mut Ctx<'_>, key: &str, raw: &RawRoute, at: &Location) -> Option<RouteMatch> {
    match (&raw.prefix, &raw.pattern) {
        (Some(prefix), None) => {
            http_path(ctx, &format!("{key}.prefix"), prefix).map(RouteMatch::Prefix)
        }
        (None, Some(pattern)) => {
            glob(ctx, &format!("{key}.pattern"), pattern).map(RouteMatch::Pattern)
        }
        (Some(_), Some(pattern)) => {
            ctx.invalid(
                &pattern.referenced,
                &format!("{key}.pattern"),
                "expected exactly one of prefix and pattern, got both",
            );
            None
        }
        (None, None) => {
            ctx.invalid(at, key, "missing required key: expected prefix (like /export) or pattern (like /users/*/export)");
            None
        }
    }
}

/// A path glob whose `*` only ever stands for a whole segment.
fn glob(ctx: &mut Ctx<'_>, key: &str, value: &Spanned<String>) -> Option<String> {
    let pattern = http_path(ctx, key, value)?;
    if pattern
        .split('/')
        .all(|segment| segment == "*" || !segment.contains('*'))
    {
        return Some(pattern);
    }
    let got = ctx.shown_str(value);
    ctx.invalid(
        &value.referenced,
        key,
        format!("expected * only as a whole segment (like /users/*/export), got {got}"),
    );
    None
}

/// `tiers`: required, non-empty, names unique, bursts covering every route.
pub(super) fn tiers(ctx: &mut Ctx<'_>, list: &SpannedList<RawTier>, routes: &[Route]) -> TierSet {
    let mut set = TierSet {
        valid: Vec::new(),
        written: Vec::new(),
    };
    let Some(list) = ctx.require(
        list,
        &Location::UNKNOWN,
        "tiers",
        "a list of at least one tier",
    ) else {
        return set;
    };
    if list.value.is_empty() {
        ctx.invalid(
            &list.referenced,
            "tiers",
            "expected at least one tier, got an empty list",
        );
    }

    for (i, entry) in list.value.iter().enumerate() {
        let key = format!("tiers[{i}]");
        if let Some(name) = &entry.value.name {
            if let Some(first) = set.written.iter().position(|n| *n == name.value) {
                let message = format!(
                    "tier name {:?} is already used by tiers[{first}]",
                    name.value
                );
                ctx.invalid(&name.referenced, &format!("{key}.name"), message);
            }
            set.written.push(name.value.clone());
        }
        if let Some(tier) = tier(ctx, &key, &entry.value, &entry.referenced, routes) {
            set.valid.push(tier);
        }
    }
    set
}

/// Slowest pacing accepted, bytes per second: below 1 KiB/s responses would
/// take longer than any client waits.
const MIN_BANDWIDTH: u64 = 1024;

/// How long a tier's requests may wait for admission unless configured.
const DEFAULT_MAX_QUEUE_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// One tier.
fn tier(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawTier,
    at: &Location,
    routes: &[Route],
) -> Option<Tier> {
    let priority = ctx.integer_or(
        &format!("{key}.priority"),
        &raw.priority,
        (0, MAX_PRIORITY),
        0,
    );
    let weight = ctx.integer_or(&format!("{key}.weight"), &raw.weight, (1, MAX_WEIGHT), 1);
    let name = ctx
        .require(&raw.name, at, &format!("{key}.name"), "a tier name")
        .and_then(|v| ctx.label_name(&format!("{key}.name"), v));
    let rps_key = format!("{key}.requests_per_second");
    let rps = ctx
        .require(
            &raw.requests_per_second,
            at,
            &rps_key,
            "a positive number of requests per second",
        )
        .and_then(|v| ctx.positive_number(&rps_key, v));
    let burst_key = format!("{key}.burst");
    let burst_value = ctx.require(&raw.burst, at, &burst_key, "an integer >= 1 (tokens)");
    let burst = burst_value.and_then(|v| ctx.integer(&burst_key, v, 1, u64::from(u32::MAX)));

    // A request costing more than the bucket can ever hold would wait forever.
    if let (Some(burst), Some(value)) = (burst, burst_value) {
        if let Some((i, costliest)) = routes.iter().enumerate().max_by_key(|(_, r)| r.cost) {
            if burst < u64::from(costliest.cost) {
                let message = format!(
                    "{burst} is below the cost {} of routes[{i}] ({:?}), so those requests could never be admitted; expected burst >= {}",
                    costliest.cost, costliest.name, costliest.cost
                );
                ctx.invalid(&value.referenced, &burst_key, message);
            }
        }
    }

    let max_queue_time = ctx.duration_or(
        &format!("{key}.max_queue_time"),
        &raw.max_queue_time,
        DEFAULT_MAX_QUEUE_TIME,
        false,
    );
    let min_share = match &raw.min_share {
        Some(v) => ctx.fraction(&format!("{key}.min_share"), v)?,
        None => 0.0,
    };

    let bandwidth_bytes_per_second = raw.bandwidth_bytes_per_second.as_ref().and_then(|v| {
        ctx.integer(
            &format!("{key}.bandwidth_bytes_per_second"),
            v,
            MIN_BANDWIDTH,
            u64::MAX,
        )
    });
    let bandwidth_when = ctx.choice_or(
        &format!("{key}.bandwidth_when"),
        &raw.bandwidth_when,
        &BandwidthWhen::ALL,
        BandwidthWhen::default(),
    );

    Some(Tier {
        name: name?,
        priority: u16::try_from(priority).unwrap_or(0),
        requests_per_second: rps?,
        burst: u32::try_from(burst?).ok()?,
        weight: u32::try_from(weight).unwrap_or(1),
        max_queue_time,
        min_share,
        bandwidth_bytes_per_second,
        bandwidth_when,
    })
}

/// `default_tier`: required, and one of the tiers.
pub(super) fn default_tier(ctx: &mut Ctx<'_>, field: &Field<String>, tiers: &TierSet) -> String {
    ctx.require(
        field,
        &Location::UNKNOWN,
        "default_tier",
        "the name of one of the tiers",
    )
    .and_then(|v| tiers.reference(ctx, "default_tier", v))
    .unwrap_or_default()
}

/// `rules`: tiers exist, and every condition can match something.
pub(super) fn rules(
    ctx: &mut Ctx<'_>,
    list: &SpannedList<RawRule>,
    tiers: &TierSet,
    identity: &Written,
    routes: &[Route],
) -> Vec<Rule> {
    let Some(list) = list else { return Vec::new() };
    let mut out = Vec::with_capacity(list.value.len());
    for (i, entry) in list.value.iter().enumerate() {
        let key = format!("rules[{i}]");
        let when = match &entry.value.when {
            Some(when) => condition(ctx, &format!("{key}.when"), &when.value, identity, routes),
            None => Some(Condition::default()),
        };
        let tier_key = format!("{key}.tier");
        let tier = ctx
            .require(
                &entry.value.tier,
                &entry.referenced,
                &tier_key,
                "the name of one of the tiers",
            )
            .and_then(|v| tiers.reference(ctx, &tier_key, v));
        if let (Some(when), Some(tier)) = (when, tier) {
            out.push(Rule { when, tier });
        }
    }
    out
}

/// One rule's conditions (also `preallocate.when`); `routes` are the valid
/// routes, for next-action conditions.
pub(super) fn condition(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawCondition,
    identity: &Written,
    routes: &[Route],
) -> Option<Condition> {
    let mut ok = true;
    let mut text = |ctx: &mut Ctx<'_>, name: &str, field: &Field<String>| -> Option<String> {
        let value = field.as_ref()?;
        let checked = ctx.non_empty(&format!("{key}.{name}"), value);
        ok &= checked.is_some();
        checked
    };
    let plan = text(ctx, "plan", &raw.plan);
    let role = text(ctx, "role", &raw.role);
    let location = text(ctx, "location", &raw.location).map(|l| l.to_ascii_lowercase());

    if let (Some(_), Some(written), false) = (&location, &raw.location, identity.location_header) {
        let message = "needs identity.location_header to be set, or this rule can never match";
        ctx.invalid(&written.referenced, &format!("{key}.location"), message);
        ok = false;
    }

    let device = raw.device.as_ref().and_then(|v| {
        let checked = ctx.choice(&format!("{key}.device"), v, &Device::ALL);
        ok &= checked.is_some();
        checked
    });
    let authenticated = raw.authenticated.as_ref().and_then(|v| {
        let checked = ctx.boolean(&format!("{key}.authenticated"), v);
        ok &= checked.is_some();
        checked
    });
    let source = raw.source.as_ref().and_then(|v| {
        let kind = ctx.choice(&format!("{key}.source"), v, &SourceKind::ALL);
        ok &= kind.is_some();
        let kind = kind?;
        if kind != SourceKind::Anonymous && !identity.source_kinds.contains(&kind) {
            let message = format!(
                "no {} source in identity.sources, so this rule can never match",
                kind.as_str()
            );
            ctx.invalid(&v.referenced, &format!("{key}.source"), message);
            ok = false;
        }
        Some(kind)
    });

    let predictions = super::shaping::predictions(ctx, key, raw, routes);
    ok &= predictions.is_some();
    let predictions = predictions.unwrap_or_default();

    ok.then_some(Condition {
        plan,
        role,
        location,
        device,
        authenticated,
        source,
        predicted_rps_p90_above: predictions.rps_p90_above,
        latency_sensitive: predictions.latency_sensitive,
        next_action: predictions.next_action,
    })
}
