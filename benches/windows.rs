//! Recording arrivals into per-user windows: Headroom's lock-free table and
//! windows against the obvious alternative, one `Mutex<HashMap>` of plain
//! per-user counters, in the same group so criterion prints them together.
//!
//! Both sides do the same work per arrival: find the user by key (inserting
//! on first sight), advance a 60 x 1 s request window, count the request,
//! its route class and bytes, and note last-seen for sessions and idleness.
//! The baseline's counters are plain integers (no atomics), so on one thread
//! it is the cheaper design; the `threads_*` rows show what the lock costs
//! once several threads record at once. `cpu_per_thread` and
//! `wall_all_threads` are defined in `support::ThreadTime`.
//!
//! `insert_new_user` is the first sighting of a user (the entry is
//! allocated then), which the decision-path benches keep out of their
//! figures.
//!
//! Times are the measuring thread's CPU time (`support::measurement`).
//!
//! Run: `cargo bench --bench windows`.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use headroom::state::UserState;
use headroom_policies::SourceKind;
use headroom_profiler::{Clock, SystemClock, TableConfig, UserTable};
use support::measurement::{run_threads, ThreadCpu, ThreadTime};
use support::USERS;

/// Buckets of the baseline's request window, as in the bench config.
const BUCKETS: usize = 60;

/// Width of one bucket in milliseconds, as in the bench config.
const BUCKET_MS: u64 = 1_000;

/// The baseline's per-user state: what `UserWindows::record_arrival`
/// updates, as plain integers behind the map's lock.
struct NaiveUser {
    /// Period (now / bucket width) each slot currently counts.
    periods: [u64; BUCKETS],
    counts: [u32; BUCKETS],
    routes: [u32; 8],
    bytes_in: u64,
    requests_total: u64,
    last_seen_ms: u64,
}

impl NaiveUser {
    fn new() -> Self {
        Self {
            periods: [0; BUCKETS],
            counts: [0; BUCKETS],
            routes: [0; 8],
            bytes_in: 0,
            requests_total: 0,
            last_seen_ms: 0,
        }
    }

    fn record_arrival(&mut self, now_ms: u64, route: u8, bytes_in: u64) {
        let period = now_ms / BUCKET_MS;
        let slot = (period % BUCKETS as u64) as usize;
        if self.periods[slot] != period {
            self.periods[slot] = period;
            self.counts[slot] = 0;
        }
        self.counts[slot] += 1;
        self.routes[usize::from(route.min(7))] += 1;
        self.bytes_in += bytes_in;
        self.requests_total += 1;
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }
}

/// The naive design: one lock around one map.
struct MutexTable(Mutex<HashMap<u64, NaiveUser>>);

impl MutexTable {
    fn record_arrival(&self, key: u64, now_ms: u64, route: u8, bytes_in: u64) {
        let mut map = self.0.lock().expect("no bench thread panics holding it");
        map.entry(key)
            .or_insert_with(NaiveUser::new)
            .record_arrival(now_ms, route, bytes_in);
    }
}

/// Keys of `n` users, made by the bench config's own pseudonymizer.
fn user_keys(n: usize) -> Vec<u64> {
    let shared = support::shared();
    let rt = shared.runtime.load();
    (0..n)
        .map(|i| {
            let id = format!("k_bench_{i}");
            rt.identity
                .pseudonymizer
                .key(SourceKind::ApiKey, id.as_bytes())
        })
        .collect()
}

/// The real table with the default window shape (60 x 1 s).
fn headroom_table(max_users: usize) -> UserTable<UserState> {
    UserTable::new(TableConfig {
        max_users,
        ..TableConfig::default()
    })
    .expect("the default shape is valid")
}

fn record_arrival(c: &mut Criterion<ThreadCpu>) {
    let keys = user_keys(USERS);
    let clock = SystemClock;
    let table = headroom_table(100_000);
    let naive = MutexTable(Mutex::new(HashMap::new()));
    for &key in &keys {
        let now_ms = clock.now_ms();
        table
            .get_or_insert(key, now_ms)
            .expect("room for 1 000 users");
        naive.record_arrival(key, now_ms, 0, 0);
    }

    // One arrival of user `i`, on each side.
    let headroom_one = |i: usize| {
        let now_ms = clock.now_ms();
        let user = table.get_or_insert(keys[i % USERS], now_ms);
        let user = user.expect("known user");
        user.windows.record_arrival(now_ms, (i % 5) as u8, 512);
    };
    let naive_one = |i: usize| {
        let now_ms = clock.now_ms();
        naive.record_arrival(keys[i % USERS], now_ms, (i % 5) as u8, 512);
    };
    let sides: [(&str, &(dyn Fn(usize) + Sync)); 2] =
        [("headroom", &headroom_one), ("mutex_hashmap", &naive_one)];

    let mut group = c.benchmark_group("record_arrival");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    for (name, one) in sides {
        group.bench_function(format!("{name}/1_thread"), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                one(black_box(i));
            });
        });
    }
    for threads in [2, 8] {
        for (name, one) in sides {
            let work = |t: usize, iters: u64| {
                let offset = t * USERS / threads;
                for i in 0..iters as usize {
                    one(black_box(offset + i));
                }
            };
            let modes = [
                ("cpu_per_thread", ThreadTime::CpuPerThread),
                ("wall_all_threads", ThreadTime::WallAllThreads),
            ];
            for (label, mode) in modes {
                group.bench_function(format!("{name}/threads_{threads}/{label}"), |b| {
                    b.iter_custom(|iters| run_threads(threads, iters, mode, &work));
                });
            }
        }
    }
    group.finish();
}

fn insert_new_user(c: &mut Criterion<ThreadCpu>) {
    let clock = SystemClock;
    let mut group = c.benchmark_group("insert_new_user");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function("headroom", |b| {
        b.iter_custom(|iters| {
            // A fresh table per sample, large enough that nothing is evicted.
            let table = headroom_table(usize::try_from(iters).unwrap_or(usize::MAX).max(1));
            let started = support::measurement::thread_cpu_time();
            let wall = std::time::Instant::now();
            for key in 0..iters {
                // Spread the keys like keyed hashes would be.
                let key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                black_box(table.get_or_insert(key, clock.now_ms()).is_ok());
            }
            let elapsed = started
                .zip(support::measurement::thread_cpu_time())
                .map_or_else(|| wall.elapsed(), |(a, b)| b.saturating_sub(a));
            // Dropping a large table is not part of inserting.
            drop(table);
            elapsed
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = record_arrival, insert_new_user
}
criterion_main!(benches);
