//! Weighted fair queueing of waiting requests across tiers.
//!
//! Each tier has a FIFO of waiters and a virtual finish time. The next waiter
//! comes from the backlogged tier with the smallest virtual time, which then
//! advances by `1 / weight`: over any busy period each backlogged tier gets a
//! share of admissions proportional to its weight. A tier that was idle
//! re-enters at the current virtual time, so idleness earns no burst credit.
//!
//! A tier with `min_share > 0` also accrues `min_share` credit per admission
//! while it is backlogged; when its credit reaches one it goes next whatever
//! the virtual times say. This is the floor that protects the lowest tier
//! when heavier tiers' weights would otherwise leave it a sliver.
//!
//! Waiters carry a deadline; [`FairQueue::pop`] drops expired ones (returning
//! them so the caller can answer 503) and never hands out an expired waiter.
//!
//! When the queue is full, a newcomer pushes out the newest waiter of the
//! lightest backlogged tier that weighs less than its own, rather than being
//! refused: otherwise a flood of low-tier requests, each waiting out its
//! deadline, would fill the queue and refuse every premium arrival.

use std::collections::VecDeque;

/// Per-tier scheduling parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TierShare {
    /// Relative share when several tiers are waiting; > 0.
    pub weight: f64,
    /// Guaranteed fraction of admissions while this tier is waiting, in
    /// [0, 1). Zero means weight only.
    pub min_share: f64,
}

/// The queue was at its length limit; the request should be shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("admission queue is full")]
pub struct QueueFull;

struct Lane<T> {
    waiters: VecDeque<(u64, T)>,
    virtual_time: f64,
    credit: f64,
    share: TierShare,
}

/// Waiting requests of every tier, in fair order. `T` is the caller's waiter
/// handle (the proxy uses a one-shot sender).
pub struct FairQueue<T> {
    lanes: Vec<Lane<T>>,
    len: usize,
    max_len: usize,
    /// Virtual time of the last admission: where idle tiers re-enter.
    now_virtual: f64,
}

impl<T> FairQueue<T> {
    /// A queue for tiers with `shares` (indexed like the policy's tiers)
    /// holding at most `max_len` waiters in total. Non-positive or non-finite
    /// weights are treated as a tiny weight, never as zero.
    pub fn new(shares: &[TierShare], max_len: usize) -> Self {
        let lanes = shares
            .iter()
            .map(|share| Lane {
                waiters: VecDeque::new(),
                virtual_time: 0.0,
                credit: 0.0,
                share: TierShare {
                    weight: if share.weight.is_finite() && share.weight > 0.0 {
                        share.weight
                    } else {
                        1e-3
                    },
                    min_share: share.min_share.clamp(0.0, 0.99),
                },
            })
            .collect();
        Self {
            lanes,
            len: 0,
            max_len,
            now_virtual: 0.0,
        }
    }

    /// Waiters queued now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waiters of one tier (0 for an unknown tier).
    pub fn tier_len(&self, tier: usize) -> usize {
        self.lanes.get(tier).map_or(0, |l| l.waiters.len())
    }

    /// Queues `waiter` for `tier` until `deadline_ms`. An unknown tier index
    /// is queued in the last lane (the policy's lowest by convention).
    ///
    /// When the queue is full, the newest waiter of the lightest backlogged
    /// tier weighing less than `tier` is pushed out and returned with its
    /// tier (`Ok(Some(..))`, to be answered 503); with no lighter waiter the
    /// newcomer is refused.
    ///
    /// # Errors
    /// [`QueueFull`] when the queue is full of waiters at least as heavy.
    pub fn push(
        &mut self,
        tier: usize,
        deadline_ms: u64,
        waiter: T,
    ) -> Result<Option<(usize, T)>, QueueFull> {
        if self.lanes.is_empty() {
            return Err(QueueFull);
        }
        let index = tier.min(self.lanes.len() - 1);
        let displaced = if self.len >= self.max_len {
            Some(self.push_out_lighter_than(index).ok_or(QueueFull)?)
        } else {
            None
        };
        let now_virtual = self.now_virtual;
        let lane = &mut self.lanes[index];
        if lane.waiters.is_empty() {
            // Re-entering after idleness: no credit for the time away.
            lane.virtual_time = lane.virtual_time.max(now_virtual);
        }
        lane.waiters.push_back((deadline_ms, waiter));
        self.len += 1;
        Ok(displaced)
    }

