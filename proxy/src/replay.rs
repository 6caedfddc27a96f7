//! `headroom replay`: a real access log sent as load against a running proxy.
//!
//! Each log client becomes one user (identified by `X-Forwarded-For`, see
//! `demo::workload` for the address mapping), requests go out at their logged
//! times divided by `speed`, and the report is the demo's: per-tier outcomes and
//! latency, and how well the proxy's forecast header predicted each client's
//! rate. The engine is the demo's load generator, so both commands measure the
//! same way.

use std::path::Path;
use std::time::Duration;

use crate::demo::load::replay_trace;
use crate::demo::{LoadError, LoadReport};

/// Replays the trace file at `trace` (any format `crate::trace` reads, gzip or
/// not) against `target` (`http://host:port`), `speed` times faster than logged,
/// for `duration` or, when `None`, until the trace's last request.
///
/// Prints a live line to stderr every second; returns the report without
/// printing it. Its `offered_load` is 0, since the target's capacity is
/// unknown, and `shaping`/`warming` are reported as false (unknown).
/// Fails when the trace cannot be read or is empty, the target is not a plain
/// `http://` URL, or `speed` is not positive and finite.
pub async fn replay(
    trace: &Path,
    target: &str,
    speed: f64,
    duration: Option<Duration>,
) -> Result<LoadReport, LoadError> {
    replay_trace(trace, target, speed, duration, true).await
}
