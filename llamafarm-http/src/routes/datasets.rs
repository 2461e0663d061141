//! `/v1/projects/{namespace}/{project}/datasets/*`, `/tasks/*` and `/event_logs/*`.

use super::call;
use crate::dto::datasets::{
    ActionRequest, ActionResponse, BulkUploadResponse, CancelResponse, CreateDataset, DatasetList, DatasetResponse, DetailsParam, EventDetail, EventList,
    EventParams, FailedFile, QueuedTask, RemoveFileResponse, RemoveParams, StrategiesResponse, TaskResponse, UploadParams, UploadResponse,
};
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use crate::AppState;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use llamafarm_core::dataset::{DatasetAction, UploadOutcome};
use llamafarm_core::Error;
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_datasets, create_dataset))
        .routes(routes!(strategies))
        .routes(routes!(delete_dataset))
        .routes(routes!(upload))
        .routes(routes!(upload_bulk))
        .routes(routes!(remove_file))
        .routes(routes!(cleanup_file))
        .routes(routes!(actions))
        .routes(routes!(get_task, cancel_task))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
}

/// List datasets, with per-file details (name, hash, size, time).
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/datasets", tag = "datasets", operation_id = "dataset_list",
    params(("namespace" = String, Path), ("project" = String, Path), DetailsParam),
    responses((status = 200, body = DatasetList), (status = 404, body = ErrorBody)))]
async fn list_datasets(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>, Query(q): Query<DetailsParam>) -> ApiResult<Json<DatasetList>> {
    let list = call(&st, move |lf| lf.project(&ns, &p)?.datasets().list(q.include_extra_details.unwrap_or(true))).await?;
    Ok(Json(list.into()))
}

/// The processing strategies and databases a dataset may use.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/datasets/strategies", tag = "datasets", operation_id = "dataset_strategies_list",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = StrategiesResponse), (status = 404, body = ErrorBody)))]
async fn strategies(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>) -> ApiResult<Json<StrategiesResponse>> {
    let both = call(&st, move |lf| lf.project(&ns, &p)?.datasets().strategies()).await?;
    Ok(Json(both.into()))
}

/// Create a dataset (the strategy and database must exist).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets", tag = "datasets", operation_id = "dataset_create",
    params(("namespace" = String, Path), ("project" = String, Path)), request_body = CreateDataset,
    responses((status = 200, body = DatasetResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_dataset(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>, Json(b): Json<CreateDataset>) -> ApiResult<Json<DatasetResponse>> {
    let d = call(&st, move |lf| lf.project(&ns, &p)?.datasets().create(&b.name, b.data_processing_strategy.as_deref(), &b.database, b.auto_process)).await?;
    Ok(Json(d.into()))
}

/// Delete a dataset; its chunks leave the index and its files the disk.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}", tag = "datasets", operation_id = "dataset_delete",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path)),
    responses((status = 200, body = DatasetResponse), (status = 404, body = ErrorBody)))]
async fn delete_dataset(State(st): State<AppState>, Path((ns, p, ds)): Path<(String, String, String)>) -> ApiResult<Json<DatasetResponse>> {
    let d = call(&st, move |lf| lf.project(&ns, &p)?.datasets().delete(&ds)).await?;
    Ok(Json(d.into()))
}

/// What a multipart upload body held.
struct Received {
    outcomes: Vec<UploadOutcome>,
    failed: Vec<FailedFile>,
    overrides: Option<Map<String, Value>>,
}

