//! The proxy's shared state: the hot-swappable [`Runtime`] compiled from a
//! config file, and the long-lived parts a reload keeps (user table, metrics,
//! upstream set).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use headroom_config::{UpstreamTimeouts, Warming};
use headroom_policies::{
    Attributes, Device, DeviceCache, Policy, RouteClass, SourceKind, Tier, TierId, UserBucket,
    Verdict,
};
use headroom_profiler::forecast::user::UserForecastState;
use headroom_profiler::{SystemClock, UserEntry, UserTable};
use http::{HeaderMap, HeaderValue};
use pingora::lb::{selection::RoundRobin, LoadBalancer};
use pingora::prelude::HttpPeer;

use crate::admission::{AdmissionGate, TierQueue};
use crate::forecaster::Decisions;
use crate::identity::{Identity, IdentityResolver};
use crate::insights::{InsightsHub, LastDecision, UserAttributeCell};
use crate::metrics::{Metrics, TierMetrics, NO_TIER};
use crate::tiering::{Reserved, ShapingCell};
use crate::upstreams::{PoolRoute, UpstreamPools};
use crate::warmer::hub::WarmHub;

/// What the proxy keeps per tracked user besides the behaviour windows.
#[derive(Default)]
pub struct UserState {
    /// The user's rate-limit state. It is independent of the tier and of the
    /// policy generation, so neither a tier change nor a reload refills it.
    pub bucket: UserBucket,
    /// Set once the user presented a verified credential; protects the entry
    /// from displacement by unverified newcomers when the table is full.
    pub verified: AtomicBool,
    /// The user's latest forecast (16 bytes), refreshed by the forecaster.
    pub forecast: UserForecastState,
    /// The latest request's role, location and device codes, for cohorts.
    pub attributes: UserAttributeCell,
    /// The latest tier and rate-limit verdict, for the profile API.
    pub decision: LastDecision,
    /// Predictive tier assignment, static-rule mask and pre-allocation
    /// (16 bytes; see [`crate::tiering`]).
    pub shaping: ShapingCell,
}

/// Header values and metric handles of one tier, prepared at compile time so
/// the hot path clones them instead of formatting.
pub struct TierRuntime {
    /// The tier name as a header value.
    pub name_header: HeaderValue,
    /// The `RateLimit-Policy` value describing this tier's quota.
    pub policy_header: HeaderValue,
    /// This tier's counters and histogram.
    pub metrics: TierMetrics,
}

impl TierRuntime {
    /// The `RateLimit` value for a verdict under this tier.
    pub fn ratelimit_header(&self, tier: &Tier, verdict: &Verdict) -> HeaderValue {
        HeaderValue::from_bytes(tier.ratelimit_value(verdict).as_bytes())
            .expect("the value is a quoted tier name and digits")
    }
}

/// Everything compiled from one config file, swapped whole on reload.
pub struct Runtime {
    /// Tiers, rules, route classes and rate limiters.
    pub policy: Policy,
    /// Identity sources and the anonymous policy.
    pub identity: IdentityResolver,
    /// Per-tier header values and metrics, indexed by `TierId`.
    pub tiers: Vec<TierRuntime>,
    /// Metrics for requests refused before a tier was known.
    pub no_tier_metrics: TierMetrics,
    /// Admission-queue settings per tier, in `TierId` order.
    pub tier_queues: Vec<TierQueue>,
    /// Response-body pacing per tier, in `TierId` order.
    pub pacing: Vec<Option<Pacing>>,
    /// The upstream pool of each tier, in `TierId` order; `None` (or a
    /// missing entry) is the default pool.
    pub tier_pools: Vec<Option<PoolRoute>>,
}

/// A tier's response-body pacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    /// Most bytes per second per response body.
    pub bytes_per_second: f64,
    /// Pace always (true) or only while the admission queue is in use.
    pub always: bool,
}

impl Runtime {
    /// The prepared values of `tier`.
    ///
    /// # Panics
    /// Never for a `TierId` from this runtime's policy, which has exactly one
    /// entry per tier.
    pub fn tier(&self, tier: TierId) -> &TierRuntime {
        &self.tiers[tier.index()]
    }

