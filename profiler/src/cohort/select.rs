//! Choosing the number of cohorts from the data.
//!
//! For each k from 2 to the configured maximum, k-means is fitted on the
//! sample and scored by its mean silhouette on a smaller sub-sample (the
//! silhouette of a point is `(b - a) / max(a, b)`, with `a` its mean distance
//! to its own cluster and `b` to the nearest other one; 1 is perfectly
//! separated, 0 is on a border). The k with the best score wins, with two
//! guards:
//! - a fit with a cluster smaller than `min_cluster_share` of the sample, or
//!   than five users, is skipped, so that a handful of outliers cannot make
//!   a cohort (and a small table cannot be cut into many tiny ones);
//! - the silhouette cannot score k = 1, so one cohort is chosen when no k
//!   reaches `min_silhouette` (0.25 by default: below it Kaufman and
//!   Rousseeuw read "no substantial structure"). In the few dozen dimensions
//!   used here a single Gaussian blob split in two scores near 0.1.
//!
//! A larger k must beat a smaller one by more than 0.01 to be preferred, so
//! near ties go to fewer cohorts.
//!
//! Cost: the silhouette is quadratic in its sub-sample (800 points by
//! default: 640 000 distances per k).

use crate::cohort::features::Vector;
use crate::cohort::kmeans::{dist2, kmeans, Clustering, Rng};
use crate::cohort::CohortConfig;

/// Smallest improvement in silhouette that justifies one more cohort.
const PREFER_FEWER_BY: f64 = 0.01;

/// Fewest users in any cohort of an acceptable fit.
const MIN_CLUSTER_USERS: usize = 5;

/// The outcome of [`choose_k`].
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    /// The chosen fit.
    pub clustering: Clustering,
    /// Its mean silhouette, `None` for a single cluster.
    pub silhouette: Option<f64>,
    /// Silhouette of every k tried (skipped fits are left out).
    pub scores: Vec<(usize, f64)>,
}

/// Fits `points` with every k in `1..=max_k` and picks one; see the module
/// docs. `points` must not be empty.
pub(crate) fn choose_k(points: &[Vector], config: &CohortConfig, rng: &mut Rng) -> Choice {
    let single = || kmeans(points, 1, 1, 1, &mut Rng::new(0));
    if points.len() < config.min_users.max(2) {
        return Choice {
            clustering: single(),
            silhouette: None,
            scores: Vec::new(),
        };
    }

    let sample = sub_sample(points.len(), config.silhouette_sample, rng);
    let min_size =
        ((config.min_cluster_share * points.len() as f64).ceil() as usize).max(MIN_CLUSTER_USERS);
    let mut scores = Vec::new();
    let mut best: Option<(f64, Clustering)> = None;
    for k in 2..=config.max_k.min(points.len() / min_size) {
        let fit = kmeans(points, k, config.restarts, config.max_iterations, rng);
        if fit.sizes().iter().any(|&s| s < min_size) {
            tracing::trace!(k, "cohort fit skipped: a cluster is too small");
            continue;
        }
        let score = silhouette(points, &fit.labels, k, &sample);
        scores.push((k, score));
        if best
            .as_ref()
            .is_none_or(|(s, _)| score > s + PREFER_FEWER_BY)
        {
            best = Some((score, fit));
        }
    }

    match best {
        Some((score, clustering)) if score >= config.min_silhouette => Choice {
            clustering,
            silhouette: Some(score),
            scores,
        },
        _ => Choice {
            clustering: single(),
            silhouette: None,
            scores,
        },
    }
}

