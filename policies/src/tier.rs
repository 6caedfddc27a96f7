//! Service tiers and the header values that describe them.
//!
//! A tier is a quota (a sustained rate and a burst) plus the scheduling
//! hints the admission stage uses (priority, weight). Everything a response
//! needs to say about a tier is computed here once, when the policy is
//! compiled, so the hot path copies prepared bytes instead of formatting:
//! the tier name for `x-headroom-tier` and the whole `RateLimit-Policy`
//! value. Only the per-request `RateLimit` value (remaining units, seconds to
//! reset) is written per request, into a fixed stack buffer.
//!
//! Header syntax follows the IETF httpapi rate-limit headers draft
//! (draft-ietf-httpapi-ratelimit-headers, revisions 08 to 10):
//! `RateLimit-Policy: "premium";q=100;w=2` and
//! `RateLimit: "premium";r=42;t=1`.
//!
//! Choosing the window `w`: GCRA has no fixed window, so the policy
//! advertises the burst as the quota (`q = burst`) over the time an empty
//! bucket takes to refill completely, `w = ceil(burst / rate)` seconds, at
//! least 1. A client that spends `q` units at the start of every `w`-second
//! window is never limited, because the bucket is full again after
//! `burst / rate <= w` seconds. Rounding `w` up can only understate the
//! real allowance (`q / w <= rate`), never promise more than is enforced.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;

use crate::limiter::Verdict;

/// Longest tier name accepted, in bytes; keeps every `RateLimit` value
/// within [`RateLimitValue`]'s fixed buffer.
pub const MAX_TIER_NAME_LEN: usize = 64;

/// Most tiers one policy may hold; a [`TierId`] is one byte. Tier names are
/// also metric label values, so the set must stay small anyway.
pub const MAX_TIERS: usize = 256;

/// Longest refill time (`burst / rate`) accepted: 100 years, in
/// nanoseconds. Keeps every sum of governor's u64 nanosecond times far from
/// overflow.
const MAX_REFILL_NANOS: u128 = 100 * 365 * 24 * 3600 * 1_000_000_000;

/// Errors building a tier from its configured values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TierError {
    /// The name is empty, too long, or has a byte outside `[a-z0-9_-]`.
    #[error("tier name {name:?} is invalid: expected 1 to 64 characters of [a-z0-9_-]")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The rate is not a finite positive number, or so high that one
    /// token would take less than a nanosecond.
    #[error("tier {name:?}: requests_per_second must be finite and in (0, 1e9], got {rate}")]
    InvalidRate {
        /// The tier's name.
        name: String,
        /// The rejected rate, in requests per second.
        rate: f64,
    },
    /// An empty bucket would take longer than 100 years to refill; such
    /// quotas overflow the limiter's nanosecond arithmetic.
    #[error("tier {name:?}: burst / requests_per_second must be at most 100 years, got {secs} s")]
    RefillTooLong {
        /// The tier's name.
        name: String,
        /// The refill time, in seconds.
        secs: u128,
    },
    /// The burst is zero.
    #[error("tier {name:?}: burst must be at least 1, got 0")]
    ZeroBurst {
        /// The tier's name.
        name: String,
    },
}

/// Index of a tier inside one compiled [`crate::Policy`]; cheap to copy and
/// to store per user.
///
/// An id is only meaningful for the policy that issued it (or a reloaded
/// policy with the same tier list in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TierId(u8);

impl TierId {
    /// Wraps a position in the policy's tier list; `None` past 255.
    pub(crate) fn from_index(index: usize) -> Option<Self> {
        u8::try_from(index).ok().map(TierId)
    }

    /// Position of the tier in the policy's tier list (0-based).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One compiled service tier: its quota, scheduling hints and prepared
/// header values. Immutable once built.
#[derive(Debug, Clone)]
pub struct Tier {
    name: Bytes,
    priority: u16,
    requests_per_second: f64,
    burst: NonZeroU32,
    weight: u32,
    replenish_period: Duration,
    window_secs: u32,
    policy_header: Bytes,
}

impl Tier {
    /// Builds a tier and precomputes its header values.
    ///
    /// `requests_per_second` is the sustained rate (finite, in (0, 1e9]);
    /// the time per token is rounded UP to whole nanoseconds, so the
    /// enforced rate never exceeds the configured one. `burst` is the most
    /// tokens a full bucket holds (>= 1). `priority` (higher is served
    /// first) and `weight` (fair-queue share) are passed through unchanged.
    pub fn new(
        name: &str,
        priority: u16,
        requests_per_second: f64,
        burst: u32,
        weight: u32,
    ) -> Result<Self, TierError> {
        // Names become header and label values: restrict them hard.
        let valid_name = !name.is_empty()
            && name.len() <= MAX_TIER_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(TierError::InvalidName { name: name.into() });
        }
        let burst =
            NonZeroU32::new(burst).ok_or_else(|| TierError::ZeroBurst { name: name.into() })?;

