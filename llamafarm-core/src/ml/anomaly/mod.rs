//! Anomaly detection: six backends behind one trait, schema encoding of object rows,
//! robust scaling, the original's score normalisations and contamination threshold,
//! and a versioned on-disk registry.
//!
//! # Pipeline (the Universal Runtime's, `upstream-notes.md` section 6)
//!
//! 1. Rows are arrays of numbers, or objects encoded by a `schema`
//!    ([`FieldEncoding`]; inferred from the training rows when absent).
//! 2. sklearn's `RobustScaler` (median / interquartile range), fitted on the training rows.
//! 3. A backend ([`Backend`]) is fitted; its raw score is PyOD's `decision_function`
//!    (higher = more anomalous).
//! 4. Normalisation statistics of the *training* raw scores: `median`,
//!    `IQR = p75 - p25` (0 -> `std` -> 1), `mean`, `std` (0 -> 1).
//!    - `standardization` (default): `1 / (1 + exp(-clip((raw - median) / (2 IQR), -700, 700)))`
//!    - `zscore`: `(raw - mean) / std`
//!    - `raw`: unchanged
//! 5. Threshold: `percentile(normalised training scores, (1 - contamination) * 100)`
//!    unless the fit request gives one; a score request's `threshold` overrides it.
//!    `is_anomaly = score > threshold`.
//!
//! # Storage
//!
//! Every fit is saved (and so is [`Ml::anomaly_save`]) to
//! `{data}/models/anomaly/{name}_{backend}.json`, written atomically. The JSON object
//! holds `format` (`"llamafarm-anomaly/1"`), `name`, `backend`, `created` (RFC 3339),
//! `description`, `contamination`, `normalization`, `threshold`, `thresholds` (the
//! contamination threshold under each normalisation), `stats`
//! (`median/iqr/mean/std`), `scaler` (`center`, `scale`), `encoder` (schema, feature
//! names and category tables, or null for numeric rows), `input_dim`,
//! `samples_fitted`, `training_time_ms` and `detector` (`{"type": backend, "params":
//! ...}`: trees, support vectors, training points and densities, histograms, or the
//! autoencoder's dense layers as `f32` arrays). With `overwrite: false` (the default)
//! a fit is stored as `{name}_{YYYYmmdd_HHMMSS}`; `{name}-latest` resolves to the
//! newest version for score, detect and load ([`super::registry`]).
//!
//! # Example
//!
//! ```
//! use llamafarm_core::ml::anomaly::{AnomalyFitRequest, AnomalyScoreRequest, Backend};
//! use llamafarm_core::LlamaFarm;
//!
//! # fn main() -> llamafarm_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let lf = LlamaFarm::open(dir.path())?;
//!
//! // Normal readings: temperature around 21-23, load around 1000-1006.
//! let normal: Vec<Vec<f64>> = (0..200).map(|i| vec![20.0 + (i % 10) as f64 * 0.3, 1000.0 + (i % 7) as f64]).collect();
//! let fit = lf.ml().anomaly_fit(&AnomalyFitRequest::new("sensor", normal).backend(Backend::IsolationForest))?;
//! assert!(fit.versioned_name.starts_with("sensor_"), "overwrite: false adds a timestamp");
//!
//! // `-latest` picks the newest version; detect returns only the anomalies.
//! let found = lf.ml().anomaly_detect(&AnomalyScoreRequest::new("sensor-latest", vec![vec![21.2, 1003.0], vec![80.0, 5000.0]]))?;
//! assert_eq!(found.data.len(), 1);
//! assert_eq!(found.data[0].index, 1);
//! # Ok(())
//! # }
//! ```

mod autoencoder;
mod encode;
mod iforest;
mod lof;
pub mod npz;
mod ocsvm;
mod stats;
mod util;

pub use encode::{AnomalyRow, EncoderInfo, FeatureEncoder, FieldEncoding};
pub use util::Mat;

use super::registry;
use super::Ml;
use crate::error::{Error, Result};
use encode::{infer_schema, split_rows, Rows};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use util::{mean_std, percentile, RobustScaler};

/// The seam every detector implements: a fitted model that scores rows (already
/// encoded and scaled), higher = more anomalous.
pub trait AnomalyBackend: Send + Sync {
    /// Raw anomaly scores, one per row of `x`.
    fn score(&self, x: &Mat) -> Vec<f64>;

    /// Raw scores of the training set `x` the model was just fitted on (what the
    /// thresholds are computed from). Equals `score(x)`; a backend may reuse work
    /// from its fit.
    fn score_training(&self, x: &Mat) -> Vec<f64> {
        self.score(x)
    }
}

