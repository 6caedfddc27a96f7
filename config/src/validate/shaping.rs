//! Checks for predictive shaping: prediction conditions in `rules[].when`,
//! `tiering`, and `preallocate` with its hook.

use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::identity::Written;
use super::Ctx;
use crate::raw::{RawCondition, RawConfig, RawHook, RawNextAction, RawTiering, Scalar};
use crate::schema::{Admission, Route, Rule};
use crate::shaping::{
    NextActionCondition, PreallocHook, Preallocate, Tiering, MAX_PREDICTIVE_RULES,
};

/// Longest `next_action.within` and `preallocate.horizon`: the next-action
/// model's longest horizon.
const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// Longest `tiering.min_dwell`.
const MAX_DWELL: Duration = Duration::from_secs(86_400);

/// Longest hook timeout: a slow hook only fills its own queue, but a limit
/// above this is surely a typo.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The prediction conditions of one `when`.
#[derive(Debug, Default)]
pub(super) struct Predictions {
    pub rps_p90_above: Option<f64>,
    pub latency_sensitive: Option<bool>,
    pub next_action: Option<NextActionCondition>,
}

/// The prediction conditions of `raw` (at `key`); `None` if any is invalid.
pub(super) fn predictions(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawCondition,
    routes: &[Route],
) -> Option<Predictions> {
    let mut ok = true;
    let rps_p90_above = raw.predicted_rps_p90_above.as_ref().and_then(|v| {
        let checked = non_negative(ctx, &format!("{key}.predicted_rps_p90_above"), v);
        ok &= checked.is_some();
        checked
    });
    let latency_sensitive = raw.latency_sensitive.as_ref().and_then(|v| {
        let checked = ctx.boolean(&format!("{key}.latency_sensitive"), v);
        ok &= checked.is_some();
        checked
    });
    let next_action = raw.next_action.as_ref().and_then(|v| {
        let checked = next_action(ctx, &format!("{key}.next_action"), v, routes);
        ok &= checked.is_some();
        checked
    });
    ok.then_some(Predictions {
        rps_p90_above,
        latency_sensitive,
        next_action,
    })
}

/// A finite number >= 0.
fn non_negative(ctx: &mut Ctx<'_>, key: &str, value: &Spanned<Scalar>) -> Option<f64> {
    let number = match value.value {
        Scalar::UInt(n) => Some(n as f64),
        Scalar::Float(f) => Some(f),
        _ => None,
    };
    match number {
        Some(n) if n.is_finite() && n >= 0.0 => Some(n),
        _ => {
            let got = ctx.shown(value);
            let message = format!("expected a number >= 0 (requests per second), got {got}");
            ctx.invalid(&value.referenced, key, message);
            None
        }
    }
}

/// A duration in `min..=max`.
fn duration_in(
    ctx: &mut Ctx<'_>,
    key: &str,
    value: &Spanned<Scalar>,
    (min, max): (Duration, Duration),
) -> Option<Duration> {
    let d = ctx.duration(key, value)?;
    if (min..=max).contains(&d) {
        return Some(d);
    }
    let got = ctx.shown(value);
    let message = format!("expected a duration from {min:?} to {max:?}, got {got}");
    ctx.invalid(&value.referenced, key, message);
    None
}

/// `next_action`: a known route, a horizon, a likelihood.
fn next_action(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &Spanned<RawNextAction>,
    routes: &[Route],
) -> Option<NextActionCondition> {
    let at = &raw.referenced;
    let raw = &raw.value;
    let route_key = format!("{key}.route");
    let route = ctx
        .require(&raw.route, at, &route_key, "a route name or other")
        .and_then(|v| {
            if v.value == "other" || routes.iter().any(|r| r.name == v.value) {
                return Some(v.value.clone());
            }
            let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
            let got = ctx.shown_str(v);
            let message = format!(
                "expected one of the routes ({}) or other, got {got}",
                names.join(", ")
            );
            ctx.invalid(&v.referenced, &route_key, message);
            None
        });
    let within_key = format!("{key}.within");
    let within = ctx
        .require(&raw.within, at, &within_key, "a duration such as 15m")
        .and_then(|v| duration_in(ctx, &within_key, v, (Duration::from_secs(1), MAX_AHEAD)));
    let likelihood_key = format!("{key}.likelihood_above");
    let likelihood_above = ctx
        .require(
            &raw.likelihood_above,
            at,
            &likelihood_key,
            "a likelihood from 0 up to 1",
        )
        .and_then(|v| ctx.fraction(&likelihood_key, v));
    Some(NextActionCondition {
        route: route?,
        within: within?,
        likelihood_above: likelihood_above?,
    })
}