        // Nanoseconds per token, rounded up; reject rates it cannot express.
        let invalid_rate = || TierError::InvalidRate {
            name: name.into(),
            rate: requests_per_second,
        };
        // Written so that NaN fails too.
        let rate_in_range = requests_per_second > 0.0 && requests_per_second <= 1e9;
        if !rate_in_range {
            return Err(invalid_rate());
        }
        let period_nanos = (1e9 / requests_per_second).ceil();
        if !(1.0..=u64::MAX as f64).contains(&period_nanos) {
            return Err(invalid_rate());
        }
        // In range: the cast keeps the value (saturating at the top).
        let replenish_period = Duration::from_nanos(period_nanos as u64);

        // Window: time for an empty bucket to refill, whole seconds, >= 1.
        let refill_nanos = u128::from(burst.get()) * replenish_period.as_nanos();
        if refill_nanos > MAX_REFILL_NANOS {
            return Err(TierError::RefillTooLong {
                name: name.into(),
                secs: refill_nanos / 1_000_000_000,
            });
        }
        let window_secs = u32::try_from(refill_nanos.div_ceil(1_000_000_000))
            .unwrap_or(u32::MAX)
            .max(1);
        let policy_header = format!("\"{name}\";q={};w={window_secs}", burst.get());

        Ok(Self {
            name: Bytes::copy_from_slice(name.as_bytes()),
            priority,
            requests_per_second,
            burst,
            weight,
            replenish_period,
            window_secs,
            policy_header: Bytes::from(policy_header),
        })
    }

    /// The tier's name, e.g. `premium`.
    pub fn name(&self) -> &str {
        // Validated as ASCII in `new`.
        std::str::from_utf8(&self.name).expect("tier names are validated ASCII")
    }

    /// The name as shared bytes for the `x-headroom-tier` header; cloning
    /// is a reference-count bump, no copy.
    pub fn name_header(&self) -> &Bytes {
        &self.name
    }

    /// The complete `RateLimit-Policy` header value, e.g.
    /// `"premium";q=100;w=2`, as shared bytes.
    pub fn ratelimit_policy_header(&self) -> &Bytes {
        &self.policy_header
    }

    /// Scheduling priority: higher is served first when saturated.
    pub fn priority(&self) -> u16 {
        self.priority
    }

    /// Sustained rate as configured, in requests (tokens) per second.
    pub fn requests_per_second(&self) -> f64 {
        self.requests_per_second
    }

    /// Most tokens a full bucket holds.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// Fair-queue weight relative to other tiers.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Time to earn one token back: `1 / requests_per_second`, rounded up
    /// to whole nanoseconds.
    pub fn replenish_period(&self) -> Duration {
        self.replenish_period
    }

    /// The advertised window `w`, in seconds: `ceil(burst / rate)`, >= 1.
    pub fn window_secs(&self) -> u32 {
        self.window_secs
    }

    /// Writes the `RateLimit` header value for `verdict`, e.g.
    /// `"premium";r=0;t=2`: `r` is the units left now, `t` the whole
    /// seconds until the bucket is full again. Allocation-free; fails only
    /// if `out` fails.
    pub fn write_ratelimit(&self, verdict: &Verdict, out: &mut impl fmt::Write) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        out.write_char('"')?;
        out.write_str(self.name())?;
        out.write_str("\";r=")?;
        out.write_str(digits.format(verdict.remaining()))?;
        out.write_str(";t=")?;
        out.write_str(digits.format(verdict.reset_secs()))
    }

    /// The `RateLimit` header value for `verdict` in a stack buffer, ready
    /// to copy into a response header.
    pub fn ratelimit_value(&self, verdict: &Verdict) -> RateLimitValue {
        let mut value = RateLimitValue::default();
        self.write_ratelimit(verdict, &mut value)
            .expect("names are at most 64 bytes, so the value fits in 128");
        value
    }
}

/// A header value built on the stack: at most 128 bytes of ASCII.
#[derive(Clone, Copy)]
pub struct RateLimitValue {
    bytes: [u8; 128],
    len: usize,
}