/// The detection algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Backend {
    /// Random isolation trees (sklearn `IsolationForest`).
    #[default]
    IsolationForest,
    /// RBF one-class SVM (libsvm nu-SVM dual, SMO).
    OneClassSvm,
    /// Local outlier factor, novelty mode.
    LocalOutlierFactor,
    /// Dense autoencoder (candle), reconstruction error.
    Autoencoder,
    /// Empirical-CDF outlier detection (parameter-free).
    Ecod,
    /// Histogram-based outlier score.
    Hbos,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 6] =
        [Backend::IsolationForest, Backend::OneClassSvm, Backend::LocalOutlierFactor, Backend::Autoencoder, Backend::Ecod, Backend::Hbos];

    /// The wire name (`isolation_forest`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::IsolationForest => "isolation_forest",
            Backend::OneClassSvm => "one_class_svm",
            Backend::LocalOutlierFactor => "local_outlier_factor",
            Backend::Autoencoder => "autoencoder",
            Backend::Ecod => "ecod",
            Backend::Hbos => "hbos",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Result<Backend> {
        Backend::ALL.into_iter().find(|b| b.as_str() == s).ok_or_else(|| {
            Error::Invalid(format!("unknown backend '{s}'; one of: {}", Backend::ALL.map(|b| b.as_str()).join(", ")))
        })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How raw scores are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Normalization {
    /// Sigmoid of `(raw - median) / (2 IQR)`: 0..1, about 0.5 is typical.
    #[default]
    Standardization,
    /// `(raw - mean) / std` of the training scores.
    Zscore,
    /// The backend's own score.
    Raw,
}

/// Statistics of the training raw scores used to normalise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NormStats {
    /// Median raw score.
    pub median: f64,
    /// `p75 - p25` (the std, then 1, when that is 0).
    pub iqr: f64,
    /// Mean raw score.
    pub mean: f64,
    /// Population standard deviation (1 when 0).
    pub std: f64,
}

impl NormStats {
    /// From training raw scores.
    pub fn from_scores(raw: &[f64]) -> Self {
        let (mean, std) = mean_std(raw);
        let mut iqr = percentile(raw, 75.0) - percentile(raw, 25.0);
        if iqr == 0.0 || !iqr.is_finite() {
            iqr = if std > 0.0 { std } else { 1.0 };
        }
        Self { median: percentile(raw, 50.0), iqr, mean, std: if std > 0.0 { std } else { 1.0 } }
    }

    /// Normalise one raw score.
    pub fn apply(&self, raw: f64, n: Normalization) -> f64 {
        match n {
            Normalization::Standardization => {
                let z = ((raw - self.median) / (2.0 * self.iqr)).clamp(-700.0, 700.0);
                1.0 / (1.0 + (-z).exp())
            }
            Normalization::Zscore => (raw - self.mean) / self.std,
            Normalization::Raw => raw,
        }
    }
}

/// The contamination threshold under each normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// For `standardization`.
    pub standardization: f64,
    /// For `zscore`.
    pub zscore: f64,
    /// For `raw`.
    pub raw: f64,
}

impl Thresholds {
    fn get(&self, n: Normalization) -> f64 {
        match n {
            Normalization::Standardization => self.standardization,
            Normalization::Zscore => self.zscore,
            Normalization::Raw => self.raw,
        }
    }
}

/// A fitted detector of any backend (stored as `{"type": ..., "params": ...}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "params", rename_all = "snake_case")]
pub enum Detector {
    /// See [`Backend::IsolationForest`].
    IsolationForest(iforest::IsolationForest),
    /// See [`Backend::OneClassSvm`].
    OneClassSvm(ocsvm::OneClassSvm),
    /// See [`Backend::LocalOutlierFactor`].
    LocalOutlierFactor(lof::LocalOutlierFactor),
    /// See [`Backend::Autoencoder`].
    Autoencoder(autoencoder::AutoEncoder),
    /// See [`Backend::Ecod`].
    Ecod(stats::Ecod),
    /// See [`Backend::Hbos`].
    Hbos(stats::Hbos),
}

impl Detector {
    fn backend(&self) -> &dyn AnomalyBackend {
        match self {
            Detector::IsolationForest(m) => m,
            Detector::OneClassSvm(m) => m,
            Detector::LocalOutlierFactor(m) => m,
            Detector::Autoencoder(m) => m,
            Detector::Ecod(m) => m,
            Detector::Hbos(m) => m,
        }
    }

    /// Fit `backend` on scaled rows.
    pub fn fit(backend: Backend, x: &Mat, p: &DetectorParams) -> Result<Detector> {
        Ok(match backend {
            Backend::IsolationForest => Detector::IsolationForest(iforest::IsolationForest::fit(x, p.n_estimators, 256, p.contamination, p.seed)),
            Backend::OneClassSvm => {
                let gamma = p.gamma.unwrap_or_else(|| ocsvm::gamma_scale(x));
                Detector::OneClassSvm(ocsvm::OneClassSvm::fit(x, p.nu, gamma, 1e-3))
            }
            Backend::LocalOutlierFactor => Detector::LocalOutlierFactor(lof::LocalOutlierFactor::fit(x, p.n_neighbors)),
            Backend::Autoencoder => Detector::Autoencoder(autoencoder::AutoEncoder::fit(x, p.epochs, p.batch_size, p.seed)?),
            Backend::Ecod => Detector::Ecod(stats::Ecod::fit(x)),
            Backend::Hbos => Detector::Hbos(stats::Hbos::fit(x, 10)),
        })
    }
}

impl AnomalyBackend for Detector {
    fn score(&self, x: &Mat) -> Vec<f64> {
        self.backend().score(x)
    }

