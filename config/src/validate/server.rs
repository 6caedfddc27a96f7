//! Checks for the process-level sections: listeners, threads, upstreams,
//! health checks, upstream timeouts and profiler sizing.

use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Ctx;
use crate::raw::{Field, RawConfig, RawUpstream, SpannedList};
use crate::schema::{HealthCheck, ProfilerConfig, Upstream, UpstreamTimeouts};

/// Default proxy listener.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// Default admin listener.
const DEFAULT_ADMIN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9901,
));
/// Most worker threads accepted; more is almost certainly a typo.
const MAX_THREADS: u64 = 1024;
/// Largest upstream weight; relative shares beyond this are surely typos.
const MAX_WEIGHT: u64 = 1_000_000;
/// Most tracked users accepted (each costs memory for its windows).
const MAX_USERS: u64 = 100_000_000;
/// Most buckets per profiler window; bounds per-user memory.
const MAX_BUCKETS: u64 = 10_000;

/// The validated process-level settings, before the policy sections join them.
pub(super) struct Server {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub threads: usize,
    pub grace_period: Duration,
    pub upstreams: Vec<Upstream>,
    pub health_check: HealthCheck,
    pub upstream_timeouts: UpstreamTimeouts,
    pub profiler: ProfilerConfig,
}

/// Checks the process-level keys of `raw`.
pub(super) fn server(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Server {
    let listen = address_or(ctx, "listen", &raw.listen, DEFAULT_LISTEN);
    let admin = address_or(ctx, "admin", &raw.admin, DEFAULT_ADMIN);
    if listen == admin {
        // Point at admin when it was written, else at listen; with neither
        // written the defaults differ, so one of them is present.
        let written = match (&raw.admin, &raw.listen) {
            (Some(admin), _) => Some(("admin", admin)),
            (None, Some(listen)) => Some(("listen", listen)),
            (None, None) => None,
        };
        if let Some((key, at)) = written {
            let message = format!("admin and listen are both {listen}; they need different ports");
            ctx.invalid(&at.referenced, key, message);
        }
    }

    let threads = ctx.integer_or("threads", &raw.threads, (1, MAX_THREADS), 2);
    let grace_period = ctx.duration_or(
        "grace_period",
        &raw.grace_period,
        Duration::from_secs(5),
        true,
    );

    Server {
        listen,
        admin,
        threads: usize::try_from(threads).unwrap_or(2),
        grace_period,
        upstreams: upstreams(ctx, &raw.upstreams, listen),
        health_check: health_check(ctx, raw),
        upstream_timeouts: upstream_timeouts(ctx, raw),
        profiler: profiler(ctx, raw),
    }
}

/// An optional socket address; `default` when absent or invalid.
fn address_or(
    ctx: &mut Ctx<'_>,
    key: &str,
    field: &Field<String>,
    default: SocketAddr,
) -> SocketAddr {
    field
        .as_ref()
        .and_then(|v| ctx.socket_addr(key, v))
        .unwrap_or(default)
}

/// `upstreams`: addresses unique, none pointing back at the proxy itself.
fn upstreams(
    ctx: &mut Ctx<'_>,
    list: &SpannedList<RawUpstream>,
    listen: SocketAddr,
) -> Vec<Upstream> {
    let Some(list) = list else { return Vec::new() };
    upstream_entries(ctx, "upstreams", &list.value, listen)
}

/// The entries of one upstream list written under `prefix` (`upstreams`, or
/// `upstream_pools.NAME`): addresses unique within the list, none pointing
/// back at the proxy itself.
pub(super) fn upstream_entries(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    entries: &[Spanned<RawUpstream>],
    listen: SocketAddr,
) -> Vec<Upstream> {
    let mut out: Vec<Upstream> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("{prefix}[{i}]");
        let raw = &entry.value;
        let weight = ctx.integer_or(&format!("{key}.weight"), &raw.weight, (1, MAX_WEIGHT), 1);
        let address_key = format!("{key}.address");
        let Some(written) = ctx.require(
            &raw.address,
            &entry.referenced,
            &address_key,
            "an IP:PORT address",
        ) else {
            continue;
        };
        let Some(address) = ctx.socket_addr(&address_key, written) else {
            continue;
        };

        if address == listen {
            let message =
                format!("{address} is the proxy's own listen address; it would proxy to itself");
            ctx.invalid(&written.referenced, &address_key, message);
        } else if let Some(first) = out.iter().position(|u| u.address == address) {
            let message = format!(
                "{address} is already {prefix}[{first}]; list each backend once and use weight"
            );
            ctx.invalid(&written.referenced, &address_key, message);
        }
        out.push(Upstream {
            address,
            weight: u32::try_from(weight).unwrap_or(1),
        });
    }
    out
}

