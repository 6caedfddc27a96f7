use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::stress::{hammer_until_collision, Load};

fn window(bucket_ms: u64, buckets: u32) -> Window {
    Window::new(WindowShape::new(bucket_ms, buckets).expect("test shapes are valid"))
}

#[test]
fn shape_rejects_zero_width_and_bad_counts() {
    assert_eq!(WindowShape::new(0, 10), Err(WindowError::ZeroBucketWidth));
    assert!(matches!(
        WindowShape::new(1_000, 0),
        Err(WindowError::BucketCount { .. })
    ));
    assert!(matches!(
        WindowShape::new(1_000, 10_001),
        Err(WindowError::BucketCount { .. })
    ));
    assert_eq!(
        WindowError::ZeroBucketWidth.to_string(),
        "bucket width must be at least 1 ms, got 0"
    );
    assert!(WindowShape::new(1, WindowShape::MAX_BUCKETS).is_ok());
}

#[test]
fn adds_in_one_bucket_sum_up() {
    let w = window(1_000, 60);
    assert!(w.add(5_000, 3));
    assert!(w.add(5_999, 4));
    assert_eq!(w.sum(5_999), 7);
    assert_eq!(w.count_in(5), 7);
    assert!(w.add(5_500, 0), "adding zero is a no-op that succeeds");
    assert_eq!(w.sum(5_999), 7);
}

#[test]
fn window_rolls_over_and_forgets_buckets_older_than_the_window() {
    let w = window(1_000, 3);
    w.add(0, 1); // period 0
    w.add(1_000, 10); // period 1
    w.add(2_000, 100); // period 2
    assert_eq!(w.sum(2_000), 111);
    // Period 3 reuses period 0's slot; period 0 leaves the window.
    assert_eq!(
        w.sum(3_000),
        110,
        "period 0 is out of a 3-bucket window at period 3"
    );
    w.add(3_000, 1_000);
    assert_eq!(w.sum(3_000), 1_110);
    assert_eq!(w.count_in(0), 0, "the slot now holds period 3");
    assert_eq!(w.sum(4_500), 1_100);
    assert_eq!(w.sum(5_999), 1_000);
    assert_eq!(w.sum(6_000), 0);
}

#[test]
fn stale_buckets_are_ignored_after_a_long_idle() {
    let w = window(100, 10);
    for t in (0..1_000).step_by(100) {
        w.add(t, 5);
    }
    assert_eq!(w.sum(999), 50);
    // Idle for many laps, then one request: only it counts, although the
    // other nine slots still hold their old counts.
    let later = 1_000_000;
    w.add(later, 1);
    assert_eq!(w.sum(later), 1);
    assert_eq!(
        w.buckets(later).collect::<Vec<_>>(),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
}

#[test]
fn late_add_within_the_window_lands_in_its_own_bucket() {
    let w = window(1_000, 5);
    w.add(10_000, 1); // period 10
    assert!(w.add(8_000, 2), "period 8 is still in the window");
    assert_eq!(w.count_in(8), 2);
    assert_eq!(w.sum(10_000), 3);
    // Reading "in the past" ignores the bucket of period 10.
    assert_eq!(w.sum(8_500), 2);
}

#[test]
fn clock_going_back_more_than_a_window_drops_adds_and_never_panics() {
    let clock = ManualClock::new(100_000);
    let w = window(1_000, 5);
    w.add(clock.now_ms(), 7); // period 100, slot 0
    clock.set_ms(95_000); // period 95, also slot 0, and older
    assert!(
        !w.add(clock.now_ms(), 1),
        "an older period must not overwrite a newer one"
    );
    assert_eq!(
        w.sum(clock.now_ms()),
        0,
        "the newer bucket is in the future here"
    );
    assert!(
        w.add(96_000, 1),
        "a slot holding nothing newer accepts the late add"
    );
    assert_eq!(
        w.sum(100_000),
        8,
        "the newest bucket survived and period 96 is in the window"
    );
    for t in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
        w.add(t, 1);
        let _ = w.sum(t);
        let _ = w.rate_per_sec(t);
        assert_eq!(w.buckets(t).count(), 5);
    }
}

#[test]
fn rate_is_the_sum_over_the_covered_time() {
    let w = window(1_000, 10);
    for second in 0..20 {
        w.add(second * 1_000, 50);
    }
    // At 19.999 s the window covers periods 10..=19: 10 s of history.
    assert_eq!(w.shape().covered_ms(19_999), 10_000);
    assert!((w.rate_per_sec(19_999) - 50.0).abs() < 1e-9);
    // Early on, only the time since 0 is covered.
    let fresh = window(1_000, 10);
    fresh.add(1_999, 10);
    assert_eq!(fresh.shape().covered_ms(1_999), 2_000);
    assert!((fresh.rate_per_sec(1_999) - 5.0).abs() < 1e-9);
    assert_eq!(window(1_000, 10).rate_per_sec(123), 0.0);
}

