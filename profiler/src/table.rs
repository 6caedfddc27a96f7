//! The bounded, concurrent table of tracked users.
//!
//! Every request looks its user up here, so the lookup of a known user is a
//! shard read lock, a hash probe and an `Arc` clone: no allocation, no lock
//! held after return. The table holds at most `max_users` users so that a
//! flood of new identities cannot exhaust memory; when it is full, an
//! arrival first tries to evict users idle for longer than
//! `idle_timeout_ms`, and if none are found it gets [`TableFull`]. The proxy
//! then records that request into one shared overflow entry (see
//! [`UserTable::overflow`]) and counts it in a metric, so the request is
//! still served and still visible in aggregate.
//!
//! Layout: 32 segments, each a [`DashMap`] with 4 shards, chosen by bits of
//! the key. Keys are already uniformly distributed keyed hashes of the
//! user's identity, so the maps use them as their own hash instead of
//! hashing them again. Segments exist so that eviction on a full table can
//! scan a bounded part of the table, resuming where the last scan stopped,
//! instead of all of it (dashmap offers no safe way to visit one of its own
//! shards): at most 4 096 users per attempt, the whole table when it is
//! small, one or two segments of a table of 100 000.
//!
//! Known approximations: `len` counts a user as soon as an insert reserves
//! its place, a few nanoseconds before it becomes visible; after a full
//! table finds nothing idle, further evictions are not attempted for
//! 100 ms (arrivals of new users get [`TableFull`] at once meanwhile), so
//! that a flood of new users does not turn every request into a scan.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::user::{UserShape, UserWindows};

mod config;
pub use config::{TableConfig, TableConfigError};

/// Segments of the table; a power of two.
/// Users sampled per displacement (see [`UserTable::displace_one`]).
const DISPLACE_SAMPLE: usize = 256;

const SEGMENTS: usize = 32;

/// Shards of each segment's `DashMap`; a power of two above 1.
const SHARDS_PER_SEGMENT: usize = 4;

/// Users a full table visits at most, per arrival, looking for idle ones.
const EVICT_SCAN_LIMIT: usize = 4_096;

/// Idle users one scan collects before removing them.
const EVICT_BATCH: usize = 16;

/// After a scan finds nothing idle, arrivals skip scanning for this long.
const EVICT_BACKOFF_MS: u64 = 100;

/// "Table full" warnings are logged at most this often.
const FULL_WARNING_INTERVAL_MS: u64 = 60_000;

/// The table holds `max_users` users and none of them is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("user table is full ({max_users} users, none idle)")]
pub struct TableFull {
    /// The table's capacity.
    pub max_users: usize,
}

/// A tracked user: the profiler's windows plus the proxy's own payload.
#[derive(Debug)]
pub struct UserEntry<E> {
    /// The user's behaviour windows.
    pub windows: UserWindows,
    /// Whatever else the proxy keeps per user (e.g. its rate-limit state).
    pub extra: E,
}

impl<E: Default> UserEntry<E> {
    /// An entry for a user never seen yet.
    pub fn new(shape: &UserShape) -> Self {
        Self {
            windows: UserWindows::new(shape),
            extra: E::default(),
        }
    }
}

/// Aggregates over every tracked user, from [`UserTable::totals`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableTotals {
    /// Users in the table.
    pub users: usize,
    /// Arrivals ever recorded by users of this table, including users since
    /// evicted or removed; never decreases, except by arrivals recorded into
    /// an entry after it was removed. Excludes the overflow entry.
    pub requests_total: u64,
    /// Sum of every user's smoothed rate (requests per second).
    pub smoothed_rps: f64,
}

/// A `Hasher` that passes a `u64` key through unchanged. Keys are already
/// uniform keyed hashes; hashing them again would only cost time. Other
/// input (not used by the table) falls back to FNV-1a.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// What [`UserTable::collect_idle`] found.
struct IdleScan {
    keys: [u64; EVICT_BATCH],
    found: usize,
    visited: usize,
}

type Segment<E> = DashMap<u64, Arc<UserEntry<E>>, BuildHasherDefault<KeyHasher>>;

/// The table of tracked users; see the module docs.
#[derive(Debug)]
pub struct UserTable<E> {
    segments: Box<[Segment<E>]>,
    /// Users in the table plus places reserved by inserts in progress.
    len: AtomicUsize,
    config: TableConfig,
    shape: UserShape,
    overflow: Arc<UserEntry<E>>,
    /// Next segment an eviction scan looks at.
    evict_cursor: AtomicUsize,
    /// No eviction scan before this time (ms) after one found nothing.
    evict_retry_at_ms: AtomicU64,
    /// No "table full" warning before this time (ms).
    next_full_warning_ms: AtomicU64,
    rejected: AtomicU64,
    /// `requests_total` of users no longer in the table.
    departed_requests: AtomicU64,
}

