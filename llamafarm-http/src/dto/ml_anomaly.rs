//! Wire types of `/v1/ml/anomaly/*` (and the runtime's `/v1/anomaly/*`): request
//! bodies with their defaults, the response envelopes (`object`, `status`,
//! `deleted`), and the conversions from the core's domain values.

use llamafarm_core::ml::anomaly as domain;
use llamafarm_core::ml::anomaly::AnomalyRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The detection algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Backend {
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

impl From<Backend> for domain::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::IsolationForest => domain::Backend::IsolationForest,
            Backend::OneClassSvm => domain::Backend::OneClassSvm,
            Backend::LocalOutlierFactor => domain::Backend::LocalOutlierFactor,
            Backend::Autoencoder => domain::Backend::Autoencoder,
            Backend::Ecod => domain::Backend::Ecod,
            Backend::Hbos => domain::Backend::Hbos,
        }
    }
}

impl From<domain::Backend> for Backend {
    fn from(b: domain::Backend) -> Self {
        match b {
            domain::Backend::IsolationForest => Backend::IsolationForest,
            domain::Backend::OneClassSvm => Backend::OneClassSvm,
            domain::Backend::LocalOutlierFactor => Backend::LocalOutlierFactor,
            domain::Backend::Autoencoder => Backend::Autoencoder,
            domain::Backend::Ecod => Backend::Ecod,
            domain::Backend::Hbos => Backend::Hbos,
        }
    }
}

/// How raw scores are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Normalization {
    /// Sigmoid of `(raw - median) / (2 IQR)`: 0..1, about 0.5 is typical.
    #[default]
    Standardization,
    /// `(raw - mean) / std` of the training scores.
    Zscore,
    /// The backend's own score.
    Raw,
}

/// How features are scaled before the detector (`robust`, as the original, by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scaling {
    /// Median and interquartile range (scikit-learn's `RobustScaler`).
    #[default]
    Robust,
    /// Mean and standard deviation (`StandardScaler`).
    Standard,
    /// Minimum and range (`MinMaxScaler`).
    Minmax,
    /// The features as sent.
    None,
}

impl From<Scaling> for domain::Scaling {
    fn from(s: Scaling) -> Self {
        match s {
            Scaling::Robust => domain::Scaling::Robust,
            Scaling::Standard => domain::Scaling::Standard,
            Scaling::Minmax => domain::Scaling::MinMax,
            Scaling::None => domain::Scaling::None,
        }
    }
}

impl From<domain::Scaling> for Scaling {
    fn from(s: domain::Scaling) -> Self {
        match s {
            domain::Scaling::Robust => Scaling::Robust,
            domain::Scaling::Standard => Scaling::Standard,
            domain::Scaling::MinMax => Scaling::Minmax,
            domain::Scaling::None => Scaling::None,
        }
    }
}

impl From<Normalization> for domain::Normalization {
    fn from(n: Normalization) -> Self {
        match n {
            Normalization::Standardization => domain::Normalization::Standardization,
            Normalization::Zscore => domain::Normalization::Zscore,
            Normalization::Raw => domain::Normalization::Raw,
        }
    }
}

impl From<domain::Normalization> for Normalization {
    fn from(n: domain::Normalization) -> Self {
        match n {
            domain::Normalization::Standardization => Normalization::Standardization,
            domain::Normalization::Zscore => Normalization::Zscore,
            domain::Normalization::Raw => Normalization::Raw,
        }
    }
}

/// How one field of an object row becomes features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FieldEncoding {
    /// Numbers as they are.
    Numeric,
    /// Category -> integer (sorted training categories).
    Label,
    /// Hash of the value into 1000 buckets (high cardinality).
    Hash,
    /// One column per training category.
    Onehot,
    /// Boolean-like -> 0/1.
    Binary,
    /// Category -> its share of the training rows.
    Frequency,
}

impl From<FieldEncoding> for domain::FieldEncoding {
    fn from(e: FieldEncoding) -> Self {
        match e {
            FieldEncoding::Numeric => domain::FieldEncoding::Numeric,
            FieldEncoding::Label => domain::FieldEncoding::Label,
            FieldEncoding::Hash => domain::FieldEncoding::Hash,
            FieldEncoding::Onehot => domain::FieldEncoding::Onehot,
            FieldEncoding::Binary => domain::FieldEncoding::Binary,
            FieldEncoding::Frequency => domain::FieldEncoding::Frequency,
        }
    }
}

