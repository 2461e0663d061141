//! Retrieval-augmented generation: per-project databases, retrieval strategies
//! and the query API.
//!
//! ```no_run
//! use llamafarm_core::{LlamaFarm, rag::{RagQuery, NewChunk}};
//! # fn main() -> llamafarm_core::Result<()> {
//! let lf = LlamaFarm::open("/tmp/lf-data")?;
//! let project = lf.projects().create("acme", "docs", None)?;
//! let rag = project.rag();
//! rag.add_texts("main_database", vec![NewChunk::new("f00d", 0, "Neural scaling laws relate loss to compute.")])?;
//! let resp = rag.query(&RagQuery::new("what are scaling laws?"))?;
//! println!("{} via {}: {}", resp.database_used, resp.retrieval_strategy_used, resp.results[0].content);
//! # Ok(()) }
//! ```
//!
//! Strategies (`type` in `retrieval_strategies`):
//! - `BasicSimilarityStrategy` / `VectorRetriever`: vector search (cosine, l2, ip,
//!   manhattan; the original's distance-to-score conversions), `score_threshold`.
//! - `BM25Retriever`: keyword search with BM25 (tantivy).
//! - `HybridUniversalStrategy` / `HybridRetriever`: BM25 fused with vector search, by
//!   reciprocal rank fusion (`combination_method: rank_fusion`, the default) or by
//!   `hybrid_alpha` weighting of min-max normalised scores (`weighted_average`).
//!   The original's hybrid only fused vector searches; ours is real keyword + vector.
//! - `MetadataFilteredStrategy`: `filters` + request filters, `filter_mode` pre or post,
//!   `fallback_multiplier`.
//! - `MultiQueryStrategy`: several query variants run concurrently, merged
//!   (`aggregation` max|mean|weighted|reciprocal_rank), deduplicated by content.
//! - `RerankedStrategy`: `initial_k` candidates rescored by `rerank_factors`
//!   (similarity, recency, length, metadata).
//! - `CrossEncoderRerankedStrategy`: `initial_k` candidates from `base_strategy`,
//!   rescored by a candle cross-encoder (`model_name`), min-max normalised,
//!   `relevance_threshold`, `final_k`. A missing cross-encoder falls back to
//!   embedding similarity and says so in `notes`.
//! - `MultiTurnRAGStrategy`: complex queries split into sub-queries (at most
//!   `max_sub_queries`), each retrieved, merged and deduplicated.

mod databases;
pub mod engine;
pub mod eval;
pub mod maintenance;
pub mod rerank;
mod strategy;

pub use databases::{DatabaseInfo, DatabaseSummary, DocumentSummary, StrategySummary};
pub use engine::{RagEngine, StoreBackend};
pub use strategy::{StrategyKind, DEFAULT_TOP_K};

use crate::config::{DatabaseConfig, EmbeddingStrategyConfig, LlamaFarmConfig};
use crate::embed::{Embedder, EmbedderSpec};
use crate::error::{Error, ResourceKind, Result};
use crate::health::{self, ComponentHealth, HealthStatus};
use crate::store::{ChromaConfig, ChunkRecord, ChunkStore, Metric, StoreStats};
use crate::Project;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Largest `top_k` a query may ask for.
pub const MAX_TOP_K: usize = 100;

/// A retrieval request: the fields of `POST .../rag/query`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RagQuery {
    /// The text to search for.
    pub query: String,
    /// Database name (default: the project's default database).
    #[serde(default)]
    pub database: Option<String>,
    /// Accepted for compatibility; retrieval does not depend on it.
    #[serde(default)]
    pub data_processing_strategy: Option<String>,
    /// A strategy name of the database, a strategy type, or `vector` / `bm25` / `hybrid`.
    #[serde(default)]
    pub retrieval_strategy: Option<String>,
    /// Results to return, 1..=100 (default: the strategy's, else 5).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Minimum score, 0..=1.
    #[serde(default)]
    pub score_threshold: Option<f64>,
    /// Metadata conditions (see [`crate::store::MetadataFilter`]).
    #[serde(default)]
    pub metadata_filters: Option<Value>,
    /// cosine, euclidean/l2, dot/ip, manhattan.
    #[serde(default)]
    pub distance_metric: Option<String>,
    /// Weight of vector scores in hybrid search, 0..=1 (0 = BM25 only, 1 = vectors only).
    #[serde(default)]
    pub hybrid_alpha: Option<f64>,
    /// Rerank the results with this cross-encoder (a `runtime.models` name or a model id).
    #[serde(default)]
    pub rerank_model: Option<String>,
    /// Also search simple variants of the query.
    #[serde(default)]
    pub query_expansion: Option<bool>,
    /// Cut each result's content to about this many tokens (4 characters each).
    #[serde(default)]
    pub max_tokens: Option<i64>,
}

