//! `/v1/projects/{namespace}/{project}/datasets/*`, `/tasks/*` and `/event_logs/*`.

use super::blocking;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use crate::AppState;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use llamafarm_core::dataset::UploadOutcome;
use llamafarm_core::Error;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_datasets, create_dataset))
        .routes(routes!(strategies))
        .routes(routes!(delete_dataset))
        .routes(routes!(upload))
        .routes(routes!(upload_bulk))
        .routes(routes!(remove_file))
        .routes(routes!(actions))
        .routes(routes!(get_task, cancel_task))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DetailsParam {
    /// Include per-file details (default true).
    include_extra_details: Option<bool>,
}

/// List datasets, with per-file details (name, hash, size, time).
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/datasets", tag = "datasets", operation_id = "dataset_list",
    params(("namespace" = String, Path), ("project" = String, Path), DetailsParam),
    responses((status = 200, description = "{total, datasets}", body = Object), (status = 404, body = ErrorBody)))]
async fn list_datasets(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>, Query(q): Query<DetailsParam>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let list = lf.project(&ns, &p)?.datasets().list(q.include_extra_details.unwrap_or(true))?;
        Ok(Json(json!({"total": list.len(), "datasets": list})))
    })
    .await
}

/// The processing strategies and databases a dataset may use.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/datasets/strategies", tag = "datasets", operation_id = "dataset_strategies_list",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "{data_processing_strategies, databases}", body = Object), (status = 404, body = ErrorBody)))]
async fn strategies(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let (s, d) = lf.project(&ns, &p)?.datasets().strategies()?;
        Ok(Json(json!({"data_processing_strategies": s, "databases": d})))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct CreateDataset {
    name: String,
    #[serde(default)]
    data_processing_strategy: Option<String>,
    database: String,
    #[serde(default)]
    auto_process: Option<bool>,
}

/// Create a dataset (the strategy and database must exist).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets", tag = "datasets", operation_id = "dataset_create",
    params(("namespace" = String, Path), ("project" = String, Path)), request_body = CreateDataset,
    responses((status = 200, description = "{dataset}", body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_dataset(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>, Json(b): Json<CreateDataset>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let d = lf.project(&ns, &p)?.datasets().create(&b.name, b.data_processing_strategy.as_deref(), &b.database, b.auto_process)?;
        Ok(Json(json!({"dataset": d})))
    })
    .await
}

/// Delete a dataset; its chunks leave the index and its files the disk.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}", tag = "datasets", operation_id = "dataset_delete",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path)),
    responses((status = 200, description = "{dataset}", body = Object), (status = 404, body = ErrorBody)))]
async fn delete_dataset(State(st): State<AppState>, Path((ns, p, ds)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(json!({"dataset": lf.project(&ns, &p)?.datasets().delete(&ds)?})))).await
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct UploadParams {
    /// Process right after upload (default: the dataset's `auto_process`).
    auto_process: Option<bool>,
}