impl From<domain::FieldEncoding> for FieldEncoding {
    fn from(e: domain::FieldEncoding) -> Self {
        match e {
            domain::FieldEncoding::Numeric => FieldEncoding::Numeric,
            domain::FieldEncoding::Label => FieldEncoding::Label,
            domain::FieldEncoding::Hash => FieldEncoding::Hash,
            domain::FieldEncoding::Onehot => FieldEncoding::Onehot,
            domain::FieldEncoding::Binary => FieldEncoding::Binary,
            domain::FieldEncoding::Frequency => FieldEncoding::Frequency,
        }
    }
}

/// A `schema` as the core takes it.
fn core_schema(s: Option<BTreeMap<String, FieldEncoding>>) -> Option<BTreeMap<String, domain::FieldEncoding>> {
    s.map(|m| m.into_iter().map(|(k, v)| (k, v.into())).collect())
}

fn default_model() -> String {
    "default".to_string()
}
fn default_contamination() -> f64 {
    domain::FitOptions::default().contamination
}
fn default_epochs() -> usize {
    domain::FitOptions::default().epochs
}
fn default_batch_size() -> usize {
    domain::FitOptions::default().batch_size
}

/// `POST /v1/ml/anomaly/fit`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct AnomalyFitRequest {
    /// Model name (default `default`); with `overwrite: false` a timestamp is appended.
    #[serde(default = "default_model")]
    pub(crate) model: String,
    /// Algorithm (default `isolation_forest`).
    #[serde(default)]
    pub(crate) backend: Backend,
    /// Training rows, mostly normal: arrays of numbers or objects.
    #[schema(value_type = Vec<Object>)]
    pub(crate) data: Vec<AnomalyRow>,
    /// Field encodings for object rows (inferred when absent).
    #[serde(default)]
    pub(crate) schema: Option<BTreeMap<String, FieldEncoding>>,
    /// Expected share of anomalies, 0 < c <= 0.5 (default 0.1).
    #[serde(default = "default_contamination")]
    pub(crate) contamination: f64,
    /// Score normalisation (default `standardization`).
    #[serde(default)]
    pub(crate) normalization: Normalization,
    /// Feature scaling before the detector (default `robust`, as the original; `standard`
    /// or `minmax` suit discrete-valued features, `none` data already scaled).
    #[serde(default)]
    pub(crate) scaling: Scaling,
    /// A fixed threshold instead of the contamination percentile.
    #[serde(default)]
    pub(crate) threshold: Option<f64>,
    /// Autoencoder epochs (default 100).
    #[serde(default = "default_epochs")]
    pub(crate) epochs: usize,
    /// Autoencoder batch size (default 32).
    #[serde(default = "default_batch_size")]
    pub(crate) batch_size: usize,
    /// Replace `{model}` instead of saving a timestamped version (default false).
    #[serde(default)]
    pub(crate) overwrite: bool,
    /// Free text kept with the model.
    #[serde(default)]
    pub(crate) description: Option<String>,
    /// Isolation forest trees (default 100).
    #[serde(default)]
    pub(crate) n_estimators: Option<usize>,
    /// LOF neighbours (default 20).
    #[serde(default)]
    pub(crate) n_neighbors: Option<usize>,
    /// One-class SVM `nu` in (0, 1] (default: the contamination).
    #[serde(default)]
    pub(crate) nu: Option<f64>,
    /// RBF kernel gamma (default `scale`).
    #[serde(default)]
    pub(crate) gamma: Option<f64>,
    /// Random seed (default 42).
    #[serde(default)]
    pub(crate) seed: Option<u64>,
}

impl AnomalyFitRequest {
    /// The fit settings of the request (everything but the name and the rows).
    pub(crate) fn options(&self) -> domain::FitOptions {
        domain::FitOptions {
            backend: self.backend.into(),
            schema: core_schema(self.schema.clone()),
            contamination: self.contamination,
            normalization: self.normalization.into(),
            scaling: self.scaling.into(),
            threshold: self.threshold,
            epochs: self.epochs,
            batch_size: self.batch_size,
            overwrite: self.overwrite,
            description: self.description.clone(),
            n_estimators: self.n_estimators,
            n_neighbors: self.n_neighbors,
            nu: self.nu,
            gamma: self.gamma,
            seed: self.seed,
        }
    }
}

/// `model_params` of a fit, save or load.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ModelParams {
    /// Algorithm.
    pub(crate) backend: Backend,
    /// Contamination used for the threshold.
    pub(crate) contamination: f64,
    /// The threshold under `normalization`.
    pub(crate) threshold: f64,
    /// Number of features after encoding.
    pub(crate) input_dim: usize,
    /// Normalisation chosen at fit.
    pub(crate) normalization: Normalization,
    /// Feature scaling chosen at fit.
    pub(crate) scaling: Scaling,
}