/// Stream every `file` field of a multipart body to disk (hashing as it goes), then
/// store them all at once ([`llamafarm_core::dataset::UploadBatch`]: one flush, one
/// config update). A body that breaks off or holds a file over the limit stores nothing.
/// Returns the outcomes, per-file errors, and `parser_overrides` if given.
async fn receive(st: &AppState, ns: &str, p: &str, ds: &str, mut mp: Multipart) -> ApiResult<Received> {
    let (ns2, p2, ds2) = (ns.to_string(), p.to_string(), ds.to_string());
    let mut batch = call(st, move |lf| lf.project(&ns2, &p2)?.datasets().begin_batch(&ds2)).await?;
    let max = st.opts.body_limit as u64;
    let mut r = Received { outcomes: Vec::new(), failed: Vec::new(), overrides: None };
    while let Some(mut field) = mp.next_field().await.map_err(multipart_err)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "parser_overrides" {
            let text = field.text().await.map_err(multipart_err)?;
            if text.len() > 10 * 1024 {
                return Err(Error::invalid("parser_overrides", "must be at most 10 KB").into());
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => r.overrides = Some(m),
                _ => return Err(Error::invalid("parser_overrides", "must be a JSON object keyed by parser type or \"*\"").into()),
            }
            continue;
        }
        if name != "file" && name != "files" && name != "files[]" {
            continue;
        }
        let file_name = field.file_name().map(str::to_string).unwrap_or_else(|| "upload".into());
        let mut w = batch.begin_file(&file_name, max)?;
        loop {
            match field.chunk().await {
                // Too large, or the body broke: the request fails as a whole (the
                // batch's parts are removed when it drops).
                Ok(Some(bytes)) => {
                    if let Err(e) = w.write(&bytes) {
                        if matches!(e, Error::StorageFull { .. }) {
                            // Read the rest of the body (bounded by the body limit) before
                            // answering: a client still sending gets the 507, not a reset.
                            drop(w);
                            while let Ok(Some(_)) = field.chunk().await {}
                            while let Ok(Some(mut f)) = mp.next_field().await {
                                while let Ok(Some(_)) = f.chunk().await {}
                            }
                        }
                        return Err(e.into());
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(multipart_err(e)),
            }
        }
        if let Err(e) = batch.add(w) {
            r.failed.push(FailedFile { filename: file_name, error: e.to_string() });
        }
    }
    r.outcomes = tokio::task::spawn_blocking(move || batch.commit()).await.map_err(|e| Error::internal(format!("upload task: {e}")))??;
    Ok(r)
}

pub(crate) fn multipart_err(e: axum::extract::multipart::MultipartError) -> ApiError {
    // A body cut off by the request size limit (a streamed body declares no length up
    // front) is reported as too large, like one refused before it was read.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut over_limit = false;
    while let Some(c) = cause {
        over_limit |= c.to_string().contains("length limit exceeded");
        cause = c.source();
    }
    let status = if over_limit { StatusCode::PAYLOAD_TOO_LARGE } else { e.status() };
    ApiError::new(
        if status == StatusCode::PAYLOAD_TOO_LARGE { status } else { StatusCode::UNPROCESSABLE_ENTITY },
        format!("Invalid multipart body: {}", e.body_text()),
    )
}

/// After an upload: queue processing of the new files when `auto_process` says so.
async fn start_processing(
    st: &AppState,
    headers: &HeaderMap,
    (ns, p, ds): (&str, &str, &str),
    fresh: Vec<String>,
    auto: Option<bool>,
    overrides: Option<Map<String, Value>>,
) -> ApiResult<Option<QueuedTask>> {
    let (ns2, p2, ds2) = (ns.to_string(), p.to_string(), ds.to_string());
    let id = call(st, move |lf| lf.project(&ns2, &p2)?.datasets().start_processing(&ds2, fresh, auto, overrides)).await?;
    Ok(id.map(|task_id| QueuedTask { task_uri: task_uri(headers, ns, p, &task_id), task_id }))
}

fn task_uri(headers: &HeaderMap, ns: &str, p: &str, id: &str) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost:8000");
    format!("http://{host}/v1/projects/{ns}/{p}/tasks/{id}")
}

/// Upload one file (multipart field `file`); duplicates by content are `skipped`.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/data", tag = "datasets", operation_id = "dataset_data_upload",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), UploadParams),
    request_body(content = String, content_type = "multipart/form-data", description = "`file`, optional `parser_overrides` (JSON)"),
    responses((status = 200, body = UploadResponse), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(st): State<AppState>,
    Path((ns, p, ds)): Path<(String, String, String)>,
    Query(q): Query<UploadParams>,
    headers: HeaderMap,
    mp: Multipart,
) -> ApiResult<Json<UploadResponse>> {
    let r = receive(&st, &ns, &p, &ds, mp).await?;
    let Some(o) = r.outcomes.into_iter().next() else {
        let err = match r.failed.into_iter().next() {
            Some(f) => Error::invalid("file", format!("was not stored: {}", f.error)),
            None => Error::invalid("file", "is required (no `file` field in the form)"),
        };
        return Err(err.into());
    };
    let fresh = if o.skipped { vec![] } else { vec![o.hash.clone()] };
    let task = start_processing(&st, &headers, (&ns, &p, &ds), fresh, q.auto_process, r.overrides).await?;
    Ok(Json(UploadResponse::new(o, task)))
}

/// Upload many files at once (repeated `files` or `file` fields).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/data/bulk", tag = "datasets",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), UploadParams),
    request_body(content = String, content_type = "multipart/form-data"),
    responses((status = 200, body = BulkUploadResponse), (status = 413, body = ErrorBody)))]
