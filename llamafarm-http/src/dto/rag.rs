//! Bodies of `/v1/projects/{namespace}/{project}/rag/*`.

use super::HealthStatusDto;
use llamafarm_core::config::DatabaseConfig;
use llamafarm_core::rag::{DatabaseInfo, DatabaseSummary, DocumentSummary, RagHealth, RagQuery, RagResponse, RagResult, RagStats, StrategySummary};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// Body of `POST .../rag/query`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct RagQueryRequest {
    /// The text to search for.
    query: String,
    /// Database name (default: the project's default database).
    #[serde(default)]
    database: Option<String>,
    /// Accepted for compatibility; retrieval does not depend on it.
    #[serde(default)]
    data_processing_strategy: Option<String>,
    /// A strategy name of the database, a strategy type, or `vector` / `bm25` / `hybrid`.
    #[serde(default)]
    retrieval_strategy: Option<String>,
    /// Results to return, 1..=100 (default: the strategy's, else 5).
    #[serde(default)]
    top_k: Option<i64>,
    /// Minimum score, 0..=1.
    #[serde(default)]
    score_threshold: Option<f64>,
    /// Metadata conditions: `{"field": value}` or `{"field": {"$op": value}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata_filters: Option<Value>,
    /// cosine, euclidean/l2, dot/ip, manhattan.
    #[serde(default)]
    distance_metric: Option<String>,
    /// Weight of vector scores in hybrid search, 0..=1 (0 = BM25 only, 1 = vectors only).
    #[serde(default)]
    hybrid_alpha: Option<f64>,
    /// Rerank the results with this cross-encoder (a `runtime.models` name or a model id).
    #[serde(default)]
    rerank_model: Option<String>,
    /// Also search simple variants of the query.
    #[serde(default)]
    query_expansion: Option<bool>,
    /// Cut each result's content to about this many tokens (4 characters each).
    #[serde(default)]
    max_tokens: Option<i64>,
}

impl From<RagQueryRequest> for RagQuery {
    fn from(q: RagQueryRequest) -> Self {
        RagQuery {
            query: q.query,
            database: q.database,
            data_processing_strategy: q.data_processing_strategy,
            retrieval_strategy: q.retrieval_strategy,
            top_k: q.top_k,
            score_threshold: q.score_threshold,
            metadata_filters: q.metadata_filters,
            distance_metric: q.distance_metric,
            hybrid_alpha: q.hybrid_alpha,
            rerank_model: q.rerank_model,
            query_expansion: q.query_expansion,
            max_tokens: q.max_tokens,
        }
    }
}

/// One retrieved chunk.
#[derive(Serialize, ToSchema)]
pub(crate) struct RagResultDto {
    /// Chunk text.
    content: String,
    /// Score, higher is better (0..1 for every strategy).
    score: f32,
    /// Chunk metadata.
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    chunk_id: String,
    /// The source document (its file hash unless metadata says otherwise).
    document_id: String,
}

impl From<RagResult> for RagResultDto {
    fn from(r: RagResult) -> Self {
        Self { content: r.content, score: r.score, metadata: r.metadata, chunk_id: r.chunk_id, document_id: r.document_id }
    }
}

impl From<&RagResult> for RagResultDto {
    fn from(r: &RagResult) -> Self {
        r.clone().into()
    }
}

/// The answer to a query.
#[derive(Serialize, ToSchema)]
pub(crate) struct RagQueryResponse {
    query: String,
    /// Best first.
    results: Vec<RagResultDto>,
    total_results: usize,
    /// Wall time of the whole query.
    processing_time_ms: f64,
    /// The strategy that ran (its name in the config, or its type).
    retrieval_strategy_used: String,
    database_used: String,
    /// Anything the caller should know (e.g. a reranker fallback); absent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

impl From<RagResponse> for RagQueryResponse {
    fn from(r: RagResponse) -> Self {
        Self {
            query: r.query,
            results: r.results.into_iter().map(Into::into).collect(),
            total_results: r.total_results,
            processing_time_ms: r.processing_time_ms,
            retrieval_strategy_used: r.retrieval_strategy_used,
            database_used: r.database_used,
            notes: r.notes,
        }
    }
}

/// Query of the routes that take a database.
#[derive(Deserialize, IntoParams)]
pub(crate) struct DatabaseParam {
    /// Database (default: the project's default database).
    pub(crate) database: Option<String>,
}

/// `GET .../rag/health`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RagHealthDto {
    /// Worst component status.
    status: HealthStatusDto,
    database: String,
    /// Each component's check, by name.
    #[schema(value_type = Object)]
    components: Map<String, Value>,
    /// RFC 3339.
    last_check: String,
    /// Problems found, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    issues: Option<Vec<String>>,
}

