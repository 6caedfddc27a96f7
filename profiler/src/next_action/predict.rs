//! From counts to probabilities: shrunk hazards, then a dynamic programme
//! over the horizon, tabulated on a grid of idle times.
//!
//! Hazards. For idle-time bucket `b` and next class `c`, the rate is events
//! over exposure with a Gamma prior worth `prior_users` users spending the
//! whole bucket at the parent level's rate:
//! `(E + s_b * parent) / (X + s_b)`, `s_b = prior_users * width_b`. Levels:
//! everyone (a bucket nobody was exposed in copies the previous bucket's
//! rate) -> last class -> cohort and last class. A cohort slot with no data
//! at all, or whose id is not in the latest clustering, is the last-class
//! level itself.
//!
//! Probability of "some action of class k within H" from last class `a`
//! and idle time `e`, with the horizon cut in `steps` equal steps of `d`:
//! `P(a, e) = sum over steps i and next classes c of
//!    p(a, e, i, c) * (1 if c = k else G(c, H - (i + 1) d))`,
//! where `p(a, e, i, c)` is the probability that the first next action falls
//! in step `i` and is of class `c` (exact for piecewise-constant hazards),
//! and `G(c, r)` is the same probability from class `c` at idle time 0 with
//! `r` left, computed first by the same recursion for every multiple of `d`.
//! Taking the remaining time from the end of the step rather than the
//! actual moment under-counts follow-up actions by at most one step.

use crate::activity::ROUTE_CLASSES;
use crate::cohort::CohortId;
use crate::next_action::{
    bucket_start, event_index, exposure_index, slot, ActionMark, Calibration, Counts,
    NextActionError, ELAPSED_BUCKETS, ELAPSED_EDGES_MS, SLOTS,
};

const C: usize = ROUTE_CLASSES;
const B: usize = ELAPSED_BUCKETS;

/// Idle times (ms) the table is computed at: every bucket edge and the
/// middle between edges. Past the last point hazards are constant, so the
/// probability no longer changes.
const GRID_MS: [u64; 25] = [
    0, 2_500, 5_000, 10_000, 15_000, 22_500, 30_000, 45_000, 60_000, 90_000, 120_000, 210_000,
    300_000, 450_000, 600_000, 750_000, 900_000, 1_350_000, 1_800_000, 2_700_000, 3_600_000,
    5_400_000, 7_200_000, 10_800_000, 14_400_000,
];
const G: usize = GRID_MS.len();

/// How tables are built.
#[derive(Debug, Clone, PartialEq)]
pub struct NextActionConfig {
    /// Horizons (ms), 1 to 4 of them, each from 1 ms to 24 hours. Default
    /// 1, 5, 15 and 60 minutes.
    pub horizons_ms: Vec<u64>,
    /// Steps the horizon is cut in, 4 to 256. Default 32.
    pub steps: usize,
    /// Prior strength, in users spending a whole bucket at the parent
    /// level's rate; finite and above 0. Default 2.
    pub prior_users: f64,
    /// Route classes (0 to 7) to tabulate; the others read `None`. Each
    /// costs the same, so list only those asked for. Default all.
    pub targets: Vec<u8>,
}

impl Default for NextActionConfig {
    fn default() -> Self {
        Self {
            horizons_ms: vec![60_000, 300_000, 900_000, 3_600_000],
            steps: 32,
            prior_users: 2.0,
            targets: (0..C as u8).collect(),
        }
    }
}

impl NextActionConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// The first field out of range, as [`NextActionError::Config`].
    pub fn validate(&self) -> Result<(), NextActionError> {
        let fail = |field, reason| Err(NextActionError::Config { field, reason });
        if !(1..=4).contains(&self.horizons_ms.len()) {
            return fail("horizons_ms", "must list 1 to 4 horizons");
        }
        if self.horizons_ms.iter().any(|&h| h == 0 || h > 86_400_000) {
            return fail("horizons_ms", "must each be 1 ms to 24 hours");
        }
        if !(4..=256).contains(&self.steps) {
            return fail("steps", "must be 4 to 256");
        }
        if !(self.prior_users.is_finite() && self.prior_users > 0.0) {
            return fail("prior_users", "must be finite and above 0");
        }
        if self.targets.is_empty() || self.targets.iter().any(|&k| usize::from(k) >= C) {
            return fail("targets", "must list route classes 0 to 7");
        }
        Ok(())
    }

    /// Which classes are tabulated.
    fn target_mask(&self) -> [bool; C] {
        let mut mask = [false; C];
        for &k in &self.targets {
            mask[usize::from(k).min(C - 1)] = true;
        }
        mask
    }
}