/// Stream every `file` field of a multipart body to disk (hashing as it goes).
/// Returns the outcomes, per-file errors, and `parser_overrides` if given.
async fn receive(
    st: &AppState,
    ns: &str,
    p: &str,
    ds: &str,
    mut mp: Multipart,
) -> ApiResult<(Vec<UploadOutcome>, Vec<Value>, Option<Map<String, Value>>)> {
    let lf = st.lf.clone();
    let (ns2, p2, ds2) = (ns.to_string(), p.to_string(), ds.to_string());
    let datasets = blocking(move || {
        let d = lf.project(&ns2, &p2)?.datasets();
        d.get(&ds2)?;
        Ok(d)
    })
    .await?;
    let max = st.opts.body_limit as u64;
    let (mut outcomes, mut failed, mut overrides) = (Vec::new(), Vec::new(), None);
    while let Some(mut field) = mp.next_field().await.map_err(multipart_err)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "parser_overrides" {
            let text = field.text().await.map_err(multipart_err)?;
            if text.len() > 10 * 1024 {
                return Err(Error::Invalid("parser_overrides must be at most 10 KB".into()).into());
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => overrides = Some(m),
                _ => return Err(Error::Invalid("parser_overrides must be a JSON object keyed by parser type or \"*\"".into()).into()),
            }
            continue;
        }
        if name != "file" && name != "files" && name != "files[]" {
            continue;
        }
        let file_name = field.file_name().map(str::to_string).unwrap_or_else(|| "upload".into());
        let mut w = datasets.begin_upload(ds, &file_name, max)?;
        let mut res: Result<(), ApiError> = Ok(());
        loop {
            match field.chunk().await {
                Ok(Some(bytes)) => {
                    if let Err(e) = w.write(&bytes) {
                        res = Err(e.into());
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    res = Err(multipart_err(e));
                    break;
                }
            }
        }
        match res {
            Ok(()) => match tokio::task::spawn_blocking(move || w.finish()).await {
                Ok(Ok(o)) => outcomes.push(o),
                Ok(Err(e)) => failed.push(json!({"filename": file_name, "error": e.to_string()})),
                Err(e) => failed.push(json!({"filename": file_name, "error": e.to_string()})),
            },
            // Too large, or the body broke: the request fails as a whole.
            Err(e) => return Err(e),
        }
    }
    Ok((outcomes, failed, overrides))
}

fn multipart_err(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    ApiError::new(if status == StatusCode::PAYLOAD_TOO_LARGE { status } else { StatusCode::UNPROCESSABLE_ENTITY }, format!("Invalid multipart body: {}", e.body_text()))
}

/// After an upload: queue processing of the new files when `auto_process` (the query
/// parameter, else the dataset's setting) says so. Returns the task id.
async fn start_processing(
    st: &AppState,
    ns: &str,
    p: &str,
    ds: &str,
    fresh: Vec<String>,
    auto_param: Option<bool>,
    overrides: Option<Map<String, Value>>,
) -> ApiResult<Option<String>> {
    let lf = st.lf.clone();
    let (ns, p, ds) = (ns.to_string(), p.to_string(), ds.to_string());
    blocking(move || {
        let project = lf.project(&ns, &p)?;
        let auto = auto_param.unwrap_or(project.datasets().get(&ds)?.auto_process.unwrap_or(true));
        if auto && !fresh.is_empty() {
            Ok(Some(lf.tasks().submit_process(&project, &ds, fresh, overrides)?))
        } else {
            Ok(None)
        }
    })
    .await
}

fn task_uri(headers: &HeaderMap, ns: &str, p: &str, id: &str) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost:8000");
    format!("http://{host}/v1/projects/{ns}/{p}/tasks/{id}")
}

/// Upload one file (multipart field `file`); duplicates by content are `skipped`.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/data", tag = "datasets", operation_id = "dataset_data_upload",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), UploadParams),
    request_body(content = String, content_type = "multipart/form-data", description = "`file`, optional `parser_overrides` (JSON)"),
    responses((status = 200, description = "{filename, hash, processed, skipped, task_id, status}", body = Object), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(st): State<AppState>,
    Path((ns, p, ds)): Path<(String, String, String)>,
    Query(q): Query<UploadParams>,
    headers: HeaderMap,
    mp: Multipart,
) -> ApiResult<Json<Value>> {
    let (outcomes, failed, overrides) = receive(&st, &ns, &p, &ds, mp).await?;
    let Some(o) = outcomes.into_iter().next() else {
        let why = failed.first().and_then(|f| f["error"].as_str()).unwrap_or("no `file` field in the form").to_string();
        return Err(Error::Invalid(why).into());
    };
    let fresh = if o.skipped { vec![] } else { vec![o.hash.clone()] };
    let task = start_processing(&st, &ns, &p, &ds, fresh, q.auto_process, overrides).await?;
    let mut body = json!({
        "filename": o.filename, "hash": o.hash, "processed": false, "skipped": o.skipped,
        "status": if o.skipped { "skipped" } else if task.is_some() { "processing" } else { "uploaded" },
    });
    if let Some(id) = task {
        body["task_uri"] = json!(task_uri(&headers, &ns, &p, &id));
        body["task_id"] = json!(id);
    }
    Ok(Json(body))
}