#[test]
fn buckets_iterate_oldest_to_newest() {
    let w = window(10, 4);
    w.add(100, 1); // period 10
    w.add(120, 3); // period 12
    w.add(135, 4); // period 13
    assert_eq!(w.buckets(135).collect::<Vec<_>>(), [1, 0, 3, 4]);
    assert_eq!(
        w.buckets(15).collect::<Vec<_>>(),
        [0, 0, 0, 0],
        "periods before 0 read as 0"
    );
}

#[test]
fn bucket_counts_saturate_instead_of_wrapping() {
    let w = window(1_000, 2);
    let max = u64::from(w.shape().max_count());
    assert_eq!(max, 1_048_575, "12 tag bits leave 20 for the count");
    w.add(0, max - 1);
    w.add(0, 10);
    assert_eq!(w.sum(0), max);
    w.add(0, u64::MAX);
    assert_eq!(w.sum(0), max);
    assert_eq!(w.sum(1_000), max, "the neighbouring bucket is untouched");
}

#[test]
fn tag_bits_grow_with_the_bucket_count() {
    let max_count = |buckets| WindowShape::new(1, buckets).unwrap().max_count();
    assert_eq!(max_count(1), 1_048_575);
    assert_eq!(max_count(1_024), 1_048_575);
    assert_eq!(max_count(1_025), 524_287);
    assert_eq!(max_count(WindowShape::MAX_BUCKETS), 65_535);
}

#[test]
fn sparse_user_never_sees_a_bucket_from_a_lap_of_the_short_tag_ago() {
    // 60 buckets use 12-bit tags: periods 4 096 apart share a tag. A user
    // who comes back every 30 periods only ever touches two slots; the
    // others must not come back to life when the tag wraps.
    let w = window(1, 60);
    let mut adds = vec![(5, 7)];
    w.add(5, 7); // slot 5, tag 5
    for lap in 1..=300_u64 {
        let now = lap * 30;
        w.add(now, 1);
        adds.push((now, 1));
        assert_eq!(w.sum(now), expected_sum(&adds, w.shape(), now), "at {now}");
        assert_eq!(w.sum(now + 1), expected_sum(&adds, w.shape(), now + 1));
    }
    // 4 101 = 5 + 4 096 has period 5's tag.
    assert_eq!(w.count_in(4_101), 0);
    assert_eq!(w.count_in(5), 0, "period 5 is long out of the window");
}

#[test]
fn a_user_idle_for_many_laps_reads_empty_and_restarts_clean() {
    for idle in [100, 1_000, 1_987, 1_988, 4_096, 40_960] {
        let w = window(1_000, 60);
        for s in 0..60 {
            w.add(s * 1_000, 3);
        }
        assert_eq!(w.sum(59_000), 180);
        // Idle, up to exact laps of the tag: nothing may alias.
        let back = (59 + idle) * 1_000;
        assert_eq!(w.sum(back), 0, "after {idle} idle periods");
        assert_eq!(w.buckets(back).sum::<u64>(), 0);
        w.add(back, 1);
        assert_eq!(w.sum(back), 1, "only the new add counts after {idle}");
        assert_eq!(w.buckets(back).sum::<u64>(), 1);
    }
}

#[test]
fn concurrent_adds_across_bucket_boundaries_are_exact() {
    // 8 x 100k adds on one window; time crosses ~60 boundaries, all within
    // one window, so every add must be in the sum.
    let load = Load {
        threads: 8,
        per_thread: 100_000,
        records_per_tick: 13_000,
    };
    let collisions = hammer_until_collision(
        load,
        || window(1, 64),
        |w, now| w.add(now, 1),
        |w, run| {
            assert!(
                run.now >= 1,
                "the clock must have crossed at least one boundary"
            );
            assert_eq!(
                run.counted.iter().sum::<u64>(),
                800_000,
                "no drops without a lap"
            );
            assert_eq!(w.sum(run.now), 800_000);
            0
        },
    );
    assert!(
        collisions > 0,
        "the threads never collided: the test proved nothing"
    );
}

#[test]
fn concurrent_adds_over_many_laps_match_per_period_tallies() {
    // 8 buckets, ~400 boundaries: each slot is reused ~50 times while
    // threads race. Each in-window bucket must hold exactly what was counted
    // into its period.
    let load = Load {
        threads: 8,
        per_thread: 100_000,
        records_per_tick: 2_000,
    };
    let collisions = hammer_until_collision(
        load,
        || window(1, 8),
        |w, now| w.add(now, 1),
        |w, run| {
            assert!(
                run.now >= 8,
                "the clock must have lapped the ring, got {}",
                run.now
            );
            let expected: Vec<u64> = (0..8)
                .rev()
                .map(|age| {
                    run.now
                        .checked_sub(age)
                        .map_or(0, |p| run.counted[p as usize])
                })
                .collect();
            assert_eq!(w.buckets(run.now).collect::<Vec<_>>(), expected);
            assert_eq!(w.sum(run.now), expected.iter().sum::<u64>());
            0
        },
    );
    assert!(
        collisions > 0,
        "the threads never collided: the test proved nothing"
    );
}

