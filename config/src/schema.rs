//! The validated configuration: plain values, every rule already checked.
//!
//! These types are what the rest of Headroom sees. They carry no source
//! positions and no "maybe" states the validator has already ruled out:
//! a `Tier` named by a rule exists, a route's cost fits every tier's burst,
//! a JWT key has the material its algorithm needs. The YAML-facing shapes
//! live in `raw`, and `validate` turns one into the other.
//!
//! Identity settings are in [`crate::identity`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::admin::{AdminApi, DeclaredEvent};
use crate::identity::Identity;
use crate::shaping::{NextActionCondition, Preallocate, Tiering};
use crate::upstreams::{TierPool, UpstreamPool, Warming};

/// The whole validated configuration of one Headroom process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address of the proxy listener. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Address of the admin listener (metrics, profiles, dashboard).
    /// Default `127.0.0.1:9901`; never equal to `listen`.
    pub admin: SocketAddr,
    /// Pingora worker threads, at least 1. Default 2.
    pub threads: usize,
    /// How long a graceful shutdown waits for in-flight requests. Default 5 s
    /// (pingora's own default is 5 minutes, too long for a sidecar).
    pub grace_period: Duration,
    /// Backends to forward to, in file order. May be empty here: `headroom run
    /// --upstream` can supply them, and the proxy refuses to start with none.
    pub upstreams: Vec<Upstream>,
    /// How backends are probed for liveness.
    pub health_check: HealthCheck,
    /// Connection timeouts and keep-alive pool sizing towards backends.
    pub upstream_timeouts: UpstreamTimeouts,
    /// How requests are attributed to users.
    pub identity: Identity,
    /// Sizing of the per-user behaviour windows.
    pub profiler: ProfilerConfig,
    /// Admission control under saturation.
    pub admission: Admission,
    /// Route classes, matched in order against the request path (at most 8).
    pub routes: Vec<Route>,
    /// Service tiers, at least one, names unique.
    pub tiers: Vec<Tier>,
    /// Tier assignment rules; the first rule whose conditions all hold wins.
    pub rules: Vec<Rule>,
    /// Tier for requests no rule matches; always the name of one of `tiers`.
    pub default_tier: String,
    /// Who may use the admin API's operator endpoints.
    pub admin_api: AdminApi,
    /// Hysteresis of predictive tier assignments.
    pub tiering: Tiering,
    /// Capacity held for users predicted to arrive; `None` (the default)
    /// is off.
    pub preallocate: Option<Preallocate>,
    /// Demand events declared in the file (campaigns, launches), in file
    /// order; each route scope names one of `routes` (or `other`).
    pub events: Vec<DeclaredEvent>,
    /// Named backend groups for tiers, in file order, names unique.
    pub upstream_pools: Vec<UpstreamPool>,
    /// Tiers served by one of `upstream_pools`; tiers not listed use
    /// `upstreams`.
    pub tier_pools: Vec<TierPool>,
    /// Backend connection warming ahead of predicted demand.
    pub warming: Warming,
}

impl Config {
    /// The tier called `name`, if there is one.
    #[must_use]
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|tier| tier.name == name)
    }

    /// Index into `tiers` of the tier called `name`, if there is one.
    #[must_use]
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|tier| tier.name == name)
    }

    /// The largest `cost` of any route, or 1 when there are no routes (a
    /// request outside every route costs 1 token).
    #[must_use]
    pub fn max_route_cost(&self) -> u32 {
        self.routes
            .iter()
            .map(|route| route.cost)
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

/// One backend address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Where the backend listens. Must be an IP and port: no DNS lookups.
    pub address: SocketAddr,
    /// Share of traffic relative to the other upstreams, 1 to 1 000 000. Default 1.
    pub weight: u32,
}

/// Backend liveness probing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between probes of each backend; zero disables health checks.
    /// Default 5 s.
    pub interval: Duration,
    /// How long one probe may take before the backend counts as down. Greater
    /// than zero and at most `interval` when checks are enabled. Default 1 s.
    pub timeout: Duration,
    /// `None`: a TCP connect is the probe. `Some("/healthz")`: an HTTP GET of
    /// that path, healthy on a 2xx or 3xx status. Always starts with `/`.
    pub path: Option<String>,
}

impl HealthCheck {
    /// Whether probes run at all (`interval` is not zero).
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            path: None,
        }
    }
}

/// Timeouts and connection reuse towards backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// Limit on establishing a TCP connection to a backend. Default 1 s; never zero.
    pub connect: Duration,
    /// Limit on each read from a backend (time to first byte and between
    /// bytes). Default 30 s; never zero.
    pub read: Duration,
    /// How long an unused keep-alive connection stays in the pool. Default 60 s; never zero.
    pub idle: Duration,
    /// Keep-alive connections kept per upstream; 0 disables reuse. Default 128.
    pub pool_size: usize,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            pool_size: 128,
        }
    }
}