impl From<&domain::AnomalyModel> for ModelParams {
    fn from(m: &domain::AnomalyModel) -> Self {
        Self {
            backend: m.backend.into(),
            contamination: m.contamination,
            threshold: m.threshold,
            input_dim: m.input_dim,
            normalization: m.normalization.into(),
            scaling: m.scaler.kind.into(),
        }
    }
}

/// The public view of a schema encoder.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EncoderInfo {
    /// Field -> encoding.
    pub(crate) schema: BTreeMap<String, FieldEncoding>,
    /// The feature columns the rows are encoded into.
    pub(crate) features: Vec<String>,
}

impl From<domain::EncoderInfo> for EncoderInfo {
    fn from(e: domain::EncoderInfo) -> Self {
        Self { schema: e.schema.into_iter().map(|(k, v)| (k, v.into())).collect(), features: e.features }
    }
}

/// Answer to a fit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyFitResponse {
    /// `fit_result`.
    pub(crate) object: String,
    /// The name it is stored under (the versioned name).
    pub(crate) model: String,
    /// Algorithm.
    pub(crate) backend: Backend,
    /// Training rows.
    pub(crate) samples_fitted: usize,
    /// Encoding, scaling and training time.
    pub(crate) training_time_ms: f64,
    /// Threshold and dimensions.
    pub(crate) model_params: ModelParams,
    /// Schema and features when the rows were objects.
    pub(crate) encoder: Option<EncoderInfo>,
    /// The model file.
    pub(crate) saved_path: String,
    /// `fitted`.
    pub(crate) status: String,
    /// The requested name.
    pub(crate) base_name: String,
    /// The stored name (same as `model`).
    pub(crate) versioned_name: String,
    /// Whether an existing `{base_name}` was replaced.
    pub(crate) overwrite: bool,
    /// The description given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
}

impl From<domain::FittedModel> for AnomalyFitResponse {
    fn from(f: domain::FittedModel) -> Self {
        let m = &f.model;
        Self {
            object: "fit_result".into(),
            model: m.name.clone(),
            backend: m.backend.into(),
            samples_fitted: m.samples_fitted,
            training_time_ms: m.training_time_ms,
            model_params: m.as_ref().into(),
            encoder: m.encoder.as_ref().map(|e| e.info().into()),
            saved_path: f.path.display().to_string(),
            status: "fitted".into(),
            base_name: f.base_name,
            versioned_name: m.name.clone(),
            overwrite: f.overwrite,
            description: m.description.clone(),
        }
    }
}

/// `POST /v1/ml/anomaly/score` and `/detect`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct AnomalyScoreRequest {
    /// Model name; `{name}-latest` picks the newest version.
    #[serde(default = "default_model")]
    pub(crate) model: String,
    /// Needed only when the name exists for several backends.
    #[serde(default)]
    pub(crate) backend: Option<Backend>,
    /// Rows to score (the same kind and width as at fit).
    #[schema(value_type = Vec<Object>)]
    pub(crate) data: Vec<AnomalyRow>,
    /// Must equal the model's schema when given.
    #[serde(default)]
    pub(crate) schema: Option<BTreeMap<String, FieldEncoding>>,
    /// Report scores this way (default: the model's normalisation).
    #[serde(default)]
    pub(crate) normalization: Option<Normalization>,
    /// Override the model's threshold.
    #[serde(default)]
    pub(crate) threshold: Option<f64>,
}

impl AnomalyScoreRequest {
    /// Which model.
    pub(crate) fn model_ref(&self) -> domain::ModelRef {
        domain::ModelRef { name: self.model.clone(), backend: self.backend.map(Into::into) }
    }

    /// The score settings of the request.
    pub(crate) fn options(&self) -> domain::ScoreOptions {
        domain::ScoreOptions { schema: core_schema(self.schema.clone()), normalization: self.normalization.map(Into::into), threshold: self.threshold }
    }
}

/// One scored row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyScore {
    /// Row index in the request.
    pub(crate) index: usize,
    /// Normalised score.
    pub(crate) score: f64,
    /// `score > threshold`.
    pub(crate) is_anomaly: bool,
    /// The backend's raw score.
    pub(crate) raw_score: f64,
}

