//! The proxy's own event-loop lag, so the adaptive limit can tell a slow
//! backend from a busy proxy.
//!
//! The adaptive limit shrinks when upstream latency stretches over its
//! no-load floor. But latency is measured inside the proxy: when the proxy's
//! own CPU is the bottleneck (a CPU-bound sidecar, or a load generator on the
//! same cores), every response waits in the proxy's run queue before it is
//! read, latency stretches, and the limit shrinks for no fault of the
//! backend. Requests then queue in the gate, which costs more CPU, and
//! throughput falls: the limiter makes a busy proxy busier.
//!
//! A probe task on the proxy's runtime measures the lag directly: every
//! [`PROBE_INTERVAL`] it yields once and times how long the runtime takes to
//! come back to it, which is how long any woken task (such as a request
//! whose upstream just answered) waits before it runs. The estimate is an
//! EWMA over probes ([`LAG_WEIGHT`]). [`crate::admission::AdmissionGate`]
//! adds [`LAG_WAITS`] times it to the no-load latency a sample is compared
//! with: latency that the proxy's own run queue explains is not taken as
//! the backend queueing. (Subtracting it from each sample instead would
//! drive the no-load floor, a running minimum, towards zero whenever the
//! estimate overshoots one fast sample.)
//!
//! Approximation: with several worker threads the probe measures whichever
//! worker it runs on at the time; with work stealing their queues are close.
//! The probe costs one timer and two wake-ups per interval (100 per second).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the probe measures.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Weight of one probe in the estimate: about 100 ms of memory at the
/// interval above, the period at which the limit is recomputed.
pub const LAG_WEIGHT: f64 = 0.1;

/// Run-queue waits a proxied request spends between admission and its
/// upstream's response header: one to send the request once the connection
/// is ready, one to read the response once it arrives.
pub const LAG_WAITS: u64 = 2;

/// The lag estimate and whether its probe runs.
#[derive(Debug, Default)]
pub struct LoopLag {
    /// EWMA of the measured lag in µs, as `f64` bits.
    lag_us: AtomicU64,
    started: AtomicBool,
}

impl LoopLag {
    /// The current estimate in whole microseconds (0 before the first probe).
    pub fn current_us(&self) -> u64 {
        f64::from_bits(self.lag_us.load(Ordering::Relaxed)) as u64
    }

    /// Starts the probe on the current tokio runtime once; later calls cost
    /// one relaxed load. Outside a runtime (unit tests of the gate) it does
    /// nothing.
    pub fn ensure_probe(self: &Arc<Self>) {
        if self.started.load(Ordering::Relaxed) || self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Relaxed);
            return;
        };
        let lag = Arc::clone(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let yielded_at = Instant::now();
                tokio::task::yield_now().await;
                lag.record(yielded_at.elapsed());
            }
        });
    }

    /// Folds one measured lag into the estimate.
    pub fn record(&self, lag: Duration) {
        let sample = lag.as_secs_f64() * 1e6;
        // One writer (the probe), so a load and a store suffice.
        let old = f64::from_bits(self.lag_us.load(Ordering::Relaxed));
        let next = if old == 0.0 {
            sample
        } else {
            old + LAG_WEIGHT * (sample - old)
        };
        self.lag_us.store(next.to_bits(), Ordering::Relaxed);
    }

    /// The latency, in µs, that the proxy's own run queue adds to a proxied
    /// request now: [`LAG_WAITS`] times the estimate.
    pub fn queueing_us(&self) -> u64 {
        LAG_WAITS.saturating_mul(self.current_us())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_samples() {
        let lag = LoopLag::default();
        assert_eq!(lag.current_us(), 0);
        assert_eq!(lag.queueing_us(), 0, "no lag measured yet");
        lag.record(Duration::from_micros(200));
        assert_eq!(lag.current_us(), 200, "the first probe is taken as is");
        for _ in 0..100 {
            lag.record(Duration::from_micros(100));
        }
        assert_eq!(lag.current_us(), 100);
        assert_eq!(lag.queueing_us(), 200);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn probe_measures_a_busy_runtime() {
        let lag = Arc::new(LoopLag::default());
        lag.ensure_probe();
        lag.ensure_probe();
        // Keep the only thread busy in 2 ms slices between yields: the probe
        // waits behind them.
        let deadline = Instant::now() + Duration::from_millis(400);
        while Instant::now() < deadline {
            let slice = Instant::now() + Duration::from_millis(2);
            while Instant::now() < slice {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
        assert!(
            lag.current_us() >= 500,
            "a runtime busy in 2 ms slices lags by about that much, got {} us",
            lag.current_us()
        );
    }
}
