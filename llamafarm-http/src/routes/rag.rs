//! `/v1/projects/{namespace}/{project}/rag/*`.

use super::call;
use crate::dto::rag::{
    DatabaseCreated, DatabaseDeleted, DatabaseDetail, DatabaseList, DatabaseParam, DeleteParams, DocumentDto, LimitParam, RagHealthDto, RagQueryRequest,
    RagQueryResponse, RagStatsDto,
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
    responses((status = 200, body = RagStatsDto), (status = 404, body = ErrorBody)))]
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
    responses((status = 200, body = Vec<DocumentDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn documents(State(st): State<AppState>, Path((ns, p, db)): Path<(String, String, String)>, Query(q): Query<LimitParam>) -> ApiResult<Json<Vec<DocumentDto>>> {
    let limit = q.limit.unwrap_or(50);
    let docs = call(&st, move |lf| lf.project(&ns, &p)?.rag().documents(&db, limit)).await?;
    Ok(Json(docs.into_iter().map(Into::into).collect()))
}
