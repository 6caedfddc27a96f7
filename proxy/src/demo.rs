//! `headroom demo`: a sample application with limited capacity, a load generator
//! with synthetic users or a replayed trace, and the report of what happened.
//!
//! The proxy in between is started by `start` as a child process; everything
//! here talks plain HTTP/1.1 on 127.0.0.1 and knows the proxy only by its
//! contract: the `x-headroom-tier` and `x-headroom-forecast-rps` response headers,
//! 429 and 503 answers, and JWT or `X-Forwarded-For` identities.
//!
//! - [`app`]: the sample application (worker slots, endpoint costs, stats).
//! - [`route`]: endpoint classes and their costs.
//! - `workload`: synthetic cohorts and trace replay as request schedules.
//! - [`load`]: the open-loop load engine, [`DemoOptions`] and [`run_load`].
//! - [`report`]: the final report, as a table or DESIGN.md's JSON.
//! - [`ramp`]: a predicted step in load (`--ramp-at`), declared to the proxy.
//! - `cli`: [`DemoArgs`], [`ReplayArgs`] and [`replay_main`] for the command line.

pub mod app;
mod body;
mod cli;
pub mod load;
pub mod ramp;
mod recorder;
pub mod report;
pub mod route;
mod start;
mod workload;

pub use app::{AppStats, SampleApp, SampleAppConfig, SampleAppHandle};
pub use cli::{replay_main, DemoArgs, ReplayArgs};
pub use load::{run_load, DemoOptions, LoadError};
pub use ramp::{Ramp, RampError, RampReport, RampTierReport};
pub use report::{ForecastReport, LoadReport, RunTotals, TierReport};
pub use route::{Route, RouteCosts, ServiceTime};
pub use start::{demo_config, main};
pub use workload::{synthetic_mix, Cohort, COHORTS};
