//! The re-clustering step: sample, standardise, fit, match ids, name,
//! assign everyone, aggregate. See the parent module for the why.

use std::sync::Arc;

use crate::activity::ROUTE_CLASSES;
use crate::cohort::features::{raw_vector, ColumnStats, Standardiser, Vector};
use crate::cohort::kmeans::{dist2, mix64, nearest, Rng};
use crate::cohort::select::choose_k;
use crate::cohort::signature::HOUR_BINS;
use crate::cohort::{
    naming, BehaviourFeatures, Cohort, CohortConfig, CohortError, CohortId, CohortSet,
    UserAttributes, MAX_COHORTS,
};
use crate::table::{UserEntry, UserTable};

/// One user as the clusterer sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserSample {
    /// The user's table key (used to pick the fitting sample).
    pub key: u64,
    /// What the user is clustered on.
    pub features: BehaviourFeatures,
    /// The user's current smoothed rate (requests per second), summed into
    /// [`Cohort::total_smoothed_rps`].
    pub smoothed_rps: f64,
}

/// Fits cohorts again and again, keeping ids stable; see the module docs.
/// Owned by the one background task that re-clusters (`&mut self`).
#[derive(Debug)]
pub struct Clusterer {
    config: CohortConfig,
    previous: Option<Arc<CohortSet>>,
    generation: u64,
    incarnations: u64,
}

/// Running sums over one cohort's members.
#[derive(Debug, Clone, Default)]
struct Totals {
    members: usize,
    requests_per_min: f64,
    smoothed_rps: f64,
    log2_bytes: f64,
    with_bytes: usize,
    session_min: f64,
    route_mix: [f64; ROUTE_CLASSES],
    hour_mix: [f64; HOUR_BINS],
}

impl Totals {
    fn add(&mut self, user: &UserSample) {
        let f = &user.features;
        self.members += 1;
        self.requests_per_min += f.requests_per_min;
        self.smoothed_rps += user.smoothed_rps;
        if let Some(b) = f.log2_bytes {
            self.log2_bytes += b;
            self.with_bytes += 1;
        }
        self.session_min += f.session_min;
        for (t, m) in self.route_mix.iter_mut().zip(&f.route_mix) {
            *t += m;
        }
        for (t, m) in self.hour_mix.iter_mut().zip(&f.hour_mix) {
            *t += m;
        }
    }
}