/// `tiering`; defaults when absent.
pub(super) fn tiering(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawTiering>>) -> Tiering {
    let defaults = Tiering::default();
    let Some(field) = raw.and_then(|r| r.value.min_dwell.as_ref()) else {
        return defaults;
    };
    let range = (Duration::ZERO, MAX_DWELL);
    match duration_in(ctx, "tiering.min_dwell", field, range) {
        Some(min_dwell) => Tiering { min_dwell },
        None => defaults,
    }
}

/// `preallocate`; `None` when absent or invalid.
pub(super) fn preallocate(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    identity: &Written,
    routes: &[Route],
    admission: &Admission,
    listeners: Listeners,
) -> Option<Preallocate> {
    let section = raw.preallocate.as_ref()?;
    let at = &section.referenced;
    let s = &section.value;

    let when = ctx
        .require(&s.when, at, "preallocate.when", "conditions with at least one prediction (like predicted_rps_p90_above)")
        .and_then(|w| {
            let cond = super::policy::condition(ctx, "preallocate.when", &w.value, identity, routes)?;
            if cond.is_predictive() {
                return Some(cond);
            }
            let message = "expected at least one of predicted_rps_p90_above, latency_sensitive and next_action, or every user would be pre-allocated";
            ctx.invalid(&w.referenced, "preallocate.when", message);
            None
        });
    let horizon = s
        .horizon
        .as_ref()
        .map_or(Some(Duration::from_secs(900)), |v| {
            duration_in(
                ctx,
                "preallocate.horizon",
                v,
                (Duration::from_secs(1), MAX_AHEAD),
            )
        });
    let slots_per_user =
        ctx.integer_or("preallocate.slots_per_user", &s.slots_per_user, (1, 64), 1);
    let max_key = "preallocate.max_reserved_slots";
    let max_reserved_slots = ctx.integer_or(max_key, &s.max_reserved_slots, (1, 100_000), 8);
    if admission.enabled && max_reserved_slots >= u64::from(admission.max_concurrency) {
        let place = s.max_reserved_slots.as_ref().map_or(at, |v| &v.referenced);
        let message = format!(
            "{max_reserved_slots} would reserve the whole admission.max_concurrency ({}); expected fewer slots so other users keep some",
            admission.max_concurrency
        );
        ctx.invalid(place, max_key, message);
    }
    // A user's reservation must fit the total, or none is ever made.
    if let Some(v) = s
        .slots_per_user
        .as_ref()
        .filter(|_| slots_per_user > max_reserved_slots)
    {
        let message = format!(
            "{slots_per_user} slots per user is more than preallocate.max_reserved_slots ({max_reserved_slots}), so no user could ever be pre-allocated; expected at most {max_reserved_slots}"
        );
        ctx.invalid(&v.referenced, "preallocate.slots_per_user", message);
    }
    let hook = match &s.hook {
        Some(h) => Some(hook(ctx, &h.value, &h.referenced, listeners)?),
        None => None,
    };
    Some(Preallocate {
        when: when?,
        horizon: horizon?,
        slots_per_user: u32::try_from(slots_per_user).unwrap_or(1),
        max_reserved_slots: u32::try_from(max_reserved_slots).unwrap_or(8),
        hook,
    })
}

/// The proxy's own listeners, which a hook must not call (a request loop).
#[derive(Clone, Copy, Debug)]
pub(super) struct Listeners {
    /// `listen`.
    pub listen: SocketAddr,
    /// `admin`.
    pub admin: SocketAddr,
}

