//! Model storage: `{data}/models/anomaly/{name}_{backend}.json` files (written
//! atomically, read back whole or as a header), name resolution against stored and
//! loaded models (`-latest` included), and the in-memory table of loaded models.

use super::backend::Backend;
use super::model::{AnomalyModel, Normalization, FORMAT};
use super::Anomaly;
use crate::error::{file_name, Error, ResourceKind, Result};
use crate::ml::registry;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Loaded anomaly detectors, by (name, backend).
#[derive(Default)]
pub(crate) struct AnomalyState {
    models: RwLock<HashMap<(String, Backend), Arc<AnomalyModel>>>,
    /// Serialises naming and writing of model files.
    pub(super) write: Mutex<()>,
}

impl AnomalyState {
    pub(super) fn get(&self, key: &(String, Backend)) -> Option<Arc<AnomalyModel>> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }
    pub(super) fn insert(&self, m: Arc<AnomalyModel>) {
        self.models.write().unwrap_or_else(|e| e.into_inner()).insert((m.name.clone(), m.backend), m);
    }
    pub(super) fn remove(&self, key: &(String, Backend)) {
        self.models.write().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
    pub(super) fn keys(&self) -> Vec<(String, Backend)> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

/// `{name}_{backend}.json`.
pub fn model_filename(name: &str, backend: Backend) -> String {
    format!("{name}_{}.json", backend.as_str())
}

/// The (name, backend) a model file name stands for.
pub fn parse_filename(filename: &str) -> Option<(String, Backend)> {
    let stem = filename.strip_suffix(".json")?;
    Backend::ALL.into_iter().find_map(|b| {
        let name = stem.strip_suffix(b.as_str())?.strip_suffix('_')?;
        registry::validate_name(name).ok().map(|_| (name.to_string(), b))
    })
}

/// Metadata of a model file, without the detector.
#[derive(Deserialize)]
struct Header {
    name: String,
    backend: Backend,
    #[serde(default)]
    created: String,
    #[serde(default)]
    description: Option<String>,
    normalization: Normalization,
    input_dim: usize,
    samples_fitted: usize,
}

/// `name` without a `_{YYYYmmdd_HHMMSS}[_{n}]` version suffix.
pub fn base_of(name: &str) -> String {
    let parts: Vec<&str> = name.rsplitn(4, '_').collect();
    // Try "{base}_{date}_{time}_{n}" then "{base}_{date}_{time}".
    for k in [3usize, 2] {
        if parts.len() > k {
            let base = name[..name.len() - parts[..k].iter().map(|p| p.len() + 1).sum::<usize>()].to_string();
            if !base.is_empty() && registry::is_version_of(name, &base) {
                return base;
            }
        }
    }
    name.to_string()
}

/// Several models answer to one name: the caller must say which backend.
fn ambiguous(name: &str, backends: impl Iterator<Item = Backend>) -> Error {
    Error::invalid(
        "backend",
        format!("is required: model '{name}' exists for several backends ({}); pass `backend`", backends.map(|b| b.as_str()).collect::<Vec<_>>().join(", ")),
    )
}

impl Anomaly<'_> {
    pub(super) fn state(&self) -> &AnomalyState {
        &self.lf.ml_state().anomaly
    }

    pub(super) fn path(&self, name: &str, backend: Backend) -> PathBuf {
        self.dir().join(model_filename(name, backend))
    }

    /// (name, backend, path) of every stored model file, sorted.
    pub(super) fn stored(&self) -> Result<Vec<(String, Backend, PathBuf)>> {
        let dir = self.dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let f = ent.file_name();
            let Some(f) = f.to_str() else { continue };
            if f.starts_with('.') {
                continue;
            }
            if let Some((n, b)) = parse_filename(f) {
                out.push((n, b, ent.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Resolve a requested name (`-latest` allowed) against stored and loaded models.
    pub(super) fn locate(&self, model: &str, backend: Option<Backend>) -> Result<(String, Backend)> {
        let mut all: Vec<(String, Backend)> = self.stored()?.into_iter().map(|(n, b, _)| (n, b)).collect();
        all.extend(self.state().keys());
        all.sort();
        all.dedup();
        if let Some(b) = backend {
            all.retain(|(_, x)| *x == b);
        }
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        let what = || match backend {
            Some(b) => Error::missing_in(ResourceKind::AnomalyModel, model, format!("(backend {b})")),
            None => Error::missing(ResourceKind::AnomalyModel, model),
        };
        let name = registry::resolve(model, &names).ok_or_else(what)?;
        let backends: Vec<Backend> = all.iter().filter(|(n, _)| *n == name).map(|(_, b)| *b).collect();
        match backends.as_slice() {
            [b] => Ok((name, *b)),
            [] => Err(what()),
            many => Err(ambiguous(&name, many.iter().copied())),
        }
    }

    /// Resolve a requested name against the stored files only: (name, backend, path).
    pub(super) fn locate_stored(&self, model: &str, backend: Option<Backend>) -> Result<(String, Backend, PathBuf)> {
        let mut stored = self.stored()?;
        if let Some(b) = backend {
            stored.retain(|(_, x, _)| *x == b);
        }
        let names: Vec<String> = stored.iter().map(|(n, _, _)| n.clone()).collect();
        let name = registry::resolve(model, &names).ok_or_else(|| Error::missing_in(ResourceKind::AnomalyModel, model, "among the saved models"))?;
        let mut matches: Vec<(String, Backend, PathBuf)> = stored.into_iter().filter(|(n, _, _)| *n == name).collect();
        if matches.len() == 1 {
            return Ok(matches.remove(0));
        }
        Err(ambiguous(&name, matches.iter().map(|m| m.1)))
    }

    pub(super) fn read_file(path: &Path) -> Result<AnomalyModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let m: AnomalyModel = serde_json::from_slice(&bytes).map_err(|e| Error::parse(file_name(path), e.to_string()))?;
        if m.format != FORMAT {
            return Err(Error::internal(format!("{}: unsupported model format '{}'", path.display(), m.format)));
        }
        Ok(m)
    }

    /// A model by resolved key: loaded, else read from disk (and kept loaded).
    pub(super) fn model(&self, key: &(String, Backend)) -> Result<Arc<AnomalyModel>> {
        if let Some(m) = self.state().get(key) {
            return Ok(m);
        }
        let path = self.path(&key.0, key.1);
        if !path.exists() {
            return Err(Error::missing_in(ResourceKind::AnomalyModel, &key.0, format!("(backend {})", key.1)));
        }
        let m = Arc::new(Self::read_file(&path)?);
        self.state().insert(m.clone());
        Ok(m)
    }

    pub(super) fn write(&self, m: &AnomalyModel) -> Result<PathBuf> {
        let path = self.path(&m.name, m.backend);
        let bytes = serde_json::to_vec(m).map_err(|e| Error::Internal(format!("serialising model: {e}")))?;
        crate::fsutil::atomic_write(&path, &bytes)?;
        Ok(path)
    }

    /// Every stored model file that reads as a model, unsorted.
    pub(super) fn summaries(&self) -> Result<Vec<super::StoredModel>> {
        let mut data = Vec::new();
        for (name, backend, path) in self.stored()? {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let header: Option<Header> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let Some(h) = header else { continue };
            if h.name != name || h.backend != backend {
                continue;
            }
            let base_name = base_of(&name);
            data.push(super::StoredModel {
                filename: model_filename(&name, backend),
                is_versioned: base_name != name,
                base_name,
                name,
                backend,
                size_bytes: meta.len(),
                modified: meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64()),
                created: h.created,
                description: h.description,
                normalization: h.normalization,
                input_dim: h.input_dim,
                samples_fitted: h.samples_fitted,
            });
        }
        Ok(data)
    }
}
