//! The next-action model on synthetic users whose true probabilities are
//! known: exposure bookkeeping is exact, the learnt probabilities match the
//! truth, the last class and idleness matter, and a replay beats the base
//! rate with calibrated probabilities.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::*;
use crate::cohort::kmeans::Rng;

const MINUTE: u64 = 60_000;

fn mark(at_ms: u64, route_class: u8) -> ActionMark {
    ActionMark { at_ms, route_class }
}

fn transition(from: Option<ActionMark>, to: ActionMark) -> Transition {
    Transition {
        to,
        from,
        cohort: None,
    }
}

fn total_exposure(model: &NextActionModel) -> f64 {
    model.counts().exposure_ms.iter().sum()
}

/// Exponential draw with mean `mean_ms`.
fn exp_draw(rng: &mut Rng, mean_ms: f64) -> u64 {
    (-(1.0 - rng.next_f64()).ln() * mean_ms) as u64
}

#[test]
fn buckets_have_the_documented_edges() {
    assert_eq!(elapsed_bucket(0), 0);
    assert_eq!(elapsed_bucket(4_999), 0);
    assert_eq!(elapsed_bucket(5_000), 1);
    assert_eq!(elapsed_bucket(899_999), 7);
    assert_eq!(elapsed_bucket(14_400_000), ELAPSED_BUCKETS - 1);
    assert_eq!(elapsed_bucket(u64::MAX), ELAPSED_BUCKETS - 1);
}

#[test]
fn exposure_adds_up_to_the_gaps_whatever_the_ticks() {
    let model = NextActionModel::new();
    let user = mark(1_000, 2);
    model.observe(&transition(None, user));
    for t in [30_000, 95_000, 400_000] {
        let tick = model.begin_tick(t);
        model.accrue(&tick, user, None);
    }
    // The user comes back at 1 001 000: a gap of exactly 1 000 000 ms.
    model.observe(&transition(Some(user), mark(1_001_000, 4)));
    assert_eq!(total_exposure(&model), 1_000_000.0);
    let tick = model.begin_tick(1_501_000);
    model.accrue(&tick, mark(1_001_000, 4), None);
    assert_eq!(
        total_exposure(&model),
        1_500_000.0,
        "the open gap counts too"
    );

    let counts = model.counts();
    let in_bucket = |b: usize| counts.exposure_ms[exposure_index(MAX_COHORTS, 2, b)];
    assert_eq!(in_bucket(0), 5_000.0);
    assert_eq!(in_bucket(7), 300_000.0, "10 to 15 minutes");
    let event = counts.events[event_index(MAX_COHORTS, 2, elapsed_bucket(1_000_000), 4)];
    assert_eq!(event, 1.0);
}

/// Users acting as a Poisson process of rate `1 / mean_gap_ms`, each action
/// of class c with probability `shares[c]`, observed for `span_ms`.
fn poisson_users(
    model: &NextActionModel,
    users: u64,
    mean_gap_ms: f64,
    shares: &[f64],
    span_ms: u64,
) {
    let mut rng = Rng::new(17);
    let tick_ms = MINUTE;
    let mut marks: HashMap<u64, ActionMark> = HashMap::new();
    let mut next: BinaryHeap<Reverse<(u64, u64)>> = (0..users)
        .map(|u| Reverse((exp_draw(&mut rng, mean_gap_ms), u)))
        .collect();
    let mut t_tick = tick_ms;
    while let Some(Reverse((t, u))) = next.pop() {
        if t > span_ms {
            break;
        }
        while t_tick < t {
            let tick = model.begin_tick(t_tick);
            marks.values().for_each(|&m| model.accrue(&tick, m, None));
            t_tick += tick_ms;
        }
        let draw = rng.next_f64();
        let mut class = 0;
        let mut acc = shares[0];
        while draw >= acc && class + 1 < shares.len() {
            class += 1;
            acc += shares[class];
        }
        let to = mark(t, class as u8);
        model.observe(&transition(marks.insert(u, to), to));
        next.push(Reverse((t + exp_draw(&mut rng, mean_gap_ms).max(1), u)));
    }
}