/// `health_check`: the timeout must fit inside the interval when checks run.
fn health_check(ctx: &mut Ctx<'_>, raw: &RawConfig) -> HealthCheck {
    let defaults = HealthCheck::default();
    let Some(section) = &raw.health_check else {
        return defaults;
    };
    let section = &section.value;

    let interval = ctx.duration_or(
        "health_check.interval",
        &section.interval,
        defaults.interval,
        true,
    );
    let timeout = ctx.duration_or(
        "health_check.timeout",
        &section.timeout,
        defaults.timeout,
        false,
    );
    if !interval.is_zero() && timeout > interval {
        if let Some(at) = section.timeout.as_ref().or(section.interval.as_ref()) {
            let message = format!(
                "timeout {} is longer than interval {}; expected timeout <= interval",
                crate::Duration::from(timeout),
                crate::Duration::from(interval)
            );
            ctx.invalid(&at.referenced, "health_check.timeout", message);
        }
    }

    let path = section
        .path
        .as_ref()
        .and_then(|p| http_path(ctx, "health_check.path", p));
    HealthCheck {
        interval,
        timeout,
        path,
    }
}

/// A request path: starts with `/`, no spaces or control characters.
pub(super) fn http_path(ctx: &mut Ctx<'_>, key: &str, value: &Spanned<String>) -> Option<String> {
    let path = &value.value;
    if path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(path.clone());
    }
    let got = ctx.shown_str(value);
    ctx.invalid(
        &value.referenced,
        key,
        format!("expected a path starting with / and without spaces, got {got}"),
    );
    None
}

/// `upstream_timeouts`: every limit greater than zero.
fn upstream_timeouts(ctx: &mut Ctx<'_>, raw: &RawConfig) -> UpstreamTimeouts {
    let defaults = UpstreamTimeouts::default();
    let Some(section) = &raw.upstream_timeouts else {
        return defaults;
    };
    let section = &section.value;
    let pool_size = ctx.integer_or(
        "upstream_timeouts.pool_size",
        &section.pool_size,
        (0, 65_536),
        defaults.pool_size as u64,
    );
    UpstreamTimeouts {
        connect: ctx.duration_or(
            "upstream_timeouts.connect",
            &section.connect,
            defaults.connect,
            false,
        ),
        read: ctx.duration_or(
            "upstream_timeouts.read",
            &section.read,
            defaults.read,
            false,
        ),
        idle: ctx.duration_or(
            "upstream_timeouts.idle",
            &section.idle,
            defaults.idle,
            false,
        ),
        pool_size: usize::try_from(pool_size).unwrap_or(defaults.pool_size),
    }
}

/// `profiler`: sizes in range, and users outlive their own window.
fn profiler(ctx: &mut Ctx<'_>, raw: &RawConfig) -> ProfilerConfig {
    let defaults = ProfilerConfig::default();
    let Some(section) = &raw.profiler else {
        return defaults;
    };
    let section = &section.value;

    let max_users = ctx.integer_or(
        "profiler.max_users",
        &section.max_users,
        (1, MAX_USERS),
        defaults.max_users as u64,
    );
    let buckets = ctx.integer_or(
        "profiler.buckets",
        &section.buckets,
        (1, MAX_BUCKETS),
        u64::from(defaults.buckets),
    );
    let config = ProfilerConfig {
        max_users: usize::try_from(max_users).unwrap_or(defaults.max_users),
        idle_timeout: ctx.duration_or(
            "profiler.idle_timeout",
            &section.idle_timeout,
            defaults.idle_timeout,
            false,
        ),
        bucket: ctx.duration_or("profiler.bucket", &section.bucket, defaults.bucket, false),
        buckets: u32::try_from(buckets).unwrap_or(defaults.buckets),
        session_gap: ctx.duration_or(
            "profiler.session_gap",
            &section.session_gap,
            defaults.session_gap,
            false,
        ),
        forecast_tick: ctx.duration_or(
            "profiler.forecast_tick",
            &section.forecast_tick,
            defaults.forecast_tick,
            false,
        ),
    };
    if let Some(at) = &section.forecast_tick {
        let tick = config.forecast_tick;
        if tick < Duration::from_secs(1) || tick > Duration::from_secs(3600) {
            let message = format!(
                "{} is outside 1s..=1h; the forecast tick is also the forecast bucket",
                crate::Duration::from(tick)
            );
            ctx.invalid(&at.referenced, "profiler.forecast_tick", message);
        }
    }

    // Evicting a user before their window is full would discard the very data
    // the window exists to collect.
    if config.idle_timeout < config.window() {
        if let Some(at) = &section.idle_timeout {
            let message = format!(
                "{} is shorter than the window (bucket {} x {} buckets = {}); expected at least {}",
                crate::Duration::from(config.idle_timeout),
                crate::Duration::from(config.bucket),
                config.buckets,
                crate::Duration::from(config.window()),
                crate::Duration::from(config.window()),
            );
            ctx.invalid(&at.referenced, "profiler.idle_timeout", message);
        } else {
            let written = match (&section.bucket, &section.buckets) {
                (Some(bucket), _) => Some(("profiler.bucket", bucket.referenced)),
                (None, Some(buckets)) => Some(("profiler.buckets", buckets.referenced)),
                (None, None) => None,
            };
            if let Some((key, at)) = written {
                let message = format!(
                    "window (bucket x buckets = {}) exceeds the default idle_timeout of {}; \
                     raise profiler.idle_timeout",
                    crate::Duration::from(config.window()),
                    crate::Duration::from(config.idle_timeout),
                );
                ctx.invalid(&at, key, message);
            }
        }
    }
    config
}
