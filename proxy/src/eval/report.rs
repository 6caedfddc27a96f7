//! The evaluation report: DESIGN.md's JSON shape (with extra fields) and a
//! table for people.
//!
//! The fixed fields are `trace`, `bucket_s` and per horizon `horizon_s`,
//! `points`, `model{mae, smape, pinball_p90, coverage_p90}`,
//! `naive{mae, smape}` and `seasonal_naive{mae, smape}`. Added: MASE
//! everywhere, the baselines' own intervals, each ensemble member's scores
//! and final weight, the MAE ratios to the baselines, the run's geometry,
//! and a `users` section for traces with client identities. Metrics with
//! no points are `null` (JSON has no NaN).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use headroom_profiler::forecast::{AccuracyTracker, ModelKind, Scores};
use serde::Serialize;

use super::aggregate::{AggregateRun, FIRST_MEMBER, MODEL, NAIVE, SEASONAL_NAIVE};
use super::series::Protocol;
use super::users::UsersRun;

/// The whole report of one `headroom eval` run.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The trace's file name.
    pub trace: String,
    /// Bucket width in seconds.
    pub bucket_s: u64,
    /// Buckets in the series.
    pub buckets: u64,
    /// Buckets of warm-up before the first scored one.
    pub warmup_buckets: u64,
    /// Days scored.
    pub scored_days: f64,
    /// Seconds between forecast origins.
    pub origin_every_s: u64,
    /// Buckets the ensemble treated as an outage and imputed.
    pub outage_buckets: u64,
    /// Lines (or values, for a plain count series) read from the trace.
    pub lines_read: u64,
    /// Of those, lines that did not parse and were skipped (a plain count
    /// series keeps their slot as 0). Counts the parser refuses as absurd
    /// (above 2^32 - 1 per second in a plain series, 10^18 in a CSV) are
    /// counted here too, never clamped.
    pub malformed_lines: u64,
    /// Wall-clock seconds the evaluation took.
    pub elapsed_s: f64,
    /// Scores per horizon.
    pub horizons: Vec<HorizonReport>,
    /// Per-user scores, for traces with client identities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersReport>,
}

/// Scores of one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct HorizonReport {
    /// The horizon in seconds.
    pub horizon_s: u64,
    /// Forecasts scored (origins whose target is in the series).
    pub points: u64,
    /// The ensemble with its intervals.
    pub model: ModelScores,
    /// The last observed bucket.
    pub naive: ModelScores,
    /// The same bucket one day earlier.
    pub seasonal_naive: ModelScores,
    /// The model's MAE over naive's (below 1: better).
    pub mae_vs_naive: f64,
    /// The model's MAE over seasonal naive's (below 1: better).
    pub mae_vs_seasonal_naive: f64,
    /// Each ensemble member's point forecast, by name.
    pub members: BTreeMap<&'static str, MemberScores>,
}

/// Scores of a forecaster with intervals.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ModelScores {
    /// Mean absolute error of the median (requests per bucket).
    pub mae: f64,
    /// Symmetric MAPE in percent (0 to 200).
    pub smape: f64,
    /// Pinball loss of the p90 at 0.9.
    pub pinball_p90: f64,
    /// Share of actuals at or below the p90.
    pub coverage_p90: f64,
    /// Mean absolute scaled error (over the in-sample one-bucket naive).
    pub mase: f64,
}

impl From<Scores> for ModelScores {
    fn from(s: Scores) -> Self {
        Self {
            mae: s.mae,
            smape: s.smape,
            pinball_p90: s.pinball_p90,
            coverage_p90: s.coverage_p90,
            mase: s.mase,
        }
    }
}

/// Scores of an ensemble member's point forecast.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemberScores {
    /// Mean absolute error.
    pub mae: f64,
    /// Symmetric MAPE in percent.
    pub smape: f64,
    /// Mean absolute scaled error.
    pub mase: f64,
    /// The member's ensemble weight at the end of the run.
    pub weight: f64,
}

