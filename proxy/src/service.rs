//! The proxy service: pingora's request phases, in the order they run.
//!
//! - `request_filter`: identify the user, look up their state, record the
//!   arrival, check the tier's rate limit, pass the admission gate (or wait
//!   in its fair queue); answer 400 (a credential sent twice), 401, 429 or
//!   503 here.
//! - `upstream_peer`: pick a healthy upstream from the tier's pool (the
//!   default pool unless the tier names one); a warm-up request (the
//!   warmer's bodiless GET from loopback, see [`crate::warmer::hub`]) goes
//!   to the configured upstream it names. A retry after a failure on a
//!   reused connection gets a fresh connection. With no healthy upstream,
//!   `fail_to_proxy` answers 503 with `Retry-After`.
//! - `upstream_request_filter`: strip client-sent `x-headroom-*` and
//!   hop-by-hop headers, add the pseudonymous user and the tier.
//! - `connected_to_upstream`: hold a warm-up request until its whole round
//!   owns connections (see [`crate::warmer`]).
//! - `response_filter`: add the tier, forecast and rate-limit headers.
//! - `logging`: record status, bytes and latency into the user's windows and
//!   count the outcome.
//!
//! Per request the hot path takes one `Arc` of the current [`Runtime`], one
//! `Arc` of the user's entry, and does atomic adds; it formats only the few
//! numeric header values.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use headroom_policies::{RouteKind, TierId, Verdict};
use headroom_profiler::{Clock, UserEntry};
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::admission::Permit;
use crate::headers;
use crate::metrics::Outcome;
use crate::state::{Runtime, Shared, UserState};
use crate::upstreams::DEFAULT_POOL;
use crate::warmer::hub::WarmTarget;

/// The pool group key of a retry's fresh connection (see `upstream_peer`);
/// any value other than pingora's default 0 keeps it apart.
const FRESH_CONNECTION_GROUP: u64 = 0x6865_6164_726f_6f6d;

/// The 400 body for a request carrying a credential more than once.
const DUPLICATE_CREDENTIAL_BODY: &[u8] =
    b"bad request: a credential header or the identity cookie was sent more than once\n";

/// The 503 body when the request's pool has no healthy upstream.
const NO_HEALTHY_UPSTREAM_BODY: &[u8] = b"no healthy upstream, retry later\n";

/// Per-request state carried between the phases.
pub struct RequestCtx {
    /// Arrival time, for the latency histogram and the windows.
    started: Instant,
    /// The policy snapshot this request was decided under.
    runtime: Option<Arc<Runtime>>,
    /// The user's entry, once identified.
    user: Option<Arc<UserEntry<UserState>>>,
    /// The user key (also the pseudonym sent upstream).
    user_key: u64,
    /// The tier the request was served in.
    tier: Option<TierId>,
    /// The rate-limit verdict, for the response headers.
    verdict: Option<Verdict>,
    /// What happened, for `headroom_requests_total`.
    outcome: Outcome,
    /// The admission slot, held until the request ends.
    permit: Option<Permit>,
    /// When the request was let through to the upstream.
    admitted_at: Option<Instant>,
    /// The request's route class.
    route: u8,
    /// Whether the route is interactive or batch (latency sensitivity).
    route_kind: RouteKind,
    /// The TCP peer's address.
    peer: Option<IpAddr>,
    /// Body pacing for this response, bytes per second, if its tier has one.
    pace_bytes_per_second: Option<f64>,
    /// Body bytes passed to the client so far, and when the first went.
    paced_bytes: u64,
    paced_since: Option<Instant>,
    /// Set for the warmer's own requests (never user traffic).
    warm: Option<WarmTarget>,
    /// A previous attempt failed on a reused upstream connection: the next
    /// one must not take another pooled (possibly also stale) connection.
    fresh_connection: bool,
    /// `upstream_peer` found no healthy member in the request's pool.
    no_healthy_upstream: bool,
}

/// The pingora proxy application.
pub struct HeadroomProxy {
    shared: Arc<Shared>,
}

