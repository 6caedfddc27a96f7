//! Command-line arguments of `headroom demo` and `headroom replay`, and the
//! whole of `replay` (which needs no proxy of its own).
//!
//! `demo` also starts the proxy, which is the binary's business: this module
//! only turns its flags into [`DemoOptions`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::load::{DemoOptions, LoadError};
use super::ramp::{Ramp, RampError};

/// `headroom demo [--duration SECS] [--trace FILE] [--speed X] [--load X]
/// [--no-shaping] [--no-warming] [--ramp-at SECS --ramp-load X] [--json]`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct DemoArgs {
    /// Seconds of load to send.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub duration: f64,
    /// Replay this access log (CLF/Combined, World Cup CSV, counts; gzip ok).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Trace time compression: wall time = trace time / X; 0 fits the trace to --load.
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    pub speed: f64,
    /// Offered load as a multiple of the sample app's capacity.
    #[arg(long, value_name = "X", default_value_t = 1.5)]
    pub load: f64,
    /// Run the proxy without shaping, for a side-by-side comparison.
    #[arg(long)]
    pub no_shaping: bool,
    /// Run the proxy without pool warming, for a side-by-side comparison.
    #[arg(long)]
    pub no_warming: bool,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Step the synthetic load to --ramp-load at this second of the run,
    /// declared to the proxy ahead of time as an event.
    #[arg(long, value_name = "SECS", requires = "ramp_load")]
    pub ramp_at: Option<f64>,
    /// Offered load after the step, as a multiple of the app's capacity.
    #[arg(long, value_name = "X", requires = "ramp_at")]
    pub ramp_load: Option<f64>,
    /// Leave requests sent in the first SECS out of the latency
    /// percentiles (cold start); at most a quarter of --duration is used.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub warmup: f64,
}

impl DemoArgs {
    /// The load options, with synthetic users' tokens signed by `jwt_secret`.
    ///
    /// Fails when the duration or load is not positive and finite, the speed
    /// is negative or not finite, or a ramp is given with a trace, outside
    /// the run, or with a nonsensical load (see [`Ramp::check`]).
    pub fn to_options(&self, jwt_secret: String) -> Result<DemoOptions, LoadError> {
        let duration = positive_secs("duration", self.duration)?;
        if !(self.load > 0.0 && self.load.is_finite()) {
            return Err(LoadError::NotPositive {
                name: "load",
                value: self.load,
            });
        }
        if !(self.speed >= 0.0 && self.speed.is_finite()) {
            return Err(LoadError::NotPositive {
                name: "speed",
                value: self.speed,
            });
        }
        // Any non-negative finite value is taken (the run caps it at a
        // quarter of the duration); a negative or non-finite one is refused.
        if !(self.warmup >= 0.0 && self.warmup.is_finite()) {
            return Err(LoadError::Negative {
                name: "warmup",
                value: self.warmup,
            });
        }
        let warmup = Duration::from_secs_f64(self.warmup.min(duration.as_secs_f64()));
        let ramp = match (self.ramp_at, self.ramp_load) {
            (None, None) => None,
            (Some(_), Some(_)) if self.trace.is_some() => return Err(RampError::Trace.into()),
            (Some(at_s), Some(load)) => Some(Ramp::check(at_s, load, self.load, duration)?),
            _ => return Err(RampError::Half.into()),
        };
        Ok(DemoOptions {
            duration,
            trace: self.trace.clone(),
            speed: self.speed,
            load: self.load,
            json: self.json,
            shaping: !self.no_shaping,
            warming: !self.no_warming,
            jwt_secret,
            ramp,
            warmup,
        })
    }
}

/// `headroom replay --trace FILE --target URL [--speed X] [--duration SECS] [--json]`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct ReplayArgs {
    /// The access log to replay.
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// The proxy to send to, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Time compression: wall time = trace time / X.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,
    /// Stop after this many seconds (default: at the end of the trace).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `headroom replay`: live lines on stderr, the report on stdout.
