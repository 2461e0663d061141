//! `/v1/ml/classifier/*` on the API and the same handlers on the runtime listener
//! (`/v1/classifier/*`), plus the runtime's `/v1/classify`.
//!
//! Fits run in `spawn_blocking` and on the rayon pool, so the async threads keep
//! serving other requests (`/health` included) while a classifier trains.

use super::blocking;
use crate::dto::ml_classifier::{
    ClassifierDeleteResponse, ClassifierFitRequest, ClassifierFitResponse, ClassifierLoadResponse, ClassifierModelList, ClassifierModelRequest,
    ClassifierPredictRequest, ClassifierPredictResponse, ClassifierSaveResponse, ClassifyRequest, ClassifyResponse,
};
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes on the LlamaFarm API (`/v1/ml/classifier/*`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(fit)).routes(routes!(predict)).routes(routes!(save)).routes(routes!(load)).routes(routes!(models)).routes(routes!(delete))
}

/// Routes on the Universal Runtime listener.
pub(crate) fn runtime_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rt_fit))
        .routes(routes!(rt_predict))
        .routes(routes!(rt_save))
        .routes(routes!(rt_load))
        .routes(routes!(rt_models))
        .routes(routes!(rt_delete))
        .routes(routes!(classify))
}

async fn do_fit(st: AppState, req: ClassifierFitRequest) -> ApiResult<Json<ClassifierFitResponse>> {
    let lf = st.lf.clone();
    let (model, examples, opts) = req.into_parts();
    blocking(move || Ok(Json(lf.ml().classifier().fit(&model, &examples, &opts)?.into()))).await
}
async fn do_predict(st: AppState, req: ClassifierPredictRequest) -> ApiResult<Json<ClassifierPredictResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().classifier().predict(&req.model, &req.texts)?.into()))).await
}
async fn do_save(st: AppState, req: ClassifierModelRequest) -> ApiResult<Json<ClassifierSaveResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().classifier().save(&req.model, req.description.as_deref())?.into()))).await
}
async fn do_load(st: AppState, req: ClassifierModelRequest) -> ApiResult<Json<ClassifierLoadResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().classifier().load(&req.model)?.into()))).await
}
async fn do_models(st: AppState) -> ApiResult<Json<ClassifierModelList>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().classifier().list()?.into()))).await
}
async fn do_delete(st: AppState, name: String) -> ApiResult<Json<ClassifierDeleteResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(ClassifierDeleteResponse::deleted(lf.ml().classifier().delete(&name)?)))).await
}

