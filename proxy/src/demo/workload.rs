//! Where the demo's requests come from: a synthetic multi-cohort workload, or a
//! trace replayed time-compressed. Both produce a time-ordered stream of
//! [`Planned`] requests for the load engine.
//!
//! The synthetic workload is hundreds of users in four cohorts (premium
//! interactive, standard, free casual, free bulk exporters). Each user alternates
//! on and off sessions of exponentially distributed length and, while on, sends
//! Poisson arrivals; rates are set so the long-run total is the requested rate and
//! each cohort sends its share. Users start in their stationary on/off state, so
//! the total rate is right from the first second. Each identifies with an HS256
//! JWT (`sub`, `plan`, `iat`, `exp`) signed once at start.
//!
//! A trace replay sends every logged request at `t_trace / speed` and identifies
//! each log client by `X-Forwarded-For` (the proxy must trust 127.0.0.1 as a
//! forwarding hop). Address clients are sent as they are. Other names are mapped
//! to a stable address in the benchmarking range 198.18.0.0/15 (RFC 2544), so
//! every replayed user takes the same identity path in the proxy and no real
//! address is implied: World Cup integer ids below 131,072 map one-to-one
//! (`198.18.0.0 + id`); host names are hashed into the range, where two names may
//! collide (with 17,506 names, about 1,100 share an address with another).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderName, HeaderValue, Method};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

use super::route::Route;
use crate::trace::{mix64, TraceRecord};

/// Lifetime of the demo's JWTs: one day, far beyond any demo run.
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3_600);

/// Methods a trace replay sends as logged; any other is sent as `GET`.
const REPLAYED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
];

/// Size of the 198.18.0.0/15 benchmarking range.
const BENCH_RANGE_SIZE: u32 = 1 << 17;

/// One request to send.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// Dense user index, from 0.
    pub user: u32,
    /// The header identifying the user (`authorization` or `x-forwarded-for`).
    pub identity: (HeaderName, HeaderValue),
    /// The request method.
    pub method: Method,
    /// The path and query.
    pub path: Arc<str>,
    /// A User-Agent to send, when the trace logged one.
    pub user_agent: Option<HeaderValue>,
}

/// A time-ordered stream of requests; offsets are from the start of the run.
pub(crate) trait Source: Send {
    /// The next request and when to send it; `None` when the workload is exhausted.
    fn next_request(&mut self) -> Option<(Duration, Planned)>;
}

/// A small deterministic generator (SplitMix64); the root package has no `rand`.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 uniformly distributed bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean.
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }

    /// An index drawn with probability proportional to its weight (`weights` non-empty).
    fn pick(&mut self, weights: &[(Route, f64)]) -> Route {
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let mut x = self.unit() * total;
        for &(route, weight) in weights {
            if x <= weight {
                return route;
            }
            x -= weight;
        }
        weights.last().map_or(Route::Page, |w| w.0)
    }
}

/// A group of users with the same plan and behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Cohort {
    /// Name used in user ids (`demo-<name>-<n>`).
    pub name: &'static str,
    /// The `plan` claim of its users' tokens.
    pub plan: &'static str,
    /// Number of users.
    pub users: u32,
    /// Share of all requests this cohort sends, in (0, 1].
    pub share: f64,
    /// Endpoint classes its users request, with relative weights.
    pub mix: &'static [(Route, f64)],
    /// Mean length of an active session, in seconds.
    pub on_mean_s: f64,
    /// Mean pause between sessions, in seconds.
    pub off_mean_s: f64,
}

/// The synthetic population: 40 premium, 200 standard and 60 free users, 10 of
/// the free ones running bulk exports.
pub const COHORTS: [Cohort; 4] = [
    Cohort {
        name: "premium",
        plan: "premium",
        users: 40,
        share: 0.25,
        // Interactive: mostly cheap reads, some searches. About a quarter of
        // the app's work, so premium alone fits well within capacity even
        // when the whole population offers twice what the app can do.
        mix: &[(Route::Read, 0.85), (Route::Search, 0.15)],
        on_mean_s: 30.0,
        off_mean_s: 15.0,
    },
    Cohort {
        name: "standard",
        plan: "standard",
        users: 200,
        share: 0.55,
        mix: &[
            (Route::Read, 0.35),
            (Route::Search, 0.10),
            (Route::Static, 0.35),
            (Route::Page, 0.20),
        ],
        on_mean_s: 20.0,
        off_mean_s: 20.0,
    },
    Cohort {
        name: "free",
        plan: "free",
        users: 50,
        share: 0.15,
        mix: &[(Route::Read, 0.3), (Route::Static, 0.4), (Route::Page, 0.3)],
        on_mean_s: 10.0,
        off_mean_s: 30.0,
    },
    Cohort {
        name: "bulk",
        plan: "free",
        users: 10,
        share: 0.05,
        mix: &[(Route::Export, 0.25), (Route::Read, 0.75)],
        on_mean_s: 60.0,
        off_mean_s: 30.0,
    },
];

