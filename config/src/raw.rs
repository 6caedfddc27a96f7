//! The YAML-facing layer: the file's shape, with a source position on every value.
//!
//! These structs mirror the file key for key (`deny_unknown_fields`
//! everywhere, so a misspelt key is an error rather than a silently ignored
//! setting). They deliberately accept loose types: numbers, booleans and
//! durations arrive as [`Scalar`], enums as strings, and almost every field is
//! optional. That moves type and range checks out of serde, which stops at
//! the first problem and cannot name the key, into `validate`, which reports
//! every problem with its key path and position. Defaults are applied there
//! too; each field's default is given on the matching field of the validated
//! types in `schema` and `identity`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::Deserialize as DeriveDeserialize;
use serde_saphyr::Spanned;

mod shaping;

pub(crate) use shaping::{RawHook, RawNextAction, RawPreallocate, RawTiering};

/// An optional value together with where it was written.
pub(crate) type Field<T> = Option<Spanned<T>>;

/// A list whose items each remember where they were written.
pub(crate) type SpannedList<T> = Field<Vec<Spanned<T>>>;

/// Top level of a config file.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Proxy listener, `IP:PORT`. Default `127.0.0.1:8080`.
    #[serde(default)]
    pub listen: Field<String>,
    /// Admin listener, `IP:PORT`. Default `127.0.0.1:9901`.
    #[serde(default)]
    pub admin: Field<String>,
    /// Worker threads, integer >= 1. Default 2.
    #[serde(default)]
    pub threads: Field<Scalar>,
    /// Graceful shutdown period, a duration. Default `5s`.
    #[serde(default)]
    pub grace_period: Field<Scalar>,
    /// Backends. Default none (the command line may supply them).
    #[serde(default)]
    pub upstreams: SpannedList<RawUpstream>,
    /// Backend probing. Defaults per field.
    #[serde(default)]
    pub health_check: Field<RawHealthCheck>,
    /// Backend timeouts and pooling. Defaults per field.
    #[serde(default)]
    pub upstream_timeouts: Field<RawUpstreamTimeouts>,
    /// User identification. Defaults per field.
    #[serde(default)]
    pub identity: Field<RawIdentity>,
    /// Profiler sizing. Defaults per field.
    #[serde(default)]
    pub profiler: Field<RawProfiler>,
    /// Admission control under saturation. Defaults per field.
    #[serde(default)]
    pub admission: Field<RawAdmission>,
    /// Route classes, at most 8. Default none.
    #[serde(default)]
    pub routes: SpannedList<RawRoute>,
    /// Tiers; required, at least one.
    #[serde(default)]
    pub tiers: SpannedList<RawTier>,
    /// Tier rules, first match wins. Default none.
    #[serde(default)]
    pub rules: SpannedList<RawRule>,
    /// Tier when no rule matches; required.
    #[serde(default)]
    pub default_tier: Field<String>,
    /// Admin API access. Defaults per field.
    #[serde(default)]
    pub admin_api: Field<RawAdminApi>,
    /// Declared demand events. Default none.
    #[serde(default)]
    pub events: SpannedList<RawEvent>,
    /// Hysteresis of predictive tiers. Defaults per field.
    #[serde(default)]
    pub tiering: Field<RawTiering>,
    /// Capacity held for users predicted to arrive. Default none (off).
    #[serde(default)]
    pub preallocate: Field<RawPreallocate>,
    /// Named backend groups that tiers can pick with `tiers[].pool`:
    /// pool name -> list of upstreams. Default none.
    #[serde(default)]
    pub upstream_pools: Field<RawPools>,
    /// Backend connection warming ahead of predicted demand. Defaults per field.
    #[serde(default)]
    pub warming: Field<RawWarming>,
}

/// `upstream_pools`: pool name -> its upstream list, in file order.
pub(crate) type RawPools = OrderedMap<Spanned<String>, Spanned<Vec<Spanned<RawUpstream>>>>;

/// `warming`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWarming {
    /// Whether to warm at all. Default false.
    #[serde(default)]
    pub enabled: Field<Scalar>,
    /// Time between warm-up rounds, a duration 100ms..=1h. Default `2s`.
    #[serde(default)]
    pub interval: Field<Scalar>,
    /// How far ahead to look at the forecast, a duration. Default `5m`.
    #[serde(default)]
    pub lead: Field<Scalar>,
    /// Multiplier on the Little's-law concurrency, number in [1, 10]. Default 1.25.
    #[serde(default)]
    pub margin: Field<Scalar>,
    /// Connections kept warm per upstream whatever the forecast, integer. Default 0.
    #[serde(default)]
    pub min_connections_per_upstream: Field<Scalar>,
    /// Most connections warmed per upstream, integer 1..=4096. Default 32.
    #[serde(default)]
    pub max_connections_per_upstream: Field<Scalar>,
    /// Cheap path the warm-up requests fetch. Default `health_check.path`.
    #[serde(default)]
    pub path: Field<String>,
}

