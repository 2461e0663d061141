//! Errors as `{"detail": "...", "code": "..."}` responses.
//!
//! [`ApiError`] wraps the core error. Its status and stable code come from one
//! table, [`Code`] (one line per code), and [`code_for`] maps every core error
//! variant onto it with no wildcard arm, so a new variant fails to compile until
//! it has a code. Axum's own rejections go through the extractors below, and
//! [`json_errors`] turns any other non-JSON error response (404 route, 405 method,
//! 413 body limit, panics) into the same shape.
//!
//! A 500 never shows its cause: the body says `internal error; request id <id>`,
//! and [`log_failures`], a middleware, writes the full error to the log with that
//! request id. No body names a server path.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use llamafarm_core::{Error, ErrorKind, ResourceKind};
use serde::Serialize;

/// The error body of every failed request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub detail: String,
    /// What went wrong, for a program: a stable snake_case code (`project_not_found`, `invalid_field`, ...).
    pub code: String,
    /// The request's `x-request-id`, on 500 responses (the log has the cause under it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

macro_rules! make_error_codes {
    ($($(#[$doc:meta])* $name:ident => $status:ident, $code:literal;)*) => {
        /// Every error code the API answers with, each with its one status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $name,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The HTTP status of this code.
            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$name => StatusCode::$status,)*
                }
            }

            /// The stable snake_case string in the `code` field.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => $code,)*
                }
            }
        }
    };
}

make_error_codes! {
    /// A name or id that cannot name a resource.
    InvalidName => BAD_REQUEST, "invalid_name";
    /// No API key, or an unknown one (the server has keys configured).
    Unauthorized => UNAUTHORIZED, "unauthorized";
    /// The API key may not make this request (a namespace or read-only limit).
    Forbidden => FORBIDDEN, "forbidden";
    /// A malformed request (a 400 with no finer code).
    BadRequest => BAD_REQUEST, "bad_request";
    /// A path parameter of the wrong shape.
    InvalidPath => BAD_REQUEST, "invalid_path";
    /// A query parameter of the wrong shape.
    InvalidQuery => BAD_REQUEST, "invalid_query";
    /// No such project.
    ProjectNotFound => NOT_FOUND, "project_not_found";
    /// No such namespace.
    NamespaceNotFound => NOT_FOUND, "namespace_not_found";
    /// No such dataset.
    DatasetNotFound => NOT_FOUND, "dataset_not_found";
    /// No such RAG database.
    DatabaseNotFound => NOT_FOUND, "database_not_found";
    /// No such file in a dataset.
    FileNotFound => NOT_FOUND, "file_not_found";
    /// No such model.
    ModelNotFound => NOT_FOUND, "model_not_found";
    /// No such task.
    TaskNotFound => NOT_FOUND, "task_not_found";
    /// No such chat session.
    SessionNotFound => NOT_FOUND, "session_not_found";
    /// No such event.
    EventNotFound => NOT_FOUND, "event_not_found";
    /// No such data processing strategy.
    StrategyNotFound => NOT_FOUND, "strategy_not_found";
    /// No such retrieval strategy.
    RetrievalStrategyNotFound => NOT_FOUND, "retrieval_strategy_not_found";
    /// No such parser.
    ParserNotFound => NOT_FOUND, "parser_not_found";
    /// No such classifier.
    ClassifierNotFound => NOT_FOUND, "classifier_not_found";
    /// No such anomaly model.
    AnomalyModelNotFound => NOT_FOUND, "anomaly_model_not_found";
    /// No example project of that id.
    ExampleNotFound => NOT_FOUND, "example_not_found";
    /// Something else that does not exist.
    NotFound => NOT_FOUND, "not_found";
    /// No route for the path.
    RouteNotFound => NOT_FOUND, "route_not_found";
    /// The route exists, the method does not.
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed";
    /// A project of that name exists.
    ProjectAlreadyExists => CONFLICT, "project_already_exists";
    /// A dataset of that name exists.
    DatasetAlreadyExists => CONFLICT, "dataset_already_exists";
    /// A database of that name exists.
    DatabaseAlreadyExists => CONFLICT, "database_already_exists";
    /// Something else of that name exists.
    AlreadyExists => CONFLICT, "already_exists";
    /// Other resources depend on it.
    ResourceInUse => CONFLICT, "resource_in_use";
    /// The operation was cancelled.
    Cancelled => CONFLICT, "cancelled";
    /// The request clashes with the current state.
    Conflict => CONFLICT, "conflict";
    /// The body or an upload is over the limit.
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "payload_too_large";
    /// The configuration breaks schema rules (the detail lists each).
    InvalidConfig => UNPROCESSABLE_ENTITY, "invalid_config";
    /// A field's value breaks a rule.
    InvalidField => UNPROCESSABLE_ENTITY, "invalid_field";
    /// The request is not acceptable (a 422 with no finer code).
    InvalidRequest => UNPROCESSABLE_ENTITY, "invalid_request";
    /// The body is not valid JSON.
    InvalidJson => UNPROCESSABLE_ENTITY, "invalid_json";
    /// YAML or JSON content that could not be parsed.
    Unparsable => UNPROCESSABLE_ENTITY, "unparsable";
    /// The request did not finish within the server's time limit.
    RequestTimeout => REQUEST_TIMEOUT, "request_timeout";
    /// This client sent more requests than its rate allows (`Retry-After` says when to retry).
    RateLimited => TOO_MANY_REQUESTS, "rate_limited";
    /// The model has as many generations running and queued as allowed (`Retry-After` says when to retry).
    Busy => TOO_MANY_REQUESTS, "busy";
    /// A configured model whose weights are not on this machine.
    ModelMissing => SERVICE_UNAVAILABLE, "model_missing";
    /// A dependency that is down or not built in.
    ServiceUnavailable => SERVICE_UNAVAILABLE, "service_unavailable";
    /// The disk of the data directory is full; nothing was written, retry once space is freed.
    StorageFull => INSUFFICIENT_STORAGE, "storage_full";
    /// A failure on our side; the log has the cause.
    Internal => INTERNAL_SERVER_ERROR, "internal";
}