    /// Prepares the per-tier values of `policy`.
    pub fn new(
        policy: Policy,
        identity: IdentityResolver,
        tier_queues: Vec<TierQueue>,
        pacing: Vec<Option<Pacing>>,
        metrics: &Metrics,
    ) -> Self {
        let tiers = policy
            .tiers()
            .iter()
            .map(|t| TierRuntime {
                name_header: HeaderValue::from_maybe_shared(t.name_header().clone())
                    .expect("tier names are validated as [a-z0-9_-]+"),
                policy_header: HeaderValue::from_maybe_shared(t.ratelimit_policy_header().clone())
                    .expect("policy header is built from validated names and numbers"),
                metrics: metrics.tier(t.name()),
            })
            .collect();
        Self {
            policy,
            identity,
            tiers,
            no_tier_metrics: metrics.tier(NO_TIER),
            tier_queues,
            pacing,
            tier_pools: Vec::new(),
        }
    }
}

/// Upstream connection settings applied to every peer.
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time to wait for each read from the upstream.
    pub read_timeout: Duration,
    /// How long an idle keep-alive connection stays in the pool:
    /// `upstream_timeouts.idle`, or with warming on at most
    /// [`WARM_IDLE_ROUNDS`] warming intervals. The warmer then owns the
    /// pool's size: each round takes its target number of idle connections
    /// (pingora hands out the oldest first) and returns them refreshed, so
    /// the connections predicted demand needs stay, and those a past burst
    /// left beyond it close within two rounds once demand falls.
    pub idle_timeout: Duration,
}

/// Warming intervals an idle pooled connection survives with warming on
/// (see [`UpstreamOptions::idle_timeout`]): more than one, so a round that
/// starts a little late still finds the warm set, and less than two, so a
/// round that rotates through the pool's oldest connections keeps exactly
/// its target instead of twice or three times it.
pub const WARM_IDLE_ROUNDS: f64 = 1.5;

impl UpstreamOptions {
    /// The options from the config's `upstream_timeouts` and `warming`.
    pub fn new(timeouts: &UpstreamTimeouts, warming: &Warming) -> Self {
        let idle_timeout = if warming.enabled {
            warming
                .interval
                .mul_f64(WARM_IDLE_ROUNDS)
                .min(timeouts.idle)
        } else {
            timeouts.idle
        };
        Self {
            connect_timeout: timeouts.connect,
            read_timeout: timeouts.read,
            idle_timeout,
        }
    }

    /// Sets the timeouts on a peer.
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(self.idle_timeout);
    }
}

/// State shared by every request and background task.
pub struct Shared {
    /// The policy snapshot in force.
    pub runtime: ArcSwap<Runtime>,
    /// Tracked users.
    pub users: UserTable<UserState>,
    /// The state used for users arriving while the table is full.
    pub overflow: Arc<UserEntry<UserState>>,
    /// All metric families.
    pub metrics: Metrics,
    /// Time source for the profiler.
    pub clock: SystemClock,
    /// The upstream set, with health checks.
    pub upstreams: Arc<LoadBalancer<RoundRobin>>,
    /// Timeouts for upstream connections.
    pub upstream_options: UpstreamOptions,
    /// Concurrency limit and fair queue in front of the upstreams.
    pub admission: Arc<AdmissionGate>,
    /// Memo of user-agent device classes (the classifier is the costliest
    /// step of a decision otherwise).
    pub devices: DeviceCache,
    /// The forecaster's latest decisions, read per request.
    pub decisions: Arc<ArcSwap<Decisions>>,
    /// Cohorts, next action, latency sensitivity, events and the admin
    /// token (see [`crate::insights`]).
    pub insights: InsightsHub,
    /// Every upstream pool (the default first), with health checks.
    pub pools: UpstreamPools,
    /// Warm-up request marker, round coordination, upstream timing and
    /// the warmer's metrics (see [`crate::warmer`]).
    pub warm: WarmHub,
}

impl Shared {
    /// The user's entry, or the shared overflow entry when the table is full
    /// of active users (counted in `headroom_untracked_requests_total`). A
    /// verified newcomer displaces the least recently seen unverified user
    /// rather than overflow, so made-up identities cannot lock paying users
    /// out.
    pub fn user(&self, key: u64, now_ms: u64, verified: bool) -> Arc<UserEntry<UserState>> {
        let entry = match self.users.get_or_insert(key, now_ms) {
            Ok(entry) => Some(entry),
            Err(_) if verified => {
                let unverified =
                    |e: &UserEntry<UserState>| !e.extra.verified.load(Ordering::Relaxed);
                self.users
                    .displace_one(unverified)
                    .then(|| self.users.get_or_insert(key, now_ms).ok())
                    .flatten()
            }
            Err(_) => None,
        };
        match entry {
            Some(entry) => {
                if verified && !entry.extra.verified.load(Ordering::Relaxed) {
                    entry.extra.verified.store(true, Ordering::Relaxed);
                }
                entry
            }
            None => {
                self.metrics.untracked_requests.inc();
                Arc::clone(&self.overflow)
            }
        }
    }
}

