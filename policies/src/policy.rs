//! The compiled policy: everything the hot path asks about tiers, routes
//! and limits, built once from a validated config.
//!
//! A `Policy` is immutable. On reload the proxy compiles a new one from the
//! new config and swaps it in (arc-swap); requests in flight finish on the
//! old one. Users' [`UserBucket`]s live outside the policy and every policy
//! compiled in the process measures time from the same epoch, so a swap
//! neither refills nor penalises anyone.
//!
//! Compiling re-checks what the hot path relies on (tier names usable as
//! header values, references resolvable, costs non-zero) even though
//! `headroom_config` validates the same things, so a `Policy` is sound
//! whatever config value it is handed.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use headroom_config::Config;

use crate::clock::LimiterClock;
use crate::limiter::{TierLimiter, UserBucket, Verdict};
use crate::routes::{RouteClass, RouteError, Routes};
use crate::rules::{Attributes, RuleError, Rules};
use crate::tier::{Tier, TierError, TierId, MAX_TIERS};

mod shaping;

pub use shaping::Preallocation;

/// Policies compiled so far in this process, for [`Policy::generation`].
static COMPILED: AtomicU64 = AtomicU64::new(0);

/// Errors compiling a config into a [`Policy`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `tiers` is empty.
    #[error("tiers: expected at least one tier, got none")]
    NoTiers,
    /// More tiers than a [`TierId`] can index.
    #[error("tiers: at most {MAX_TIERS} tiers are allowed, got {count}")]
    TooManyTiers {
        /// Tiers in the config.
        count: usize,
    },
    /// Two tiers share a name.
    #[error("tiers: tier name {name:?} is used twice")]
    DuplicateTier {
        /// The repeated name.
        name: String,
    },
    /// A tier's values cannot be compiled.
    #[error("tiers[{index}]: {source}")]
    Tier {
        /// Position of the tier in the config.
        index: usize,
        /// What is wrong with it.
        source: TierError,
    },
    /// `default_tier` or `identity.anonymous.tier` names no tier.
    #[error("{key}: no tier named {name:?}")]
    UnknownTier {
        /// The config key holding the name.
        key: &'static str,
        /// The name it holds.
        name: String,
    },
    /// The route list cannot be compiled.
    #[error("routes: {0}")]
    Route(#[from] RouteError),
    /// The rule list cannot be compiled.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// The compiled, immutable policy. `C` is the governor clock behind the
/// limiters: the default (quanta) clock in production, governor's
/// `FakeRelativeClock` in tests.
pub struct Policy<C: Clock + Clone = DefaultClock> {
    tiers: Box<[Tier]>,
    limiters: Box<[TierLimiter<C>]>,
    rules: Rules,
    routes: Routes,
    default_tier: TierId,
    anonymous_tier: TierId,
    clock: LimiterClock<C>,
    /// 1..=255, different from the previous 254 policies compiled.
    generation: u8,
    /// `tiering.min_dwell`, in seconds.
    min_dwell_s: u64,
    preallocation: Option<Preallocation>,
}

impl Policy<DefaultClock> {
    /// Compiles `cfg` on the process-wide clock ([`LimiterClock::process`]),
    /// so buckets carry over between every policy compiled this way.
    pub fn compile(cfg: &Config) -> Result<Self, PolicyError> {
        Self::compile_with_clock(cfg, LimiterClock::process())
    }
}

impl<C: Clock + Clone> Policy<C> {
    /// Compiles `cfg` on `clock`. Buckets carry over only between policies
    /// compiled on clones of the same [`LimiterClock`].
    pub fn compile_with_clock(cfg: &Config, clock: &LimiterClock<C>) -> Result<Self, PolicyError> {
        let tiers = compile_tiers(&cfg.tiers)?;
        let resolve = |name: &str| {
            let index = tiers.iter().position(|tier| tier.name() == name)?;
            TierId::from_index(index)
        };
        let lookup = |key: &'static str, name: &str| {
            resolve(name).ok_or_else(|| PolicyError::UnknownTier {
                key,
                name: name.into(),
            })
        };
        let default_tier = lookup("default_tier", &cfg.default_tier)?;
        let anonymous_tier = lookup("identity.anonymous.tier", &cfg.identity.anonymous.tier)?;
        let routes = Routes::compile(&cfg.routes)?;
        let route_class = |name: &str| shaping::route_class(&routes, name);
        let rules = Rules::compile(&cfg.rules, resolve, route_class)?;
        let preallocation = cfg
            .preallocate
            .as_ref()
            .map(|p| Preallocation::compile(p, default_tier, route_class))
            .transpose()?;
        let limiters = tiers
            .iter()
            .map(|tier| TierLimiter::new(tier, clock))
            .collect();

        tracing::debug!(
            policy.tiers = tiers.len(),
            policy.rules = rules.len(),
            policy.routes = cfg.routes.len(),
            policy.default_tier = %cfg.default_tier,
            "policy compiled"
        );
        Ok(Self {
            tiers,
            limiters,
            rules,
            routes,
            default_tier,
            anonymous_tier,
            clock: clock.clone(),
            // Relaxed: a counter with no data behind it.
            generation: (COMPILED.fetch_add(1, Ordering::Relaxed) % 255) as u8 + 1,
            min_dwell_s: cfg.tiering.min_dwell.as_secs(),
            preallocation,
        })
    }

    /// All tiers, in config order; a tier's position is its [`TierId`]'s
    /// index.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier `id` names. An id this policy did not issue (one kept
    /// across a reload that shrank the tier list) falls back to the default
    /// tier rather than panicking; ids are only stable across reloads that
    /// keep the tier list, so look the tier up again per request.
    pub fn tier(&self, id: TierId) -> &Tier {
        &self.tiers[self.index_of(id)]
    }

    /// The id of the tier called `name`, if any.
    pub fn tier_by_name(&self, name: &str) -> Option<TierId> {
        let index = self.tiers.iter().position(|tier| tier.name() == name)?;
        TierId::from_index(index)
    }

    /// The tier for identified requests that no rule matches.
    pub fn default_tier(&self) -> TierId {
        self.default_tier
    }

    /// The tier for anonymous requests that no rule matches (the config's
    /// `identity.anonymous.tier`, which defaults to `default_tier`).
    pub fn anonymous_tier(&self) -> TierId {
        self.anonymous_tier
    }

    /// The tier a request earns: the first rule whose conditions all hold,
    /// else [`Self::anonymous_tier`] when `attrs.source` is anonymous and
    /// [`Self::default_tier`] otherwise. Allocation-free.
    pub fn tier_for(&self, attrs: &Attributes<'_>) -> TierId {
        self.rules.first_match(attrs).unwrap_or_else(|| {
            if attrs.source == headroom_config::SourceKind::Anonymous {
                self.anonymous_tier
            } else {
                self.default_tier
            }
        })
    }

    /// The route class of `path` (query string ignored); see
    /// [`RouteClass`]. Allocation-free.
    ///
    /// The path is normalised first the way a backend would route it (see
    /// [`crate::normalize_path`]), so `/%65xport` costs what `/export` does.
    pub fn classify(&self, path: &str) -> RouteClass {
        self.routes.classify(&crate::normalize_path(path))
    }

    /// The name of route class `id` (`"other"` for 0), for metrics and
    /// reports; `None` for an id this policy does not have.
    pub fn route_name(&self, id: u8) -> Option<&str> {
        self.routes.name(id)
    }

    /// Every route class with its name, `"other"` (id 0) first.
    pub fn route_classes(&self) -> impl Iterator<Item = (RouteClass, &str)> {
        self.routes.classes()
    }

    /// Takes `cost` tokens from `bucket` under `tier`'s quota if they are
    /// there now; see [`Verdict`]. Lock-free and allocation-free; never
    /// panics (a cost above the tier's burst gives
    /// [`Verdict::CostExceedsBurst`], an id this policy did not issue is
    /// checked against the default tier).
    pub fn check(&self, bucket: &UserBucket, tier: TierId, cost: NonZeroU32) -> Verdict {
        self.limiters[self.index_of(tier)].check(bucket, cost)
    }

    /// Whether `bucket` is full now under every tier, so dropping the user's
    /// entry would refill nothing: the test an idle-user evictor should
    /// apply before forgetting a user.
    pub fn bucket_is_full(&self, bucket: &UserBucket) -> bool {
        bucket.is_full_at(self.clock.now())
    }

    /// The time base of this policy's limiters.
    pub fn clock(&self) -> &LimiterClock<C> {
        &self.clock
    }

    /// Index of `id` in `tiers`/`limiters`, or of the default tier.
    fn index_of(&self, id: TierId) -> usize {
        if id.index() < self.tiers.len() {
            id.index()
        } else {
            self.default_tier.index()
        }
    }
}