impl RagQuery {
    /// A query with defaults for everything else.
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into(), ..Default::default() }
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone, Serialize)]
pub struct RagResult {
    /// Chunk text.
    pub content: String,
    /// Score, higher is better (0..1 for every strategy).
    pub score: f32,
    /// Chunk metadata.
    pub metadata: Map<String, Value>,
    /// Chunk id.
    pub chunk_id: String,
    /// The source document (its file hash unless metadata says otherwise).
    pub document_id: String,
}

/// The answer to a [`RagQuery`].
#[derive(Debug, Clone, Serialize)]
pub struct RagResponse {
    /// The query text.
    pub query: String,
    /// Best first.
    pub results: Vec<RagResult>,
    /// `results.len()`.
    pub total_results: usize,
    /// Wall time of the whole query.
    pub processing_time_ms: f64,
    /// The strategy that ran (its name in the config, or its type).
    pub retrieval_strategy_used: String,
    /// The database searched.
    pub database_used: String,
    /// Anything the caller should know (e.g. a reranker fallback).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A chunk to index: text plus metadata; its vector is computed by the database's embedder.
#[derive(Debug, Clone)]
pub struct NewChunk {
    /// Chunk id.
    pub id: String,
    /// Source file hash.
    pub file_hash: String,
    /// Text.
    pub content: String,
    /// Metadata.
    pub metadata: Map<String, Value>,
}

impl NewChunk {
    /// A chunk with the original's id scheme `{file_hash[:16]}_{i:04}`.
    pub fn new(file_hash: &str, index: usize, content: impl Into<String>) -> Self {
        let prefix: String = file_hash.chars().take(16).collect();
        Self { id: format!("{prefix}_{index:04}"), file_hash: file_hash.into(), content: content.into(), metadata: Map::new() }
    }

    /// With metadata.
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Statistics of one database.
#[derive(Debug, Clone, Serialize)]
pub struct RagStats {
    /// Database name.
    pub database: String,
    /// Live chunks.
    pub vector_count: usize,
    /// Distinct source documents.
    pub document_count: usize,
    /// Bytes on disk.
    pub storage_bytes: u64,
    /// e.g. `1.2 MB`.
    pub storage_human: String,
    /// Vector length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<usize>,
    /// `config.collection_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection_name: Option<String>,
    /// Distance the index was created with.
    pub distance_metric: Metric,
    /// Whether an HNSW graph serves vector search (else exact scan).
    pub ann_index: bool,
    /// Deleted chunks awaiting compaction of the vector graph.
    pub tombstones: usize,
    /// Chunks in the index (the same count as `vector_count`).
    pub chunk_count: usize,
    /// Bytes on disk of the text index (text, metadata, stored vectors).
    pub index_bytes: u64,
    /// Estimated resident memory of the database's in-memory side (metadata, HNSW graph).
    pub memory_bytes: u64,
    /// e.g. `120.5 MB`.
    pub memory_human: String,
    /// Bytes of vectors read through a memory-mapped file (page cache, not `memory_bytes`).
    pub mapped_bytes: u64,
    /// e.g. `1.4 GB`.
    pub mapped_human: String,
    /// Store backend.
    pub store: String,
    /// RFC 3339 time of the last change on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}

/// Health of a database's components.
#[derive(Debug, Clone, Serialize)]
pub struct RagHealth {
    /// Worst component status.
    pub status: HealthStatus,
    /// Database checked.
    pub database: String,
    /// By component name.
    pub components: Map<String, Value>,
    /// RFC 3339.
    pub last_check: String,
    /// Problems found, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<String>>,
}

/// A database ready to use: its config, store and embedder.
pub(crate) struct OpenDb {
    pub config: DatabaseConfig,
    pub store: Arc<dyn ChunkStore>,
    pub embedder: Arc<dyn Embedder>,
}

/// RAG operations on one project: `project.rag()`.
pub struct Rag {
    project: Project,
}

impl Project {
    /// Retrieval on this project.
    pub fn rag(&self) -> Rag {
        Rag { project: self.clone() }
    }
}

impl Rag {
    fn engine(&self) -> &RagEngine {
        self.project.llamafarm().rag_engine()
    }