/// What the request phase decided for one identified request.
pub struct Arrival {
    /// The user's entry (or the shared overflow entry).
    pub user: Arc<UserEntry<UserState>>,
    /// The tier the request is served in.
    pub tier: TierId,
    /// The request's route class.
    pub route: RouteClass,
    /// The rate-limit verdict.
    pub verdict: Verdict,
    /// Whether the user holds a pre-allocation now (may use reserved
    /// admission slots).
    pub reserved: bool,
}

impl Shared {
    /// The synchronous heart of the request phase, shared by the proxy, the
    /// benches and the tests so all three run the same code: attributes,
    /// tier, route class, user lookup, arrival recording (windows and
    /// insights), and the rate-limit check against the user's own bucket (so
    /// a tier change or a reload keeps whatever the user already spent).
    /// `now_ms` is the profiler clock's time (injected so tests and replays
    /// run on simulated time).
    pub fn arrive(
        &self,
        rt: &Runtime,
        identity: &Identity,
        headers: &HeaderMap,
        path: &str,
        now_ms: u64,
    ) -> Arrival {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let attrs = Attributes {
            plan: identity.plan.as_deref(),
            role: identity.role.as_deref(),
            location: rt.identity.location(headers),
            device: user_agent.map_or(Device::Other, |ua| self.devices.classify(ua)),
            authenticated: matches!(identity.source, SourceKind::ApiKey | SourceKind::Jwt),
            source: identity.source,
        };
        let route = rt.policy.classify(path);
        let bytes_in = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            .min(MAX_RECORDED_BODY);

        // Demand counts whether or not it is admitted.
        let user = self.user(identity.key, now_ms, identity.verified);
        let (tier, reserved) = self.shaped_tier(rt, &user, &attrs, now_ms);
        let transition = user.windows.record_arrival(now_ms, route.id, bytes_in);
        crate::insights::record_arrival(self, &user, &transition, route.id, &attrs);
        let verdict = rt.policy.check(&user.extra.bucket, tier, route.cost);
        user.extra.decision.record(tier, &verdict);
        Arrival {
            user,
            tier,
            route,
            verdict,
            reserved,
        }
    }

    /// The request's tier and whether its user holds a pre-allocation.
    /// Static policies: the first matching rule, as always. Predictive
    /// ones: the tick's assignment for the user (one atomic load), else the
    /// static rules; the shared overflow entry always uses the static rules.
    fn shaped_tier(
        &self,
        rt: &Runtime,
        user: &Arc<UserEntry<UserState>>,
        attrs: &Attributes<'_>,
        now_ms: u64,
    ) -> (TierId, bool) {
        let policy = &rt.policy;
        if !policy.is_predictive() || Arc::ptr_eq(user, &self.overflow) {
            return (policy.tier_for(attrs), false);
        }
        let cell = &user.extra.shaping;
        cell.note_mask(policy.tagged_mask(attrs));
        let tier = cell
            .tier(policy.generation())
            .unwrap_or_else(|| policy.tier_for(attrs));
        let reserved = match cell.arrive(now_ms / 1000) {
            Reserved::No => false,
            Reserved::FirstUse => {
                self.admission.prealloc.used.inc();
                true
            }
            Reserved::Yes => true,
        };
        (tier, reserved)
    }
}

/// Largest request body size recorded from `Content-Length` (1 TiB): a
/// client's absurd value must not overflow the user's byte counters.
const MAX_RECORDED_BODY: u64 = 1 << 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_warming_idle_connections_last_one_and_a_half_rounds() {
        let timeouts = UpstreamTimeouts::default();
        let warming = Warming {
            enabled: true,
            interval: Duration::from_secs(2),
            ..Warming::default()
        };
        let idle = |w: &Warming| UpstreamOptions::new(&timeouts, w).idle_timeout;
        assert_eq!(idle(&warming), Duration::from_secs(3));
        // Never longer than the configured idle timeout.
        let slow = Warming {
            interval: Duration::from_secs(600),
            ..warming.clone()
        };
        assert_eq!(idle(&slow), timeouts.idle);
        // Without warming, the configured timeout as it is.
        let off = Warming {
            enabled: false,
            ..warming
        };
        assert_eq!(idle(&off), timeouts.idle);

        let mut peer = HttpPeer::new("127.0.0.1:1", false, String::new());
        UpstreamOptions::new(&timeouts, &off).apply(&mut peer);
        assert_eq!(peer.options.idle_timeout, Some(timeouts.idle));
    }
}
