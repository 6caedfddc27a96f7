//! The minimal keep-alive HTTP/1.1 backend behind every target of
//! `benches/compare.sh`: it answers any request with `200 ok`.
//!
//! The load comparison needs one backend that all targets share (reached
//! directly, through bare pingora, through Headroom, through nginx), cheap
//! enough that the proxies' own costs show. hyper on a tokio runtime of
//! `--threads` workers does that with a few microseconds per request; the
//! sample app of `headroom demo` deliberately does not (it simulates work).
//!
//! ```sh
//! cargo run --release --example bench_backend -- --listen 127.0.0.1:18000 --threads 1
//! ```
//!
//! It exits by itself after `--lifetime-secs` (default 1 800), so a script that
//! dies before killing it leaves nothing running for long.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Command line of the backend.
#[derive(Parser, Debug)]
#[command(about = "Minimal keep-alive HTTP/1.1 backend for the load comparison")]
struct Args {
    /// Address to listen on (keep it on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Exit after this many seconds even if nobody stops the process.
    #[arg(long, default_value_t = 1_800)]
    lifetime_secs: u64,
}

/// The body of every response.
const BODY: &[u8] = b"ok\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await?;
        eprintln!("bench_backend listening on {}", listener.local_addr()?);
        let lifetime = tokio::time::sleep(Duration::from_secs(args.lifetime_secs));
        tokio::select! {
            result = serve(listener) => result,
            () = lifetime => {
                eprintln!("bench_backend: lifetime over, exiting");
                Ok(())
            }
        }
    })
}

/// Accepts connections forever, one task per connection.
async fn serve(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        let (stream, _) = listener.accept().await?;
        // Small responses: send them now rather than waiting for Nagle.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client closing mid-request is normal under load; ignore it.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(respond))
                .await;
        });
    }
}

/// `200 ok` with a `content-length`, whatever was asked.
async fn respond(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(BODY))))
}
