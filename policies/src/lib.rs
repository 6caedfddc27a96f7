//! Headroom's policies: tiers, tier rules, route classes and per-user rate
//! limits, compiled from a validated config into a form the proxy's hot
//! path can use without allocating, locking or formatting.
//!
//! The proxy calls, per request:
//! [`Policy::tier_for`] with the identity's [`Attributes`] (the device class
//! from [`classify_user_agent`]), [`Policy::classify`] with the path, then
//! [`Policy::check`] with the user's [`UserBucket`], the tier and the
//! route's cost, and finally copies [`Tier::name_header`],
//! [`Tier::ratelimit_policy_header`] and [`Tier::ratelimit_value`] into the
//! response.
//!
//! Why a separate crate: the decisions are pure functions of (identity,
//! path, bucket state, time, config), so they are tested and benchmarked
//! here on simulated time (governor's `FakeRelativeClock`), with no proxy,
//! socket or real clock involved. The only time source is the governor
//! clock inside [`LimiterClock`].
//!
//! A [`Policy`] is immutable and replaced wholesale on reload. User state
//! (the bucket) is not part of it, and every policy measures time from one
//! process-wide epoch, so neither a reload nor a tier change refills or
//! empties anyone's bucket (see the `clock` and `limiter` modules).

pub mod admission;
mod assignment;
mod clock;
mod device;
mod limiter;
mod policy;
pub mod predictive;
mod routes;
mod rules;
mod tier;

pub use assignment::{Assignment, Cause, NO_RULE};
pub use clock::LimiterClock;
pub use device::{classify_user_agent, DeviceCache, FromUserAgent, SCAN_LIMIT};
pub use headroom_config::{Device, RouteKind, SourceKind};
pub use limiter::{UserBucket, Verdict};
pub use policy::{Policy, PolicyError, Preallocation};
pub use routes::{normalize_path, RouteClass, RouteError, MAX_ROUTES, OTHER_ROUTE};
pub use rules::{Attributes, RuleError};
pub use tier::{RateLimitValue, Tier, TierError, TierId, MAX_TIERS, MAX_TIER_NAME_LEN};
