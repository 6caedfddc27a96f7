//! The admin listener: metrics, health and (later) the profile API.
//!
//! It is a separate pingora service on its own address so that operators can
//! keep it off the public interface; nothing here is reachable through the
//! proxy listener.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::Shared;

/// The admin HTTP application.
pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    /// An admin app over the proxy's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Gauges read from live state at scrape time.
    fn refresh_gauges(&self) {
        let shared = &self.shared;
        let users = i64::try_from(shared.users.len()).unwrap_or(i64::MAX);
        shared.metrics.tracked_users.set(users);
        let gate = &shared.admission;
        shared.metrics.admission_limit.set(i64::from(gate.limit()));
        shared
            .metrics
            .admission_in_flight
            .set(i64::from(gate.in_flight()));
        let runtime = shared.runtime.load();
        for (tier, depth) in runtime.policy.tiers().iter().zip(gate.queue_depths()) {
            let depth = i64::try_from(depth).unwrap_or(i64::MAX);
            shared
                .metrics
                .queue_depth
                .with_label_values(&[tier.name()])
                .set(depth);
        }
    }

    fn route(&self, method: &http::Method, path: &str) -> (StatusCode, &'static str, Vec<u8>) {
        match (method.as_str(), path) {
            ("GET", "/metrics") => {
                self.refresh_gauges();
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.shared.metrics.render(),
                )
            }
            ("GET" | "HEAD", "/healthz") => {
                let healthy = self
                    .shared
                    .upstreams
                    .backends()
                    .get_backend()
                    .iter()
                    .any(|b| self.shared.upstreams.backends().ready(b));
                if healthy {
                    (StatusCode::OK, "text/plain", b"ok\n".to_vec())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"no healthy upstream\n".to_vec(),
                    )
                }
            }
            (_, "/metrics" | "/healthz") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (status, content_type, body) = self.route(&req.method, req.uri.path());
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .expect("static status and header names are valid")
    }
}
