//! A bare pingora HTTP proxy: every request goes to one fixed upstream, with
//! no identity, windows, limits or headers. It is the yardstick of
//! `benches/compare.sh`: Headroom's overhead is measured against what
//! pingora itself costs on the same machine, with the same thread count and
//! the same upstream connection settings.
//!
//! ```sh
//! cargo run --release --example bare_pingora -- \
//!     --listen 127.0.0.1:18081 --upstream 127.0.0.1:18000 --threads 1
//! ```
//!
//! The upstream options below match what `headroom run` applies to its peers
//! from `benches/headroom-bench.yaml` (connect 1 s, read 30 s, idle 60 s, a
//! keep-alive pool of 256), so the two differ only by Headroom's own work.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::Result;

/// Command line of the passthrough.
#[derive(Parser, Debug)]
#[command(about = "Bare pingora passthrough proxy for the load comparison")]
struct Args {
    /// Address to listen on (keep it on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// The one upstream every request goes to.
    #[arg(long, default_value = "127.0.0.1:18000")]
    upstream: SocketAddr,
    /// pingora worker threads for the proxy service.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Keep-alive connections kept to the upstream.
    #[arg(long, default_value_t = 256)]
    pool_size: usize,
}

/// The proxy: one upstream, nothing else.
struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(1));
        peer.options.read_timeout = Some(Duration::from_secs(30));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let args = Args::parse();

    // pingora's default shutdown waits minutes; a bench harness wants seconds.
    let conf = ServerConf {
        threads: args.threads.max(1),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: args.pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    eprintln!(
        "bare_pingora listening on {} -> {} ({} threads)",
        args.listen, args.upstream, args.threads
    );
    server.run(RunArgs::default());
}
