use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use super::*;
use crate::window::WindowError;

/// The proxy's payload in miniature: one atomic, like a GCRA bucket.
type Table = UserTable<AtomicU64>;

/// Uniform keys, like the proxy's keyed hashes (splitmix64).
fn key(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const IDLE_MS: u64 = 60_000;

fn table(max_users: usize) -> Table {
    UserTable::new(TableConfig {
        max_users,
        idle_timeout_ms: IDLE_MS,
        ..TableConfig::default()
    })
    .expect("test config is valid")
}

#[test]
fn config_defaults_and_validation() {
    let config = TableConfig::default();
    assert_eq!(config.max_users, 100_000);
    assert_eq!((config.bucket_ms, config.buckets), (1_000, 60));
    assert_eq!(
        (config.idle_timeout_ms, config.session_gap_ms),
        (600_000, 1_800_000)
    );
    assert!(config.user_shape().is_ok());

    let bad = |change: fn(&mut TableConfig)| {
        let mut config = TableConfig::default();
        change(&mut config);
        UserTable::<()>::new(config).expect_err("invalid config accepted")
    };
    assert_eq!(bad(|c| c.max_users = 0), TableConfigError::ZeroMaxUsers);
    assert_eq!(
        bad(|c| c.bucket_ms = 0),
        TableConfigError::Window(WindowError::ZeroBucketWidth)
    );
    assert!(matches!(
        bad(|c| c.buckets = 0),
        TableConfigError::Window(_)
    ));
    let short = bad(|c| c.idle_timeout_ms = 59_999);
    assert_eq!(
        short.to_string(),
        "idle_timeout_ms must be at least the window span (60000 ms), got 59999: \
         users would be evicted with counts still in the window"
    );
}

#[test]
fn known_user_lookup_returns_the_same_entry() {
    let t = table(10);
    let first = t.get_or_insert(key(1), 1_000).unwrap();
    first.windows.record_arrival(1_000, 0, 0);
    let again = t.get_or_insert(key(1), 2_000).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(t.len(), 1);
    assert_eq!(
        again.windows.last_seen_ms(),
        Some(2_000),
        "a lookup counts as activity"
    );
    assert!(Arc::ptr_eq(&t.get(key(1)).unwrap(), &first));
    assert!(t.get(key(2)).is_none());
}

#[test]
fn table_full_of_active_users_rejects_new_ones() {
    let t = table(4);
    for i in 0..4 {
        t.get_or_insert(key(i), 1_000).unwrap();
    }
    assert_eq!(
        t.get_or_insert(key(99), 2_000).unwrap_err(),
        TableFull { max_users: 4 }
    );
    assert_eq!(
        TableFull { max_users: 4 }.to_string(),
        "user table is full (4 users, none idle)"
    );
    assert_eq!((t.len(), t.rejected_total()), (4, 1));
    assert!(
        t.get_or_insert(key(2), 2_000).is_ok(),
        "known users are still served"
    );
    assert!(!Arc::ptr_eq(t.overflow(), &t.get(key(2)).unwrap()));
}

#[test]
fn full_table_evicts_an_idle_user_to_admit_a_new_one() {
    let t = table(3);
    t.get_or_insert(key(1), 0).unwrap();
    t.get_or_insert(key(2), 50_000).unwrap();
    t.get_or_insert(key(3), 50_000).unwrap();
    // At 70 s only user 1 has been idle for more than 60 s.
    let fresh = t.get_or_insert(key(4), 70_000).unwrap();
    assert_eq!(fresh.windows.last_seen_ms(), Some(70_000));
    assert_eq!(t.len(), 3);
    assert!(t.get(key(1)).is_none(), "the idle user made room");
    assert!(t.get(key(2)).is_some() && t.get(key(3)).is_some());
}

#[test]
fn eviction_scans_back_off_after_finding_nothing_idle() {
    let t = table(2);
    t.get_or_insert(key(1), 0).unwrap();
    t.get_or_insert(key(2), 1_000_000).unwrap();
    // At 60 000 ms nobody is idle yet: the scan fails and backs off.
    assert!(t.get_or_insert(key(3), IDLE_MS).is_err());
    // User 1 is idle from 60 001 ms, but scans wait out the 100 ms backoff.
    assert!(t.get_or_insert(key(3), IDLE_MS + 50).is_err());
    assert!(t.get_or_insert(key(3), IDLE_MS + 100).is_ok());
    assert!(t.get(key(1)).is_none());
}

#[test]
fn large_full_table_finds_a_rare_idle_user_within_a_few_bounded_scans() {
    let t = table(10_000);
    t.get_or_insert(key(0), 0).unwrap();
    for i in 1..10_000 {
        t.get_or_insert(key(i), 50_000).unwrap();
    }
    // One idle user among 10 000; each attempt visits at most 4 096, and
    // attempts resume where the last one stopped.
    let mut attempts = 0;
    let mut now = 70_000;
    while t.get_or_insert(key(10_000), now).is_err() {
        attempts += 1;
        assert!(attempts < 8, "no room found after {attempts} scans");
        now += EVICT_BACKOFF_MS;
    }
    assert!(t.get(key(0)).is_none());
    assert_eq!(t.len(), 10_000);
}

#[test]
fn evict_idle_removes_only_idle_users() {
    let t = table(100);
    for i in 0..50 {
        let entry = t.get_or_insert(key(i), 0).unwrap();
        entry.windows.record_arrival(0, 0, 0);
    }
    for i in 50..100 {
        let entry = t.get_or_insert(key(i), 30_000).unwrap();
        entry.windows.record_arrival(30_000, 0, 0);
    }
    assert_eq!(
        t.evict_idle(IDLE_MS),
        0,
        "idle means longer than the timeout"
    );
    assert_eq!(t.evict_idle(IDLE_MS + 1), 50);
    assert_eq!(t.len(), 50);
    assert!((0..50).all(|i| t.get(key(i)).is_none()));
    assert!((50..100).all(|i| t.get(key(i)).is_some()));
    assert_eq!(
        t.evict_idle(0),
        0,
        "a clock that went backwards evicts nobody"
    );
    assert_eq!(
        t.totals(IDLE_MS + 1).requests_total,
        100,
        "evicted arrivals still count"
    );
}

#[test]
fn a_response_keeps_a_user_from_being_evicted() {
    let t = table(10);
    let entry = t.get_or_insert(key(7), 0).unwrap();
    entry.windows.record_arrival(0, 0, 0);
    entry.windows.record_response(50_000, 200, 0, 50_000_000);
    assert_eq!(t.evict_idle(IDLE_MS + 1), 0);
    assert_eq!(t.evict_idle(50_000 + IDLE_MS + 1), 1);
}

#[test]
fn remove_forgets_a_user() {
    let t = table(10);
    let held = t.get_or_insert(key(5), 0).unwrap();
    held.windows.record_arrival(0, 0, 0);
    assert!(t.remove(key(5)));
    assert!(!t.remove(key(5)), "removing twice reports absence");
    assert!(t.get(key(5)).is_none());
    assert!(t.is_empty());
    held.windows.record_arrival(1, 0, 0); // an in-flight request is harmless
    let back = t.get_or_insert(key(5), 2).unwrap();
    assert!(!Arc::ptr_eq(&held, &back), "a returning user starts afresh");
    assert_eq!(back.windows.requests_total(), 0);
}

#[test]
fn visiting_sees_every_user_once() {
    let t = table(1_000);
    for i in 0..500 {
        let entry = t.get_or_insert(key(i), 0).unwrap();
        entry.windows.record_arrival(0, 0, 0);
        entry.extra.store(i, Ordering::Relaxed);
    }
    let mut seen = HashSet::new();
    t.for_each(|k, entry| {
        assert_eq!(k, key(entry.extra.load(Ordering::Relaxed)));
        assert!(seen.insert(k));
    });
    assert_eq!(seen.len(), 500);
    assert_eq!(t.entries().len(), 500);
    let totals = t.totals(1_000);
    assert_eq!((totals.users, totals.requests_total), (500, 500));
    assert!(totals.smoothed_rps > 0.0);
}

#[test]
fn keys_spread_over_every_segment() {
    let t = table(10_000);
    for i in 0..3_200 {
        t.get_or_insert(key(i), 0).unwrap();
    }
    let sizes: Vec<usize> = t.segments.iter().map(DashMap::len).collect();
    assert!(sizes.iter().all(|&n| n > 50), "uneven segments: {sizes:?}");
}

#[test]
fn per_user_memory_is_under_one_kibibyte() {
    let t = table(10);
    let bytes = t.bytes_per_user();
    eprintln!(
        "per user: UserEntry<AtomicU64> {} bytes inline, {} bytes of windows, ~{bytes} in all",
        std::mem::size_of::<UserEntry<AtomicU64>>(),
        t.shape().bytes_per_user(),
    );
    assert!(bytes <= 1_024, "{bytes} bytes per user");
}

#[test]
fn concurrent_inserts_never_exceed_max_users() {
    let t = table(2_000);
    let (admitted, same_key): (Vec<_>, Vec<_>) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8_u64)
            .map(|thread| {
                let t = &t;
                scope.spawn(move || {
                    let mut admitted = 0;
                    for i in 0..1_000 {
                        if t.get_or_insert(key(thread * 1_000 + i), 1).is_ok() {
                            admitted += 1;
                        }
                    }
                    // Everybody also races for one shared key (already in
                    // or refused, the same for all).
                    (admitted, t.get_or_insert(key(0), 1).ok())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).unzip()
    });
    assert_eq!(
        admitted.iter().sum::<usize>(),
        2_000,
        "exactly max_users admitted"
    );
    assert_eq!(t.len(), 2_000);
    assert_eq!(t.entries().len(), 2_000);
    assert_eq!(t.rejected_total(), 6_000);
    let shared: Vec<_> = same_key.into_iter().flatten().collect();
    assert!(shared
        .windows(2)
        .all(|pair| Arc::ptr_eq(&pair[0], &pair[1])));
}

#[test]
fn concurrent_inserts_of_one_new_key_share_one_entry() {
    let t = table(10);
    let entries: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| t.get_or_insert(key(42), 5).unwrap()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(entries
        .windows(2)
        .all(|pair| Arc::ptr_eq(&pair[0], &pair[1])));
    assert_eq!(t.len(), 1);
}

#[test]
fn displacement_removes_the_least_recently_seen_displaceable_user() {
    let t = table(3);
    // User 0 is protected (extra = 1); 1 and 2 are displaceable, 1 older.
    t.get_or_insert(key(0), 1_000)
        .unwrap()
        .extra
        .store(1, Ordering::Relaxed);
    t.get_or_insert(key(1), 1_100).unwrap();
    t.get_or_insert(key(2), 1_200).unwrap();
    assert!(t.get_or_insert(key(9), 1_300).is_err());

    let protected = |e: &UserEntry<AtomicU64>| e.extra.load(Ordering::Relaxed) == 0;
    assert!(t.displace_one(protected));

    assert!(t.get(key(1)).is_none(), "the oldest displaceable user went");
    assert!(t.get(key(0)).is_some() && t.get(key(2)).is_some());
    assert!(
        t.get_or_insert(key(9), 1_400).is_ok(),
        "the newcomer got its place"
    );
}

#[test]
fn displacement_finds_nothing_when_everyone_is_protected() {
    let t = table(2);
    for i in 0..2 {
        t.get_or_insert(key(i), 1_000)
            .unwrap()
            .extra
            .store(1, Ordering::Relaxed);
    }
    assert!(!t.displace_one(|e| e.extra.load(Ordering::Relaxed) == 0));
    assert_eq!(t.len(), 2);
}
