//! Seeded k-means with k-means++ initialisation, small enough to read.
//!
//! Cohorts need at most eight clusters of a few thousand sampled users in a
//! few dozen dimensions, re-fitted every few minutes in the background, so a
//! plain Lloyd iteration is fast enough (a few million flops per fit) and a
//! dependency would buy nothing. Everything is deterministic for a given
//! seed: the generator is SplitMix64 and ties go to the lower index.

use crate::cohort::features::{Vector, DIMS};

/// SplitMix64: a small, well-mixed, seedable generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A uniform value in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The SplitMix64 finaliser: a bijective mix of `x`, also used to pick
/// users for samples independently of table order.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Squared Euclidean distance.
pub(crate) fn dist2(a: &Vector, b: &Vector) -> f64 {
    let mut sum = 0.0;
    for j in 0..DIMS {
        let d = a[j] - b[j];
        sum += d * d;
    }
    sum
}

/// Index of the centroid nearest to `p` (the lower index on ties) and the
/// squared distance to it. `centroids` must not be empty.
pub(crate) fn nearest(centroids: &[Vector], p: &Vector) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let d = dist2(c, p);
        if d < best.1 {
            best = (i, d);
        }
    }
    best
}

/// A fitted clustering.
#[derive(Debug, Clone)]
pub(crate) struct Clustering {
    /// Cluster centres, in the points' space.
    pub centroids: Vec<Vector>,
    /// Cluster of each point.
    pub labels: Vec<usize>,
    /// Sum of squared distances of points to their centres.
    pub inertia: f64,
}

impl Clustering {
    /// Points in each cluster.
    pub(crate) fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.centroids.len()];
        for &l in &self.labels {
            sizes[l] += 1;
        }
        sizes
    }
}

/// Best of `restarts` k-means fits of `points` into `k` clusters, each
/// seeded by k-means++ and iterated at most `max_iterations` times.
///
/// `k` is clamped to `1..=points.len()`; `points` must not be empty.
pub(crate) fn kmeans(
    points: &[Vector],
    k: usize,
    restarts: usize,
    max_iterations: usize,
    rng: &mut Rng,
) -> Clustering {
    let k = k.clamp(1, points.len().max(1));
    let mut best: Option<Clustering> = None;
    for _ in 0..restarts.max(1) {
        let seeds = seed_plus_plus(points, k, rng);
        let fit = lloyd(points, seeds, max_iterations);
        if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
            best = Some(fit);
        }
    }
    best.expect("at least one restart ran")
}

/// k-means++ seeding: each next centre is drawn with probability
/// proportional to its squared distance from the centres so far.
fn seed_plus_plus(points: &[Vector], k: usize, rng: &mut Rng) -> Vec<Vector> {
    let n = points.len();
    let first = (rng.next_u64() % n as u64) as usize;
    let mut centroids = vec![points[first]];
    let mut d2: Vec<f64> = points.iter().map(|p| dist2(p, &points[first])).collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.next_f64() * total;
            let mut chosen = n - 1;
            for (i, &d) in d2.iter().enumerate() {
                if target < d {
                    chosen = i;
                    break;
                }
                target -= d;
            }
            chosen
        } else {
            // Every point sits on a centre already: any point will do.
            (rng.next_u64() % n as u64) as usize
        };
        let c = points[pick];
        for (d, p) in d2.iter_mut().zip(points) {
            *d = d.min(dist2(p, &c));
        }
        centroids.push(c);
    }
    centroids
}

/// Lloyd's iteration from `centroids` until no label changes. A cluster
/// left empty takes the point farthest from its own centre.
fn lloyd(points: &[Vector], mut centroids: Vec<Vector>, max_iterations: usize) -> Clustering {
    let k = centroids.len();
    let mut labels = vec![usize::MAX; points.len()];
    for _ in 0..max_iterations.max(1) {
        // Assignment step.
        let mut changed = false;
        let mut far = (0, -1.0);
        for (i, p) in points.iter().enumerate() {
            let (c, d) = nearest(&centroids, p);
            if labels[i] != c {
                labels[i] = c;
                changed = true;
            }
            if d > far.1 {
                far = (i, d);
            }
        }
        if !changed {
            break;
        }

        // Update step: means of the members.
        let mut sums = vec![[0.0; DIMS]; k];
        let mut counts = vec![0usize; k];
        for (p, &l) in points.iter().zip(&labels) {
            counts[l] += 1;
            for j in 0..DIMS {
                sums[l][j] += p[j];
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                centroids[c] = points[far.0];
                labels[far.0] = c;
                continue;
            }
            centroids[c] = sums[c].map(|s| s / counts[c] as f64);
        }
    }
    let inertia = points
        .iter()
        .zip(&labels)
        .map(|(p, &l)| dist2(p, &centroids[l]))
        .sum();
    Clustering {
        centroids,
        labels,
        inertia,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points around each of `centres` (first two dimensions), with
    /// uniform noise of half-width `spread`.
    pub(crate) fn blobs(centres: &[(f64, f64)], n: usize, spread: f64, seed: u64) -> Vec<Vector> {
        let mut rng = Rng::new(seed);
        let mut points = Vec::new();
        for &(x, y) in centres {
            for _ in 0..n {
                let mut p = [0.0; DIMS];
                p[0] = x + (rng.next_f64() - 0.5) * 2.0 * spread;
                p[1] = y + (rng.next_f64() - 0.5) * 2.0 * spread;
                points.push(p);
            }
        }
        points
    }

    #[test]
    fn separated_blobs_are_recovered_exactly() {
        let points = blobs(&[(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)], 50, 1.0, 7);
        let fit = kmeans(&points, 3, 3, 100, &mut Rng::new(1));
        assert_eq!(fit.sizes(), vec![50, 50, 50]);
        for blob in points.chunks(50).zip(fit.labels.chunks(50)) {
            let first = blob.1[0];
            assert!(blob.1.iter().all(|&l| l == first), "a blob was split");
        }
        assert!(
            fit.inertia < 150.0 * 2.0 * (2.0_f64 / 3.0),
            "{}",
            fit.inertia
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_fit() {
        let points = blobs(&[(0.0, 0.0), (3.0, 3.0)], 40, 2.0, 3);
        let a = kmeans(&points, 2, 2, 100, &mut Rng::new(9));
        let b = kmeans(&points, 2, 2, 100, &mut Rng::new(9));
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centroids, b.centroids);
    }

    #[test]
    fn more_clusters_than_distinct_points_still_fills_every_cluster_label() {
        let points = vec![[0.0; DIMS]; 5];
        let fit = kmeans(&points, 3, 1, 10, &mut Rng::new(0));
        assert_eq!(fit.labels.len(), 5);
        assert!(fit.labels.iter().all(|&l| l < 3));
        assert_eq!(fit.inertia, 0.0);
        let one = kmeans(&points[..1], 8, 1, 10, &mut Rng::new(0));
        assert_eq!(one.centroids.len(), 1, "k is clamped to the point count");
    }

    #[test]
    fn mix64_is_a_bijection_on_a_sample() {
        let mut seen: Vec<u64> = (0..10_000).map(mix64).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000);
    }
}
