//! The admission gate: at most `limit` requests at the upstreams at once;
//! beyond that, requests wait in a weighted-fair queue by tier and are shed
//! with 503 when their tier's maximum queue time passes.
//!
//! The unsaturated path is lock-free: a compare-and-swap on the in-flight
//! count. The lock around the queue is taken only while someone waits, and
//! never across an await. Ordering argument: a waiter increments `waiting`
//! under the lock *before* re-checking the in-flight count, and a release
//! decrements the count *before* checking `waiting` (both sequentially
//! consistent), so a release either sees the waiter and dispatches to it, or
//! happened early enough that the waiter's own re-check finds the room.
//!
//! Pre-allocation (see [`crate::tiering`]) reserves part of the limit for
//! users predicted to arrive soon: while `reserved` slots are held, requests
//! of other users are admitted only below `limit - reserved` (never below
//! one slot), and requests of a reserved user up to the whole limit. Queued
//! requests are dispatched within the unreserved part.
//!
//! The limit is adaptive (see `headroom_policies::admission`), fed with
//! upstream latencies less the proxy's own event-loop lag ([`lag`]), so a
//! busy proxy does not mistake its own run queue for a slow backend. The gate lives
//! as long as the process; a reload replaces its tier settings and sheds the
//! requests that were waiting at that moment (rare, and safer than guessing
//! which new tier an old waiter belongs to).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use headroom_config::Admission as AdmissionConfig;
use headroom_policies::admission::{ConcurrencyLimit, FairQueue, LimitSettings, TierShare};
use headroom_profiler::Clock;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::oneshot;

pub mod lag;

use lag::LoopLag;

/// Per-tier queue settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TierQueue {
    /// Scheduling weight and floor.
    pub share: TierShare,
    /// Longest wait before the request is shed.
    pub max_queue_time: Duration,
}

struct Queue {
    fair: FairQueue<oneshot::Sender<()>>,
    tiers: Vec<TierQueue>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue was at its length limit.
    QueueFull,
    /// The tier's maximum queue time passed.
    Timeout,
}

/// Route classes tracked for latency normalisation (the policy's 0..=8).
const ROUTE_CLASSES: usize = 9;

/// The gate, shared by all requests.
pub struct AdmissionGate {
    enabled: bool,
    /// Per route class, the no-load latency floor in µs (fall fast, rise
    /// slowly), so one cheap and one expensive route do not look like
    /// queueing to the limit when their mix changes.
    route_floor_us: [AtomicU64; ROUTE_CLASSES],
    limit: ConcurrencyLimit,
    in_flight: AtomicU32,
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
    max_queue: usize,
    /// Time source for queue deadlines (the profiler's clock).
    clock: Box<dyn Clock>,
    /// Slots held for pre-allocated users (set by the forecast tick).
    reserved: AtomicU32,
    /// The proxy runtime's own lag, added to the no-load floor; its
    /// probe starts with the first request when the limit is adaptive.
    lag: Arc<LoopLag>,
    /// Pre-allocation counters.
    pub prealloc: PreallocCounters,
}

/// Pre-allocation metrics (no user labels). Created with the gate and
/// registered once with [`PreallocCounters::register`].
#[derive(Clone)]
pub struct PreallocCounters {
    /// `headroom_preallocations_total`: reservations made.
    pub made: IntCounter,
    /// `headroom_preallocations_used_total`: reservations whose user arrived
    /// while they were held.
    pub used: IntCounter,
    /// `headroom_preallocations_expired_unused_total`: reservations that
    /// reached their horizon with no arrival.
    pub expired_unused: IntCounter,
    /// `headroom_preallocated_slots`: admission slots reserved now.
    pub reserved_slots: IntGauge,
}

impl PreallocCounters {
    fn new() -> Self {
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("static metric definition");
        Self {
            made: counter(
                "headroom_preallocations_total",
                "Pre-allocations made for users predicted to arrive.",
            ),
            used: counter(
                "headroom_preallocations_used_total",
                "Pre-allocations whose user arrived while the reservation held.",
            ),
            expired_unused: counter(
                "headroom_preallocations_expired_unused_total",
                "Pre-allocations that reached their horizon without an arrival.",
            ),
            reserved_slots: IntGauge::new(
                "headroom_preallocated_slots",
                "Admission slots reserved for pre-allocated users now.",
            )
            .expect("static metric definition"),
        }
    }

    /// Registers the four families in `registry`; a second call (another
    /// tick task over the same state, in tests) is a no-op.
    pub fn register(&self, registry: &Registry) {
        let families: [Box<dyn prometheus::core::Collector>; 4] = [
            Box::new(self.made.clone()),
            Box::new(self.used.clone()),
            Box::new(self.expired_unused.clone()),
            Box::new(self.reserved_slots.clone()),
        ];
        for family in families {
            if let Err(e) = registry.register(family) {
                tracing::debug!(error = %e, "pre-allocation metrics already registered");
            }
        }
    }
}

