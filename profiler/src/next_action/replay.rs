//! Offline replay: a trace of user actions through the same table, cohorts
//! and next-action model the proxy uses, on simulated time, with every
//! prediction scored against what the user did next.
//!
//! Protocol. Events are replayed in time order into a [`UserTable`] (users
//! idle longer than the idle timeout are evicted, as in the proxy). Every
//! tick (5 minutes by default) the replay evicts idle users, re-clusters or
//! assigns new users to cohorts, adds exposure, rebuilds the probability
//! table when due, and then, for every tracked user, asks the table for the
//! probability of each target class within each horizon, from data before
//! the tick only. The label is whether the user's trace has an event of that
//! class in `(tick, tick + horizon]`. The span is split in three: warm-up
//! (the model learns; labels feed the base rate), calibration (predictions
//! and labels whose horizon ends before the test part fit the isotonic maps;
//! labels still feed the base rate), and test (scored). The model keeps
//! learning online through the test part, as it would in production. The
//! base rate is the share of positive labels per target and horizon before
//! the test part: the best constant a forecaster could have known.

use std::collections::HashMap;
use std::sync::Arc;

use crate::activity::ROUTE_CLASSES;
use crate::cohort::{Clusterer, CohortConfig, CohortSet, UserAttributes};
use crate::next_action::calibrate::{Calibration, Reliability, ReliabilityBin};
use crate::next_action::{NextActionConfig, NextActionError, NextActionModel, NextActionTable};
use crate::table::{TableConfig, UserEntry, UserTable};

/// One action of one user in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionEvent {
    /// Unix milliseconds (the hour of day is read from it).
    pub t_ms: u64,
    /// The user's key.
    pub user: u64,
    /// Route class, 0 to 7.
    pub route_class: u8,
    /// Response status (0 when unknown).
    pub status: u16,
    /// Response body bytes (0 when unknown).
    pub bytes_out: u64,
}

/// How a replay runs; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Tick interval (ms): exposure, queries, cohort assignment. At least
    /// 1 000. Default 300 000.
    pub tick_ms: u64,
    /// Users idle longer than this (ms) are evicted. At least 60 000 (the
    /// table's window). Default 1 800 000.
    pub idle_timeout_ms: u64,
    /// Re-clustering interval (ms), at least `tick_ms`. Default 7 200 000.
    pub recluster_every_ms: u64,
    /// Probability-table rebuild interval (ms), at least `tick_ms`.
    /// Default 3 600 000.
    pub rebuild_every_ms: u64,
    /// Where calibration starts, as a share of the span. Default 0.4.
    pub calibration_from: f64,
    /// Where the test starts, as a share of the span; above
    /// `calibration_from` and below 1. Default 0.6.
    pub test_from: f64,
    /// Route classes to predict, each 0 to 7, at least one; they replace
    /// `model.targets`.
    pub targets: Vec<u8>,
    /// Horizons and table settings.
    pub model: NextActionConfig,
    /// Cohort settings.
    pub cohorts: CohortConfig,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            tick_ms: 300_000,
            idle_timeout_ms: 1_800_000,
            recluster_every_ms: 7_200_000,
            rebuild_every_ms: 3_600_000,
            calibration_from: 0.4,
            test_from: 0.6,
            targets: (0..ROUTE_CLASSES as u8).collect(),
            model: NextActionConfig::default(),
            cohorts: CohortConfig::default(),
        }
    }
}

impl ReplayConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// The first field out of range, as [`NextActionError::Config`].
    pub fn validate(&self) -> Result<(), NextActionError> {
        let fail = |field, reason| Err(NextActionError::Config { field, reason });
        if self.tick_ms < 1_000 {
            return fail("tick_ms", "must be at least 1000");
        }
        if self.idle_timeout_ms < 60_000 {
            return fail("idle_timeout_ms", "must be at least 60000");
        }
        if self.recluster_every_ms < self.tick_ms || self.rebuild_every_ms < self.tick_ms {
            return fail(
                "recluster_every_ms",
                "and rebuild_every_ms must be at least tick_ms",
            );
        }
        let (c, t) = (self.calibration_from, self.test_from);
        if !(0.0 <= c && c < t && t < 1.0) {
            return fail(
                "test_from",
                "must satisfy 0 <= calibration_from < test_from < 1",
            );
        }
        if self.targets.is_empty()
            || self
                .targets
                .iter()
                .any(|&k| usize::from(k) >= ROUTE_CLASSES)
        {
            return fail("targets", "must list route classes 0 to 7");
        }
        self.model.validate()?;
        Ok(self.cohorts.validate()?)
    }
}