impl From<RagHealth> for RagHealthDto {
    fn from(h: RagHealth) -> Self {
        Self { status: h.status.into(), database: h.database, components: h.components, last_check: h.last_check, issues: h.issues }
    }
}

/// `GET .../rag/stats`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RagStatsDto {
    database: String,
    /// Live chunks.
    vector_count: usize,
    /// Distinct source documents.
    document_count: usize,
    /// Bytes on disk.
    storage_bytes: u64,
    /// e.g. `1.2 MB`.
    storage_human: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding_dimension: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection_name: Option<String>,
    /// `cosine`, `l2`, `ip` or `manhattan`.
    distance_metric: String,
    /// Whether an HNSW graph serves vector search (else exact scan).
    ann_index: bool,
    /// Deleted chunks awaiting compaction of the vector graph.
    tombstones: usize,
    /// Chunks in the index (the same count as `vector_count`).
    chunk_count: usize,
    /// Bytes on disk of the text index (text, metadata, stored vectors).
    index_bytes: u64,
    /// Estimated resident memory of the database's in-memory side (metadata, HNSW graph).
    memory_bytes: u64,
    /// e.g. `120.5 MB`.
    memory_human: String,
    /// Bytes of vectors read through a memory-mapped file: they live in the page cache,
    /// which keeps what memory can spare (not counted in `memory_bytes`).
    mapped_bytes: u64,
    /// e.g. `1.4 GB`.
    mapped_human: String,
    /// Store backend.
    store: String,
    /// RFC 3339 time of the last change on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_updated: Option<String>,
}

impl From<RagStats> for RagStatsDto {
    fn from(s: RagStats) -> Self {
        let distance_metric = serde_json::to_value(s.distance_metric).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        Self {
            database: s.database,
            vector_count: s.vector_count,
            document_count: s.document_count,
            storage_bytes: s.storage_bytes,
            storage_human: s.storage_human,
            embedding_dimension: s.embedding_dimension,
            collection_name: s.collection_name,
            distance_metric,
            ann_index: s.ann_index,
            tombstones: s.tombstones,
            chunk_count: s.chunk_count,
            index_bytes: s.index_bytes,
            memory_bytes: s.memory_bytes,
            memory_human: s.memory_human,
            mapped_bytes: s.mapped_bytes,
            mapped_human: s.mapped_human,
            store: s.store,
            last_updated: s.last_updated,
        }
    }
}

/// A strategy in a database listing.
#[derive(Serialize, ToSchema)]
pub(crate) struct StrategySummaryDto {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    /// Priority (embedding strategies).
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
    is_default: bool,
}

impl From<StrategySummary> for StrategySummaryDto {
    fn from(s: StrategySummary) -> Self {
        Self { name: s.name, kind: s.kind, priority: s.priority, is_default: s.is_default }
    }
}

/// A database with its strategies.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatabaseSummaryDto {
    name: String,
    /// Store type.
    #[serde(rename = "type")]
    kind: String,
    /// Whether it is the project's default database.
    is_default: bool,
    embedding_strategies: Vec<StrategySummaryDto>,
    retrieval_strategies: Vec<StrategySummaryDto>,
}

impl From<DatabaseSummary> for DatabaseSummaryDto {
    fn from(d: DatabaseSummary) -> Self {
        Self {
            name: d.name,
            kind: d.kind,
            is_default: d.is_default,
            embedding_strategies: d.embedding_strategies.into_iter().map(Into::into).collect(),
            retrieval_strategies: d.retrieval_strategies.into_iter().map(Into::into).collect(),
        }
    }
}

/// `GET .../rag/databases`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatabaseList {
    databases: Vec<DatabaseSummaryDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_database: Option<String>,
}

impl From<(Vec<DatabaseSummary>, Option<String>)> for DatabaseList {
    fn from((list, default_database): (Vec<DatabaseSummary>, Option<String>)) -> Self {
        Self { databases: list.into_iter().map(Into::into).collect(), default_database }
    }
}