/// `admin_api`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminApi {
    /// Operator bearer token, >= 16 bytes, literal or `env:VAR`. Default
    /// null (operator endpoints disabled).
    #[serde(default)]
    pub token: Field<String>,
}

/// One entry of `events`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvent {
    /// Event name, 1 to 128 bytes; required.
    #[serde(default)]
    pub name: Field<String>,
    /// Start, RFC 3339 or Unix ms; required.
    #[serde(default)]
    pub start: Field<Scalar>,
    /// End, RFC 3339 or Unix ms, after `start`; required.
    #[serde(default)]
    pub end: Field<Scalar>,
    /// `all`, `cohort` or `route`. Default `all`.
    #[serde(default)]
    pub scope: Field<String>,
    /// Cohort id 0..=7; with `scope: cohort` only.
    #[serde(default)]
    pub cohort: Field<Scalar>,
    /// Route name; with `scope: route` only.
    #[serde(default)]
    pub route: Field<String>,
    /// Expected multiplier on demand, number in (0, 1000]. Default null (learned).
    #[serde(default)]
    pub multiplier: Field<Scalar>,
}

/// One entry of `upstreams`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    /// Backend `IP:PORT`; required.
    #[serde(default)]
    pub address: Field<String>,
    /// Relative traffic share, integer >= 1. Default 1.
    #[serde(default)]
    pub weight: Field<Scalar>,
}

/// `health_check`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    /// Probe period, a duration; `0s` disables. Default `5s`.
    #[serde(default)]
    pub interval: Field<Scalar>,
    /// Probe timeout, a duration > 0. Default `1s`.
    #[serde(default)]
    pub timeout: Field<Scalar>,
    /// HTTP path to GET, or null for a TCP connect probe. Default null.
    #[serde(default)]
    pub path: Field<String>,
}

/// `upstream_timeouts`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTimeouts {
    /// TCP connect limit, a duration > 0. Default `1s`.
    #[serde(default)]
    pub connect: Field<Scalar>,
    /// Read limit, a duration > 0. Default `30s`.
    #[serde(default)]
    pub read: Field<Scalar>,
    /// Keep-alive idle limit, a duration > 0. Default `60s`.
    #[serde(default)]
    pub idle: Field<Scalar>,
    /// Pooled connections per upstream, integer >= 0. Default 128.
    #[serde(default)]
    pub pool_size: Field<Scalar>,
}

/// `identity`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    /// Hash key, >= 16 bytes, literal or `env:VAR`. Default null (random per start).
    #[serde(default)]
    pub secret: Field<String>,
    /// CIDRs (or bare IPs) of trusted proxies. Default none.
    #[serde(default)]
    pub trusted_proxies: SpannedList<String>,
    /// `x-forwarded-for` or `forwarded`. Default `x-forwarded-for`.
    #[serde(default)]
    pub forwarded_header: Field<String>,
    /// Header with the client's location. Default null.
    #[serde(default)]
    pub location_header: Field<String>,
    /// Ordered identity sources. Default none.
    #[serde(default)]
    pub sources: SpannedList<RawSource>,
    /// Anonymous handling. Defaults per field.
    #[serde(default)]
    pub anonymous: Field<RawAnonymous>,
}

/// One entry of `identity.sources`: a single-key mapping naming the kind.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum RawSource {
    /// `- api_key: {...}` (boxed, like `jwt`, to keep the list small)
    ApiKey(Box<RawApiKey>),
    /// `- jwt: {...}`
    Jwt(Box<RawJwt>),
    /// `- cookie: {...}`
    Cookie(RawCookie),
    /// `- client_ip: {}`
    ClientIp(RawClientIp),
}

/// `api_key` source settings.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    /// Header name. Default `x-api-key`.
    #[serde(default)]
    pub header: Field<String>,
    /// Key table: key -> user and attributes. Default empty.
    #[serde(default)]
    pub keys: Field<OrderedMap<Spanned<String>, Spanned<RawApiKeyEntry>>>,
    /// `reject` or `as_id`. Default `reject`.
    #[serde(default)]
    pub unknown_keys: Field<String>,
}