/// Exit code 0 after a run (whatever the outcomes), 1 when it cannot start.
pub fn replay_main(args: ReplayArgs) -> ExitCode {
    let duration = match args
        .duration
        .map(|d| positive_secs("duration", d))
        .transpose()
    {
        Ok(duration) => duration,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let run = crate::replay::replay(&args.trace, &args.target, args.speed, duration);
    match runtime.block_on(run) {
        Ok(report) if args.json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            report.print_table();
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Prints `headroom: <error>` to stderr and returns the failure code.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("headroom: {error}");
    ExitCode::FAILURE
}

/// `secs` as a duration when positive and finite (at most about 136 years).
fn positive_secs(name: &'static str, secs: f64) -> Result<Duration, LoadError> {
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if secs > 0.0 => Ok(duration),
        _ => Err(LoadError::NotPositive { name, value: secs }),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        args: DemoArgs,
    }

    #[test]
    fn demo_flags_become_options() {
        let demo = Demo::parse_from([
            "demo",
            "--duration",
            "5",
            "--load",
            "2",
            "--no-shaping",
            "--no-warming",
            "--json",
        ]);
        let options = demo.args.to_options("s".to_owned()).expect("valid flags");
        assert_eq!(options.duration, Duration::from_secs(5));
        assert_eq!((options.load, options.speed), (2.0, 0.0));
        assert!(!options.shaping && !options.warming && options.json);
        assert_eq!(options.jwt_secret, "s");
        let defaults = Demo::parse_from(["demo"]).args.to_options(String::new());
        assert!(defaults.expect("valid").warming, "warming is on by default");
    }

    #[test]
    fn nonsensical_numbers_are_refused() {
        let bad = |flags: &[&str]| {
            let demo = Demo::parse_from(std::iter::once("demo").chain(flags.iter().copied()));
            demo.args.to_options(String::new()).is_err()
        };
        assert!(bad(&["--duration", "0"]));
        assert!(bad(&["--duration", "NaN"]));
        assert!(bad(&["--load=-1"]));
        assert!(bad(&["--speed=-2"]));
        assert!(!bad(&["--speed", "100"]));
        assert!(bad(&["--warmup=-1"]));
        assert!(bad(&["--warmup", "NaN"]));
        assert!(bad(&["--warmup", "inf"]));
        assert!(!bad(&["--warmup", "0"]));
        // Huge is fine: the run caps the warm-up at a quarter of the duration.
        let demo = Demo::parse_from(["demo", "--duration", "8", "--warmup", "1e30"]);
        let options = demo.args.to_options(String::new()).expect("valid");
        assert_eq!(options.warmup, Duration::from_secs(8));
    }

    #[test]
    fn a_ramp_becomes_options_and_is_checked() {
        let parse = |flags: &[&str]| {
            let args = std::iter::once("demo").chain(flags.iter().copied());
            Demo::try_parse_from(args).map(|d| d.args.to_options(String::new()))
        };
        let ok = parse(&[
            "--duration",
            "40",
            "--load",
            "0.3",
            "--ramp-at",
            "25",
            "--ramp-load",
            "1.2",
        ]);
        let ramp = ok.expect("parses").expect("valid").ramp.expect("a ramp");
        assert_eq!(ramp.at, Duration::from_secs(25));
        assert!((ramp.factor(0.3) - 4.0).abs() < 1e-12);

        let err = |flags: &[&str]| match parse(flags) {
            Ok(Err(e)) => e.to_string(),
            other => panic!("expected a ramp error for {flags:?}, got {other:?}"),
        };
        assert!(
            err(&["--duration", "10", "--ramp-at", "10", "--ramp-load", "2"])
                .contains("inside the run")
        );
        assert!(err(&["--ramp-at", "0", "--ramp-load", "2"]).contains("inside the run"));
        assert!(err(&["--ramp-at", "NaN", "--ramp-load", "2"]).contains("inside the run"));
        assert!(err(&["--ramp-at", "5", "--ramp-load", "inf"]).contains("--ramp-load"));
        assert!(err(&["--ramp-at", "5", "--ramp-load=-1"]).contains("--ramp-load"));
        assert!(
            err(&["--load", "0.001", "--ramp-at", "5", "--ramp-load", "2"])
                .contains("at most 1000")
        );
        let trace = ["--trace", "x.log", "--ramp-at", "5", "--ramp-load", "2"];
        assert!(err(&trace).contains("synthetic"));
        // One flag without the other is a usage error from clap.
        assert!(parse(&["--ramp-at", "5"]).is_err());
    }
}