#[test]
fn memoryless_users_get_the_textbook_probabilities() {
    let model = NextActionModel::new();
    let shares = [0.7, 0.0, 0.2, 0.1];
    poisson_users(&model, 200, 10.0 * MINUTE as f64, &shares, 48 * 3_600_000);
    let table = model.build(&NextActionConfig::default()).unwrap();
    for (h, &horizon) in table.horizons_ms().iter().enumerate() {
        for (class, &share) in shares.iter().enumerate() {
            let truth = 1.0 - (-(share * horizon as f64) / (10.0 * MINUTE as f64)).exp();
            for idle in [0, 3 * MINUTE, 40 * MINUTE] {
                let p = table
                    .raw_probability(None, mark(0, 0), idle, class as u8, h)
                    .unwrap();
                assert!(
                    (p - truth).abs() < 0.03 + 0.1 * truth,
                    "class {class} within {horizon} ms at idle {idle}: {p} vs {truth}"
                );
            }
        }
    }
}

#[test]
fn the_last_class_and_idleness_change_the_prediction() {
    let model = NextActionModel::new();
    let mut rng = Rng::new(3);
    // Exporters: after an export (class 3), another export follows within
    // a minute; after a page (class 1), the user is gone for hours.
    for u in 0..300u64 {
        let mut t = u * 1_000;
        let mut last: Option<ActionMark> = None;
        for i in 0..20 {
            let class = if i % 4 == 3 { 1 } else { 3 };
            let to = mark(t, class);
            model.observe(&transition(last, to));
            last = Some(to);
            t += if class == 3 {
                20_000 + exp_draw(&mut rng, 20_000.0)
            } else {
                3 * 3_600_000
            };
        }
    }
    let table = model.build(&NextActionConfig::default()).unwrap();
    let p = |class: u8, idle: u64| {
        table
            .raw_probability(None, mark(0, class), idle, 3, 2)
            .unwrap()
    };
    // Two exports in three are followed by another within a minute; the
    // third by a page and a three-hour pause.
    assert!(
        (p(3, 0) - 2.0 / 3.0).abs() < 0.05,
        "export after export: {}",
        p(3, 0)
    );
    assert!(p(1, 0) < 0.1, "export soon after a page: {}", p(1, 0));
    assert!(
        p(3, 20 * MINUTE) < p(3, 0),
        "a long silence after an export lowers it"
    );
}

#[test]
fn a_new_incarnation_of_a_cohort_id_starts_from_scratch() {
    use crate::cohort::{Clusterer, CohortConfig};
    let model = NextActionModel::new();
    let id = CohortId::new(0);
    let from = mark(0, 1);
    let t = Transition {
        to: mark(10_000, 2),
        from: Some(from),
        cohort: id,
    };
    model.observe(&t);
    let in_slot = |m: &NextActionModel| m.counts().events[event_index(0, 1, 1, 2)];
    assert_eq!(in_slot(&model), 1.0);

    // A clustering that names cohort 0 resets it once, then keeps it.
    let mut clusterer = Clusterer::new(CohortConfig::default()).unwrap();
    let sample = crate::cohort::UserSample {
        key: 1,
        features: crate::cohort::BehaviourFeatures {
            requests_per_min: 1.0,
            log2_bytes: None,
            session_min: 1.0,
            route_mix: [0.0; ROUTE_CLASSES],
            hour_mix: [0.0; crate::cohort::HOUR_BINS],
            attributes: crate::cohort::UserAttributes::default(),
        },
        smoothed_rps: 0.0,
    };
    let set = clusterer.recluster(&[sample], 0);
    model.sync_cohorts(&set);
    assert_eq!(in_slot(&model), 0.0);
    model.observe(&t);
    model.sync_cohorts(&clusterer.recluster(&[sample], 1));
    assert_eq!(in_slot(&model), 1.0, "same incarnation: kept");
}

