//! `headroom eval`: how well the profiler's forecasts predict a real trace,
//! against the naive and seasonal-naive baselines.
//!
//! A forecaster is only worth running in the proxy if it beats repeating
//! the last minute (naive) and repeating yesterday (seasonal naive) on real
//! traffic. This command replays a trace on simulated time, far faster than
//! real time, through the same code the proxy runs: the
//! [`DemandForecaster`](headroom_profiler::forecast::DemandForecaster) on
//! the total request series, and, where the trace names its clients, the
//! profiler's [`UserTable`](headroom_profiler::UserTable) and
//! [`forecast_user`](headroom_profiler::forecast::user::forecast_user) per
//! user.
//!
//! The protocol is DESIGN.md's, so that results compare with published
//! baselines: requests per bucket (60 s by default); the target at horizon
//! `h` is the single bucket `h` ahead; a forecast every 15 minutes (the
//! origin) from buckets before the origin only; the last 14 days scored
//! (the second half of a trace shorter than 28 days), everything before as
//! warm-up. See [`series::Protocol`].
//!
//! - `series`: bucketing and the protocol's clock.
//! - `aggregate`: the total series, ensemble and baselines.
//! - `users`: per-user forecasts through the real user table.
//! - `report`: the JSON shape and the table.

mod aggregate;
pub mod report;
pub mod series;
mod users;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use headroom_profiler::forecast::ForecastError;
use headroom_profiler::TableConfigError;

use crate::trace::{self, Trace, TraceError};
pub use report::EvalReport;
use series::{bucket_requests, rebucket, Protocol};

/// `headroom eval --trace FILE [--json] [--bucket SECS] [--last-days N]`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct EvalArgs {
    /// The trace to evaluate on (CLF/Combined, World Cup CSV, counts; gzip ok).
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Bucket width in seconds (1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub bucket: u64,
    /// Days scored at the end of the trace (default 14, or the second half
    /// of a trace shorter than 28 days).
    #[arg(long = "last-days", value_name = "N")]
    pub last_days: Option<f64>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The trace has no requests or counts.
    #[error("the trace is empty")]
    Empty,
    /// A count series cannot be cut into buckets of this width.
    #[error(
        "bucket width {bucket_ms} ms is not a whole multiple of the series' step {step_ms} ms"
    )]
    BucketNotMultiple {
        /// The bucket width asked for (ms).
        bucket_ms: u64,
        /// The series' own step (ms).
        step_ms: u64,
    },
    /// No reported horizon (1, 5, 15, 60 min) is a whole number of buckets.
    #[error("no horizon of 1, 5, 15 or 60 minutes is a whole number of {bucket_ms} ms buckets")]
    NoHorizon {
        /// The bucket width (ms).
        bucket_ms: u64,
    },
    /// The scored span leaves no warm-up, or is empty.
    #[error("cannot score {scored} of {buckets} buckets: need at least one bucket of warm-up and one scored")]
    NoWarmUp {
        /// Buckets in the series.
        buckets: u64,
        /// Buckets that would be scored.
        scored: u64,
    },
    /// `--last-days` is not a positive number.
    #[error("--last-days must be a positive number of days, got {0}")]
    LastDays(f64),
    /// The forecasters could not be built.
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    /// The user table could not be built.
    #[error(transparent)]
    Table(#[from] TableConfigError),
}

/// `headroom eval`: prints the report (table or JSON) and returns the exit
/// code: 0 on success, 1 with a message on stderr otherwise.
pub fn main(args: EvalArgs) -> ExitCode {
    match evaluate_file(&args.trace, args.bucket, args.last_days) {
        Ok(report) => {
            if report.malformed_lines > 0 {
                eprintln!(
                    "headroom eval: {} of {} lines malformed and skipped",
                    report.malformed_lines, report.lines_read
                );
            }
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("headroom eval: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report::table(&report));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("headroom eval: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the trace at `path` and evaluates it with buckets of `bucket_s`
/// seconds, scoring the last `last_days` days (see the module docs).
///
/// # Errors
/// An [`EvalError`] when the trace cannot be read or the protocol does
/// not fit it.
pub fn evaluate_file(
    path: &Path,
    bucket_s: u64,
    last_days: Option<f64>,
) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    let trace = trace::open(path)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut report = evaluate(&trace, &name, bucket_s, last_days)?;
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Evaluates an already read trace (see [`evaluate_file`]); `elapsed_s`
/// covers this call only.
///
/// # Errors
/// As [`evaluate_file`], except for reading.
pub fn evaluate(
    trace: &Trace,
    name: &str,
    bucket_s: u64,
    last_days: Option<f64>,
) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    if let Some(days) = last_days {
        if !(days.is_finite() && days > 0.0) {
            return Err(EvalError::LastDays(days));
        }
    }
    let bucket_ms = bucket_s.saturating_mul(1_000);
    let series = match trace {
        Trace::Requests(requests) => bucket_requests(requests, bucket_ms),
        Trace::Counts { series, .. } => rebucket(series, bucket_ms)?,
    };
    if series.counts.is_empty() {
        return Err(EvalError::Empty);
    }
    let protocol = Protocol::new(series.counts.len() as u64, bucket_ms, last_days)?;

    let run = aggregate::run(&series, &protocol)?;
    let users = match trace {
        Trace::Requests(requests) => {
            let run = users::run(requests, &series, &protocol)?;
            Some(report::users(&run, &protocol, users::MIN_REQUESTS))
        }
        Trace::Counts { .. } => None,
    };
    let report = EvalReport {
        trace: name.to_owned(),
        bucket_s,
        buckets: protocol.len,
        warmup_buckets: protocol.scored_from,
        scored_days: protocol.scored_days(),
        origin_every_s: protocol.origin_every * bucket_s,
        outage_buckets: run.outage_buckets,
        lines_read: trace.stats().lines,
        malformed_lines: trace.stats().malformed,
        elapsed_s: started.elapsed().as_secs_f64(),
        horizons: report::horizons(&run, &protocol),
        users,
    };
    tracing::debug!(
        trace = %report.trace,
        buckets = report.buckets,
        elapsed_s = report.elapsed_s,
        "evaluation finished"
    );
    Ok(report)
}
