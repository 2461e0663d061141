//! Errors as `{"detail": "..."}` responses.
//!
//! [`ApiError`] wraps the core error; its status comes from an exhaustive match on
//! [`ErrorKind`] (no wildcard arm: a new kind fails to compile until it is mapped).
//! Axum's own rejections go through the extractors below, and [`json_errors`]
//! turns any other non-JSON error response (404 route, 405 method, 413 body limit,
//! panics) into the same shape.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use llamafarm_core::{Error, ErrorKind};
use serde::Serialize;

/// The error body of every failed request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub detail: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The detail text.
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
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_for(e.kind());
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        Self { status, detail: e.to_string() }
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
            JsonRejection::JsonDataError(e) => format!("Invalid request body: {}", e.body_text().trim_start_matches("Failed to deserialize the JSON body into the target type: ")),
            JsonRejection::JsonSyntaxError(e) => format!("Invalid JSON: {}", e.body_text().trim_start_matches("Failed to parse the request body as JSON: ")),
            JsonRejection::MissingJsonContentType(_) => "Expected request with `Content-Type: application/json`".to_string(),
            other => other.body_text(),
        };
        Self { status, detail }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self { status: StatusCode::BAD_REQUEST, detail: format!("Invalid path: {}", r.body_text()) }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self { status: StatusCode::BAD_REQUEST, detail: format!("Invalid query: {}", r.body_text()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let mut resp = (self.status, axum::Json(ErrorBody { detail: self.detail })).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
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
    let body = serde_json::to_vec(&ErrorBody { detail }).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The response for a handler that panicked: a 500 with `{"detail"}`, and a log line.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %msg, "handler panicked");
    let body = serde_json::to_vec(&ErrorBody { detail: "Internal server error".into() }).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[test]
    fn every_kind_has_its_status() {
        use ErrorKind::*;
        let got: Vec<u16> = [BadRequest, NotFound, Conflict, PayloadTooLarge, Invalid, Unavailable, Internal]
            .into_iter()
            .map(|k| status_for(k).as_u16())
            .collect();
        assert_eq!(got, vec![400, 404, 409, 413, 422, 503, 500]);
        let e = ApiError::from(Error::ModelMissing { model: "m".into(), reason: "gone".into(), fetch_hint: "scripts/fetch-models.sh".into() });
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.detail().contains("scripts/fetch-models.sh"));
    }

    #[tokio::test]
    async fn plain_text_errors_become_json_detail() {
        let app = axum::Router::new()
            .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
            .route("/boom", get(|| async { panic!("kaboom") as &'static str }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::map_response(json_errors));
        for (uri, status, detail) in [("/teapot", 418, "short and stout"), ("/boom", 500, "Internal server error")] {
            let resp = app.clone().oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v, serde_json::json!({"detail": detail}));
        }
    }
}