    /// The project config with `${VAR}` substituted (what the engines use).
    pub(crate) fn config(&self) -> Result<LlamaFarmConfig> {
        self.project.config_substituted()
    }

    /// Directory of a database's store.
    pub fn store_dir(&self, database: &str) -> PathBuf {
        self.project.dir().join("lf_data").join("stores").join(database)
    }

    fn database_config(cfg: &LlamaFarmConfig, name: Option<&str>) -> Result<DatabaseConfig> {
        match name {
            Some(n) => cfg.database(n).cloned().ok_or_else(|| {
                let have: Vec<&str> = cfg.databases().iter().map(|d| d.name.as_str()).collect();
                Error::missing_in(ResourceKind::Database, n, format!("(available: {})", if have.is_empty() { "none".into() } else { have.join(", ") }))
            }),
            None => cfg
                .default_database()
                .cloned()
                .ok_or_else(|| Error::invalid("rag.databases", "is empty: the project has no RAG databases (add one under rag.databases)")),
        }
    }

    /// The embedding strategy a database indexes with: `default_embedding_strategy`,
    /// else the one with the lowest priority.
    pub(crate) fn embedding_strategy(cfg: &LlamaFarmConfig, db: &DatabaseConfig) -> Result<EmbeddingStrategyConfig> {
        let mut list = cfg.embedding_strategies_of(db);
        if list.is_empty() {
            // The original falls back to its default embedder too.
            return Ok(EmbeddingStrategyConfig { name: "default".into(), kind: "UniversalEmbedder".into(), ..Default::default() });
        }
        if let Some(d) = &db.default_embedding_strategy {
            if let Some(s) = list.iter().find(|s| &s.name == d) {
                return Ok(s.clone());
            }
        }
        list.sort_by_key(|s| s.priority.unwrap_or(0));
        Ok(list.remove(0))
    }

    fn metric_of(db: &DatabaseConfig) -> Result<Metric> {
        match db.config.as_ref().and_then(|c| c.get("distance_function").or_else(|| c.get("distance"))).and_then(|v| v.as_str()) {
            None => Ok(Metric::Cosine),
            Some(s) => Metric::parse(s).ok_or_else(|| Error::invalid("distance_function", format!("'{s}' of database '{}' is unknown (cosine, l2, ip)", db.name))),
        }
    }

    /// Where a database's chunks live: a `ChromaStore` with a `host` is a Chroma
    /// server; every other database is the embedded store.
    pub fn backend_of(db: &DatabaseConfig) -> Result<StoreBackend> {
        let c = db.config.as_ref();
        let host = c.and_then(|c| c.get("host")).and_then(|v| v.as_str()).map(str::trim).filter(|h| !h.is_empty());
        let Some(host) = host.filter(|_| db.kind == "ChromaStore") else { return Ok(StoreBackend::Embedded) };
        let port = match c.and_then(|c| c.get("port")) {
            None | Some(Value::Null) => 8000,
            Some(v) => v
                .as_u64()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| Error::invalid(format!("rag.databases['{}'].config.port", db.name), format!("must be a port number (1-65535), got {v}")))?
                as u16,
        };
        let collection = c.and_then(|c| c.get("collection_name")).and_then(|v| v.as_str()).unwrap_or("documents");
        let mut cfg = ChromaConfig::new(host, port, collection);
        if let Some(t) = c.and_then(|c| c.get("timeout")).and_then(|v| v.as_u64()) {
            cfg.timeout_s = t.max(1);
        }
        Ok(StoreBackend::Chroma(cfg))
    }

    /// The open store of a database.
    pub(crate) fn store_of(&self, db: &DatabaseConfig) -> Result<Arc<dyn ChunkStore>> {
        self.engine().store(&self.store_dir(&db.name), &Self::backend_of(db)?, Self::metric_of(db)?)
    }

    /// The embedder of a strategy; an `OpenAIEmbedder` without an `api_key` gets the library's OpenAI key.
    fn embedder_spec(&self, s: &EmbeddingStrategyConfig) -> Result<EmbedderSpec> {
        let mut spec = EmbedderSpec::from_strategy(s)?;
        if let EmbedderSpec::Http { api_key: key @ None, .. } = &mut spec {
            if s.kind == "OpenAIEmbedder" {
                key.clone_from(&self.project.llamafarm().llm().settings().openai_api_key);
            }
        }
        Ok(spec)
    }

