//! The application's pre-allocation hook: for every reservation made, a
//! JSON POST to a configured plain-HTTP URL, so the application can warm
//! its own caches for the user.
//!
//! It can never touch the request path: the forecast tick offers jobs to a
//! bounded queue (`try_send`; a full queue drops the job and counts it), and
//! one background task takes them off and runs at most `max_in_flight`
//! calls at once, each bounded by `timeout` as a whole (connect, send,
//! response head). A call opens its own connection and reads only the
//! status; redirects are not followed (a 3xx counts as a failure).
//!
//! Client: hyper's HTTP/1 connection API over a tokio `TcpStream`. hyper is
//! already in the dependency tree (the admin listener serves with it), so
//! this adds no dependency; the pooled hyper-util client would add a pool we
//! do not want for a handful of calls per tick.
//!
//! Body: `{"user": "<16 hex digits>", "predicted_rps": f64, "horizon_s":
//! u64, "reason": str}`. `user` is the pseudonymous `x-headroom-user` id,
//! never a credential.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use headroom_config::PreallocHook;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

/// Least time between two warnings about failing calls.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One call to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HookJob {
    /// The user's pseudonymous key.
    pub user: u64,
    /// The predicted request rate (p90, rps) at the reservation.
    pub predicted_rps: f64,
    /// How long the reservation lasts, seconds.
    pub horizon_s: u64,
    /// Why the user was pre-allocated.
    pub reason: String,
}

#[derive(Serialize)]
struct Body<'a> {
    user: String,
    predicted_rps: f64,
    horizon_s: u64,
    reason: &'a str,
}

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// The application answered with a non-2xx status.
    #[error("status {0}")]
    Status(http::StatusCode),
    /// The connection closed before a response.
    #[error("connection closed before a response")]
    Closed,
    /// The whole call took longer than the timeout.
    #[error("timed out")]
    Timeout,
}

/// `headroom_prealloc_hook_calls_total{result}`: ok, failed, timeout,
/// dropped (queue full).
#[derive(Clone)]
pub struct HookCounters {
    calls: IntCounterVec,
    /// Calls that answered 2xx.
    pub ok: IntCounter,
    /// Calls that failed (connect, HTTP, non-2xx).
    pub failed: IntCounter,
    /// Calls that passed the timeout.
    pub timeout: IntCounter,
    /// Jobs dropped because the queue was full.
    pub dropped: IntCounter,
    last_warn: Arc<AtomicU64>,
    started: Instant,
}

impl HookCounters {
    /// Creates the family with every result at zero.
    pub fn new() -> Self {
        let calls = IntCounterVec::new(
            Opts::new(
                "headroom_prealloc_hook_calls_total",
                "Calls to the application's pre-allocation hook, by result.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let get = |r: &str| calls.with_label_values(&[r]);
        Self {
            ok: get("ok"),
            failed: get("failed"),
            timeout: get("timeout"),
            dropped: get("dropped"),
            calls,
            last_warn: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
        }
    }

    /// Registers the family; a repeat is a no-op (logged at debug).
    pub fn register(&self, registry: &Registry) {
        if let Err(e) = registry.register(Box::new(self.calls.clone())) {
            tracing::debug!(error = %e, "hook metrics already registered");
        }
    }

    /// Logs a failure: at warn at most once a minute, else at debug.
    fn log_failure(&self, url: &str, error: &HookError) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warn
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(hook.url = url, error = %error, "pre-allocation hook failed (further failures for a minute at debug)");
        } else {
            tracing::debug!(hook.url = url, error = %error, "pre-allocation hook failed");
        }
    }
}

impl Default for HookCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// The queue in front of the background caller.
pub struct HookWorker {
    tx: mpsc::Sender<HookJob>,
    counters: HookCounters,
}

impl HookWorker {
    /// Starts the caller task on the current tokio runtime; `None` (logged)
    /// outside one.
    pub fn start(settings: &PreallocHook, counters: HookCounters) -> Option<Self> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(hook.url = %settings.url, "pre-allocation hook disabled: no async runtime");
            return None;
        };
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let settings = Arc::new(settings.clone());
        runtime.spawn(run(rx, settings, counters.clone()));
        Some(Self { tx, counters })
    }

    /// Queues `job` without waiting; a full queue drops it (counted).
    pub fn offer(&self, job: HookJob) {
        if self.tx.try_send(job).is_err() {
            self.counters.dropped.inc();
        }
    }
}

