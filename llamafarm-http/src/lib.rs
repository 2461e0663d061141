//! # llamafarm-http
//!
//! The LlamaFarm REST API as an [`axum::Router`] over a [`llamafarm_core::LlamaFarm`]
//! handle. Handlers are thin: extract, one core call, map to a DTO. Mount the
//! router in any axum app:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let lf = llamafarm_core::LlamaFarm::open("/tmp/lf-data")?;
//! let app = axum::Router::new()
//!     .nest("/llamafarm", llamafarm_http::api_router(lf.clone(), &llamafarm_http::HttpOptions::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Two routers exist, served by `lf serve` on two ports from the same library
//! instance: [`api_router`] (the LlamaFarm API, default port 8000) and
//! [`runtime_router`] (the Universal Runtime API, default port 11540). Both answer
//! `GET /metrics` ([`metrics`]).

#![warn(missing_docs)]

pub mod auth;
pub mod docs;
mod dto;
pub mod error;
pub mod limits;
pub mod mcp;
pub mod metrics;
mod routes;
mod web;

pub use auth::ApiKey;
pub use error::{ApiError, ApiResult};
pub use limits::RateLimit;

use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::Router;
use llamafarm_core::LlamaFarm;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::Layer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

/// Default limit for a request body: 256 MiB (uploads of large documents).
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Allowed CORS origins; `["*"]` allows any (the original's behaviour).
    pub cors_origins: Vec<String>,
    /// Largest accepted request body in bytes (413 past it).
    pub body_limit: usize,
    /// The address the API is reachable at, reported by `/health`.
    pub public_url: Option<String>,
    /// API keys; empty: no key needed (see [`auth`]).
    pub api_keys: Vec<ApiKey>,
    /// Per-client request rate (default none; see [`limits`]).
    pub rate_limit: Option<RateLimit>,
    /// Time a request may take until its response starts (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]; `None`: unlimited).
    pub request_timeout: Option<Duration>,
}

/// Default time limit of a request: 10 minutes (a long non-streamed generation on a CPU).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            cors_origins: vec!["*".into()],
            body_limit: DEFAULT_BODY_LIMIT,
            public_url: None,
            api_keys: Vec::new(),
            rate_limit: None,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The library handle.
    pub lf: LlamaFarm,
    /// Options the router was built with.
    pub opts: Arc<HttpOptions>,
    /// When the router was built.
    pub started: Instant,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The LlamaFarm API router (projects, system, health, `/openapi.json` + `/docs`, the
/// MCP server at `/mcp`, streamable HTTP, and the web app at `/` and `/ui`).
pub fn api_router(lf: LlamaFarm, opts: &HttpOptions) -> Router {
    let state = AppState { lf, opts: Arc::new(opts.clone()), started: Instant::now() };
    let (router, mut openapi) = api_openapi_router().with_state(state).split_for_parts();
    mcp::tag_operations(&mut openapi);
    let api = with_common_layers(router.merge(docs::docs_router(openapi.clone(), "LlamaFarm API")).merge(web::router()), opts);
    let public = opts.public_url.as_deref().and_then(|u| u.split("://").nth(1)).map(|h| h.trim_end_matches('/').to_string());
    outer(api.clone().nest_service("/mcp", mcp::service(&openapi, api, public)), opts, false)
}

/// The layers in front of routing: a trailing slash is trimmed (`/v1/projects/ns/`
/// answers as `/v1/projects/ns`, as the original's FastAPI server does), the API key is
/// checked (every route, `/mcp` included), then the client's rate and the request's
/// time limit ([`limits`]).
fn outer(router: Router, opts: &HttpOptions, runtime: bool) -> Router {
    let keys = auth::Keys(Arc::new(opts.api_keys.clone()));
    let mut router = router;
    if let Some(limit) = opts.request_timeout {
        router = router.layer(axum::middleware::from_fn_with_state(limit, limits::time_limit));
    }
    if let Some(limiter) = opts.rate_limit.and_then(limits::Limiter::new) {
        router = router.layer(axum::middleware::from_fn_with_state(limiter, limits::rate_limit));
    }
    let guarded = router.layer(axum::middleware::from_fn_with_state((keys, runtime), auth::require_key));
    let counted = guarded.layer(axum::middleware::from_fn_with_state(if runtime { "runtime" } else { "api" }, metrics::track));
    Router::new().fallback_service(tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash().layer(counted))
}

/// The Universal Runtime router (OpenAI-compatible model endpoints).
pub fn runtime_router(lf: LlamaFarm, opts: &HttpOptions) -> Router {
    let state = AppState { lf, opts: Arc::new(opts.clone()), started: Instant::now() };
    let (router, openapi) = runtime_openapi_router().with_state(state).split_for_parts();
    let router = router.merge(docs::docs_router(openapi, "LlamaFarm Universal Runtime"));
    outer(with_common_layers(router, opts), opts, true)
}

/// The OpenAPI document of the LlamaFarm API, generated from the handlers (the
/// operations offered over MCP carry the `mcp` tag).
pub fn api_openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_openapi_router().into_openapi();
    mcp::tag_operations(&mut doc);
    doc
}

fn api_openapi_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::base_doc("LlamaFarm API", "Projects, datasets, RAG, chat and ML for local AI apps."))
        .routes(utoipa_axum::routes!(metrics::metrics))
        .merge(routes::system::router())
        .merge(routes::projects::router())
        .merge(routes::rag::router())
        .merge(routes::datasets::router())
        .merge(routes::chat::router())
        .merge(routes::ml_classifier::router())
        .merge(routes::ml_anomaly::router())
        .merge(routes::vision::router())
        .merge(routes::models::router())
        .merge(routes::examples::router())
        .merge(routes::internal::router())
}

fn runtime_openapi_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::base_doc(
        "LlamaFarm Universal Runtime",
        "OpenAI-compatible model endpoints served from the same process as the LlamaFarm API.",
    ))
    .routes(utoipa_axum::routes!(metrics::metrics))
    .merge(routes::runtime::router())
    .merge(routes::chat::runtime_router())
    .merge(routes::ml_classifier::runtime_router())
    .merge(routes::ml_anomaly::runtime_router())
    .merge(routes::vision::runtime_router())
}

fn with_common_layers(router: Router, opts: &HttpOptions) -> Router {
    let cors = if opts.cors_origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(Any).allow_methods(Any).allow_headers(Any).expose_headers(Any)
    } else {
        let origins: Vec<HeaderValue> = opts.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
            .allow_headers(Any)
            .expose_headers(Any)
            .max_age(Duration::from_secs(600))
    };
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let id = req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-").to_string();
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
    });
    router
        .route_layer(axum::middleware::from_fn(metrics::mark_route))
        .fallback(routes::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(opts.body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(opts.body_limit, limits::body_limit))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::from_fn(error::log_failures))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