/// An admitted request's slot; dropping it lets the next request in.
pub struct Permit {
    gate: Arc<AdmissionGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl AdmissionGate {
    /// A gate from the `admission` config and the policy's tiers.
    pub fn new(config: &AdmissionConfig, tiers: Vec<TierQueue>, clock: Box<dyn Clock>) -> Self {
        let settings = LimitSettings {
            min: config.min_concurrency,
            max: config.max_concurrency,
            initial: config.initial_concurrency,
            adaptive: config.adaptive,
            tolerance: config.latency_tolerance,
        };
        let shares: Vec<TierShare> = tiers.iter().map(|t| t.share).collect();
        Self {
            enabled: config.enabled,
            route_floor_us: std::array::from_fn(|_| AtomicU64::new(0)),
            limit: ConcurrencyLimit::new(settings),
            in_flight: AtomicU32::new(0),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Queue {
                fair: FairQueue::new(&shares, config.max_queue),
                tiers,
            }),
            max_queue: config.max_queue,
            clock,
            reserved: AtomicU32::new(0),
            lag: Arc::default(),
            prealloc: PreallocCounters::new(),
        }
    }

    /// Holds `slots` of the limit for pre-allocated users (replacing the
    /// previous amount); see the module docs.
    pub fn set_reserved(&self, slots: u32) {
        self.reserved.store(slots, Ordering::Relaxed);
        self.prealloc.reserved_slots.set(i64::from(slots));
    }

    /// Slots held for pre-allocated users now.
    pub fn reserved(&self) -> u32 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Whether the gate limits anything.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The current concurrency limit.
    pub fn limit(&self) -> u32 {
        self.limit.current()
    }

    /// Requests at the upstreams now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether the backend is saturated now: requests are waiting, or every
    /// slot is taken.
    pub fn is_saturated(&self) -> bool {
        self.enabled
            && (self.waiting.load(Ordering::Relaxed) > 0
                || self.in_flight.load(Ordering::Relaxed) >= self.limit.current())
    }

    /// Requests waiting per tier (index order of the policy).
    pub fn queue_depths(&self) -> Vec<usize> {
        let q = self.lock();
        (0..q.tiers.len()).map(|t| q.fair.tier_len(t)).collect()
    }

    /// Replaces the tier settings after a reload; requests waiting now are
    /// shed (their receivers see the sender dropped).
    pub fn reconfigure(&self, tiers: Vec<TierQueue>) {
        let mut q = self.lock();
        if q.tiers == tiers {
            return;
        }
        let shares: Vec<TierShare> = tiers.iter().map(|t| t.share).collect();
        q.fair = FairQueue::new(&shares, self.max_queue);
        q.tiers = tiers;
        self.waiting.store(0, Ordering::SeqCst);
    }

    /// The maximum queue time of `tier` (for `Retry-After`).
    pub fn max_queue_time(&self, tier: usize) -> Duration {
        self.lock()
            .tiers
            .get(tier)
            .map_or(Duration::from_secs(1), |t| t.max_queue_time)
    }

    /// The proxy runtime's event-loop lag estimate in µs (0 while the
    /// limit is fixed: the probe runs only for the adaptive limit).
    pub fn loop_lag_us(&self) -> u64 {
        self.lag.current_us()
    }

