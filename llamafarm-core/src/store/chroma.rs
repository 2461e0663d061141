//! [`ChromaStore`]: vectors in a Chroma server (`chroma run`, the HTTP API v2), text
//! in a local BM25 side.
//!
//! Chroma holds each chunk's vector, text and (flattened) metadata in one collection,
//! created with the database's distance. Chroma has no ranked full-text search of its
//! own in the open-source server (its `where_document` is a match filter, not a
//! ranking), so keyword and hybrid retrieval run on a text-only [`EmbeddedStore`]
//! beside it in the database directory: the same tantivy BM25 the embedded store uses.
//! That side also answers `get`, `list` and the document statistics, so those cost no
//! round trip.
//!
//! Writes go to Chroma first, then to the side; a failure in between leaves chunks the
//! side does not know, and the next add of the same file writes them again (Chroma's
//! add ignores ids it holds). A server that cannot be reached or answers an error is
//! [`Error::NotAvailable`] (HTTP 503) naming `host:port`; nothing falls back to a
//! local vector index.

use super::embedded::{similarity, EmbeddedStore};
use super::{AddReport, ChunkRecord, ChunkStore, Hit, MetadataFilter, Metric, StoreStats, StoredChunk};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

/// Where a [`ChromaStore`] lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChromaConfig {
    /// Server host (`localhost`, `10.0.0.5`, `chroma.internal`).
    pub host: String,
    /// Server port (Chroma's default is 8000).
    pub port: u16,
    /// Collection name: 3 to 512 characters of `[a-zA-Z0-9._-]`, starting and ending alphanumeric.
    pub collection: String,
    /// Chroma tenant.
    pub tenant: String,
    /// Chroma database.
    pub database: String,
    /// Per-request timeout in seconds.
    pub timeout_s: u64,
}

impl ChromaConfig {
    /// A config for `host:port` and a collection in the default tenant and database.
    pub fn new(host: &str, port: u16, collection: &str) -> Self {
        Self {
            host: host.to_string(),
            port,
            collection: collection.to_string(),
            tenant: "default_tenant".into(),
            database: "default_database".into(),
            timeout_s: 30,
        }
    }

    /// `host:port`, as errors name the server.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether `name` is a collection name Chroma accepts.
    pub fn valid_collection(name: &str) -> bool {
        let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        (3..=512).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && ok_end(name.chars().next())
            && ok_end(name.chars().last())
    }
}

/// Time limit of a delete request (dropping a large collection).
const DELETE_TIMEOUT: Duration = Duration::from_secs(600);

/// The metadata key under which a chunk's source file hash is kept in Chroma.
const FILE_KEY: &str = "lf_file_hash";

/// A chunk store on a Chroma server, with a local BM25 side (see the module docs).
pub struct ChromaStore {
    cfg: ChromaConfig,
    /// `http://host:port/api/v2`.
    api: String,
    collection_id: RwLock<String>,
    metric: Metric,
    dim: RwLock<Option<usize>>,
    /// Largest batch the server takes in one add.
    max_batch: usize,
    text: EmbeddedStore,
    /// Metadata keys some chunk holds a non-scalar value under (kept in Chroma as JSON
    /// text, so filters on them are applied here, not sent to the server).
    nested_keys: RwLock<HashSet<String>>,
    agent: ureq::Agent,
}

