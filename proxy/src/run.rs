//! `headroom run`: assemble the pingora server from a config file and serve.
//!
//! Services: the proxy listener, the admin listener, one upstream health
//! checker per pool, the warmer (when `warming.enabled`), the config reloader, the profiler's sweeper and the insights
//! tick (cohorts, next action, events). Each background task runs in its
//! own tracing span.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use headroom_config::Config;
use headroom_profiler::{SystemClock, UserTable};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::admission::AdmissionGate;
use crate::compile::{compile_runtime, table_config, IdentitySecret};
use crate::forecaster::{Decisions, ForecasterService};
use crate::insights::{InsightsHub, InsightsService};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::service::HeadroomProxy;
use crate::state::{Shared, UpstreamOptions};
use crate::sweeper::Sweeper;
use crate::upstreams::{self, Pool, UpstreamPools};
use crate::warmer::hub::WarmHub;
use crate::warmer::WarmerService;
use headroom_policies::DeviceCache;

/// Command-line overrides of the config file's listeners and upstreams, so
/// one file serves many set-ups.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Proxy listener address.
    pub listen: Option<SocketAddr>,
    /// Admin listener address.
    pub admin: Option<SocketAddr>,
    /// Upstream addresses (replace the file's list when non-empty).
    pub upstreams: Vec<SocketAddr>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config file failed to load or validate.
    #[error("{0}")]
    Config(String),
    /// Neither the file nor the command line names an upstream.
    #[error("no upstreams: set `upstreams` in the config or pass --upstream ADDR")]
    NoUpstreams,
    /// The listeners clash with each other or with an upstream, or an
    /// address cannot be bound.
    #[error("{0}")]
    Address(String),
    /// pingora refused to build the server.
    #[error("server setup failed: {0}")]
    Server(String),
}

/// Loads `path`, applies `overrides` and serves until SIGTERM/SIGINT.
pub fn run(path: &Path, overrides: &Overrides) -> Result<(), RunError> {
    ignore_early_hangup();
    let config = headroom_config::load_file(path).map_err(|e| RunError::Config(e.to_string()))?;
    let (server, addrs) = build_server(path.to_path_buf(), config, overrides)?;
    tracing::info!(proxy = %addrs.0, admin = %addrs.1, "headroom listening");
    server.run(RunArgs::default());
    tracing::info!("headroom stopped");
    Ok(())
}

/// Installs a SIGHUP handler at once: until the reloader starts, a SIGHUP
/// would otherwise take the default action and end the process. The handler
/// stays installed process-wide; the reloader listens on it later.
fn ignore_early_hangup() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _ = rt
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) });
}