/// Sizing of the profiler's per-user state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfilerConfig {
    /// Most users tracked at once; past it the idlest are evicted. 1 to 100 000 000.
    /// Default 100 000.
    pub max_users: usize,
    /// A user with no request for this long is forgotten. Never shorter than
    /// the window (`bucket * buckets`). Default 10 min.
    pub idle_timeout: Duration,
    /// Width of one window bucket; counts may be late by up to one bucket.
    /// Greater than zero. Default 1 s.
    pub bucket: Duration,
    /// Buckets per window, 1 to 10 000; the window spans `bucket * buckets`.
    /// Default 60.
    pub buckets: u32,
    /// A pause longer than this starts a new session. Greater than zero. Default 30 min.
    pub session_gap: Duration,
    /// How often the forecaster runs, which is also the width of a forecast
    /// bucket: the aggregate demand series counts requests per tick, and
    /// horizons are 1, 5, 15 and 60 ticks. 1 s to 1 h. Default 1 min (the
    /// bucket `headroom eval` scores by default).
    pub forecast_tick: Duration,
}

impl ProfilerConfig {
    /// Length of the sliding window: `bucket * buckets`.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.bucket.saturating_mul(self.buckets)
    }
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        ProfilerConfig {
            max_users: 100_000,
            idle_timeout: Duration::from_secs(600),
            bucket: Duration::from_secs(1),
            buckets: 60,
            session_gap: Duration::from_secs(1800),
            forecast_tick: Duration::from_secs(60),
        }
    }
}

/// A class of requests, chosen by path, with its own token cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Unique name made of `a-z`, `0-9`, `_`, `-`; used as a metric label value.
    pub name: String,
    /// Which paths belong to this route.
    pub matcher: RouteMatch,
    /// Rate-limit tokens one request costs, 1 to 1 000 000. Default 1.
    pub cost: u32,
    /// How much the route's callers care about latency. Default interactive.
    pub kind: RouteKind,
}

/// How a route selects request paths. Paths are compared without the query string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// The path equals this prefix or continues it at a `/` boundary:
    /// `/export` matches `/export` and `/export/csv`, not `/exports`. A prefix
    /// ending in `/` matches anything below it. Always starts with `/`.
    Prefix(String),
    /// A glob of `/`-separated segments where a segment of exactly `*` matches
    /// any one non-empty segment: `/users/*/export` matches `/users/42/export`
    /// only. The whole path must match, segment count included.
    Pattern(String),
}

impl RouteMatch {
    /// Whether `path` (without query string) belongs to this route.
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            RouteMatch::Prefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
            RouteMatch::Pattern(pattern) => {
                let mut want = pattern.split('/');
                let mut have = path.split('/');
                loop {
                    match (want.next(), have.next()) {
                        (None, None) => return true,
                        (Some("*"), Some(segment)) if !segment.is_empty() => {}
                        (Some(a), Some(b)) if a == b => {}
                        _ => return false,
                    }
                }
            }
        }
    }
}

/// Latency sensitivity of a route, used when deciding what to delay first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// A person is waiting on the answer; delay last.
    #[default]
    Interactive,
    /// Bulk work that tolerates queueing; delay first.
    Batch,
}

/// A service tier: a rate limit and a place in the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    /// Unique name of `a-z`, `0-9`, `_`, `-` (1 to 64 characters); sent in the
    /// `x-headroom-tier` header and used as a metric label value.
    pub name: String,
    /// Served first when saturated: higher wins. 0 to 1000. Default 0.
    pub priority: u16,
    /// Sustained token rate per user, in tokens per second; finite and > 0.
    pub requests_per_second: f64,
    /// Tokens a user may spend at once (at most 2^32 - 1); at least 1 and at least the largest
    /// route cost, so every route stays reachable.
    pub burst: u32,
    /// Fair-queue weight: when several tiers wait for the backend, each gets
    /// admissions in proportion to its weight. 1 to 1 000 000. Default 1.
    pub weight: u32,
    /// Longest a request of this tier waits in the admission queue before it
    /// is shed with 503. Default 1 s.
    pub max_queue_time: Duration,
    /// Share of admissions guaranteed to this tier while it waits, in
    /// [0, 1), whatever the weights; protects a low tier from starving.
    /// Default 0 (weight only).
    pub min_share: f64,
    /// Response bodies of this tier are paced to at most this many bytes per
    /// second each (per response, not per user). Default none.
    pub bandwidth_bytes_per_second: Option<u64>,
    /// When the pacing applies. Default only while the backend is saturated.
    pub bandwidth_when: BandwidthWhen,
}

/// When a tier's bandwidth limit applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BandwidthWhen {
    /// To every response of the tier.
    Always,
    /// Only to responses admitted while the admission queue is in use.
    #[default]
    WhenSaturated,
}

