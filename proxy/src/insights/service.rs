//! The `insights` background service: runs a [`Ticker`] on the proxy's
//! clock until shutdown.
//!
//! pingora gives each background service its own one-thread runtime, so a
//! re-clustering (up to about a second for a large table) delays only this
//! task's next tick, never a request.

use std::sync::Arc;

use async_trait::async_trait;
use headroom_profiler::Clock;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use super::Ticker;
use crate::state::Shared;

/// The insights background task.
pub struct InsightsService {
    shared: Arc<Shared>,
}

impl InsightsService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn run(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = match Ticker::new(&self.shared) {
            Ok(ticker) => ticker,
            Err(e) => {
                tracing::warn!(error = %e, "insights disabled: cohort settings refused");
                return;
            }
        };
        let mut interval = tokio::time::interval(self.shared.insights.settings.tick);
        // After a long tick, carry on at the normal pace rather than in a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => {}
            }
            let now_ms = self.shared.clock.now_ms();
            let report = ticker.tick(&self.shared, now_ms);
            tracing::debug!(
                users = report.users,
                reclustered = report.reclustered,
                assigned = report.assigned,
                rebuilt = report.rebuilt,
                settled = report.settled,
                "insights tick"
            );
        }
    }
}

#[async_trait]
impl BackgroundService for InsightsService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown)
            .instrument(tracing::info_span!("insights"))
            .await;
    }
}
