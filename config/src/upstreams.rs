//! Validated settings for backend pools per tier and for connection warming.
//!
//! Both shape how Headroom talks to its backends rather than who gets
//! served, so they live apart from the policy types in `schema`. Pool
//! membership and warming are read once at start-up: a reload that changes
//! them is reported as needing a restart. Which pool a tier uses
//! ([`TierPool`]) reloads live, like the rest of the tier.

use std::time::Duration;

use crate::schema::Upstream;

/// A named group of backends that some tiers are sent to instead of the
/// default `upstreams` (for example a dedicated group for premium users).
/// Each pool is load-balanced round-robin by weight and health-checked with
/// the `health_check` settings, like the default set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamPool {
    /// Unique name of `a-z`, `0-9`, `_`, `-`; never `default`, which names
    /// the `upstreams` list.
    pub name: String,
    /// At least one backend, each address listed once in the pool.
    pub upstreams: Vec<Upstream>,
}

/// Where a tier goes when every upstream of its pool is down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolFallback {
    /// Answer 503 with `Retry-After`: the tier's traffic never lands on the
    /// shared backends.
    #[default]
    None,
    /// Use the default `upstreams` until a pool member is healthy again.
    Default,
}

impl PoolFallback {
    /// Every variant with its config spelling.
    pub const ALL: [(&'static str, PoolFallback); 2] = [
        ("none", PoolFallback::None),
        ("default", PoolFallback::Default),
    ];
}

/// A tier served by a pool other than the default (`tiers[].pool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierPool {
    /// The tier's name; always one of `Config::tiers`.
    pub tier: String,
    /// The pool's name; always one of `Config::upstream_pools`.
    pub pool: String,
    /// What happens when the pool has no healthy upstream.
    pub fallback: PoolFallback,
}

/// Opening backend connections ahead of predicted demand.
///
/// Each round the warmer takes the highest median forecast of aggregate
/// demand among the horizons within `lead` (or the current rate, if higher),
/// multiplies it by the measured mean upstream time (Little's law: requests
/// in flight = arrival rate x time in system) and by `margin`, and spreads
/// it over the healthy upstreams. It then holds that many concurrent cheap
/// requests to `path` on each upstream, through the proxy's own connection
/// pool, so the connections stay there idle and ready.
#[derive(Clone, Debug, PartialEq)]
pub struct Warming {
    /// Whether the warmer runs. Default false.
    pub enabled: bool,
    /// Time between warm-up rounds; each round also refreshes the idle
    /// timers of the connections already warm. 100 ms to 1 h. Default 2 s.
    pub interval: Duration,
    /// How far ahead forecasts count: horizons up to `lead` are considered
    /// (always at least the nearest one). Default 5 min.
    pub lead: Duration,
    /// Multiplier on the computed concurrency, 1 to 10. Default 1.25.
    pub margin: f64,
    /// Connections kept warm per upstream whatever the forecast says, at
    /// most `max_connections_per_upstream`. Default 0.
    pub min_connections_per_upstream: u32,
    /// Most connections warmed per upstream, 1 to 4096. Default 32. The
    /// proxy's keep-alive pool (`upstream_timeouts.pool_size`) is shared by
    /// all upstreams, so the warmer also stays within its fair part of it.
    pub max_connections_per_upstream: u32,
    /// The cheap path each warm-up request fetches (it must answer without
    /// closing the connection): `warming.path` as written, else
    /// `health_check.path`. Never `None` when `enabled`: the validator
    /// refuses warming with neither set.
    pub path: Option<String>,
}

impl Default for Warming {
    fn default() -> Self {
        Warming {
            enabled: false,
            interval: Duration::from_secs(2),
            lead: Duration::from_secs(300),
            margin: 1.25,
            min_connections_per_upstream: 0,
            max_connections_per_upstream: 32,
            path: None,
        }
    }
}
