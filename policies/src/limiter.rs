//! Per-user GCRA rate limiting whose state belongs to the user, not to the
//! limiter.
//!
//! Governor's keyed limiters own a map from key to state. Headroom cannot
//! use that: a user's tier can change between two requests, and a config
//! reload replaces every limiter, yet neither may hand the user a full
//! bucket. So the state (one GCRA theoretical arrival time, TAT) lives in a
//! [`UserBucket`] inside the user's own entry, and each tier's limiter is a
//! governor `RateLimiter` over [`BucketStore`], a state store that keeps
//! nothing and updates the bucket it is handed in place. Any limiter, built
//! from any quota at any time, checks against the same stored TAT, because
//! every limiter measures time from the one epoch of [`LimiterClock`] (see
//! the `clock` module for why that matters).
//!
//! What carries over between tiers is the TAT, i.e. debt measured in time,
//! not a token count. After a downgrade the user keeps the seconds of refill
//! they owe, which may be more or fewer tokens of the new tier; after an
//! upgrade a user who owes more refill time than the new tier's whole
//! bucket (`burst / rate`) waits out the difference. Nothing is ever
//! forgiven or refilled by the switch itself.
//!
//! Known approximations: `remaining` on an allowed request is governor's
//! snapshot at the decision; `reset_secs`, `retry_after_secs` and the
//! `remaining` of a refused request come from a second clock reading and a
//! second load of the bucket just after the decision, so under concurrent
//! requests for the same user they may already include a neighbour's
//! update. The second reading is never earlier than the decision, which
//! keeps `retry_after_secs` from sending a client back too early.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{InsufficientCapacity, Quota, RateLimiter};

use crate::clock::{LimiterClock, TierClock};
use crate::tier::Tier;

/// One user's rate-limit state: the GCRA theoretical arrival time, in
/// nanoseconds since the [`LimiterClock`] epoch (0 = a full bucket).
///
/// Keep one per user, inline in the user's entry, and pass it to
/// [`crate::Policy::check`] on every request; it outlives tier changes and
/// policy reloads. Eight bytes, lock-free.
///
/// Governor requires its keys to be `Hash + Eq + Clone`. This crate's
/// state store never hashes, compares or clones a key: it is handed
/// `&UserBucket` and updates the atomic in place. The impls exist to
/// satisfy the bound and are honest about identity: two buckets are equal only if they are the
/// same bucket (same address), the hash is the address, and a clone is a
/// new, independent bucket that starts with the same debt (and so is a
/// different key).
pub struct UserBucket {
    tat: AtomicU64,
}

impl UserBucket {
    /// A full bucket.
    pub const fn new() -> Self {
        Self {
            tat: AtomicU64::new(0),
        }
    }

    /// The stored TAT in nanoseconds since the limiter epoch.
    pub(crate) fn tat(&self) -> Nanos {
        Nanos::new(self.tat.load(Ordering::Acquire))
    }

    /// Whether the bucket holds its tier's full burst at `now` (nanoseconds
    /// since the epoch), i.e. forgetting it would refill nothing.
    pub(crate) fn is_full_at(&self, now: Nanos) -> bool {
        self.tat() <= now
    }
}

impl Default for UserBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for UserBucket {
    /// A new, independent bucket holding the same debt as `self` now.
    fn clone(&self) -> Self {
        Self {
            tat: AtomicU64::new(self.tat.load(Ordering::Acquire)),
        }
    }
}

impl PartialEq for UserBucket {
    /// Identity: true only for the same bucket.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for UserBucket {}

impl Hash for UserBucket {
    /// Hashes the address, consistent with identity equality.
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state);
    }
}

impl fmt::Debug for UserBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tat = Duration::from_nanos(self.tat.load(Ordering::Relaxed));
        f.debug_struct("UserBucket").field("tat", &tat).finish()
    }
}

/// A governor state store that holds no state: the key *is* the state.
///
/// The update is the usual compare-and-swap loop: read the TAT, let the
/// GCRA decide, and publish the new TAT only if no other request changed
/// it meanwhile; on a lost race decide again from the fresh value. A refused
/// request writes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BucketStore;

impl StateStore for BucketStore {
    type Key = UserBucket;

    fn measure_and_replace<T, F, E>(&self, key: &UserBucket, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // 0 means "never used", which governor spells `None`.
        let as_state = |raw: u64| (raw != 0).then(|| Nanos::new(raw));
        let mut prev = key.tat.load(Ordering::Acquire);
        loop {
            let (result, next) = f(as_state(prev))?;
            // The TAT is the only shared datum: one atomic location, so
            // Acquire/Release only pairs readers with the last writer.
            match key.tat.compare_exchange_weak(
                prev,
                next.as_u64(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(result),
                Err(actual) => prev = actual,
            }
        }
    }
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request conforms; its cost was taken from the bucket.
    Allowed {
        /// Units left after this request.
        remaining: u32,
        /// Whole seconds (rounded up) until the bucket is full again.
        reset_secs: u32,
    },
    /// Not now: the bucket holds fewer units than the cost. Nothing was
    /// taken.
    Limited {
        /// Whole seconds to wait before the same request conforms; rounded
        /// up so the client is never early, and at least 1.
        retry_after_secs: u32,
        /// Units left now; always fewer than the refused cost (0 for a
        /// request of cost 1).
        remaining: u32,
        /// Whole seconds (rounded up) until the bucket is full again.
        reset_secs: u32,
    },
    /// Never under this tier: the cost is larger than the tier's burst, so
    /// no amount of waiting helps. Nothing was taken. Config validation
    /// keeps every route cost within every burst, so this means a cost the
    /// config did not declare.
    CostExceedsBurst {
        /// The refused cost, in units.
        cost: u32,
        /// The tier's burst, the largest cost it can ever admit.
        burst: u32,
        /// Units left now.
        remaining: u32,
        /// Whole seconds (rounded up) until the bucket is full again.
        reset_secs: u32,
    },
}

impl Verdict {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }

    /// Units left in the bucket, for the `RateLimit` header's `r`.
    pub fn remaining(&self) -> u32 {
        match *self {
            Verdict::Allowed { remaining, .. }
            | Verdict::Limited { remaining, .. }
            | Verdict::CostExceedsBurst { remaining, .. } => remaining,
        }
    }

    /// Seconds until the bucket is full, for the `RateLimit` header's `t`.
    pub fn reset_secs(&self) -> u32 {
        match *self {
            Verdict::Allowed { reset_secs, .. }
            | Verdict::Limited { reset_secs, .. }
            | Verdict::CostExceedsBurst { reset_secs, .. } => reset_secs,
        }
    }

    /// The `Retry-After` seconds for a [`Verdict::Limited`] request; `None`
    /// when allowed, and when waiting cannot help (`CostExceedsBurst`).
    pub fn retry_after_secs(&self) -> Option<u32> {
        match *self {
            Verdict::Limited {
                retry_after_secs, ..
            } => Some(retry_after_secs),
            _ => None,
        }
    }
}

type Governor<C> = RateLimiter<UserBucket, BucketStore, TierClock<C>, StateInformationMiddleware>;

/// One tier's GCRA limiter: its quota over the shared time base.
pub(crate) struct TierLimiter<C: Clock + Clone> {
    governor: Governor<C>,
    period_nanos: u64,
    burst: NonZeroU32,
}

impl<C: Clock + Clone> TierLimiter<C> {
    /// Builds the limiter for `tier` on the shared `clock`.
    pub(crate) fn new(tier: &Tier, clock: &LimiterClock<C>) -> Self {
        let quota = Quota::with_period(tier.replenish_period())
            .expect("tiers have a replenish period of at least 1 ns")
            .allow_burst(tier.burst());

        // Governor takes its start from the clock while constructing; the
        // pinned clock makes that start the shared epoch.
        let governor: Governor<C> = RateLimiter::new(quota, BucketStore, clock.pinned());
        governor.clock().unpin();

        Self {
            governor,
            period_nanos: u64::try_from(tier.replenish_period().as_nanos()).unwrap_or(u64::MAX),
            burst: tier.burst(),
        }
    }

    /// Takes `cost` units from `bucket` if they are there now.
    pub(crate) fn check(&self, bucket: &UserBucket, cost: NonZeroU32) -> Verdict {
        // Governor multiplies the cost by the period before comparing it
        // with the burst, which can overflow for huge costs on slow tiers;
        // a cost within the burst keeps the product within the refill time.
        if cost > self.burst {
            return self.cost_exceeds_burst(bucket, cost);
        }
        match self.governor.check_key_n(bucket, cost) {
            Ok(Ok(snapshot)) => Verdict::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
                reset_secs: self.reset_secs(bucket, self.now()),
            },
            Ok(Err(not_until)) => {
                // Measured from a reading taken after the decision, so the
                // wait can only be overstated by the gap, never understated.
                let now = self.now();
                let wait = not_until.wait_time_from(now);
                Verdict::Limited {
                    retry_after_secs: ceil_secs(wait.as_nanos()).max(1),
                    remaining: self.remaining(bucket, now),
                    reset_secs: self.reset_secs(bucket, now),
                }
            }
            Err(InsufficientCapacity(_)) => self.cost_exceeds_burst(bucket, cost),
        }
    }

    /// The verdict for a cost this tier can never admit.
    fn cost_exceeds_burst(&self, bucket: &UserBucket, cost: NonZeroU32) -> Verdict {
        let now = self.now();
        Verdict::CostExceedsBurst {
            cost: cost.get(),
            burst: self.burst.get(),
            remaining: self.remaining(bucket, now),
            reset_secs: self.reset_secs(bucket, now),
        }
    }

    /// Time since the epoch on this limiter's clock.
    pub(crate) fn now(&self) -> Nanos {
        self.governor.clock().now()
    }

    /// Units available at `now`: `min(now + burst*T - tat, burst*T) / T`,
    /// the same arithmetic as governor's snapshot.
    fn remaining(&self, bucket: &UserBucket, now: Nanos) -> u32 {
        let capacity = u128::from(self.burst.get()) * u128::from(self.period_nanos);
        let headroom = (u128::from(now.as_u64()) + capacity)
            .saturating_sub(u128::from(bucket.tat().as_u64()))
            .min(capacity);
        u32::try_from(headroom / u128::from(self.period_nanos)).unwrap_or(u32::MAX)
    }

    /// Whole seconds, rounded up, until the bucket is full at `now`.
    fn reset_secs(&self, bucket: &UserBucket, now: Nanos) -> u32 {
        let debt = bucket.tat().as_u64().saturating_sub(now.as_u64());
        ceil_secs(u128::from(debt))
    }
}

/// Nanoseconds to whole seconds, rounded up, saturating at `u32::MAX`.
fn ceil_secs(nanos: u128) -> u32 {
    u32::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