/// One value of the `api_key.keys` table.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKeyEntry {
    /// User id; required.
    #[serde(default)]
    pub user: Field<String>,
    /// Plan attribute. Default none.
    #[serde(default)]
    pub plan: Field<String>,
    /// Role attribute. Default none.
    #[serde(default)]
    pub role: Field<String>,
}

/// `jwt` source settings.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    /// Header name. Default `authorization`.
    #[serde(default)]
    pub header: Field<String>,
    /// Verification keys; required, at least one.
    #[serde(default)]
    pub keys: SpannedList<RawJwtKey>,
    /// Required issuer. Default none.
    #[serde(default)]
    pub issuer: Field<String>,
    /// Required audience. Default none.
    #[serde(default)]
    pub audience: Field<String>,
    /// Allowed clock skew, a duration. Default `30s`.
    #[serde(default)]
    pub leeway: Field<Scalar>,
    /// User id claim. Default `sub`.
    #[serde(default)]
    pub user_claim: Field<String>,
    /// Plan claim. Default `plan`.
    #[serde(default)]
    pub plan_claim: Field<String>,
    /// Role claim. Default `role`.
    #[serde(default)]
    pub role_claim: Field<String>,
    /// `reject` or `anonymous`. Default `reject`.
    #[serde(default)]
    pub on_invalid: Field<String>,
}

/// One entry of `jwt.keys`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwtKey {
    /// Key id. Default none (matches any token).
    #[serde(default)]
    pub kid: Field<String>,
    /// Algorithm name such as `HS256` or `ES256`; required.
    #[serde(default)]
    pub algorithm: Field<String>,
    /// HMAC secret, literal or `env:VAR`; HS* only.
    #[serde(default)]
    pub secret: Field<String>,
    /// Inline PEM public key; non-HS only.
    #[serde(default)]
    pub public_key_pem: Field<String>,
    /// Path to a PEM public key, relative to the config file; non-HS only.
    #[serde(default)]
    pub public_key_file: Field<String>,
}

/// `cookie` source settings.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCookie {
    /// Cookie name. Default `session`.
    #[serde(default)]
    pub name: Field<String>,
}

/// `client_ip` source settings: none yet, written `client_ip: {}`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientIp {}

/// `identity.anonymous`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnonymous {
    /// `per_ip`, `shared` or `reject`. Default `per_ip`.
    #[serde(default)]
    pub mode: Field<String>,
    /// Tier name. Default null (the default tier).
    #[serde(default)]
    pub tier: Field<String>,
}

/// `profiler`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfiler {
    /// Users tracked at most, integer >= 1. Default 100000.
    #[serde(default)]
    pub max_users: Field<Scalar>,
    /// Forget a user after this long idle, a duration. Default `10m`.
    #[serde(default)]
    pub idle_timeout: Field<Scalar>,
    /// Bucket width, a duration > 0. Default `1s`.
    #[serde(default)]
    pub bucket: Field<Scalar>,
    /// Buckets per window, integer 1..=10000. Default 60.
    #[serde(default)]
    pub buckets: Field<Scalar>,
    /// Pause that ends a session, a duration > 0. Default `30m`.
    #[serde(default)]
    pub session_gap: Field<Scalar>,
    /// Forecast tick (the forecast bucket), a duration >= 1s. Default `1m`.
    #[serde(default)]
    pub forecast_tick: Field<Scalar>,
}

/// One entry of `routes`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    /// Route name; required.
    #[serde(default)]
    pub name: Field<String>,
    /// Path prefix; exactly one of `prefix` and `pattern`.
    #[serde(default)]
    pub prefix: Field<String>,
    /// Path glob with `*` segments; exactly one of `prefix` and `pattern`.
    #[serde(default)]
    pub pattern: Field<String>,
    /// Tokens per request, integer >= 1. Default 1.
    #[serde(default)]
    pub cost: Field<Scalar>,
    /// `interactive` or `batch`. Default `interactive`.
    #[serde(default)]
    pub kind: Field<String>,
}

