//! Test-only harness: many threads recording into one window while another
//! thread moves a shared clock across bucket boundaries.
//!
//! On a busy machine with few cores, eight threads can run one after the
//! other without ever touching the window at the same instant, and a stress
//! test that never collides proves nothing. The windows therefore count, per
//! thread and in test builds only, the times a thread ran into another
//! thread's unfinished update ([`note_collision`]: a lost compare-and-swap,
//! or an add into a bucket another thread was still rolling over), and
//! [`hammer_until_collision`] repeats a run (each one checked) until at least
//! one collision has happened, within a time bound.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::{Clock, ManualClock};

thread_local! {
    /// Times this thread ran into another thread's unfinished update.
    static COLLISIONS: Cell<u64> = const { Cell::new(0) };
}

/// Called by the windows (in test builds only) when a thread runs into
/// another thread's unfinished update.
pub(crate) fn note_collision() {
    COLLISIONS.with(|seen| seen.set(seen.get() + 1));
}

/// The shape of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Recording threads.
    pub threads: u64,
    /// Records per thread.
    pub per_thread: u64,
    /// The clock moves 1 ms (one bucket of 1 ms) every this many records,
    /// counted over all threads.
    pub records_per_tick: u64,
}

/// What one run did.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The clock's final reading (ms, which is also the final period).
    pub now: u64,
    /// Per period (index = period), records the window reported counted.
    pub counted: Vec<u64>,
    /// Collisions with another thread's update, over all recording threads.
    pub collisions: u64,
}

/// One run: `load.threads` threads each call `record(now)` `per_thread`
/// times with the clock's current reading, started together.
pub(crate) fn hammer(load: Load, record: &(impl Fn(u64) -> bool + Sync)) -> Outcome {
    let clock = ManualClock::new(0);
    let progress = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Barrier::new(usize::try_from(load.threads).expect("few threads"));
    let periods = usize::try_from(load.threads * load.per_thread / load.records_per_tick + 2)
        .expect("few periods");

    let (counted, collisions) = thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if clock.now_ms() < progress.load(Ordering::SeqCst) / load.records_per_tick {
                    clock.advance(1);
                } else {
                    thread::yield_now();
                }
            }
        });
        let workers: Vec<_> = (0..load.threads)
            .map(|_| {
                s.spawn(|| {
                    let mut counted = vec![0_u64; periods];
                    start.wait();
                    let deadline = Instant::now() + Duration::from_secs(10);
                    for i in 0..load.per_thread {
                        // Half-way, wait (bounded) until time has moved so
                        // the run surely crosses a boundary under load.
                        if i == load.per_thread / 2 {
                            while clock.now_ms() == 0 && Instant::now() < deadline {
                                thread::yield_now();
                            }
                        }
                        let now = clock.now_ms();
                        if record(now) {
                            counted[usize::try_from(now).expect("small periods")] += 1;
                        }
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    (counted, COLLISIONS.with(Cell::get))
                })
            })
            .collect();
        let mut counted = vec![0_u64; periods];
        let mut collisions = 0;
        for worker in workers {
            let (mine, seen) = worker.join().expect("worker panicked");
            collisions += seen;
            counted
                .iter_mut()
                .zip(mine)
                .for_each(|(total, n)| *total += n);
        }
        done.store(true, Ordering::SeqCst);
        (counted, collisions)
    });
    Outcome {
        now: clock.now_ms(),
        counted,
        collisions,
    }
}

/// Repeats runs on fresh windows from `make`, calling `check` after each,
/// until one run has collided or 10 s have passed. `check` asserts the
/// invariants and returns any further collisions it can see in the result
/// (such as records that a rollover moved). Returns the collisions seen over
/// all runs.
pub(crate) fn hammer_until_collision<W: Sync>(
    load: Load,
    make: impl Fn() -> W,
    record: impl Fn(&W, u64) -> bool + Sync,
    check: impl Fn(&W, &Outcome) -> u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut collisions = 0;
    loop {
        let window = make();
        let outcome = hammer(load, &|now| record(&window, now));
        collisions += check(&window, &outcome) + outcome.collisions;
        if collisions > 0 || Instant::now() > deadline {
            return collisions;
        }
    }
}