/// Test-part scores of one target class at one horizon.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetScore {
    /// The route class predicted.
    pub target: u8,
    /// The horizon (ms).
    pub horizon_ms: u64,
    /// Predictions scored.
    pub points: u64,
    /// Of those, how many came true.
    pub positives: u64,
    /// The constant forecast: the positive share before the test part.
    pub base_rate: f64,
    /// Brier score of the base rate.
    pub brier_base: f64,
    /// Brier score of the model's raw probabilities.
    pub brier_raw: f64,
    /// Brier score after calibration (the model's answer).
    pub brier_calibrated: f64,
    /// Whether an isotonic map was fitted (else calibrated = raw).
    pub calibrated: bool,
    /// Expected calibration error of the raw probabilities.
    pub ece_raw: f64,
    /// Expected calibration error after calibration.
    pub ece_calibrated: f64,
    /// Reliability diagram after calibration.
    pub reliability: Vec<ReliabilityBin>,
}

/// What a replay found.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Events replayed.
    pub events: usize,
    /// Distinct users.
    pub users: usize,
    /// From the first event to the last (ms).
    pub span_ms: u64,
    /// Number of cohorts chosen at each re-clustering.
    pub k_history: Vec<usize>,
    /// The last clustering.
    pub cohorts: Arc<CohortSet>,
    /// Scores per target and horizon.
    pub scores: Vec<TargetScore>,
}

impl ReplayReport {
    /// (base, raw, calibrated) Brier scores over every scored prediction,
    /// each target and horizon weighted by its points.
    pub fn pooled(&self) -> (f64, f64, f64) {
        let n: u64 = self.scores.iter().map(|s| s.points).sum();
        let mean = |f: fn(&TargetScore) -> f64| {
            let sum: f64 = self.scores.iter().map(|s| f(s) * s.points as f64).sum();
            sum / n.max(1) as f64
        };
        (
            mean(|s| s.brier_base),
            mean(|s| s.brier_raw),
            mean(|s| s.brier_calibrated),
        )
    }
}

/// Running test sums of one target and horizon.
#[derive(Debug, Clone, Default)]
struct Tally {
    points: u64,
    positives: u64,
    se_base: f64,
    se_raw: f64,
    se_calibrated: f64,
    raw: Reliability,
    calibrated: Reliability,
}

type PerTarget<T> = [T; ROUTE_CLASSES];

/// Replays `events` (any order; sorted here, stably) with each user's
/// `attributes` (missing users are unknown) and scores the predictions;
/// see the module docs.
///
/// # Errors
/// [`NextActionError::NoEvents`] for an empty trace, or
/// [`NextActionError::Config`] for an invalid `config`.
pub fn replay(
    events: &[ActionEvent],
    attributes: &HashMap<u64, UserAttributes>,
    config: &ReplayConfig,
) -> Result<ReplayReport, NextActionError> {
    config.validate()?;
    let mut sorted: Vec<ActionEvent> = events.to_vec();
    sorted.sort_by_key(|e| e.t_ms);
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Err(NextActionError::NoEvents);
    };
    let (start, end) = (first.t_ms, last.t_ms);

    let mut history: HashMap<u64, Vec<(u64, u8)>> = HashMap::new();
    for e in &sorted {
        history
            .entry(e.user)
            .or_default()
            .push((e.t_ms, e.route_class));
    }
    let table = UserTable::new(TableConfig {
        max_users: history.len() + 1,
        idle_timeout_ms: config.idle_timeout_ms,
        ..TableConfig::default()
    })
    .map_err(|_| NextActionError::Config {
        field: "idle_timeout_ms",
        reason: "does not fit the user table",
    })?;
    let span = (end - start) as f64;
    let model_config = NextActionConfig {
        targets: config.targets.clone(),
        ..config.model.clone()
    };
    let mut run = Run {
        model_config,
        config,
        attributes,
        history: &history,
        table,
        clusterer: Clusterer::new(config.cohorts.clone())?,
        model: NextActionModel::with_censoring(config.idle_timeout_ms),
        current: None,
        cohorts: Arc::new(CohortSet::empty()),
        k_history: Vec::new(),
        end,
        calibration_at: start + (span * config.calibration_from) as u64,
        test_at: start + (span * config.test_from) as u64,
        next_tick: start + config.tick_ms,
        next_recluster: start + config.tick_ms,
        next_rebuild: start + config.tick_ms,
        base: vec![[(0, 0); ROUTE_CLASSES]; config.model.horizons_ms.len()],
        pairs: vec![std::array::from_fn(|_| Vec::new()); config.model.horizons_ms.len()],
        frozen: None,
        tallies: vec![std::array::from_fn(|_| Tally::default()); config.model.horizons_ms.len()],
    };

    for e in &sorted {
        while run.next_tick < e.t_ms {
            run.tick()?;
        }
        let entry = run
            .table
            .get_or_insert(e.user, e.t_ms)
            .expect("the table holds every user of the trace");
        let transition = entry.windows.record_arrival(e.t_ms, e.route_class, 0);
        entry
            .windows
            .record_response(e.t_ms, e.status, e.bytes_out, 0);
        run.model.observe(&transition);
    }
    while run.next_tick <= end {
        run.tick()?;
    }
    Ok(run.report(sorted.len(), end - start))
}