impl Code {
    /// The generic code of a status, for errors that carry only a status.
    pub fn for_status(status: StatusCode) -> Code {
        match status {
            StatusCode::BAD_REQUEST => Code::BadRequest,
            StatusCode::UNAUTHORIZED => Code::Unauthorized,
            StatusCode::FORBIDDEN => Code::Forbidden,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
            StatusCode::CONFLICT => Code::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => Code::RequestTimeout,
            StatusCode::TOO_MANY_REQUESTS => Code::RateLimited,
            StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidRequest,
            StatusCode::SERVICE_UNAVAILABLE => Code::ServiceUnavailable,
            StatusCode::INSUFFICIENT_STORAGE => Code::StorageFull,
            s if s.is_client_error() => Code::BadRequest,
            _ => Code::Internal,
        }
    }
}

/// The code of a core error (exhaustive: a new variant needs a line here).
pub fn code_for(e: &Error) -> Code {
    match e {
        Error::InvalidName { .. } => Code::InvalidName,
        Error::NotFound { kind, .. } => match kind {
            ResourceKind::Project => Code::ProjectNotFound,
            ResourceKind::Namespace => Code::NamespaceNotFound,
            ResourceKind::Dataset => Code::DatasetNotFound,
            ResourceKind::Database => Code::DatabaseNotFound,
            ResourceKind::File => Code::FileNotFound,
            ResourceKind::Model => Code::ModelNotFound,
            ResourceKind::Task => Code::TaskNotFound,
            ResourceKind::Session => Code::SessionNotFound,
            ResourceKind::Event => Code::EventNotFound,
            ResourceKind::Strategy => Code::StrategyNotFound,
            ResourceKind::RetrievalStrategy => Code::RetrievalStrategyNotFound,
            ResourceKind::Parser => Code::ParserNotFound,
            ResourceKind::Classifier => Code::ClassifierNotFound,
            ResourceKind::AnomalyModel => Code::AnomalyModelNotFound,
            ResourceKind::Example => Code::ExampleNotFound,
            ResourceKind::Other => Code::NotFound,
        },
        Error::AlreadyExists { kind, .. } => match kind {
            ResourceKind::Project => Code::ProjectAlreadyExists,
            ResourceKind::Dataset => Code::DatasetAlreadyExists,
            ResourceKind::Database => Code::DatabaseAlreadyExists,
            _ => Code::AlreadyExists,
        },
        Error::InUse { .. } => Code::ResourceInUse,
        Error::Cancelled => Code::Cancelled,
        Error::TooLarge { .. } => Code::PayloadTooLarge,
        Error::Validation(_) => Code::InvalidConfig,
        Error::InvalidField { .. } => Code::InvalidField,
        Error::Parse { .. } => Code::Unparsable,
        Error::ModelMissing { .. } => Code::ModelMissing,
        Error::NotAvailable { .. } => Code::ServiceUnavailable,
        Error::Busy { .. } => Code::Busy,
        Error::StorageFull { .. } => Code::StorageFull,
        Error::Io { .. } | Error::Internal(_) => Code::Internal,
    }
}

