//! Anomaly detection: six backends behind one trait, schema encoding of object rows,
//! robust scaling, the original's score normalisations and contamination threshold,
//! and a versioned on-disk registry.
//!
//! # Pipeline (the Universal Runtime's, `upstream-notes.md` section 6)
//!
//! 1. Rows are arrays of numbers, or objects encoded by a `schema`
//!    ([`FieldEncoding`]; inferred from the training rows when absent).
//! 2. Feature scaling fitted on the training rows ([`Scaling`]): sklearn's `RobustScaler`
//!    (median / interquartile range) as the original, or standard, min-max or none.
//! 3. A backend ([`Backend`]) is fitted; its raw score is PyOD's `decision_function`
//!    (higher = more anomalous).
//! 4. Normalisation statistics of the *training* raw scores: `median`,
//!    `IQR = p75 - p25` (0 -> `std` -> 1), `mean`, `std` (0 -> 1).
//!    - `standardization` (default): `1 / (1 + exp(-clip((raw - median) / (2 IQR), -700, 700)))`
//!    - `zscore`: `(raw - mean) / std`
//!    - `raw`: unchanged
//! 5. Threshold: `percentile(normalised training scores, (1 - contamination) * 100)`
//!    unless the fit gives one ([`FitOptions::threshold`]); a score's
//!    [`ScoreOptions::threshold`] overrides it.
//!    `is_anomaly = score > threshold`.
//!
//! # Storage
//!
//! Every fit is saved (and so is [`Anomaly::save`]) to
//! `{data}/models/anomaly/{name}_{backend}.json`, written atomically. The JSON object
//! holds `format` (`"llamafarm-anomaly/1"`), `name`, `backend`, `created` (RFC 3339),
//! `description`, `contamination`, `normalization`, `threshold`, `thresholds` (the
//! contamination threshold under each normalisation), `stats`
//! (`median/iqr/mean/std`), `scaler` (`kind`, `center`, `scale`), `encoder` (schema, feature
//! names and category tables, or null for numeric rows), `input_dim`,
//! `samples_fitted`, `training_time_ms` and `detector` (`{"type": backend, "params":
//! ...}`: trees, support vectors, training points and densities, histograms, or the
//! autoencoder's dense layers as `f32` arrays). Unless [`FitOptions::overwrite`] is
//! set, a fit is stored as `{name}_{YYYYmmdd_HHMMSS}`; `{name}-latest` resolves to the
//! newest version for score, detect and load ([`super::registry`]).
//!
//! # Layout
//!
//! [`backend`] holds the detector trait and the dispatch over the six algorithms,
//! [`model`] the fitted model and its scoring, [`store`] the model files and the
//! loaded-model table; this module is the facade, `lf.ml().anomaly()`.
//!
//! # Example
//!
//! ```
//! use llamafarm_core::ml::anomaly::{AnomalyRow, Backend, FitOptions, ModelRef, ScoreOptions};
//! use llamafarm_core::LlamaFarm;
//!
//! # fn main() -> llamafarm_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let lf = LlamaFarm::open(dir.path())?;
//!
//! // Normal readings: temperature around 21-23, load around 1000-1006.
//! let normal: Vec<AnomalyRow> = (0..200).map(|i| vec![20.0 + (i % 10) as f64 * 0.3, 1000.0 + (i % 7) as f64].into()).collect();
//! let fit = lf.ml().anomaly().fit("sensor", &normal, &FitOptions::with_backend(Backend::IsolationForest))?;
//! assert!(fit.model.name.starts_with("sensor_"), "overwrite: false adds a timestamp");
//!
//! // `-latest` picks the newest version; detect returns only the anomalies.
//! let probe: Vec<AnomalyRow> = vec![vec![21.2, 1003.0].into(), vec![80.0, 5000.0].into()];
//! let found = lf.ml().anomaly().detect(&ModelRef::new("sensor-latest"), &probe, &ScoreOptions::default())?;
//! assert_eq!(found.rows.len(), 1);
//! assert_eq!(found.rows[0].index, 1);
//! # Ok(())
//! # }
//! ```

mod autoencoder;
pub mod backend;
mod encode;
mod iforest;
mod lof;
pub mod model;
pub mod npz;
mod ocsvm;
mod stats;
pub mod store;
mod util;

pub use backend::{AnomalyBackend, Backend, BackendInfo, Detector, DetectorParams};
pub use encode::{AnomalyRow, EncoderInfo, FeatureEncoder, FieldEncoding};
pub use model::{AnomalyModel, FitOptions, NormStats, Normalization, ScoreOptions, ScoredRow, Scores, Thresholds, FORMAT};
pub use store::{model_filename, parse_filename};
pub use util::{roc_auc, FeatureScaler, Mat, Scaling};

pub(crate) use store::AnomalyState;

use super::registry;
use super::Ml;
use crate::error::{Error, ResourceKind, Result};
use crate::LlamaFarm;
use std::path::PathBuf;
use std::sync::Arc;

/// Which stored or loaded model: a name (`{name}-latest` picks the newest version)
/// and, where the name exists for several backends, the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Needed only when the name exists for several backends.
    pub backend: Option<Backend>,
}

impl ModelRef {
    /// A reference by name, any backend.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), backend: None }
    }
    /// Restrict to one backend.
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = Some(b);
        self
    }
}

impl From<&str> for ModelRef {
    fn from(name: &str) -> Self {
        ModelRef::new(name)
    }
}

/// A model just fitted and saved.
#[derive(Debug, Clone)]
pub struct FittedModel {
    /// The model, named as stored (versioned unless `overwrite`).
    pub model: Arc<AnomalyModel>,
    /// The name asked for.
    pub base_name: String,
    /// Whether the plain name was replaced instead of a version being added.
    pub overwrite: bool,
    /// The model file.
    pub path: PathBuf,
}

