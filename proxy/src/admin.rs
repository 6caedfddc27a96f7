//! The admin listener: metrics, health, per-user profiles, cohorts,
//! forecasts, events, a dashboard and the API's OpenAPI document.
//!
//! It is a separate pingora service on its own address so that operators can
//! keep it off the public interface; nothing here is reachable through the
//! proxy listener. Access (see [`Caller`]):
//! - `/metrics`, `/healthz`, `/dashboard`, `/v1/openapi.json`: open (no
//!   per-user data);
//! - `/v1/profiles/{user}`: the operator, or that user with their own
//!   credentials;
//! - `/v1/cohorts`, `/v1/forecast`, `/v1/events`: the operator only, and
//!   403 for everyone when `admin_api.token` is not set.
//!
//! Requests go through [`AdminApp::handle`], a plain function of the
//! request, so the router is tested (and fuzzed) without sockets; the
//! pingora glue only reads the body of `POST /v1/events`, at most
//! [`MAX_BODY_BYTES`].

mod auth;
mod cohorts;
mod dashboard;
mod events;
mod openapi;
mod profiles;
mod reply;
mod router;
mod views;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::header::{ALLOW, CONTENT_LENGTH, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub use auth::{Caller, Denied};
pub use events::MAX_BODY_BYTES;
pub use reply::Reply;
pub use router::{resolve, Endpoint, Matched, RouteSpec, ROUTES};

use crate::state::Shared;

/// Longest a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request as the router sees it.
#[derive(Debug)]
pub struct AdminRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path, without the query.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The body, read only for endpoints that take one.
    pub body: RequestBody,
}

/// What was read of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// Not read (the endpoint takes none) or empty.
    None,
    /// The whole body, at most [`MAX_BODY_BYTES`].
    Bytes(Vec<u8>),
    /// Longer than [`MAX_BODY_BYTES`]; the rest was not read.
    TooLarge,
    /// The client stopped sending or the connection failed.
    Unreadable,
}

/// The admin HTTP application.
pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    /// An admin app over the proxy's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Answers one request; never panics, whatever the input.
    pub fn handle(&self, req: &AdminRequest<'_>) -> Reply {
        let (endpoint, user) = match resolve(req.method.as_str(), req.path) {
            Matched::Found { endpoint, user } => (endpoint, user),
            Matched::MethodNotAllowed { allow } => {
                let reply = Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                return match HeaderValue::from_str(&allow) {
                    Ok(value) => reply.header(ALLOW, value),
                    Err(_) => reply,
                };
            }
            Matched::NotFound => return Reply::error(StatusCode::NOT_FOUND, "not found"),
        };
        match endpoint {
            Endpoint::Metrics => self.metrics(),
            Endpoint::Healthz => self.healthz(),
            Endpoint::Dashboard => dashboard::page(),
            Endpoint::OpenApi => openapi::document(),
            Endpoint::GetProfile | Endpoint::DeleteProfile => {
                let caller = match self.caller(req) {
                    Ok(caller) => caller,
                    Err(reply) => return reply,
                };
                let id = user.unwrap_or_default();
                if endpoint == Endpoint::GetProfile {
                    profiles::get(&self.shared, caller, id)
                } else {
                    profiles::delete(&self.shared, caller, id)
                }
            }
            Endpoint::Cohorts | Endpoint::Forecast | Endpoint::ListEvents | Endpoint::PostEvent => {
                if let Err(reply) = self.operator(req) {
                    return reply;
                }
                match endpoint {
                    Endpoint::Cohorts => cohorts::cohorts(&self.shared),
                    Endpoint::Forecast => cohorts::forecast(&self.shared),
                    Endpoint::ListEvents => events::list(&self.shared),
                    _ => post_event(&self.shared, &req.body),
                }
            }
        }
    }

    /// The authenticated caller, or the 401 to send.
    fn caller(&self, req: &AdminRequest<'_>) -> Result<Caller, Reply> {
        let runtime = self.shared.runtime.load();
        let token = self.shared.insights.admin_token();
        auth::authenticate(token, &runtime, req.peer, req.headers).map_err(|denied| {
            Reply::error(StatusCode::UNAUTHORIZED, &denied.to_string()).header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"headroom-admin\""),
            )
        })
    }

    /// Ok for the operator; the 401 or 403 to send otherwise.
    fn operator(&self, req: &AdminRequest<'_>) -> Result<(), Reply> {
        if self.shared.insights.admin_token().is_none() {
            return Err(Reply::error(
                StatusCode::FORBIDDEN,
                "operator endpoints are disabled: set admin_api.token in the config",
            ));
        }
        match self.caller(req)? {
            Caller::Operator => Ok(()),
            Caller::User(_) => Err(Reply::error(
                StatusCode::FORBIDDEN,
                "operator token required",
            )),
        }
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
        shared
            .metrics
            .event_loop_lag
            .set(gate.loop_lag_us() as f64 / 1e6);
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

    /// `GET /metrics`: Prometheus text.
    fn metrics(&self) -> Reply {
        self.refresh_gauges();
        Reply::with_body(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            self.shared.metrics.render(),
        )
    }

    /// `GET`/`HEAD /healthz`: 200 when an upstream is healthy, else 503.
    fn healthz(&self) -> Reply {
        let backends = self.shared.upstreams.backends();
        let healthy = backends.get_backend().iter().any(|b| backends.ready(b));
        if healthy {
            Reply::with_body(StatusCode::OK, "text/plain", b"ok\n".to_vec())
        } else {
            Reply::with_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"no healthy upstream\n".to_vec(),
            )
        }
    }
}

/// `POST /v1/events` once the body is in.
fn post_event(shared: &Shared, body: &RequestBody) -> Reply {
    match body {
        RequestBody::Bytes(bytes) => events::post(shared, bytes),
        RequestBody::None => Reply::error(StatusCode::BAD_REQUEST, "a JSON body is required"),
        RequestBody::TooLarge => Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {MAX_BODY_BYTES} bytes"),
        ),
        RequestBody::Unreadable => Reply::error(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        ),
    }
}

/// Reads the body of `session`, at most [`MAX_BODY_BYTES`], within
/// [`BODY_TIMEOUT`]. A declared length over the limit is refused before
/// reading anything.
async fn read_body(session: &mut ServerSession) -> RequestBody {
    let declared = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return RequestBody::TooLarge;
    }
    let read = async {
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return RequestBody::TooLarge;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) if body.is_empty() => return RequestBody::None,
                Ok(None) => return RequestBody::Bytes(body),
                Err(_) => return RequestBody::Unreadable,
            }
        }
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(RequestBody::Unreadable)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.clone();
        let path = header.uri.path().to_owned();
        let headers = header.headers.clone();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());

        // Only the event endpoint takes a body.
        let takes_body = matches!(
            resolve(method.as_str(), &path),
            Matched::Found {
                endpoint: Endpoint::PostEvent,
                ..
            }
        );
        let body = if takes_body {
            read_body(session).await
        } else {
            RequestBody::None
        };
        // A body left unread would be parsed as the next request.
        if !session.is_body_done() {
            session.set_keepalive(None);
        }

        let request = AdminRequest {
            method: &method,
            path: &path,
            headers: &headers,
            peer,
            body,
        };
        self.handle(&request).into_response(method == Method::HEAD)
    }
}
