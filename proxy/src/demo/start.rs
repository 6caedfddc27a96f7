//! `headroom demo` end to end: the sample app, the real proxy in front of it
//! (this same binary running `headroom run` as a child process, exactly as an
//! operator would run it), and the load generator; then the report.
//!
//! The proxy's config is generated per run: it carries a fresh random HS256
//! secret shared with the load generator's synthetic users, and trusts the
//! loopback load generator to name trace clients in `X-Forwarded-For`. It
//! also carries a fresh admin token, with which a ramp (`--ramp-at`) is
//! declared through `POST /v1/events` before the load starts, and the
//! warmer's gauges are read from `/metrics` once a second up to the step.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::app::SampleAppHandle;
use super::load::DemoOptions;
use super::ramp::{declare_event, warming_metrics, Ramp, RampReport, WarmingReading, RAMP_WINDOW};
use super::{run_load, DemoArgs, SampleApp, SampleAppConfig};

/// How long the proxy may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the demo; exit 0 after a completed run.
pub fn main(args: DemoArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &DemoArgs) -> Result<(), String> {
    let secret = random_hex(32).map_err(|e| format!("no randomness: {e}"))?;
    let admin_token = random_hex(16).map_err(|e| format!("no randomness: {e}"))?;
    let opts = args.to_options(secret.clone()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    runtime.block_on(async {
        let app = SampleApp::start(SampleAppConfig::default()).map_err(|e| e.to_string())?;
        let dir = DemoDir::create()?;
        let config = dir.0.join("demo.yaml");
        let text = demo_config(&secret, &admin_token, opts.shaping, opts.warming);
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let mut proxy = ProxyProcess::start(&config, app.addr())?;
        eprintln!(
            "headroom demo: app on {} (capacity ~{:.0} req/s for the synthetic workload's mix), \
             proxy on {}, admin on {}",
            app.addr(),
            app.capacity_rps_for(&super::synthetic_mix()),
            proxy.listen,
            proxy.admin
        );

        // A ramp is declared just before the load starts, as an operator
        // would declare a launch, and the warmer watched up to the step.
        let declared = declare_ramp(&opts, proxy.admin, &admin_token).await;
        let proxy_url = format!("http://{}", proxy.listen);
        let (report, watched) = tokio::join!(
            run_load(&opts, &proxy_url, &app),
            watch_ramp(opts.ramp, opts.duration, proxy.admin, &app)
        );
        proxy.stop();
        app.shutdown().await;
        let mut report = report.map_err(|e| e.to_string())?;
        if let Some(ramp) = report.ramp.as_mut() {
            ramp.declared = declared;
            watched.fill(ramp);
        }
        if opts.json {
            println!("{}", report.to_json());
        } else {
            report.print_table();
        }
        let _ = std::io::stdout().flush();
        Ok(())
    })
}

/// Declares `opts.ramp` (if any) to the proxy's admin API as starting
/// `ramp.at` from now; whether the proxy took it (a refusal is printed, and
/// the run goes on undeclared).
async fn declare_ramp(opts: &DemoOptions, admin: SocketAddr, token: &str) -> bool {
    let Some(ramp) = opts.ramp else {
        return false;
    };
    let now = SystemTime::now();
    let (start, end) = (now + ramp.at, now + opts.duration);
    match declare_event(admin, token, start, end, ramp.factor(opts.load)).await {
        Ok(()) => true,
        Err(e) => {
            eprintln!("headroom demo: the ramp was not declared: {e}");
            false
        }
    }
}

/// How long before a ramp's step the last readings before it are taken.
const STEP_LEAD: Duration = Duration::from_millis(100);

/// What was read around a ramp's step (see [`watch_ramp`]).
#[derive(Debug, Default)]
struct RampWatch {
    /// The proxy's connection readings, once a second up to the step.
    before: Vec<WarmingReading>,
    /// The proxy's reading and the app's connection count just before the
    /// step and at the end of the report window.
    at_step: Option<(WarmingReading, u64)>,
    window_end: Option<(WarmingReading, u64)>,
}

/// With a ramp, reads the proxy's warming metrics once a second from now
/// until [`STEP_LEAD`] before the step, then once more with the app's
/// connection count there and at the end of the report window (failed
/// reads are left out). Without a ramp, nothing.
async fn watch_ramp(
    ramp: Option<Ramp>,
    duration: Duration,
    admin: SocketAddr,
    app: &SampleAppHandle,
) -> RampWatch {
    let Some(ramp) = ramp else {
        return RampWatch::default();
    };
    let start = tokio::time::Instant::now();
    let step = start + ramp.at.saturating_sub(STEP_LEAD);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut watch = RampWatch::default();
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() >= step {
            break;
        }
        if let Ok(reading) = warming_metrics(admin).await {
            watch.before.push(reading);
        }
    }
    let read = || async {
        warming_metrics(admin)
            .await
            .ok()
            .map(|r| (r, app.connections()))
    };
    tokio::time::sleep_until(step).await;
    watch.at_step = read().await;
    let window_end = ramp.at.saturating_add(RAMP_WINDOW).min(duration);
    tokio::time::sleep_until(start + window_end).await;
    watch.window_end = read().await;
    watch
}

