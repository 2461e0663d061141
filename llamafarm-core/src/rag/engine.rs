//! Process-wide caches of loaded embedders, rerankers and open stores, shared by
//! every project of a [`crate::LlamaFarm`] handle.

use crate::embed::{BertEmbedder, CandleEmbedder, Embedder, EmbedderSpec, HttpEmbedder, Prefixed};
use crate::error::{Error, Result};
use crate::model_cache::ModelCache;
use crate::rag::rerank::CrossEncoder;
use crate::store::{ChromaConfig, ChromaStore, ChunkStore, EmbeddedStore, Metric};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

type Slot<T> = Arc<OnceLock<std::result::Result<Arc<T>, String>>>;

/// Where a database's chunks live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreBackend {
    /// [`EmbeddedStore`] in the database directory (the default, and `ChromaStore`
    /// without a `host`, as the original's embedded Chroma).
    Embedded,
    /// [`ChromaStore`] on a Chroma server, with its BM25 side in the database directory.
    Chroma(ChromaConfig),
}

impl StoreBackend {
    /// How stats and health name the backend.
    pub fn describe(&self) -> String {
        match self {
            StoreBackend::Embedded => "embedded (tantivy BM25 + HNSW)".into(),
            StoreBackend::Chroma(c) => format!("chroma server {} (collection '{}'; keyword search: local tantivy BM25)", c.endpoint(), c.collection),
        }
    }
}

/// Loaded models and open stores. One per [`crate::LlamaFarm`].
#[derive(Default)]
pub struct RagEngine {
    embedders: Mutex<HashMap<String, Slot<dyn Embedder>>>,
    rerankers: Mutex<HashMap<String, Slot<CrossEncoder>>>,
    stores: Mutex<HashMap<PathBuf, (StoreBackend, Arc<dyn ChunkStore>)>>,
}

impl RagEngine {
    /// The embedder for a spec, loaded once and shared. Concurrent first calls wait
    /// for one load instead of loading twice.
    pub fn embedder(&self, spec: &EmbedderSpec, models: &ModelCache) -> Result<Arc<dyn Embedder>> {
        let slot = {
            let mut map = self.embedders.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(spec.cache_key()).or_default().clone()
        };
        let loaded = slot.get_or_init(|| load_embedder(spec, models).map_err(|e| e.to_string()));
        match loaded {
            Ok(e) => {
                if let Some(d) = spec.declared_dimension() {
                    let actual = e.dimension();
                    if actual != 0 && actual != d {
                        return Err(Error::invalid(
                            "embedding dimension",
                            format!("mismatch: the config declares dimension {d}, but model '{}' produces {actual}", e.model_id()),
                        ));
                    }
                }
                Ok(e.clone())
            }
            Err(msg) => {
                // Do not cache failures (the model may be fetched later).
                self.embedders.lock().unwrap_or_else(|p| p.into_inner()).remove(&spec.cache_key());
                if let EmbedderSpec::Local { model, .. } = spec {
                    // Report a bad id or a missing model as such, not as "unavailable".
                    models.resolve(crate::embed::split_precision(model).0)?;
                }
                Err(Error::unavailable("model", msg.clone()))
            }
        }
    }

    /// A cross-encoder by model id, loaded once.
    pub fn cross_encoder(&self, model: &str, models: &ModelCache) -> Result<Arc<CrossEncoder>> {
        let slot = {
            let mut map = self.rerankers.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(model.to_string()).or_default().clone()
        };
        match slot.get_or_init(|| models.resolve(model).and_then(|m| CrossEncoder::load(&m.dir, model)).map(Arc::new).map_err(|e| e.to_string())) {
            Ok(c) => Ok(c.clone()),
            Err(msg) => {
                self.rerankers.lock().unwrap_or_else(|p| p.into_inner()).remove(model);
                Err(Error::unavailable("model", msg.clone()))
            }
        }
    }

    /// The store of the database in `dir`, opened once per backend (a config that
    /// moves the database to another backend opens that one).
    pub fn store(&self, dir: &Path, backend: &StoreBackend, metric: Metric) -> Result<Arc<dyn ChunkStore>> {
        {
            let mut map = self.stores.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(dir) {
                Some((b, s)) if b == backend => return Ok(s.clone()),
                _ if *backend == StoreBackend::Embedded => {
                    // Opened under the lock: two writers on one tantivy index cannot coexist.
                    let s: Arc<dyn ChunkStore> = Arc::new(EmbeddedStore::open(dir, metric)?);
                    map.insert(dir.to_path_buf(), (backend.clone(), s.clone()));
                    return Ok(s);
                }
                _ => {}
            }
        }
        let StoreBackend::Chroma(cfg) = backend else { unreachable!("the embedded backend returned above") };
        // A server round trip: not under the lock, so a slow server does not stall other databases.
        let opened: Arc<dyn ChunkStore> = Arc::new(ChromaStore::open(dir, cfg.clone(), metric)?);
        let mut map = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(dir) {
            Some((b, s)) if b == backend => Ok(s.clone()),
            _ => {
                map.insert(dir.to_path_buf(), (backend.clone(), opened.clone()));
                Ok(opened)
            }
        }
    }

    /// The stores open now, with their directories.
    pub fn open_stores(&self) -> Vec<(PathBuf, Arc<dyn ChunkStore>)> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(d, (_, s))| (d.clone(), s.clone())).collect()
    }

    /// Whether a store directory exists on disk (without opening it).
    pub fn store_exists(dir: &Path) -> bool {
        dir.join("tantivy").is_dir()
    }

    /// Close every store under `prefix` (before its directory is deleted).
    pub fn forget_stores_under(&self, prefix: &Path) {
        self.stores.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| !k.starts_with(prefix));
    }
}

fn load_embedder(spec: &EmbedderSpec, models: &ModelCache) -> Result<Arc<dyn Embedder>> {
    match spec {
        EmbedderSpec::Local { model, batch_size, document_prefix, query_prefix, .. } => {
            let (base, precision) = crate::embed::split_precision(model);
            let m = models.resolve(base)?;
            let t = std::time::Instant::now();
            // BERT on our own encoder; nomic-bert, XLM-RoBERTa and ModernBERT on candle.
            let e: Arc<dyn Embedder> = if CandleEmbedder::supports(&m.dir) {
                Arc::new(CandleEmbedder::load(&m.dir, model, *batch_size)?)
            } else {
                Arc::new(BertEmbedder::load_with(&m.dir, model, *batch_size, precision)?)
            };
            tracing::info!(model = %model, ?precision, secs = t.elapsed().as_secs_f64(), "loaded embedding model");
            if document_prefix.is_none() && query_prefix.is_none() {
                return Ok(e);
            }
            Ok(Arc::new(Prefixed { document: document_prefix.clone().unwrap_or_default(), query: query_prefix.clone().unwrap_or_default(), inner: e }))
        }
        EmbedderSpec::Http { base_url, base_urls, max_retries, model, api_key, dimension, batch_size, timeout_s } => {
            let urls: Vec<String> = std::iter::once(base_url.clone()).chain(base_urls.iter().cloned()).collect();
            Ok(Arc::new(HttpEmbedder::fleet(&urls, model, api_key.clone(), *dimension, *batch_size, *timeout_s, *max_retries)))
        }
    }
}