impl<E: Default + Send + Sync + 'static> UserTable<E> {
    /// An empty table.
    ///
    /// # Errors
    /// A [`TableConfigError`] if `config` is invalid (see
    /// [`TableConfig::user_shape`]).
    pub fn new(config: TableConfig) -> Result<Self, TableConfigError> {
        let shape = config.user_shape()?;
        let segments = (0..SEGMENTS)
            .map(|_| {
                DashMap::with_capacity_and_hasher_and_shard_amount(
                    0,
                    BuildHasherDefault::default(),
                    SHARDS_PER_SEGMENT,
                )
            })
            .collect();
        Ok(Self {
            segments,
            len: AtomicUsize::new(0),
            overflow: Arc::new(UserEntry::new(&shape)),
            config,
            shape,
            evict_cursor: AtomicUsize::new(0),
            evict_retry_at_ms: AtomicU64::new(0),
            next_full_warning_ms: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            departed_requests: AtomicU64::new(0),
        })
    }

    /// The configuration the table was built with.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The per-user window shape.
    pub fn shape(&self) -> &UserShape {
        &self.shape
    }

    /// The segment holding `key`. Bits 32 to 36 pick it: dashmap picks a
    /// segment's shard from bits 55 and 56, and hashbrown uses the top 7 and
    /// the lowest bits, so the choices stay independent.
    fn segment(&self, key: u64) -> &Segment<E> {
        &self.segments[(key >> 32) as usize & (SEGMENTS - 1)]
    }

    /// The user with `key`, inserted if new, with an arrival at `now_ms`
    /// noted for idleness and sessions (not counted as a request: call
    /// [`UserWindows::record_arrival`] for that).
    ///
    /// A known user costs one shard read lock and an `Arc` clone. A new user
    /// allocates its entry; if the table is full it first evicts idle users
    /// found by a bounded scan (at most 4 096 users visited), and returns
    /// [`TableFull`] if it finds none (see the module docs for what the
    /// caller does then).
    ///
    /// # Errors
    /// [`TableFull`] when the key is new, the table holds `max_users` users
    /// and the scan found none of them idle.
    pub fn get_or_insert(&self, key: u64, now_ms: u64) -> Result<Arc<UserEntry<E>>, TableFull> {
        if let Some(entry) = self.lookup_marking(key, now_ms) {
            return Ok(entry);
        }
        self.insert(key, now_ms)
    }

    /// A known user, with the arrival noted while the shard is read-locked:
    /// evictors re-check idleness under the write lock, so they cannot
    /// remove a user between this lookup and the caller's recording.
    fn lookup_marking(&self, key: u64, now_ms: u64) -> Option<Arc<UserEntry<E>>> {
        let entry = self.segment(key).get(&key)?;
        entry.windows.mark_arrival(now_ms);
        Some(Arc::clone(entry.value()))
    }

    /// The slow path of [`Self::get_or_insert`] for a key not found.
    #[cold]
    fn insert(&self, key: u64, now_ms: u64) -> Result<Arc<UserEntry<E>>, TableFull> {
        if !self.reserve(now_ms) {
            // Another thread may have inserted this very key meanwhile.
            if let Some(entry) = self.lookup_marking(key, now_ms) {
                return Ok(entry);
            }
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                max_users = self.config.max_users,
                "user table full, user untracked"
            );
            return Err(TableFull {
                max_users: self.config.max_users,
            });
        }

        // Allocate before taking the shard's write lock.
        let fresh = Arc::new(UserEntry::new(&self.shape));
        match self.segment(key).entry(key) {
            Entry::Occupied(existing) => {
                // Lost a race to insert the same key: give the place back.
                self.len.fetch_sub(1, Ordering::Relaxed);
                existing.get().windows.mark_arrival(now_ms);
                Ok(Arc::clone(existing.get()))
            }
            Entry::Vacant(vacant) => {
                fresh.windows.mark_arrival(now_ms);
                vacant.insert(Arc::clone(&fresh));
                Ok(fresh)
            }
        }
    }

    /// Reserves a place for a new user, evicting idle users if the table is
    /// full and a scan is allowed. False if no place could be had.
    fn reserve(&self, now_ms: u64) -> bool {
        if self.try_reserve() {
            return true;
        }
        let retry_at = self.evict_retry_at_ms.load(Ordering::Relaxed);
        // Scan unless backing off; a clock that went back by more than the
        // backoff ends the backoff rather than prolonging it.
        let backing_off = now_ms < retry_at && retry_at - now_ms <= EVICT_BACKOFF_MS;
        if backing_off {
            return false;
        }
        if self.evict_some(now_ms) == 0 {
            self.evict_retry_at_ms
                .store(now_ms.saturating_add(EVICT_BACKOFF_MS), Ordering::Relaxed);
            self.warn_full(now_ms);
            return false;
        }
        self.try_reserve()
    }

    /// Takes one place if the table has room. Relaxed: `len` guards only
    /// its own value; the map's locks order the entries themselves.
    fn try_reserve(&self) -> bool {
        let max = self.config.max_users;
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Logs that the table is full of active users, at most once a minute.
    fn warn_full(&self, now_ms: u64) {
        let due = self.next_full_warning_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms.saturating_add(FULL_WARNING_INTERVAL_MS);
        // One thread wins the CAS and logs; the others skip.
        if self
            .next_full_warning_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                max_users = self.config.max_users,
                idle_timeout_ms = self.config.idle_timeout_ms,
                "user table full of active users; new users are counted as overflow"
            );
        }
    }

    /// Evicts up to [`EVICT_BATCH`] idle users, scanning segments from the
    /// cursor on and visiting at most [`EVICT_SCAN_LIMIT`] users. Returns
    /// how many it removed.
    fn evict_some(&self, now_ms: u64) -> usize {
        let mut budget = EVICT_SCAN_LIMIT;
        for _ in 0..SEGMENTS {
            if budget == 0 {
                break;
            }
            let index = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % SEGMENTS;
            let segment = &self.segments[index];
            let scan = self.collect_idle(segment, now_ms, budget);
            budget -= scan.visited;
            let removed = scan.keys[..scan.found]
                .iter()
                .filter(|&&key| self.remove_if_idle(segment, key, now_ms))
                .count();
            if removed > 0 {
                tracing::debug!(removed, segment = index, "evicted idle users to make room");
                return removed;
            }
        }
        0
    }

    /// Keys of up to [`EVICT_BATCH`] idle users in `segment`, visiting at
    /// most `budget` users. Returns before any removal: the scan holds shard
    /// read locks, and removal needs the write lock.
    fn collect_idle(&self, segment: &Segment<E>, now_ms: u64, budget: usize) -> IdleScan {
        let mut scan = IdleScan {
            keys: [0; EVICT_BATCH],
            found: 0,
            visited: 0,
        };
        for entry in segment.iter().take(budget) {
            scan.visited += 1;
            if entry.windows.is_idle(now_ms, self.config.idle_timeout_ms) {
                scan.keys[scan.found] = *entry.key();
                scan.found += 1;
                if scan.found == EVICT_BATCH {
                    break;
                }
            }
        }
        scan
    }

    /// Removes `key` if it is still idle when its shard is write-locked.
    fn remove_if_idle(&self, segment: &Segment<E>, key: u64, now_ms: u64) -> bool {
        let timeout_ms = self.config.idle_timeout_ms;
        let removed = segment.remove_if(&key, |_, entry| entry.windows.is_idle(now_ms, timeout_ms));
        removed.is_some_and(|(_, entry)| {
            self.departed(&entry);
            true
        })
    }

    /// Books a user that left the table.
    fn departed(&self, entry: &UserEntry<E>) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.departed_requests
            .fetch_add(entry.windows.requests_total(), Ordering::Relaxed);
    }

    /// Makes room for a more valuable newcomer when the table is full of
    /// active users: samples up to [`DISPLACE_SAMPLE`] users of one segment
    /// and removes the least recently seen one that `displaceable` accepts
    /// (the proxy accepts unauthenticated users only, so a flood of made-up
    /// identities cannot lock out paying ones). Returns whether a user was
    /// removed; the caller then retries [`Self::get_or_insert`].
    ///
    /// Approximate LRU by sampling, as caches commonly do: the victim is the
    /// oldest of the sample, not of the table. A displaced user that comes
    /// back starts from empty windows and a fresh entry.
    pub fn displace_one(&self, displaceable: impl Fn(&UserEntry<E>) -> bool) -> bool {
        // Sample across segments from the cursor on; the scan holds one
        // shard read lock at a time and removal re-checks under the write lock.
        let mut budget = DISPLACE_SAMPLE;
        let mut victim: Option<(usize, u64, Option<u64>)> = None;
        for _ in 0..SEGMENTS {
            if budget == 0 {
                break;
            }
            let index = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % SEGMENTS;
            for entry in self.segments[index].iter().take(budget) {
                budget -= 1;
                let seen = entry.windows.last_seen_ms();
                let older = victim.is_none_or(|(_, _, best)| seen.unwrap_or(0) < best.unwrap_or(0));
                if older && displaceable(entry.value()) {
                    victim = Some((index, *entry.key(), seen));
                }
            }
        }
        let Some((index, key, seen)) = victim else {
            return false;
        };
        // Only if it was not seen again since the sample.
        let removed = self.segments[index].remove_if(&key, |_, e| e.windows.last_seen_ms() == seen);
        removed.is_some_and(|(_, entry)| {
            self.departed(&entry);
            true
        })
    }

    /// Removes every user idle for longer than `idle_timeout_ms` at
    /// `now_ms`; returns how many. For the background sweeper: it visits the
    /// whole table, write-locking one shard (1/128 of the table) at a time.
    /// A `now_ms` earlier than users' last activity evicts none of them.
    pub fn evict_idle(&self, now_ms: u64) -> usize {
        let timeout_ms = self.config.idle_timeout_ms;
        let mut evicted = 0;
        for segment in self.segments.iter() {
            segment.retain(|_, entry| {
                if entry.windows.is_idle(now_ms, timeout_ms) {
                    self.departed(entry);
                    evicted += 1;
                    false
                } else {
                    true
                }
            });
        }
        evicted
    }

    /// The user with `key`, if tracked. Does not count as activity.
    pub fn get(&self, key: u64) -> Option<Arc<UserEntry<E>>> {
        self.segment(key)
            .get(&key)
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Forgets the user with `key` (the privacy DELETE). Returns whether it
    /// was tracked. A request in flight keeps its `Arc` and records into the
    /// removed entry, which is then dropped with the request.
    pub fn remove(&self, key: u64) -> bool {
        self.segment(key).remove(&key).is_some_and(|(_, entry)| {
            self.departed(&entry);
            true
        })
    }

    /// Users in the table (including inserts in progress).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no user is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit(key, entry)` for every tracked user, segment by segment.
    /// It runs with a shard read-locked: it must not insert into or remove
    /// from this table (that would deadlock). To work on users without
    /// holding locks, collect them with [`Self::entries`] first.
    pub fn for_each(&self, mut visit: impl FnMut(u64, &Arc<UserEntry<E>>)) {
        for segment in self.segments.iter() {
            for entry in segment.iter() {
                visit(*entry.key(), entry.value());
            }
        }
    }

    /// Every tracked user, copied out (allocates; for background tasks).
    pub fn entries(&self) -> Vec<(u64, Arc<UserEntry<E>>)> {
        let mut all = Vec::with_capacity(self.len());
        self.for_each(|key, entry| all.push((key, Arc::clone(entry))));
        all
    }

    /// Users, arrivals ever recorded and the sum of smoothed rates at
    /// `now_ms`; visits the whole table.
    pub fn totals(&self, now_ms: u64) -> TableTotals {
        let mut totals = TableTotals {
            users: 0,
            requests_total: self.departed_requests.load(Ordering::Relaxed),
            smoothed_rps: 0.0,
        };
        self.for_each(|_, entry| {
            totals.users += 1;
            totals.requests_total += entry.windows.requests_total();
            totals.smoothed_rps += entry.windows.smoothed_rps(now_ms);
        });
        totals
    }

    /// The shared entry for users arriving while the table is full: record
    /// their requests here so that they still count in aggregate. It is not
    /// in the table and is never evicted.
    pub fn overflow(&self) -> &Arc<UserEntry<E>> {
        &self.overflow
    }

    /// Arrivals refused with [`TableFull`] since the table was built.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Estimated bytes per tracked user: the entry with its windows and the
    /// `Arc` header, plus the map slot (key, pointer and control byte at the
    /// map's maximum load of 7/8). A map that has just doubled holds up to
    /// twice the slot part; allocator rounding is not included.
    pub fn bytes_per_user(&self) -> usize {
        let entry = std::mem::size_of::<UserEntry<E>>() + self.shape.bytes_per_user()
            - std::mem::size_of::<UserWindows>();
        let arc_header = 2 * std::mem::size_of::<usize>();
        let slot = (std::mem::size_of::<(u64, Arc<UserEntry<E>>)>() + 1) * 8 / 7;
        entry + arc_header + slot
    }
}

#[cfg(test)]
mod tests;
