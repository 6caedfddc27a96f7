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

    fn route(&self, method: &http::Method, path: &str) -> (StatusCode, &'static str, Vec<u8>) {
        match (method.as_str(), path) {
            ("GET", "/metrics") => {
                let users = self.shared.users.len();
                self.shared
                    .metrics
                    .tracked_users
                    .set(i64::try_from(users).unwrap_or(i64::MAX));
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.shared.metrics.render(),
                )
            }
            ("GET", "/healthz") => {
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