impl HeadroomProxy {
    /// A proxy over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Writes a complete short response (401, 429) from the request phase.
    async fn refuse(
        session: &mut Session,
        status: u16,
        extra: &[(&'static str, HeaderValue)],
        body: &'static [u8],
    ) -> Result<()> {
        let mut resp = ResponseHeader::build(status, Some(extra.len() + 2))?;
        for (name, value) in extra {
            resp.insert_header(*name, value.clone())?;
        }
        resp.insert_header("content-type", "text/plain; charset=utf-8")?;
        resp.insert_header("content-length", headers::number(body.len() as u64))?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from_static(body)), true)
            .await
    }
}

#[async_trait]
impl ProxyHttp for HeadroomProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            runtime: None,
            user: None,
            user_key: 0,
            tier: None,
            verdict: None,
            outcome: Outcome::Error,
            permit: None,
            admitted_at: None,
            route: 0,
            route_kind: RouteKind::Interactive,
            peer: None,
            pace_bytes_per_second: None,
            paced_bytes: 0,
            paced_since: None,
            warm: None,
            fresh_connection: false,
            no_healthy_upstream: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.peer = peer;
        let req = session.req_header();

        // The warmer's requests skip identity, limits and admission, and are
        // never counted (one string comparison for everyone else). A marker
        // request that is not the warmer's is ordinary traffic.
        if self.shared.warm.is_marker(req.uri.path()) {
            let pools = &self.shared.pools;
            ctx.warm =
                self.shared
                    .warm
                    .accept(peer, &req.method, &req.headers, req.uri.query(), |addr| {
                        pools.is_member(addr)
                    });
            if ctx.warm.is_some() {
                return Ok(false);
            }
            tracing::debug!(?peer, "marker request served as ordinary traffic");
        }
        let rt = self.shared.runtime.load_full();
        ctx.runtime = Some(Arc::clone(&rt));

        // Identify; a bad credential ends the request here.
        let identity = match rt.identity.identify(peer, &req.headers) {
            Ok(identity) => identity,
            Err(e) => {
                // Counted as unauthorized either way: no user is charged.
                tracing::debug!(error = %e, "request refused: identity");
                ctx.outcome = Outcome::Unauthorized;
                if e.status() == 400 {
                    Self::refuse(session, 400, &[], DUPLICATE_CREDENTIAL_BODY).await?;
                    return Ok(true);
                }
                let challenge = HeaderValue::from_static(e.challenge());
                Self::refuse(
                    session,
                    401,
                    &[("www-authenticate", challenge)],
                    b"unauthorized\n",
                )
                .await?;
                return Ok(true);
            }
        };

        // Tier, route, arrival and the rate-limit check (see `Shared::arrive`).
        let now_ms = self.shared.clock.now_ms();
        let arrival = self
            .shared
            .arrive(&rt, &identity, &req.headers, req.uri.path(), now_ms);
        let (user, tier, route, verdict, reserved) = (
            arrival.user,
            arrival.tier,
            arrival.route,
            arrival.verdict,
            arrival.reserved,
        );
        ctx.user_key = identity.key;
        ctx.route = route.id;
        ctx.route_kind = route.kind;
        ctx.tier = Some(tier);
        ctx.user = Some(user);
        ctx.verdict = Some(verdict);
        if let Verdict::Limited {
            retry_after_secs, ..
        } = verdict
        {
            ctx.outcome = Outcome::Limited;
            let tier_rt = rt.tier(tier);
            let extra = [
                (
                    headers::RETRY_AFTER,
                    headers::number(u64::from(retry_after_secs)),
                ),
                (headers::TIER, tier_rt.name_header.clone()),
                (headers::RATELIMIT_POLICY, tier_rt.policy_header.clone()),
                (
                    headers::RATELIMIT,
                    tier_rt.ratelimit_header(rt.policy.tier(tier), &verdict),
                ),
            ];
            Self::refuse(session, 429, &extra, b"rate limit exceeded\n").await?;
            return Ok(true);
        }

        // Admission: straight through while the backend has room; otherwise
        // wait in the fair queue, or be shed when the tier's wait runs out.
        match self
            .shared
            .admission
            .acquire_for(tier.index(), reserved)
            .await
        {
            Ok(permit) => {
                let admitted_at = Instant::now();
                if let Some(waited) = admitted_at.checked_duration_since(ctx.started) {
                    if waited.as_micros() > 100 {
                        rt.tier(tier).metrics.wait.observe(waited.as_secs_f64());
                    }
                }
                // Bulk tiers may be paced, always or while the backend is busy.
                if let Some(pacing) = rt.pacing.get(tier.index()).copied().flatten() {
                    if pacing.always || self.shared.admission.is_saturated() {
                        ctx.pace_bytes_per_second = Some(pacing.bytes_per_second);
                    }
                }
                ctx.permit = Some(permit);
                ctx.admitted_at = Some(admitted_at);
                ctx.outcome = Outcome::Admitted;
                Ok(false)
            }
            Err(shed) => {
                tracing::debug!(?shed, "request shed: backend saturated");
                ctx.outcome = Outcome::Shed;
                let wait = self.shared.admission.max_queue_time(tier.index());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let tier_rt = rt.tier(tier);
                let extra = [
                    (headers::RETRY_AFTER, headers::number(retry_after.max(1))),
                    (headers::TIER, tier_rt.name_header.clone()),
                ];
                Self::refuse(session, 503, &extra, b"backend saturated, retry later\n").await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let backend = match ctx.warm {
            Some(warm) => warm.backend,
            None => {
                let route = match (&ctx.runtime, ctx.tier) {
                    (Some(rt), Some(tier)) => rt.tier_pools.get(tier.index()).copied().flatten(),
                    _ => None,
                };
                let key = ctx.user_key.to_le_bytes();
                let picked = self.shared.pools.select(route, &key);
                // Nothing healthy: `fail_to_proxy` answers 503 with Retry-After.
                ctx.no_healthy_upstream = picked.is_none();
                picked.ok_or_else(|| match route {
                    Some(r) if r.pool != DEFAULT_POOL => Error::explain(
                        ErrorType::HTTPStatus(503),
                        "no healthy upstream in the tier's pool",
                    ),
                    _ => Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"),
                })?
            }
        };
        let mut peer = HttpPeer::new(backend, false, String::new());
        self.shared.upstream_options.apply(&mut peer);
        peer.group_key = if ctx.fresh_connection {
            // A group key of its own: no pooled connection matches it.
            FRESH_CONNECTION_GROUP
        } else {
            // The warmer's core set, the overflow beyond it, and a new
            // generation when demand falls (see `WarmHub::group_key`).
            self.shared
                .warm
                .group_key(self.shared.admission.in_flight(), ctx.warm.is_some())
        };
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Nothing a client sends may look like Headroom's own word.
        for name in headers::request_headers_to_drop(&upstream_request.headers) {
            upstream_request.remove_header(&name);
        }
        if ctx.warm.is_some() {
            // The backend sees a plain GET of the cheap warm-up path.
            upstream_request.set_uri(self.shared.warm.backend_path().clone());
            return Ok(());
        }
        upstream_request.insert_header(headers::USER, headers::user_id(ctx.user_key))?;

        // Tell the app who connected: extend a trusted proxy's chain, replace
        // anything an untrusted client wrote.
        if let (Some(peer), Some(rt)) = (ctx.peer, &ctx.runtime) {
            let chain = headers::forwarded_for(
                &upstream_request.headers,
                peer,
                rt.identity.client_ip.is_trusted(peer),
            );
            upstream_request.insert_header(headers::X_FORWARDED_FOR, chain)?;
        }
        if let (Some(rt), Some(tier)) = (&ctx.runtime, ctx.tier) {
            upstream_request.insert_header(headers::TIER, rt.tier(tier).name_header.clone())?;
        }
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match ctx.warm {
            Some(warm) => self.shared.warm.connected(warm, reused).await,
            None if !reused => self.shared.warm.metrics.request_opened.inc(),
            None => {}
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // pingora's rule: an idempotent request whose body is still
        // buffered is retried when the failure was on a reused connection
        // (a keep-alive connection the backend closed while idle).
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        if replayable {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        // The retry takes a fresh connection rather than the next pooled one,
        // which may be just as stale.
        if e.retry() {
            ctx.fresh_connection = true;
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = if ctx.no_healthy_upstream {
            // No healthy upstream: 503 and when to come back (the next health
            // check), with the tier; `logging` counts it as an upstream error.
            let retry_after = self.shared.pools.retry_after_secs();
            let tier = match (&ctx.runtime, ctx.tier) {
                (Some(rt), Some(tier)) => Some(rt.tier(tier).name_header.clone()),
                _ => None,
            };
            let mut extra = vec![(headers::RETRY_AFTER, headers::number(retry_after))];
            extra.extend(tier.map(|t| (headers::TIER, t)));
            match Self::refuse(session, 503, &extra, NO_HEALTHY_UPSTREAM_BODY).await {
                Ok(()) => 503,
                Err(_) => 0,
            }
        } else {
            // pingora's own mapping for every other failure.
            let code = match (e.etype(), e.esource()) {
                (ErrorType::HTTPStatus(code), _) => *code,
                (_, ErrorSource::Upstream) => 502,
                (
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                    ErrorSource::Downstream,
                ) => 0,
                (_, ErrorSource::Downstream) => 400,
                (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
            };
            if code > 0 && session.respond_error(code).await.is_err() {
                tracing::debug!(status = code, "error response not delivered");
            }
            code
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _e: &Error) -> bool {
        // An outage is reported by the health checks and the error counter,
        // not one error line per refused request.
        ctx.no_healthy_upstream
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(rt), Some(tier), Some(user)) = (&ctx.runtime, ctx.tier, &ctx.user) else {
            return Ok(());
        };
        let tier_rt = rt.tier(tier);
        let now_ms = self.shared.clock.now_ms();
        if let Some(admitted_at) = ctx.admitted_at {
            // Time to the upstream's response header: the adaptive limit's signal.
            self.shared
                .admission
                .on_latency(ctx.route, admitted_at.elapsed());
        }
        resp.insert_header(headers::TIER, tier_rt.name_header.clone())?;
        // The forecast while it beats naive; the current smoothed rate otherwise.
        let forecast = self
            .shared
            .decisions
            .load()
            .use_forecast
            .then(|| user.extra.forecast.forecast_rps())
            .flatten()
            .unwrap_or_else(|| user.windows.smoothed_rps(now_ms));
        resp.insert_header(headers::FORECAST_RPS, headers::rate(forecast))?;
        if let Some(verdict) = &ctx.verdict {
            resp.insert_header(headers::RATELIMIT_POLICY, tier_rt.policy_header.clone())?;
            resp.insert_header(
                headers::RATELIMIT,
                tier_rt.ratelimit_header(rt.policy.tier(tier), verdict),
            )?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        // Pace: hold the next chunk until the bytes sent fit the tier's rate.
        let Some(rate) = ctx.pace_bytes_per_second else {
            return Ok(None);
        };
        let since = *ctx.paced_since.get_or_insert_with(Instant::now);
        ctx.paced_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        let due = std::time::Duration::from_secs_f64(ctx.paced_bytes as f64 / rate);
        Ok(due
            .checked_sub(since.elapsed())
            .filter(|wait| wait.as_millis() >= 1))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // Free the admission slot first: the next waiter need not wait for our
        // bookkeeping.
        drop(ctx.permit.take());
        if let Some(admitted_at) = ctx.admitted_at {
            // Time holding an upstream connection, for the warmer's Little's law.
            self.shared.warm.timing.record(admitted_at.elapsed());
        }
        let elapsed = ctx.started.elapsed();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if e.is_some() && ctx.outcome == Outcome::Admitted {
            ctx.outcome = Outcome::Error;
            self.shared.metrics.upstream_errors.inc();
        }

        // Record the response into the user's windows.
        if let Some(user) = &ctx.user {
            let now_ms = self.shared.clock.now_ms();
            let bytes_out = session.body_bytes_sent() as u64;
            let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            user.windows
                .record_response(now_ms, status, bytes_out, latency_us);
            // A downstream error before any response header: the client hung up.
            let disconnected =
                status == 0 && e.is_some_and(|e| *e.esource() == ErrorSource::Downstream);
            if ctx.admitted_at.is_some() {
                crate::insights::record_response(
                    &self.shared,
                    user,
                    now_ms,
                    ctx.route,
                    ctx.route_kind,
                    latency_us,
                    disconnected,
                );
            }
        }

        // Count the outcome under the tier (or "none" before a tier was known).
        let metrics = match (&ctx.runtime, ctx.tier) {
            (Some(rt), Some(tier)) => &rt.tier(tier).metrics,
            (Some(rt), None) => &rt.no_tier_metrics,
            (None, _) => return,
        };
        metrics.count(ctx.outcome);
        metrics.duration.observe(elapsed.as_secs_f64());
    }
}
