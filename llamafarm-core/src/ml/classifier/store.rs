//! Storage and memory: the model directory format (`metadata.json`, `head.json`,
//! the sentence-transformers files), the listing of stored classifiers, name
//! resolution (`-latest` included), and the table of loaded classifiers.

use super::{head, Classifiers, Prediction};
use crate::embed::{BertEmbedder, Embedder};
use crate::error::{file_name, Error, ResourceKind, Result};
use crate::ml::registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Format tag of `metadata.json`.
pub(super) const FORMAT: &str = "llamafarm-setfit/1";

/// `metadata.json` of a stored classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Metadata {
    pub(super) format: String,
    pub(super) name: String,
    pub(super) base_name: String,
    pub(super) base_model: String,
    pub(super) labels: Vec<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    pub(super) created: String,
    pub(super) samples_fitted: usize,
    pub(super) num_iterations: usize,
    pub(super) batch_size: usize,
    pub(super) num_epochs: usize,
    pub(super) learning_rate: f64,
    pub(super) seed: u64,
    pub(super) num_pairs: usize,
    pub(super) training_time_ms: f64,
}

/// A classifier in memory.
pub(crate) struct LoadedClassifier {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) embedder: BertEmbedder,
    pub(super) head: head::LogisticHead,
}

impl LoadedClassifier {
    pub(super) fn load(dir: &Path, name: &str) -> Result<Self> {
        let _meta: Metadata = read_json(&dir.join("metadata.json"))?;
        let head: head::LogisticHead = read_json(&dir.join("head.json"))?;
        head.validate().map_err(|e| Error::internal(format!("classifier '{name}': {e}")))?;
        let embedder = BertEmbedder::load(dir, name, 16)?;
        if embedder.dimension() != head.dim {
            return Err(Error::internal(format!("classifier '{name}': head dimension {} differs from the body's {}", head.dim, embedder.dimension())));
        }
        Ok(Self { name: name.to_string(), dir: dir.to_path_buf(), embedder, head })
    }

    /// Probabilities for each text; each distinct text is embedded once.
    pub(super) fn predict(&self, texts: &[String]) -> Result<Vec<Prediction>> {
        let mut uniq: Vec<&str> = texts.iter().map(String::as_str).collect();
        uniq.sort_unstable();
        uniq.dedup();
        let vecs = self.embedder.embed(&uniq)?;
        let index: HashMap<&str, usize> = uniq.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        Ok(texts
            .iter()
            .map(|t| {
                let p = self.head.predict_proba(&vecs[index[t.as_str()]]);
                let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a))).unwrap_or(0);
                Prediction {
                    text: t.clone(),
                    label: self.head.labels[best].clone(),
                    score: p[best],
                    all_scores: self.head.labels.iter().cloned().zip(p.iter().copied()).collect(),
                }
            })
            .collect())
    }
}

/// Loaded classifiers by name. The lock is held only to look up or swap entries,
/// never while training or embedding.
#[derive(Default)]
pub(crate) struct ClassifierState {
    loaded: RwLock<HashMap<String, Arc<LoadedClassifier>>>,
    /// Serialises the final rename of a fitted model into place.
    pub(super) commit: Mutex<()>,
}

impl ClassifierState {
    pub(super) fn get(&self, name: &str) -> Option<Arc<LoadedClassifier>> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
    pub(super) fn insert(&self, c: LoadedClassifier) -> Arc<LoadedClassifier> {
        let c = Arc::new(c);
        self.loaded.write().unwrap_or_else(|e| e.into_inner()).insert(c.name.clone(), c.clone());
        c
    }
    pub(super) fn remove(&self, name: &str) -> bool {
        self.loaded.write().unwrap_or_else(|e| e.into_inner()).remove(name).is_some()
    }
    pub(super) fn names(&self) -> Vec<String> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::parse(file_name(path), e.to_string()))
}

pub(super) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Copy the sentence-transformers files (everything but the weights) of `base` into `dst`.
pub(super) fn copy_model_files(base: &Path, dst: &Path) -> Result<()> {
    fn walk(src: &Path, dst: &Path, top: bool) -> Result<()> {
        std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
        for entry in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
            let entry = entry.map_err(|e| Error::io(src, e))?;
            let name = entry.file_name();
            let name_s = name.to_string_lossy();
            let from = entry.path();
            // Weights other than the safetensors we write (pytorch_model.bin, onnx/, ...) are not copied.
            let skip = name_s.starts_with('.')
                || (top
                    && (name_s == "model.safetensors"
                        || name_s.ends_with(".bin")
                        || name_s.ends_with(".onnx")
                        || name_s == "onnx"
                        || name_s == "openvino"
                        || name_s.ends_with(".h5")
                        || name_s.ends_with(".msgpack")
                        || name_s.ends_with(".ot")));
            if skip {
                continue;
            }
            let meta = std::fs::metadata(&from).map_err(|e| Error::io(&from, e))?; // follows the cache's symlinks
            if meta.is_dir() {
                walk(&from, &dst.join(&name), false)?;
            } else if meta.len() < 64 << 20 {
                std::fs::copy(&from, dst.join(&name)).map_err(|e| Error::io(&from, e))?;
            }
        }
        Ok(())
    }
    walk(base, dst, true)
}

impl Classifiers<'_> {
    pub(super) fn state(&self) -> &ClassifierState {
        &self.lf.ml_state().classifier
    }

    /// Names of the classifiers stored on disk (complete directories only).
    pub(super) fn stored(&self) -> Vec<String> {
        let dir = self.dir();
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                (!name.starts_with('.') && e.path().join("head.json").is_file() && e.path().join("metadata.json").is_file()).then_some(name)
            })
            .collect();
        out.sort();
        out
    }

    /// Resolve a requested name (`-latest` included) to a stored or loaded one.
    pub(super) fn resolve(&self, requested: &str) -> Result<String> {
        let plain = requested.strip_suffix(registry::LATEST_SUFFIX).unwrap_or(requested);
        registry::validate_name(plain)?;
        let mut known = self.stored();
        known.extend(self.state().names());
        known.sort();
        known.dedup();
        registry::resolve(requested, &known).ok_or_else(|| Error::missing(ResourceKind::Classifier, requested))
    }

    /// The loaded classifier `name` (already resolved), loading it from disk if needed.
    pub(super) fn loaded(&self, name: &str) -> Result<Arc<LoadedClassifier>> {
        if let Some(c) = self.state().get(name) {
            return Ok(c);
        }
        let dir = self.dir().join(name);
        if !dir.join("head.json").is_file() {
            return Err(Error::missing(ResourceKind::Classifier, name));
        }
        Ok(self.state().insert(LoadedClassifier::load(&dir, name)?))
    }
}
