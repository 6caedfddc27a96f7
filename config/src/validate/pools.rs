//! `upstream_pools`, `tiers[].pool` / `tiers[].pool_fallback` and `warming`.
//!
//! Pools are checked like `upstreams`; a tier naming a pool that does not
//! exist is an error at the tier's `pool` key. Warming needs a cheap path to
//! fetch: `warming.path`, else `health_check.path`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::server::{http_path, upstream_entries};
use super::Ctx;
use crate::raw::{RawConfig, RawTier, RawWarming, SpannedList};
use crate::schema::HealthCheck;
use crate::upstreams::{PoolFallback, TierPool, UpstreamPool, Warming};

/// Most pools accepted; each is a health-check task and a balancer.
const MAX_POOLS: usize = 64;
/// Most connections warmed per upstream.
const MAX_WARM_CONNECTIONS: u64 = 4096;
/// Largest warming margin; more is surely a typo.
const MAX_MARGIN: f64 = 10.0;

/// Checks `upstream_pools`.
pub(super) fn upstream_pools(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    listen: SocketAddr,
) -> Vec<UpstreamPool> {
    let Some(section) = &raw.upstream_pools else {
        return Vec::new();
    };
    if section.value.0.len() > MAX_POOLS {
        let message = format!(
            "{} pools declared; expected at most {MAX_POOLS}",
            section.value.0.len()
        );
        ctx.invalid(&section.referenced, "upstream_pools", message);
    }
    let mut pools: Vec<UpstreamPool> = Vec::with_capacity(section.value.0.len());
    for (name, list) in &section.value.0 {
        let key = format!("upstream_pools.{}", name.value);
        let Some(valid) = ctx.label_name(&key, name) else {
            continue;
        };
        if valid == "default" {
            let message = "the name default is reserved for the `upstreams` list; pick another";
            ctx.invalid(&name.referenced, &key, message);
            continue;
        }
        if list.value.is_empty() {
            let message = "expected at least one upstream in the pool, got an empty list";
            ctx.invalid(&list.referenced, &key, message);
        }
        let upstreams = upstream_entries(ctx, &key, &list.value, listen);
        pools.push(UpstreamPool {
            name: valid,
            upstreams,
        });
    }
    pools
}

/// Checks each tier's `pool` and `pool_fallback` against the declared pools.
pub(super) fn tier_pools(
    ctx: &mut Ctx<'_>,
    tiers: &SpannedList<RawTier>,
    pools: &[UpstreamPool],
    pool_names_written: &[String],
) -> Vec<TierPool> {
    let Some(tiers) = tiers else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, entry) in tiers.value.iter().enumerate() {
        let raw = &entry.value;
        let key = format!("tiers[{i}]");
        let fallback = ctx.choice_or(
            &format!("{key}.pool_fallback"),
            &raw.pool_fallback,
            &PoolFallback::ALL,
            PoolFallback::None,
        );
        let Some(pool) = &raw.pool else {
            if let Some(at) = &raw.pool_fallback {
                let message = "pool_fallback applies only with pool; set pool or remove it";
                ctx.invalid(&at.referenced, &format!("{key}.pool_fallback"), message);
            }
            continue;
        };
        let known =
            pools.iter().any(|p| p.name == pool.value) || pool_names_written.contains(&pool.value);
        if !known {
            let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
            let expected = if names.is_empty() {
                "a name declared under upstream_pools (none are)".to_owned()
            } else {
                format!("one of {}", names.join(", "))
            };
            let got = ctx.shown_str(pool);
            let message = format!("unknown pool {got}; expected {expected}");
            ctx.invalid(&pool.referenced, &format!("{key}.pool"), message);
            continue;
        }
        let Some(tier) = raw.name.as_ref() else {
            continue;
        };
        out.push(TierPool {
            tier: tier.value.clone(),
            pool: pool.value.clone(),
            fallback,
        });
    }
    out
}

/// The pool names written in the file, valid or not, so that a bad pool
/// entry is reported once (at the pool) rather than again at each tier.
pub(super) fn written_pool_names(raw: &RawConfig) -> Vec<String> {
    raw.upstream_pools.as_ref().map_or_else(Vec::new, |s| {
        s.value
            .0
            .iter()
            .map(|(name, _)| name.value.clone())
            .collect()
    })
}

