//! Recursive least squares with exponential forgetting.
//!
//! The lag regression refits its weights at every bucket. Refitting ordinary
//! least squares on a sliding window would cost O(window * n^2) per step;
//! RLS carries the inverse of the (discounted) Gram matrix instead and
//! updates it in O(n^2), with older observations down-weighted by `lambda`
//! per step, so the fit tracks slow changes in the series.
//!
//! Known weakness, handled here: with forgetting, directions the features do
//! not excite let the inverse grow without bound ("wind-up"), after which
//! one unusual input moves the weights wildly. Each diagonal entry of the
//! inverse is capped at 100 times its initial value by a congruence scaling of its
//! row and column, which bounds the unexcited directions only (scaling the
//! whole matrix instead would also freeze the directions being learned).

/// How far a diagonal entry of the inverse may grow past its initial value.
/// Real, noisy features keep every direction excited enough that the cap
/// rarely binds; a direction with no excitation at all reaches it after
/// `ln(100) / (1 - lambda)` updates (16 days of minutes at the regression's
/// lambda). Once capped, that row no longer forgets, so the cap must sit
/// well above where excited directions live: capping at the initial value
/// slowed a noiseless fit tenfold.
const MAX_DIAGONAL_GROWTH: f64 = 100.0;

/// An online linear fit `y ~ w . x` over `n` features.
#[derive(Debug, Clone)]
pub struct Rls {
    weights: Vec<f64>,
    /// Inverse of the discounted Gram matrix, row-major `n * n`.
    inverse: Vec<f64>,
    lambda: f64,
    max_diagonal: f64,
    /// Scratch for `inverse * x`.
    px: Vec<f64>,
    updates: u64,
}

impl Rls {
    /// A fit over `n` features (at least 1), forgetting a factor `lambda`
    /// per update (clamped to `[0.9, 1]`), starting from weights `initial`
    /// (zeros when its length is not `n`) with an inverse of `delta * I`
    /// (larger `delta`: the first observations move the weights more).
    pub fn new(n: usize, lambda: f64, delta: f64, initial: &[f64]) -> Self {
        let n = n.max(1);
        let delta = if delta.is_finite() && delta > 0.0 {
            delta
        } else {
            1.0
        };
        let mut inverse = vec![0.0; n * n];
        for i in 0..n {
            inverse[i * n + i] = delta;
        }
        let weights = if initial.len() == n {
            initial.to_vec()
        } else {
            vec![0.0; n]
        };
        Self {
            weights,
            inverse,
            lambda: if lambda.is_nan() {
                1.0
            } else {
                lambda.clamp(0.9, 1.0)
            },
            max_diagonal: MAX_DIAGONAL_GROWTH * delta,
            px: vec![0.0; n],
            updates: 0,
        }
    }

    /// The current weights, one per feature.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Updates applied so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// `w . x`; features beyond `n` are ignored, missing ones read as 0.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.weights.iter().zip(x).map(|(w, v)| w * v).sum()
    }

    /// Moves the fit towards `y` at `x`. Inputs of the wrong length or
    /// with non-finite values are ignored.
    pub fn update(&mut self, x: &[f64], y: f64) {
        let n = self.weights.len();
        if x.len() != n || !y.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return;
        }

        // px = P x and the gain denominator lambda + x' P x.
        for (i, out) in self.px.iter_mut().enumerate() {
            let row = &self.inverse[i * n..(i + 1) * n];
            *out = row.iter().zip(x).map(|(p, v)| p * v).sum();
        }
        let denominator = self.lambda + x.iter().zip(&self.px).map(|(v, p)| v * p).sum::<f64>();
        if !(denominator.is_finite() && denominator > 0.0) {
            return;
        }

        // Weights move along the gain P x / denominator.
        let error = y - self.predict(x);
        for (w, p) in self.weights.iter_mut().zip(&self.px) {
            *w += p / denominator * error;
        }

        // P = (P - P x x' P / denominator) / lambda.
        for i in 0..n {
            for j in 0..n {
                let cell = &mut self.inverse[i * n + j];
                *cell = (*cell - self.px[i] * self.px[j] / denominator) / self.lambda;
            }
        }

        // Against wind-up: a diagonal above its cap is scaled back by
        // `D P D` with `D = diag(sqrt(cap / P_ii))` on the offending rows,
        // which keeps P positive definite and leaves excited directions be.
        for i in 0..n {
            let diagonal = self.inverse[i * n + i];
            if diagonal > self.max_diagonal {
                let s = (self.max_diagonal / diagonal).sqrt();
                for j in 0..n {
                    self.inverse[i * n + j] *= s;
                    self.inverse[j * n + i] *= s;
                }
            }
        }
        self.updates += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_weights_of_a_noiseless_linear_relation() {
        let mut rls = Rls::new(3, 1.0, 100.0, &[]);
        for i in 0..200 {
            let a = f64::from(i % 7);
            let b = f64::from((i * 3) % 11);
            let x = [1.0, a, b];
            rls.update(&x, 2.0 + 0.5 * a - 1.5 * b);
        }
        let w = rls.weights();
        assert!((w[0] - 2.0).abs() < 1e-3, "{w:?}");
        assert!((w[1] - 0.5).abs() < 1e-3, "{w:?}");
        assert!((w[2] + 1.5).abs() < 1e-3, "{w:?}");
    }

    #[test]
    fn forgetting_follows_a_relation_that_changes() {
        let mut rls = Rls::new(2, 0.98, 10.0, &[]);
        for i in 0..500 {
            let a = f64::from(i % 13);
            let slope = if i < 250 { 1.0 } else { 3.0 };
            rls.update(&[1.0, a], slope * a);
        }
        // Data before the change still weighs 0.98^250 = 0.6 %.
        assert!((rls.weights()[1] - 3.0).abs() < 0.05, "{:?}", rls.weights());
    }

    #[test]
    fn a_constant_feature_does_not_wind_up_the_inverse() {
        let mut rls = Rls::new(2, 0.95, 1.0, &[]);
        for _ in 0..10_000 {
            rls.update(&[1.0, 0.0], 5.0);
        }
        assert!(
            rls.inverse[3] <= MAX_DIAGONAL_GROWTH + 1e-9,
            "{:?}",
            rls.inverse
        );
        assert!((rls.predict(&[1.0, 0.0]) - 5.0).abs() < 1e-6);
    }
}
