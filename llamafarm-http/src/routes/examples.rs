//! The Examples API: `/v1/examples*`.

use super::call;
use crate::dto::examples::*;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use llamafarm_core::examples::ImportOptions;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_examples))
        .routes(routes!(all_datasets))
        .routes(routes!(example_datasets))
        .routes(routes!(import_project))
        .routes(routes!(import_data))
        .routes(routes!(import_dataset))
}

/// Example projects (the built-in ones and those of `--examples-dir`).
#[utoipa::path(get, path = "/v1/examples", tag = "examples", responses((status = 200, body = ExampleList)))]
async fn list_examples(State(st): State<AppState>) -> ApiResult<Json<ExampleList>> {
    Ok(Json(call(&st, |lf| Ok(lf.examples().list())).await?.into()))
}

/// The datasets of every example.
#[utoipa::path(get, path = "/v1/examples/datasets", tag = "examples", responses((status = 200, body = ExampleDatasetList)))]
async fn all_datasets(State(st): State<AppState>) -> ApiResult<Json<ExampleDatasetList>> {
    Ok(Json(call(&st, |lf| Ok(lf.examples().list())).await?.into()))
}

/// The datasets of one example, with their files.
#[utoipa::path(get, path = "/v1/examples/{example_id}/datasets", tag = "examples", params(("example_id" = String, Path)),
    responses((status = 200, body = ExampleDatasetList), (status = 404, body = ErrorBody)))]
async fn example_datasets(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ExampleDatasetList>> {
    Ok(Json(call(&st, move |lf| Ok(vec![lf.examples().get(&id)?])).await?.into()))
}

/// Create a project from an example: its config, datasets and files; with `process`,
/// a processing task per dataset.
#[utoipa::path(post, path = "/v1/examples/{example_id}/import-project", tag = "examples", params(("example_id" = String, Path)),
    request_body = ImportProjectRequest,
    responses((status = 200, body = ExampleImportResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn import_project(State(st): State<AppState>, Path(id): Path<String>, Json(r): Json<ImportProjectRequest>) -> ApiResult<Json<ExampleImportResponse>> {
    Ok(Json(call(&st, move |lf| lf.examples().import_project(&id, &r.namespace, &r.name, r.process)).await?.into()))
}

/// Bring an example's datasets and files into an existing project.
#[utoipa::path(post, path = "/v1/examples/{example_id}/import-data", tag = "examples", params(("example_id" = String, Path)),
    request_body = ImportDataRequest,
    responses((status = 200, body = ExampleImportResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn import_data(State(st): State<AppState>, Path(id): Path<String>, Json(r): Json<ImportDataRequest>) -> ApiResult<Json<ExampleImportResponse>> {
    let opts = ImportOptions { include_strategies: r.include_strategies, process: r.process, ..Default::default() };
    Ok(Json(call(&st, move |lf| lf.examples().import_data(&id, &r.namespace, &r.project, &opts)).await?.into()))
}

/// Bring one dataset of an example into an existing project.
#[utoipa::path(post, path = "/v1/examples/{example_id}/import-dataset", tag = "examples", params(("example_id" = String, Path)),
    request_body = ImportDatasetRequest,
    responses((status = 200, body = ExampleImportResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn import_dataset(State(st): State<AppState>, Path(id): Path<String>, Json(r): Json<ImportDatasetRequest>) -> ApiResult<Json<ExampleImportResponse>> {
    let opts = ImportOptions { dataset: Some(r.dataset), target_dataset: r.target_dataset, include_strategies: r.include_strategies, process: r.process };
    Ok(Json(call(&st, move |lf| lf.examples().import_data(&id, &r.namespace, &r.project, &opts)).await?.into()))
}