/// Summary of a score call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ScoreSummary {
    /// Rows scored.
    pub(crate) total_points: usize,
    /// Rows above the threshold.
    pub(crate) anomaly_count: usize,
    /// `anomaly_count / total_points`.
    pub(crate) anomaly_rate: f64,
    /// The threshold applied.
    pub(crate) threshold: f64,
}

/// Answer to a score call: every row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyScoreResponse {
    /// `list`.
    pub(crate) object: String,
    /// One entry per row, in order.
    pub(crate) data: Vec<AnomalyScore>,
    /// Counts and threshold.
    pub(crate) summary: ScoreSummary,
    /// The resolved model name.
    pub(crate) model: String,
    /// Its backend.
    pub(crate) backend: Backend,
    /// Normalisation of `score`.
    pub(crate) normalization: Normalization,
}

impl From<domain::Scores> for AnomalyScoreResponse {
    fn from(s: domain::Scores) -> Self {
        let summary = ScoreSummary { total_points: s.rows.len(), anomaly_count: s.anomaly_count(), anomaly_rate: s.anomaly_rate(), threshold: s.threshold };
        Self {
            object: "list".into(),
            data: s.rows.iter().map(|r| AnomalyScore { index: r.index, score: r.score, is_anomaly: r.is_anomaly, raw_score: r.raw_score }).collect(),
            summary,
            model: s.model,
            backend: s.backend.into(),
            normalization: s.normalization.into(),
        }
    }
}

/// One detected anomaly.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DetectedAnomaly {
    /// Row index in the request.
    pub(crate) index: usize,
    /// Normalised score.
    pub(crate) score: f64,
    /// The backend's raw score.
    pub(crate) raw_score: f64,
}

/// Summary of a detect call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DetectSummary {
    /// Number of anomalies.
    pub(crate) anomalies_detected: usize,
    /// The threshold applied.
    pub(crate) threshold: f64,
}

/// Answer to a detect call: the anomalous rows only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyDetectResponse {
    /// `list`.
    pub(crate) object: String,
    /// Anomalous rows, in request order.
    pub(crate) data: Vec<DetectedAnomaly>,
    /// `data.len()`.
    pub(crate) total_count: usize,
    /// The resolved model name.
    pub(crate) model: String,
    /// Its backend.
    pub(crate) backend: Backend,
    /// Count and threshold.
    pub(crate) summary: DetectSummary,
}

/// From the scores of the anomalous rows ([`domain::Anomaly::detect`]).
impl From<domain::Scores> for AnomalyDetectResponse {
    fn from(s: domain::Scores) -> Self {
        let data: Vec<DetectedAnomaly> =
            s.rows.iter().filter(|r| r.is_anomaly).map(|r| DetectedAnomaly { index: r.index, score: r.score, raw_score: r.raw_score }).collect();
        Self {
            object: "list".into(),
            total_count: data.len(),
            summary: DetectSummary { anomalies_detected: data.len(), threshold: s.threshold },
            data,
            model: s.model,
            backend: s.backend.into(),
        }
    }
}

/// `POST /v1/ml/anomaly/save` and `/load`: which model.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct AnomalyModelRef {
    /// Model name (`-latest` allowed).
    #[serde(default = "default_model")]
    pub(crate) model: String,
    /// Needed only when the name exists for several backends.
    #[serde(default)]
    pub(crate) backend: Option<Backend>,
}

impl From<AnomalyModelRef> for domain::ModelRef {
    fn from(r: AnomalyModelRef) -> Self {
        domain::ModelRef { name: r.model, backend: r.backend.map(Into::into) }
    }
}

/// Answer to save or load.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalySaveResponse {
    /// `save_result` or `load_result`.
    pub(crate) object: String,
    /// The resolved name.
    pub(crate) model: String,
    /// Its backend.
    pub(crate) backend: Backend,
    /// `{model}_{backend}.json`.
    pub(crate) filename: String,
    /// Full path.
    pub(crate) path: String,
    /// Threshold and dimensions.
    pub(crate) model_params: ModelParams,
    /// `saved` or `loaded`.
    pub(crate) status: String,
}

impl AnomalySaveResponse {
    fn new(s: domain::SavedModel, object: &str, status: &str) -> Self {
        Self {
            object: object.into(),
            model: s.model.name.clone(),
            backend: s.backend.into(),
            filename: s.filename,
            path: s.path.display().to_string(),
            model_params: s.model.as_ref().into(),
            status: status.into(),
        }
    }

    /// Answer to a save.
    pub(crate) fn saved(s: domain::SavedModel) -> Self {
        Self::new(s, "save_result", "saved")
    }

