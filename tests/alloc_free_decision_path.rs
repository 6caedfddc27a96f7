//! The per-request decision path allocates nothing once a user is known.
//!
//! A counting global allocator wraps the system allocator and the tests
//! compare its counters around thousands of decisions. The counter is
//! `stats_alloc`: its `StatsAlloc::system()` is a `const fn`, so installing
//! it is one safe `static` and this crate keeps `unsafe_code = "forbid"`.
//! (dhat's testing mode would also work without `unsafe` here, but it records
//! a backtrace per allocation and allows one profiler per process; plain
//! counters are all these tests need.)
//!
//! The counters are process-wide, so another thread allocating during a
//! measurement would be counted too. Each test therefore holds one lock from
//! its set-up to its last measurement (the set-up of a neighbouring test
//! allocates plenty), and a measurement that sees allocations is repeated up
//! to three times and the least count kept: the test harness may print a
//! finished test's result while a measurement runs, but a path that
//! allocates per request allocates in every attempt. Two control tests prove the counter sees the
//! allocations it must (a first sighting allocates the user's entry).

#[path = "../benches/support/mod.rs"]
mod support;

use std::alloc::System;
use std::hint::black_box;
use std::sync::{Mutex, MutexGuard};

use stats_alloc::{Region, StatsAlloc};
use support::{BenchRequest, USERS};

#[global_allocator]
static GLOBAL: StatsAlloc<System> = StatsAlloc::system();

/// Tests take turns, set-up included: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// This test's turn; hold it for the whole test.
fn turn() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Heap allocations (new and resized blocks) made by `f`, the least of up
/// to three attempts. Call it with [`turn`] held.
fn allocations(mut f: impl FnMut()) -> usize {
    let mut least = usize::MAX;
    for _ in 0..3 {
        let region = Region::new(&GLOBAL);
        f();
        let change = region.change();
        least = least.min(change.allocations + change.reallocations);
        if least == 0 {
            break;
        }
    }
    least
}

/// Decides every request `rounds` times, keeping each decision until the
/// next as the proxy keeps it in the request context.
fn decide_all(shared: &headroom::state::Shared, requests: &[BenchRequest], rounds: usize) {
    for _ in 0..rounds {
        for req in requests {
            let decision = support::decide(shared, req).expect("bench requests identify");
            black_box(&decision);
        }
    }
}

#[test]
fn known_api_key_users_are_decided_without_allocating() {
    let _turn = turn();
    let shared = support::shared();
    let requests = support::api_key_requests(USERS);
    support::warm(&shared, &requests);

    let count = allocations(|| decide_all(&shared, &requests, 5));
    assert_eq!(count, 0, "5 000 decisions of known api-key users allocated");
}

#[test]
fn known_forwarded_client_ip_users_are_decided_without_allocating() {
    let _turn = turn();
    let shared = support::shared();
    let requests = support::client_ip_requests(USERS);
    support::warm(&shared, &requests);

    let count = allocations(|| decide_all(&shared, &requests, 5));
    assert_eq!(
        count, 0,
        "5 000 decisions of forwarded client ips allocated"
    );
}

#[test]
fn decision_and_response_bookkeeping_allocate_nothing() {
    let _turn = turn();
    let shared = support::shared();
    let requests = support::api_key_requests(USERS);
    support::warm(&shared, &requests);

    let count = allocations(|| {
        for req in &requests {
            let decision = support::decide(&shared, req).expect("bench requests identify");
            black_box(support::finish(&shared, decision, 200, 3));
        }
    });
    assert_eq!(count, 0, "1 000 requests with their responses allocated");
}

#[test]
fn upstream_header_filter_allocates_nothing_for_a_clean_request() {
    let _turn = turn();
    let requests = support::api_key_requests(100);

    let count = allocations(|| {
        for req in &requests {
            black_box(headroom::headers::request_headers_to_drop(&req.headers));
        }
    });
    assert_eq!(count, 0, "no header to drop, yet the filter allocated");
}

#[test]
fn first_sighting_of_a_user_allocates_its_entry() {
    let _turn = turn();
    // Control: the counter sees the allocations of the insert path, so the
    // zero counts above are not an artefact of a counter that sees nothing.
    // Each attempt meets 50 users never seen before.
    let shared = support::shared();
    let requests = support::api_key_requests(150);
    let mut batches = requests.chunks(50);

    let count = allocations(|| {
        let batch = batches.next().expect("one batch per attempt");
        decide_all(&shared, batch, 1);
    });
    assert!(count >= 50, "50 new users made only {count} allocations");
}

#[test]
fn counter_sees_a_heap_allocation() {
    let _turn = turn();
    let count = allocations(|| {
        black_box(vec![1u8; 64]);
    });
    assert_eq!(count, 1);
}