    /// Feeds one upstream latency sample of route class `route` to the
    /// adaptive limit, as a stretch over that route's own no-load floor
    /// (1000 = at the floor), so the limit reacts to queueing, not to which
    /// routes happen to be popular. The floor is raised by the proxy's own
    /// event-loop lag first (see [`lag`]).
    pub fn on_latency(&self, route: u8, latency: Duration) {
        let now_ms = self.clock.now_ms();
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let Some(floor) = self.route_floor_us.get(usize::from(route)) else {
            return;
        };
        // Written only when it moves (most samples leave it where it is), so
        // worker threads do not take the cache line from each other for nothing.
        let next = |old: u64| match old {
            0 => us,
            // Fall fast (a quarter of the gap), rise slowly (1/4096).
            _ if us < old => old - (old - us) / 4,
            _ => old + (us - old) / 4096,
        };
        let updated = match floor.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(next(old)).filter(|&n| n != old)
        }) {
            Ok(old) => next(old),
            Err(unchanged) => unchanged,
        };
        // Compared with the floor plus what the proxy's own run queue adds
        // now, so a CPU-bound proxy does not read its lag as backend
        // queueing. When that lag outweighs the backend's whole no-load
        // latency, the proxy is the bottleneck and a smaller limit would
        // only queue requests in front of an idle backend: the sample then
        // counts as no stretch at all.
        let queueing = self.lag.queueing_us();
        let expected = updated.saturating_add(queueing).max(1);
        let stretch_per_mille = if queueing > updated {
            1000
        } else {
            us.saturating_mul(1000) / expected
        };
        self.limit
            .on_sample(stretch_per_mille, self.in_flight(), now_ms);
    }

    /// Admits a request of `tier` now, or queues it; resolves to a permit or
    /// to the reason it was shed. For users without a reservation.
    pub async fn acquire(self: &Arc<Self>, tier: usize) -> Result<Permit, Shed> {
        self.acquire_for(tier, false).await
    }

    /// [`Self::acquire`] for a request whose user holds a pre-allocation
    /// (`reserved`): it may also take the reserved slots.
    pub async fn acquire_for(
        self: &Arc<Self>,
        tier: usize,
        reserved: bool,
    ) -> Result<Permit, Shed> {
        if self.enabled && self.limit.settings().adaptive {
            self.lag.ensure_probe();
        }
        if !self.enabled
            || (reserved && self.try_take_below(self.limit.current()))
            || (self.waiting.load(Ordering::SeqCst) == 0 && self.try_take())
        {
            return Ok(self.permit());
        }

        // Saturated (or others already wait): join the queue.
        let (tx, rx) = oneshot::channel();
        let now_ms = self.clock.now_ms();
        let wait = {
            let mut q = self.lock();
            let wait = q
                .tiers
                .get(tier)
                .map_or(Duration::from_secs(1), |t| t.max_queue_time);
            let deadline =
                now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            match q.fair.push(tier, deadline, tx) {
                Err(_) => return Err(Shed::QueueFull),
                // A lighter tier's newest waiter made room: dropping its
                // sender sheds it, and the waiting count is unchanged.
                Ok(Some((_, displaced))) => drop(displaced),
                Ok(None) => {
                    self.waiting.fetch_add(1, Ordering::SeqCst);
                }
            }
            self.dispatch(&mut q, now_ms);
            wait
        };

        // The releaser hands its slot over (in-flight stays counted).
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(())) => Ok(self.permit()),
            _ => Err(Shed::Timeout),
        }
    }

    /// Sheds waiters whose deadline passed (the periodic sweep).
    pub fn expire(&self) {
        let now_ms = self.clock.now_ms();
        let mut q = self.lock();
        let mut dropped = 0;
        q.fair.expire(now_ms, |_, tx| {
            dropped += 1;
            drop(tx);
        });
        self.waiting.fetch_sub(dropped, Ordering::SeqCst);
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            gate: Arc::clone(self),
        }
    }

    /// Takes a slot if the in-flight count is below the unreserved part of
    /// the limit (at least one slot).
    fn try_take(&self) -> bool {
        let limit = self.limit.current();
        let reserved = self.reserved.load(Ordering::Relaxed);
        self.try_take_below(limit.saturating_sub(reserved).max(1))
    }

    /// Takes a slot if the in-flight count is below `limit`.
    fn try_take_below(&self, limit: u32) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        if !self.enabled {
            return;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let now_ms = self.clock.now_ms();
            let mut q = self.lock();
            self.dispatch(&mut q, now_ms);
        }
    }

    /// Hands free slots to waiters in fair order; waiters that gave up (their
    /// receiver dropped) return the slot and the next one is tried.
    fn dispatch(&self, q: &mut MutexGuard<'_, Queue>, now_ms: u64) {
        while self.try_take() {
            let mut expired = 0;
            let next = q.fair.pop(now_ms, |_, _| expired += 1);
            self.waiting.fetch_sub(expired, Ordering::SeqCst);
            let Some((_, tx)) = next else {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if tx.send(()).is_err() {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every
        // mutation is a single push or pop), so poisoning is ignored.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_profiler::SystemClock;

    fn gate(max: u32, tiers: &[(f64, f64, u64)]) -> Arc<AdmissionGate> {
        let config = AdmissionConfig {
            enabled: true,
            adaptive: false,
            max_concurrency: max,
            min_concurrency: 1,
            initial_concurrency: max,
            latency_tolerance: 2.0,
            max_queue: 100,
        };
        let tiers = tiers
            .iter()
            .map(|&(weight, min_share, ms)| TierQueue {
                share: TierShare { weight, min_share },
                max_queue_time: Duration::from_millis(ms),
            })
            .collect();
        Arc::new(AdmissionGate::new(&config, tiers, Box::new(SystemClock)))
    }

    #[tokio::test(start_paused = true)]
    async fn under_the_limit_admits_at_once_and_release_frees_the_slot() {
        let g = gate(2, &[(1.0, 0.0, 1000)]);
        let a = g.acquire(0).await.expect("room");
        let _b = g.acquire(0).await.expect("room");
        assert_eq!(g.in_flight(), 2);
        drop(a);
        assert_eq!(g.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_is_shed_after_its_tier_queue_time() {
        let g = gate(1, &[(1.0, 0.0, 200)]);
        let _held = g.acquire(0).await.expect("room");
        let started = tokio::time::Instant::now();
        assert_eq!(g.acquire(0).await.err(), Some(Shed::Timeout));
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn released_slot_goes_to_the_heavier_tier_first() {
        let g = gate(1, &[(8.0, 0.0, 10_000), (1.0, 0.0, 10_000)]);
        let held = g.acquire(0).await.expect("room");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // The light tier queues first; the heavy one still goes first.
        for tier in [1usize, 0] {
            let (g, order) = (Arc::clone(&g), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let permit = g.acquire(tier).await.expect("admitted");
                order.lock().expect("lock").push(tier);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock().expect("lock"), vec![0, 1]);
        assert_eq!(g.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_sheds_immediately() {
        let config = AdmissionConfig {
            max_queue: 0,
            adaptive: false,
            max_concurrency: 1,
            min_concurrency: 1,
            ..AdmissionConfig::default()
        };
        let tier = TierQueue {
            share: TierShare {
                weight: 1.0,
                min_share: 0.0,
            },
            max_queue_time: Duration::from_secs(1),
        };
        let g = Arc::new(AdmissionGate::new(
            &config,
            vec![tier],
            Box::new(SystemClock),
        ));
        let _held = g.acquire(0).await.expect("room");
        assert_eq!(g.acquire(0).await.err(), Some(Shed::QueueFull));
    }

    #[tokio::test(start_paused = true)]
    async fn reserved_slots_are_not_taken_by_other_users() {
        let g = gate(4, &[(1.0, 0.0, 100)]);
        g.set_reserved(2);
        let _a = g.acquire(0).await.expect("unreserved slot 1");
        let _b = g.acquire(0).await.expect("unreserved slot 2");
        // The other two are held: an ordinary request waits and is shed.
        assert_eq!(g.acquire(0).await.err(), Some(Shed::Timeout));
        assert_eq!(g.in_flight(), 2);
        // The pre-allocated user gets them at once.
        let _c = g.acquire_for(0, true).await.expect("reserved slot");
        let _d = g.acquire_for(0, true).await.expect("reserved slot");
        assert_eq!(g.in_flight(), 4);
        // The whole limit is in use now, even for reserved users.
        assert_eq!(g.acquire_for(0, true).await.err(), Some(Shed::Timeout));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_reservation_gives_the_slots_back() {
        let g = gate(2, &[(1.0, 0.0, 100)]);
        g.set_reserved(5);
        // A reservation never takes the last slot from everyone else.
        let held = g.acquire(0).await.expect("one slot always stays open");
        assert_eq!(g.acquire(0).await.err(), Some(Shed::Timeout));
        g.set_reserved(0);
        let _second = g.acquire(0).await.expect("free again");
        drop(held);
        assert_eq!(g.prealloc.reserved_slots.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_gate_admits_everything() {
        let config = AdmissionConfig {
            enabled: false,
            max_concurrency: 1,
            ..AdmissionConfig::default()
        };
        let g = Arc::new(AdmissionGate::new(&config, vec![], Box::new(SystemClock)));
        let _a = g.acquire(0).await.expect("open");
        let _b = g.acquire(0).await.expect("open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_sheds_the_lighter_tier_for_a_premium_arrival() {
        let config = AdmissionConfig {
            enabled: true,
            adaptive: false,
            max_concurrency: 1,
            min_concurrency: 1,
            max_queue: 1,
            ..AdmissionConfig::default()
        };
        let tiers = [(8.0, 10_000), (1.0, 10_000)]
            .iter()
            .map(|&(weight, ms)| TierQueue {
                share: TierShare {
                    weight,
                    min_share: 0.0,
                },
                max_queue_time: Duration::from_millis(ms),
            })
            .collect();
        let g = Arc::new(AdmissionGate::new(&config, tiers, Box::new(SystemClock)));
        let held = g.acquire(0).await.expect("room");
        let free = tokio::spawn({
            let g = Arc::clone(&g);
            async move { g.acquire(1).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(g.queue_depths(), vec![0, 1], "the free request waits");
        let premium = tokio::spawn({
            let g = Arc::clone(&g);
            async move { g.acquire(0).await.map(drop) }
        });
        assert_eq!(
            free.await.expect("task"),
            Err(Shed::Timeout),
            "pushed out at once, long before its 10 s"
        );
        drop(held);
        assert_eq!(premium.await.expect("task"), Ok(()), "premium got the slot");
    }
}
