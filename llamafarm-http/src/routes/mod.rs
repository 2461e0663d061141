//! Handlers, one module per section of the API reference.

pub(crate) mod chat;
pub(crate) mod datasets;
pub(crate) mod examples;
pub(crate) mod internal;
pub(crate) mod ml_anomaly;
pub(crate) mod ml_classifier;
pub(crate) mod models;
pub(crate) mod projects;
pub(crate) mod rag;
pub(crate) mod runtime;
pub(crate) mod system;
pub(crate) mod vision;

use crate::error::{ApiError, Code};
use crate::AppState;
use axum::http::{StatusCode, Uri};
use llamafarm_core::LlamaFarm;

/// Fallback for unknown routes: 404 `{"detail": "Not Found: /path", "code": "route_not_found"}`.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::with_code(Code::RouteNotFound, format!("Not Found: {}", uri.path()))
}

/// Run blocking core work (filesystem, model loading) off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> llamafarm_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("task failed: {e}"))),
    }
}

/// Run one piece of blocking core work with the library handle, off the async threads:
/// `call(&st, move |lf| lf.project(&ns, &p)?.datasets().list(true)).await?`.
pub(crate) async fn call<T, F>(st: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(LlamaFarm) -> llamafarm_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let lf = st.lf.clone();
    blocking(move || f(lf)).await
}
