//! `/v1/projects/{namespace}/{project}/rag/*`.

use super::call;
use crate::dto::rag::{
    DatabaseCreated, DatabaseDeleted, DatabaseDetail, DatabaseList, DatabaseParam, DeleteDocumentsRequest, DeleteParams, DocumentDto, LimitParam,
    MaintenanceResponse, RagHealthDto, RagImportResponse, RagQueryRequest, RagQueryResponse, RagStatsDto,
};
use crate::error::{ApiResult, ErrorBody, Json, Path, Query};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use llamafarm_core::config::DatabaseConfig;
use llamafarm_core::rag::RagQuery;
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query))
        .routes(routes!(health))
        .routes(routes!(stats))
        .routes(routes!(list_databases, create_database))
        .routes(routes!(get_database, update_database, delete_database))
        .routes(routes!(documents))
        .routes(routes!(compact))
        .routes(routes!(clear))
        .routes(routes!(reindex))
        .routes(routes!(delete_documents))
        .routes(routes!(export))
        .routes(routes!(import))
}

type DbPath = Path<(String, String, String)>;

/// Compact a database's index (merge text-index segments, purge deletions).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/compact", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = MaintenanceResponse), (status = 404, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn compact(State(st): State<AppState>, Path((ns, p, db)): DbPath) -> ApiResult<Json<MaintenanceResponse>> {
    let name = db.clone();
    let n = call(&st, move |lf| lf.project(&ns, &p)?.rag().compact(&db)).await?;
    Ok(Json(MaintenanceResponse { segments_merged: Some(n), ..MaintenanceResponse::new(name) }))
}

/// Delete every chunk of a database (datasets and files stay; process them again to refill).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/clear", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = MaintenanceResponse), (status = 404, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn clear(State(st): State<AppState>, Path((ns, p, db)): DbPath) -> ApiResult<Json<MaintenanceResponse>> {
    let name = db.clone();
    let n = call(&st, move |lf| lf.project(&ns, &p)?.rag().clear(&db)).await?;
    Ok(Json(MaintenanceResponse { chunks_deleted: Some(n), ..MaintenanceResponse::new(name) }))
}

/// Clear a database and process every file of its datasets again (a task per dataset).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/reindex", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = MaintenanceResponse), (status = 404, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn reindex(State(st): State<AppState>, Path((ns, p, db)): DbPath) -> ApiResult<Json<MaintenanceResponse>> {
    let name = db.clone();
    let ids = call(&st, move |lf| lf.project(&ns, &p)?.rag().reindex(&db)).await?;
    Ok(Json(MaintenanceResponse { task_ids: Some(ids), ..MaintenanceResponse::new(name) }))
}

