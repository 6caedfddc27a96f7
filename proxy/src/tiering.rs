//! Predictive tiers and pre-allocation in the proxy: the per-user cell the
//! hot path reads, and the part of the forecast tick that fills it.
//!
//! The request path ([`crate::state::Shared::arrive`]) records, for
//! predictive policies, which rules' static conditions held
//! ([`headroom_policies::Policy::tagged_mask`]) and reads the tier the tick
//! assigned (one atomic load; the static first match until the tick has
//! seen the user under the current policy). It also notes an arrival during
//! a pre-allocation, which lets the request use the reserved admission
//! slots and counts the reservation as used once.
//!
//! The tick ([`Shaper`], called by the forecaster once per user after the
//! user's forecast is refreshed) decides each user's tier from the mask and
//! the user's predictions with hysteresis (see
//! [`headroom_policies::predictive`]), logs changes at debug, expires and
//! makes reservations, and offers each new one to the application hook
//! ([`hook`]).
//!
//! Per-user cost: [`ShapingCell`] is 16 bytes (an assignment word, a mask
//! word and a reservation word).

pub mod hook;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use headroom_config::{PreallocHook, RouteKind};
use headroom_policies::predictive::Predictions;
use headroom_policies::{Assignment, Policy, TierId};
use headroom_profiler::forecast::user::UserHorizonForecast;
use headroom_profiler::{NextActionTable, UserEntry, UserWindows, ROUTE_CLASSES};

use crate::insights::{Insights, InsightsHub};
use crate::state::{Shared, UserState};
use hook::{HookCounters, HookJob, HookWorker};

/// Reservation word: set once the user arrived while it held.
const RES_USED: u32 = 1 << 31;
/// Reservation word: slots held, bits 24..31.
const RES_SLOTS_SHIFT: u32 = 24;
/// Reservation word: the expiry second modulo 2^24, bits 0..24.
const RES_EXPIRY: u32 = (1 << RES_SLOTS_SHIFT) - 1;
const RES_MODULUS: u64 = 1 << RES_SLOTS_SHIFT;

/// What one user's entry holds for predictive shaping: 16 bytes.
#[derive(Debug, Default)]
pub struct ShapingCell {
    /// The tick's tier assignment ([`Assignment`], packed with the policy
    /// generation); 0 before the first.
    assignment: AtomicU64,
    /// The latest request's static-condition mask, tagged with the policy
    /// generation ([`Policy::tagged_mask`]); 0 before the first.
    mask: AtomicU32,
    /// The pre-allocation in force: expiry second (mod 2^24), slots and the
    /// used flag; 0 when none. Horizons are at most an hour, so the
    /// wrapping expiry compares exactly.
    reservation: AtomicU32,
}

/// Whether a request arrived during its user's pre-allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// No pre-allocation in force.
    No,
    /// In force, and this is the first arrival during it.
    FirstUse,
    /// In force, already used.
    Yes,
}

impl ShapingCell {
    /// Hot path: stores the request's tagged mask if it changed (a load,
    /// and rarely a store).
    #[inline]
    pub fn note_mask(&self, tagged: u32) {
        // Relaxed: a self-contained word, read by the tick.
        if self.mask.load(Ordering::Relaxed) != tagged {
            self.mask.store(tagged, Ordering::Relaxed);
        }
    }

    /// Hot path: the tier the tick assigned under policy `generation`.
    #[inline]
    pub fn tier(&self, generation: u8) -> Option<TierId> {
        Assignment::tier_of(self.assignment.load(Ordering::Relaxed), generation)
    }

    /// The assignment in force under `generation`, its start relative to
    /// `now_s`.
    pub fn assignment(&self, generation: u8, now_s: u64) -> Option<Assignment> {
        Assignment::unpack(self.assignment.load(Ordering::Relaxed), generation, now_s)
    }

    /// Hot path: whether a pre-allocation is in force at `now_s`; the first
    /// arrival during one marks it used.
    #[inline]
    pub fn arrive(&self, now_s: u64) -> Reserved {
        let word = self.reservation.load(Ordering::Relaxed);
        if !in_force(word, now_s) {
            return Reserved::No;
        }
        if word & RES_USED != 0 {
            return Reserved::Yes;
        }
        let before = self.reservation.fetch_or(RES_USED, Ordering::Relaxed);
        if before & RES_USED == 0 && in_force(before, now_s) {
            Reserved::FirstUse
        } else {
            Reserved::Yes
        }
    }