/// Checks `warming`; the path defaults to the health check's.
pub(super) fn warming(ctx: &mut Ctx<'_>, raw: &RawConfig, health: &HealthCheck) -> Warming {
    let defaults = Warming::default();
    let Some(section) = &raw.warming else {
        return Warming {
            path: health.path.clone(),
            ..defaults
        };
    };
    let s: &RawWarming = &section.value;

    let enabled = s
        .enabled
        .as_ref()
        .and_then(|v| ctx.boolean("warming.enabled", v))
        .unwrap_or(defaults.enabled);
    let interval = ctx.duration_or("warming.interval", &s.interval, defaults.interval, false);
    if let Some(at) = &s.interval {
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
            let message = format!("{} is outside 100ms..=1h", crate::Duration::from(interval));
            ctx.invalid(&at.referenced, "warming.interval", message);
        }
    }
    let lead = ctx.duration_or("warming.lead", &s.lead, defaults.lead, true);
    let margin = margin(ctx, s).unwrap_or(defaults.margin);
    let max = ctx.integer_or(
        "warming.max_connections_per_upstream",
        &s.max_connections_per_upstream,
        (1, MAX_WARM_CONNECTIONS),
        u64::from(defaults.max_connections_per_upstream),
    );
    let min = ctx.integer_or(
        "warming.min_connections_per_upstream",
        &s.min_connections_per_upstream,
        (0, MAX_WARM_CONNECTIONS),
        u64::from(defaults.min_connections_per_upstream),
    );
    if min > max {
        if let Some(at) = &s.min_connections_per_upstream {
            let message = format!("{min} is above max_connections_per_upstream {max}");
            ctx.invalid(
                &at.referenced,
                "warming.min_connections_per_upstream",
                message,
            );
        }
    }

    let path = match &s.path {
        Some(p) => http_path(ctx, "warming.path", p),
        None => health.path.clone(),
    };
    if enabled && s.path.is_none() && path.is_none() {
        let message = "warming needs a cheap path to fetch: set warming.path or health_check.path";
        let at = s
            .enabled
            .as_ref()
            .map_or(&section.referenced, |v| &v.referenced);
        ctx.invalid(at, "warming.enabled", message);
    }
    Warming {
        enabled,
        interval,
        lead,
        margin,
        min_connections_per_upstream: u32::try_from(min).unwrap_or(0),
        max_connections_per_upstream: u32::try_from(max)
            .unwrap_or(defaults.max_connections_per_upstream),
        path,
    }
}

/// `warming.margin`: a number from 1 to [`MAX_MARGIN`].
fn margin(ctx: &mut Ctx<'_>, s: &RawWarming) -> Option<f64> {
    let value: &Spanned<_> = s.margin.as_ref()?;
    let margin = ctx.positive_number("warming.margin", value)?;
    if (1.0..=MAX_MARGIN).contains(&margin) {
        return Some(margin);
    }
    let message = format!("expected a number from 1 to {MAX_MARGIN}, got {margin}");
    ctx.invalid(&value.referenced, "warming.margin", message);
    None
}

#[cfg(test)]
mod tests {
    use crate::{load_str, PoolFallback};

    const BASE: &str = "tiers:\n  - { name: gold, requests_per_second: 1, burst: 1, pool: POOL }\n\
                        default_tier: gold\nupstream_pools:\n  dedicated:\n    - { address: \"127.0.0.1:7001\" }\n";

    fn errors(yaml: &str) -> Vec<String> {
        load_str(yaml, "h.yaml").expect_err("invalid").lines()
    }

    #[test]
    fn a_tier_names_its_pool() {
        let config = load_str(&BASE.replace("POOL", "dedicated"), "h.yaml").expect("valid");
        assert_eq!(config.upstream_pools[0].name, "dedicated");
        assert_eq!(config.tier_pools[0].pool, "dedicated");
        assert_eq!(config.tier_pools[0].fallback, PoolFallback::None);
    }

    #[test]
    fn an_unknown_pool_is_reported_at_its_line_and_column() {
        let lines = errors(&BASE.replace("POOL", "missing"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("h.yaml:2:") && lines[0].contains("tiers[0].pool"),
            "{lines:?}"
        );
        assert!(lines[0].contains("expected one of dedicated"), "{lines:?}");
    }

    #[test]
    fn warming_needs_a_path_and_sane_bounds() {
        let lines = errors("tiers: [{ name: a, requests_per_second: 1, burst: 1 }]\ndefault_tier: a\nwarming: { enabled: true }\n");
        assert!(
            lines[0].starts_with("h.yaml:3:") && lines[0].contains("path"),
            "{lines:?}"
        );
        let lines = errors("tiers: [{ name: a, requests_per_second: 1, burst: 1 }]\ndefault_tier: a\nwarming: { margin: 0.5, min_connections_per_upstream: 9, max_connections_per_upstream: 4, path: /h }\n");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let ok = load_str("tiers: [{ name: a, requests_per_second: 1, burst: 1 }]\ndefault_tier: a\nhealth_check: { path: /hc }\nwarming: { enabled: true }\n", "h.yaml").expect("valid");
        assert_eq!(
            ok.warming.path.as_deref(),
            Some("/hc"),
            "health-check path by default"
        );
        assert!(ok.warming.enabled);
    }
}