/// Delete documents by id, file name or metadata values.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/documents/delete", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)), request_body = DeleteDocumentsRequest,
    responses((status = 200, body = MaintenanceResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn delete_documents(State(st): State<AppState>, Path((ns, p, db)): DbPath, Json(r): Json<DeleteDocumentsRequest>) -> ApiResult<Json<MaintenanceResponse>> {
    let name = db.clone();
    let sel = llamafarm_core::rag::maintenance::DocumentSelector { ids: r.ids, filenames: r.filenames, metadata: r.metadata };
    let (docs, chunks) = call(&st, move |lf| lf.project(&ns, &p)?.rag().delete_documents(&db, &sel)).await?;
    Ok(Json(MaintenanceResponse { documents_deleted: Some(docs), chunks_deleted: Some(chunks), ..MaintenanceResponse::new(name) }))
}

/// A portable copy of a database (JSON Lines: a header naming the embedding model, then
/// each chunk with its metadata and vector), for `import` into another project or machine.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/export", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    responses((status = 200, description = "JSON Lines", body = String, content_type = "application/x-ndjson"), (status = 404, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn export(State(st): State<AppState>, Path((ns, p, db)): DbPath) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let file = format!("{db}.lfrag.jsonl");
    let bytes = super::stream_blocking(&st, move |lf, out| lf.project(&ns, &p)?.rag().export(&db, out).map(drop)).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Load an export into a database. Refused (422) when its embedding model or dimension
/// differ from the database's; a bad line writes nothing. The body is streamed to the
/// store (checked and spooled to disk first), so it is not bound by the request body
/// limit: a database of any size moves in one request.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/import", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson", description = "An export"),
    responses((status = 200, body = RagImportResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn import(State(st): State<AppState>, Path((ns, p, db)): DbPath, body: axum::body::Body) -> ApiResult<Json<RagImportResponse>> {
    use futures::TryStreamExt;
    let name = db.clone();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let r = call(&st, move |lf| lf.project(&ns, &p)?.rag().import(&db, &mut std::io::BufReader::with_capacity(256 << 10, reader))).await?;
    Ok(Json(RagImportResponse { database: name, imported: r.imported, skipped: r.skipped, documents: r.documents }))
}

type ProjectPath = Path<(String, String)>;

/// Search a database with a retrieval strategy.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/query", tag = "rag", operation_id = "rag_query",
    params(("namespace" = String, Path), ("project" = String, Path)),
    request_body = RagQueryRequest,
    responses((status = 200, body = RagQueryResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn query(State(st): State<AppState>, Path((ns, p)): ProjectPath, Json(q): Json<RagQueryRequest>) -> ApiResult<Json<RagQueryResponse>> {
    let q = RagQuery::from(q);
    let r = call(&st, move |lf| lf.project(&ns, &p)?.rag().query(&q)).await?;
    Ok(Json(r.into()))
}

/// Real checks of the store and the embedder, with latency.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/health", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), DatabaseParam),
    responses((status = 200, body = RagHealthDto), (status = 404, body = ErrorBody)))]
async fn health(State(st): State<AppState>, Path((ns, p)): ProjectPath, Query(d): Query<DatabaseParam>) -> ApiResult<Json<RagHealthDto>> {
    let h = call(&st, move |lf| lf.project(&ns, &p)?.rag().health(d.database.as_deref())).await?;
    Ok(Json(h.into()))
}

/// Vector count, storage, embedding dimension of a database.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/stats", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), DatabaseParam),
    responses((status = 200, body = RagStatsDto), (status = 404, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn stats(State(st): State<AppState>, Path((ns, p)): ProjectPath, Query(d): Query<DatabaseParam>) -> ApiResult<Json<RagStatsDto>> {
    let s = call(&st, move |lf| lf.project(&ns, &p)?.rag().stats(d.database.as_deref())).await?;
    Ok(Json(s.into()))
}

/// The project's databases with their strategies.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = DatabaseList), (status = 404, body = ErrorBody)))]
async fn list_databases(State(st): State<AppState>, Path((ns, p)): ProjectPath) -> ApiResult<Json<DatabaseList>> {
    let both = call(&st, move |lf| lf.project(&ns, &p)?.rag().databases()).await?;
    Ok(Json(both.into()))
}

/// Add a database to the project (201). 409 if the name is taken.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases", tag = "rag", operation_id = "database_create",
    params(("namespace" = String, Path), ("project" = String, Path)),
    request_body(content = Object, description = "A database: name, type, config, embedding_strategies, retrieval_strategies, defaults"),
    responses((status = 201, body = DatabaseCreated), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_database(State(st): State<AppState>, Path((ns, p)): ProjectPath, Json(body): Json<Value>) -> ApiResult<(StatusCode, Json<DatabaseCreated>)> {
    let summary = call(&st, move |lf| {
        let db: DatabaseConfig = llamafarm_core::config::from_json(body)?;
        lf.project(&ns, &p)?.rag().create_database(db)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(summary.into())))
}

/// One database: its config and the datasets that depend on it.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}", tag = "rag", operation_id = "database_get",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = DatabaseDetail), (status = 404, body = ErrorBody)))]
async fn get_database(State(st): State<AppState>, Path((ns, p, db)): Path<(String, String, String)>) -> ApiResult<Json<DatabaseDetail>> {
    let d = call(&st, move |lf| lf.project(&ns, &p)?.rag().database(&db)).await?;
    Ok(Json(d.into()))
}

/// Change a database's mutable fields (name and type are immutable).
#[utoipa::path(patch, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}", tag = "rag", operation_id = "database_update",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    request_body(content = Object, description = "Any of: config (merged), embedding_strategies, retrieval_strategies, default_embedding_strategy, default_retrieval_strategy"),
    responses((status = 200, body = DatabaseDetail), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_database(
    State(st): State<AppState>,
    Path((ns, p, db)): Path<(String, String, String)>,
    Json(patch): Json<Map<String, Value>>,
) -> ApiResult<Json<DatabaseDetail>> {
    let d = call(&st, move |lf| lf.project(&ns, &p)?.rag().update_database(&db, &patch)).await?;
    Ok(Json(d.into()))
}

/// Remove a database; 409 while datasets depend on it.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}", tag = "rag", operation_id = "database_delete",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path), DeleteParams),
    responses((status = 200, body = DatabaseDeleted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_database(
    State(st): State<AppState>,
    Path((ns, p, db)): Path<(String, String, String)>,
    Query(q): Query<DeleteParams>,
) -> ApiResult<Json<DatabaseDeleted>> {
    let name = db.clone();
    let (removed, deleted) = call(&st, move |lf| lf.project(&ns, &p)?.rag().delete_database(&db, q.delete_collection.unwrap_or(true))).await?;
    Ok(Json(DatabaseDeleted::new(&name, &removed, deleted)))
}

/// Documents in a database with their chunk counts.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/documents", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path), LimitParam),
    responses((status = 200, body = Vec<DocumentDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "The database's store (a Chroma server) or embedding model is unavailable", body = ErrorBody)))]
async fn documents(State(st): State<AppState>, Path((ns, p, db)): Path<(String, String, String)>, Query(q): Query<LimitParam>) -> ApiResult<Json<Vec<DocumentDto>>> {
    let limit = q.limit.unwrap_or(50);
    let docs = call(&st, move |lf| lf.project(&ns, &p)?.rag().documents(&db, limit)).await?;
    Ok(Json(docs.into_iter().map(Into::into).collect()))
}
