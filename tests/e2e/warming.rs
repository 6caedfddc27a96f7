//! Pool warming and per-tier upstream pools, against real backends that
//! count the TCP connections they accept.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{free_addr, get, read_request, EchoBackend, Proxy};

/// A keep-alive HTTP/1.1 backend that counts accepted connections, open
/// connections and requests, and closes a connection idle for longer than
/// `idle_close`. `/slow` answers after 20 ms, `/slower` after 100 ms.
struct CountingBackend {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl CountingBackend {
    fn start(idle_close: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, o, r) = (
            Arc::clone(&accepts),
            Arc::clone(&open),
            Arc::clone(&requests),
        );
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, r) = (Arc::clone(&o), Arc::clone(&r));
                thread::spawn(move || {
                    serve(stream, idle_close, &r);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepts,
            open,
            requests,
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, idle_close: Duration, requests: &AtomicUsize) {
    // An idle connection is closed when a read waits longer than this.
    let _ = stream.set_read_timeout(Some(idle_close));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Closed by the peer, or idle too long: close.
        let Some((line, _)) = read_request(&mut reader) else {
            return;
        };
        requests.fetch_add(1, Ordering::SeqCst);
        if line.starts_with("GET /slower") {
            thread::sleep(Duration::from_millis(100));
        } else if line.starts_with("GET /slow") {
            thread::sleep(Duration::from_millis(20));
        }
        let resp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn warming_config(min: u32, interval: &str) -> String {
    format!(
        r#"
upstreams: []
health_check: {{ interval: 0s }}
identity:
  sources:
    - client_ip: {{}}
tiers:
  - {{ name: standard, requests_per_second: 10000, burst: 10000 }}
default_tier: standard
warming:
  enabled: true
  interval: {interval}
  min_connections_per_upstream: {min}
  max_connections_per_upstream: 16
  path: /health
"#
    )
}

/// `n` concurrent `GET /slow` through the proxy at `listen`, each answered 200.
fn slow_burst(listen: SocketAddr, n: usize) {
    burst(listen, n, "/slow");
}

/// `n` concurrent `GET path` through the proxy at `listen`, each answered 200.
fn burst(listen: SocketAddr, n: usize, path: &'static str) {
    let users: Vec<_> = (0..n)
        .map(|_| thread::spawn(move || get(listen, path, &[]).status))
        .collect();
    for u in users {
        assert_eq!(u.join().expect("user thread"), 200);
    }
}

/// Polls `f` every 50 ms for at most `limit`; whether it became true.
fn eventually(limit: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn warm_connections_are_opened_before_traffic_in_the_proxys_own_pool() {
    let backend = CountingBackend::start(Duration::from_secs(30));
    let proxy = Proxy::start(&warming_config(4, "2s"), backend.addr);

    // No user request has been sent: every accepted connection is the warmer's.
    assert!(
        eventually(Duration::from_secs(8), || backend.accepts() >= 4),
        "backend accepted {} connections",
        backend.accepts()
    );
    thread::sleep(Duration::from_millis(500));
    assert_eq!(backend.accepts(), 4, "exactly the target, held idle");
    let opened = "headroom_warming_connections_opened_total";
    assert_eq!(proxy.metric(opened), Some(4.0));
    assert_eq!(
        proxy.metric("headroom_warming_target_connections{pool=\"default\"}"),
        Some(4.0)
    );

    // Connections the backend accepted during a burst of `n` user requests,
    // less those a warm-up round opened meanwhile.
    let user_opened_by_burst = |n: usize| {
        let (accepts_before, opened_before) =
            (backend.accepts(), proxy.metric(opened).unwrap_or(0.0));
        slow_burst(proxy.listen, n);
        let warm_opened = proxy.metric(opened).unwrap_or(0.0) - opened_before;
        backend.accepts() as f64 - accepts_before as f64 - warm_opened
    };

    // Four concurrent user requests find the warm connections.
    let user_opened = user_opened_by_burst(4);
    assert_eq!(user_opened, 0.0, "user requests reused warmed connections");
    let request_opened = "headroom_request_connections_opened_total";
    assert_eq!(proxy.metric(request_opened), Some(0.0));

    // Twelve at once outgrow the four: the proxy counts each connection a
    // user request had to open, as the backend saw them.
    let user_opened = user_opened_by_burst(12);
    assert!(
        user_opened >= 1.0,
        "twelve concurrent requests need more than four connections"
    );
    assert_eq!(proxy.metric(request_opened), Some(user_opened));
    assert_eq!(
        proxy.metric("headroom_requests_total{outcome=\"admitted\",tier=\"standard\"}"),
        Some(16.0),
        "warm-up requests are never counted as user traffic"
    );
}

#[test]
fn connections_a_burst_left_beyond_the_warm_target_close_when_demand_falls() {
    let backend = CountingBackend::start(Duration::from_secs(60));
    let proxy = Proxy::start(&warming_config(2, "300ms"), backend.addr);
    assert!(eventually(Duration::from_secs(8), || backend.open() >= 2));

    // A burst of twelve at once opens connections beyond the two warm ones.
    let listen = proxy.listen;
    slow_burst(listen, 12);
    let after_burst = backend.open();
    assert!(
        after_burst >= 4,
        "the burst needed more connections: {after_burst}"
    );

    // Demand falls to nothing: within a few warming rounds the proxy closes
    // what the burst left, and keeps what the warmer holds (the backend
    // itself would keep them for 60 s).
    assert!(
        eventually(Duration::from_secs(5), || backend.open() <= 3),
        "still open: {} (after the burst: {after_burst}); warmer target {:?}",
        backend.open(),
        proxy.metric("headroom_warming_target_connections{pool=\"default\"}")
    );
    thread::sleep(Duration::from_secs(1));
    assert!(
        backend.open() >= 2,
        "the warm ones stay: {}",
        backend.open()
    );
}

#[test]
fn a_bursts_surplus_closes_under_steady_light_traffic_too() {
    let backend = CountingBackend::start(Duration::from_secs(60));
    let proxy = Proxy::start(&warming_config(2, "300ms"), backend.addr);
    assert!(eventually(Duration::from_secs(8), || backend.open() >= 2));
    let listen = proxy.listen;
    // A burst long enough for warming rounds to see it: the warm target
    // rises with it, so most of its connections are core ones.
    let target = "headroom_warming_target_connections{pool=\"default\"}";
    let mut peak_target = 0.0f64;
    for _ in 0..8 {
        burst(listen, 24, "/slower");
        peak_target = peak_target.max(proxy.metric(target).unwrap_or(0.0));
    }
    let after_burst = backend.open();
    assert!(
        after_burst >= 8,
        "the burst needed more connections: {after_burst}"
    );
    assert!(
        peak_target > 2.0,
        "the warm target rose with the burst: {peak_target}"
    );

    // One request at a time, about 25 a second, for 4 s: were every idle
    // connection handed out in turn, this would keep them all alive.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(get(listen, "/", &[]).status, 200);
        thread::sleep(Duration::from_millis(40));
    }
    let open = backend.open();
    assert!(
        open <= 3,
        "still open under light traffic: {open} (after the burst: {after_burst})"
    );
    assert!(open >= 1, "the traffic's own connection stays");
}

#[test]
fn the_warm_target_never_exceeds_what_the_admission_gate_lets_through() {
    let backend = CountingBackend::start(Duration::from_secs(30));
    let config = format!(
        "{}admission: {{ enabled: true, adaptive: false, max_concurrency: 3 }}\n",
        warming_config(8, "300ms")
    );
    let proxy = Proxy::start(&config, backend.addr);
    let target = "headroom_warming_target_connections{pool=\"default\"}";
    assert!(
        eventually(Duration::from_secs(8), || proxy.metric(target) == Some(3.0)),
        "target {:?}",
        proxy.metric(target)
    );
    thread::sleep(Duration::from_millis(900));
    assert_eq!(
        backend.open(),
        3,
        "three connections, not the floor of eight"
    );
}

#[test]
fn a_backend_closing_idle_connections_never_causes_a_502() {
    // Warmed connections sit in the pool while the backend drops them
    // after 200 ms idle; requests arrive spread over that window.
    let backend = CountingBackend::start(Duration::from_millis(200));
    let proxy = Proxy::start(&warming_config(8, "150ms"), backend.addr);
    assert!(eventually(Duration::from_secs(8), || backend.accepts() >= 8));

    let listen = proxy.listen;
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            thread::spawn(move || {
                let mut bad = Vec::new();
                for i in 0..50u64 {
                    // 0..250 ms apart, so some requests land just as
                    // the backend closes the connection they are given.
                    thread::sleep(Duration::from_millis((i * 37 + w * 61) % 250));
                    let status = get(listen, "/", &[]).status;
                    if status != 200 {
                        bad.push(status);
                    }
                }
                bad
            })
        })
        .collect();
    let bad: Vec<u16> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(bad.is_empty(), "non-200 answers: {bad:?}");
    assert!(
        backend.requests.load(Ordering::SeqCst) >= 200,
        "every user request reached the backend"
    );
}

const POOLS: &str = r#"
upstreams: []
health_check: { interval: 200ms, timeout: 100ms }
identity:
  sources:
    - api_key:
        header: x-api-key
        unknown_keys: as_id
        keys:
          prem: { user: alice, plan: premium }
tiers:
  - { name: premium, requests_per_second: 1000, burst: 1000, pool: dedicated }
  - { name: standard, requests_per_second: 1000, burst: 1000 }
rules:
  - when: { plan: premium }
    tier: premium
default_tier: standard
upstream_pools:
  dedicated:
    - { address: "DEDICATED" }
    - { address: "DEAD" }
"#;

#[test]
fn premium_goes_to_its_dedicated_pool_and_a_dead_member_is_taken_out() {
    let default = EchoBackend::start();
    let dedicated = EchoBackend::start();
    let dead = free_addr(); // nothing listens here
    let yaml = POOLS
        .replace("DEDICATED", &dedicated.addr.to_string())
        .replace("DEAD", &dead.to_string());
    let proxy = Proxy::start(&yaml, default.addr);
    // Let the health check mark the dead member down (200 ms interval).
    thread::sleep(Duration::from_millis(800));

    for _ in 0..10 {
        let resp = get(proxy.listen, "/", &[("x-api-key", "prem")]);
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.header("x-headroom-tier"), Some("premium"));
    }
    assert_eq!(dedicated.hits.load(Ordering::SeqCst), 10);
    assert_eq!(default.hits.load(Ordering::SeqCst), 0);

