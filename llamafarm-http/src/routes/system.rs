//! `/`, `/health`, `/health/liveness`, `/info`, `/v1/system/*`.

use super::call;
use crate::dto::system::{DiskResponse, HealthReportDto, InfoResponse, InstallHints, Liveness, RootResponse, ServerDetails, VersionCheck};
use crate::error::{ApiResult, ErrorBody, Json};
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use llamafarm_core::system::VERSION;
use llamafarm_core::{health, HealthReport, HealthStatus};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(health_check))
        .routes(routes!(liveness))
        .routes(routes!(info))
        .routes(routes!(disk))
        .routes(routes!(version_check))
}

/// Hello endpoint. A browser (`Accept: text/html`) gets the web app instead.
#[utoipa::path(get, path = "/", tag = "system", responses((status = 200, body = RootResponse)))]
async fn root(req: Request) -> Response {
    if crate::web::wants_html(req.headers()) {
        return crate::web::shell(&req);
    }
    Json(RootResponse { message: "LlamaFarm API".into(), version: VERSION.into(), docs: "/docs".into() }).into_response()
}

/// Health of every component, with measured latency. A missing model is `degraded`.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "Health report", body = HealthReportDto)))]
async fn health_check(State(st): State<AppState>) -> ApiResult<Json<HealthReportDto>> {
    let mut report = call(&st, |lf| Ok(lf.health())).await?;
    let server = health::timed("server", || {
        let details = ServerDetails {
            pid: std::process::id(),
            host: st.opts.public_url.clone(),
            uptime_s: st.started.elapsed().as_secs_f64(),
            simd: llamafarm_core::system::simd_features(),
            embedding_kernels: llamafarm_core::system::embedding_kernels(),
        };
        (HealthStatus::Healthy, "API process responding".into(), serde_json::to_value(details).ok())
    });
    report.components.insert(0, server);
    Ok(Json(HealthReport::from_components(report.components).into()))
}

/// Liveness probe.
#[utoipa::path(get, path = "/health/liveness", tag = "health", responses((status = 200, body = Liveness)))]
async fn liveness() -> Json<Liveness> {
    Json(Liveness { status: "alive".into() })
}

/// Version and data directory.
#[utoipa::path(get, path = "/info", tag = "system", responses((status = 200, body = InfoResponse)))]
async fn info(State(st): State<AppState>) -> Json<InfoResponse> {
    Json(InfoResponse {
        version: VERSION.into(),
        data_directory: st.lf.data_dir().display().to_string(),
        model_cache_directory: st.lf.models().hub_dir().display().to_string(),
    })
}

/// Disk space of the model cache, the data directory and the root filesystem.
#[utoipa::path(get, path = "/v1/system/disk", tag = "system",
    responses((status = 200, body = DiskResponse), (status = 500, body = ErrorBody)))]
async fn disk(State(st): State<AppState>) -> ApiResult<Json<DiskResponse>> {
    Ok(Json(call(&st, |lf| lf.disk_report()).await?.into()))
}

/// Check for a newer version. llamafarm-rs makes no network calls of its own, so this
/// answers at once with the current version and an `unknown` status.
#[utoipa::path(get, path = "/v1/system/version-check", tag = "system", responses((status = 200, body = VersionCheck)))]
async fn version_check() -> (StatusCode, Json<VersionCheck>) {
    (
        StatusCode::OK,
        Json(VersionCheck {
            current_version: VERSION.into(),
            latest_version: None,
            status: "unknown".into(),
            message: "could not check for updates: llamafarm-rs runs offline and makes no network calls; \
                      compare with `cargo search llamafarm-cli` when online"
                .into(),
            from_cache: false,
            install: InstallHints { cargo: "cargo install llamafarm-cli".into() },
        }),
    )
}
