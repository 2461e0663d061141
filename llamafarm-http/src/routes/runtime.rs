//! The Universal Runtime listener (default port 11540). Model endpoints join it
//! as their engines land; it shares the library instance with the main API.

use crate::error::Json;
use crate::AppState;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(runtime_health))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RuntimeHealth {
    status: String,
    version: String,
    /// Models found in the local model cache.
    cached_models: Vec<String>,
    simd: Vec<&'static str>,
}

/// Runtime health.
#[utoipa::path(get, path = "/health", tag = "runtime", responses((status = 200, body = RuntimeHealth)))]
async fn runtime_health(State(st): State<AppState>) -> Json<RuntimeHealth> {
    let lf = st.lf.clone();
    let cached_models = tokio::task::spawn_blocking(move || lf.models().list().into_iter().map(|m| m.id).collect())
        .await
        .unwrap_or_default();
    Json(RuntimeHealth {
        status: "healthy".into(),
        version: llamafarm_core::system::VERSION.into(),
        cached_models,
        simd: llamafarm_core::system::simd_features(),
    })
}
