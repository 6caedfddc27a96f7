//! The warmer: keeps enough idle keep-alive connections to each upstream in
//! the proxy's own connection pool for the demand predicted next.
//!
//! pingora's proxy owns its connector (and so its pool) privately, and a
//! separate client would warm a pool nobody uses. So the warmer sends
//! warm-up requests through the proxy's own listener, marked by a random
//! per-process path ([`hub`]). The proxy recognises them before
//! identification, never counts them as user traffic, routes each to the
//! backend it names, rewrites it to the configured cheap path
//! (`warming.path`, default `health_check.path`), and holds it once it owns
//! an upstream connection until the whole round owns one. When the round
//! completes, pingora returns every connection to its pool: N concurrent
//! warm-up requests leave N idle connections (existing idle ones are reused
//! first and so get their idle timers refreshed).
//!
//! Target per upstream, by Little's law (requests in flight = arrival rate x
//! time in system): `ceil(demand_rps x mean_upstream_s x margin / healthy)`,
//! where demand is the highest median aggregate forecast among horizons
//! within `warming.lead` (or the current rate, if higher), split between
//! pools by their recent share of requests, and the mean upstream time is
//! measured from admission to the end of each response. It is bounded by
//! `max_connections_per_upstream`, by the admission gate's current limit
//! when the gate is on (no more client requests than that reach the
//! upstreams at once), and by the upstream's fair part of the keep-alive
//! pool (pingora's pool is one LRU shared by all upstreams), and raised to
//! `min_connections_per_upstream`.
//!
//! Each round sends the target less the connections carrying client
//! requests at that moment (estimated from the admission gate's in-flight
//! count), so a busy pool is not grown further. Approximations: the warmer
//! cannot see the pool's contents, so every round tops the idle part up to
//! the target even when it is already there (costing up to `target` cheap
//! requests per upstream per interval). The pool's size is
//! the warmer's to keep: with warming on, every pooled connection idles out
//! after 1.5 intervals ([`crate::state::WARM_IDLE_ROUNDS`]) unless reused,
//! and pingora hands out the oldest idle connection first, so each round
//! refreshes `target` of them; client requests beyond the summed targets
//! in flight use a pool group of their own, and a fall in the target to
//! half its peak moves the pool to a new generation
//! ([`hub::WarmHub::group_key`]), so light traffic does not keep a past
//! burst's connections alive either, and that surplus closes within two
//! rounds once demand falls (or earlier when the backend closes
//! idle connections, in which case pingora drops them when it sees the
//! close).

pub mod hub;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use headroom_config::Warming;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::forecaster::HorizonForecast;
use crate::state::Shared;

/// The highest median forecast (requests per second) among the horizons at
/// most `lead_s` ahead; the nearest horizon always counts. Non-finite and
/// negative forecasts are ignored; no forecast at all gives 0.
pub fn predicted_rps(aggregate: &[HorizonForecast], lead_s: u64) -> f64 {
    aggregate
        .iter()
        .enumerate()
        .filter(|(i, h)| *i == 0 || h.horizon_s <= lead_s)
        .map(|(_, h)| h.median_rps)
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold(0.0, f64::max)
}

/// Little's-law connections per upstream:
/// `ceil(demand_rps x mean_upstream_s x margin / healthy)`.
///
/// 0 when there is no healthy upstream or when any input is zero, negative
/// or not finite (no forecast yet, no latency measured yet). Saturates at
/// `u32::MAX` before the caller's bounds apply.
pub fn littles_law_target(
    demand_rps: f64,
    mean_upstream_s: f64,
    margin: f64,
    healthy: usize,
) -> u32 {
    let usable = |x: f64| x.is_finite() && x > 0.0;
    if healthy == 0 || !usable(demand_rps) || !usable(mean_upstream_s) || !usable(margin) {
        return 0;
    }
    let in_flight = demand_rps * mean_upstream_s * margin / healthy as f64;
    // `as` saturates for values beyond u32 (and in_flight is finite here).
    in_flight.ceil() as u32
}

/// The target after the configured bounds: at least `min`, at most `max`
/// and at most `pool_share` (the upstream's part of the keep-alive pool).
/// With no healthy upstream the target is 0 whatever `min` says.
pub fn bounded_target(littles: u32, min: u32, max: u32, pool_share: u32, healthy: usize) -> u32 {
    if healthy == 0 {
        return 0;
    }
    littles.max(min).min(max).min(pool_share)
}

/// Client requests at one upstream of a pool now, estimated from the gate's
/// in-flight count (0 when the gate is off), the pool's share of recent
/// requests and its healthy members; rounded down, so a round warms a
/// little more rather than less.
pub fn busy_per_upstream(in_flight: u32, share: f64, healthy: usize) -> u32 {
    if healthy == 0 || !(share.is_finite() && share > 0.0) {
        return 0;
    }
    (f64::from(in_flight) * share.min(1.0) / healthy as f64) as u32
}

