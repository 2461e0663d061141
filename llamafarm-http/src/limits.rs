//! Request limits: a per-client rate limit and a time limit on each request.
//!
//! - **Rate limit** (off unless [`crate::HttpOptions::rate_limit`] is set): a token
//!   bucket per client (governor's GCRA), where a client is the API key it sent (when
//!   keys are configured), else its IP address. Past the limit a request is answered
//!   429 `rate_limited` with `Retry-After` (whole seconds). `/health` and
//!   `/health/liveness` are never limited.
//! - **Time limit** ([`crate::HttpOptions::request_timeout`]): a request whose response
//!   has not started within it is answered 408 `request_timeout` and its work is
//!   dropped (work already handed to a blocking thread finishes there; the core's writes
//!   are atomic, so nothing is left half-written). A streamed answer counts until its
//!   first event; the stream itself is not limited.
//!
//! - **Body limit** ([`crate::HttpOptions::body_limit`]): a body longer than it is a 413
//!   (at once from `Content-Length`, else when the handler reads past it). A RAG import
//!   (`POST .../rag/databases/{db}/import`) is exempt: it streams its body to a spool
//!   file, so a database of any size moves in one request.
//!
//! The third limit, on generations per model, lives in the core
//! (`llamafarm_core::llm::GenerationLimits`) and answers 429 `busy` through the error table.

use crate::error::{ApiError, Code};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A per-client request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, sustained.
    pub per_minute: u32,
    /// Requests a client may send at once before the rate applies (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_minute` with a burst of a tenth of it (at least 1).
    pub fn per_minute(per_minute: u32) -> Self {
        Self { per_minute, burst: (per_minute / 10).max(1) }
    }
}

/// Who a request counts against: the index of the API key it authenticated with, else
/// its peer address. Set by the API-key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyIndex(pub(crate) usize);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Key(usize),
    Ip(std::net::IpAddr),
    /// Mounted without connection info and without keys: one shared bucket.
    Unknown,
}

/// The limiter state shared by the middleware of one router.
#[derive(Clone)]
pub(crate) struct Limiter(Arc<DefaultKeyedRateLimiter<Client>>);

impl Limiter {
    pub(crate) fn new(r: RateLimit) -> Option<Self> {
        let rate = NonZeroU32::new(r.per_minute)?;
        let quota = Quota::per_minute(rate).allow_burst(NonZeroU32::new(r.burst).unwrap_or(NonZeroU32::MIN));
        Some(Self(Arc::new(governor::RateLimiter::keyed(quota))))
    }
}

fn exempt(path: &str) -> bool {
    path == "/health" || path == "/health/liveness"
}

/// The rate-limit middleware.
pub(crate) async fn rate_limit(State(limiter): State<Limiter>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let client = match (req.extensions().get::<KeyIndex>(), req.extensions().get::<ConnectInfo<SocketAddr>>()) {
        (Some(k), _) => Client::Key(k.0),
        (None, Some(ConnectInfo(addr))) => Client::Ip(addr.ip()),
        (None, None) => Client::Unknown,
    };
    if let Err(not_until) = limiter.0.check_key(&client) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        // Forget clients idle long enough to have a full bucket again.
        if limiter.0.len() > 10_000 {
            limiter.0.retain_recent();
        }
        return ApiError::with_code(Code::RateLimited, format!("Too many requests from this client; retry in {} s", secs.max(1)))
            .retry_after(secs.max(1))
            .into_response();
    }
    next.run(req).await
}

/// Whether a request streams its body to disk instead of holding it (see the module docs).
fn streams_body_to_disk(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == axum::http::Method::POST && path.contains("/rag/databases/") && path.trim_end_matches('/').ends_with("/import")
}

/// The body-limit middleware.
pub(crate) async fn body_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if streams_body_to_disk(&req) {
        return next.run(req).await;
    }
    let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let (parts, body) = req.into_parts();
    next.run(Request::from_parts(parts, axum::body::Body::new(http_body_util::Limited::new(body, limit)))).await
}

/// The time-limit middleware.
pub(crate) async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::with_code(Code::RequestTimeout, format!("The request did not finish within {} s (lf serve --request-timeout)", limit.as_secs_f64()))
            .into_response(),
    }
}