/// `POST .../rag/databases` (201).
#[derive(Serialize, ToSchema)]
pub(crate) struct DatabaseCreated {
    database: DatabaseSummaryDto,
}

impl From<DatabaseSummary> for DatabaseCreated {
    fn from(d: DatabaseSummary) -> Self {
        Self { database: d.into() }
    }
}

/// A database config as written in `llamafarm.yaml` (`name`, `type`, `config`,
/// `embedding_strategies`, `retrieval_strategies`, defaults, ...).
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub(crate) struct DatabaseConfigDto(Value);

impl From<&DatabaseConfig> for DatabaseConfigDto {
    fn from(c: &DatabaseConfig) -> Self {
        Self(serde_json::to_value(c).unwrap_or_default())
    }
}

/// A database in detail: its config's fields plus `dependent_datasets`.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub(crate) struct DatabaseDetail(Map<String, Value>);

impl From<DatabaseInfo> for DatabaseDetail {
    fn from(d: DatabaseInfo) -> Self {
        let mut m = match serde_json::to_value(&d.config) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        m.insert("dependent_datasets".into(), d.dependent_datasets.into());
        Self(m)
    }
}

/// Query of `DELETE .../rag/databases/{database}`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct DeleteParams {
    /// Also delete the index on disk (default true).
    pub(crate) delete_collection: Option<bool>,
}

/// `DELETE .../rag/databases/{database}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatabaseDeleted {
    message: String,
    /// The removed database's config.
    database: DatabaseConfigDto,
    /// Whether the index on disk was deleted.
    collection_deleted: bool,
}

impl DatabaseDeleted {
    pub(crate) fn new(name: &str, removed: &DatabaseConfig, collection_deleted: bool) -> Self {
        Self { message: format!("Database '{name}' deleted successfully"), database: removed.into(), collection_deleted }
    }
}

/// Query of `GET .../documents`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct LimitParam {
    /// 1..=1000, default 50.
    pub(crate) limit: Option<i64>,
}

/// One source document in a database.
#[derive(Serialize, ToSchema)]
pub(crate) struct DocumentDto {
    /// File hash.
    id: String,
    /// Original file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    /// Chunks in the index.
    chunk_count: usize,
    /// Size of the source file.
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<u64>,
    /// Parser that produced the chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    parser_used: Option<String>,
    /// When it was processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    date_ingested: Option<Value>,
    /// Document-level metadata (from its first chunk), if any.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

impl From<DocumentSummary> for DocumentDto {
    fn from(d: DocumentSummary) -> Self {
        Self {
            id: d.id,
            filename: d.filename,
            chunk_count: d.chunk_count,
            size_bytes: d.size_bytes,
            parser_used: d.parser_used,
            date_ingested: d.date_ingested,
            metadata: d.metadata,
        }
    }
}

/// `POST .../rag/databases/{database}/compact|clear|reindex` and `.../documents/delete`.
#[derive(Serialize, ToSchema)]
pub(crate) struct MaintenanceResponse {
    pub(crate) database: String,
    /// compact: text-index segments merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) segments_merged: Option<usize>,
    /// clear, delete: chunks removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) chunks_deleted: Option<usize>,
    /// delete: documents removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) documents_deleted: Option<usize>,
    /// reindex: the processing tasks started (one per dataset of the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) task_ids: Option<Vec<String>>,
}

impl MaintenanceResponse {
    pub(crate) fn new(database: String) -> Self {
        Self { database, segments_merged: None, chunks_deleted: None, documents_deleted: None, task_ids: None }
    }
}

/// `POST .../rag/databases/{database}/documents/delete`: documents matching any list.
#[derive(Deserialize, ToSchema)]
pub(crate) struct DeleteDocumentsRequest {
    /// Document ids (file hashes).
    #[serde(default)]
    pub(crate) ids: Vec<String>,
    /// File names.
    #[serde(default)]
    pub(crate) filenames: Vec<String>,
    /// Metadata values a chunk must all have.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) metadata: serde_json::Map<String, serde_json::Value>,
}

/// `POST .../rag/databases/{database}/import`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RagImportResponse {
    pub(crate) database: String,
    pub(crate) imported: usize,
    pub(crate) skipped: usize,
    pub(crate) documents: usize,
}
