//! Headroom: a reverse-proxy sidecar on pingora that identifies each user,
//! records their behaviour, and shapes capacity by tier and predicted demand.
//!
//! The maths lives in the `headroom-profiler` and `headroom-policies` crates;
//! this crate assembles them into the pingora service, the admin API and the
//! command line.

pub mod admin;
pub mod admission;
pub mod cli;
pub mod compile;
pub mod demo;
pub mod eval;
pub mod forecaster;
pub mod headers;
pub mod identity;
pub mod insights;
pub mod metrics;
pub mod reload;
pub mod replay;
pub mod run;
pub mod service;
pub mod state;
pub mod sweeper;
pub mod tiering;
pub mod trace;
pub mod upstreams;
pub mod warmer;