async fn upload_bulk(
    State(st): State<AppState>,
    Path((ns, p, ds)): Path<(String, String, String)>,
    Query(q): Query<UploadParams>,
    headers: HeaderMap,
    mp: Multipart,
) -> ApiResult<Json<BulkUploadResponse>> {
    let r = receive(&st, &ns, &p, &ds, mp).await?;
    let fresh: Vec<String> = r.outcomes.iter().filter(|o| !o.skipped).map(|o| o.hash.clone()).collect();
    let task = start_processing(&st, &headers, (&ns, &p, &ds), fresh, q.auto_process, r.overrides).await?;
    Ok(Json(BulkUploadResponse::new(r.outcomes, r.failed, task)))
}

/// Remove a file from a dataset (its chunks too).
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/data/{file_hash}", tag = "datasets",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), ("file_hash" = String, Path), RemoveParams),
    responses((status = 200, body = RemoveFileResponse), (status = 404, body = ErrorBody)))]
async fn remove_file(
    State(st): State<AppState>,
    Path((ns, p, ds, hash)): Path<(String, String, String, String)>,
    Query(q): Query<RemoveParams>,
) -> ApiResult<Json<RemoveFileResponse>> {
    let file_hash = hash.clone();
    let n = call(&st, move |lf| lf.project(&ns, &p)?.datasets().remove_file(&ds, &hash, q.remove_from_disk.unwrap_or(false))).await?;
    Ok(Json(RemoveFileResponse { file_hash, chunks_removed: n }))
}

/// Remove a file's chunks from the index and keep the file (manual cleanup after a
/// cancelled task whose revert failed; idempotent).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/cleanup/{file_hash}", tag = "datasets",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), ("file_hash" = String, Path)),
    responses((status = 200, body = RemoveFileResponse), (status = 404, body = ErrorBody)))]
async fn cleanup_file(State(st): State<AppState>, Path((ns, p, ds, hash)): Path<(String, String, String, String)>) -> ApiResult<Json<RemoveFileResponse>> {
    let file_hash = hash.clone();
    let n = call(&st, move |lf| lf.project(&ns, &p)?.datasets().cleanup_file(&ds, &hash)).await?;
    Ok(Json(RemoveFileResponse { file_hash, chunks_removed: n }))
}

/// Process a dataset (returns a task to poll), or delete chunks.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/actions", tag = "datasets", operation_id = "dataset_actions",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path)), request_body = ActionRequest,
    responses((status = 200, body = ActionResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn actions(
    State(st): State<AppState>,
    Path((ns, p, ds)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(a): Json<ActionRequest>,
) -> ApiResult<Json<ActionResponse>> {
    let (ns2, p2) = (ns.clone(), p.clone());
    let outcome = call(&st, move |lf| {
        let datasets = lf.project(&ns2, &p2)?.datasets();
        datasets.get(&ds)?;
        datasets.act(&ds, DatasetAction::parse(&a.action_type, a.file_hash, a.parser_overrides)?)
    })
    .await?;
    Ok(Json(ActionResponse::new(outcome, |id| task_uri(&headers, &ns, &p, id))))
}

/// A task's state, progress and result.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/tasks/{task_id}", tag = "tasks", operation_id = "task_get",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskResponse), (status = 404, body = ErrorBody)))]
async fn get_task(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<TaskResponse>> {
    let r = call(&st, move |lf| lf.tasks().get(&lf.project(&ns, &p)?, &id)).await?;
    Ok(Json(r.into()))
}

/// Cancel a task and revert the files it processed (idempotent).
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/tasks/{task_id}", tag = "tasks",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = CancelResponse), (status = 404, body = ErrorBody)))]
async fn cancel_task(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<CancelResponse>> {
    let r = call(&st, move |lf| lf.tasks().cancel(&lf.project(&ns, &p)?, &id)).await?;
    Ok(Json(r.into()))
}

/// Events, newest first.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/event_logs", tag = "events",
    params(("namespace" = String, Path), ("project" = String, Path), EventParams),
    responses((status = 200, body = EventList), (status = 422, body = ErrorBody)))]
async fn list_events(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>, Query(q): Query<EventParams>) -> ApiResult<Json<EventList>> {
    let limit = q.limit.unwrap_or(10);
    let offset = q.offset.unwrap_or(0);
    let (total, events) =
        call(&st, move |lf| lf.project(&ns, &p)?.events().list(q.kind.as_deref(), q.start_time.as_deref(), q.end_time.as_deref(), limit, offset)).await?;
    Ok(Json(EventList::new(total, events, limit, offset)))
}

/// One event with its data and sub-events.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/event_logs/{event_id}", tag = "events",
    params(("namespace" = String, Path), ("project" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, body = EventDetail), (status = 404, body = ErrorBody)))]
async fn get_event(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<EventDetail>> {
    let e = call(&st, move |lf| lf.project(&ns, &p)?.events().get(&id)).await?;
    Ok(Json(e.into()))
}