/// Probabilities of "some action of class `k` within `H`" by cohort, last
/// class and idle time, for each configured horizon. Immutable; lookups
/// are a few loads and one interpolation.
#[derive(Debug, Clone)]
pub struct NextActionTable {
    horizons_ms: Vec<u64>,
    targets: [bool; C],
    /// `[slot][horizon][from][grid][target]`.
    probs: Vec<f32>,
    calibration: Option<Calibration>,
}

/// Hazards (per ms) indexed `[from][bucket][to]`.
type Hazards = Vec<f64>;

fn hazard_index(from: usize, bucket: usize, to: usize) -> usize {
    (from * B + bucket) * C + to
}

impl NextActionTable {
    /// The horizons (ms), in configuration order.
    pub fn horizons_ms(&self) -> &[u64] {
        &self.horizons_ms
    }

    /// The model's probability that a user in `cohort` (or none) whose last
    /// action was `last` takes an action of class `target` (clamped to 0..=7)
    /// within horizon number `horizon`, from `now_ms`. An idle time past the
    /// grid (4 hours) reads the last grid point, which is exact there; a
    /// `now_ms` before the action reads idle time 0. `None` if `horizon` is
    /// not a configured horizon's index or `target` not a configured
    /// target.
    pub fn raw_probability(
        &self,
        cohort: Option<CohortId>,
        last: ActionMark,
        now_ms: u64,
        target: u8,
        horizon: usize,
    ) -> Option<f64> {
        let target = usize::from(target).min(C - 1);
        if horizon >= self.horizons_ms.len() || !self.targets[target] {
            return None;
        }
        let from = usize::from(last.route_class).min(C - 1);
        let base = (slot(cohort) * self.horizons_ms.len() + horizon) * C + from;
        let at = |g: usize| f64::from(self.probs[(base * G + g) * C + target]);

        let idle = now_ms.saturating_sub(last.at_ms);
        let upper = GRID_MS.partition_point(|&g| g <= idle);
        if upper >= G {
            return Some(at(G - 1));
        }
        let (lo, hi) = (GRID_MS[upper - 1], GRID_MS[upper]);
        let frac = (idle - lo) as f64 / (hi - lo) as f64;
        Some(at(upper - 1) * (1.0 - frac) + at(upper) * frac)
    }

    /// [`Self::raw_probability`] mapped through the calibration, when one
    /// is attached (see [`Self::set_calibration`]).
    pub fn probability(
        &self,
        cohort: Option<CohortId>,
        last: ActionMark,
        now_ms: u64,
        target: u8,
        horizon: usize,
    ) -> Option<f64> {
        let raw = self.raw_probability(cohort, last, now_ms, target, horizon)?;
        Some(match &self.calibration {
            Some(c) => c.apply(horizon, usize::from(target).min(C - 1), raw),
            None => raw,
        })
    }

    /// Attaches a calibration fitted on a holdout (see [`Calibration`]).
    pub fn set_calibration(&mut self, calibration: Calibration) {
        self.calibration = Some(calibration);
    }

    /// The attached calibration, if any.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }
}

