//! Tests of the per-user limiter on governor's fake clock: exact GCRA
//! arithmetic, state surviving tier changes and reloads, a concurrent
//! hammer, and property tests of the rate bound.

use super::*;
use governor::clock::{FakeRelativeClock, QuantaClock};
use proptest::prelude::*;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

const NANOS_PER_SEC: u64 = 1_000_000_000;

fn fake_clock() -> LimiterClock<FakeRelativeClock> {
    LimiterClock::new(FakeRelativeClock::default())
}

fn limiter<C: Clock + Clone>(clock: &LimiterClock<C>, rate: f64, burst: u32) -> TierLimiter<C> {
    let tier = Tier::new("t", 0, rate, burst, 1).expect("valid test tier");
    TierLimiter::new(&tier, clock)
}

fn cost(units: u32) -> NonZeroU32 {
    NonZeroU32::new(units).expect("test costs are positive")
}

fn advance(clock: &LimiterClock<FakeRelativeClock>, nanos: u64) {
    clock.inner().advance(Duration::from_nanos(nanos));
}

#[test]
fn request_past_the_burst_is_the_first_one_limited() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 1.0, 5);
    let bucket = UserBucket::new();
    for expected_remaining in (0..5).rev() {
        let verdict = limiter.check(&bucket, cost(1));
        assert!(verdict.is_allowed(), "{verdict:?}");
        assert_eq!(verdict.remaining(), expected_remaining);
    }
    let sixth = limiter.check(&bucket, cost(1));
    assert_eq!(
        sixth,
        Verdict::Limited {
            retry_after_secs: 1,
            remaining: 0,
            reset_secs: 5
        }
    );
}

#[test]
fn reset_counts_the_seconds_until_the_bucket_is_full() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 2.0, 6);
    let bucket = UserBucket::new();
    let first = limiter.check(&bucket, cost(1));
    assert_eq!(
        first,
        Verdict::Allowed {
            remaining: 5,
            reset_secs: 1
        }
    );
    for _ in 0..5 {
        limiter.check(&bucket, cost(1));
    }
    // Six tokens at 2/s: three seconds of debt.
    assert_eq!(limiter.check(&bucket, cost(1)).reset_secs(), 3);
    advance(&clock, 3 * NANOS_PER_SEC);
    assert_eq!(
        limiter.check(&bucket, cost(1)),
        Verdict::Allowed {
            remaining: 5,
            reset_secs: 1
        }
    );
}

#[test]
fn limited_request_conforms_exactly_when_its_wait_has_elapsed() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 1.0, 1);
    let bucket = UserBucket::new();
    assert!(limiter.check(&bucket, cost(1)).is_allowed());
    assert_eq!(limiter.check(&bucket, cost(1)).retry_after_secs(), Some(1));
    advance(&clock, NANOS_PER_SEC - 1);
    assert!(!limiter.check(&bucket, cost(1)).is_allowed());
    advance(&clock, 1);
    assert!(limiter.check(&bucket, cost(1)).is_allowed());
}

#[test]
fn retry_after_rounds_a_fractional_wait_up_to_whole_seconds() {
    // One token per 2.5 s: the wait is 2.5 s, advertised as 3 s.
    let clock = fake_clock();
    let limiter = limiter(&clock, 0.4, 1);
    let bucket = UserBucket::new();
    assert!(limiter.check(&bucket, cost(1)).is_allowed());
    let refused = limiter.check(&bucket, cost(1));
    assert_eq!(refused.retry_after_secs(), Some(3));

    // The true wait ends at 2.5 s; a client obeying 3 s is late, not early.
    advance(&clock, 2_500_000_000 - 1);
    assert!(!limiter.check(&bucket, cost(1)).is_allowed());
    advance(&clock, 1);
    assert!(limiter.check(&bucket, cost(1)).is_allowed());
}

#[test]
fn retry_after_is_at_least_one_second_for_sub_second_waits() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 1000.0, 1);
    let bucket = UserBucket::new();
    assert!(limiter.check(&bucket, cost(1)).is_allowed());
    assert_eq!(limiter.check(&bucket, cost(1)).retry_after_secs(), Some(1));
}

#[test]
fn route_cost_takes_that_many_tokens() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 1.0, 10);
    let bucket = UserBucket::new();
    for expected in [7, 4, 1] {
        assert_eq!(limiter.check(&bucket, cost(3)).remaining(), expected);
    }
    // One token left, three needed: two more seconds.
    assert_eq!(
        limiter.check(&bucket, cost(3)),
        Verdict::Limited {
            retry_after_secs: 2,
            remaining: 1,
            reset_secs: 9
        }
    );
    assert_eq!(limiter.check(&bucket, cost(1)).remaining(), 0);
}

