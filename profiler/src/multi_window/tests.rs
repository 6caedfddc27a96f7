use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::stress::{hammer, hammer_until_collision, Load};

/// Two counters of different widths: `a` counts records, `b` adds 2 each.
#[derive(Debug, Default)]
struct Pair {
    a: AtomicU64,
    b: AtomicU32,
}

impl BucketCounters for Pair {
    type Values = (u64, u32);

    fn load(&self) -> (u64, u32) {
        (
            self.a.load(Ordering::Relaxed),
            self.b.load(Ordering::Relaxed),
        )
    }

    fn subtract(&self, values: &(u64, u32)) {
        self.a.fetch_sub(values.0, Ordering::Relaxed);
        self.b.fetch_sub(values.1, Ordering::Relaxed);
    }
}

fn add(pair: &Pair, n: u64) {
    pair.a.fetch_add(n, Ordering::Relaxed);
    pair.b.fetch_add((2 * n) as u32, Ordering::Relaxed);
}

fn window(bucket_ms: u64, buckets: u32) -> MultiWindow<Pair> {
    MultiWindow::new(WindowShape::new(bucket_ms, buckets).expect("test shapes are valid"))
}

fn sum(w: &MultiWindow<Pair>, now: u64) -> (u64, u64) {
    let mut total = (0, 0);
    w.for_each_bucket(now, |_, (a, b)| {
        total.0 += a;
        total.1 += u64::from(b);
    });
    total
}

#[test]
fn counters_share_a_bucket_and_roll_over_together() {
    let w = window(1_000, 3);
    assert!(w.record(0, |c| add(c, 1)));
    assert!(w.record(1_500, |c| add(c, 10)));
    assert!(w.record(2_999, |c| add(c, 100)));
    assert_eq!(sum(&w, 2_999), (111, 222));
    // Period 3 takes period 0's slot: its counters are retired, not mixed in.
    assert!(w.record(3_000, |c| add(c, 1_000)));
    assert_eq!(w.bucket(3), Some((1_000, 2_000)));
    assert_eq!(w.bucket(0), None);
    assert_eq!(sum(&w, 3_000), (1_110, 2_220));
}

#[test]
fn buckets_are_visited_oldest_first_and_stale_ones_skipped() {
    let w = window(10, 4);
    w.record(100, |c| add(c, 1)); // period 10
    w.record(125, |c| add(c, 2)); // period 12
    w.record(130, |c| add(c, 3)); // period 13
    let mut seen = Vec::new();
    w.for_each_bucket(130, |p, (a, _)| seen.push((p, a)));
    assert_eq!(seen, [(10, 1), (12, 2), (13, 3)]);
    // Long idle: every slot holds a period outside the window.
    seen.clear();
    w.for_each_bucket(10_000, |p, (a, _)| seen.push((p, a)));
    assert!(
        seen.is_empty(),
        "stale buckets must be ignored, saw {seen:?}"
    );
}

#[test]
fn clock_going_backwards_never_panics_or_overwrites_newer_buckets() {
    let clock = ManualClock::new(50_000);
    let w = window(1_000, 5);
    w.record(clock.now_ms(), |c| add(c, 4)); // period 50, slot 0
    clock.set_ms(45_000); // period 45, slot 0: older than what it holds
    assert!(!w.record(clock.now_ms(), |c| add(c, 1)));
    assert_eq!(
        sum(&w, clock.now_ms()),
        (0, 0),
        "the future bucket is not in this window"
    );
    assert!(
        w.record(47_000, |c| add(c, 2)),
        "a slot holding nothing newer takes it"
    );
    assert_eq!(sum(&w, 50_000), (6, 12));
    for t in [0, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
        w.record(t, |c| add(c, 1));
        let _ = sum(&w, t);
    }
}

#[test]
fn a_bucket_being_retired_reads_as_absent() {
    let w = window(1_000, 2);
    w.record(0, |c| add(c, 5));
    // Simulate a claimer stalled between its claim and its subtraction.
    w.slots[0].tag.store(2 | RETIRING, Ordering::Release);
    assert_eq!(w.bucket(0), None);
    assert_eq!(w.bucket(2), None);
    assert!(
        w.record(2_000, |c| add(c, 1)),
        "adds for the claimed period go through"
    );
    assert!(
        !w.record(4_000, |c| add(c, 1)),
        "a later period cannot claim a retiring slot"
    );
}

