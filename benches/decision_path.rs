//! The per-request decision path, end to end: read the policy snapshot
//! through arc-swap, identify the user, derive attributes and tier, classify
//! the route, look the user up in the table, record the arrival, check the
//! rate limit, take an admission slot and release it (`support::decide`,
//! the body of the proxy's `request_filter`).
//!
//! Groups:
//! - `decision_path`: one thread, per identity scheme, plus the response
//!   bookkeeping (`support::finish`) that every answered request adds.
//! - `decision_path_threads`: 1, 2 and 8 threads over the same 1 000 users.
//!   `cpu_per_thread` books each thread's own on-CPU time, so its throughput
//!   is the per-thread throughput even with more threads than cores (the
//!   target: at 8 threads at least half of 1 thread); `wall_all_threads`
//!   books wall time over the thread count, i.e. what the machine does in
//!   total. `one_user` sends every thread's requests to a single user: the
//!   worst case for contention on the user's atomics.
//! - `identify`: the identity step alone, per source, JWT included (it is the
//!   one source that allocates and costs microseconds; see the README).
//!
//! Times are the measuring thread's CPU time (`support::measurement`), so
//! the figures hold on a machine busy with other work; throughputs are
//! operations per CPU-second.
//!
//! Run: `cargo bench --bench decision_path` (add `-- --quick` for a rough
//! pass). Users are known before measuring: a first sighting allocates the
//! user's entry and is measured in the `windows` bench.

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use support::measurement::{run_threads, ThreadCpu, ThreadTime};
use support::{BenchRequest, USERS};

/// One request after another, cycling through `requests`.
fn cycle<'a>(requests: &'a [BenchRequest]) -> impl FnMut() -> &'a BenchRequest + 'a {
    let mut i = 0;
    move || {
        i = (i + 1) % requests.len();
        &requests[i]
    }
}

fn single_thread(c: &mut Criterion<ThreadCpu>) {
    let shared = support::shared();
    let api_key = support::api_key_requests(USERS);
    let client_ip = support::client_ip_requests(USERS);
    support::warm(&shared, &api_key);
    support::warm(&shared, &client_ip);

    let mut group = c.benchmark_group("decision_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("api_key", |b| {
        let mut next = cycle(&api_key);
        b.iter(|| support::decide(&shared, black_box(next())));
    });
    group.bench_function("client_ip_forwarded", |b| {
        let mut next = cycle(&client_ip);
        b.iter(|| support::decide(&shared, black_box(next())));
    });
    group.bench_function("api_key_with_response", |b| {
        let mut next = cycle(&api_key);
        b.iter(|| {
            let decision = support::decide(&shared, black_box(next())).expect("identified");
            support::finish(&shared, decision, 200, 3)
        });
    });
    group.finish();
}

fn threads(c: &mut Criterion<ThreadCpu>) {
    let shared = support::shared();
    let api_key = support::api_key_requests(USERS);
    support::warm(&shared, &api_key);

    let mut group = c.benchmark_group("decision_path_threads");
    group.throughput(Throughput::Elements(1));
    // Every sample the same length: per-thread CPU time is read once per
    // sample, so short samples would weigh its granularity more.
    group.sampling_mode(SamplingMode::Flat);
    let modes = [
        ("cpu_per_thread", ThreadTime::CpuPerThread),
        ("wall_all_threads", ThreadTime::WallAllThreads),
    ];
    for threads in [1, 2, 8] {
        for (label, mode) in modes {
            // Each thread starts at its own place in the user list.
            let work = |t: usize, iters: u64| {
                let offset = t * USERS / threads;
                for i in 0..iters as usize {
                    let req = &api_key[(offset + i) % USERS];
                    black_box(support::decide(&shared, black_box(req)).is_ok());
                }
            };
            group.bench_function(format!("api_key/threads_{threads}/{label}"), |b| {
                b.iter_custom(|iters| run_threads(threads, iters, mode, &work));
            });
        }
    }
    let one_user = |_t: usize, iters: u64| {
        for _ in 0..iters {
            black_box(support::decide(&shared, black_box(&api_key[7])).is_ok());
        }
    };
    group.bench_function("one_user/threads_8/cpu_per_thread", |b| {
        b.iter_custom(|iters| run_threads(8, iters, ThreadTime::CpuPerThread, &one_user));
    });
    group.finish();
}

fn identify(c: &mut Criterion<ThreadCpu>) {
    let shared = support::shared();
    let rt = shared.runtime.load_full();
    let api_key = support::api_key_requests(USERS);
    let client_ip = support::client_ip_requests(USERS);
    let jwt = support::jwt_requests(16);

    let mut group = c.benchmark_group("identify");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("api_key_in_table", &api_key[..4]),
        ("api_key_as_id", &api_key[4..]),
        ("client_ip_forwarded", &client_ip[..]),
        ("jwt_hs256", &jwt[..]),
    ];
    for (name, requests) in cases {
        group.bench_function(name, |b| {
            let mut next = cycle(requests);
            b.iter(|| {
                let req = next();
                rt.identity
                    .identify(Some(req.peer), black_box(&req.headers))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = single_thread, threads, identify
}
criterion_main!(benches);