#[test]
fn cost_above_the_burst_is_refused_without_touching_the_bucket() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 1.0, 4);
    let bucket = UserBucket::new();
    assert!(limiter.check(&bucket, cost(1)).is_allowed());
    assert_eq!(
        limiter.check(&bucket, cost(5)),
        Verdict::CostExceedsBurst {
            cost: 5,
            burst: 4,
            remaining: 3,
            reset_secs: 1
        }
    );
    assert_eq!(limiter.check(&bucket, cost(3)).remaining(), 0);
}

#[test]
fn huge_costs_on_slow_tiers_are_refused_without_overflow() {
    // 30 years per token: governor's cost * period would overflow u64.
    let clock = fake_clock();
    let glacial = limiter(&clock, 1.0 / (30.0 * 365.0 * 86_400.0), 2);
    let bucket = UserBucket::new();
    let verdict = glacial.check(&bucket, cost(u32::MAX));
    assert!(
        matches!(verdict, Verdict::CostExceedsBurst { burst: 2, .. }),
        "{verdict:?}"
    );
    assert!(glacial.check(&bucket, cost(2)).is_allowed());
}

#[test]
fn downgrading_a_drained_user_does_not_refill_the_bucket() {
    let clock = fake_clock();
    let premium = limiter(&clock, 10.0, 20);
    let free = limiter(&clock, 1.0, 5);
    let bucket = UserBucket::new();
    for _ in 0..20 {
        assert!(premium.check(&bucket, cost(1)).is_allowed());
    }

    // Two seconds of debt: a fresh free bucket allows 5, this one only 3.
    let allowed = (0..10)
        .take_while(|_| free.check(&bucket, cost(1)).is_allowed())
        .count();
    assert_eq!(allowed, 3);
    let fresh = UserBucket::new();
    let fresh_allowed = (0..10)
        .take_while(|_| free.check(&fresh, cost(1)).is_allowed())
        .count();
    assert_eq!(fresh_allowed, 5);
}

#[test]
fn upgrading_keeps_the_debt_owed_in_time() {
    let clock = fake_clock();
    let free = limiter(&clock, 1.0, 5);
    let premium = limiter(&clock, 10.0, 20);
    let bucket = UserBucket::new();
    for _ in 0..5 {
        free.check(&bucket, cost(1));
    }
    // Five seconds owed; premium admits one token once the debt is within
    // (burst - 1) * T = 1.9 s, so after 3.1 s (advertised as 4).
    assert_eq!(premium.check(&bucket, cost(1)).retry_after_secs(), Some(4));
    advance(&clock, 3_100_000_000 - 1);
    assert!(!premium.check(&bucket, cost(1)).is_allowed());
    advance(&clock, 1);
    assert!(premium.check(&bucket, cost(1)).is_allowed());
}

#[test]
fn limiter_rebuilt_later_keeps_the_debt_of_the_old_one() {
    let clock = fake_clock();
    advance(&clock, 42 * NANOS_PER_SEC);
    let before_reload = limiter(&clock, 1.0, 5);
    let bucket = UserBucket::new();
    for _ in 0..5 {
        before_reload.check(&bucket, cost(1));
    }

    // A reload 1.5 s later builds a new limiter: the bucket is still drained
    // and refills on the same timeline.
    advance(&clock, 1_500_000_000);
    let after_reload = limiter(&clock, 1.0, 5);
    assert_eq!(after_reload.check(&bucket, cost(1)).remaining(), 0);
    assert_eq!(
        after_reload.check(&bucket, cost(1)),
        Verdict::Limited {
            retry_after_secs: 1,
            remaining: 0,
            reset_secs: 5
        }
    );
}

#[test]
fn identical_buckets_are_distinct_keys_and_clones_copy_the_debt() {
    let clock = fake_clock();
    let limiter = limiter(&clock, 1.0, 2);
    let bucket = UserBucket::new();
    limiter.check(&bucket, cost(2));
    let copy = bucket.clone();
    assert_ne!(copy, bucket);
    assert_eq!(bucket, bucket);
    assert_eq!(limiter.check(&copy, cost(1)).retry_after_secs(), Some(1));
    assert!(!bucket.is_full_at(limiter.now()));
    advance(&clock, 2 * NANOS_PER_SEC);
    assert!(bucket.is_full_at(limiter.now()));
}