/// The warmer background task.
pub struct WarmerService {
    shared: Arc<Shared>,
    settings: Warming,
    /// Where the proxy listens, as reachable from this process.
    proxy: SocketAddr,
    /// The proxy's keep-alive pool size (all upstreams together).
    pool_size: usize,
}

/// What the warmer remembers between rounds.
struct RoundState {
    round: u64,
    at: Instant,
    timing: (u64, u64),
    per_pool: Vec<u64>,
    shares: Vec<f64>,
    mean_upstream_s: Option<f64>,
}

impl WarmerService {
    /// A warmer for `shared`'s pools that reaches the proxy at `listen`
    /// (an unspecified address is reached over loopback).
    pub fn new(
        shared: Arc<Shared>,
        settings: Warming,
        listen: SocketAddr,
        pool_size: usize,
    ) -> Self {
        let mut proxy = listen;
        if proxy.ip().is_unspecified() {
            proxy.set_ip(match listen {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Self {
            shared,
            settings,
            proxy,
            pool_size,
        }
    }

    /// One round: compute each pool's target and warm every healthy
    /// backend to it, all pools and backends concurrently.
    async fn round(&self, client: &Client<HttpConnector, Empty<Bytes>>, state: &mut RoundState) {
        let pools = self.shared.pools.all();
        state.round += 1;

        // Demand: the forecast within the lead, or the current rate.
        let now = Instant::now();
        let elapsed_s = now.duration_since(state.at).as_secs_f64().max(1e-3);
        let (sum_us, count) = self.shared.warm.timing.totals();
        let (d_sum, d_count) = (sum_us - state.timing.0, count - state.timing.1);
        if d_count > 0 {
            state.mean_upstream_s = Some(d_sum as f64 / d_count as f64 / 1e6);
        }
        let current_rps = d_count as f64 / elapsed_s;
        let lead_s = self.settings.lead.as_secs();
        let forecast_rps = predicted_rps(&self.shared.decisions.load().aggregate, lead_s);
        let demand = forecast_rps.max(current_rps);
        state.timing = (sum_us, count);
        state.at = now;

        // Split demand between pools by their recent share of requests.
        let counts: Vec<u64> = pools
            .iter()
            .map(|p| p.requests.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let deltas: Vec<u64> = counts
            .iter()
            .zip(&state.per_pool)
            .map(|(now, before)| now.saturating_sub(*before))
            .collect();
        let total: u64 = deltas.iter().sum();
        if total > 0 {
            state.shares = deltas.iter().map(|d| *d as f64 / total as f64).collect();
        }
        state.per_pool = counts;

        let members: usize = pools.iter().map(|p| p.members()).sum();
        let pool_share = u32::try_from(self.pool_size / members.max(1)).unwrap_or(u32::MAX);
        let mean_s = state.mean_upstream_s.unwrap_or(0.0);
        // The admission gate never lets more than its limit of client
        // requests reach the upstreams at once: connections beyond it would
        // only sit idle (and Little's law overshoots when the measured time
        // includes queueing at a saturated backend).
        let gate = &self.shared.admission;
        let max = if gate.enabled() {
            self.settings.max_connections_per_upstream.min(gate.limit())
        } else {
            self.settings.max_connections_per_upstream
        };
        let mut work = Vec::new();
        let mut core = 0u32;
        for (i, pool) in pools.iter().enumerate() {
            let healthy = pool.healthy();
            let share = state.shares.get(i).copied().unwrap_or(0.0);
            let littles =
                littles_law_target(demand * share, mean_s, self.settings.margin, healthy.len());
            let target = bounded_target(
                littles,
                self.settings.min_connections_per_upstream,
                max,
                pool_share,
                healthy.len(),
            );
            self.shared
                .warm
                .metrics
                .target
                .with_label_values(&[pool.name.as_str()])
                .set(i64::from(target));
            core = core.saturating_add(target.saturating_mul(healthy.len() as u32));
            // Connections carrying client requests now are warm already:
            // the round tops up the rest, so a saturated pool is left alone.
            let busy = busy_per_upstream(gate.in_flight(), share, healthy.len());
            let round = target.saturating_sub(busy);
            tracing::debug!(pool = %pool.name, demand, share, mean_s, healthy = healthy.len(), target, busy, "warming round");
            for backend in healthy {
                if round > 0 {
                    work.push(self.warm_backend(client, backend, state.round, round as usize));
                }
            }
        }
        self.shared.warm.set_core(core);
        join_all(work).await;
    }

    /// Holds `n` concurrent warm-up requests to `backend` through the proxy.
    async fn warm_backend(
        &self,
        client: &Client<HttpConnector, Empty<Bytes>>,
        backend: SocketAddr,
        round: u64,
        n: usize,
    ) {
        let hub = &self.shared.warm;
        let uri = format!("http://{}{}", self.proxy, hub.uri(backend, round));
        let Ok(uri) = uri.parse::<http::Uri>() else {
            hub.metrics.failures.inc();
            return;
        };
        hub.begin(backend, round, n);
        let limit = self.settings.interval.max(Duration::from_secs(1)) * 2;
        let requests = (0..n).map(|_| {
            let uri = uri.clone();
            async move {
                let call = async {
                    let resp = client.get(uri).await.ok()?;
                    let ok = resp.status().is_success() || resp.status().is_redirection();
                    // Read the body to the end so the downstream connection stays reusable.
                    http_body_util::BodyExt::collect(resp.into_body())
                        .await
                        .ok()?;
                    Some(ok)
                };
                matches!(tokio::time::timeout(limit, call).await, Ok(Some(true)))
            }
        });
        let failed = join_all(requests).await.iter().filter(|ok| !**ok).count();
        hub.end(backend, round);
        if failed > 0 {
            hub.metrics.failures.inc_by(failed as u64);
            tracing::debug!(%backend, failed, "warm-up requests failed");
        }
    }
}

#[async_trait]
impl BackgroundService for WarmerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let span = tracing::info_span!(
            "warmer",
            interval_ms = self.settings.interval.as_millis() as u64
        );
        let _enter = span.enter();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.settings.interval * 4)
            .pool_max_idle_per_host(self.settings.max_connections_per_upstream as usize)
            .build(connector);
        let pools = self.shared.pools.all().len();
        let mut state = RoundState {
            round: 0,
            at: Instant::now(),
            timing: self.shared.warm.timing.totals(),
            per_pool: vec![0; pools],
            // Until traffic shows a split, all demand is the default pool's.
            shares: (0..pools).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect(),
            mean_upstream_s: None,
        };
        tracing::info!(proxy = %self.proxy, "warmer started");
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.round(&client, &mut state) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn horizon(horizon_s: u64, median_rps: f64) -> HorizonForecast {
        HorizonForecast {
            horizon_s,
            median_rps,
            p90_rps: median_rps,
            best_model: "test",
        }
    }

    #[test]
    fn littles_law_rounds_up_per_healthy_upstream() {
        // 100 rps x 50 ms = 5 in flight, x 1.25 = 6.25, over 2 upstreams = 3.125 -> 4.
        assert_eq!(littles_law_target(100.0, 0.05, 1.25, 2), 4);
        assert_eq!(littles_law_target(100.0, 0.05, 1.0, 1), 5);
        assert_eq!(
            littles_law_target(0.001, 0.001, 1.0, 1),
            1,
            "any demand keeps one"
        );
    }

    #[test]
    fn littles_law_edges_give_zero() {
        assert_eq!(littles_law_target(0.0, 0.05, 1.25, 2), 0, "zero demand");
        assert_eq!(littles_law_target(f64::NAN, 0.05, 1.25, 2), 0, "NaN demand");
        assert_eq!(
            littles_law_target(100.0, f64::NAN, 1.25, 2),
            0,
            "NaN latency"
        );
        assert_eq!(littles_law_target(f64::INFINITY, 0.05, 1.25, 2), 0);
        assert_eq!(littles_law_target(-5.0, 0.05, 1.25, 2), 0);
        assert_eq!(
            littles_law_target(100.0, 0.05, 1.25, 0),
            0,
            "no healthy upstream"
        );
        assert_eq!(
            littles_law_target(1e300, 1e300, 10.0, 1),
            u32::MAX,
            "overflow saturates"
        );
        assert_eq!(littles_law_target(1e12, 1e3, 1.0, 1), u32::MAX, "saturates");
    }

    #[test]
    fn bounds_apply_in_order() {
        assert_eq!(bounded_target(4, 0, 32, 128, 2), 4);
        assert_eq!(bounded_target(0, 3, 32, 128, 2), 3, "floor");
        assert_eq!(bounded_target(100, 0, 32, 128, 2), 32, "configured max");
        assert_eq!(bounded_target(100, 0, 32, 10, 2), 10, "pool share");
        assert_eq!(bounded_target(5, 8, 32, 128, 0), 0, "no healthy upstream");
    }

    #[test]
    fn busy_connections_are_split_by_share_and_members() {
        assert_eq!(busy_per_upstream(22, 1.0, 1), 22);
        assert_eq!(busy_per_upstream(22, 0.5, 2), 5, "rounded down");
        assert_eq!(busy_per_upstream(22, 0.0, 1), 0);
        assert_eq!(busy_per_upstream(22, f64::NAN, 1), 0);
        assert_eq!(busy_per_upstream(22, 1.0, 0), 0);
        assert_eq!(busy_per_upstream(0, 1.0, 1), 0, "gate off or idle");
    }

    #[test]
    fn prediction_takes_the_peak_within_the_lead() {
        let agg = [
            horizon(60, 10.0),
            horizon(300, 40.0),
            horizon(900, 90.0),
            horizon(3600, f64::NAN),
        ];
        assert_eq!(predicted_rps(&agg, 300), 40.0);
        assert_eq!(
            predicted_rps(&agg, 0),
            10.0,
            "nearest horizon always counts"
        );
        assert_eq!(predicted_rps(&agg, 7200), 90.0, "NaN ignored");
        assert_eq!(predicted_rps(&[], 300), 0.0, "no forecast yet");
        assert_eq!(predicted_rps(&[horizon(60, -1.0)], 300), 0.0);
    }
}