    /// Answer to a load.
    pub(crate) fn loaded(s: domain::SavedModel) -> Self {
        Self::new(s, "load_result", "loaded")
    }
}

/// A stored model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyModelInfo {
    /// File name (what `DELETE /models/{filename}` takes).
    pub(crate) filename: String,
    /// Model name.
    pub(crate) name: String,
    /// Name without the version suffix.
    pub(crate) base_name: String,
    /// Algorithm.
    pub(crate) backend: Backend,
    /// Whether the name carries a `_{YYYYmmdd_HHMMSS}` version.
    pub(crate) is_versioned: bool,
    /// File size.
    pub(crate) size_bytes: u64,
    /// Modification time, Unix seconds.
    pub(crate) modified: f64,
    /// Fit time (RFC 3339).
    pub(crate) created: String,
    /// Description given at fit.
    pub(crate) description: Option<String>,
    /// Normalisation chosen at fit.
    pub(crate) normalization: Normalization,
    /// Features after encoding.
    pub(crate) input_dim: usize,
    /// Training rows.
    pub(crate) samples_fitted: usize,
}

impl From<domain::StoredModel> for AnomalyModelInfo {
    fn from(m: domain::StoredModel) -> Self {
        Self {
            filename: m.filename,
            name: m.name,
            base_name: m.base_name,
            backend: m.backend.into(),
            is_versioned: m.is_versioned,
            size_bytes: m.size_bytes,
            modified: m.modified,
            created: m.created,
            description: m.description,
            normalization: m.normalization.into(),
            input_dim: m.input_dim,
            samples_fitted: m.samples_fitted,
        }
    }
}

/// `GET /v1/ml/anomaly/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyModelList {
    /// `list`.
    pub(crate) object: String,
    /// Newest first.
    pub(crate) data: Vec<AnomalyModelInfo>,
    /// The directory.
    pub(crate) models_dir: String,
    /// `data.len()`.
    pub(crate) total: usize,
}

impl From<domain::StoredModels> for AnomalyModelList {
    fn from(l: domain::StoredModels) -> Self {
        Self { object: "list".into(), total: l.models.len(), data: l.models.into_iter().map(Into::into).collect(), models_dir: l.dir.display().to_string() }
    }
}

/// `DELETE /v1/ml/anomaly/models/{filename}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AnomalyDeleteResponse {
    /// `delete_result`.
    pub(crate) object: String,
    /// The removed file.
    pub(crate) filename: String,
    /// The model name it held.
    pub(crate) model: String,
    /// Its backend.
    pub(crate) backend: Backend,
    /// Always true (a missing file is a 404).
    pub(crate) deleted: bool,
}

impl From<domain::DeletedModel> for AnomalyDeleteResponse {
    fn from(d: domain::DeletedModel) -> Self {
        Self { object: "delete_result".into(), filename: d.filename, model: d.name, backend: d.backend.into(), deleted: true }
    }
}

/// One entry of `GET /v1/ml/anomaly/backends`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct BackendInfo {
    /// Wire name.
    pub(crate) backend: Backend,
    /// Display name.
    pub(crate) name: String,
    /// What it does.
    pub(crate) description: String,
    /// legacy, fast, deep_learning.
    pub(crate) category: String,
    /// Relative training speed.
    pub(crate) speed: String,
    /// Relative memory use.
    pub(crate) memory: String,
    /// Request fields it reads.
    pub(crate) parameters: Vec<String>,
    /// When to choose it.
    pub(crate) best_for: String,
    /// One of the original four backends.
    pub(crate) is_legacy: bool,
}

impl From<domain::BackendInfo> for BackendInfo {
    fn from(b: domain::BackendInfo) -> Self {
        Self {
            backend: b.backend.into(),
            name: b.name.into(),
            description: b.description.into(),
            category: b.category.into(),
            speed: b.speed.into(),
            memory: b.memory.into(),
            parameters: b.parameters.iter().map(|s| s.to_string()).collect(),
            best_for: b.best_for.into(),
            is_legacy: b.is_legacy,
        }
    }
}

/// `GET /v1/ml/anomaly/backends`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct BackendList {
    /// `list`.
    pub(crate) object: String,
    /// Every backend.
    pub(crate) data: Vec<BackendInfo>,
    /// `data.len()`.
    pub(crate) total: usize,
}

impl From<Vec<domain::BackendInfo>> for BackendList {
    fn from(v: Vec<domain::BackendInfo>) -> Self {
        Self { object: "list".into(), total: v.len(), data: v.into_iter().map(Into::into).collect() }
    }
}