#[test]
fn concurrent_records_within_one_window_are_exact() {
    let load = Load {
        threads: 8,
        per_thread: 100_000,
        records_per_tick: 13_000,
    };
    let w = window(1, 64);
    let run = hammer(load, &|now| w.record(now, |c| add(c, 1)));
    assert!(run.now >= 1, "the clock must have crossed a boundary");
    assert_eq!(
        run.counted.iter().sum::<u64>(),
        800_000,
        "no drops without a lap"
    );
    // No slot was reused, so no record can have raced a rollover.
    assert_eq!(sum(&w, run.now), (800_000, 1_600_000));
}

#[test]
fn concurrent_records_over_many_laps_stay_within_the_documented_bound() {
    // ~32 000 boundaries per run over 8 slots: every slot is claimed ~4 000
    // times while 8 threads record, so claims race each other and records.
    const THREADS: u64 = 8;
    let load = Load {
        threads: THREADS,
        per_thread: 100_000,
        records_per_tick: 25,
    };
    let collisions = hammer_until_collision(
        load,
        || window(1, 8),
        |w, now| w.record(now, |c| add(c, 1)),
        |w, run| {
            assert!(
                run.now >= 8,
                "the clock must have lapped the ring, got {}",
                run.now
            );
            let mut moved = 0;
            for period in run.now.saturating_sub(7)..=run.now {
                let expected = run.counted[period as usize];
                let (a, b) = w.bucket(period).unwrap_or((0, 0));
                // Nothing counted into a period is lost; at most one
                // straddling record per other thread moves in from the
                // previous lap.
                assert!(a >= expected, "period {period}: {a} < {expected} counted");
                assert!(
                    a - expected < THREADS,
                    "period {period}: {a} vs {expected} counted"
                );
                let b = u64::from(b);
                assert!(b >= 2 * expected && b - 2 * expected < 2 * THREADS);
                moved += a - expected;
            }
            // Each moved record raced a rollover.
            moved
        },
    );
    assert!(collisions > 0, "no record ever raced a rollover");
}

#[test]
fn concurrent_reader_never_sees_more_than_was_recorded() {
    let clock = Arc::new(ManualClock::new(0));
    let w = Arc::new(window(1, 16));
    let started = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (clock, w, started) = (clock.clone(), w.clone(), started.clone());
            thread::spawn(move || {
                for i in 0..50_000_u64 {
                    if i % 2_000 == 0 {
                        clock.advance(1);
                    }
                    started.fetch_add(1, Ordering::SeqCst);
                    w.record(clock.now_ms(), |c| add(c, 1));
                }
            })
        })
        .collect();
    for _ in 0..2_000 {
        let (a, _) = sum(&w, clock.now_ms());
        let recorded = started.load(Ordering::SeqCst);
        assert!(
            a <= recorded,
            "read {a} with only {recorded} records started"
        );
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

proptest! {
    #[test]
    fn monotone_records_sum_to_the_records_of_the_last_n_periods(
        bucket_ms in 1_u64..200,
        buckets in 1_u32..24,
        start in 0_u64..10_000_000,
        steps in prop::collection::vec((0_u64..400, 0_u64..1_000), 1..120),
    ) {
        let shape = WindowShape::new(bucket_ms, buckets).unwrap();
        let w = MultiWindow::<Pair>::new(shape);
        let mut records = Vec::new();
        let mut now = start;
        for (gap, n) in steps {
            now += gap;
            prop_assert!(w.record(now, |c| add(c, n)));
            records.push((shape.period(now), n));
            for read_at in [now, now + bucket_ms, now + shape.span_ms()] {
                let newest = shape.period(read_at);
                let expected: u64 = records.iter()
                    .filter(|&&(p, _)| newest - p < u64::from(buckets))
                    .map(|&(_, n)| n)
                    .sum();
                prop_assert_eq!(sum(&w, read_at), (expected, 2 * expected));
            }
        }
    }

    #[test]
    fn any_times_at_all_never_panic_and_never_exceed_the_records(
        bucket_ms in 1_u64..u64::MAX,
        buckets in 1_u32..32,
        ops in prop::collection::vec((any::<u64>(), 0_u64..1_000, any::<u64>()), 1..64),
    ) {
        let w = MultiWindow::<Pair>::new(WindowShape::new(bucket_ms, buckets).unwrap());
        let mut total = 0;
        for (t, n, read_at) in ops {
            if w.record(t, |c| add(c, n)) {
                total += n;
            }
            let (a, b) = sum(&w, read_at);
            prop_assert!(a <= total);
            prop_assert_eq!(b, 2 * a);
        }
    }
}