/// The replay's moving parts.
struct Run<'a> {
    config: &'a ReplayConfig,
    /// `config.model` with `config.targets`.
    model_config: NextActionConfig,
    attributes: &'a HashMap<u64, UserAttributes>,
    history: &'a HashMap<u64, Vec<(u64, u8)>>,
    table: UserTable<()>,
    clusterer: Clusterer,
    model: NextActionModel,
    current: Option<NextActionTable>,
    cohorts: Arc<CohortSet>,
    k_history: Vec<usize>,
    end: u64,
    calibration_at: u64,
    test_at: u64,
    next_tick: u64,
    next_recluster: u64,
    next_rebuild: u64,
    /// (positives, labels) per horizon and target before the test part.
    base: Vec<PerTarget<(u64, u64)>>,
    /// Calibration pairs per horizon and target.
    pairs: Vec<PerTarget<Vec<(f64, bool)>>>,
    /// Calibration and base rates, fixed when the test part starts.
    frozen: Option<(Calibration, Vec<PerTarget<f64>>)>,
    tallies: Vec<PerTarget<Tally>>,
}

impl Run<'_> {
    fn tick(&mut self) -> Result<(), NextActionError> {
        let q = self.next_tick;
        self.next_tick += self.config.tick_ms;

        // Exposure of open gaps up to now, before anyone idle is evicted:
        // a user's exposure must run until the moment it stops being
        // watched, or returns would be over-counted against it.
        let tick = self.model.begin_tick(q);
        let model = &self.model;
        self.table
            .for_each(|_, entry| model.accrue_user(&tick, &entry.windows));
        self.table.evict_idle(q);

        // Cohorts: a full re-clustering when due, else place new users.
        let attributes = self.attributes;
        let attrs = |key: u64, _: &UserEntry<()>| attributes.get(&key).copied().unwrap_or_default();
        if q >= self.next_recluster {
            self.cohorts = self.clusterer.recluster_table(&self.table, attrs, q);
            self.model.sync_cohorts(&self.cohorts);
            self.k_history.push(self.cohorts.k());
            self.next_recluster = q + self.config.recluster_every_ms;
        } else {
            self.clusterer.assign_new(&self.table, attrs);
        }

        // Exposure of open gaps, then the table when due.
        let tick = self.model.begin_tick(q);
        let model = &self.model;
        self.table
            .for_each(|_, entry| model.accrue_user(&tick, &entry.windows));
        if q >= self.next_rebuild {
            let mut table = self.model.build(&self.model_config)?;
            if let Some((calibration, _)) = &self.frozen {
                table.set_calibration(calibration.clone());
            }
            self.current = Some(table);
            self.next_rebuild = q + self.config.rebuild_every_ms;
        }

        let longest = self
            .config
            .model
            .horizons_ms
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        if q + longest <= self.end {
            self.query(q, longest);
        }
        Ok(())
    }

    /// Predicts and labels every tracked user at `q`.
    fn query(&mut self, q: u64, longest: u64) {
        if q >= self.test_at && self.frozen.is_none() {
            self.freeze();
        }
        let mut users = Vec::new();
        self.table.for_each(|key, entry| {
            if let (Some(mark), cohort) = entry.windows.last_action().load() {
                users.push((key, mark, cohort));
            }
        });
        users.sort_unstable_by_key(|u| u.0);

        let horizons = self.config.model.horizons_ms.clone();
        for (key, mark, cohort) in users {
            let first = self.first_after(key, q, q + longest);
            for (h, &horizon) in horizons.iter().enumerate() {
                for &k in &self.config.targets {
                    let k = usize::from(k);
                    let y = first[k] <= q + horizon;
                    let predict =
                        |t: &NextActionTable| t.raw_probability(cohort, mark, q, k as u8, h);
                    if q + horizon <= self.test_at {
                        let b = &mut self.base[h][k];
                        *b = (b.0 + u64::from(y), b.1 + 1);
                        if q >= self.calibration_at {
                            if let Some(p) = self.current.as_ref().and_then(predict) {
                                self.pairs[h][k].push((p, y));
                            }
                        }
                    } else if let (Some(p), Some((calibration, rates))) =
                        (self.current.as_ref().and_then(predict), &self.frozen)
                    {
                        let c = calibration.apply(h, k, p);
                        let t = &mut self.tallies[h][k];
                        let yf = f64::from(u8::from(y));
                        t.points += 1;
                        t.positives += u64::from(y);
                        t.se_base += (rates[h][k] - yf).powi(2);
                        t.se_raw += (p - yf).powi(2);
                        t.se_calibrated += (c - yf).powi(2);
                        t.raw.add(p, y);
                        t.calibrated.add(c, y);
                    }
                }
            }
        }
    }

    /// Time of the user's first event of each class in `(after, until]`
    /// (`u64::MAX` for none).
    fn first_after(&self, user: u64, after: u64, until: u64) -> PerTarget<u64> {
        let mut first = [u64::MAX; ROUTE_CLASSES];
        let events = self.history.get(&user).map_or(&[][..], Vec::as_slice);
        let from = events.partition_point(|&(t, _)| t <= after);
        for &(t, class) in events[from..].iter().take_while(|&&(t, _)| t <= until) {
            let slot = &mut first[usize::from(class).min(ROUTE_CLASSES - 1)];
            *slot = (*slot).min(t);
        }
        first
    }

    /// Fits the calibration and fixes the base rates at the test start.
    fn freeze(&mut self) {
        let calibration = Calibration::fit(&self.pairs);
        let rates = self
            .base
            .iter()
            .map(|per| per.map(|(pos, n)| pos as f64 / n.max(1) as f64))
            .collect();
        if let Some(table) = self.current.as_mut() {
            table.set_calibration(calibration.clone());
        }
        self.pairs.iter_mut().flatten().for_each(Vec::clear);
        self.frozen = Some((calibration, rates));
    }

    fn report(self, events: usize, span_ms: u64) -> ReplayReport {
        let calibration = self.frozen.as_ref().map(|(c, _)| c);
        let rates = self.frozen.as_ref().map(|(_, r)| r);
        let mut scores = Vec::new();
        for (h, &horizon_ms) in self.config.model.horizons_ms.iter().enumerate() {
            for &k in &self.config.targets {
                let t = &self.tallies[h][usize::from(k)];
                let n = t.points.max(1) as f64;
                scores.push(TargetScore {
                    target: k,
                    horizon_ms,
                    points: t.points,
                    positives: t.positives,
                    base_rate: rates.map_or(0.0, |r| r[h][usize::from(k)]),
                    brier_base: t.se_base / n,
                    brier_raw: t.se_raw / n,
                    brier_calibrated: t.se_calibrated / n,
                    calibrated: calibration.is_some_and(|c| c.map(h, usize::from(k)).is_some()),
                    ece_raw: t.raw.expected_calibration_error(),
                    ece_calibrated: t.calibrated.expected_calibration_error(),
                    reliability: t.calibrated.bins(),
                });
            }
        }
        ReplayReport {
            events,
            users: self.history.len(),
            span_ms,
            k_history: self.k_history,
            cohorts: self.cohorts,
            scores,
        }
    }
}