/// Builds the table from counts; `config` is valid. Slots whose bit is
/// clear in `live` (and slots without data) get the pooled table.
pub(crate) fn build(counts: &Counts, config: &NextActionConfig, live: u64) -> NextActionTable {
    let widths: [f64; B] = std::array::from_fn(|b| {
        let start = bucket_start(b);
        let end = ELAPSED_EDGES_MS.get(b).copied().unwrap_or(2 * start);
        (end - start) as f64
    });
    let everyone = level_everyone(counts);
    let by_class = shrink(counts, None, &everyone_by_class(&everyone), &widths, config);
    let pooled = tabulate(&by_class, config);

    let per_slot = pooled.len();
    let mut probs = Vec::with_capacity(SLOTS * per_slot);
    for s in 0..SLOTS {
        if live & (1 << s) == 0 || slot_is_empty(counts, s) {
            probs.extend_from_slice(&pooled);
        } else {
            let hazards = shrink(counts, Some(s), &by_class, &widths, config);
            probs.extend(tabulate(&hazards, config));
        }
    }
    NextActionTable {
        horizons_ms: config.horizons_ms.clone(),
        targets: config.target_mask(),
        probs,
        calibration: None,
    }
}

/// Everyone's hazards `[bucket][to]`; a bucket without exposure copies the
/// previous bucket's.
fn level_everyone(counts: &Counts) -> Vec<[f64; C]> {
    let mut rates = vec![[0.0; C]; B];
    for b in 0..B {
        let mut events = [0.0; C];
        let mut exposure = 0.0;
        for s in 0..SLOTS {
            for from in 0..C {
                exposure += counts.exposure_ms[exposure_index(s, from, b)];
                for (to, e) in events.iter_mut().enumerate() {
                    *e += counts.events[event_index(s, from, b, to)];
                }
            }
        }
        rates[b] = if exposure > 0.0 {
            events.map(|e| e / exposure)
        } else if b > 0 {
            rates[b - 1]
        } else {
            [0.0; C]
        };
    }
    rates
}

/// Everyone's hazards repeated for every last class, as a parent level.
fn everyone_by_class(everyone: &[[f64; C]]) -> Hazards {
    let mut h = vec![0.0; C * B * C];
    for from in 0..C {
        for (b, rates) in everyone.iter().enumerate() {
            for (to, &r) in rates.iter().enumerate() {
                h[hazard_index(from, b, to)] = r;
            }
        }
    }
    h
}

/// Hazards of one slot (or of all slots pooled, for `None`) shrunk towards
/// `parent`.
fn shrink(
    counts: &Counts,
    only: Option<usize>,
    parent: &Hazards,
    widths: &[f64; B],
    config: &NextActionConfig,
) -> Hazards {
    let slots: Vec<usize> = only.map_or_else(|| (0..SLOTS).collect(), |s| vec![s]);
    let mut h = vec![0.0; C * B * C];
    for from in 0..C {
        for (b, width) in widths.iter().enumerate() {
            let exposure: f64 = slots
                .iter()
                .map(|&s| counts.exposure_ms[exposure_index(s, from, b)])
                .sum();
            let prior = config.prior_users * width;
            for to in 0..C {
                let events: f64 = slots
                    .iter()
                    .map(|&s| counts.events[event_index(s, from, b, to)])
                    .sum();
                let i = hazard_index(from, b, to);
                h[i] = (events + prior * parent[i]) / (exposure + prior);
            }
        }
    }
    h
}

fn slot_is_empty(counts: &Counts, s: usize) -> bool {
    let exposure = &counts.exposure_ms[exposure_index(s, 0, 0)..exposure_index(s + 1, 0, 0)];
    let events = &counts.events[event_index(s, 0, 0, 0)..event_index(s + 1, 0, 0, 0)];
    exposure.iter().chain(events).all(|&v| v == 0.0)
}

/// Cumulative hazards of one slot: `at[from][b][c]` is the hazard of class
/// `c` integrated over idle times from 0 to bucket `b`'s lower edge.
struct Cumulative<'a> {
    hazards: &'a Hazards,
    at: Vec<[[f64; C]; B]>,
}

impl<'a> Cumulative<'a> {
    fn new(hazards: &'a Hazards) -> Self {
        let at = (0..C)
            .map(|from| {
                let mut at = [[0.0; C]; B];
                for b in 1..B {
                    let width = (ELAPSED_EDGES_MS[b - 1] - bucket_start(b - 1)) as f64;
                    for c in 0..C {
                        at[b][c] = at[b - 1][c] + hazards[hazard_index(from, b - 1, c)] * width;
                    }
                }
                at
            })
            .collect();
        Self { hazards, at }
    }