impl<C: Clock + Clone> fmt::Debug for Policy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("tiers", &self.tiers)
            .field("rules", &self.rules)
            .field("routes", &self.routes)
            .field("default_tier", &self.default_tier)
            .field("anonymous_tier", &self.anonymous_tier)
            .finish_non_exhaustive()
    }
}

/// Builds every tier, checking count and name uniqueness.
fn compile_tiers(configured: &[headroom_config::Tier]) -> Result<Box<[Tier]>, PolicyError> {
    if configured.is_empty() {
        return Err(PolicyError::NoTiers);
    }
    if configured.len() > MAX_TIERS {
        return Err(PolicyError::TooManyTiers {
            count: configured.len(),
        });
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(configured.len());
    for (index, tier) in configured.iter().enumerate() {
        if tiers.iter().any(|earlier| earlier.name() == tier.name) {
            return Err(PolicyError::DuplicateTier {
                name: tier.name.clone(),
            });
        }
        let compiled = Tier::new(
            &tier.name,
            tier.priority,
            tier.requests_per_second,
            tier.burst,
            tier.weight,
        )
        .map_err(|source| PolicyError::Tier { index, source })?;
        tiers.push(compiled);
    }
    Ok(tiers.into_boxed_slice())
}

#[cfg(test)]
mod tests;