/// The long-run share of requests per endpoint class that [`COHORTS`] send.
pub fn synthetic_mix() -> Vec<(Route, f64)> {
    let mut mix: Vec<(Route, f64)> = Vec::new();
    for cohort in &COHORTS {
        let total: f64 = cohort.mix.iter().map(|w| w.1).sum();
        for &(route, weight) in cohort.mix {
            let share = cohort.share * weight / total;
            match mix.iter_mut().find(|(r, _)| *r == route) {
                Some(entry) => entry.1 += share,
                None => mix.push((route, share)),
            }
        }
    }
    mix
}

/// The claims of a demo token.
#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    plan: &'a str,
    iat: u64,
    exp: u64,
}

/// One synthetic user's session state.
struct SyntheticUser {
    cohort: usize,
    identity: HeaderValue,
    /// Arrivals per microsecond while in a session.
    rate_per_us: f64,
    /// End of the current (or next) session, in microseconds from the start.
    session_end_us: f64,
}

/// The synthetic multi-cohort workload.
pub(crate) struct SyntheticSource {
    rng: Rng,
    users: Vec<SyntheticUser>,
    due: BinaryHeap<Reverse<(u64, u32)>>,
}

impl SyntheticSource {
    /// A workload sending `total_rps` requests/s in the long run, with tokens
    /// signed by `secret`. Fails only if signing fails.
    pub(crate) fn new(
        total_rps: f64,
        secret: &[u8],
        seed: u64,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut rng = Rng::new(seed);
        let key = EncodingKey::from_secret(secret);
        let header = Header::new(Algorithm::HS256);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut users = Vec::new();
        let mut due = BinaryHeap::new();
        for (index, cohort) in COHORTS.iter().enumerate() {
            let on_fraction = cohort.on_mean_s / (cohort.on_mean_s + cohort.off_mean_s);
            let user_rps = total_rps.max(0.0) * cohort.share / f64::from(cohort.users);
            for n in 0..cohort.users {
                let sub = format!("demo-{}-{n}", cohort.name);
                let claims = Claims {
                    sub: &sub,
                    plan: cohort.plan,
                    iat: now,
                    exp: now + TOKEN_LIFETIME.as_secs(),
                };
                let token = encode(&header, &claims, &key)?;
                let identity = HeaderValue::try_from(format!("Bearer {token}"))
                    .expect("a JWT is base64url and dots, valid in a header");
                let mut user = SyntheticUser {
                    cohort: index,
                    identity,
                    rate_per_us: user_rps / on_fraction / 1e6,
                    session_end_us: 0.0,
                };

                // Start in the stationary state: in a session with probability
                // `on_fraction` (the rest of it is exponential too), else paused.
                let first = if rng.unit() <= on_fraction {
                    user.session_end_us = rng.exp(cohort.on_mean_s * 1e6);
                    advance(&mut rng, &mut user, cohort, 0.0)
                } else {
                    let resume = rng.exp(cohort.off_mean_s * 1e6);
                    user.session_end_us = resume + rng.exp(cohort.on_mean_s * 1e6);
                    advance(&mut rng, &mut user, cohort, resume)
                };
                let id = u32::try_from(users.len()).expect("a few hundred users");
                if let Some(at) = first {
                    due.push(Reverse((at, id)));
                }
                users.push(user);
            }
        }
        Ok(Self { rng, users, due })
    }
}