impl RampWatch {
    /// The readings, into the ramp report.
    fn fill(&self, ramp: &mut RampReport) {
        let before = &self.before;
        ramp.warming_target_before = before.last().map(|r| r.target);
        ramp.warming_target_peak_before = before.iter().map(|r| r.target).max();
        ramp.warming_opened_before = before
            .first()
            .zip(before.last())
            .map(|(first, last)| last.opened.saturating_sub(first.opened));
        if let Some(((step, app_step), (end, app_end))) = self.at_step.zip(self.window_end) {
            ramp.request_connections_in_window =
                Some(end.request_opened.saturating_sub(step.request_opened));
            ramp.app_connections_in_window = Some(app_end.saturating_sub(app_step));
        }
    }
}

/// The demo's proxy config: four tiers, plan rules, a bot rule and route
/// costs. Without shaping the same tiers have limits no client reaches, so
/// the report still splits by tier. With `warming`, the warmer keeps
/// connections to the app ready (fetching its free `/healthz`).
/// `admin_token` (16+ visible ASCII bytes) opens the operator endpoints.
///
/// Admission uses a fixed limit of 24 in flight (the sample app has 16
/// workers): the operator-known case. The adaptive limit mis-learns on
/// replays whose responses vary widely in size (a static-heavy trace's big
/// files read as queueing), see the README's known limitations.
pub fn demo_config(secret: &str, admin_token: &str, shaping: bool, warming: bool) -> String {
    let (premium, standard, free, bots) = if shaping {
        (
            "60, burst: 120",
            "15, burst: 30",
            "5, burst: 20",
            "2, burst: 20",
        )
    } else {
        let open = "1000000, burst: 1000000";
        (open, open, open, open)
    };
    format!(
        r#"# Generated by `headroom demo` for one run.
threads: 2
grace_period: 1s
upstreams: []
profiler: {{ forecast_tick: 5s }}
# A fixed limit a little above the sample app's 16 workers: the order of
# service is decided here, by tier, not in the app's first-come queue, and the
# few extra slots cover the time a request spends in transit. Low tiers wait
# briefly and are shed fast, so doomed requests do not hold connections.
admission: {{ enabled: {shaping}, adaptive: false, max_concurrency: 22, max_queue: 256 }}
health_check: {{ interval: 1s, timeout: 500ms }}
admin_api: {{ token: "{admin_token}" }}
identity:
  trusted_proxies: ["127.0.0.0/8", "::1/128"]
  sources:
    - jwt:
        header: authorization
        keys:
          - {{ algorithm: HS256, secret: "{secret}" }}
    - client_ip: {{}}
routes:
  - {{ name: search, prefix: /api/search, cost: 2, kind: interactive }}
  - {{ name: export, prefix: /api/export, cost: 10, kind: batch }}
  - {{ name: static, prefix: /static, cost: 1, kind: interactive }}
tiers:
  - {{ name: premium, priority: 100, weight: 64, max_queue_time: 1s, requests_per_second: {premium} }}
  - {{ name: standard, priority: 50, weight: 4, max_queue_time: 100ms, requests_per_second: {standard} }}
  - {{ name: free, priority: 10, weight: 1, min_share: 0.05, max_queue_time: 50ms, requests_per_second: {free} }}
  - {{ name: bots, priority: 1, weight: 1, max_queue_time: 50ms, requests_per_second: {bots} }}
rules:
  - {{ when: {{ plan: premium }}, tier: premium }}
  - {{ when: {{ plan: free }}, tier: free }}
  - {{ when: {{ device: bot }}, tier: bots }}
default_tier: standard
warming: {{ enabled: {warming}, interval: 1s, lead: 30s, min_connections_per_upstream: 2, path: /healthz }}
"#
    )
}

/// The proxy child process; stopped on drop.
struct ProxyProcess {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl ProxyProcess {
    fn start(config: &Path, upstream: SocketAddr) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        let (listen, admin) = (free_addr()?, free_addr()?);
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args([
                "--listen",
                &listen.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .args(["--upstream", &upstream.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        let mut proxy = Self {
            child,
            listen,
            admin,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(listen).is_err() || TcpStream::connect(admin).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                return Err(format!("the proxy exited during start-up ({status})"));
            }
            if Instant::now() > deadline {
                proxy.stop();
                return Err("the proxy did not start listening within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proxy)
    }

    /// SIGINT (pingora's fast shutdown), then SIGKILL after 5 s.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private temp directory for the generated config, removed on drop.
struct DemoDir(PathBuf);

impl DemoDir {
    fn create() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("headroom-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A currently free port on 127.0.0.1.
fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// `bytes` random bytes as lowercase hex.
fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid_with_and_without_shaping() {
        for shaping in [true, false] {
            let text = demo_config(&"ab".repeat(32), &"cd".repeat(16), shaping, shaping);
            let config = headroom_config::load_str(&text, "demo.yaml").expect("valid demo config");
            headroom_policies::Policy::compile(&config).expect("compiles");
        }
    }
}
