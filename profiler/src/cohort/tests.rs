//! Cohorts on synthetic users with known groups: the groups come back, k is
//! chosen right, ids survive re-clustering, names say what the groups are.

use std::collections::HashMap;

use super::clusterer::hourly_shape;
use super::kmeans::Rng;
use super::*;
use crate::table::{TableConfig, UserEntry, UserTable};

const STATIC: usize = 1;
const PAGE: usize = 2;
const EXPORT: usize = 3;

/// A kind of synthetic user: typical values, each perturbed per user.
#[derive(Debug, Clone, Copy)]
struct Kind {
    requests_per_min: f64,
    log2_bytes: f64,
    session_min: f64,
    routes: [f64; ROUTE_CLASSES],
    busy_bin: usize,
    device: u8,
}

const MOBILE_BROWSERS: Kind = Kind {
    requests_per_min: 6.0,
    log2_bytes: 13.0,
    session_min: 12.0,
    routes: [0.05, 0.35, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0],
    busy_bin: 6,
    device: 2,
};

const STATIC_BOTS: Kind = Kind {
    requests_per_min: 40.0,
    log2_bytes: 11.0,
    session_min: 90.0,
    routes: [0.0, 0.95, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0],
    busy_bin: 1,
    device: 3,
};

const EXPORTERS: Kind = Kind {
    requests_per_min: 0.3,
    log2_bytes: 24.0,
    session_min: 3.0,
    routes: [0.1, 0.0, 0.1, 0.8, 0.0, 0.0, 0.0, 0.0],
    busy_bin: 0,
    device: 1,
};

fn names() -> CohortNames {
    CohortNames {
        routes: ["other", "static", "page", "export"]
            .map(String::from)
            .to_vec(),
        ..CohortNames::default()
    }
}

fn config() -> CohortConfig {
    CohortConfig {
        names: names(),
        ..CohortConfig::default()
    }
}

/// One user of `kind`, with multiplicative noise on the scalars and noisy
/// shares.
fn user(kind: &Kind, key: u64, rng: &mut Rng) -> UserSample {
    let mut jitter = |x: f64| x * (0.7 + 0.6 * rng.next_f64());
    let mut route_mix = kind.routes.map(|r| jitter(r + 0.02));
    let total: f64 = route_mix.iter().sum();
    route_mix.iter_mut().for_each(|r| *r /= total);
    let mut hour_mix = [0.02; HOUR_BINS];
    hour_mix[kind.busy_bin] = 0.86;
    UserSample {
        key,
        features: BehaviourFeatures {
            requests_per_min: jitter(kind.requests_per_min),
            log2_bytes: Some(kind.log2_bytes + jitter(1.0) - 1.0),
            session_min: jitter(kind.session_min),
            route_mix,
            hour_mix,
            attributes: UserAttributes {
                device: kind.device,
                ..UserAttributes::default()
            },
        },
        smoothed_rps: kind.requests_per_min / 60.0,
    }
}

/// `n` users of each kind; keys say the kind (`kind index * 1_000_000 + i`).
fn population(kinds: &[Kind], n: usize, seed: u64) -> Vec<UserSample> {
    let mut rng = Rng::new(seed);
    kinds
        .iter()
        .enumerate()
        .flat_map(|(k, kind)| (0..n).map(move |i| (k, kind, i)))
        .map(|(k, kind, i)| user(kind, (k * 1_000_000 + i) as u64, &mut rng))
        .collect()
}

/// Share of users whose cohort holds a majority of their own kind.
fn purity(set: &CohortSet, users: &[UserSample]) -> f64 {
    let mut votes: HashMap<(CohortId, u64), usize> = HashMap::new();
    for u in users {
        let id = set.assign(&u.features).unwrap();
        *votes.entry((id, u.key / 1_000_000)).or_default() += 1;
    }
    let mut best: HashMap<CohortId, usize> = HashMap::new();
    for ((id, _), n) in votes {
        let b = best.entry(id).or_default();
        *b = (*b).max(n);
    }
    best.values().sum::<usize>() as f64 / users.len() as f64
}

#[test]
fn three_known_groups_are_found_and_named_by_their_traits() {
    let users = population(&[MOBILE_BROWSERS, STATIC_BOTS, EXPORTERS], 300, 1);
    let mut clusterer = Clusterer::new(config()).unwrap();
    let set = clusterer.recluster(&users, 0);
    assert_eq!(set.k(), 3, "scores {:?}", set.silhouette_by_k);
    assert!(purity(&set, &users) > 0.99);
    assert_eq!(set.cohorts.iter().map(|c| c.members).sum::<usize>(), 900);

    let names: Vec<&str> = set.cohorts.iter().map(|c| c.name.as_str()).collect();
    let find = |trait_: &str| names.iter().any(|n| n.contains(trait_));
    assert!(find("mobile") && find("page"), "{names:?}");
    assert!(find("bot") && find("static") && find("heavy"), "{names:?}");
    assert!(find("export") && find("bulk") && find("light"), "{names:?}");
    let exporters = set
        .cohorts
        .iter()
        .find(|c| c.name.contains("export"))
        .unwrap();
    assert!(exporters.route_mix[EXPORT] > 0.6);
    assert!(exporters.mean_log2_bytes.unwrap() > 20.0);
    assert_eq!(exporters.members, 300);
}

#[test]
fn one_homogeneous_population_is_one_cohort() {
    let users = population(&[MOBILE_BROWSERS], 500, 2);
    let set = Clusterer::new(config()).unwrap().recluster(&users, 0);
    assert_eq!(set.k(), 1, "scores {:?}", set.silhouette_by_k);
    assert_eq!(set.cohorts[0].members, 500);
    assert!(
        set.cohorts[0].name.contains("page"),
        "{}",
        set.cohorts[0].name
    );
}