/// `preallocate.hook`.
fn hook(
    ctx: &mut Ctx<'_>,
    raw: &RawHook,
    at: &Location,
    listeners: Listeners,
) -> Option<PreallocHook> {
    let url = ctx
        .require(
            &raw.url,
            at,
            "preallocate.hook.url",
            "a URL like http://127.0.0.1:3000/_headroom/prealloc",
        )
        .and_then(|v| match parse_hook_url(&v.value) {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                let got = ctx.shown_str(v);
                ctx.invalid(
                    &v.referenced,
                    "preallocate.hook.url",
                    format!("{why}, got {got}"),
                );
                None
            }
        });
    let timeout = raw
        .timeout
        .as_ref()
        .map_or(Some(Duration::from_millis(200)), |v| {
            duration_in(
                ctx,
                "preallocate.hook.timeout",
                v,
                (Duration::from_millis(1), MAX_HOOK_TIMEOUT),
            )
        });
    let max_in_flight = ctx.integer_or(
        "preallocate.hook.max_in_flight",
        &raw.max_in_flight,
        (1, 64),
        4,
    );
    let queue = ctx.integer_or("preallocate.hook.queue", &raw.queue, (1, 65_536), 256);
    let (address, host, path) = url?;
    let hook = PreallocHook {
        url: raw
            .url
            .as_ref()
            .map(|u| u.value.clone())
            .unwrap_or_default(),
        address,
        host,
        path,
        timeout: timeout?,
        max_in_flight: usize::try_from(max_in_flight).unwrap_or(4),
        queue: usize::try_from(queue).unwrap_or(256),
    };

    // The hook must not call Headroom itself.
    for (name, listener) in [("listen", listeners.listen), ("admin", listeners.admin)] {
        if hook.targets(listener) {
            let v = raw.url.as_ref().expect("the url parsed, so it is present");
            let got = ctx.shown_str(v);
            let message = format!("expected the application's address, not Headroom's own {name} address {listener}, got {got}");
            ctx.invalid(&v.referenced, "preallocate.hook.url", message);
            return None;
        }
    }
    Some(hook)
}

/// Splits `http://IP:PORT/path` into address, `Host` value and path.
/// Only plain HTTP to an IP literal: the hook is a local application
/// endpoint, and nothing is resolved or redirected.
fn parse_hook_url(url: &str) -> Result<(SocketAddr, String, String), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("expected a plain http:// URL (https and other schemes are not supported)")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err("expected no user or password in the URL");
    }
    let address: SocketAddr = authority.parse().map_err(|_| {
        "expected an IP address and port as the host (like 127.0.0.1:3000): no names are resolved"
    })?;
    if address.port() == 0 {
        return Err("expected a port from 1 to 65535");
    }
    if address.ip().is_unspecified() {
        return Err("expected a host address to connect to, not the unspecified 0.0.0.0 or ::");
    }
    let clean = |c: char| c.is_ascii_graphic() && c != '#';
    if !path.chars().all(clean) {
        return Err("expected a path of visible ASCII characters without spaces or #");
    }
    Ok((address, authority.to_owned(), path.to_owned()))
}

