//! Shared helpers for the end-to-end tests: a real backend on 127.0.0.1, the
//! real `headroom` binary, and a minimal HTTP/1.1 client over std sockets.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A response as the tests see it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The backend's echo of the request headers it received, when the
    /// response came from [`EchoBackend`].
    pub fn echoed(&self) -> HashMap<String, String> {
        self.body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect()
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    read_response(stream)
}

/// GET shorthand.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers)
}

fn read_response(stream: TcpStream) -> Response {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).expect("chunk size");
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A free port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A real HTTP/1.1 backend on 127.0.0.1 that answers every request with 200
/// and a body listing the request headers it received, one `name: value` a
/// line. Keep-alive is supported so the proxy's pool is exercised.
pub struct EchoBackend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl EchoBackend {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = Arc::clone(&counter);
                thread::spawn(move || serve(stream, &counter));
            }
        });
        Self { addr, hits }
    }
}

/// Reads one HTTP/1.1 request from `reader`: its request line and headers
/// (names lowercased, values trimmed, in order); the body, by Content-Length,
/// is read and dropped. `None` when the peer closed or a read timed out.
pub fn read_request(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some((line, headers))
}

fn serve(stream: TcpStream, hits: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Some((line, headers)) = read_request(&mut reader) else {
            return;
        };
        let body: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        hits.fetch_add(1, Ordering::SeqCst);
        // `/bytes/N` answers N bytes instead of the header echo.
        if let Some(n) = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/bytes/"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
            if writer.write_all(head.as_bytes()).is_err()
                || writer.write_all(&vec![b'x'; n]).is_err()
            {
                return;
            }
            continue;
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            body
        );
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The real `headroom` binary running `run`, stopped on drop.
pub struct Proxy {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub dir: TempDir,
}

impl Proxy {
    /// Writes `yaml` to a fresh temp dir and starts the proxy on it in front
    /// of `upstream`, waiting until both listeners answer.
    pub fn start(yaml: &str, upstream: SocketAddr) -> Self {
        let dir = TempDir::new();
        let config = dir.path().join("headroom.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let listen = free_addr();
        let admin = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(["run", "--config"])
            .arg(&config)
            .args([
                "--listen",
                &listen.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .args(["--upstream", &upstream.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn headroom");
        let proxy = Self {
            child,
            listen,
            admin,
            config,
            dir,
        };
        proxy.wait_ready();
        proxy
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.admin).is_ok() && TcpStream::connect(self.listen).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("headroom did not start listening within 20 s");
    }

    /// The admin `/metrics` text.
    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[]).body
    }

    /// The value of one metric series line (exact name with labels).
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Replaces the config file the atomic way (write a temp file, rename).
    pub fn rewrite_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("headroom.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write temp config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// Waits (at most 10 s) until `series` reaches at least `value`.
    pub fn wait_metric_at_least(&self, series: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.metric(series).is_some_and(|v| v >= value) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{series} did not reach {value}; metrics:\n{}",
            self.metrics()
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGINT: pingora's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "headroom-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal valid config; `extra` is appended (identity, routes, ...).
pub fn config_with(tiers_and_rules: &str, identity: &str) -> String {
    format!("upstreams: []\nhealth_check:\n  interval: 0s\n{identity}\n{tiers_and_rules}\n")
}