    fn score_training(&self, x: &Mat) -> Vec<f64> {
        self.backend().score_training(x)
    }
}

/// Backend hyper-parameters, resolved from a fit request.
#[derive(Debug, Clone)]
pub struct DetectorParams {
    /// Expected share of anomalies in the training rows.
    pub contamination: f64,
    /// Isolation forest trees (100).
    pub n_estimators: usize,
    /// LOF neighbours (20).
    pub n_neighbors: usize,
    /// One-class SVM nu (the contamination).
    pub nu: f64,
    /// RBF gamma (`scale`: `1 / (d * X.var())`).
    pub gamma: Option<f64>,
    /// Autoencoder epochs.
    pub epochs: usize,
    /// Autoencoder mini-batch size.
    pub batch_size: usize,
    /// Random seed (isolation forest, autoencoder).
    pub seed: u64,
}

fn default_model() -> String {
    "default".to_string()
}
fn default_contamination() -> f64 {
    0.1
}
fn default_epochs() -> usize {
    100
}
fn default_batch_size() -> usize {
    32
}

/// `POST /v1/ml/anomaly/fit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyFitRequest {
    /// Model name (default `default`); with `overwrite: false` a timestamp is appended.
    #[serde(default = "default_model")]
    pub model: String,
    /// Algorithm (default `isolation_forest`).
    #[serde(default)]
    pub backend: Backend,
    /// Training rows, mostly normal: arrays of numbers or objects.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub data: Vec<AnomalyRow>,
    /// Field encodings for object rows (inferred when absent).
    #[serde(default)]
    pub schema: Option<BTreeMap<String, FieldEncoding>>,
    /// Expected share of anomalies, 0 < c <= 0.5 (default 0.1).
    #[serde(default = "default_contamination")]
    pub contamination: f64,
    /// Score normalisation (default `standardization`).
    #[serde(default)]
    pub normalization: Normalization,
    /// A fixed threshold instead of the contamination percentile.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Autoencoder epochs (default 100).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Autoencoder batch size (default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Replace `{model}` instead of saving a timestamped version (default false).
    #[serde(default)]
    pub overwrite: bool,
    /// Free text kept with the model.
    #[serde(default)]
    pub description: Option<String>,
    /// Isolation forest trees (default 100).
    #[serde(default)]
    pub n_estimators: Option<usize>,
    /// LOF neighbours (default 20).
    #[serde(default)]
    pub n_neighbors: Option<usize>,
    /// One-class SVM `nu` in (0, 1] (default: the contamination).
    #[serde(default)]
    pub nu: Option<f64>,
    /// RBF kernel gamma (default `scale`).
    #[serde(default)]
    pub gamma: Option<f64>,
    /// Random seed (default 42).
    #[serde(default)]
    pub seed: Option<u64>,
}

impl AnomalyFitRequest {
    /// A request with the defaults.
    pub fn new<R: Into<AnomalyRow>>(model: impl Into<String>, data: impl IntoIterator<Item = R>) -> Self {
        Self {
            model: model.into(),
            backend: Backend::default(),
            data: data.into_iter().map(Into::into).collect(),
            schema: None,
            contamination: default_contamination(),
            normalization: Normalization::default(),
            threshold: None,
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            overwrite: false,
            description: None,
            n_estimators: None,
            n_neighbors: None,
            nu: None,
            gamma: None,
            seed: None,
        }
    }
    /// Set the backend.
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// Set the contamination.
    pub fn contamination(mut self, c: f64) -> Self {
        self.contamination = c;
        self
    }
    /// Set the normalisation.
    pub fn normalization(mut self, n: Normalization) -> Self {
        self.normalization = n;
        self
    }
    /// Set the schema.
    pub fn schema(mut self, s: BTreeMap<String, FieldEncoding>) -> Self {
        self.schema = Some(s);
        self
    }
    /// Overwrite instead of versioning.
    pub fn overwrite(mut self, o: bool) -> Self {
        self.overwrite = o;
        self
    }

    fn params(&self) -> Result<DetectorParams> {
        let c = self.contamination;
        if !(c > 0.0 && c <= 0.5) {
            return Err(Error::Invalid(format!("contamination must be in (0, 0.5], got {c}")));
        }
        let nu = self.nu.unwrap_or(c);
        if !(nu > 0.0 && nu <= 1.0) {
            return Err(Error::Invalid(format!("nu must be in (0, 1], got {nu}")));
        }
        if let Some(g) = self.gamma {
            if !(g > 0.0 && g.is_finite()) {
                return Err(Error::Invalid(format!("gamma must be positive, got {g}")));
            }
        }
        if let Some(t) = self.threshold {
            if !t.is_finite() {
                return Err(Error::Invalid("threshold must be finite".into()));
            }
        }
        let n_estimators = self.n_estimators.unwrap_or(100);
        if !(1..=2000).contains(&n_estimators) {
            return Err(Error::Invalid(format!("n_estimators must be 1..=2000, got {n_estimators}")));
        }
        let n_neighbors = self.n_neighbors.unwrap_or(20);
        if n_neighbors == 0 {
            return Err(Error::Invalid("n_neighbors must be at least 1".into()));
        }
        if !(1..=10_000).contains(&self.epochs) {
            return Err(Error::Invalid(format!("epochs must be 1..=10000, got {}", self.epochs)));
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid("batch_size must be at least 1".into()));
        }
        Ok(DetectorParams {
            contamination: c,
            n_estimators,
            n_neighbors,
            nu,
            gamma: self.gamma,
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed.unwrap_or(42),
        })
    }
}