impl RateLimitValue {
    /// The value written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so this is valid UTF-8.
        std::str::from_utf8(self.as_bytes()).expect("only str slices are appended")
    }

    /// The value written so far, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for RateLimitValue {
    fn default() -> Self {
        Self {
            bytes: [0; 128],
            len: 0,
        }
    }
}

impl fmt::Debug for RateLimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RateLimitValue")
            .field(&self.as_str())
            .finish()
    }
}

impl fmt::Write for RateLimitValue {
    /// Appends `s`; fails without writing anything if it does not fit.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_header_uses_burst_over_refill_time_rounded_up() {
        let premium = Tier::new("premium", 100, 50.0, 100, 8).expect("valid tier");
        assert_eq!(
            &premium.ratelimit_policy_header()[..],
            b"\"premium\";q=100;w=2"
        );

        // 5 tokens at 2/s refill in 2.5 s: advertise 3 s, never less.
        let free = Tier::new("free", 0, 2.0, 5, 1).expect("valid tier");
        assert_eq!(free.window_secs(), 3);
        assert_eq!(&free.ratelimit_policy_header()[..], b"\"free\";q=5;w=3");
    }

    #[test]
    fn window_is_at_least_one_second_for_fast_tiers() {
        let fast = Tier::new("fast", 0, 1000.0, 10, 1).expect("valid tier");
        assert_eq!(fast.window_secs(), 1);
    }

    #[test]
    fn slow_rates_round_the_period_up_so_enforcement_is_never_looser() {
        let third = Tier::new("slow", 0, 3.0, 1, 1).expect("valid tier");
        assert_eq!(third.replenish_period(), Duration::from_nanos(333_333_334));
        let tenth = Tier::new("slower", 0, 0.1, 2, 1).expect("valid tier");
        assert_eq!(tenth.replenish_period(), Duration::from_secs(10));
        assert_eq!(tenth.window_secs(), 20);
    }

    #[test]
    fn bad_names_rates_and_bursts_are_rejected() {
        for name in ["", "Premium", "gold tier", "a\"b", &"x".repeat(65)] {
            assert!(
                matches!(
                    Tier::new(name, 0, 1.0, 1, 1),
                    Err(TierError::InvalidName { .. })
                ),
                "{name:?} accepted"
            );
        }
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e9] {
            assert!(
                matches!(
                    Tier::new("t", 0, rate, 1, 1),
                    Err(TierError::InvalidRate { .. })
                ),
                "{rate} accepted"
            );
        }
        assert!(matches!(
            Tier::new("t", 0, 1e-9, 10, 1),
            Err(TierError::RefillTooLong { .. })
        ));
        assert_eq!(
            Tier::new("t", 0, 1.0, 0, 1).err(),
            Some(TierError::ZeroBurst { name: "t".into() })
        );
    }

    #[test]
    fn ratelimit_value_formats_remaining_and_reset() {
        let tier = Tier::new("standard", 10, 10.0, 20, 2).expect("valid tier");
        let allowed = Verdict::Allowed {
            remaining: 17,
            reset_secs: 1,
        };
        assert_eq!(
            tier.ratelimit_value(&allowed).as_str(),
            "\"standard\";r=17;t=1"
        );
        let limited = Verdict::Limited {
            retry_after_secs: 3,
            remaining: 0,
            reset_secs: 4_294_967_295,
        };
        let mut text = String::new();
        tier.write_ratelimit(&limited, &mut text)
            .expect("string write");
        assert_eq!(text, "\"standard\";r=0;t=4294967295");
    }

    #[test]
    fn longest_name_with_largest_numbers_fits_the_stack_buffer() {
        let name = "n".repeat(MAX_TIER_NAME_LEN);
        let tier = Tier::new(&name, 0, 1e6, u32::MAX, 1).expect("valid tier");
        let verdict = Verdict::Allowed {
            remaining: u32::MAX,
            reset_secs: u32::MAX,
        };
        let value = tier.ratelimit_value(&verdict);
        assert_eq!(value.as_bytes().len(), MAX_TIER_NAME_LEN + 2 + 13 + 13);
    }

    #[test]
    fn stack_buffer_refuses_to_overflow() {
        use fmt::Write as _;
        let mut value = RateLimitValue::default();
        assert!(value.write_str(&"x".repeat(128)).is_ok());
        assert!(value.write_str("y").is_err());
        assert_eq!(value.as_bytes().len(), 128);
    }

    #[test]
    fn tier_ids_fit_in_one_byte() {
        assert_eq!(TierId::from_index(255).map(TierId::index), Some(255));
        assert_eq!(TierId::from_index(256), None);
    }
}
