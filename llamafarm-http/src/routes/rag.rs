//! `/v1/projects/{namespace}/{project}/rag/*`.

use super::blocking;
use crate::error::{ApiResult, ErrorBody, Json, Path, Query};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use llamafarm_core::config::DatabaseConfig;
use llamafarm_core::rag::{RagQuery, RagResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
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
    request_body = RagQuery,
    responses((status = 200, body = RagResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn query(State(st): State<AppState>, Path((ns, p)): ProjectPath, Json(q): Json<RagQuery>) -> ApiResult<Json<RagResponse>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(lf.project(&ns, &p)?.rag().query(&q)?))).await
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DatabaseParam {
    /// Database (default: the project's default database).
    database: Option<String>,
}

/// Real checks of the store and the embedder, with latency.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/health", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), DatabaseParam),
    responses((status = 200, description = "Health of the database's components", body = Object), (status = 404, body = ErrorBody)))]
async fn health(State(st): State<AppState>, Path((ns, p)): ProjectPath, Query(d): Query<DatabaseParam>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(serde_json::to_value(lf.project(&ns, &p)?.rag().health(d.database.as_deref())?).unwrap_or_default()))).await
}

/// Vector count, storage, embedding dimension of a database.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/stats", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), DatabaseParam),
    responses((status = 200, description = "Database statistics", body = Object), (status = 404, body = ErrorBody)))]
async fn stats(State(st): State<AppState>, Path((ns, p)): ProjectPath, Query(d): Query<DatabaseParam>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(serde_json::to_value(lf.project(&ns, &p)?.rag().stats(d.database.as_deref())?).unwrap_or_default()))).await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DatabaseList {
    #[schema(value_type = Vec<Object>)]
    databases: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_database: Option<String>,
}

/// The project's databases with their strategies.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = DatabaseList), (status = 404, body = ErrorBody)))]
async fn list_databases(State(st): State<AppState>, Path((ns, p)): ProjectPath) -> ApiResult<Json<DatabaseList>> {
    let lf = st.lf.clone();
    blocking(move || {
        let (list, default_database) = lf.project(&ns, &p)?.rag().databases()?;
        Ok(Json(DatabaseList { databases: list.iter().map(|d| serde_json::to_value(d).unwrap_or_default()).collect(), default_database }))
    })
    .await
}

/// Add a database to the project (201). 409 if the name is taken.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/rag/databases", tag = "rag", operation_id = "database_create",
    params(("namespace" = String, Path), ("project" = String, Path)),
    request_body(content = Object, description = "A database: name, type, config, embedding_strategies, retrieval_strategies, defaults"),
    responses((status = 201, description = "Created", body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_database(State(st): State<AppState>, Path((ns, p)): ProjectPath, Json(body): Json<Value>) -> ApiResult<(StatusCode, Json<Value>)> {
    let lf = st.lf.clone();
    blocking(move || {
        let db: DatabaseConfig = llamafarm_core::config::from_json(body)?;
        let summary = lf.project(&ns, &p)?.rag().create_database(db)?;
        Ok((StatusCode::CREATED, Json(json!({"database": summary}))))
    })
    .await
}

/// One database: its config and the datasets that depend on it.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}", tag = "rag", operation_id = "database_get",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    responses((status = 200, description = "Database", body = Object), (status = 404, body = ErrorBody)))]
async fn get_database(State(st): State<AppState>, Path((ns, p, db)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(serde_json::to_value(lf.project(&ns, &p)?.rag().database(&db)?).unwrap_or_default()))).await
}

/// Change a database's mutable fields (name and type are immutable).
#[utoipa::path(patch, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}", tag = "rag", operation_id = "database_update",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path)),
    request_body(content = Object, description = "Any of: config (merged), embedding_strategies, retrieval_strategies, default_embedding_strategy, default_retrieval_strategy"),
    responses((status = 200, description = "Updated database", body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_database(
    State(st): State<AppState>,
    Path((ns, p, db)): Path<(String, String, String)>,
    Json(patch): Json<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(serde_json::to_value(lf.project(&ns, &p)?.rag().update_database(&db, &patch)?).unwrap_or_default()))).await
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DeleteParams {
    /// Also delete the index on disk (default true).
    delete_collection: Option<bool>,
}

/// Remove a database; 409 while datasets depend on it.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}", tag = "rag", operation_id = "database_delete",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path), DeleteParams),
    responses((status = 200, description = "Deleted", body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_database(
    State(st): State<AppState>,
    Path((ns, p, db)): Path<(String, String, String)>,
    Query(q): Query<DeleteParams>,
) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let (removed, deleted) = lf.project(&ns, &p)?.rag().delete_database(&db, q.delete_collection.unwrap_or(true))?;
        Ok(Json(json!({
            "message": format!("Database '{db}' deleted successfully"),
            "database": removed,
            "collection_deleted": deleted,
        })))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct LimitParam {
    /// 1..=1000, default 50.
    limit: Option<i64>,
}

/// Documents in a database with their chunk counts.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/rag/databases/{database}/documents", tag = "rag",
    params(("namespace" = String, Path), ("project" = String, Path), ("database" = String, Path), LimitParam),
    responses((status = 200, description = "Documents", body = Vec<Object>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn documents(
    State(st): State<AppState>,
    Path((ns, p, db)): Path<(String, String, String)>,
    Query(q): Query<LimitParam>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(llamafarm_core::Error::Invalid(format!("limit must be between 1 and 1000, got {limit}")).into());
    }
    let lf = st.lf.clone();
    blocking(move || Ok(Json(serde_json::to_value(lf.project(&ns, &p)?.rag().documents(&db, limit as usize)?).unwrap_or_default()))).await
}