/// `model_params` of a fit or load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelParams {
    /// Algorithm.
    pub backend: Backend,
    /// Contamination used for the threshold.
    pub contamination: f64,
    /// The threshold under `normalization`.
    pub threshold: f64,
    /// Number of features after encoding.
    pub input_dim: usize,
    /// Normalisation chosen at fit.
    pub normalization: Normalization,
}

/// Answer to a fit.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyFitResponse {
    /// `fit_result`.
    pub object: String,
    /// The name it is stored under (the versioned name).
    pub model: String,
    /// Algorithm.
    pub backend: Backend,
    /// Training rows.
    pub samples_fitted: usize,
    /// Encoding, scaling and training time.
    pub training_time_ms: f64,
    /// Threshold and dimensions.
    pub model_params: ModelParams,
    /// Schema and features when the rows were objects.
    pub encoder: Option<EncoderInfo>,
    /// The model file.
    pub saved_path: String,
    /// `fitted`.
    pub status: String,
    /// The requested name.
    pub base_name: String,
    /// The stored name (same as `model`).
    pub versioned_name: String,
    /// Whether an existing `{base_name}` was replaced.
    pub overwrite: bool,
    /// The description given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `POST /v1/ml/anomaly/score` and `/detect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyScoreRequest {
    /// Model name; `{name}-latest` picks the newest version.
    #[serde(default = "default_model")]
    pub model: String,
    /// Needed only when the name exists for several backends.
    #[serde(default)]
    pub backend: Option<Backend>,
    /// Rows to score (the same kind and width as at fit).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub data: Vec<AnomalyRow>,
    /// Must equal the model's schema when given.
    #[serde(default)]
    pub schema: Option<BTreeMap<String, FieldEncoding>>,
    /// Report scores this way (default: the model's normalisation).
    #[serde(default)]
    pub normalization: Option<Normalization>,
    /// Override the model's threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
}

impl AnomalyScoreRequest {
    /// A request with the defaults.
    pub fn new<R: Into<AnomalyRow>>(model: impl Into<String>, data: impl IntoIterator<Item = R>) -> Self {
        Self { model: model.into(), backend: None, data: data.into_iter().map(Into::into).collect(), schema: None, normalization: None, threshold: None }
    }
    /// Set the threshold.
    pub fn threshold(mut self, t: f64) -> Self {
        self.threshold = Some(t);
        self
    }
    /// Set the normalisation.
    pub fn normalization(mut self, n: Normalization) -> Self {
        self.normalization = Some(n);
        self
    }
    /// Set the backend.
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = Some(b);
        self
    }
}

/// One scored row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyScore {
    /// Row index in the request.
    pub index: usize,
    /// Normalised score.
    pub score: f64,
    /// `score > threshold`.
    pub is_anomaly: bool,
    /// The backend's raw score.
    pub raw_score: f64,
}

/// Summary of a score call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreSummary {
    /// Rows scored.
    pub total_points: usize,
    /// Rows above the threshold.
    pub anomaly_count: usize,
    /// `anomaly_count / total_points`.
    pub anomaly_rate: f64,
    /// The threshold applied.
    pub threshold: f64,
}

/// Answer to a score call: every row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyScoreResponse {
    /// `list`.
    pub object: String,
    /// One entry per row, in order.
    pub data: Vec<AnomalyScore>,
    /// Counts and threshold.
    pub summary: ScoreSummary,
    /// The resolved model name.
    pub model: String,
    /// Its backend.
    pub backend: Backend,
    /// Normalisation of `score`.
    pub normalization: Normalization,
}

/// One detected anomaly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetectedAnomaly {
    /// Row index in the request.
    pub index: usize,
    /// Normalised score.
    pub score: f64,
    /// The backend's raw score.
    pub raw_score: f64,
}

/// Summary of a detect call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetectSummary {
    /// Number of anomalies.
    pub anomalies_detected: usize,
    /// The threshold applied.
    pub threshold: f64,
}

/// Answer to a detect call: the anomalous rows only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyDetectResponse {
    /// `list`.
    pub object: String,
    /// Anomalous rows, in request order.
    pub data: Vec<DetectedAnomaly>,
    /// `data.len()`.
    pub total_count: usize,
    /// The resolved model name.
    pub model: String,
    /// Its backend.
    pub backend: Backend,
    /// Count and threshold.
    pub summary: DetectSummary,
}

/// `POST /v1/ml/anomaly/save` and `/load`: which model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyModelRef {
    /// Model name (`-latest` allowed).
    #[serde(default = "default_model")]
    pub model: String,
    /// Needed only when the name exists for several backends.
    #[serde(default)]
    pub backend: Option<Backend>,
}

