//! `/v1/ml/anomaly/*` on the API and the same handlers as `/v1/anomaly/*` on the
//! runtime listener. Fitting and scoring run on the blocking pool.

use super::blocking;
use crate::dto::ml_anomaly::{
    AnomalyDeleteResponse, AnomalyDetectResponse, AnomalyFitRequest, AnomalyFitResponse, AnomalyModelList, AnomalyModelRef, AnomalySaveResponse,
    AnomalyScoreRequest, AnomalyScoreResponse, BackendList,
};
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes on the LlamaFarm API (`/v1/ml/anomaly/*`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fit))
        .routes(routes!(score))
        .routes(routes!(detect))
        .routes(routes!(save))
        .routes(routes!(load))
        .routes(routes!(models))
        .routes(routes!(delete_model))
        .routes(routes!(backends))
}

/// Routes on the Universal Runtime listener (`/v1/anomaly/*`).
pub(crate) fn runtime_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rt_fit))
        .routes(routes!(rt_score))
        .routes(routes!(rt_detect))
        .routes(routes!(rt_save))
        .routes(routes!(rt_load))
        .routes(routes!(rt_models))
        .routes(routes!(rt_delete_model))
        .routes(routes!(rt_backends))
}

async fn do_fit(st: AppState, req: AnomalyFitRequest) -> ApiResult<Json<AnomalyFitResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().anomaly().fit(&req.model, &req.data, &req.options())?.into()))).await
}
async fn do_score(st: AppState, req: AnomalyScoreRequest) -> ApiResult<Json<AnomalyScoreResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().anomaly().score(&req.model_ref(), &req.data, &req.options())?.into()))).await
}
async fn do_detect(st: AppState, req: AnomalyScoreRequest) -> ApiResult<Json<AnomalyDetectResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().anomaly().detect(&req.model_ref(), &req.data, &req.options())?.into()))).await
}
async fn do_save(st: AppState, req: AnomalyModelRef) -> ApiResult<Json<AnomalySaveResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(AnomalySaveResponse::saved(lf.ml().anomaly().save(&req.into())?)))).await
}
async fn do_load(st: AppState, req: AnomalyModelRef) -> ApiResult<Json<AnomalySaveResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(AnomalySaveResponse::loaded(lf.ml().anomaly().load(&req.into())?)))).await
}
async fn do_models(st: AppState) -> ApiResult<Json<AnomalyModelList>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().anomaly().list()?.into()))).await
}
async fn do_delete(st: AppState, filename: String) -> ApiResult<Json<AnomalyDeleteResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().anomaly().delete(&filename)?.into()))).await
}

// ---- main API ----

/// Train an anomaly detector (auto-saved; `overwrite: false` adds a timestamp).
#[utoipa::path(post, path = "/v1/ml/anomaly/fit", tag = "anomaly", operation_id = "anomaly_fit", request_body = AnomalyFitRequest,
    responses((status = 200, body = AnomalyFitResponse), (status = 422, body = ErrorBody)))]
async fn fit(State(st): State<AppState>, Json(req): Json<AnomalyFitRequest>) -> ApiResult<Json<AnomalyFitResponse>> {
    do_fit(st, req).await
}

