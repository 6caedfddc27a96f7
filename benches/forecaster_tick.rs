//! One forecaster tick over 100 000 tracked users: the proxy's own
//! `ForecasterService::tick` (what the background task runs every
//! `profiler.forecast_tick`) on a real `Shared` built from
//! `benches/headroom-bench.yaml`, whose user table holds at most 100 000.
//!
//! Every user has realistic windows before each measured tick: one to six
//! arrivals over the last minute across the eight route classes, each
//! answered with a size and latency that depend on the route (a few kB in
//! tens of milliseconds up to large exports in seconds), and a cohort
//! assignment (four cohorts), so the tick does its full work: per-user
//! forecasts and levels, the activity sums of every cohort, the aggregate
//! and cohort forecasters of all four quantities, scores and snapshots.
//! The windows are refreshed outside the measurement between ticks.
//!
//! Target: under 1 s of one core per tick. Times are the measuring
//! thread's CPU time (`support::measurement`).
//!
//! Run: `cargo bench -j2 --bench forecaster_tick`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use headroom::forecaster::{Decisions, ForecasterService};
use headroom::state::Shared;
use headroom_profiler::{Clock, CohortId};
use support::measurement::ThreadCpu;

/// Tracked users: the bench config's `profiler.max_users`.
const USERS: u64 = 100_000;

/// Records the last minute of traffic of every user, ending now.
fn refresh(shared: &Shared) {
    let now = shared.clock.now_ms();
    for key in 1..=USERS {
        let Ok(entry) = shared.users.get_or_insert(key, now) else {
            panic!("the bench table holds {USERS} users");
        };
        let windows = &entry.windows;
        let arrivals = 1 + key % 6;
        for i in 0..arrivals {
            let at = now.saturating_sub(60_000) + (key * 7_919 + i * 9_973) % 60_000;
            let route = ((key + i) % 8) as u8;
            windows.record_arrival(at, route, 200);
            // Bigger and slower on higher route classes: 2 kB / 20 ms up to
            // 256 kB / 2.56 s on class 7.
            let scale = 1u64 << route;
            windows.record_response(at, 200, 2_000 * scale, 20_000 * scale);
        }
        windows
            .last_action()
            .set_cohort(CohortId::new((key % 4) as u8));
    }
}

fn tick(c: &mut Criterion<ThreadCpu>) {
    let shared = support::shared();
    let tick = Duration::from_secs(60);
    let decisions = Arc::new(ArcSwap::from_pointee(Decisions::initial(tick)));
    let service = ForecasterService::new(Arc::clone(&shared), decisions, tick);
    let Some(mut state) = service.new_state() else {
        panic!("a 60 s tick is a valid forecast bucket");
    };
    refresh(&shared);
    assert_eq!(shared.users.len() as u64, USERS);
    // A few ticks first: users past their first sighting, forecasters warm.
    for _ in 0..3 {
        service.tick(&mut state);
    }

    let mut group = c.benchmark_group("forecaster_tick");
    group.throughput(Throughput::Elements(USERS));
    group.bench_function("users_100k", |b| {
        b.iter_batched(
            || refresh(&shared),
            |()| service.tick(&mut state),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    targets = tick
}
criterion_main!(benches);