/// Builds the server and returns it with the proxy and admin addresses.
pub fn build_server(
    path: PathBuf,
    config: Config,
    overrides: &Overrides,
) -> Result<(Server, (SocketAddr, SocketAddr)), RunError> {
    let listen = overrides.listen.unwrap_or(config.listen);
    let admin = overrides.admin.unwrap_or(config.admin);
    let upstream_addrs: Vec<(SocketAddr, usize)> = if overrides.upstreams.is_empty() {
        config
            .upstreams
            .iter()
            .map(|u| (u.address, u.weight as usize))
            .collect()
    } else {
        overrides.upstreams.iter().map(|a| (*a, 1)).collect()
    };
    if upstream_addrs.is_empty() {
        return Err(RunError::NoUpstreams);
    }
    check_addresses(listen, admin, &upstream_addrs)?;
    check_hook(&config, listen, admin)?;

    // pingora's defaults are one thread and a five-minute shutdown: set both.
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.grace_period.as_secs().max(1)),
        upstream_keepalive_pool_size: config.upstream_timeouts.pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    // Upstream pools with health checks: the default one, then each named.
    let mut health_services = Vec::with_capacity(config.upstream_pools.len() + 1);
    let mut pools = Vec::with_capacity(config.upstream_pools.len() + 1);
    let named = config.upstream_pools.iter().map(|p| {
        let addrs: Vec<(SocketAddr, usize)> = p
            .upstreams
            .iter()
            .map(|u| (u.address, u.weight as usize))
            .collect();
        (p.name.clone(), addrs)
    });
    for (name, addrs) in
        std::iter::once(("default".to_owned(), upstream_addrs.clone())).chain(named)
    {
        let lb = upstreams::balancer(&name, &addrs, &config.health_check)
            .map_err(|e| RunError::Server(e.to_string()))?;
        let service = background_service(&format!("health check {name}"), lb);
        pools.push(Pool {
            name,
            balancer: service.task(),
            requests: AtomicU64::new(0),
        });
        health_services.push(service);
    }
    let pools = UpstreamPools::new(pools).with_retry_after(config.health_check.interval);
    let upstreams = Arc::clone(&pools.default_pool().balancer);

    // Shared state: the compiled runtime plus what a reload keeps.
    let metrics = Metrics::new();
    let hold = config.upstream_timeouts.connect + Duration::from_millis(500);
    let warm = WarmHub::new(hold, config.warming.path.as_deref(), metrics.registry())
        .map_err(|e| RunError::Config(e.to_string()))?
        .with_listen_address(listen);
    let secret = IdentitySecret::random().map_err(|e| RunError::Server(e.to_string()))?;
    let runtime = compile_runtime(&config, &path, &metrics, &secret)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let tier_queues = runtime.tier_queues.clone();
    let insights = InsightsHub::new(&config, &runtime.policy)
        .map_err(|e| RunError::Config(format!("{}: {e}", path.display())))?;
    let decisions = Arc::new(ArcSwap::from_pointee(Decisions::initial(
        config.profiler.forecast_tick,
    )));
    let users = UserTable::new(table_config(&config))
        .map_err(|e| RunError::Config(format!("profiler: {e}")))?;
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        overflow: Arc::clone(users.overflow()),
        users,
        metrics,
        clock: SystemClock,
        upstreams,
        decisions: Arc::clone(&decisions),
        devices: DeviceCache::new(),
        admission: Arc::new(AdmissionGate::new(
            &config.admission,
            tier_queues,
            Box::new(SystemClock),
        )),
        upstream_options: UpstreamOptions::new(&config.upstream_timeouts, &config.warming),
        insights,
        pools,
        warm,
    });

    let healthy = upstreams::HealthyGauge::new(Arc::downgrade(&shared));
    shared
        .metrics
        .registry()
        .register(Box::new(healthy))
        .map_err(|e| RunError::Server(format!("metrics: {e}")))?;

    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        HeadroomProxy::new(Arc::clone(&shared)),
    );
    proxy.add_tcp(&listen.to_string());
    let mut admin_service = Service::new("admin".to_owned(), AdminApp::new(Arc::clone(&shared)));
    admin_service.add_tcp(&admin.to_string());
    let reloader = background_service(
        "reloader",
        Reloader::new(path, Arc::clone(&shared), secret, &config),
    );
    let sweeper = background_service("sweeper", Sweeper::new(Arc::clone(&shared)));
    let forecaster = background_service(
        "forecaster",
        ForecasterService::new(
            Arc::clone(&shared),
            decisions,
            config.profiler.forecast_tick,
        ),
    );
    let insights = background_service("insights", InsightsService::new(Arc::clone(&shared)));

    server.add_service(proxy);
    server.add_service(admin_service);
    for health in health_services {
        server.add_service(health);
    }
    if config.warming.enabled {
        let warmer = WarmerService::new(
            Arc::clone(&shared),
            config.warming.clone(),
            listen,
            config.upstream_timeouts.pool_size,
        );
        server.add_service(background_service("warmer", warmer));
    }
    server.add_service(reloader);
    server.add_service(sweeper);
    server.add_service(forecaster);
    server.add_service(insights);
    Ok((server, (listen, admin)))
}

/// Checks what the file's validation checks, again after the command-line
/// overrides, and that both listeners can be bound now (pingora would retry
/// and then panic on an address in use).
fn check_addresses(
    listen: SocketAddr,
    admin: SocketAddr,
    upstreams: &[(SocketAddr, usize)],
) -> Result<(), RunError> {
    if listen == admin {
        return Err(RunError::Address(format!(
            "proxy and admin listeners are both {listen}"
        )));
    }
    if let Some((addr, _)) = upstreams.iter().find(|(a, _)| *a == listen || *a == admin) {
        return Err(RunError::Address(format!(
            "upstream {addr} is one of Headroom's own listeners"
        )));
    }
    for addr in [listen, admin] {
        std::net::TcpListener::bind(addr)
            .map_err(|e| RunError::Address(format!("cannot listen on {addr}: {e}")))?;
    }
    Ok(())
}

/// The pre-allocation hook must not call Headroom's own listeners, as
/// overridden on the command line (`check` saw only the file's).
fn check_hook(config: &Config, listen: SocketAddr, admin: SocketAddr) -> Result<(), RunError> {
    let hook = config.preallocate.as_ref().and_then(|p| p.hook.as_ref());
    match hook.and_then(|h| [listen, admin].into_iter().find(|l| h.targets(*l))) {
        Some(own) => Err(RunError::Address(format!(
            "preallocate.hook.url {} calls Headroom's own listener {own}",
            hook.map_or("", |h| h.url.as_str())
        ))),
        None => Ok(()),
    }
}