impl Clusterer {
    /// A clusterer with no clustering yet.
    ///
    /// # Errors
    /// [`CohortError::Config`] if `config` is invalid.
    pub fn new(config: CohortConfig) -> Result<Self, CohortError> {
        config.validate()?;
        Ok(Self {
            config,
            previous: None,
            generation: 0,
            incarnations: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CohortConfig {
        &self.config
    }

    /// The latest clustering, if any.
    pub fn current(&self) -> Option<&Arc<CohortSet>> {
        self.previous.as_ref()
    }

    /// Clusters `users` as of `now_ms` and returns the new set (also kept
    /// as [`Self::current`] for matching ids next time). An empty input
    /// gives an empty set.
    pub fn recluster(&mut self, users: &[UserSample], now_ms: u64) -> Arc<CohortSet> {
        self.fit(users, now_ms).0
    }

    /// Clusters every user of `table` that has arrived at least once, with
    /// `attributes(key, entry)` giving each user's attributes, and writes
    /// each user's new cohort into its windows (see
    /// [`LastAction::set_cohort`](crate::next_action::LastAction::set_cohort)).
    ///
    /// Copies the table's entries out first, so no shard stays locked while
    /// fitting; users arriving meanwhile keep their old cohort (or none)
    /// until the next call.
    pub fn recluster_table<E: Default + Send + Sync + 'static>(
        &mut self,
        table: &UserTable<E>,
        attributes: impl Fn(u64, &UserEntry<E>) -> UserAttributes,
        now_ms: u64,
    ) -> Arc<CohortSet> {
        let entries = table.entries();
        let mut samples = Vec::with_capacity(entries.len());
        let mut owners = Vec::with_capacity(entries.len());
        for (key, entry) in &entries {
            let attrs = attributes(*key, entry);
            if let Some(features) = BehaviourFeatures::from_user(&entry.windows, attrs) {
                samples.push(UserSample {
                    key: *key,
                    features,
                    smoothed_rps: entry.windows.smoothed_rps(now_ms),
                });
                owners.push(entry);
            }
        }
        let (set, labels) = self.fit(&samples, now_ms);
        for (entry, label) in owners.iter().zip(labels) {
            entry.windows.last_action().set_cohort(label);
        }
        tracing::debug!(
            generation = set.generation,
            users = set.users,
            k = set.k(),
            silhouette = set.silhouette.unwrap_or(f64::NAN),
            "cohorts re-clustered"
        );
        set
    }

    /// Puts every user of `table` without a cohort (those who arrived since
    /// the last re-clustering) in the nearest cohort of the current
    /// clustering; returns how many. Cheap enough for every tick: one
    /// feature read and one nearest-centre search per such user, with one
    /// shard read-locked at a time. Does nothing before the first
    /// clustering.
    pub fn assign_new<E: Default + Send + Sync + 'static>(
        &self,
        table: &UserTable<E>,
        attributes: impl Fn(u64, &UserEntry<E>) -> UserAttributes,
    ) -> usize {
        let Some(set) = self.previous.as_ref() else {
            return 0;
        };
        let mut assigned = 0;
        table.for_each(|key, entry| {
            let last_action = entry.windows.last_action();
            if last_action.load().1.is_some() {
                return;
            }
            let features = BehaviourFeatures::from_user(&entry.windows, attributes(key, entry));
            if let Some(id) = features.and_then(|f| set.assign(&f)) {
                last_action.set_cohort(Some(id));
                assigned += 1;
            }
        });
        assigned
    }

    /// The clustering of `users` and each user's cohort.
    fn fit(
        &mut self,
        users: &[UserSample],
        now_ms: u64,
    ) -> (Arc<CohortSet>, Vec<Option<CohortId>>) {
        self.generation += 1;
        let mut set = CohortSet::empty();
        set.generation = self.generation;
        set.computed_at_ms = now_ms;
        if users.is_empty() {
            let set = Arc::new(set);
            self.previous = Some(Arc::clone(&set));
            return (set, Vec::new());
        }

        // Fit on a sample picked by key hash, standardised on itself.
        let raw_sample: Vec<Vector> = self
            .sample(users)
            .into_iter()
            .map(|i| raw_vector(&users[i].features))
            .collect();
        let stats = ColumnStats::of(&raw_sample, None);
        let standardiser = Standardiser::fit(&stats);
        let points: Vec<Vector> = raw_sample.iter().map(|r| standardiser.apply(r)).collect();
        let choice = choose_k(&points, &self.config, &mut Rng::new(self.config.seed));
        let centroids = &choice.clustering.centroids;

        // Raw centres (for names and for the next matching), then ids.
        let raw_centres: Vec<Vector> = (0..centroids.len())
            .map(|c| {
                let members: Vec<usize> = (0..raw_sample.len())
                    .filter(|&i| choice.clustering.labels[i] == c)
                    .collect();
                ColumnStats::of(&raw_sample, Some(&members)).mean
            })
            .collect();
        let ids = self.match_ids(&raw_centres, &standardiser);

        // Everyone goes to the nearest centre.
        let mut totals = vec![Totals::default(); centroids.len()];
        let labels = users
            .iter()
            .map(|u| {
                let (c, _) = nearest(centroids, &standardiser.apply(&raw_vector(&u.features)));
                totals[c].add(u);
                Some(ids[c].0)
            })
            .collect();

        let mut names: Vec<String> = raw_centres
            .iter()
            .map(|c| naming::name(c, &stats, &self.config.names))
            .collect();
        let mut order: Vec<usize> = (0..centroids.len()).collect();
        order.sort_by_key(|&c| ids[c].0);
        let sorted_names: Vec<String> = order.iter().map(|&c| names[c].clone()).collect();
        names = sorted_names;
        naming::dedupe(&mut names);

        set.users = users.len();
        set.sampled = raw_sample.len();
        set.silhouette = choice.silhouette;
        set.silhouette_by_k = choice.scores;
        set.cohorts = order
            .iter()
            .zip(names)
            .map(|(&c, name)| cohort(ids[c], name, &totals[c], raw_centres[c]))
            .collect();
        set.centres = order.iter().map(|&c| (ids[c].0, centroids[c])).collect();
        set.standardiser = Some(standardiser);
        let set = Arc::new(set);
        self.previous = Some(Arc::clone(&set));
        (set, labels)
    }

    /// Indices of up to `fit_sample` users: those whose mixed key is
    /// smallest, so the same users stay in the sample across calls.
    fn sample(&self, users: &[UserSample]) -> Vec<usize> {
        let mut order: Vec<(u64, usize)> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (mix64(u.key ^ self.config.seed), i))
            .collect();
        order.sort_unstable();
        order.truncate(self.config.fit_sample);
        let mut picked: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
        picked.sort_unstable();
        picked
    }