/// Runs `threads` threads of `checks` single-token checks on one bucket;
/// `tick` is called every 64 checks. Returns the number allowed.
fn hammer<C, F>(limiter: &TierLimiter<C>, threads: usize, checks: usize, tick: F) -> u32
where
    C: Clock + Clone + Send + Sync,
    C::Instant: Send + Sync,
    F: Fn() + Sync,
{
    let bucket = UserBucket::new();
    let allowed = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for i in 0..checks {
                    if limiter.check(&bucket, cost(1)).is_allowed() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    if i % 64 == 63 {
                        tick();
                    }
                }
            });
        }
    });
    allowed.into_inner()
}

#[test]
fn eight_threads_on_one_bucket_never_exceed_burst_plus_rate_times_elapsed() {
    let clock = fake_clock();
    let (rate, burst) = (100u32, 10);
    let limiter = Arc::new(limiter(&clock, f64::from(rate), burst));
    let allowed = hammer(&limiter, 8, 20_000, || advance(&clock, 1_000_000));

    // 8 threads x 312 ticks x 1 ms = 2.496 s => at most 10 + 249 tokens.
    let elapsed = clock.now().as_u64();
    assert_eq!(elapsed, 8 * (20_000 / 64) * 1_000_000);
    let bound = u64::from(burst) + u64::from(rate) * elapsed / NANOS_PER_SEC;
    assert!(u64::from(allowed) <= bound, "{allowed} > {bound}");
    // Demand never stops, so nearly every token is used.
    assert!(
        u64::from(allowed) + u64::from(burst) >= bound,
        "{allowed} << {bound}"
    );
}

#[test]
fn eight_threads_on_real_time_never_exceed_burst_plus_rate_times_elapsed() {
    let clock = LimiterClock::new(QuantaClock::default());
    let (rate, burst) = (20_000u32, 50);
    let limiter = limiter(&clock, f64::from(rate), burst);
    let allowed = hammer(&limiter, 8, 50_000, || {});

    // Elapsed is read after the last decision, so the bound is generous by
    // at most the join time.
    let elapsed = clock.now().as_u64();
    let bound = u64::from(burst) + (u64::from(rate) * elapsed).div_ceil(NANOS_PER_SEC);
    assert!(u64::from(allowed) <= bound, "{allowed} > {bound}");
    assert!(allowed >= burst);
}

/// One step of a generated workload: wait, then ask for some units.
#[derive(Debug, Clone)]
struct Step {
    advance_nanos: u64,
    cost: u32,
    reload: bool,
}

fn steps(max_cost: u32) -> impl Strategy<Value = Vec<Step>> {
    let step = (
        0..3 * NANOS_PER_SEC,
        1..=max_cost,
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(advance_nanos, cost, reload)| Step {
            advance_nanos,
            cost,
            reload,
        });
    proptest::collection::vec(step, 1..150)
}

proptest! {
    #[test]
    fn allowed_units_in_any_span_stay_within_burst_plus_rate_times_span(
        rate in 0.2f64..50.0,
        burst in 1u32..20,
        steps in steps(24),
    ) {
        let clock = fake_clock();
        let limiter = limiter(&clock, rate, burst);
        let period = u128::from(u64::try_from(
            Tier::new("t", 0, rate, burst, 1).expect("valid").replenish_period().as_nanos(),
        ).expect("small period"));
        let bucket = UserBucket::new();
        let mut log = Vec::with_capacity(steps.len());
        for step in &steps {
            advance(&clock, step.advance_nanos);
            let verdict = limiter.check(&bucket, cost(step.cost));
            let taken = if verdict.is_allowed() { step.cost } else { 0 };
            log.push((u128::from(clock.now().as_u64()), u128::from(taken)));
        }

        // Every span [t_i, t_j]: units * T <= burst * T + (t_j - t_i).
        for i in 0..log.len() {
            let mut units = 0;
            for j in i..log.len() {
                units += log[j].1;
                let span = log[j].0 - log[i].0;
                prop_assert!(
                    units * period <= u128::from(burst) * period + span,
                    "{} units in {} ns", units, span
                );
            }
        }
    }

    #[test]
    fn reloading_mid_stream_decides_exactly_like_one_long_lived_limiter(
        steps in steps(6),
    ) {
        let (steady_clock, reload_clock) = (fake_clock(), fake_clock());
        let steady = limiter(&steady_clock, 2.0, 5);
        let mut reloaded = limiter(&reload_clock, 2.0, 5);
        let (steady_bucket, reload_bucket) = (UserBucket::new(), UserBucket::new());
        for step in &steps {
            advance(&steady_clock, step.advance_nanos);
            advance(&reload_clock, step.advance_nanos);
            if step.reload {
                reloaded = limiter(&reload_clock, 2.0, 5);
            }
            prop_assert_eq!(
                steady.check(&steady_bucket, cost(step.cost)),
                reloaded.check(&reload_bucket, cost(step.cost))
            );
        }
    }
}