/// The full text of a failed request's cause, carried in the response's extensions
/// from the handler to [`log_failures`], which logs it. It never reaches the body.
#[derive(Debug, Clone)]
pub struct FailureCause(pub String);

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Code,
    detail: String,
    cause: Option<String>,
    /// Seconds for a `Retry-After` header (429 answers).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status (its code is the status's generic one).
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, code: Code::for_status(status), detail: detail.into(), cause: None, retry_after: None }
    }
    /// An error with a code from the table (the status is the code's).
    pub fn with_code(code: Code, detail: impl Into<String>) -> Self {
        Self { status: code.status(), code, detail: detail.into(), cause: None, retry_after: None }
    }
    /// With a `Retry-After: secs` header.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The stable code.
    pub fn code(&self) -> Code {
        self.code
    }
    /// The detail text that the body carries (for a 500, a generic one).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// The status code for each kind of core error.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The detail of every 500 before [`log_failures`] adds the request id.
const INTERNAL_DETAIL: &str = "internal error";

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = code_for(&e);
        let retry_after = match &e {
            Error::Busy { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        };
        if code.status() == StatusCode::INTERNAL_SERVER_ERROR {
            Self { status: code.status(), code, detail: INTERNAL_DETAIL.into(), cause: Some(e.to_string()), retry_after }
        } else {
            Self { status: code.status(), code, detail: e.to_string(), cause: None, retry_after }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match &r {
            // FastAPI (the original) answers body errors with 422; keep that.
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            other => other.status(),
        };
        let detail = match &r {
            JsonRejection::JsonDataError(e) => {
                format!("Invalid request body: {}", e.body_text().trim_start_matches("Failed to deserialize the JSON body into the target type: "))
            }
            JsonRejection::JsonSyntaxError(e) => format!("Invalid JSON: {}", e.body_text().trim_start_matches("Failed to parse the request body as JSON: ")),
            JsonRejection::MissingJsonContentType(_) => "Expected request with `Content-Type: application/json`".to_string(),
            other => other.body_text(),
        };
        let code = match &r {
            JsonRejection::JsonSyntaxError(_) => Code::InvalidJson,
            _ => Code::for_status(status),
        };
        Self { status, code, detail, cause: None, retry_after: None }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::with_code(Code::InvalidPath, format!("Invalid path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::with_code(Code::InvalidQuery, format!("Invalid query: {}", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let internal = self.status == StatusCode::INTERNAL_SERVER_ERROR;
        let (detail, cause) = if internal { (INTERNAL_DETAIL.to_string(), Some(self.cause.unwrap_or(self.detail))) } else { (self.detail, None) };
        let body = ErrorBody { detail, code: self.code.as_str().into(), request_id: None };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cause) = cause {
            resp.extensions_mut().insert(FailureCause(cause));
        }
        resp
    }
}

/// `Result` for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// `axum::Json` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Middleware body: an error response that is not JSON (a 404 for an unknown
/// route, a 405, a 413 from the body limit, a caught panic) becomes `{"detail"}`.
pub async fn json_errors(resp: Response<Body>) -> Response<Body> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".to_string(),
        StatusCode::INTERNAL_SERVER_ERROR if text.is_empty() || text.contains("panic") => "Internal server error".to_string(),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("Error").to_string(),
        _ => text,
    };
    let code = if status == StatusCode::NOT_FOUND { Code::RouteNotFound } else { Code::for_status(status) };
    let body = serde_json::to_vec(&ErrorBody { detail, code: code.as_str().into(), request_id: None }).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The response for a handler that panicked: a 500 whose body [`log_failures`]