/// Takes jobs off the queue, at most `max_in_flight` calls at once; ends
/// when the worker (the sender) is dropped and the queue is empty.
async fn run(mut rx: mpsc::Receiver<HookJob>, settings: Arc<PreallocHook>, counters: HookCounters) {
    let slots = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    while let Some(job) = rx.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (settings, counters) = (Arc::clone(&settings), counters.clone());
        tokio::spawn(async move {
            let result = match tokio::time::timeout(settings.timeout, call(&settings, &job)).await {
                Ok(result) => result,
                Err(_) => Err(HookError::Timeout),
            };
            match result {
                Ok(()) => counters.ok.inc(),
                Err(e) => {
                    match e {
                        HookError::Timeout => counters.timeout.inc(),
                        _ => counters.failed.inc(),
                    }
                    counters.log_failure(&settings.url, &e);
                }
            }
            drop(permit);
        });
    }
}

/// One POST on a fresh connection; reads the status only.
pub async fn call(settings: &PreallocHook, job: &HookJob) -> Result<(), HookError> {
    let body = serde_json::to_vec(&Body {
        user: format!("{:016x}", job.user),
        predicted_rps: if job.predicted_rps.is_finite() {
            job.predicted_rps
        } else {
            0.0
        },
        horizon_s: job.horizon_s,
        reason: &job.reason,
    })
    .unwrap_or_default();
    let stream = TcpStream::connect(settings.address)
        .await
        .map_err(HookError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let request = http::Request::post(settings.path.as_str())
        .header(http::header::HOST, settings.host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;

    // Drive the connection and the exchange together: both are dropped
    // when this future is (the timeout), so nothing outlives the call.
    // A connection that ends first (the server closed after answering)
    // has already handed the response over, or `send` fails.
    let send = sender.send_request(request);
    tokio::pin!(conn);
    tokio::pin!(send);
    let response = tokio::select! {
        biased;
        response = &mut send => response?,
        done = &mut conn => {
            done?;
            send.await.map_err(|_| HookError::Closed)?
        }
    };
    if response.status().is_success() {
        Ok(())
    } else {
        Err(HookError::Status(response.status()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn settings(address: SocketAddr, timeout_ms: u64) -> PreallocHook {
        PreallocHook {
            url: format!("http://{address}/_headroom/prealloc"),
            address,
            host: address.to_string(),
            path: "/_headroom/prealloc".into(),
            timeout: Duration::from_millis(timeout_ms),
            max_in_flight: 2,
            queue: 4,
        }
    }

    fn job() -> HookJob {
        HookJob {
            user: 0xabc,
            predicted_rps: 8.5,
            horizon_s: 900,
            reason: "predicted p90 8.5 rps > 5".into(),
        }
    }

    /// Waits (bounded) until `done` holds.
    async fn eventually(done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 2 s");
    }

    #[tokio::test]
    async fn a_call_posts_the_pseudonymous_user_and_prediction() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&request).contains("\"reason\"") {
                let n = socket.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .expect("write");
            String::from_utf8_lossy(&request).into_owned()
        });
        call(&settings(address, 1_000), &job()).await.expect("2xx");
        let request = server.await.expect("server");
        assert!(
            request.starts_with("POST /_headroom/prealloc HTTP/1.1"),
            "{request}"
        );
        assert!(
            request.contains("\"user\":\"0000000000000abc\""),
            "{request}"
        );
        assert!(request.contains("\"horizon_s\":900"), "{request}");
    }

    #[tokio::test]
    async fn slow_and_refusing_hooks_are_counted_and_never_block_the_offer() {
        // Slow: accepts and never answers.
        let slow = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let slow_addr = slow.local_addr().expect("addr");
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = slow.accept().await {
                held.push(socket);
            }
        });
        let counters = HookCounters::new();
        let worker =
            HookWorker::start(&settings(slow_addr, 100), counters.clone()).expect("runtime");
        let started = Instant::now();
        for _ in 0..10 {
            worker.offer(job());
        }
        // Offering never waits, even with every call stuck.
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        eventually(|| counters.timeout.get() + counters.dropped.get() == 10).await;
        assert!(counters.dropped.get() >= 4, "queue of 4 plus 2 in flight");
        assert_eq!(counters.ok.get(), 0);
        holder.abort();

        // Refusing: a port nobody listens on any more.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closed_addr = closed.local_addr().expect("addr");
        drop(closed);
        let counters = HookCounters::new();
        let worker =
            HookWorker::start(&settings(closed_addr, 500), counters.clone()).expect("runtime");
        worker.offer(job());
        worker.offer(job());
        eventually(|| counters.failed.get() == 2).await;
    }
}