impl BandwidthWhen {
    /// Every variant with its config spelling.
    pub const ALL: [(&'static str, BandwidthWhen); 2] = [
        ("always", BandwidthWhen::Always),
        ("when_saturated", BandwidthWhen::WhenSaturated),
    ];
}

/// Admission control: a concurrency limit on upstream requests, and a
/// weighted-fair queue by tier when it is reached.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// Whether admission control runs. Default true.
    pub enabled: bool,
    /// Adapt the limit from upstream latency (true) or hold
    /// `max_concurrency` (false). Default true.
    pub adaptive: bool,
    /// Most requests in flight to the upstream set at once. Default 256.
    pub max_concurrency: u32,
    /// The adaptive limit never goes below this. Default 4.
    pub min_concurrency: u32,
    /// The adaptive limit starts here. Default 32.
    pub initial_concurrency: u32,
    /// Latency over the no-load baseline tolerated before the limit
    /// shrinks, as a multiple (> 1). Default 2.
    pub latency_tolerance: f64,
    /// Most requests waiting at once; beyond it requests are shed. Default 1024.
    pub max_queue: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            enabled: true,
            adaptive: true,
            max_concurrency: 256,
            min_concurrency: 4,
            initial_concurrency: 32,
            latency_tolerance: 2.0,
            max_queue: 1024,
        }
    }
}

/// Assigns a tier to requests whose identity matches every condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Conditions that must all hold; all `None` matches every request.
    pub when: Condition,
    /// Name of the tier to assign; always one of `Config::tiers`.
    pub tier: String,
}

/// Conditions on a request's identity and, for predictive rules, on the
/// user's predictions. `None` means "any value".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Condition {
    /// The user's plan attribute equals this (case-sensitive).
    pub plan: Option<String>,
    /// The user's role attribute equals this (case-sensitive).
    pub role: Option<String>,
    /// The location header's value equals this, ignoring ASCII case (country
    /// codes arrive in either case); stored lowercased. Only set when
    /// `identity.location_header` is.
    pub location: Option<String>,
    /// The device class guessed from the user agent.
    pub device: Option<Device>,
    /// Whether an authenticating source (API key or JWT) identified the user.
    pub authenticated: Option<bool>,
    /// Which identity source identified the request.
    pub source: Option<SourceKind>,
    /// The user's predicted request rate one forecast tick ahead, 90th
    /// percentile, is strictly above this many requests per second (>= 0).
    pub predicted_rps_p90_above: Option<f64>,
    /// The user's latency-sensitivity score is at least 0.5 (`true`) or
    /// below it (`false`).
    pub latency_sensitive: Option<bool>,
    /// The next-action model says the user is likely to call a route soon.
    pub next_action: Option<NextActionCondition>,
}

/// Device class derived from the user agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// A desktop browser.
    Desktop,
    /// A phone or tablet browser or app.
    Mobile,
    /// A crawler, monitor or script that says it is one.
    Bot,
    /// Anything else, including no user agent.
    Other,
}

impl Device {
    /// Every variant with its config spelling.
    pub const ALL: [(&'static str, Device); 4] = [
        ("desktop", Device::Desktop),
        ("mobile", Device::Mobile),
        ("bot", Device::Bot),
        ("other", Device::Other),
    ];
}

/// Which identity source produced a request's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// An API key header.
    ApiKey,
    /// A verified JSON Web Token.
    Jwt,
    /// A session cookie.
    Cookie,
    /// The client IP address.
    ClientIp,
    /// No source identified the request.
    Anonymous,
}

impl SourceKind {
    /// Every variant with its config spelling.
    pub const ALL: [(&'static str, SourceKind); 5] = [
        ("api_key", SourceKind::ApiKey),
        ("jwt", SourceKind::Jwt),
        ("cookie", SourceKind::Cookie),
        ("client_ip", SourceKind::ClientIp),
        ("anonymous", SourceKind::Anonymous),
    ];

    /// The config spelling, also usable as a metric label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ApiKey => "api_key",
            SourceKind::Jwt => "jwt",
            SourceKind::Cookie => "cookie",
            SourceKind::ClientIp => "client_ip",
            SourceKind::Anonymous => "anonymous",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_only_at_segment_boundaries() {
        let export = RouteMatch::Prefix("/export".into());
        assert!(export.matches("/export"));
        assert!(export.matches("/export/csv"));
        assert!(!export.matches("/exports"));
        assert!(!export.matches("/"));
        let static_dir = RouteMatch::Prefix("/static/".into());
        assert!(static_dir.matches("/static/app.js"));
        assert!(!static_dir.matches("/static"));
        assert!(RouteMatch::Prefix("/".into()).matches("/anything"));
    }

    #[test]
    fn pattern_star_matches_exactly_one_non_empty_segment() {
        let pattern = RouteMatch::Pattern("/users/*/export".into());
        assert!(pattern.matches("/users/42/export"));
        assert!(!pattern.matches("/users//export"));
        assert!(!pattern.matches("/users/42/export/more"));
        assert!(!pattern.matches("/users/42"));
        assert!(!pattern.matches("/users/4/2/export"));
    }

    #[test]
    fn window_is_bucket_times_buckets() {
        assert_eq!(ProfilerConfig::default().window(), Duration::from_secs(60));
    }
}