/// writes, with the panic message in the log only.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let msg = err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into());
    let body = ErrorBody { detail: INTERNAL_DETAIL.into(), code: Code::Internal.as_str().into(), request_id: None };
    let mut resp = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.extensions_mut().insert(FailureCause(format!("handler panicked: {msg}")));
    resp
}

/// Middleware: every 500 leaves with `{"detail": "internal error; request id <id>",
/// "code": "internal", "request_id": "<id>"}` whatever its body was, and its cause
/// (the [`FailureCause`] extension, else the body it had) goes to the log with the
/// request id. Runs inside the layer that sets `x-request-id`.
pub async fn log_failures(req: axum::extract::Request, next: axum::middleware::Next) -> Response<Body> {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    if resp.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let cause = match parts.extensions.remove::<FailureCause>() {
        Some(FailureCause(c)) => c,
        None => String::from_utf8_lossy(&axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default()).into_owned(),
    };
    tracing::error!(request_id = %id, %method, %path, error = %cause, "request failed");
    let body = ErrorBody { detail: format!("{INTERNAL_DETAIL}; request id {id}"), code: Code::Internal.as_str().into(), request_id: Some(id) };
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(serde_json::to_vec(&body).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::collections::HashSet;
    use tower::ServiceExt;

    #[test]
    fn every_kind_has_its_status() {
        use ErrorKind::*;
        let got: Vec<u16> = [BadRequest, NotFound, Conflict, PayloadTooLarge, Invalid, Unavailable, Busy, StorageFull, Internal]
            .into_iter()
            .map(|k| status_for(k).as_u16())
            .collect();
        assert_eq!(got, vec![400, 404, 409, 413, 422, 503, 429, 507, 500]);
        let e = ApiError::from(Error::ModelMissing { model: "m".into(), reason: "gone".into(), fetch_hint: "scripts/fetch-models.sh".into() });
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), Code::ModelMissing);
        assert!(e.detail().contains("scripts/fetch-models.sh"));
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {}", c.as_str());
            assert!(c.as_str().chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'), "{}", c.as_str());
        }
        assert_eq!(seen.len(), Code::ALL.len());
    }

    fn samples() -> Vec<Error> {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        vec![
            Error::InvalidName { kind: ResourceKind::Project, name: "..".into(), reason: "must not contain '..'".into() },
            Error::missing(ResourceKind::Project, "acme/demo"),
            Error::missing(ResourceKind::Dataset, "docs"),
            Error::missing_in(ResourceKind::File, "ab12", "in dataset 'docs'"),
            Error::missing(ResourceKind::Classifier, "x"),
            Error::missing_in(ResourceKind::Other, "Array 'x'", "in a.npz"),
            Error::exists(ResourceKind::Project, "acme/demo"),
            Error::exists(ResourceKind::Session, "s"),
            Error::InUse { kind: ResourceKind::Database, name: "main".into(), dependent_kind: ResourceKind::Dataset, dependents: vec!["d".into()] },
            Error::Cancelled,
            Error::TooLarge { what: "file 'a.pdf'".into(), limit: 10 },
            Error::validation("rag.databases[0].name", "must match ^[a-z][a-z0-9_]*$"),
            Error::invalid("top_k", "must be at least 1, got 0"),
            Error::Parse { what: "llamafarm.yaml".into(), message: "line 1".into() },
            Error::ModelMissing { model: "m".into(), reason: "gone".into(), fetch_hint: "scripts/fetch-models.sh".into() },
            Error::unavailable("chat endpoint http://x", "unreachable"),
            Error::io("/srv/secret/data/projects/a", io()),
            Error::internal("bug at /srv/secret"),
        ]
    }

    #[test]
    fn each_error_gets_the_status_of_its_kind_and_distinct_not_found_codes() {
        for e in samples() {
            let kind = e.kind();
            let a = ApiError::from(e);
            assert_eq!(a.status(), status_for(kind), "{a:?}");
        }
        let p = ApiError::from(Error::missing(ResourceKind::Project, "a/b"));
        let d = ApiError::from(Error::missing(ResourceKind::Dataset, "x"));
        assert_eq!((p.code().as_str(), d.code().as_str()), ("project_not_found", "dataset_not_found"));
    }

    #[test]
    fn a_full_disk_is_507_naming_the_file_not_its_path() {
        let a = ApiError::from(Error::io("/srv/secret/data/incoming/x.part", std::io::Error::from_raw_os_error(28)));
        assert_eq!((a.status().as_u16(), a.code()), (507, Code::StorageFull));
        assert!(a.detail().contains("'x.part'") && a.detail().contains("disk space") && !a.detail().contains("/srv"), "{}", a.detail());
        let a = ApiError::from(Error::io("/srv/q", std::io::Error::from(std::io::ErrorKind::QuotaExceeded)));
        assert_eq!(a.status().as_u16(), 507);
    }

    #[test]
    fn io_and_internal_details_name_no_path() {
        for e in [Error::io("/srv/secret/data/projects/a", std::io::Error::other("disk on fire")), Error::internal("bug at /srv/secret")] {
            let a = ApiError::from(e);
            assert_eq!(a.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(a.code(), Code::Internal);
            assert!(!a.detail().contains("/srv") && !a.detail().contains("fire"), "{}", a.detail());
        }
    }

    async fn call(app: &axum::Router, uri: &str) -> (u16, serde_json::Value) {
        let req = axum::http::Request::get(uri).header("x-request-id", "req-42").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn app() -> axum::Router {
        axum::Router::new()
            .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
            .route("/boom", get(|| async { panic!("kaboom at /srv/secret") as &'static str }))
            .route("/io", get(|| async { Err::<(), ApiError>(Error::io("/srv/secret/x.json", std::io::Error::other("EIO")).into()) }))
            .route("/project", get(|| async { Err::<(), ApiError>(Error::missing(ResourceKind::Project, "acme/demo").into()) }))
            .route("/dup", get(|| async { Err::<(), ApiError>(Error::exists(ResourceKind::Dataset, "docs").into()) }))
            .route("/invalid", get(|| async { Err::<(), ApiError>(Error::invalid("top_k", "must be at least 1, got 0").into()) }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::map_response(json_errors))
            .layer(axum::middleware::from_fn(log_failures))
    }

    #[tokio::test]
    async fn client_errors_carry_detail_and_code() {
        let app = app();
        assert_eq!(call(&app, "/teapot").await, (418, serde_json::json!({"detail": "short and stout", "code": "bad_request"})));
        assert_eq!(call(&app, "/project").await, (404, serde_json::json!({"detail": "Project acme/demo not found", "code": "project_not_found"})));
        assert_eq!(call(&app, "/dup").await, (409, serde_json::json!({"detail": "Dataset 'docs' already exists", "code": "dataset_already_exists"})));
        assert_eq!(call(&app, "/invalid").await, (422, serde_json::json!({"detail": "top_k must be at least 1, got 0", "code": "invalid_field"})));
        assert_eq!(call(&app, "/nowhere").await.1["code"], "route_not_found");
    }

    #[tokio::test]
    async fn server_errors_answer_generically_with_the_request_id() {
        let app = app();
        for uri in ["/boom", "/io"] {
            let (status, v) = call(&app, uri).await;
            assert_eq!(status, 500);
            assert_eq!(v, serde_json::json!({"detail": "internal error; request id req-42", "code": "internal", "request_id": "req-42"}), "{uri}");
        }
    }
}
