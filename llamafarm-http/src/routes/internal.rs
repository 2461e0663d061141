//! `/v1/internal/...`: the endpoints `lf worker` processes call when ingestion runs on a
//! Redis queue (`lf serve --queue`). With API keys, only a full read-write key reaches them.

use super::call;
use crate::dto::internal::{ClaimRequest, ClaimResponse, FinishResponse, ResultsRequest, ResultsResponse};
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(claim)).routes(routes!(results)).routes(routes!(finish)).routes(routes!(file))
}

/// A worker takes its part of a task: the part's files still to do and the project's
/// config (`job` is null when the task has ended).
#[utoipa::path(post, path = "/v1/internal/tasks/{namespace}/{project}/{task_id}/claim", tag = "workers", operation_id = "worker_claim",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)), request_body = ClaimRequest,
    responses((status = 200, body = ClaimResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn claim(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>, Json(b): Json<ClaimRequest>) -> ApiResult<Json<ClaimResponse>> {
    let job = call(&st, move |lf| lf.tasks().claim(&lf.project(&ns, &p)?, &id, &b.files)).await?;
    Ok(Json(ClaimResponse { job }))
}

/// A worker's outcomes and embedded chunks for a batch of a task's files: the chunks are
/// indexed (ids already there are skipped) and the outcomes recorded.
#[utoipa::path(post, path = "/v1/internal/tasks/{namespace}/{project}/{task_id}/results", tag = "workers", operation_id = "worker_results",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)), request_body = ResultsRequest,
    responses((status = 200, body = ResultsResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn results(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>, Json(b): Json<ResultsRequest>) -> ApiResult<Json<ResultsResponse>> {
    let stop = call(&st, move |lf| lf.tasks().accept(&lf.project(&ns, &p)?, &id, b.outcomes, b.records)).await?;
    Ok(Json(ResultsResponse { stop }))
}

/// A worker is done with its part of a task; the last part ends the task (reverted if it
/// was cancelled). Answers the task's state.
#[utoipa::path(post, path = "/v1/internal/tasks/{namespace}/{project}/{task_id}/finish", tag = "workers", operation_id = "worker_finish",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = FinishResponse), (status = 404, body = ErrorBody)))]
async fn finish(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<FinishResponse>> {
    let state = call(&st, move |lf| lf.tasks().finish(&lf.project(&ns, &p)?, &id)).await?;
    Ok(Json(state.into()))
}

/// A stored file of a dataset, for a worker to process; its uploaded name is in the
/// `x-lf-file-name` header (percent-encoded UTF-8).
#[utoipa::path(get, path = "/v1/internal/projects/{namespace}/{project}/datasets/{dataset}/files/{hash}", tag = "workers", operation_id = "worker_file",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), ("hash" = String, Path)),
    responses((status = 200, description = "The file's content", content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorBody)))]
async fn file(State(st): State<AppState>, Path((ns, p, ds, hash)): Path<(String, String, String, String)>) -> ApiResult<Response> {
    let (meta, bytes) = call(&st, move |lf| lf.project(&ns, &p)?.datasets().read_file(&ds, &hash)).await?;
    let name = llamafarm_core::paths::encode_segment(&meta.original_file_name);
    Ok(([(CONTENT_TYPE, "application/octet-stream".to_string()), (axum::http::HeaderName::from_static("x-lf-file-name"), name)], bytes).into_response())
}