/// Up to `size` distinct indices below `n`, drawn without replacement
/// (a partial Fisher-Yates shuffle), in increasing order.
fn sub_sample(n: usize, size: usize, rng: &mut Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let take = size.min(n);
    for i in 0..take {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(take);
    all.sort_unstable();
    all
}

/// Mean silhouette over the points of `sample`, with distances measured
/// within the sample. A point alone in its cluster (within the sample)
/// scores 0, as in the usual definition.
pub(crate) fn silhouette(points: &[Vector], labels: &[usize], k: usize, sample: &[usize]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    let mut sizes = vec![0usize; k];
    for &i in sample {
        sizes[labels[i]] += 1;
    }
    let mut total = 0.0;
    let mut sums = vec![0.0; k];
    for &i in sample {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for &j in sample {
            if i != j {
                sums[labels[j]] += dist2(&points[i], &points[j]).sqrt();
            }
        }
        let own = labels[i];
        if sizes[own] < 2 {
            continue;
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() && a.max(b) > 0.0 {
            total += (b - a) / a.max(b);
        }
    }
    total / sample.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::features::DIMS;

    /// `n` points around each centre, Gaussian-ish (sum of uniforms) noise
    /// of standard deviation `sd` in every one of `dims` dimensions.
    fn blobs(centres: &[&[f64]], n: usize, sd: f64, dims: usize, seed: u64) -> Vec<Vector> {
        let mut rng = Rng::new(seed);
        let mut points = Vec::new();
        for centre in centres {
            for _ in 0..n {
                let mut p = [0.0; DIMS];
                for (j, x) in p.iter_mut().enumerate().take(dims) {
                    // Sum of 12 uniforms minus 6: mean 0, variance 1.
                    let g: f64 = (0..12).map(|_| rng.next_f64()).sum::<f64>() - 6.0;
                    *x = centre.get(j).copied().unwrap_or(0.0) + sd * g;
                }
                points.push(p);
            }
        }
        points
    }

    fn config() -> CohortConfig {
        CohortConfig::default()
    }

    #[test]
    fn four_separated_groups_choose_four() {
        let points = blobs(
            &[&[0.0, 0.0], &[6.0, 0.0], &[0.0, 6.0], &[6.0, 6.0]],
            100,
            1.0,
            12,
            5,
        );
        let choice = choose_k(&points, &config(), &mut Rng::new(1));
        assert_eq!(choice.clustering.centroids.len(), 4, "{:?}", choice.scores);
        assert!(choice.silhouette.unwrap() > config().min_silhouette);
    }

    #[test]
    fn one_blob_in_many_dimensions_chooses_one() {
        let points = blobs(&[&[]], 400, 1.0, 20, 8);
        let choice = choose_k(&points, &config(), &mut Rng::new(1));
        assert_eq!(choice.clustering.centroids.len(), 1, "{:?}", choice.scores);
        assert_eq!(choice.silhouette, None);
        assert!(choice.scores.iter().all(|&(_, s)| s < 0.25));
    }

    #[test]
    fn a_few_outliers_do_not_make_a_cohort() {
        let mut points = blobs(&[&[0.0], &[8.0]], 200, 1.0, 4, 2);
        points.extend(blobs(&[&[0.0, 60.0]], 3, 0.1, 4, 3));
        let choice = choose_k(&points, &config(), &mut Rng::new(4));
        let sizes = choice.clustering.sizes();
        assert!(sizes.iter().all(|&s| s >= 9), "{sizes:?}");
    }

    #[test]
    fn too_few_users_make_one_cohort() {
        let points = blobs(&[&[0.0], &[50.0]], 5, 0.1, 2, 1);
        let choice = choose_k(&points, &config(), &mut Rng::new(1));
        assert_eq!(choice.clustering.centroids.len(), 1);
        assert!(choice.scores.is_empty());
    }

    #[test]
    fn silhouette_is_near_one_for_tight_far_clusters_and_zero_for_singletons() {
        let points = blobs(&[&[0.0], &[100.0]], 20, 0.01, 1, 1);
        let labels: Vec<usize> = (0..40).map(|i| i / 20).collect();
        let all: Vec<usize> = (0..40).collect();
        assert!(silhouette(&points, &labels, 2, &all) > 0.99);
        let singletons: Vec<usize> = (0..40).collect();
        assert_eq!(silhouette(&points, &singletons, 40, &all), 0.0);
    }
}
