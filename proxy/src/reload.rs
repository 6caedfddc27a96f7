//! The reloader: watches the config file and SIGHUP, validates, swaps.
//!
//! The file is polled (every 500 ms) by content rather than watched through
//! inotify: a content hash sees every kind of replacement the same way,
//! including the atomic rename of a Kubernetes config map (a symlink swap the
//! watched inode never hears about) and editors that write a temp file and
//! rename it. A file that fails to load or compile is reported with its
//! `FILE:LINE:COLUMN` lines, counted in
//! `headroom_config_reloads_total{result="error"}`, and never replaces the
//! policy in force. Listeners, threads, upstreams, upstream pools, health
//! checks, timeouts, profiler sizing, admission limits and warming are read
//! once at start: a reload that changes them logs a warning naming each key,
//! and they need a restart. Tiers (including which pool a tier uses),
//! rules, routes, identity and per-tier queue settings reload live.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use headroom_config::Config;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::compile::{compile_runtime, IdentitySecret};
use crate::state::Shared;

/// How often the file is polled for changes.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The reloader background task.
pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    secret: IdentitySecret,
    /// The settings read only at start, to warn when a reload changes them.
    startup: RestartOnly,
    /// Fingerprint of the content the policy in force was loaded from,
    /// taken at construction so a change made before the task first runs
    /// is still seen.
    loaded: Option<u64>,
}

impl Reloader {
    /// A reloader of `path` into `shared`, keeping the process's identity
    /// secret when the file sets none.
    pub fn new(
        path: PathBuf,
        shared: Arc<Shared>,
        secret: IdentitySecret,
        started: &Config,
    ) -> Self {
        let loaded = std::fs::read(&path).ok().map(|bytes| fingerprint(&bytes));
        Self {
            path,
            shared,
            secret,
            startup: RestartOnly::of(started),
            loaded,
        }
    }

    /// The content hash of the file, or `None` when it cannot be read (a
    /// config map mid-swap, a deleted file): unreadable is not a change.
    async fn current(&self) -> Option<u64> {
        tokio::fs::read(&self.path)
            .await
            .ok()
            .map(|bytes| fingerprint(&bytes))
    }

    /// Loads, compiles and swaps in the file; logs and counts the result.
    pub fn reload(&self) -> bool {
        let result = headroom_config::load_file(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                for key in self.startup.changed(&config) {
                    tracing::warn!(key, "setting changed in the file needs a restart to apply");
                }
                let mut runtime =
                    compile_runtime(&config, &self.path, &self.shared.metrics, &self.secret)
                        .map_err(|e| e.to_string())?;
                // Pools are restart-only: route tiers to the pools running now.
                let (routes, unresolved) = self.shared.pools.routes(&config, &runtime.policy);
                for pool in unresolved {
                    tracing::warn!(pool = %pool, "tier names a pool not running until restart; using the default pool");
                }
                runtime.tier_pools = routes;
                Ok(runtime)
            });
        match result {
            Ok(runtime) => {
                self.shared
                    .admission
                    .reconfigure(runtime.tier_queues.clone());
                self.shared.runtime.store(Arc::new(runtime));
                self.shared.metrics.count_reload(true);
                tracing::info!(path = %self.path.display(), "config reloaded");
                true
            }
            Err(errors) => {
                self.shared.metrics.count_reload(false);
                for line in errors.lines() {
                    tracing::warn!(error = %line, "config reload rejected; keeping the policy in force");
                }
                false
            }
        }
    }
}

/// The settings applied only at start-up.
struct RestartOnly {
    config: Config,
}

impl RestartOnly {
    fn of(config: &Config) -> Self {
        Self {
            config: config.clone(),
        }
    }

    /// The restart-only keys whose value in `new` differs from the start.
    fn changed(&self, new: &Config) -> Vec<&'static str> {
        let old = &self.config;
        let checks = [
            ("listen", old.listen != new.listen),
            ("admin", old.admin != new.admin),
            ("threads", old.threads != new.threads),
            ("grace_period", old.grace_period != new.grace_period),
            ("upstreams", old.upstreams != new.upstreams),
            ("health_check", old.health_check != new.health_check),
            (
                "upstream_timeouts",
                old.upstream_timeouts != new.upstream_timeouts,
            ),
            ("profiler", old.profiler != new.profiler),
            ("admission", old.admission != new.admission),
            ("upstream_pools", old.upstream_pools != new.upstream_pools),
            ("warming", old.warming != new.warming),
        ];
        checks
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| *key)
            .collect()
    }
}

/// A hash of file content; collisions only delay a reload to the next edit.
fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let span = tracing::info_span!("reloader", path = %self.path.display());
        let _enter = span.enter();
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file change only");
                None
            }
        };
        let mut last = self.loaded;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            let by_signal = tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
            };
            let now = self.current().await;
            if by_signal || (now.is_some() && now != last) {
                tracing::debug!(by_signal, "reloading config");
                self.reload();
                last = now;
            }
        }
    }
}