impl ChromaStore {
    /// Connect to the server, create the collection if it does not exist (with
    /// `metric`), and open the BM25 side in `dir`.
    pub fn open(dir: &Path, cfg: ChromaConfig, metric: Metric) -> Result<Self> {
        if !ChromaConfig::valid_collection(&cfg.collection) {
            return Err(Error::invalid(
                "collection_name",
                format!(
                    "'{}' is not a Chroma collection name (3-512 characters of a-z, A-Z, 0-9, '.', '_', '-', starting and ending with a letter or digit)",
                    cfg.collection
                ),
            ));
        }
        if metric == Metric::Manhattan {
            return Err(Error::invalid("distance_function", "manhattan is not a Chroma distance (cosine, l2, ip)"));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(cfg.timeout_s.max(1))))
            .timeout_connect(Some(Duration::from_secs(cfg.timeout_s.clamp(1, 5))))
            .http_status_as_error(false)
            .build()
            .into();
        let api = format!("http://{}:{}/api/v2", cfg.host, cfg.port);
        let mut store = Self {
            cfg,
            api,
            collection_id: RwLock::new(String::new()),
            metric,
            dim: RwLock::new(None),
            max_batch: 256,
            text: EmbeddedStore::open_text_only(&dir.join("keyword"))?,
            nested_keys: RwLock::new(HashSet::new()),
            agent,
        };
        if let Ok(Some(v)) = store.call("GET", "pre-flight-checks", None) {
            // The server's record limit, and at most 256 records a request: a request of
            // thousands of 384-float vectors in JSON (tens of MB) is cut off by the server.
            store.max_batch = v["max_batch_size"].as_u64().map_or(256, |n| n.clamp(1, 256) as usize);
        }
        store.attach()?;
        let mut nested = HashSet::new();
        for c in store.text.list(usize::MAX, 0)? {
            nested.extend(c.metadata.iter().filter(|(_, v)| v.is_array() || v.is_object()).map(|(k, _)| k.clone()));
        }
        *store.nested_keys.write().unwrap_or_else(|p| p.into_inner()) = nested;
        Ok(store)
    }

    /// The server this store talks to.
    pub fn config(&self) -> &ChromaConfig {
        &self.cfg
    }

    fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::unavailable(format!("Chroma server {}", self.cfg.endpoint()), reason)
    }

    /// One request: `None` when the server answers 404 (no such collection); a
    /// transport failure or another error status is [`Error::NotAvailable`].
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let url = format!("{}/{path}", self.api);
        let sent = match (method, body) {
            ("POST", Some(b)) => self.agent.post(&url).send_json(b),
            // Dropping a collection takes the server a while when it is large (over 30 s
            // at 100,000 records): deletes get a longer limit than searches and writes.
            ("DELETE", _) => self.agent.delete(&url).config().timeout_global(Some(DELETE_TIMEOUT.max(Duration::from_secs(self.cfg.timeout_s)))).build().call(),
            _ => self.agent.get(&url).call(),
        };
        let mut resp = sent.map_err(|e| self.unavailable(format!("unreachable: {e}")))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| self.unavailable(format!("sent an unreadable answer ({status}): {e}")))?;
        let v: Value = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            return Ok(Some(v));
        }
        if status.as_u16() == 404 {
            return Ok(None);
        }
        let msg = v["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        Err(self.unavailable(format!("answered {status}: {msg}")))
    }

    fn collections_path(&self) -> String {
        format!("tenants/{}/databases/{}/collections", self.cfg.tenant, self.cfg.database)
    }

    /// Get or create the collection; remember its id and dimension.
    fn attach(&self) -> Result<()> {
        let space = match self.metric {
            Metric::L2 => "l2",
            Metric::Ip => "ip",
            _ => "cosine",
        };
        let body = json!({"name": self.cfg.collection, "metadata": {"hnsw:space": space}, "get_or_create": true});
        let c = self
            .call("POST", &self.collections_path(), Some(&body))?
            .ok_or_else(|| self.unavailable(format!("has no tenant '{}' with database '{}'", self.cfg.tenant, self.cfg.database)))?;
        let id = c["id"].as_str().ok_or_else(|| self.unavailable(format!("created collection '{}' without an id", self.cfg.collection)))?;
        let have = c["configuration_json"]["hnsw"]["space"].as_str().or(c["metadata"]["hnsw:space"].as_str()).unwrap_or(space);
        if have != space {
            return Err(Error::invalid(
                "distance_function",
                format!("is {space}, but Chroma collection '{}' on {} was created with {have}", self.cfg.collection, self.cfg.endpoint()),
            ));
        }
        *self.collection_id.write().unwrap_or_else(|p| p.into_inner()) = id.to_string();
        *self.dim.write().unwrap_or_else(|p| p.into_inner()) = c["dimension"].as_u64().map(|d| d as usize);
        Ok(())
    }

    /// A request on the collection; when the server no longer has it (deleted from
    /// outside), the collection is created again and the request retried once.
    fn on_collection(&self, op: &str, body: &Value) -> Result<Value> {
        for attempt in 0..2 {
            let id = self.collection_id.read().unwrap_or_else(|p| p.into_inner()).clone();
            match self.call("POST", &format!("{}/{id}/{op}", self.collections_path()), Some(body))? {
                Some(v) => return Ok(v),
                None if attempt == 0 => self.attach()?,
                None => break,
            }
        }
        Err(self.unavailable(format!("lost collection '{}' again right after creating it", self.cfg.collection)))
    }

    /// Chroma metadata: scalars as they are, lists and objects as JSON text, nulls left
    /// out; plus the file hash.
    fn flatten(meta: &Map<String, Value>, file_hash: &str) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in meta {
            if k.starts_with('#') || k.starts_with('$') || k == FILE_KEY {
                continue;
            }
            match v {
                Value::Null => {}
                Value::Array(_) | Value::Object(_) => {
                    out.insert(k.clone(), Value::String(v.to_string()));
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out.insert(FILE_KEY.into(), Value::String(file_hash.into()));
        out
    }

    /// The part of `filter` Chroma evaluates exactly as we do, as a `where` clause.
    fn where_of(&self, filter: &MetadataFilter) -> Option<Value> {
        let nested = self.nested_keys.read().unwrap_or_else(|p| p.into_inner());
        let parts: Vec<Value> = filter.server_side_conditions().into_iter().filter(|(k, _)| !nested.contains(k)).map(|(k, c)| json!({ k: c })).collect();
        match parts.len() {
            0 => None,
            1 => parts.into_iter().next(),
            _ => Some(json!({"$and": parts})),
        }
    }

    /// Chroma's distance as our similarity (the embedded store's conversions).
    fn score(&self, d: f32) -> f32 {
        match self.metric {
            Metric::L2 => 1.0 / (1.0 + d / 100.0),
            Metric::Ip => ((2.0 - d) / 2.0).clamp(0.0, 1.0),
            _ => 1.0 - d / 2.0,
        }
    }

    fn fetch_vectors(&self, ids: &[String]) -> Result<Vec<Option<Vec<f32>>>> {
        let mut out = vec![None; ids.len()];
        let pos: std::collections::HashMap<&str, usize> = ids.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
        for batch in ids.chunks(self.max_batch) {
            let v = self.on_collection("get", &json!({"ids": batch, "include": ["embeddings"]}))?;
            let got = v["ids"].as_array().cloned().unwrap_or_default();
            let embs = v["embeddings"].as_array().cloned().unwrap_or_default();
            for (id, e) in got.iter().zip(embs) {
                if let (Some(&i), Some(a)) = (id.as_str().and_then(|s| pos.get(s)), e.as_array()) {
                    out[i] = Some(a.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect());
                }
            }
        }
        Ok(out)
    }
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

impl ChunkStore for ChromaStore {
    fn add(&self, chunks: Vec<ChunkRecord>) -> Result<AddReport> {
        if chunks.is_empty() {
            return Ok(AddReport::default());
        }
        // Ids the side holds are skipped, like the embedded store's dedup.
        let known: HashSet<String> = self.text.get(&chunks.iter().map(|c| c.id.clone()).collect::<Vec<_>>())?.into_iter().map(|c| c.id).collect();
        let mut seen = HashSet::new();
        let (fresh, dups): (Vec<ChunkRecord>, Vec<ChunkRecord>) = chunks.into_iter().partition(|c| !known.contains(&c.id) && seen.insert(c.id.clone()));
        let skipped_ids: Vec<String> = dups.into_iter().map(|c| c.id).collect();
        if fresh.is_empty() {
            return Ok(AddReport { added: 0, skipped: skipped_ids.len(), skipped_ids });
        }
        let dim = self.dimension().unwrap_or(fresh[0].vector.len());
        for c in &fresh {
            if c.vector.is_empty() {
                return Err(Error::invalid("embedding", "is empty and cannot be stored"));
            }
            if c.vector.len() != dim {
                return Err(Error::invalid(
                    "embedding dimension",
                    format!("mismatch: the collection holds {dim}-dimensional vectors, chunk '{}' has {}", c.id, c.vector.len()),
                ));
            }
            if c.vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid("embedding", format!("of chunk '{}' has a non-finite value", c.id)));
            }
        }
        for batch in fresh.chunks(self.max_batch) {
            let body = json!({
                "ids": batch.iter().map(|c| &c.id).collect::<Vec<_>>(),
                "embeddings": batch.iter().map(|c| &c.vector).collect::<Vec<_>>(),
                "documents": batch.iter().map(|c| &c.content).collect::<Vec<_>>(),
                "metadatas": batch.iter().map(|c| Self::flatten(&c.metadata, &c.file_hash)).collect::<Vec<_>>(),
            });
            // Upsert: a chunk the server holds from an add whose side write failed is
            // written again with the same content.
            self.on_collection("upsert", &body)?;
        }
        *self.dim.write().unwrap_or_else(|p| p.into_inner()) = Some(dim);
        {
            let mut nested = self.nested_keys.write().unwrap_or_else(|p| p.into_inner());
            for c in &fresh {
                nested.extend(c.metadata.iter().filter(|(_, v)| v.is_array() || v.is_object()).map(|(k, _)| k.clone()));
            }
        }
        let side = self.text.add(fresh)?;
        Ok(AddReport { added: side.added, skipped: skipped_ids.len() + side.skipped, skipped_ids: [skipped_ids, side.skipped_ids].concat() })
    }

    fn delete_file(&self, file_hash: &str) -> Result<usize> {
        let v = self.on_collection("delete", &json!({"where": {FILE_KEY: file_hash}}))?;
        let on_server = v["deleted"].as_u64().unwrap_or(0) as usize;
        let local = self.text.delete_file(file_hash)?;
        Ok(local.max(on_server))
    }

    fn clear(&self) -> Result<usize> {
        let n = self.text.stats()?.vector_count;
        self.call("DELETE", &format!("{}/{}", self.collections_path(), self.cfg.collection), None)?;
        self.attach()?;
        self.text.clear()?;
        Ok(n)
    }

    fn vector_search(&self, query: &[f32], k: usize, metric: Metric, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        let Some(dim) = self.dimension() else { return Ok(Vec::new()) };
        if query.len() != dim {
            return Err(Error::invalid("embedding dimension", format!("mismatch: the query vector has {} dimensions, the collection holds {dim}", query.len())));
        }
        let k = k.max(1);
        let filter = filter.filter(|f| !f.is_empty());
        let where_ = filter.and_then(|f| self.where_of(f));
        let rescore = metric != self.metric;
        // Conditions Chroma cannot apply are checked here on the side's metadata; ask
        // for more until k pass or the collection has no more.
        let mut want = k;
        let mut total: Option<usize> = None;
        loop {
            let mut body =
                json!({"query_embeddings": [query], "n_results": want, "include": if rescore { json!(["distances", "embeddings"]) } else { json!(["distances"]) }});
            if let Some(w) = &where_ {
                body["where"] = w.clone();
            }
            let v = self.on_collection("query", &body)?;
            let ids = ids_of(&v["ids"][0]);
            let dists: Vec<f32> = v["distances"][0].as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::MAX) as f32).collect()).unwrap_or_default();
            let returned = ids.len();
            let metas: Option<std::collections::HashMap<String, Map<String, Value>>> =
                filter.map(|_| self.text.get(&ids).map(|cs| cs.into_iter().map(|c| (c.id, c.metadata)).collect())).transpose()?;
            let qn = llamafarm_kernels::vector::dot(query, query).sqrt();
            let mut hits: Vec<Hit> = Vec::with_capacity(returned);
            for (i, (id, d)) in ids.into_iter().zip(dists).enumerate() {
                if let (Some(f), Some(m)) = (filter, metas.as_ref()) {
                    if !m.get(&id).is_some_and(|meta| f.matches(meta)) {
                        continue;
                    }
                }
                let score = if rescore {
                    let e: Vec<f32> = v["embeddings"][0][i].as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect()).unwrap_or_default();
                    similarity(metric, query, qn, &e, llamafarm_kernels::vector::dot(&e, &e).sqrt())
                } else {
                    self.score(d)
                };
                hits.push(Hit { id, score });
            }
            if total.is_none() && hits.len() < k && returned >= want {
                total = Some(self.text.stats()?.vector_count.max(k));
            }
            let limit = total.unwrap_or(usize::MAX);
            if hits.len() >= k || returned < want || want >= limit {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score));
                hits.truncate(k);
                return Ok(hits);
            }
            want = (want * 4).min(limit);
        }
    }

    fn keyword_search(&self, query: &str, k: usize, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        self.text.keyword_search(query, k, filter)
    }

    fn optimize(&self) -> Result<usize> {
        self.text.optimize()
    }

    fn persist(&self) {
        self.text.persist();
    }

    fn similarities(&self, query: &[f32], ids: &[String], metric: Metric) -> Result<Vec<Option<f32>>> {
        let qn = llamafarm_kernels::vector::dot(query, query).sqrt();
        Ok(self
            .fetch_vectors(ids)?
            .into_iter()
            .map(|v| v.filter(|v| v.len() == query.len()).map(|v| similarity(metric, query, qn, &v, llamafarm_kernels::vector::dot(&v, &v).sqrt())))
            .collect())
    }

    fn get(&self, ids: &[String]) -> Result<Vec<StoredChunk>> {
        self.text.get(ids)
    }

    fn vectors(&self, ids: &[String]) -> Result<Vec<Option<Vec<f32>>>> {
        self.fetch_vectors(ids)
    }

    fn list(&self, limit: usize, offset: usize) -> Result<Vec<StoredChunk>> {
        self.text.list(limit, offset)
    }

    fn ids(&self) -> Result<Vec<String>> {
        self.text.ids()
    }

    fn stats(&self) -> Result<StoreStats> {
        let id = self.collection_id.read().unwrap_or_else(|p| p.into_inner()).clone();
        let count = self.call("GET", &format!("{}/{id}/count", self.collections_path()), None)?.and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let side = self.text.stats()?;
        Ok(StoreStats {
            vector_count: count,
            document_count: side.document_count,
            storage_bytes: side.storage_bytes,
            embedding_dimension: self.dimension(),
            ann_index: true,
            graph_rows: count,
            tombstones: 0,
            text_index_bytes: side.text_index_bytes,
            memory_bytes: side.memory_bytes,
            mapped_bytes: 0,
        })
    }

    fn dimension(&self) -> Option<usize> {
        *self.dim.read().unwrap_or_else(|p| p.into_inner())
    }

    fn metric(&self) -> Metric {
        self.metric
    }
}
