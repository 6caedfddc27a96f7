//! Upstream pools: the default `upstreams` set and the named
//! `upstream_pools` that tiers may be sent to, each a pingora
//! [`LoadBalancer`] with its own health-check background service.
//!
//! Membership is read once at start (restart-only); which pool a tier uses
//! is compiled into the [`crate::state::Runtime`] and reloads live. Per
//! request, `upstream_peer` reads the tier's [`PoolRoute`] (a copy of two
//! small integers), asks that pool's balancer for a healthy backend and
//! counts one relaxed atomic add, which the warmer uses to split predicted
//! demand between pools.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use headroom_config::{Config, HealthCheck, PoolFallback};
use headroom_policies::Policy;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck as PingoraCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};

use crate::state::Shared;

/// Index of the default pool (the `upstreams` list) in [`UpstreamPools`].
pub const DEFAULT_POOL: usize = 0;

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A backend address was refused by pingora.
    #[error("pool {pool}: backend {address}: {message}")]
    Backend {
        /// The pool's name.
        pool: String,
        /// The address.
        address: SocketAddr,
        /// pingora's reason.
        message: String,
    },
    /// Static discovery did not resolve at once (it never waits).
    #[error("pool {pool}: discovery failed: {message}")]
    Discovery {
        /// The pool's name.
        pool: String,
        /// What went wrong.
        message: String,
    },
    /// The health-check path is not a valid URI path.
    #[error("health_check.path: {0}")]
    HealthPath(String),
}

/// One pool: a name, a balancer with health checks, a request counter.
pub struct Pool {
    /// `default` for the `upstreams` list, else the `upstream_pools` key.
    pub name: String,
    /// The balancer; its health checks run as a background service.
    pub balancer: Arc<LoadBalancer<RoundRobin>>,
    /// Requests routed to this pool since start (for the warmer's split).
    pub requests: AtomicU64,
}

impl Pool {
    /// The backends the health check currently counts as healthy.
    pub fn healthy(&self) -> Vec<SocketAddr> {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .filter(|b| backends.ready(b))
            .filter_map(|b| b.addr.as_inet().copied())
            .collect()
    }

    /// Every backend of the pool, healthy or not.
    pub fn members(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }
}

/// How one tier picks its pool, compiled per policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolRoute {
    /// Index into [`UpstreamPools::all`].
    pub pool: usize,
    /// Use the default pool when this one has no healthy backend.
    pub fallback_to_default: bool,
}

/// Every pool of the process; index 0 is the default.
pub struct UpstreamPools {
    pools: Vec<Pool>,
    /// The `Retry-After` of a request that found no healthy upstream, in
    /// whole seconds (>= 1).
    retry_after_secs: u64,
}

impl UpstreamPools {
    /// Pools over already-built balancers, the default first. A request
    /// that finds no healthy upstream is told to retry after 1 s until
    /// [`Self::with_retry_after`] says otherwise.
    pub fn new(pools: Vec<Pool>) -> Self {
        Self {
            pools,
            retry_after_secs: 1,
        }
    }

    /// Sets the `Retry-After` sent when no upstream is healthy from the
    /// health-check interval (the earliest a member can come back),
    /// rounded up to whole seconds; zero (checks off) gives 1 s.
    #[must_use]
    pub fn with_retry_after(mut self, health_check_interval: Duration) -> Self {
        let secs =
            health_check_interval.as_secs() + u64::from(health_check_interval.subsec_nanos() > 0);
        self.retry_after_secs = secs.max(1);
        self
    }