    /// Removes the newest waiter of the lightest backlogged lane weighing
    /// less than lane `index` (ties to the later lane), if any.
    fn push_out_lighter_than(&mut self, index: usize) -> Option<(usize, T)> {
        let weight = self.lanes[index].share.weight;
        let (victim, _) = self
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.waiters.is_empty() && l.share.weight < weight)
            .min_by(|(a, la), (b, lb)| {
                la.share.weight.total_cmp(&lb.share.weight).then(b.cmp(a))
            })?;
        let (_, waiter) = self.lanes[victim].waiters.pop_back()?;
        self.len -= 1;
        Some((victim, waiter))
    }

    /// The next waiter to admit at `now_ms`, with its tier; expired waiters
    /// met on the way are passed to `expired` (to be answered 503).
    pub fn pop(&mut self, now_ms: u64, mut expired: impl FnMut(usize, T)) -> Option<(usize, T)> {
        self.drop_expired_heads(now_ms, &mut expired);
        let tier = self.next_tier()?;
        let (_, waiter) = self.lanes[tier].waiters.pop_front()?;
        self.len -= 1;
        self.account(tier);
        Some((tier, waiter))
    }

    /// Removes every expired waiter (for a periodic sweep while nothing is
    /// released), passing each to `expired`.
    pub fn expire(&mut self, now_ms: u64, mut expired: impl FnMut(usize, T)) {
        for tier in 0..self.lanes.len() {
            let lane = &mut self.lanes[tier];
            let before = lane.waiters.len();
            let mut kept = VecDeque::with_capacity(before);
            for (deadline, waiter) in lane.waiters.drain(..) {
                if deadline <= now_ms {
                    expired(tier, waiter);
                } else {
                    kept.push_back((deadline, waiter));
                }
            }
            self.len -= before - kept.len();
            lane.waiters = kept;
        }
    }

    fn drop_expired_heads(&mut self, now_ms: u64, expired: &mut impl FnMut(usize, T)) {
        for (tier, lane) in self.lanes.iter_mut().enumerate() {
            while lane.waiters.front().is_some_and(|(d, _)| *d <= now_ms) {
                if let Some((_, waiter)) = lane.waiters.pop_front() {
                    self.len -= 1;
                    expired(tier, waiter);
                }
            }
        }
    }

    /// A tier owed its minimum share first; otherwise the smallest virtual
    /// time (ties to the lower index, the higher-priority tier).
    fn next_tier(&self) -> Option<usize> {
        let backlogged = || {
            self.lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.waiters.is_empty())
        };
        if let Some((tier, _)) = backlogged().find(|(_, l)| l.credit >= 1.0) {
            return Some(tier);
        }
        backlogged()
            .min_by(|(_, a), (_, b)| a.virtual_time.total_cmp(&b.virtual_time))
            .map(|(tier, _)| tier)
    }

    fn account(&mut self, chosen: usize) {
        for (tier, lane) in self.lanes.iter_mut().enumerate() {
            // Every admission while a tier waits earns it `min_share`; each
            // of its own admissions spends one. Debt is not carried, so a
            // tier that ran above its floor is not punished later.
            if tier == chosen || !lane.waiters.is_empty() {
                lane.credit += lane.share.min_share;
            }
            if tier == chosen {
                lane.credit = (lane.credit - 1.0).max(0.0);
                let step = 1.0 / lane.share.weight;
                lane.virtual_time += step;
                self.now_virtual = self.now_virtual.max(lane.virtual_time - step);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(weight: f64, min_share: f64) -> TierShare {
        TierShare { weight, min_share }
    }

    /// Keeps every tier backlogged and counts who is admitted in `rounds`.
    fn admissions(shares: &[TierShare], rounds: usize) -> Vec<usize> {
        let mut q = FairQueue::new(shares, 10_000);
        for tier in 0..shares.len() {
            for _ in 0..rounds {
                q.push(tier, u64::MAX, ()).expect("room");
            }
        }
        let mut counts = vec![0; shares.len()];
        for _ in 0..rounds {
            let (tier, ()) = q
                .pop(0, |_, _| panic!("nothing expires"))
                .expect("backlogged");
            counts[tier] += 1;
        }
        counts
    }

    #[test]
    fn backlogged_tiers_share_by_weight() {
        let counts = admissions(&[share(8.0, 0.0), share(4.0, 0.0), share(1.0, 0.0)], 1300);
        assert_eq!(counts, vec![800, 400, 100]);
    }

    #[test]
    fn minimum_share_protects_the_lowest_tier() {
        let counts = admissions(&[share(100.0, 0.0), share(1.0, 0.10)], 1000);
        assert!(counts[1] >= 100, "lowest tier got {counts:?}");
        // Without the floor its weight alone gives it about 1%.
        let plain = admissions(&[share(100.0, 0.0), share(1.0, 0.0)], 1000);
        assert!(plain[1] <= 11, "{plain:?}");
    }

    #[test]
    fn fifo_within_a_tier() {
        let mut q = FairQueue::new(&[share(1.0, 0.0)], 10);
        for id in 0..5 {
            q.push(0, u64::MAX, id).expect("room");
        }
        let order: Vec<i32> =
            std::iter::from_fn(|| q.pop(0, |_, _| {}).map(|(_, id)| id)).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn expired_waiters_are_never_admitted() {
        let mut q = FairQueue::new(&[share(1.0, 0.0), share(1.0, 0.0)], 10);
        q.push(0, 100, "late").expect("room");
        q.push(1, 500, "on time").expect("room");
        let mut shed = Vec::new();
        let next = q.pop(200, |tier, w| shed.push((tier, w)));
        assert_eq!(next, Some((1, "on time")));
        assert_eq!(shed, vec![(0, "late")]);
        assert!(q.is_empty());
    }

    #[test]
    fn idle_tier_earns_no_burst_credit() {
        let mut q = FairQueue::new(&[share(1.0, 0.0), share(1.0, 0.0)], 1000);
        for _ in 0..100 {
            q.push(0, u64::MAX, 0).expect("room");
        }
        for _ in 0..50 {
            q.pop(0, |_, _| {});
        }
        // Tier 1 arrives late: it alternates with tier 0 instead of taking 50 in a row.
        for _ in 0..10 {
            q.push(1, u64::MAX, 1).expect("room");
        }
        let next: Vec<usize> = (0..6)
            .filter_map(|_| q.pop(0, |_, _| {}).map(|(t, _)| t))
            .collect();
        assert_eq!(next.iter().filter(|t| **t == 1).count(), 3, "{next:?}");
    }

    #[test]
    fn full_queue_refuses_and_unknown_tier_goes_last() {
        let mut q = FairQueue::new(&[share(1.0, 0.0), share(1.0, 0.0)], 2);
        q.push(0, u64::MAX, ()).expect("room");
        q.push(7, u64::MAX, ()).expect("room");
        assert_eq!(q.tier_len(1), 1);
        assert_eq!(
            q.push(0, u64::MAX, ()),
            Err(QueueFull),
            "no lighter tier to push out"
        );
    }

    #[test]
    fn full_queue_pushes_out_the_newest_waiter_of_the_lightest_tier() {
        let shares = [share(8.0, 0.0), share(4.0, 0.0), share(1.0, 0.0)];
        let mut q = FairQueue::new(&shares, 3);
        q.push(1, u64::MAX, "standard-old").expect("room");
        q.push(2, u64::MAX, "free-old").expect("room");
        q.push(2, u64::MAX, "free-new").expect("room");
        assert_eq!(
            q.push(0, u64::MAX, "premium"),
            Ok(Some((2, "free-new"))),
            "the lightest tier's newest waiter goes"
        );
        assert_eq!(
            q.push(1, u64::MAX, "standard-new"),
            Ok(Some((2, "free-old")))
        );
        assert_eq!(
            q.push(2, u64::MAX, "free-again"),
            Err(QueueFull),
            "nothing lighter"
        );
        assert_eq!(q.len(), 3);
        assert_eq!(
            q.push(0, u64::MAX, "premium-2"),
            Ok(Some((1, "standard-new")))
        );
        let mut order = Vec::new();
        while let Some((_, w)) = q.pop(0, |_, _| {}) {
            order.push(w);
        }
        assert_eq!(order.len(), 3);
        assert!(order.contains(&"standard-old") && order.contains(&"premium"));
    }

    #[test]
    fn expire_sweep_counts_down_len() {
        let mut q = FairQueue::new(&[share(1.0, 0.0)], 10);
        q.push(0, 10, ()).expect("room");
        q.push(0, 20, ()).expect("room");
        let mut n = 0;
        q.expire(15, |_, ()| n += 1);
        assert_eq!((n, q.len()), (1, 1));
    }
}
