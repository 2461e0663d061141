//! Chunk stores: the [`ChunkStore`] trait, the embedded default ([`EmbeddedStore`]) and
//! [`ChromaStore`] on a Chroma server.
//!
//! The embedded store keeps one index per RAG database on disk: tantivy holds the
//! text (BM25), the metadata, the stored content and each chunk's vector; vectors
//! are also held in memory for search (exact scan, plus an HNSW graph from
//! `hnsw_rs` once the index is large). Tantivy's commit is the only durable
//! state, so after a `kill -9` the store reopens at the last commit with text and
//! vectors in agreement by construction. Deleting a file's chunks deletes them in
//! tantivy and tombstones them in the vector graph (rebuilt when tombstones pile up).

mod chroma;
mod embedded;
mod filter;
mod graph;

pub use chroma::{ChromaConfig, ChromaStore};
pub use embedded::{EmbeddedStore, HNSW_THRESHOLD};
pub use filter::MetadataFilter;

use crate::error::Result;
use serde::Serialize;
use serde_json::{Map, Value};

pub(crate) use llamafarm_kernels::par::join_here;

/// A chunk to store.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChunkRecord {
    /// Chunk id, e.g. `{file_hash[:16]}_{i:04}`.
    pub id: String,
    /// SHA-256 of the source file (chunks are deleted by it).
    pub file_hash: String,
    /// The text.
    pub content: String,
    /// Metadata (document name, page, ...).
    pub metadata: Map<String, Value>,
    /// The embedding.
    pub vector: Vec<f32>,
}

/// A stored chunk, without its vector.
#[derive(Debug, Clone, Serialize)]
pub struct StoredChunk {
    /// Chunk id.
    pub id: String,
    /// Source file hash.
    pub file_hash: String,
    /// The text.
    pub content: String,
    /// Metadata.
    pub metadata: Map<String, Value>,
}

/// A search hit: a chunk id and its score (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Chunk id.
    pub id: String,
    /// Similarity in 0..1 for vector search (the original's conversions), raw BM25 for keyword search.
    pub score: f32,
}

/// Vector similarity measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine; score `1 - d/2` with `d = 1 - cos`.
    Cosine,
    /// Squared euclidean; score `1 / (1 + d/100)`.
    L2,
    /// Inner product; score `clamp((1 + dot) / 2)`.
    Ip,
    /// L1; score `1 / (1 + d)`.
    Manhattan,
}

impl Metric {
    /// Parse the names configs use: cosine, l2/euclidean, ip/dot, manhattan.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Some(Metric::Cosine),
            "l2" | "euclidean" => Some(Metric::L2),
            "ip" | "dot" | "inner_product" => Some(Metric::Ip),
            "manhattan" | "l1" => Some(Metric::Manhattan),
            _ => None,
        }
    }
}

/// What an add did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AddReport {
    /// Chunks written.
    pub added: usize,
    /// Chunks whose id was already present (deduplicated).
    pub skipped: usize,
    /// The ids of those chunks.
    #[serde(skip)]
    pub skipped_ids: Vec<String>,
}

/// Size and shape of a store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    /// Live chunks.
    pub vector_count: usize,
    /// Distinct source files.
    pub document_count: usize,
    /// Bytes on disk.
    pub storage_bytes: u64,
    /// Vector length (None while empty).
    pub embedding_dimension: Option<usize>,
    /// Whether the HNSW graph is built (else exact search).
    pub ann_index: bool,
    /// Rows the HNSW graph holds (later rows are scanned exactly until inserted).
    pub graph_rows: usize,
    /// Deleted chunks not yet compacted out of the vector graph.
    pub tombstones: usize,
    /// Bytes on disk of the text index (tantivy: text, metadata and stored vectors).
    pub text_index_bytes: u64,
    /// Estimated resident bytes of the in-memory side (metadata, graph, vectors not in a
    /// mapped file).
    pub memory_bytes: u64,
    /// Bytes of vectors read through a memory-mapped scratch file: they live in the page
    /// cache, which keeps what memory can spare (not counted in `memory_bytes`).
    pub mapped_bytes: u64,
}

/// Where chunks and their vectors live. The embedded store is the default; a
/// server-backed store (Qdrant, Chroma server) implements the same trait.
pub trait ChunkStore: Send + Sync {
    /// Add chunks; ids already present are skipped. Vectors must all have the store's dimension.
    fn add(&self, chunks: Vec<ChunkRecord>) -> Result<AddReport>;
    /// Delete every chunk of a file; returns how many.
    fn delete_file(&self, file_hash: &str) -> Result<usize>;
    /// Delete everything; returns how many.
    fn clear(&self) -> Result<usize>;
    /// Nearest chunks to `query`.
    fn vector_search(&self, query: &[f32], k: usize, metric: Metric, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>>;
    /// BM25 over the chunk text.
    fn keyword_search(&self, query: &str, k: usize, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>>;
    /// Hybrid candidates: the `k` nearest by vector (when `vector` is given) and the `k`
    /// best by BM25 (when `text` is given), searched concurrently so a hybrid query
    /// costs the slower of the two rather than their sum.
    fn hybrid_candidates(
        &self,
        vector: Option<&[f32]>,
        text: Option<&str>,
        k: usize,
        metric: Metric,
        filter: Option<&MetadataFilter>,
    ) -> Result<(Vec<Hit>, Vec<Hit>)> {
        let (v, t) =
            join_here(|| vector.map(|q| self.vector_search(q, k, metric, filter)).transpose(), || text.map(|t| self.keyword_search(t, k, filter)).transpose());
        Ok((v?.unwrap_or_default(), t?.unwrap_or_default()))
    }
    /// Compact the index after a bulk load (the embedded store merges the text-index
    /// segments written since its largest one, or all of them when none holds half the
    /// documents, so a BM25 query walks one or two sets of postings instead of one per
    /// commit, and purges deleted documents). Returns how many segments were
    /// merged; stores without such a notion do nothing.
    fn optimize(&self) -> Result<usize> {
        Ok(0)
    }
    /// Write what lets the next open of this store be quick (the embedded store's rows
    /// and graph files, which it also writes when it is dropped); called when the process
    /// stops. The store stays usable. Failures are logged: they only cost a slower open.
    fn persist(&self) {}
    /// Similarity of `query` to each chunk by id, from stored vectors (None for unknown ids).
    fn similarities(&self, query: &[f32], ids: &[String], metric: Metric) -> Result<Vec<Option<f32>>>;
    /// Fetch chunks by id (missing ids are left out).
    fn get(&self, ids: &[String]) -> Result<Vec<StoredChunk>>;
    /// The stored vectors of chunks by id (None for unknown ids).
    fn vectors(&self, ids: &[String]) -> Result<Vec<Option<Vec<f32>>>>;
    /// Some chunks, in insertion order.
    fn list(&self, limit: usize, offset: usize) -> Result<Vec<StoredChunk>>;
    /// Every chunk's id, in insertion order (an export walks them in batches).
    fn ids(&self) -> Result<Vec<String>> {
        Ok(self.list(usize::MAX, 0)?.into_iter().map(|c| c.id).collect())
    }
    /// Counts and sizes.
    fn stats(&self) -> Result<StoreStats>;
    /// Vector length, once known.
    fn dimension(&self) -> Option<usize>;
    /// The metric the store was created with.
    fn metric(&self) -> Metric;
}

#[cfg(test)]
mod tests;