#[test]
fn concurrent_reader_never_sees_more_than_was_added() {
    let clock = Arc::new(ManualClock::new(0));
    let w = Arc::new(window(1, 16));
    let started = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (clock, w, started) = (clock.clone(), w.clone(), started.clone());
            thread::spawn(move || {
                for i in 0..50_000_u64 {
                    if i % 5_000 == 0 {
                        clock.advance(1);
                    }
                    started.fetch_add(1, Ordering::SeqCst);
                    w.add(clock.now_ms(), 1);
                }
            })
        })
        .collect();
    for _ in 0..2_000 {
        let sum = w.sum(clock.now_ms());
        let added = started.load(Ordering::SeqCst);
        assert!(sum <= added, "sum {sum} exceeds the {added} adds started");
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

/// What the window must hold, kept as a plain list of every add.
fn expected_sum(adds: &[(u64, u64)], shape: WindowShape, now: u64) -> u64 {
    let newest = shape.period(now);
    adds.iter()
        .filter(|&&(t, _)| {
            let p = shape.period(t);
            p <= newest && newest - p < u64::from(shape.buckets())
        })
        .map(|&(_, n)| n)
        .sum()
}

proptest! {
    #[test]
    fn monotone_adds_sum_to_the_adds_of_the_last_n_periods(
        bucket_ms in 1_u64..200,
        buckets in 1_u32..24,
        start in 0_u64..10_000_000,
        steps in prop::collection::vec((0_u64..400, 0_u64..1_000), 1..120),
    ) {
        let shape = WindowShape::new(bucket_ms, buckets).unwrap();
        let w = Window::new(shape);
        let mut adds = Vec::new();
        let mut now = start;
        for (gap, n) in steps {
            now += gap;
            prop_assert!(w.add(now, n), "a monotone add is never dropped");
            adds.push((now, n));
            prop_assert_eq!(w.sum(now), expected_sum(&adds, shape, now));
            let newest = shape.period(now);
            let expected: Vec<u64> = (0..u64::from(buckets)).rev().map(|age| {
                adds.iter()
                    .filter(|&&(t, _)| newest.checked_sub(age) == Some(shape.period(t)))
                    .map(|&(_, n)| n)
                    .sum()
            }).collect();
            prop_assert_eq!(w.buckets(now).collect::<Vec<_>>(), expected);
        }
        // Reading later only ever forgets.
        let total: u64 = adds.iter().map(|&(_, n)| n).sum();
        for later in [now, now + bucket_ms, now + shape.span_ms()] {
            prop_assert!(w.sum(later) <= total);
            prop_assert_eq!(w.sum(later), expected_sum(&adds, shape, later));
        }
    }

    #[test]
    fn out_of_order_adds_follow_the_slot_rule_and_never_exceed_the_adds(
        bucket_ms in 1_u64..50,
        buckets in 1_u32..12,
        ops in prop::collection::vec((0_u64..5_000, 0_u64..100), 1..150),
    ) {
        let shape = WindowShape::new(bucket_ms, buckets).unwrap();
        let w = Window::new(shape);
        // Model with full periods: slot i holds (period, count); `newest` is
        // the newest period counted.
        let mut model = vec![(0_u64, 0_u64); buckets as usize];
        let mut newest = 0_u64;
        let mut total = 0;
        for (t, n) in ops {
            let p = shape.period(t);
            let n_buckets = u64::from(buckets);
            if n != 0 && p > newest {
                for q in (newest + 1).max(p.saturating_sub(n_buckets - 1))..p {
                    let skipped = &mut model[shape.slot(q)];
                    if skipped.0 != q {
                        *skipped = (0, 0);
                    }
                }
                newest = p;
            }
            let slot = &mut model[shape.slot(p)];
            let accepted = if n == 0 {
                true
            } else if newest - p >= n_buckets {
                false
            } else if slot.1 != 0 && slot.0 == p {
                slot.1 += n;
                true
            } else if slot.1 != 0 && slot.0 > p {
                false
            } else {
                *slot = (p, n);
                true
            };
            prop_assert_eq!(w.add(t, n), accepted);
            if accepted {
                total += n;
            }
            let expected: u64 = model.iter()
                .filter(|&&(sp, c)| c != 0 && sp <= p && p - sp < u64::from(buckets))
                .map(|&(_, c)| c)
                .sum();
            prop_assert_eq!(w.sum(t), expected);
            prop_assert!(w.sum(t) <= total);
        }
    }

    #[test]
    fn any_times_at_all_never_panic_and_never_exceed_the_adds(
        bucket_ms in 1_u64..u64::MAX,
        buckets in 1_u32..64,
        ops in prop::collection::vec((any::<u64>(), 0_u64..1_000, any::<u64>()), 1..64),
    ) {
        let w = Window::new(WindowShape::new(bucket_ms, buckets).unwrap());
        let mut total = 0;
        for (t, n, read_at) in ops {
            if w.add(t, n) {
                total += n;
            }
            prop_assert!(w.sum(read_at) <= total);
            prop_assert!(w.rate_per_sec(read_at).is_finite());
            prop_assert_eq!(w.buckets(read_at).count(), buckets as usize);
        }
    }
}