#[test]
fn ids_survive_reclustering_and_a_new_group_gets_a_new_incarnation() {
    let mut clusterer = Clusterer::new(config()).unwrap();
    let first = clusterer.recluster(&population(&[MOBILE_BROWSERS, STATIC_BOTS], 200, 3), 0);
    let id_of = |set: &CohortSet, kind: Kind| {
        let mut rng = Rng::new(99);
        set.assign(&user(&kind, 5, &mut rng).features).unwrap()
    };
    let (mobile, bots) = (id_of(&first, MOBILE_BROWSERS), id_of(&first, STATIC_BOTS));
    assert_ne!(mobile, bots);

    // Different users, a new group, the same old groups.
    let kinds = [EXPORTERS, STATIC_BOTS, MOBILE_BROWSERS];
    let second = clusterer.recluster(&population(&kinds, 200, 4), 60_000);
    assert_eq!(second.k(), 3);
    assert_eq!(id_of(&second, MOBILE_BROWSERS), mobile);
    assert_eq!(id_of(&second, STATIC_BOTS), bots);
    let new = second.get(id_of(&second, EXPORTERS)).unwrap();
    assert!(first.get(new.id).is_none(), "a fresh id was free");
    let old_incarnations: Vec<u64> = first.cohorts.iter().map(|c| c.incarnation).collect();
    assert!(!old_incarnations.contains(&new.incarnation));
    assert_eq!(
        second.get(mobile).unwrap().incarnation,
        first.get(mobile).unwrap().incarnation
    );
    assert_eq!(second.generation, 2);

    // The bots leave: their id is not reused for anyone else.
    let third = clusterer.recluster(&population(&[EXPORTERS, MOBILE_BROWSERS], 200, 5), 120_000);
    assert!(third.get(bots).is_none());
    assert_eq!(id_of(&third, MOBILE_BROWSERS), mobile);
    assert_eq!(id_of(&third, EXPORTERS), new.id);
}

#[test]
fn reclustering_a_table_writes_each_users_cohort() {
    let table: UserTable<()> = UserTable::new(TableConfig {
        idle_timeout_ms: 86_400_000,
        ..TableConfig::default()
    })
    .unwrap();
    // Page readers by day on desktops; static crawlers by night.
    let t0 = 10 * 86_400_000;
    for u in 0..120u64 {
        let crawler = u % 2 == 1;
        let entry = table.get_or_insert(u, t0).unwrap();
        for i in 0..20 {
            let (hour, class, gap) = if crawler {
                (2, STATIC, 2_000)
            } else {
                (14, PAGE, 45_000)
            };
            let t = t0 + hour * 3_600_000 + i * gap + u * 7;
            entry.windows.record_arrival(t, class as u8, 0);
            entry
                .windows
                .record_response(t + 20, 200, if crawler { 900 } else { 60_000 }, 10);
        }
    }
    let device = |key: u64, _: &UserEntry<()>| UserAttributes {
        device: if key % 2 == 1 { 3 } else { 1 },
        ..UserAttributes::default()
    };
    let mut clusterer = Clusterer::new(config()).unwrap();
    let set = clusterer.recluster_table(&table, device, t0 + 86_400_000);
    assert_eq!(set.k(), 2, "scores {:?}", set.silhouette_by_k);
    assert_eq!(set.users, 120);
    let cohort_of = |key: u64| {
        table
            .get(key)
            .unwrap()
            .windows
            .last_action()
            .load()
            .1
            .unwrap()
    };
    for u in 0..120 {
        assert_eq!(cohort_of(u), cohort_of(u % 2), "user {u}");
    }
    let crawlers = set.get(cohort_of(1)).unwrap();
    assert!(crawlers.name.starts_with("bot-static"), "{}", crawlers.name);
    assert!(
        crawlers.hourly_shape[2] > 2.0,
        "{:?}",
        crawlers.hourly_shape
    );
    assert!(crawlers.total_smoothed_rps >= 0.0);
}

#[test]
fn an_empty_input_gives_an_empty_set() {
    let mut clusterer = Clusterer::new(config()).unwrap();
    let set = clusterer.recluster(&[], 5);
    assert_eq!((set.k(), set.users, set.generation), (0, 0, 1));
    let mut rng = Rng::new(1);
    assert_eq!(set.assign(&user(&EXPORTERS, 1, &mut rng).features), None);
}

#[test]
fn hourly_shape_has_mean_one_and_peaks_at_the_busy_bin() {
    let mut mix = [0.0; HOUR_BINS];
    mix[3] = 1.0; // 09:00-12:00 UTC
    let shape = hourly_shape(&mix);
    assert!((shape.iter().sum::<f64>() - 24.0).abs() < 1e-9);
    let peak = (0..24)
        .max_by(|&a, &b| shape[a].total_cmp(&shape[b]))
        .unwrap();
    assert_eq!(peak, 10);
    assert_eq!(shape[20], 0.0);
    assert_eq!(hourly_shape(&[0.0; HOUR_BINS]), [1.0; 24]);
    let flat = hourly_shape(&[0.125; HOUR_BINS]);
    assert!(flat.iter().all(|&v| (v - 1.0).abs() < 1e-12));
}

#[test]
fn config_out_of_range_is_refused_with_the_field_named() {
    let bad = CohortConfig {
        max_k: 9,
        ..CohortConfig::default()
    };
    let err = Clusterer::new(bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid cohort config: max_k must be 1 to 8"
    );
    assert!(CohortId::new(8).is_none() && CohortId::new(7).is_some());
    assert!(serde_json::from_str::<CohortId>("9").is_err());
}