    pub(crate) fn open(&self, cfg: &LlamaFarmConfig, database: Option<&str>) -> Result<OpenDb> {
        let db = Self::database_config(cfg, database)?;
        let spec = self.embedder_spec(&Self::embedding_strategy(cfg, &db)?)?;
        let models = self.project.llamafarm().models();
        let embedder = self.engine().embedder(&spec, models)?;
        let store = self.store_of(&db)?;
        if let (Some(sd), d) = (store.dimension(), embedder.dimension()) {
            if d != 0 && sd != d {
                return Err(Error::invalid(
                    "embedding dimension",
                    format!(
                        "mismatch: database '{}' holds {sd}-dimensional vectors but its embedder '{}' produces {d}; \
                     delete and re-ingest the database, or switch back to the embedder it was built with",
                        db.name,
                        embedder.model_id()
                    ),
                ));
            }
        }
        Ok(OpenDb { config: db, store, embedder })
    }

    /// Embed texts with `model` (a local model id), or with the embedder of the
    /// project's default database when `model` is `None`.
    pub fn embed(&self, model: Option<&str>, texts: &[&str]) -> Result<crate::runtime::Embeddings> {
        match model.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => self.project.llamafarm().embed(m, texts),
            None => {
                if texts.is_empty() {
                    return Err(Error::invalid("input", "must not be empty"));
                }
                let cfg = self.config()?;
                let db = Self::database_config(&cfg, None)?;
                let spec = self.embedder_spec(&Self::embedding_strategy(&cfg, &db)?)?;
                let e = self.engine().embedder(&spec, self.project.llamafarm().models())?;
                let vectors = e.embed(texts)?;
                let prompt_tokens = texts.iter().map(|t| e.count_tokens(t).unwrap_or_else(|| t.split_whitespace().count())).sum();
                Ok(crate::runtime::Embeddings { model: e.model_id().to_string(), vectors, prompt_tokens })
            }
        }
    }

    /// Embed and index chunks in a database. Chunks whose id is present are skipped.
    pub fn add_texts(&self, database: &str, chunks: Vec<NewChunk>) -> Result<crate::store::AddReport> {
        let cfg = self.config()?;
        let db = self.open(&cfg, Some(database))?;
        self.add_with(&db, chunks)
    }

    /// Index chunks whose vectors were computed elsewhere (they must come from the
    /// database's embedder: the dimension is checked, the model cannot be).
    pub fn add_records(&self, database: &str, records: Vec<ChunkRecord>) -> Result<crate::store::AddReport> {
        let cfg = self.config()?;
        let db = self.open(&cfg, Some(database))?;
        let d = db.embedder.dimension();
        if let Some(bad) = records.iter().find(|r| d != 0 && r.vector.len() != d) {
            return Err(Error::invalid(
                "embedding dimension",
                format!("mismatch: chunk '{}' has {} dimensions, the database's embedder produces {d}", bad.id, bad.vector.len()),
            ));
        }
        db.store.add(records)
    }

    /// Index chunks embedded elsewhere (by an `lf worker`) straight into a database's
    /// store: no embedder is loaded here; the store checks the dimension against what it
    /// holds, and ids already present are skipped.
    pub fn store_records(&self, database: &str, records: Vec<ChunkRecord>) -> Result<crate::store::AddReport> {
        let cfg = self.project.config()?;
        let db = Self::database_config(&cfg, Some(database))?;
        self.store_of(&db)?.add(records)
    }

    pub(crate) fn add_with(&self, db: &OpenDb, chunks: Vec<NewChunk>) -> Result<crate::store::AddReport> {
        let texts: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
        let vectors = db.embedder.embed(&texts)?;
        let records = chunks
            .into_iter()
            .zip(vectors)
            .map(|(c, vector)| ChunkRecord { id: c.id, file_hash: c.file_hash, content: c.content, metadata: c.metadata, vector })
            .collect();
        db.store.add(records)
    }

    /// Compact a database's index after a bulk load (see [`ChunkStore::optimize`]);
    /// ingestion tasks call it when they finish. Returns the segments merged.
    pub fn optimize(&self, database: &str) -> Result<usize> {
        let cfg = self.project.config()?;
        let db = Self::database_config(&cfg, Some(database))?;
        let store = self.store_of(&db)?;
        store.optimize()
    }

    /// Delete every chunk of a file from a database.
    pub fn delete_file(&self, database: &str, file_hash: &str) -> Result<usize> {
        let cfg = self.project.config()?;
        let db = Self::database_config(&cfg, Some(database))?;
        let store = self.store_of(&db)?;
        store.delete_file(file_hash)
    }