/// Per-user scores.
#[derive(Debug, Clone, Serialize)]
pub struct UsersReport {
    /// Clients in the trace.
    pub clients: usize,
    /// Clients scored at least once.
    pub users_scored: usize,
    /// Requests a user needed before an origin to be scored there.
    pub min_requests: u64,
    /// Scores per horizon.
    pub horizons: Vec<UserHorizonReport>,
}

/// Per-user scores of one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct UserHorizonReport {
    /// The horizon in seconds.
    pub horizon_s: u64,
    /// User and origin pairs scored.
    pub points: u64,
    /// The per-user forecast.
    pub model: UserModelScores,
    /// The user's own last bucket.
    pub naive: UserBaselineScores,
    /// Forecasting no requests.
    pub zero: ZeroScores,
    /// The model's MAE over naive's (below 1: better).
    pub mae_vs_naive: f64,
    /// The model mean's RMSE over naive's (below 1: better).
    pub rmse_vs_naive: f64,
}

/// A per-user baseline's scores.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UserBaselineScores {
    /// Mean absolute error.
    pub mae: f64,
    /// Symmetric MAPE in percent.
    pub smape: f64,
    /// Root mean squared error.
    pub rmse: f64,
}

/// The all-zero forecast's score.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ZeroScores {
    /// Mean absolute error (the mean actual count).
    pub mae: f64,
}

/// A per-user forecast's scores.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UserModelScores {
    /// Mean absolute error of the median.
    pub mae: f64,
    /// Symmetric MAPE in percent.
    pub smape: f64,
    /// Pinball loss of the p90 at 0.9.
    pub pinball_p90: f64,
    /// Share of actuals at or below the p90.
    pub coverage_p90: f64,
    /// Root mean squared error of the forecast mean (rate times bucket).
    pub rmse: f64,
}

/// Builds the per-horizon reports from the aggregate run.
pub fn horizons(run: &AggregateRun, protocol: &Protocol) -> Vec<HorizonReport> {
    let tracker: &AccuracyTracker = &run.tracker;
    let bucket_s = protocol.bucket_ms / 1_000;
    protocol
        .horizons
        .iter()
        .enumerate()
        .map(|(i, &h)| {
            let model = tracker.scores(MODEL, h);
            let naive = tracker.scores(NAIVE, h);
            let seasonal = tracker.scores(SEASONAL_NAIVE, h);
            let members = ModelKind::ALL
                .iter()
                .enumerate()
                .map(|(m, kind)| {
                    let s = tracker.scores(FIRST_MEMBER + m, h);
                    let weight = run.weights[i].get(m).copied().unwrap_or(f64::NAN);
                    let scores = MemberScores {
                        mae: s.mae,
                        smape: s.smape,
                        mase: s.mase,
                        weight,
                    };
                    (kind.name(), scores)
                })
                .collect();
            HorizonReport {
                horizon_s: u64::from(h) * bucket_s,
                points: model.points,
                model: model.into(),
                naive: naive.into(),
                seasonal_naive: seasonal.into(),
                mae_vs_naive: model.mae / naive.mae,
                mae_vs_seasonal_naive: model.mae / seasonal.mae,
                members,
            }
        })
        .collect()
}

/// Builds the users section from the per-user run.
pub fn users(run: &UsersRun, protocol: &Protocol, min_requests: u64) -> UsersReport {
    let bucket_s = protocol.bucket_ms / 1_000;
    UsersReport {
        clients: run.clients,
        users_scored: run.users_scored,
        min_requests,
        horizons: run
            .horizons
            .iter()
            .map(|s| UserHorizonReport {
                horizon_s: u64::from(s.horizon) * bucket_s,
                points: s.points,
                model: UserModelScores {
                    mae: s.model_mae,
                    smape: s.model_smape,
                    pinball_p90: s.model_pinball_p90,
                    coverage_p90: s.model_coverage_p90,
                    rmse: s.model_rmse,
                },
                naive: UserBaselineScores {
                    mae: s.naive_mae,
                    smape: s.naive_smape,
                    rmse: s.naive_rmse,
                },
                zero: ZeroScores { mae: s.zero_mae },
                mae_vs_naive: s.model_mae / s.naive_mae,
                rmse_vs_naive: s.model_rmse / s.naive_rmse,
            })
            .collect(),
    }
}