/// Train a SetFit few-shot text classifier (contrastive fine-tuning + logistic head); auto-saved.
#[utoipa::path(post, path = "/v1/ml/classifier/fit", tag = "ml", operation_id = "classifier_fit",
    request_body = ClassifierFitRequest,
    responses((status = 200, body = ClassifierFitResponse), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn fit(State(st): State<AppState>, Json(req): Json<ClassifierFitRequest>) -> ApiResult<Json<ClassifierFitResponse>> {
    do_fit(st, req).await
}

/// Classify texts with a trained classifier (`{name}-latest` picks the newest version).
#[utoipa::path(post, path = "/v1/ml/classifier/predict", tag = "ml", operation_id = "classifier_predict",
    request_body = ClassifierPredictRequest,
    responses((status = 200, body = ClassifierPredictResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn predict(State(st): State<AppState>, Json(req): Json<ClassifierPredictRequest>) -> ApiResult<Json<ClassifierPredictResponse>> {
    do_predict(st, req).await
}

/// Save a classifier (weights are saved by fit; this stores the description).
#[utoipa::path(post, path = "/v1/ml/classifier/save", tag = "ml", operation_id = "classifier_save",
    request_body = ClassifierModelRequest,
    responses((status = 200, body = ClassifierSaveResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn save(State(st): State<AppState>, Json(req): Json<ClassifierModelRequest>) -> ApiResult<Json<ClassifierSaveResponse>> {
    do_save(st, req).await
}

/// Load a stored classifier into memory.
#[utoipa::path(post, path = "/v1/ml/classifier/load", tag = "ml", operation_id = "classifier_load",
    request_body = ClassifierModelRequest,
    responses((status = 200, body = ClassifierLoadResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn load(State(st): State<AppState>, Json(req): Json<ClassifierModelRequest>) -> ApiResult<Json<ClassifierLoadResponse>> {
    do_load(st, req).await
}

/// Stored classifiers.
#[utoipa::path(get, path = "/v1/ml/classifier/models", tag = "ml", operation_id = "classifier_models",
    responses((status = 200, body = ClassifierModelList)))]
async fn models(State(st): State<AppState>) -> ApiResult<Json<ClassifierModelList>> {
    do_models(st).await
}

/// Delete a stored classifier (its directory name) and unload it.
#[utoipa::path(delete, path = "/v1/ml/classifier/models/{name}", tag = "ml", operation_id = "classifier_delete",
    params(("name" = String, Path, description = "Stored name, e.g. intent_20260101_120000")),
    responses((status = 200, body = ClassifierDeleteResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<ClassifierDeleteResponse>> {
    do_delete(st, name).await
}

/// Train a SetFit few-shot text classifier; auto-saved.
#[utoipa::path(post, path = "/v1/classifier/fit", tag = "classifier", operation_id = "runtime_classifier_fit",
    request_body = ClassifierFitRequest,
    responses((status = 200, body = ClassifierFitResponse), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn rt_fit(State(st): State<AppState>, Json(req): Json<ClassifierFitRequest>) -> ApiResult<Json<ClassifierFitResponse>> {
    do_fit(st, req).await
}

/// Classify texts with a trained classifier.
#[utoipa::path(post, path = "/v1/classifier/predict", tag = "classifier", operation_id = "runtime_classifier_predict",
    request_body = ClassifierPredictRequest,
    responses((status = 200, body = ClassifierPredictResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_predict(State(st): State<AppState>, Json(req): Json<ClassifierPredictRequest>) -> ApiResult<Json<ClassifierPredictResponse>> {
    do_predict(st, req).await
}

/// Save a classifier's description.
#[utoipa::path(post, path = "/v1/classifier/save", tag = "classifier", operation_id = "runtime_classifier_save",
    request_body = ClassifierModelRequest,
    responses((status = 200, body = ClassifierSaveResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_save(State(st): State<AppState>, Json(req): Json<ClassifierModelRequest>) -> ApiResult<Json<ClassifierSaveResponse>> {
    do_save(st, req).await
}

/// Load a stored classifier.
#[utoipa::path(post, path = "/v1/classifier/load", tag = "classifier", operation_id = "runtime_classifier_load",
    request_body = ClassifierModelRequest,
    responses((status = 200, body = ClassifierLoadResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_load(State(st): State<AppState>, Json(req): Json<ClassifierModelRequest>) -> ApiResult<Json<ClassifierLoadResponse>> {
    do_load(st, req).await
}

/// Stored classifiers.
#[utoipa::path(get, path = "/v1/classifier/models", tag = "classifier", operation_id = "runtime_classifier_models",
    responses((status = 200, body = ClassifierModelList)))]
async fn rt_models(State(st): State<AppState>) -> ApiResult<Json<ClassifierModelList>> {
    do_models(st).await
}

/// Delete a stored classifier.
#[utoipa::path(delete, path = "/v1/classifier/models/{name}", tag = "classifier", operation_id = "runtime_classifier_delete",
    params(("name" = String, Path, description = "Stored name")),
    responses((status = 200, body = ClassifierDeleteResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rt_delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<ClassifierDeleteResponse>> {
    do_delete(st, name).await
}

/// Classify texts with a trained SetFit classifier by name, or with a pre-trained
/// Hugging Face sequence classifier (BERT, DistilBERT) from the model cache.
#[utoipa::path(post, path = "/v1/classify", tag = "classifier", operation_id = "runtime_classify",
    request_body = ClassifyRequest,
    responses((status = 200, body = ClassifyResponse), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn classify(State(st): State<AppState>, Json(req): Json<ClassifyRequest>) -> ApiResult<Json<ClassifyResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.ml().classifier().classify(&req.model, &req.texts, req.max_length)?.into()))).await
}