    /// The pre-allocation in force: seconds left and whether it was used.
    pub fn reservation(&self, now_s: u64) -> Option<(u64, bool)> {
        let word = self.reservation.load(Ordering::Relaxed);
        in_force(word, now_s).then(|| (remaining_s(word, now_s), word & RES_USED != 0))
    }
}

fn slots_of(word: u32) -> u32 {
    (word & !RES_USED) >> RES_SLOTS_SHIFT
}

fn remaining_s(word: u32, now_s: u64) -> u64 {
    (u64::from(word & RES_EXPIRY) + RES_MODULUS - now_s % RES_MODULUS) % RES_MODULUS
}

/// A word with slots whose expiry is still ahead (by at most half the
/// modulus, far above the longest horizon).
fn in_force(word: u32, now_s: u64) -> bool {
    let left = remaining_s(word, now_s);
    slots_of(word) > 0 && left > 0 && left <= RES_MODULUS / 2
}

/// One user's predictions, read lazily by the rules.
struct UserPredictions<'a> {
    rps_p90: Option<f64>,
    windows: &'a UserWindows,
    hub: &'a InsightsHub,
    kinds: &'a [RouteKind; ROUTE_CLASSES],
    table: Option<&'a NextActionTable>,
    now_ms: u64,
}

impl Predictions for UserPredictions<'_> {
    fn rps_p90(&self) -> Option<f64> {
        self.rps_p90
    }

    fn latency_score(&self) -> Option<f64> {
        Some(self.hub.sensitivity.user_score(self.windows, self.kinds))
    }

    fn next_action(&self, route_class: u8, within_ms: u64) -> Option<f64> {
        let table = self.table?;
        let (last, cohort) = self.windows.last_action().load();
        let horizons = table.horizons_ms();
        // The smallest tabulated horizon covering `within`, else the longest.
        let h = horizons
            .iter()
            .position(|&h| h >= within_ms)
            .unwrap_or(horizons.len().saturating_sub(1));
        table.probability(cohort, last?, self.now_ms, route_class, h)
    }
}

/// The tick's shaping state, kept between ticks.
pub struct Shaper {
    shared: Arc<Shared>,
    tick_s: f64,
    /// Slots in force after the previous tick: an upper bound on the live
    /// reservations of users not yet visited in this one.
    reserved: u32,
    counters: HookCounters,
    hook: Option<(PreallocHook, HookWorker)>,
}

impl Shaper {
    /// A shaper over `shared` for a forecast tick of `tick`; registers the
    /// pre-allocation and hook metrics.
    pub fn new(shared: &Arc<Shared>, tick: Duration) -> Self {
        let registry = shared.metrics.registry();
        shared.admission.prealloc.register(registry);
        let counters = HookCounters::new();
        counters.register(registry);
        Self {
            shared: Arc::clone(shared),
            tick_s: tick.as_secs_f64().max(1e-3),
            reserved: shared.admission.reserved(),
            counters,
            hook: None,
        }
    }

    /// Starts one tick's pass at `now_ms` (profiler clock).
    pub fn begin(&mut self, now_ms: u64) -> TickPass<'_> {
        let runtime = self.shared.runtime.load_full();
        self.sync_hook(runtime.policy.preallocation().and_then(|p| p.hook.as_ref()));
        let insights = self.shared.insights.snapshot();
        let kinds = crate::insights::route_kinds(&runtime.policy);
        TickPass {
            budget: self.reserved,
            live: 0,
            changes: 0,
            runtime,
            insights,
            kinds,
            now_ms,
            shaper: self,
        }
    }

    /// Starts, replaces or stops the hook worker to match `settings`.
    fn sync_hook(&mut self, settings: Option<&PreallocHook>) {
        let same = match (&self.hook, settings) {
            (Some((old, _)), Some(new)) => old == new,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        // Dropping the old worker's sender lets it finish its queue and stop.
        self.hook = settings.and_then(|s| {
            let worker = HookWorker::start(s, self.counters.clone())?;
            Some((s.clone(), worker))
        });
    }
}

/// One tick's pass over the users.
pub struct TickPass<'a> {
    shaper: &'a mut Shaper,
    runtime: Arc<crate::state::Runtime>,
    insights: Arc<Insights>,
    kinds: [RouteKind; ROUTE_CLASSES],
    now_ms: u64,
    /// Slots that may be held now (previous total, minus expiries, plus
    /// new reservations).
    budget: u32,
    /// Slots seen held in this pass.
    live: u32,
    changes: u32,
}