/// A horizon in seconds as `1 min`, `15 min`, `30 s` or `2 h`.
fn horizon_label(seconds: u64) -> String {
    match seconds {
        s if s % 3_600 == 0 && s >= 7_200 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A relative change in percent, signed (`-24.9%`); `n/a` when the ratio
/// is undefined (a baseline with no error, or no points).
fn percent(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{:+.1}%", 100.0 * (ratio - 1.0))
    } else {
        "n/a".to_owned()
    }
}

/// The report as a table.
pub fn table(report: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} buckets of {} s; warm-up {} buckets, last {:.1} days scored, origin every {} s; \
         {} outage buckets bridged; {:.2} s",
        report.trace,
        report.buckets,
        report.bucket_s,
        report.warmup_buckets,
        report.scored_days,
        report.origin_every_s,
        report.outage_buckets,
        report.elapsed_s,
    );
    let _ = writeln!(
        out,
        "{} lines read, {} malformed skipped",
        report.lines_read, report.malformed_lines
    );
    let _ = writeln!(
        out,
        "{:>8} {:>6} | {:>8} {:>6} {:>7} {:>5} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>8}",
        "horizon",
        "points",
        "MAE",
        "sMAPE",
        "pinball",
        "cov90",
        "naive",
        "sMAPE",
        "s-naive",
        "sMAPE",
        "vs naive",
        "vs s-nv"
    );
    for h in &report.horizons {
        let _ = writeln!(
            out,
            "{:>8} {:>6} | {:>8.3} {:>6.1} {:>7.3} {:>5.3} | {:>8.3} {:>6.1} | {:>8.3} {:>6.1} | {:>8} {:>8}",
            horizon_label(h.horizon_s),
            h.points,
            h.model.mae,
            h.model.smape,
            h.model.pinball_p90,
            h.model.coverage_p90,
            h.naive.mae,
            h.naive.smape,
            h.seasonal_naive.mae,
            h.seasonal_naive.smape,
            percent(h.mae_vs_naive),
            percent(h.mae_vs_seasonal_naive),
        );
    }
    let _ = writeln!(out, "members (MAE, final ensemble weight):");
    for h in &report.horizons {
        let members: Vec<String> = h
            .members
            .iter()
            .map(|(name, s)| format!("{name} {:.3} ({:.2})", s.mae, s.weight))
            .collect();
        let _ = writeln!(
            out,
            "{:>8}  {}",
            horizon_label(h.horizon_s),
            members.join("  ")
        );
    }
    if let Some(users) = &report.users {
        users_table(&mut out, users);
    }
    out
}

/// Appends the users section to a table.
fn users_table(out: &mut String, users: &UsersReport) {
    let _ = writeln!(
        out,
        "users: {} clients, {} scored (tracked, at least {} requests before the origin)",
        users.clients, users.users_scored, users.min_requests
    );
    let _ = writeln!(
        out,
        "{:>8} {:>7} | {:>7} {:>6} {:>7} {:>5} {:>7} | {:>7} {:>6} {:>7} | {:>7} | {:>8} {:>8}",
        "horizon",
        "points",
        "MAE",
        "sMAPE",
        "pinball",
        "cov90",
        "RMSE",
        "naive",
        "sMAPE",
        "RMSE",
        "zero",
        "MAE vs",
        "RMSE vs"
    );
    for h in &users.horizons {
        let _ = writeln!(
            out,
            "{:>8} {:>7} | {:>7.4} {:>6.1} {:>7.4} {:>5.3} {:>7.3} | {:>7.4} {:>6.1} {:>7.3} | {:>7.4} | {:>8} {:>8}",
            horizon_label(h.horizon_s),
            h.points,
            h.model.mae,
            h.model.smape,
            h.model.pinball_p90,
            h.model.coverage_p90,
            h.model.rmse,
            h.naive.mae,
            h.naive.smape,
            h.naive.rmse,
            h.zero.mae,
            percent(h.mae_vs_naive),
            percent(h.rmse_vs_naive),
        );
    }
}