/// One entry of `tiers`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTier {
    /// Tier name; required.
    #[serde(default)]
    pub name: Field<String>,
    /// Queue priority, integer 0..=1000. Default 0.
    #[serde(default)]
    pub priority: Field<Scalar>,
    /// Tokens per second per user, number > 0; required.
    #[serde(default)]
    pub requests_per_second: Field<Scalar>,
    /// Bucket size in tokens, integer >= 1; required.
    #[serde(default)]
    pub burst: Field<Scalar>,
    /// Fair-queue weight, integer >= 1. Default 1.
    #[serde(default)]
    pub weight: Field<Scalar>,
    /// Longest wait in the admission queue, a duration > 0. Default `1s`.
    #[serde(default)]
    pub max_queue_time: Field<Scalar>,
    /// Guaranteed share of admissions while waiting, number in [0, 1). Default 0.
    #[serde(default)]
    pub min_share: Field<Scalar>,
    /// Pace each response body to at most this many bytes per second,
    /// integer >= 1024. Default none (unpaced).
    #[serde(default)]
    pub bandwidth_bytes_per_second: Field<Scalar>,
    /// `always` or `when_saturated`. Default `when_saturated`.
    #[serde(default)]
    pub bandwidth_when: Field<String>,
    /// Name of an `upstream_pools` entry serving this tier. Default none
    /// (the default `upstreams`).
    #[serde(default)]
    pub pool: Field<String>,
    /// `none` or `default`: where the tier goes when its pool has no healthy
    /// upstream. Default `none` (503).
    #[serde(default)]
    pub pool_fallback: Field<String>,
}

/// `admission`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmission {
    /// Whether to limit concurrency and queue by tier. Default true.
    #[serde(default)]
    pub enabled: Field<Scalar>,
    /// Adapt the limit from latency. Default true.
    #[serde(default)]
    pub adaptive: Field<Scalar>,
    /// Upper bound of in-flight upstream requests, integer >= 1. Default 256.
    #[serde(default)]
    pub max_concurrency: Field<Scalar>,
    /// Lower bound of the adaptive limit, integer >= 1. Default 4.
    #[serde(default)]
    pub min_concurrency: Field<Scalar>,
    /// Starting limit, integer. Default 32.
    #[serde(default)]
    pub initial_concurrency: Field<Scalar>,
    /// Latency multiple over the baseline tolerated before shrinking, > 1. Default 2.
    #[serde(default)]
    pub latency_tolerance: Field<Scalar>,
    /// Waiting requests at most, integer >= 0. Default 1024.
    #[serde(default)]
    pub max_queue: Field<Scalar>,
}

/// One entry of `rules`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    /// Conditions. Default none (matches everything).
    #[serde(default)]
    pub when: Field<RawCondition>,
    /// Tier name; required.
    #[serde(default)]
    pub tier: Field<String>,
}

/// `rules[].when`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCondition {
    /// Plan attribute to match. Default any.
    #[serde(default)]
    pub plan: Field<String>,
    /// Role attribute to match. Default any.
    #[serde(default)]
    pub role: Field<String>,
    /// Location to match. Default any.
    #[serde(default)]
    pub location: Field<String>,
    /// `desktop`, `mobile`, `bot` or `other`. Default any.
    #[serde(default)]
    pub device: Field<String>,
    /// `true` or `false`. Default any.
    #[serde(default)]
    pub authenticated: Field<Scalar>,
    /// Identity source kind. Default any.
    #[serde(default)]
    pub source: Field<String>,
    /// Predicted p90 request rate threshold, number >= 0. Default any.
    #[serde(default)]
    pub predicted_rps_p90_above: Field<Scalar>,
    /// `true` or `false`. Default any.
    #[serde(default)]
    pub latency_sensitive: Field<Scalar>,
    /// Next-action likelihood condition. Default any.
    #[serde(default)]
    pub next_action: Field<RawNextAction>,
}

/// Any single YAML value that is not a list or mapping, typed as the parser
/// inferred it. `validate` decides whether it fits the field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    /// `true` / `false` (YAML 1.2 spellings only: `yes`/`on` arrive as `Str`).
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A float (also what YAML makes of `1e3`).
    Float(f64),
    /// Anything else, including quoted numbers.
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(v) => write!(f, "{v}"),
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::UInt(v) => write!(f, "{v}"),
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::Str(v) => write!(f, "{v:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Builds a [`Scalar`] from whatever the parser saw; lists and mappings are refused.
struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value, not a list or mapping")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(u64::try_from(v).map_or(Scalar::Int(v), Scalar::UInt))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
}

/// A YAML mapping kept as a list of pairs in file order, so duplicate checks
/// and error messages can follow the file. (The parser already rejects
/// literally repeated keys.)
#[derive(Debug)]
pub(crate) struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMapVisitor(std::marker::PhantomData))
    }
}

/// Collects mapping entries in order.
struct OrderedMapVisitor<K, V>(std::marker::PhantomData<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<K, V> {
    type Value = OrderedMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(OrderedMap(entries))
    }
}