impl TickPass<'_> {
    /// Decides `entry`'s tier and pre-allocation; `forecast` is the user's
    /// first-horizon forecast from this tick, if any.
    pub fn user(
        &mut self,
        key: u64,
        entry: &UserEntry<UserState>,
        forecast: Option<&UserHorizonForecast>,
    ) {
        let (runtime, insights) = (Arc::clone(&self.runtime), Arc::clone(&self.insights));
        let (shared, kinds) = (Arc::clone(&self.shaper.shared), self.kinds);
        let policy = &runtime.policy;
        let cell = &entry.extra.shaping;
        let now_s = self.now_ms / 1000;
        let held = self.expire(cell, now_s);
        if !policy.is_predictive() {
            return;
        }
        // Not seen since the policy changed: nothing to decide from yet.
        let Some(mask) = policy.untag_mask(cell.mask.load(Ordering::Relaxed)) else {
            return;
        };
        let predictions = UserPredictions {
            rps_p90: forecast.map(|f| f.count.p90 / self.shaper.tick_s),
            windows: &entry.windows,
            hub: &shared.insights,
            kinds: &kinds,
            table: insights.next_action.as_deref(),
            now_ms: self.now_ms,
        };
        if policy.has_predictive_rules() {
            self.assign(policy, key, cell, mask, &predictions, now_s);
        }
        if !held {
            self.preallocate(policy, key, cell, mask, &predictions, now_s);
        }
    }

    /// Settles the user's tier; logs a change at debug.
    fn assign(
        &mut self,
        policy: &Policy,
        key: u64,
        cell: &ShapingCell,
        mask: u32,
        predictions: &UserPredictions<'_>,
        now_s: u64,
    ) {
        let generation = policy.generation();
        let prev = cell.assignment(generation, now_s);
        let settled = policy.settle(prev, policy.decide(mask, predictions), now_s);
        let word = settled.assignment.pack(generation);
        if cell.assignment.load(Ordering::Relaxed) != word {
            cell.assignment.store(word, Ordering::Relaxed);
        }
        if settled.changed {
            self.changes += 1;
            tracing::debug!(
                user.id = %format_args!("{key:016x}"),
                tier.from = prev.map_or("none", |p| policy.tier(p.tier).name()),
                tier.to = policy.tier(settled.assignment.tier).name(),
                reason = %policy.reason(&settled.assignment),
                "tier assigned"
            );
        }
    }

    /// Clears an expired reservation (counting it if unused); returns
    /// whether one is still in force.
    fn expire(&mut self, cell: &ShapingCell, now_s: u64) -> bool {
        let word = cell.reservation.load(Ordering::Relaxed);
        if word == 0 {
            return false;
        }
        if in_force(word, now_s) {
            self.live += slots_of(word);
            return true;
        }
        let old = cell.reservation.swap(0, Ordering::Relaxed);
        if slots_of(old) > 0 {
            self.budget = self.budget.saturating_sub(slots_of(old));
            if old & RES_USED == 0 {
                self.shaper.shared.admission.prealloc.expired_unused.inc();
            }
        }
        false
    }

    /// Reserves slots for the user if the policy predicts them active and
    /// the budget allows; offers the reservation to the hook.
    fn preallocate(
        &mut self,
        policy: &Policy,
        key: u64,
        cell: &ShapingCell,
        mask: u32,
        predictions: &UserPredictions<'_>,
        now_s: u64,
    ) {
        let (Some(settings), Some((cause, value))) = (
            policy.preallocation(),
            policy.wants_preallocation(mask, predictions),
        ) else {
            return;
        };
        let slots = settings.slots_per_user;
        if self.budget.saturating_add(slots) > settings.max_reserved_slots {
            return;
        }
        let horizon_s = settings.horizon.as_secs().max(1);
        let expiry = ((now_s + horizon_s) % RES_MODULUS) as u32;
        cell.reservation
            .store(expiry | slots << RES_SLOTS_SHIFT, Ordering::Relaxed);
        self.budget += slots;
        self.live += slots;
        self.shaper.shared.admission.prealloc.made.inc();
        if let Some((_, worker)) = &self.shaper.hook {
            worker.offer(HookJob {
                user: key,
                predicted_rps: predictions.rps_p90.unwrap_or(0.0),
                horizon_s,
                reason: policy.preallocation_reason(cause, value),
            });
        }
    }

    /// Ends the pass: publishes the slots held to the admission gate.
    pub fn finish(self) {
        let slots = self.live;
        self.shaper.shared.admission.set_reserved(slots);
        self.shaper.reserved = slots;
        if self.changes > 0 {
            tracing::debug!(
                changes = self.changes,
                reserved_slots = slots,
                "tiers settled"
            );
        }
    }
}

#[cfg(test)]
mod tests;
