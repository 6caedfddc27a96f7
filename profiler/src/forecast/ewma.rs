//! An exponentially weighted level: the floor every other model must beat.
//!
//! It knows nothing of trend or season, so it is never badly wrong: after a
//! burst it returns to the level within a few half-lives, and on a series
//! with no pattern it is close to the best a model can do. The ensemble
//! keeps it as a safe member for series too short or sparse for the others.

use super::{History, PointModel};

/// A level smoothed with a half-life in buckets; the same forecast for
/// every horizon.
#[derive(Debug, Clone, Copy)]
pub struct Ewma {
    alpha: f64,
    level: Option<f64>,
}

impl Ewma {
    /// A level whose weight on a value halves every `half_life` buckets.
    /// Half-lives below 0.1 bucket (or NaN) are read as 0.1, which makes
    /// it follow the newest value almost exactly.
    pub fn new(half_life: f64) -> Self {
        let half_life = if half_life.is_nan() {
            0.1
        } else {
            half_life.max(0.1)
        };
        Self {
            alpha: 1.0 - 0.5_f64.powf(1.0 / half_life),
            level: None,
        }
    }

    /// The smoothing weight of the newest value, in `(0, 1]`.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The current level; `None` before the first observation.
    pub fn level(&self) -> Option<f64> {
        self.level
    }
}

impl PointModel for Ewma {
    fn name(&self) -> &'static str {
        "ewma"
    }

    /// The first value sets the level; later ones move it by `alpha`.
    fn observe(&mut self, history: &History) {
        let value = history.last();
        self.level = Some(match self.level {
            None => value,
            Some(level) => level + self.alpha * (value - level),
        });
    }

    fn predict(&self, _history: &History, _horizon: u32) -> f64 {
        self.level.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Seasonality;

    #[test]
    fn level_moves_half_way_to_a_step_after_one_half_life() {
        let mut history = History::new(Seasonality { day: 24, week: 168 }, 8);
        let mut ewma = Ewma::new(4.0);
        history.push(0.0);
        ewma.observe(&history);
        for _ in 0..4 {
            history.push(10.0);
            ewma.observe(&history);
        }
        let level = ewma.predict(&history, 1);
        assert!((level - 5.0).abs() < 1e-9, "level {level}");
        assert_eq!(ewma.predict(&history, 60), level);
    }

    #[test]
    fn degenerate_half_lives_follow_the_newest_value() {
        assert!(Ewma::new(f64::NAN).alpha() > 0.99);
        assert!(Ewma::new(-1.0).alpha() > 0.99);
    }
}
