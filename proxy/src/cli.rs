//! The command line: `run`, `check`, `demo`, `replay` and `eval`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::run::{run, Overrides};

/// Headroom: a reverse proxy that shapes capacity by predicted per-user demand.
#[derive(Parser, Debug)]
#[command(name = "headroom", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the proxy and admin listeners from a config file.
    Run {
        /// Config file.
        #[arg(long, default_value = "config/headroom.yaml")]
        config: PathBuf,
        /// Proxy listener address (overrides the file).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin listener address (overrides the file).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Upstream address; repeat for several (replaces the file's list).
        #[arg(long = "upstream")]
        upstreams: Vec<SocketAddr>,
    },
    /// Validate config files; exit 1 with FILE:LINE:COLUMN lines when invalid.
    Check {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the built-in sample application behind the proxy under load.
    Demo(crate::demo::DemoArgs),
    /// Replay a real access log as load against a running proxy.
    Replay(crate::demo::ReplayArgs),
    /// Score the forecasters on a trace against naive and seasonal-naive baselines.
    Eval(crate::eval::EvalArgs),
}

/// Runs the parsed command and returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run {
            config,
            listen,
            admin,
            upstreams,
        } => {
            let overrides = Overrides {
                listen,
                admin,
                upstreams,
            };
            match run(&config, &overrides) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("headroom: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { files } => check(&files),
        Command::Demo(args) => crate::demo::main(args),
        Command::Replay(args) => crate::demo::replay_main(args),
        Command::Eval(args) => crate::eval::main(args),
    }
}

/// `headroom check`: every file is loaded and compiled exactly as `run` would.
fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match crate::compile::check_file(file) {
            Ok(()) => println!("{}: ok", file.display()),
            Err(lines) => {
                ok = false;
                for line in lines {
                    eprintln!("{line}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