    for _ in 0..5 {
        assert_eq!(
            get(proxy.listen, "/", &[("x-api-key", "other")]).status,
            200
        );
    }
    assert_eq!(default.hits.load(Ordering::SeqCst), 5);
    assert_eq!(dedicated.hits.load(Ordering::SeqCst), 10);
}

#[test]
fn a_tier_whose_pool_is_down_gets_503_or_falls_back_when_configured() {
    let default = EchoBackend::start();
    let dead = free_addr();
    let yaml = POOLS
        .replace("    - { address: \"DEDICATED\" }\n", "")
        .replace("DEAD", &dead.to_string());
    let proxy = Proxy::start(&yaml, default.addr);
    thread::sleep(Duration::from_millis(800));
    let resp = get(proxy.listen, "/", &[("x-api-key", "prem")]);
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(
        default.hits.load(Ordering::SeqCst),
        0,
        "no silent spill-over"
    );
    drop(proxy);

    let yaml = yaml.replace(
        "pool: dedicated }",
        "pool: dedicated, pool_fallback: default }",
    );
    let proxy = Proxy::start(&yaml, default.addr);
    thread::sleep(Duration::from_millis(800));
    let resp = get(proxy.listen, "/", &[("x-api-key", "prem")]);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(default.hits.load(Ordering::SeqCst), 1);
}