#[test]
fn decay_scales_every_count() {
    let model = NextActionModel::new();
    for i in 0..10 {
        model.observe(&transition(Some(mark(0, 0)), mark(1_000 * (i + 1), 0)));
    }
    let before = total_exposure(&model);
    model.decay(0.5);
    assert_eq!(total_exposure(&model), (before / 2.0).floor());
    assert_eq!(model.counts().events.iter().sum::<f64>(), 5.0);
}

#[test]
fn bad_configs_are_refused_with_the_field_named() {
    let config = NextActionConfig {
        horizons_ms: vec![],
        ..NextActionConfig::default()
    };
    let err = NextActionModel::new().build(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid next-action config: horizons_ms must list 1 to 4 horizons"
    );
    let replay_config = ReplayConfig {
        test_from: 0.2,
        ..ReplayConfig::default()
    };
    assert!(replay(&[], &HashMap::new(), &replay_config).is_err());
    assert_eq!(
        replay(&[], &HashMap::new(), &ReplayConfig::default()).unwrap_err(),
        NextActionError::NoEvents
    );
    let table = NextActionModel::new()
        .build(&NextActionConfig::default())
        .unwrap();
    assert_eq!(table.raw_probability(None, mark(0, 0), 0, 0, 4), None);
}

/// Two kinds of synthetic users over two days: browsers (pages in bursts,
/// then long pauses) and exporters (an export after every few pages).
fn synthetic_trace() -> Vec<ActionEvent> {
    let mut rng = Rng::new(21);
    let mut events = Vec::new();
    let day0 = 20_000 * 86_400_000;
    for user in 0..400u64 {
        let exporter = user % 4 == 0;
        let mut t = day0 + exp_draw(&mut rng, 3_600_000.0);
        while t < day0 + 2 * 86_400_000 {
            // One session: a burst of actions a few seconds to minutes apart.
            for i in 0..(3 + rng.next_u64() % 8) {
                let class = if exporter && i % 3 == 2 { 3 } else { 1 };
                let bytes = if class == 3 { 50_000_000 } else { 20_000 };
                events.push(ActionEvent {
                    t_ms: t,
                    user,
                    route_class: class,
                    status: 200,
                    bytes_out: bytes,
                });
                t += 2_000 + exp_draw(&mut rng, 40_000.0);
            }
            t += exp_draw(&mut rng, 4.0 * 3_600_000.0);
        }
    }
    events
}

#[test]
fn a_replay_beats_the_base_rate_with_calibrated_probabilities() {
    let config = ReplayConfig {
        targets: vec![1, 3],
        ..ReplayConfig::default()
    };
    let started = std::time::Instant::now();
    let report = replay(&synthetic_trace(), &HashMap::new(), &config).unwrap();
    eprintln!("replay took {:?}", started.elapsed());
    for s in &report.scores {
        eprintln!(
            "class {} within {:>7} ms: points {:>6} positives {:>5} brier model {:.5} raw {:.5} base {:.5} ece {:.4}",
            s.target, s.horizon_ms, s.points, s.positives, s.brier_calibrated, s.brier_raw, s.brier_base, s.ece_calibrated
        );
    }
    assert_eq!(report.users, 400);
    assert!(!report.k_history.is_empty());
    for s in &report.scores {
        assert!(s.points > 1_000, "{s:?}");
        assert!(
            s.brier_calibrated < s.brier_base,
            "class {} within {} ms: model {} vs base {}",
            s.target,
            s.horizon_ms,
            s.brier_calibrated,
            s.brier_base
        );
        assert!(s.ece_calibrated < 0.03, "{s:?}");
    }
    let (base, _, calibrated) = report.pooled();
    assert!(
        calibrated < 0.8 * base,
        "pooled: model {calibrated} vs base {base}"
    );
}