impl AnomalyModelRef {
    /// A reference by name.
    pub fn new(model: impl Into<String>) -> Self {
        Self { model: model.into(), backend: None }
    }
}

/// Answer to save or load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalySaveResponse {
    /// `save_result` or `load_result`.
    pub object: String,
    /// The resolved name.
    pub model: String,
    /// Its backend.
    pub backend: Backend,
    /// `{model}_{backend}.json`.
    pub filename: String,
    /// Full path.
    pub path: String,
    /// Threshold and dimensions.
    pub model_params: ModelParams,
    /// `saved` or `loaded`.
    pub status: String,
}

/// A stored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyModelInfo {
    /// File name (what `DELETE /models/{filename}` takes).
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

/// `GET /v1/ml/anomaly/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyModelList {
    /// `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<AnomalyModelInfo>,
    /// The directory.
    pub models_dir: String,
    /// `data.len()`.
    pub total: usize,
}

/// `DELETE /v1/ml/anomaly/models/{filename}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyDeleteResponse {
    /// `delete_result`.
    pub object: String,
    /// The removed file.
    pub filename: String,
    /// The model name it held.
    pub model: String,
    /// Its backend.
    pub backend: Backend,
    /// Always true (a missing file is a 404).
    pub deleted: bool,
}

/// One entry of `GET /v1/ml/anomaly/backends`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendInfo {
    /// Wire name.
    pub backend: Backend,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// legacy, fast, deep_learning.
    pub category: String,
    /// Relative training speed.
    pub speed: String,
    /// Relative memory use.
    pub memory: String,
    /// Request fields it reads.
    pub parameters: Vec<String>,
    /// When to choose it.
    pub best_for: String,
    /// One of the original four backends.
    pub is_legacy: bool,
}

/// `GET /v1/ml/anomaly/backends`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendList {
    /// `list`.
    pub object: String,
    /// Every backend.
    pub data: Vec<BackendInfo>,
    /// `data.len()`.
    pub total: usize,
}

/// Current on-disk format tag.
pub const FORMAT: &str = "llamafarm-anomaly/1";

/// A fitted, self-contained model: encoder, scaler, detector, normalisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnomalyModel {
    /// [`FORMAT`].
    pub format: String,
    /// Stored name.
    pub name: String,
    /// Algorithm.
    pub backend: Backend,
    /// Fit time (RFC 3339).
    pub created: String,
    /// Free text.
    pub description: Option<String>,
    /// Contamination at fit.
    pub contamination: f64,
    /// Normalisation chosen at fit.
    pub normalization: Normalization,
    /// Threshold under `normalization` (the contamination percentile or the fit's own).
    pub threshold: f64,
    /// Contamination thresholds under every normalisation.
    pub thresholds: Thresholds,
    /// Training raw-score statistics.
    pub stats: NormStats,
    /// Robust scaler.
    pub scaler: RobustScaler,
    /// Schema encoder for object rows.
    pub encoder: Option<FeatureEncoder>,
    /// Features after encoding.
    pub input_dim: usize,
    /// Training rows.
    pub samples_fitted: usize,
    /// Fit duration.
    pub training_time_ms: f64,
    /// The fitted backend.
    pub detector: Detector,
}

/// Rows after encoding and scaling, ready for a detector.
fn encode_rows(rows: &[AnomalyRow], encoder: Option<&FeatureEncoder>, schema: Option<&BTreeMap<String, FieldEncoding>>) -> Result<Mat> {
    match (split_rows(rows)?, encoder) {
        (Rows::Numeric(m), None) => {
            if schema.is_some() {
                return Err(Error::Invalid("a schema was given but the rows are arrays; a schema describes object rows".into()));
            }
            Ok(m)
        }
        (Rows::Numeric(_), Some(_)) => Err(Error::Invalid("the model was fitted on object rows with a schema; send objects".into())),
        (Rows::Records(_), None) => Err(Error::Invalid("the model was fitted on numeric arrays; send arrays of numbers".into())),
        (Rows::Records(r), Some(enc)) => {
            if let Some(s) = schema {
                if s != &enc.schema {
                    return Err(Error::Invalid(format!(
                        "schema does not match the model's: model has {}",
                        serde_json::to_string(&enc.schema).unwrap_or_default()
                    )));
                }
            }
            enc.transform(&r)
        }
    }
}