/// With any prediction condition in force, at most
/// [`MAX_PREDICTIVE_RULES`] rules (the per-user static-match bits).
pub(super) fn predictive_rule_count(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    rules: &[Rule],
    preallocate: Option<&Preallocate>,
) {
    let predictive = rules.iter().any(|r| r.when.is_predictive())
        || preallocate.is_some_and(|p| p.when.is_predictive());
    let Some(list) = &raw.rules else { return };
    if let (true, Some(extra)) = (predictive, list.value.get(MAX_PREDICTIVE_RULES)) {
        let message = format!(
            "at most {MAX_PREDICTIVE_RULES} rules are allowed when rules or preallocate use predictions, got {}",
            list.value.len()
        );
        ctx.invalid(&extra.referenced, "rules", message);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_hook_url;
    use crate::load_str;

    const BASE: &str = "\
routes:
  - { name: export, prefix: /export, kind: batch }
tiers:
  - { name: premium, requests_per_second: 50, burst: 100 }
  - { name: bulk, requests_per_second: 5, burst: 10 }
default_tier: premium
";

    fn errors(extra: &str) -> Vec<String> {
        match load_str(&format!("{BASE}{extra}"), "p.yaml") {
            Ok(_) => Vec::new(),
            Err(e) => e.lines(),
        }
    }

    #[test]
    fn predictive_conditions_tiering_and_preallocate_are_read() {
        let extra = "\
rules:
  - when: { predicted_rps_p90_above: 5, latency_sensitive: false }
    tier: bulk
  - when: { next_action: { route: export, within: 15m, likelihood_above: 0.5 } }
    tier: bulk
tiering: { min_dwell: 2m }
preallocate:
  when: { next_action: { route: export, within: 5m, likelihood_above: 0.3 } }
  horizon: 10m
  slots_per_user: 2
  max_reserved_slots: 6
  hook: { url: \"http://127.0.0.1:3000/_headroom/prealloc\", timeout: 150ms }
";
        let config = load_str(&format!("{BASE}{extra}"), "p.yaml").expect("valid");
        assert_eq!(config.rules[0].when.predicted_rps_p90_above, Some(5.0));
        assert_eq!(config.rules[0].when.latency_sensitive, Some(false));
        let next = config.rules[1].when.next_action.as_ref().expect("set");
        assert_eq!(
            (next.route.as_str(), next.within),
            ("export", Duration::from_secs(900))
        );
        assert_eq!(config.tiering.min_dwell, Duration::from_secs(120));
        let pre = config.preallocate.expect("on");
        assert_eq!((pre.slots_per_user, pre.max_reserved_slots), (2, 6));
        let hook = pre.hook.expect("hook");
        assert_eq!(
            (hook.timeout, hook.max_in_flight, hook.queue),
            (Duration::from_millis(150), 4, 256)
        );
    }

    #[test]
    fn static_configs_get_the_defaults_and_no_preallocation() {
        let config = load_str(BASE, "p.yaml").expect("valid");
        assert_eq!(config.tiering.min_dwell, Duration::from_secs(300));
        assert!(config.preallocate.is_none());
    }

    #[test]
    fn bad_prediction_values_are_reported_with_their_position() {
        let found = errors("\
rules:
  - when: { predicted_rps_p90_above: -1, next_action: { route: upload, within: 2h, likelihood_above: 1.5 } }
    tier: bulk
");
        let text = found.join("\n");
        assert!(text.contains("p.yaml:8:"), "{text}");
        for key in [
            "predicted_rps_p90_above",
            "next_action.route",
            "next_action.within",
            "next_action.likelihood_above",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
    }

    #[test]
    fn preallocate_needs_a_prediction_and_a_valid_hook() {
        let found = errors(
            "\
preallocate:
  when: { plan: pro }
  max_reserved_slots: 400
  hook: { url: \"https://example.com/x\" }
",
        )
        .join("\n");
        assert!(found.contains("preallocate.when"), "{found}");
        assert!(found.contains("preallocate.max_reserved_slots"), "{found}");
        assert!(
            found.contains("preallocate.hook.url: expected a plain http"),
            "{found}"
        );
    }

    #[test]
    fn a_hook_calling_headroom_itself_is_refused_with_its_position() {
        let hook = |url: &str, listen: &str| {
            errors(&format!(
                "listen: \"{listen}\"\nadmin: \"127.0.0.1:9901\"\npreallocate:\n  when: {{ predicted_rps_p90_above: 1 }}\n  hook: {{ url: \"{url}\" }}\n"
            ))
            .join("\n")
        };

        let own = hook("http://127.0.0.1:8080/x", "127.0.0.1:8080");
        let admin = hook("http://127.0.0.1:9901/v1/events", "127.0.0.1:8080");
        let via_any = hook("http://127.0.0.1:8080/x", "0.0.0.0:8080");
        let app = hook("http://127.0.0.1:3000/x", "0.0.0.0:8080");

        assert!(own.contains("p.yaml:11:16: preallocate.hook.url"), "{own}");
        assert!(own.contains("own listen address"), "{own}");
        assert!(
            admin.contains("own admin address 127.0.0.1:9901"),
            "{admin}"
        );
        assert!(
            via_any.contains("own listen address 0.0.0.0:8080"),
            "{via_any}"
        );
        assert!(app.is_empty(), "{app}");
    }

    #[test]
    fn more_slots_per_user_than_reserved_in_all_is_refused() {
        let found = errors(
            "\
preallocate:
  when: { predicted_rps_p90_above: 1 }
  slots_per_user: 10
  max_reserved_slots: 8
",
        )
        .join("\n");

        assert!(
            found.contains("p.yaml:9:19: preallocate.slots_per_user: 10 slots per user is more than preallocate.max_reserved_slots (8)"),
            "{found}"
        );
        let equal = "preallocate:\n  when: { predicted_rps_p90_above: 1 }\n  slots_per_user: 8\n  max_reserved_slots: 8\n";
        assert!(errors(equal).is_empty());
    }

    #[test]
    fn hook_urls_must_be_plain_http_to_an_ip_and_port() {
        let (addr, host, path) =
            parse_hook_url("http://127.0.0.1:3000/_headroom/prealloc").expect("valid");
        assert_eq!(addr.to_string(), "127.0.0.1:3000");
        assert_eq!(host, "127.0.0.1:3000");
        assert_eq!(path, "/_headroom/prealloc");
        assert_eq!(parse_hook_url("http://[::1]:80").expect("valid").2, "/");
        for bad in [
            "https://127.0.0.1:3000/x",
            "http://app.internal:3000/x",
            "http://127.0.0.1/x",
            "http://u:p@127.0.0.1:3000/x",
            "http://127.0.0.1:3000/a b",
            "ftp://127.0.0.1:21/",
            "http://127.0.0.1:0/x",
            "http://0.0.0.0:18002/hook",
            "http://[::]:18002/hook",
        ] {
            assert!(parse_hook_url(bad).is_err(), "{bad} accepted");
        }
    }
}