    /// Seconds a client should wait when no upstream is healthy (>= 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs
    }

    /// Only a default pool over `balancer` (tests and benches).
    pub fn single(balancer: Arc<LoadBalancer<RoundRobin>>) -> Self {
        Self::new(vec![Pool {
            name: "default".to_owned(),
            balancer,
            requests: AtomicU64::new(0),
        }])
    }

    /// All pools, the default first.
    pub fn all(&self) -> &[Pool] {
        &self.pools
    }

    /// The default pool.
    ///
    /// # Panics
    /// Never: `run` always builds the default pool first.
    pub fn default_pool(&self) -> &Pool {
        &self.pools[DEFAULT_POOL]
    }

    /// Whether `addr` is a member of any pool, healthy or not.
    pub fn is_member(&self, addr: SocketAddr) -> bool {
        self.pools.iter().any(|pool| {
            pool.balancer
                .backends()
                .get_backend()
                .iter()
                .any(|b| b.addr.as_inet() == Some(&addr))
        })
    }

    /// The pool at `index`, or the default one when out of range.
    pub fn get(&self, index: usize) -> &Pool {
        self.pools.get(index).unwrap_or_else(|| self.default_pool())
    }

    /// Picks a healthy backend for a request routed by `route` (`None`:
    /// the default pool), counting the request against the pool used.
    /// `None` when the pool (and, where allowed, the default) has no
    /// healthy backend.
    pub fn select(&self, route: Option<PoolRoute>, key: &[u8]) -> Option<SocketAddr> {
        let route = route.unwrap_or(PoolRoute {
            pool: DEFAULT_POOL,
            fallback_to_default: false,
        });
        let pool = self.get(route.pool);
        let picked = pool.balancer.select(key, 256).map(|b| (pool, b));
        let picked = match picked {
            None if route.fallback_to_default && route.pool != DEFAULT_POOL => {
                let default = self.default_pool();
                default.balancer.select(key, 256).map(|b| (default, b))
            }
            other => other,
        };
        let (pool, backend) = picked?;
        pool.requests.fetch_add(1, Ordering::Relaxed);
        backend.addr.as_inet().copied()
    }

    /// Each tier's route in `policy` order, resolved by pool name against
    /// the pools running now. A tier naming a pool that is not running (one
    /// added to the file since start: pools are restart-only) uses the
    /// default pool; `unresolved` lists such pool names for a warning.
    pub fn routes(
        &self,
        config: &Config,
        policy: &Policy,
    ) -> (Vec<Option<PoolRoute>>, Vec<String>) {
        let mut unresolved = Vec::new();
        let routes = policy
            .tiers()
            .iter()
            .map(|tier| {
                let choice = config.tier_pools.iter().find(|t| t.tier == tier.name())?;
                let Some(index) = self.pools.iter().position(|p| p.name == choice.pool) else {
                    unresolved.push(choice.pool.clone());
                    return None;
                };
                Some(PoolRoute {
                    pool: index,
                    fallback_to_default: choice.fallback == PoolFallback::Default,
                })
            })
            .collect();
        (routes, unresolved)
    }

    /// Each tier's route, resolved against the pools `config` itself
    /// declares (index 0 default, then file order): what `run` builds.
    pub fn routes_for_config(config: &Config, policy: &Policy) -> Vec<Option<PoolRoute>> {
        policy
            .tiers()
            .iter()
            .map(|tier| {
                let choice = config.tier_pools.iter().find(|t| t.tier == tier.name())?;
                let index = config
                    .upstream_pools
                    .iter()
                    .position(|p| p.name == choice.pool)?;
                Some(PoolRoute {
                    pool: index + 1,
                    fallback_to_default: choice.fallback == PoolFallback::Default,
                })
            })
            .collect()
    }
}

/// `headroom_upstream_healthy{pool}`: the healthy members of each pool,
/// read from the balancers when `/metrics` is scraped (pool names come from
/// the config: a closed set). Holds the shared state weakly, so it never
/// keeps it alive.
pub struct HealthyGauge {
    shared: Weak<Shared>,
    gauge: IntGaugeVec,
}

impl HealthyGauge {
    /// A gauge over `shared`'s pools, to register once at start.
    pub fn new(shared: Weak<Shared>) -> Self {
        let opts = Opts::new(
            "headroom_upstream_healthy",
            "Members of each upstream pool the health check counts as healthy now.",
        );
        let gauge = IntGaugeVec::new(opts, &["pool"]).expect("static metric definition");
        Self { shared, gauge }
    }
}

impl Collector for HealthyGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(shared) = self.shared.upgrade() else {
            return Vec::new();
        };
        for pool in shared.pools.all() {
            let healthy = i64::try_from(pool.healthy().len()).unwrap_or(i64::MAX);
            self.gauge.with_label_values(&[&pool.name]).set(healthy);
        }
        self.gauge.collect()
    }
}

/// A round-robin balancer over `addrs` (address, weight), filled at once,
/// with the configured health check attached (not yet running: the caller
/// wraps it in a background service).
pub fn balancer(
    pool: &str,
    addrs: &[(SocketAddr, usize)],
    hc: &HealthCheck,
) -> Result<LoadBalancer<RoundRobin>, PoolError> {
    let backends: BTreeSet<Backend> = addrs
        .iter()
        .map(|(addr, weight)| {
            Backend::new_with_weight(&addr.to_string(), *weight).map_err(|e| PoolError::Backend {
                pool: pool.to_owned(),
                address: *addr,
                message: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut lb = LoadBalancer::from_backends(Backends::new(Static::new(backends)));

    // A static list resolves without waiting; fill the selector before serving.
    let discovery = |message: String| PoolError::Discovery {
        pool: pool.to_owned(),
        message,
    };
    lb.update()
        .now_or_never()
        .ok_or_else(|| discovery("static discovery blocked".into()))?
        .map_err(|e| discovery(e.to_string()))?;
    if hc.enabled() {
        lb.set_health_check(health_check(hc)?);
        lb.health_check_frequency = Some(hc.interval);
    }
    Ok(lb)
}

/// The probe: an HTTP GET of `path` when set, else a TCP connect.
fn health_check(hc: &HealthCheck) -> Result<Box<dyn PingoraCheck + Send + Sync>, PoolError> {
    Ok(match &hc.path {
        Some(path) => {
            let mut check = HttpHealthCheck::new("localhost", false);
            check.req.set_uri(
                path.parse()
                    .map_err(|e: http::uri::InvalidUri| PoolError::HealthPath(e.to_string()))?,
            );
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check.peer_template.options.read_timeout = Some(hc.timeout);
            Box::new(check)
        }
        None => {
            let mut check = TcpHealthCheck::new();
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check
        }
    })
}