/// A model written to or read from its file.
#[derive(Debug, Clone)]
pub struct SavedModel {
    /// The model.
    pub model: Arc<AnomalyModel>,
    /// Its backend (as the file name says).
    pub backend: Backend,
    /// `{name}_{backend}.json`.
    pub filename: String,
    /// The file.
    pub path: PathBuf,
}

/// A stored model, read from its file's header.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    /// File name, what [`Anomaly::delete`] takes.
    pub filename: String,
    /// Model name.
    pub name: String,
    /// Name without the version suffix.
    pub base_name: String,
    /// Algorithm.
    pub backend: Backend,
    /// Whether the name carries a `_{YYYYmmdd_HHMMSS}` version.
    pub is_versioned: bool,
    /// File size.
    pub size_bytes: u64,
    /// Modification time, Unix seconds.
    pub modified: f64,
    /// Fit time (RFC 3339).
    pub created: String,
    /// Description given at fit.
    pub description: Option<String>,
    /// Normalisation chosen at fit.
    pub normalization: Normalization,
    /// Features after encoding.
    pub input_dim: usize,
    /// Training rows.
    pub samples_fitted: usize,
}

/// The stored models and where they live.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModels {
    /// `{data}/models/anomaly`.
    pub dir: PathBuf,
    /// Newest first.
    pub models: Vec<StoredModel>,
}

/// A model file removed by [`Anomaly::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedModel {
    /// The removed file.
    pub filename: String,
    /// The model name it held.
    pub name: String,
    /// Its backend.
    pub backend: Backend,
}

/// Anomaly detection: `lf.ml().anomaly()`.
pub struct Anomaly<'a> {
    lf: &'a LlamaFarm,
}

impl<'a> Ml<'a> {
    /// Anomaly detectors.
    pub fn anomaly(&self) -> Anomaly<'a> {
        Anomaly { lf: self.lf }
    }
}

impl Anomaly<'_> {
    /// `{data}/models/anomaly`.
    pub fn dir(&self) -> PathBuf {
        self.lf.layout().models_dir().join("anomaly")
    }

    /// Fit a detector on `rows` and save it (`{name}_{timestamp}` unless `overwrite`).
    pub fn fit(&self, name: &str, rows: &[AnomalyRow], opts: &FitOptions) -> Result<FittedModel> {
        registry::validate_name(name)?;
        if name.ends_with(registry::LATEST_SUFFIX) {
            return Err(Error::invalid("model", format!("'{name}': fit creates a model; the -latest suffix is only for score, detect and load")));
        }
        let mut model = AnomalyModel::fit(name, rows, opts)?;
        let st = self.state();
        let _guard = st.write.lock().unwrap_or_else(|e| e.into_inner());
        let existing: Vec<String> = self.stored()?.into_iter().filter(|(_, b, _)| *b == opts.backend).map(|(n, _, _)| n).collect();
        let stored_name = registry::version_name(name, opts.overwrite, &existing);
        registry::validate_name(&stored_name)?;
        model.name = stored_name;
        let path = self.write(&model)?;
        let model = Arc::new(model);
        st.insert(model.clone());
        Ok(FittedModel { model, base_name: name.to_string(), overwrite: opts.overwrite, path })
    }

    /// Score every row with a fitted model.
    pub fn score(&self, model: &ModelRef, rows: &[AnomalyRow], opts: &ScoreOptions) -> Result<Scores> {
        let key = self.locate(&model.name, model.backend)?;
        self.model(&key)?.score(rows, opts)
    }

    /// Score and keep only the anomalous rows.
    pub fn detect(&self, model: &ModelRef, rows: &[AnomalyRow], opts: &ScoreOptions) -> Result<Scores> {
        Ok(self.score(model, rows, opts)?.anomalies())
    }

    /// Write a loaded model to its file again.
    pub fn save(&self, model: &ModelRef) -> Result<SavedModel> {
        let key = self.locate(&model.name, model.backend)?;
        let m = self.model(&key)?;
        let _guard = self.state().write.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.write(&m)?;
        Ok(SavedModel { backend: m.backend, filename: model_filename(&m.name, m.backend), path, model: m })
    }

    /// Load a stored model into memory (re-reading the file).
    pub fn load(&self, model: &ModelRef) -> Result<SavedModel> {
        let (_, backend, path) = self.locate_stored(&model.name, model.backend)?;
        let m = Arc::new(Self::read_file(&path)?);
        self.state().insert(m.clone());
        Ok(SavedModel { backend, filename: model_filename(&m.name, m.backend), path, model: m })
    }

    /// Stored models, newest first.
    pub fn list(&self) -> Result<StoredModels> {
        let mut models = self.summaries()?;
        models.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
        Ok(StoredModels { dir: self.dir(), models })
    }

    /// Delete a stored model by file name (`{name}_{backend}.json`) and unload it.
    pub fn delete(&self, filename: &str) -> Result<DeletedModel> {
        registry::validate_name(filename)?;
        let (name, backend) = parse_filename(filename).ok_or_else(|| Error::missing_in(ResourceKind::AnomalyModel, filename, "(no such model file)"))?;
        let path = self.path(&name, backend);
        let _guard = self.state().write.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::missing_in(ResourceKind::AnomalyModel, filename, "(no such model file)")),
            Err(e) => return Err(Error::io(&path, e)),
        }
        self.state().remove(&(name.clone(), backend));
        Ok(DeletedModel { filename: filename.to_string(), name, backend })
    }

    /// The backends with their metadata.
    pub fn backends(&self) -> Vec<BackendInfo> {
        backend::catalogue()
    }
}

#[cfg(test)]
mod tests;