    /// Run a query.
    pub fn query(&self, q: &RagQuery) -> Result<RagResponse> {
        let t = Instant::now();
        let cfg = self.config()?;
        let mut resp = strategy::run(self, &cfg, q)?;
        resp.processing_time_ms = t.elapsed().as_secs_f64() * 1000.0;
        Ok(resp)
    }

    /// Statistics of a database (default: the default database).
    pub fn stats(&self, database: Option<&str>) -> Result<RagStats> {
        let cfg = self.project.config()?;
        let db = Self::database_config(&cfg, database)?;
        let dir = self.store_dir(&db.name);
        let backend = Self::backend_of(&db)?;
        let store = self.store_of(&db)?;
        let st: StoreStats = store.stats()?;
        let metric = store.metric();
        let side = if backend == StoreBackend::Embedded { dir.join("tantivy/meta.json") } else { dir.join("keyword/tantivy/meta.json") };
        let last_updated = std::fs::metadata(side).and_then(|m| m.modified()).ok().map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
        Ok(RagStats {
            database: db.name.clone(),
            vector_count: st.vector_count,
            document_count: st.document_count,
            storage_bytes: st.storage_bytes,
            storage_human: crate::system::human_size(st.storage_bytes),
            embedding_dimension: st.embedding_dimension,
            collection_name: db.config.as_ref().and_then(|c| c.get("collection_name")).and_then(|v| v.as_str()).map(String::from),
            distance_metric: metric,
            ann_index: st.ann_index,
            tombstones: st.tombstones,
            chunk_count: st.vector_count,
            index_bytes: st.text_index_bytes,
            memory_bytes: st.memory_bytes,
            memory_human: crate::system::human_size(st.memory_bytes),
            mapped_bytes: st.mapped_bytes,
            mapped_human: crate::system::human_size(st.mapped_bytes),
            store: backend.describe(),
            last_updated,
        })
    }

    /// Real checks of a database's store and embedder, with latency.
    pub fn health(&self, database: Option<&str>) -> Result<RagHealth> {
        let cfg = self.config()?;
        let db = Self::database_config(&cfg, database)?;
        let mut comps: Vec<ComponentHealth> = Vec::new();
        let mut store_ok = None;
        let backend = Self::backend_of(&db);
        comps.push(health::timed("vector_store", || match self.store_of(&db) {
            Ok(s) => match s.stats() {
                Ok(st) => {
                    store_ok = Some(s);
                    let name = backend.as_ref().map(StoreBackend::describe).unwrap_or_default();
                    (HealthStatus::Healthy, format!("{name} operational ({} chunks)", st.vector_count), None)
                }
                Err(e) => (HealthStatus::Unhealthy, e.to_string(), None),
            },
            Err(e) => (HealthStatus::Unhealthy, e.to_string(), None),
        }));
        comps.push(health::timed("embeddings", || {
            let spec = match Self::embedding_strategy(&cfg, &db).and_then(|s| self.embedder_spec(&s)) {
                Ok(s) => s,
                Err(e) => return (HealthStatus::Unhealthy, e.to_string(), None),
            };
            match self.engine().embedder(&spec, self.project.llamafarm().models()).and_then(|e| e.embed_one("health check").map(|v| (e, v))) {
                Ok((e, v)) => {
                    let dim_ok = store_ok.as_ref().and_then(|s| s.dimension()).is_none_or(|d| d == v.len());
                    if dim_ok {
                        (HealthStatus::Healthy, format!("{} operational ({} dimensions)", e.model_id(), v.len()), None)
                    } else {
                        (HealthStatus::Unhealthy, format!("{} produces {} dimensions; the index holds a different size", e.model_id(), v.len()), None)
                    }
                }
                Err(e @ Error::ModelMissing { .. }) => (HealthStatus::Degraded, e.to_string(), None),
                Err(e) => (HealthStatus::Unhealthy, e.to_string(), None),
            }
        }));
        let report = crate::HealthReport::from_components(comps.clone());
        let issues: Vec<String> = comps.iter().filter(|c| c.status != HealthStatus::Healthy).map(|c| format!("{}: {}", c.name, c.message)).collect();
        let mut components = Map::new();
        for c in comps {
            components.insert(c.name.clone(), serde_json::json!({"name": c.name, "status": c.status, "latency": c.latency_ms, "message": c.message}));
        }
        Ok(RagHealth {
            status: report.status,
            database: db.name,
            components,
            last_check: report.timestamp,
            issues: if issues.is_empty() { None } else { Some(issues) },
        })
    }
}

#[cfg(test)]
mod tests;