/// Upload many files at once (repeated `files` or `file` fields).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/data/bulk", tag = "datasets",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), UploadParams),
    request_body(content = String, content_type = "multipart/form-data"),
    responses((status = 200, description = "{uploaded, skipped, failed, task_id, status}", body = Object), (status = 413, body = ErrorBody)))]
async fn upload_bulk(
    State(st): State<AppState>,
    Path((ns, p, ds)): Path<(String, String, String)>,
    Query(q): Query<UploadParams>,
    headers: HeaderMap,
    mp: Multipart,
) -> ApiResult<Json<Value>> {
    let (outcomes, failed, overrides) = receive(&st, &ns, &p, &ds, mp).await?;
    let fresh: Vec<String> = outcomes.iter().filter(|o| !o.skipped).map(|o| o.hash.clone()).collect();
    let task = start_processing(&st, &ns, &p, &ds, fresh, q.auto_process, overrides).await?;
    let uploaded: Vec<Value> = outcomes.iter().filter(|o| !o.skipped).map(|o| json!({"filename": o.filename, "hash": o.hash, "size": o.size})).collect();
    let skipped: Vec<Value> = outcomes.iter().filter(|o| o.skipped).map(|o| json!({"filename": o.filename, "hash": o.hash})).collect();
    let mut body = json!({"uploaded": uploaded, "skipped": skipped, "failed": failed,
        "status": if task.is_some() { "processing" } else { "uploaded" }});
    if let Some(id) = task {
        body["task_uri"] = json!(task_uri(&headers, &ns, &p, &id));
        body["task_id"] = json!(id);
    }
    Ok(Json(body))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct RemoveParams {
    /// Also delete the stored file.
    remove_from_disk: Option<bool>,
}

/// Remove a file from a dataset (its chunks too).
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/data/{file_hash}", tag = "datasets",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path), ("file_hash" = String, Path), RemoveParams),
    responses((status = 200, description = "{file_hash, chunks_removed}", body = Object), (status = 404, body = ErrorBody)))]
async fn remove_file(
    State(st): State<AppState>,
    Path((ns, p, ds, hash)): Path<(String, String, String, String)>,
    Query(q): Query<RemoveParams>,
) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let n = lf.project(&ns, &p)?.datasets().remove_file(&ds, &hash, q.remove_from_disk.unwrap_or(false))?;
        Ok(Json(json!({"file_hash": hash, "chunks_removed": n})))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ActionRequest {
    /// `process` (alias `ingest`), `delete_file_chunks`, `delete_dataset_chunks`.
    action_type: String,
    /// For `delete_file_chunks`.
    #[serde(default)]
    file_hash: Option<String>,
    /// Parser settings for this run, keyed by parser type or `*`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    parser_overrides: Option<Map<String, Value>>,
}

