//! The sweeper: evicts idle users, sheds queue waiters whose time ran out,
//! and keeps the user gauge current. (Forecast scoring lives in the
//! forecaster.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use headroom_profiler::Clock;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::Shared;

/// How often the sweeper runs.
const TICK: Duration = Duration::from_secs(10);

/// The sweeper background task.
pub struct Sweeper {
    shared: Arc<Shared>,
}

impl Sweeper {
    /// A sweeper over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let span = tracing::info_span!("sweeper");
        let _enter = span.enter();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let now_ms = self.shared.clock.now_ms();
            self.shared.admission.expire();
            let evicted = self.shared.users.evict_idle(now_ms);
            let metrics = &self.shared.metrics;
            metrics.evicted_users.inc_by(evicted as u64);
            let users = i64::try_from(self.shared.users.len()).unwrap_or(i64::MAX);
            metrics.tracked_users.set(users);
            tracing::debug!(evicted, users, "sweep");
        }
    }
}