impl AnomalyModel {
    /// Encode, scale and fit (no saving; `name` is the request's model name).
    pub fn fit(req: &AnomalyFitRequest) -> Result<AnomalyModel> {
        let params = req.params()?;
        let start = Instant::now();
        let (x, encoder) = match split_rows(&req.data)? {
            Rows::Numeric(m) => {
                if req.schema.is_some() {
                    return Err(Error::Invalid("a schema was given but the rows are arrays; a schema describes object rows".into()));
                }
                (m, None)
            }
            Rows::Records(r) => {
                let schema = match &req.schema {
                    Some(s) => s.clone(),
                    None => infer_schema(&r),
                };
                let enc = FeatureEncoder::fit(schema, &r)?;
                (enc.transform(&r)?, Some(enc))
            }
        };
        if x.n < 2 {
            return Err(Error::Invalid(format!("need at least 2 training rows, got {}", x.n)));
        }
        let scaler = RobustScaler::fit(&x);
        let xs = scaler.transform(&x);
        let detector = Detector::fit(req.backend, &xs, &params)?;
        let raw = detector.score_training(&xs);
        if raw.iter().any(|v| !v.is_finite()) {
            return Err(Error::Internal(format!("{} produced non-finite training scores", req.backend)));
        }
        let stats = NormStats::from_scores(&raw);
        let q = (1.0 - params.contamination) * 100.0;
        let th = |n: Normalization| percentile(&raw.iter().map(|r| stats.apply(*r, n)).collect::<Vec<_>>(), q);
        let thresholds = Thresholds { standardization: th(Normalization::Standardization), zscore: th(Normalization::Zscore), raw: th(Normalization::Raw) };
        Ok(AnomalyModel {
            format: FORMAT.to_string(),
            name: req.model.clone(),
            backend: req.backend,
            created: chrono::Utc::now().to_rfc3339(),
            description: req.description.clone(),
            contamination: params.contamination,
            normalization: req.normalization,
            threshold: req.threshold.unwrap_or(thresholds.get(req.normalization)),
            thresholds,
            stats,
            scaler,
            encoder,
            input_dim: x.d,
            samples_fitted: x.n,
            training_time_ms: start.elapsed().as_secs_f64() * 1000.0,
            detector,
        })
    }

    /// The threshold a score call uses under `n` (the model's own under its normalisation).
    pub fn threshold_for(&self, n: Normalization) -> f64 {
        if n == self.normalization {
            self.threshold
        } else {
            self.thresholds.get(n)
        }
    }

    /// Raw scores of rows (checked, encoded, scaled).
    pub fn raw_scores(&self, rows: &[AnomalyRow], schema: Option<&BTreeMap<String, FieldEncoding>>) -> Result<Vec<f64>> {
        let x = encode_rows(rows, self.encoder.as_ref(), schema)?;
        if x.d != self.input_dim {
            return Err(Error::Invalid(format!("the model expects {} features per row, got {}", self.input_dim, x.d)));
        }
        Ok(self.detector.score(&self.scaler.transform(&x)))
    }

    /// Score every row.
    pub fn score(&self, req: &AnomalyScoreRequest) -> Result<AnomalyScoreResponse> {
        if let Some(t) = req.threshold {
            if !t.is_finite() {
                return Err(Error::Invalid("threshold must be finite".into()));
            }
        }
        let norm = req.normalization.unwrap_or(self.normalization);
        let threshold = req.threshold.unwrap_or(self.threshold_for(norm));
        let raw = self.raw_scores(&req.data, req.schema.as_ref())?;
        let data: Vec<AnomalyScore> = raw
            .iter()
            .enumerate()
            .map(|(index, &r)| {
                let score = self.stats.apply(r, norm);
                AnomalyScore { index, score, is_anomaly: score > threshold, raw_score: r }
            })
            .collect();
        let anomaly_count = data.iter().filter(|p| p.is_anomaly).count();
        let total_points = data.len();
        Ok(AnomalyScoreResponse {
            object: "list".into(),
            summary: ScoreSummary { total_points, anomaly_count, anomaly_rate: anomaly_count as f64 / total_points.max(1) as f64, threshold },
            data,
            model: self.name.clone(),
            backend: self.backend,
            normalization: norm,
        })
    }

    fn params(&self) -> ModelParams {
        ModelParams { backend: self.backend, contamination: self.contamination, threshold: self.threshold, input_dim: self.input_dim, normalization: self.normalization }
    }
}

/// Loaded anomaly detectors, by (name, backend).
#[derive(Default)]
pub(crate) struct AnomalyState {
    models: RwLock<HashMap<(String, Backend), Arc<AnomalyModel>>>,
    /// Serialises naming and writing of model files.
    write: Mutex<()>,
}