    /// (id, incarnation) for each new centre: the previous cohort it matches
    /// best, or a free id and a new incarnation.
    ///
    /// The matching minimises the total squared distance (in the new
    /// scale) over one-to-one pairings, by dynamic programming over subsets
    /// of the previous cohorts (at most 8, so 256 subsets); a pair farther
    /// apart than the scale's total weight (half the expected squared
    /// distance between two random users) is never matched.
    fn match_ids(&mut self, raw_centres: &[Vector], scale: &Standardiser) -> Vec<(CohortId, u64)> {
        let old: Vec<(CohortId, u64, Vector)> = self
            .previous
            .iter()
            .flat_map(|set| set.cohorts.iter())
            .map(|c| (c.id, c.incarnation, scale.apply(&c.raw_centre)))
            .collect();
        let new: Vec<Vector> = raw_centres.iter().map(|c| scale.apply(c)).collect();
        let pairs = optimal_pairs(
            &new,
            &old.iter().map(|o| o.2).collect::<Vec<_>>(),
            scale.weight(),
        );

        let mut taken = [false; MAX_COHORTS];
        for &j in pairs.iter().flatten() {
            taken[old[j].0.index()] = true;
        }
        let was_used: Vec<usize> = old.iter().map(|o| o.0.index()).collect();
        pairs
            .iter()
            .map(|pair| match *pair {
                Some(j) => (old[j].0, old[j].1),
                None => {
                    // Prefer an id that meant nothing last time.
                    let free = (0..MAX_COHORTS)
                        .find(|&i| !taken[i] && !was_used.contains(&i))
                        .or_else(|| (0..MAX_COHORTS).find(|&i| !taken[i]))
                        .expect("at most MAX_COHORTS centres, so an id is free");
                    taken[free] = true;
                    self.incarnations += 1;
                    let id = CohortId::new(free as u8).expect("free < MAX_COHORTS");
                    (id, self.incarnations)
                }
            })
            .collect()
    }
}

/// For each of `new`, the index of its partner in `old` or `None`, from a
/// one-to-one pairing of least total squared distance where leaving a
/// centre unpaired costs `limit`.
fn optimal_pairs(new: &[Vector], old: &[Vector], limit: f64) -> Vec<Option<usize>> {
    let subsets = 1usize << old.len();
    let mut cost = vec![vec![f64::INFINITY; subsets]; new.len() + 1];
    // Choice made for new centre i reaching (i + 1, mask): old index or none.
    let mut via = vec![vec![(0usize, None::<usize>); subsets]; new.len() + 1];
    cost[0][0] = 0.0;
    for (i, centre) in new.iter().enumerate() {
        for mask in 0..subsets {
            let here = cost[i][mask];
            if !here.is_finite() {
                continue;
            }
            if here + limit < cost[i + 1][mask] {
                cost[i + 1][mask] = here + limit;
                via[i + 1][mask] = (mask, None);
            }
            for (j, o) in old.iter().enumerate() {
                let d = dist2(centre, o);
                let next = mask | (1 << j);
                if mask & (1 << j) == 0 && d <= limit && here + d < cost[i + 1][next] {
                    cost[i + 1][next] = here + d;
                    via[i + 1][next] = (mask, Some(j));
                }
            }
        }
    }
    let mut mask = (0..subsets)
        .min_by(|&a, &b| cost[new.len()][a].total_cmp(&cost[new.len()][b]))
        .unwrap_or(0);
    let mut pairs = vec![None; new.len()];
    for i in (1..=new.len()).rev() {
        let (previous, pick) = via[i][mask];
        pairs[i - 1] = pick;
        mask = previous;
    }
    pairs
}

/// A cohort from its members' totals.
fn cohort(id: (CohortId, u64), name: String, t: &Totals, raw_centre: Vector) -> Cohort {
    let n = t.members.max(1) as f64;
    let hour_mix = t.hour_mix.map(|h| h / n);
    Cohort {
        id: id.0,
        name,
        incarnation: id.1,
        members: t.members,
        mean_requests_per_min: t.requests_per_min / n,
        total_smoothed_rps: t.smoothed_rps,
        mean_log2_bytes: (t.with_bytes > 0).then(|| t.log2_bytes / t.with_bytes as f64),
        mean_session_min: t.session_min / n,
        route_mix: t.route_mix.map(|r| r / n),
        hour_mix,
        hourly_shape: hourly_shape(&hour_mix),
        raw_centre,
    }
}

/// Hour-of-day factors with mean 1 from three-hour shares: each hour takes
/// the linear interpolation between the two nearest bin centres (bins are
/// centred at 01:30, 04:30, ...; the day wraps). All 1 when the shares are
/// all zero.
pub(crate) fn hourly_shape(hour_mix: &[f64; HOUR_BINS]) -> [f64; 24] {
    let bins = HOUR_BINS as f64;
    let raw: [f64; 24] = std::array::from_fn(|h| {
        // Position of the hour's middle in bin units, from bin 0's centre.
        let x = (h as f64 + 0.5 - 1.5) / 3.0;
        let lower = x.floor();
        let frac = x - lower;
        let b0 = lower.rem_euclid(bins) as usize;
        let b1 = (b0 + 1) % HOUR_BINS;
        hour_mix[b0] * (1.0 - frac) + hour_mix[b1] * frac
    });
    let mean = raw.iter().sum::<f64>() / 24.0;
    if mean <= 0.0 || !mean.is_finite() {
        return [1.0; 24];
    }
    raw.map(|v| v / mean)
}