/// Score every data point (`{name}-latest` allowed).
#[utoipa::path(post, path = "/v1/ml/anomaly/score", tag = "anomaly", operation_id = "anomaly_score", request_body = AnomalyScoreRequest,
    responses((status = 200, body = AnomalyScoreResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn score(State(st): State<AppState>, Json(req): Json<AnomalyScoreRequest>) -> ApiResult<Json<AnomalyScoreResponse>> {
    do_score(st, req).await
}

/// Score and return only the anomalous points.
#[utoipa::path(post, path = "/v1/ml/anomaly/detect", tag = "anomaly", operation_id = "anomaly_detect", request_body = AnomalyScoreRequest,
    responses((status = 200, body = AnomalyDetectResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn detect(State(st): State<AppState>, Json(req): Json<AnomalyScoreRequest>) -> ApiResult<Json<AnomalyDetectResponse>> {
    do_detect(st, req).await
}

/// Write a fitted model to `{data}/models/anomaly/`.
#[utoipa::path(post, path = "/v1/ml/anomaly/save", tag = "anomaly", operation_id = "anomaly_save", request_body = AnomalyModelRef,
    responses((status = 200, body = AnomalySaveResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn save(State(st): State<AppState>, Json(req): Json<AnomalyModelRef>) -> ApiResult<Json<AnomalySaveResponse>> {
    do_save(st, req).await
}

/// Load a stored model (`{name}-latest` allowed).
#[utoipa::path(post, path = "/v1/ml/anomaly/load", tag = "anomaly", operation_id = "anomaly_load", request_body = AnomalyModelRef,
    responses((status = 200, body = AnomalySaveResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn load(State(st): State<AppState>, Json(req): Json<AnomalyModelRef>) -> ApiResult<Json<AnomalySaveResponse>> {
    do_load(st, req).await
}

/// Stored anomaly models, newest first.
#[utoipa::path(get, path = "/v1/ml/anomaly/models", tag = "anomaly", operation_id = "anomaly_models",
    responses((status = 200, body = AnomalyModelList)))]
async fn models(State(st): State<AppState>) -> ApiResult<Json<AnomalyModelList>> {
    do_models(st).await
}

/// Delete a stored model by file name (`{name}_{backend}.json`).
#[utoipa::path(delete, path = "/v1/ml/anomaly/models/{filename}", tag = "anomaly", operation_id = "anomaly_delete",
    params(("filename" = String, Path, description = "e.g. sensor_isolation_forest.json")),
    responses((status = 200, body = AnomalyDeleteResponse), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn delete_model(State(st): State<AppState>, Path(filename): Path<String>) -> ApiResult<Json<AnomalyDeleteResponse>> {
    do_delete(st, filename).await
}

/// The available backends with metadata.
#[utoipa::path(get, path = "/v1/ml/anomaly/backends", tag = "anomaly", operation_id = "anomaly_backends",
    responses((status = 200, body = BackendList)))]
async fn backends(State(st): State<AppState>) -> Json<BackendList> {
    Json(st.lf.ml().anomaly().backends().into())
}

// ---- runtime listener: the same handlers under /v1/anomaly ----

/// Train an anomaly detector.
#[utoipa::path(post, path = "/v1/anomaly/fit", tag = "anomaly", operation_id = "runtime_anomaly_fit", request_body = AnomalyFitRequest,
    responses((status = 200, body = AnomalyFitResponse), (status = 422, body = ErrorBody)))]
async fn rt_fit(State(st): State<AppState>, Json(req): Json<AnomalyFitRequest>) -> ApiResult<Json<AnomalyFitResponse>> {
    do_fit(st, req).await
}

/// Score every data point.
#[utoipa::path(post, path = "/v1/anomaly/score", tag = "anomaly", operation_id = "runtime_anomaly_score", request_body = AnomalyScoreRequest,
    responses((status = 200, body = AnomalyScoreResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_score(State(st): State<AppState>, Json(req): Json<AnomalyScoreRequest>) -> ApiResult<Json<AnomalyScoreResponse>> {
    do_score(st, req).await
}

/// Return only the anomalous points.
#[utoipa::path(post, path = "/v1/anomaly/detect", tag = "anomaly", operation_id = "runtime_anomaly_detect", request_body = AnomalyScoreRequest,
    responses((status = 200, body = AnomalyDetectResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_detect(State(st): State<AppState>, Json(req): Json<AnomalyScoreRequest>) -> ApiResult<Json<AnomalyDetectResponse>> {
    do_detect(st, req).await
}

/// Write a fitted model to disk.
#[utoipa::path(post, path = "/v1/anomaly/save", tag = "anomaly", operation_id = "runtime_anomaly_save", request_body = AnomalyModelRef,
    responses((status = 200, body = AnomalySaveResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_save(State(st): State<AppState>, Json(req): Json<AnomalyModelRef>) -> ApiResult<Json<AnomalySaveResponse>> {
    do_save(st, req).await
}

/// Load a stored model.
#[utoipa::path(post, path = "/v1/anomaly/load", tag = "anomaly", operation_id = "runtime_anomaly_load", request_body = AnomalyModelRef,
    responses((status = 200, body = AnomalySaveResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_load(State(st): State<AppState>, Json(req): Json<AnomalyModelRef>) -> ApiResult<Json<AnomalySaveResponse>> {
    do_load(st, req).await
}

/// Stored anomaly models.
#[utoipa::path(get, path = "/v1/anomaly/models", tag = "anomaly", operation_id = "runtime_anomaly_models",
    responses((status = 200, body = AnomalyModelList)))]
async fn rt_models(State(st): State<AppState>) -> ApiResult<Json<AnomalyModelList>> {
    do_models(st).await
}

/// Delete a stored model by file name.
#[utoipa::path(delete, path = "/v1/anomaly/models/{filename}", tag = "anomaly", operation_id = "runtime_anomaly_delete",
    params(("filename" = String, Path, description = "e.g. sensor_isolation_forest.json")),
    responses((status = 200, body = AnomalyDeleteResponse), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn rt_delete_model(State(st): State<AppState>, Path(filename): Path<String>) -> ApiResult<Json<AnomalyDeleteResponse>> {
    do_delete(st, filename).await
}

/// The available backends.
#[utoipa::path(get, path = "/v1/anomaly/backends", tag = "anomaly", operation_id = "runtime_anomaly_backends",
    responses((status = 200, body = BackendList)))]
async fn rt_backends(State(st): State<AppState>) -> Json<BackendList> {
    Json(st.lf.ml().anomaly().backends().into())
}