/// The user's next arrival after `from_us`, skipping pauses between sessions;
/// `None` when the user never sends (a zero rate).
fn advance(rng: &mut Rng, user: &mut SyntheticUser, cohort: &Cohort, from_us: f64) -> Option<u64> {
    if user.rate_per_us <= 0.0 || !user.rate_per_us.is_finite() {
        return None;
    }
    let mut t = from_us + rng.exp(1.0 / user.rate_per_us);
    while t >= user.session_end_us {
        // The session ended first: pause, start a new one, draw afresh from its
        // start (arrivals are memoryless, so this is exact).
        let resume = user.session_end_us + rng.exp(cohort.off_mean_s * 1e6);
        user.session_end_us = resume + rng.exp(cohort.on_mean_s * 1e6);
        t = resume + rng.exp(1.0 / user.rate_per_us);
    }
    Some(t as u64)
}

impl Source for SyntheticSource {
    fn next_request(&mut self) -> Option<(Duration, Planned)> {
        let Reverse((at_us, id)) = self.due.pop()?;
        let index = usize::try_from(id).expect("u32 fits usize");
        let cohort = &COHORTS[self.users[index].cohort];
        let route = self.rng.pick(cohort.mix);
        let path: Arc<str> = Arc::from(route.example_path(self.rng.next_u64() % 100_000));
        let user = &mut self.users[index];
        if let Some(next) = advance(&mut self.rng, user, cohort, at_us as f64) {
            self.due.push(Reverse((next, id)));
        }
        let method = if route == Route::Export {
            Method::POST
        } else {
            Method::GET
        };
        let planned = Planned {
            user: id,
            identity: (header::AUTHORIZATION, user.identity.clone()),
            method,
            path,
            user_agent: None,
        };
        Some((Duration::from_micros(at_us), planned))
    }
}

/// A trace replayed at `t_trace / speed`, each log client as one user.
pub(crate) struct TraceSource {
    records: std::vec::IntoIter<TraceRecord>,
    speed: f64,
    users: HashMap<Arc<str>, (u32, HeaderValue)>,
    agents: HashMap<Arc<str>, HeaderValue>,
}

impl TraceSource {
    /// Replays `records` (sorted by `t_ms`) `speed` times faster than logged;
    /// `speed` must be positive and finite.
    pub(crate) fn new(records: Vec<TraceRecord>, speed: f64) -> Self {
        Self {
            records: records.into_iter(),
            speed,
            users: HashMap::new(),
            agents: HashMap::new(),
        }
    }
}

impl Source for TraceSource {
    fn next_request(&mut self) -> Option<(Duration, Planned)> {
        let record = self.records.next()?;
        let next_id = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        let (user, address) = self
            .users
            .entry(Arc::clone(&record.client))
            .or_insert_with(|| {
                let ip = client_address(&record.client).to_string();
                (
                    next_id,
                    HeaderValue::try_from(ip).expect("an IP address is a valid header value"),
                )
            })
            .clone();
        let user_agent = record.user_agent.as_ref().and_then(|agent| {
            if let Some(value) = self.agents.get(agent) {
                return Some(value.clone());
            }
            let value = HeaderValue::from_str(agent).ok()?;
            self.agents.insert(Arc::clone(agent), value.clone());
            Some(value)
        });
        // CONNECT, TRACE and extension methods would not replay meaningfully.
        let method = if REPLAYED_METHODS.contains(&record.method) {
            record.method
        } else {
            Method::GET
        };
        let at_s = record.t_ms as f64 / 1_000.0 / self.speed;
        let at = Duration::try_from_secs_f64(at_s).unwrap_or(Duration::MAX);
        let identity = (HeaderName::from_static("x-forwarded-for"), address);
        Some((
            at,
            Planned {
                user,
                identity,
                method,
                path: record.path,
                user_agent,
            },
        ))
    }
}

/// The address a trace client sends as, per the mapping in the module docs.
pub(crate) fn client_address(client: &str) -> IpAddr {
    if let Ok(ip) = client.parse::<IpAddr>() {
        return ip;
    }
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let offset = match client.parse::<u32>() {
        Ok(id) if id < BENCH_RANGE_SIZE => id,
        _ => {
            let hash = client.bytes().fold(0u64, |h, b| mix64(h ^ u64::from(b)));
            u32::try_from(hash % u64::from(BENCH_RANGE_SIZE)).expect("below 2^17")
        }
    };
    IpAddr::V4(Ipv4Addr::from(base + offset))
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