    /// Hazard of each class integrated over idle times `[0, x)` (ms).
    fn until(&self, from: usize, x: f64) -> [f64; C] {
        let b = ELAPSED_EDGES_MS.partition_point(|&edge| edge as f64 <= x);
        let into = x - bucket_start(b) as f64;
        std::array::from_fn(|c| self.at[from][b][c] + self.hazards[hazard_index(from, b, c)] * into)
    }

    /// `p[i][c]`: probability that the first next action after idle time
    /// `start` falls in step `i` (of `step` ms) and is of class `c`.
    fn first_action(&self, from: usize, start: f64, step: f64, steps: usize) -> Vec<[f64; C]> {
        let mut out = vec![[0.0; C]; steps];
        let mut survival = 1.0;
        let mut before = self.until(from, start);
        for (i, p) in out.iter_mut().enumerate() {
            let after = self.until(from, start + (i + 1) as f64 * step);
            let mut lambda = [0.0; C];
            let mut total = 0.0;
            for c in 0..C {
                lambda[c] = (after[c] - before[c]).max(0.0);
                total += lambda[c];
            }
            before = after;
            if total > 0.0 {
                let stay = (-total).exp();
                let happens = survival * (1.0 - stay);
                for c in 0..C {
                    p[c] = happens * lambda[c] / total;
                }
                survival *= stay;
            }
        }
        out
    }
}

/// One slot's probabilities `[horizon][from][grid][target]`; targets not
/// configured stay 0.
///
/// Written as plain indexed loops: this runs tens of millions of
/// multiply-adds per build, and unoptimised test builds pay heavily for
/// iterator adapters.
fn tabulate(h: &Hazards, config: &NextActionConfig) -> Vec<f32> {
    let steps = config.steps;
    let cumulative = Cumulative::new(h);
    let targets = config.target_mask();
    let mut out = vec![0.0; config.horizons_ms.len() * C * G * C];
    for (hi, &horizon) in config.horizons_ms.iter().enumerate() {
        let step = horizon as f64 / steps as f64;
        let from_zero: Vec<Vec<[f64; C]>> = (0..C)
            .map(|c| cumulative.first_action(c, 0.0, step, steps))
            .collect();

        // g[k][c * (steps + 1) + j]: hit k within j steps, starting from
        // class c at idle 0.
        let mut g = vec![Vec::new(); C];
        for (k, gk) in g.iter_mut().enumerate() {
            if targets[k] {
                *gk = hits_from_zero(&from_zero, k, steps);
            }
        }

        for from in 0..C {
            for (gi, &idle) in GRID_MS.iter().enumerate() {
                let p = cumulative.first_action(from, idle as f64, step, steps);
                for k in (0..C).filter(|&k| targets[k]) {
                    let gk = &g[k];
                    let mut prob = 0.0;
                    for (i, pi) in p.iter().enumerate() {
                        let rest = steps - i - 1;
                        for c1 in 0..C {
                            prob += if c1 == k {
                                pi[c1]
                            } else {
                                pi[c1] * gk[c1 * (steps + 1) + rest]
                            };
                        }
                    }
                    out[((hi * C + from) * G + gi) * C + k] = prob.clamp(0.0, 1.0) as f32;
                }
            }
        }
    }
    out
}

/// For target `k`: `g[c * (steps + 1) + j]`, the probability of an action
/// of class `k` within `j` steps from class `c` at idle time 0.
fn hits_from_zero(from_zero: &[Vec<[f64; C]>], k: usize, steps: usize) -> Vec<f64> {
    let width = steps + 1;
    let mut g = vec![0.0; C * width];
    for j in 1..=steps {
        for (c, steps_from_c) in from_zero.iter().enumerate() {
            let mut sum = 0.0;
            for (i, pi) in steps_from_c[..j].iter().enumerate() {
                let rest = j - i - 1;
                for c1 in 0..C {
                    sum += if c1 == k {
                        pi[c1]
                    } else {
                        pi[c1] * g[c1 * width + rest]
                    };
                }
            }
            g[c * width + j] = sum;
        }
    }
    g
}