/// Process a dataset (returns a task to poll), or delete chunks.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/datasets/{dataset}/actions", tag = "datasets", operation_id = "dataset_actions",
    params(("namespace" = String, Path), ("project" = String, Path), ("dataset" = String, Path)), request_body = ActionRequest,
    responses((status = 200, description = "{message, task_uri, task_id}", body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn actions(
    State(st): State<AppState>,
    Path((ns, p, ds)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(a): Json<ActionRequest>,
) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    let (ns2, p2) = (ns.clone(), p.clone());
    blocking(move || {
        let project = lf.project(&ns2, &p2)?;
        let datasets = project.datasets();
        let d = datasets.get(&ds)?;
        match a.action_type.as_str() {
            "process" | "ingest" => {
                let files = d.files.clone().unwrap_or_default();
                let id = lf.tasks().submit_process(&project, &ds, files, a.parser_overrides)?;
                Ok(Json(json!({"message": "Accepted", "task_uri": task_uri(&headers, &ns, &p, &id), "task_id": id})))
            }
            "delete_file_chunks" => {
                let h = a.file_hash.ok_or_else(|| Error::Invalid("file_hash is required for delete_file_chunks".into()))?;
                if !d.files.iter().flatten().any(|x| x == &h) {
                    return Err(Error::not_found(format!("File {h} in dataset '{ds}'")));
                }
                let n = project.rag().delete_file(&d.database, &h)?;
                Ok(Json(json!({"message": format!("Deleted {n} chunk(s) of file {h}"), "deleted_chunks": n, "file_hash": h})))
            }
            "delete_dataset_chunks" => {
                let mut n = 0;
                for h in d.files.iter().flatten() {
                    n += project.rag().delete_file(&d.database, h)?;
                }
                Ok(Json(json!({"message": format!("Deleted {n} chunk(s) of dataset {ds}"), "deleted_chunks": n})))
            }
            other => Err(Error::Invalid(format!("unknown action_type '{other}' (process, ingest, delete_file_chunks, delete_dataset_chunks)"))),
        }
    })
    .await
}

/// A task's state, progress and result.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/tasks/{task_id}", tag = "tasks", operation_id = "task_get",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, description = "{task_id, state, meta, result, error, traceback, cancelled}", body = Object), (status = 404, body = ErrorBody)))]
async fn get_task(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let project = lf.project(&ns, &p)?;
        let r = llamafarm_core::task::load(project.dir(), &id)?;
        let mut v = json!({"task_id": r.task_id, "state": r.state, "meta": r.meta, "cancelled": r.cancelled,
            "dataset": r.dataset, "created_at": r.created_at, "updated_at": r.updated_at});
        for (k, x) in [("result", r.result), ("error", r.error.map(Value::from)), ("traceback", r.traceback.map(Value::from))] {
            if let Some(x) = x {
                v[k] = x;
            }
        }
        Ok(Json(v))
    })
    .await
}

/// Cancel a task and revert the files it processed (idempotent).
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/tasks/{task_id}", tag = "tasks",
    params(("namespace" = String, Path), ("project" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, description = "Cancel report", body = Object), (status = 404, body = ErrorBody)))]
async fn cancel_task(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let project = lf.project(&ns, &p)?;
        Ok(Json(serde_json::to_value(lf.tasks().cancel(&project, &id)?).unwrap_or_default()))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct EventParams {
    /// Event type, e.g. `rag_processing`, `inference`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// ISO 8601 lower bound.
    start_time: Option<String>,
    /// ISO 8601 upper bound.
    end_time: Option<String>,
    /// 1..=100, default 10.
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

/// Events, newest first.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/event_logs", tag = "events",
    params(("namespace" = String, Path), ("project" = String, Path), EventParams),
    responses((status = 200, description = "{total, events, limit, offset}", body = Object), (status = 422, body = ErrorBody)))]
async fn list_events(State(st): State<AppState>, Path((ns, p)): Path<(String, String)>, Query(q): Query<EventParams>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(10);
    let offset = q.offset.unwrap_or(0);
    if !(1..=100).contains(&limit) {
        return Err(Error::Invalid(format!("limit must be between 1 and 100, got {limit}")).into());
    }
    if offset < 0 {
        return Err(Error::Invalid(format!("offset must be at least 0, got {offset}")).into());
    }
    let lf = st.lf.clone();
    blocking(move || {
        let (total, events) = lf.project(&ns, &p)?.events().list(q.kind.as_deref(), q.start_time.as_deref(), q.end_time.as_deref(), limit as usize, offset as usize)?;
        Ok(Json(json!({"total": total, "events": events, "limit": limit, "offset": offset})))
    })
    .await
}

/// One event with its data and sub-events.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/event_logs/{event_id}", tag = "events",
    params(("namespace" = String, Path), ("project" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, description = "Event", body = Object), (status = 404, body = ErrorBody)))]
async fn get_event(State(st): State<AppState>, Path((ns, p, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.project(&ns, &p)?.events().get(&id)?))).await
}