impl AnomalyState {
    fn get(&self, key: &(String, Backend)) -> Option<Arc<AnomalyModel>> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }
    fn insert(&self, m: Arc<AnomalyModel>) {
        self.models.write().unwrap_or_else(|e| e.into_inner()).insert((m.name.clone(), m.backend), m);
    }
    fn remove(&self, key: &(String, Backend)) {
        self.models.write().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
    fn keys(&self) -> Vec<(String, Backend)> {
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

fn backend_info() -> Vec<BackendInfo> {
    let e = |b: Backend, name: &str, desc: &str, cat: &str, speed: &str, mem: &str, params: &[&str], best: &str, legacy: bool| BackendInfo {
        backend: b,
        name: name.into(),
        description: desc.into(),
        category: cat.into(),
        speed: speed.into(),
        memory: mem.into(),
        parameters: params.iter().map(|s| s.to_string()).collect(),
        best_for: best.into(),
        is_legacy: legacy,
    };
    vec![
        e(Backend::IsolationForest, "Isolation Forest", "Random trees isolate points; anomalies need fewer splits.", "legacy", "fast", "low",
          &["contamination", "n_estimators", "seed"], "General purpose (recommended default)", true),
        e(Backend::OneClassSvm, "One-Class SVM", "RBF-kernel boundary around the normal data (nu-SVM, SMO).", "legacy", "slow", "medium",
          &["contamination", "nu", "gamma"], "Small datasets, tight boundaries", true),
        e(Backend::LocalOutlierFactor, "Local Outlier Factor", "Local density compared with the neighbours' (novelty mode).", "legacy", "medium", "medium",
          &["contamination", "n_neighbors"], "Local/density-based anomalies", true),
        e(Backend::Autoencoder, "Autoencoder", "Dense autoencoder (candle); reconstruction error is the score.", "deep_learning", "slow", "high",
          &["contamination", "epochs", "batch_size", "seed"], "Complex patterns, large datasets", true),
        e(Backend::Ecod, "ECOD", "Empirical cumulative distribution tails per feature; parameter-free.", "fast", "very_fast", "low",
          &["contamination"], "Recommended for new projects - parameter-free", false),
        e(Backend::Hbos, "HBOS", "Histogram-based outlier score, features treated independently.", "fast", "very_fast", "low",
          &["contamination"], "Fastest algorithm, high dimensions", false),
    ]
}

impl<'a> Ml<'a> {
    fn anomaly_state(&self) -> &AnomalyState {
        &self.lf.ml_state().anomaly
    }

    fn anomaly_path(&self, name: &str, backend: Backend) -> PathBuf {
        self.anomaly_dir().join(model_filename(name, backend))
    }

    /// (name, backend) of every stored model file.
    fn stored_anomaly(&self) -> Result<Vec<(String, Backend, PathBuf)>> {
        let dir = self.anomaly_dir();
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
    fn locate_anomaly(&self, model: &str, backend: Option<Backend>) -> Result<(String, Backend)> {
        let mut all: Vec<(String, Backend)> = self.stored_anomaly()?.into_iter().map(|(n, b, _)| (n, b)).collect();
        all.extend(self.anomaly_state().keys());
        all.sort();
        all.dedup();
        if let Some(b) = backend {
            all.retain(|(_, x)| *x == b);
        }
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        let what = || match backend {
            Some(b) => format!("Anomaly model '{model}' ({b})"),
            None => format!("Anomaly model '{model}'"),
        };
        let name = registry::resolve(model, &names).ok_or_else(|| Error::not_found(what()))?;
        let backends: Vec<Backend> = all.iter().filter(|(n, _)| *n == name).map(|(_, b)| *b).collect();
        match backends.as_slice() {
            [b] => Ok((name, *b)),
            [] => Err(Error::not_found(what())),
            many => Err(Error::Invalid(format!(
                "model '{name}' exists for several backends ({}); pass `backend`",
                many.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn read_anomaly_file(path: &Path) -> Result<AnomalyModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let m: AnomalyModel = serde_json::from_slice(&bytes).map_err(|e| Error::Parse { what: path.display().to_string(), message: e.to_string() })?;
        if m.format != FORMAT {
            return Err(Error::Invalid(format!("{}: unsupported model format '{}'", path.display(), m.format)));
        }
        Ok(m)
    }

    /// A model by resolved key: loaded, else read from disk (and kept loaded).
    fn anomaly_model(&self, key: &(String, Backend)) -> Result<Arc<AnomalyModel>> {
        if let Some(m) = self.anomaly_state().get(key) {
            return Ok(m);
        }
        let path = self.anomaly_path(&key.0, key.1);
        if !path.exists() {
            return Err(Error::not_found(format!("Anomaly model '{}' ({})", key.0, key.1)));
        }
        let m = Arc::new(Self::read_anomaly_file(&path)?);
        self.anomaly_state().insert(m.clone());
        Ok(m)
    }

    fn write_anomaly(&self, m: &AnomalyModel) -> Result<PathBuf> {
        let path = self.anomaly_path(&m.name, m.backend);
        let bytes = serde_json::to_vec(m).map_err(|e| Error::Internal(format!("serialising model: {e}")))?;
        crate::fsutil::atomic_write(&path, &bytes)?;
        Ok(path)
    }

    /// Fit a detector and save it (`{name}_{timestamp}` unless `overwrite`).
    pub fn anomaly_fit(&self, req: &AnomalyFitRequest) -> Result<AnomalyFitResponse> {
        registry::validate_name(&req.model)?;
        if req.model.ends_with(registry::LATEST_SUFFIX) {
            return Err(Error::Invalid(format!("'{}': fit creates a model; the -latest suffix is only for score, detect and load", req.model)));
        }
        let mut model = AnomalyModel::fit(req)?;
        let st = self.anomaly_state();
        let _guard = st.write.lock().unwrap_or_else(|e| e.into_inner());
        let existing: Vec<String> = self.stored_anomaly()?.into_iter().filter(|(_, b, _)| *b == req.backend).map(|(n, _, _)| n).collect();
        let name = registry::version_name(&req.model, req.overwrite, &existing);
        registry::validate_name(&name)?;
        model.name = name.clone();
        let path = self.write_anomaly(&model)?;
        let model = Arc::new(model);
        st.insert(model.clone());
        Ok(AnomalyFitResponse {
            object: "fit_result".into(),
            model: name.clone(),
            backend: model.backend,
            samples_fitted: model.samples_fitted,
            training_time_ms: model.training_time_ms,
            model_params: model.params(),
            encoder: model.encoder.as_ref().map(|e| e.info()),
            saved_path: path.display().to_string(),
            status: "fitted".into(),
            base_name: req.model.clone(),
            versioned_name: name,
            overwrite: req.overwrite,
            description: model.description.clone(),
        })
    }

    /// Score every row with a fitted model.
    pub fn anomaly_score(&self, req: &AnomalyScoreRequest) -> Result<AnomalyScoreResponse> {
        let key = self.locate_anomaly(&req.model, req.backend)?;
        self.anomaly_model(&key)?.score(req)
    }

    /// Score and keep only the anomalies.
    pub fn anomaly_detect(&self, req: &AnomalyScoreRequest) -> Result<AnomalyDetectResponse> {
        let s = self.anomaly_score(req)?;
        let data: Vec<DetectedAnomaly> =
            s.data.into_iter().filter(|p| p.is_anomaly).map(|p| DetectedAnomaly { index: p.index, score: p.score, raw_score: p.raw_score }).collect();
        Ok(AnomalyDetectResponse {
            object: "list".into(),
            total_count: data.len(),
            summary: DetectSummary { anomalies_detected: data.len(), threshold: s.summary.threshold },
            data,
            model: s.model,
            backend: s.backend,
        })
    }

    /// Write a loaded model to disk again.
    pub fn anomaly_save(&self, req: &AnomalyModelRef) -> Result<AnomalySaveResponse> {
        let key = self.locate_anomaly(&req.model, req.backend)?;
        let m = self.anomaly_model(&key)?;
        let _guard = self.anomaly_state().write.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.write_anomaly(&m)?;
        Ok(AnomalySaveResponse {
            object: "save_result".into(),
            model: m.name.clone(),
            backend: m.backend,
            filename: model_filename(&m.name, m.backend),
            path: path.display().to_string(),
            model_params: m.params(),
            status: "saved".into(),
        })
    }

    /// Load a stored model into memory (re-reading the file).
    pub fn anomaly_load(&self, req: &AnomalyModelRef) -> Result<AnomalySaveResponse> {
        let mut stored = self.stored_anomaly()?;
        if let Some(b) = req.backend {
            stored.retain(|(_, x, _)| *x == b);
        }
        let names: Vec<String> = stored.iter().map(|(n, _, _)| n.clone()).collect();
        let name = registry::resolve(&req.model, &names).ok_or_else(|| Error::not_found(format!("Saved anomaly model '{}'", req.model)))?;
        let matches: Vec<&(String, Backend, PathBuf)> = stored.iter().filter(|(n, _, _)| *n == name).collect();
        let (_, backend, path) = match matches.as_slice() {
            [one] => *one,
            _ => {
                return Err(Error::Invalid(format!(
                    "model '{name}' exists for several backends ({}); pass `backend`",
                    matches.iter().map(|m| m.1.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let m = Arc::new(Self::read_anomaly_file(path)?);
        self.anomaly_state().insert(m.clone());
        Ok(AnomalySaveResponse {
            object: "load_result".into(),
            model: m.name.clone(),
            backend: *backend,
            filename: model_filename(&m.name, m.backend),
            path: path.display().to_string(),
            model_params: m.params(),
            status: "loaded".into(),
        })
    }

    /// Stored models, newest first.
    pub fn anomaly_models(&self) -> Result<AnomalyModelList> {
        let mut data = Vec::new();
        for (name, backend, path) in self.stored_anomaly()? {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let header: Option<Header> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let Some(h) = header else { continue };
            if h.name != name || h.backend != backend {
                continue;
            }
            let base_name = base_of(&name);
            data.push(AnomalyModelInfo {
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
        data.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
        Ok(AnomalyModelList { object: "list".into(), total: data.len(), data, models_dir: self.anomaly_dir().display().to_string() })
    }

    /// Delete a stored model by file name (and unload it).
    pub fn anomaly_delete(&self, filename: &str) -> Result<AnomalyDeleteResponse> {
        registry::validate_name(filename)?;
        let (name, backend) =
            parse_filename(filename).ok_or_else(|| Error::not_found(format!("Anomaly model file '{filename}'")))?;
        let path = self.anomaly_path(&name, backend);
        let _guard = self.anomaly_state().write.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::not_found(format!("Anomaly model file '{filename}'"))),
            Err(e) => return Err(Error::io(&path, e)),
        }
        self.anomaly_state().remove(&(name.clone(), backend));
        Ok(AnomalyDeleteResponse { object: "delete_result".into(), filename: filename.to_string(), model: name, backend, deleted: true })
    }

    /// The backends with their metadata.
    pub fn anomaly_backends(&self) -> BackendList {
        let data = backend_info();
        BackendList { object: "list".into(), total: data.len(), data }
    }
}

/// `name` without a `_{YYYYmmdd_HHMMSS}[_{n}]` version suffix.
fn base_of(name: &str) -> String {
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

#[cfg(test)]
mod tests;
