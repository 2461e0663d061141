//! Wire types of `/v1/ml/classifier/*` (and the runtime's `/v1/classifier/*` and
//! `/v1/classify`): request bodies with their defaults, the response envelopes
//! (`object`, `status`), and the conversions from the core's domain values.

use llamafarm_core::ml::classifier as domain;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One labelled example.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct TrainingExample {
    /// The text.
    pub(crate) text: String,
    /// Its class.
    pub(crate) label: String,
}

impl From<TrainingExample> for domain::TrainingExample {
    fn from(e: TrainingExample) -> Self {
        domain::TrainingExample { text: e.text, label: e.label }
    }
}

fn default_base() -> String {
    domain::FitOptions::default().base_model
}
fn default_iterations() -> usize {
    domain::FitOptions::default().num_iterations
}
fn default_batch() -> usize {
    domain::FitOptions::default().batch_size
}
fn default_epochs() -> usize {
    domain::FitOptions::default().num_epochs
}
fn default_lr() -> f64 {
    domain::FitOptions::default().learning_rate
}
fn default_seed() -> u64 {
    domain::FitOptions::default().seed
}

/// `POST /v1/ml/classifier/fit`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassifierFitRequest {
    /// Base name of the classifier (1-128 of `[A-Za-z0-9_.-]`).
    pub(crate) model: String,
    /// Sentence-transformer (BERT family) to fine-tune, a model id in the cache.
    #[serde(default = "default_base")]
    pub(crate) base_model: String,
    /// Labelled examples (at least two classes).
    pub(crate) training_data: Vec<TrainingExample>,
    /// Contrastive iterations: positive and negative pairs per example (1..=1000).
    #[serde(default = "default_iterations")]
    pub(crate) num_iterations: usize,
    /// Pairs per optimisation step (1..=512).
    #[serde(default = "default_batch")]
    pub(crate) batch_size: usize,
    /// Passes over the pairs (1..=20).
    #[serde(default = "default_epochs")]
    pub(crate) num_epochs: usize,
    /// AdamW learning rate of the body (0 < lr <= 0.01).
    #[serde(default = "default_lr")]
    pub(crate) learning_rate: f64,
    /// Seed of the pair sampling and shuffling.
    #[serde(default = "default_seed")]
    pub(crate) seed: u64,
    /// Replace `{model}` in place; when false (default) save as `{model}_{YYYYmmdd_HHMMSS}`.
    #[serde(default)]
    pub(crate) overwrite: bool,
    /// Stored in `metadata.json`.
    #[serde(default)]
    pub(crate) description: Option<String>,
}

impl ClassifierFitRequest {
    /// The request as the core takes it: name, examples and settings.
    pub(crate) fn into_parts(self) -> (String, Vec<domain::TrainingExample>, domain::FitOptions) {
        let opts = domain::FitOptions {
            base_model: self.base_model,
            num_iterations: self.num_iterations,
            batch_size: self.batch_size,
            num_epochs: self.num_epochs,
            learning_rate: self.learning_rate,
            seed: self.seed,
            overwrite: self.overwrite,
            description: self.description,
        };
        (self.model, self.training_data.into_iter().map(Into::into).collect(), opts)
    }
}

/// Result of a fit (the model is loaded and saved).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierFitResponse {
    /// `fit_result`.
    pub(crate) object: String,
    /// The stored name (versioned unless `overwrite`).
    pub(crate) model: String,
    /// The base sentence-transformer.
    pub(crate) base_model: String,
    /// Training examples.
    pub(crate) samples_fitted: usize,
    /// Distinct labels.
    pub(crate) num_classes: usize,
    /// Sorted labels.
    pub(crate) labels: Vec<String>,
    /// Wall time of the fit, saving included.
    pub(crate) training_time_ms: f64,
    /// `fitted`.
    pub(crate) status: String,
    /// Always true: fit saves the model.
    pub(crate) auto_saved: bool,
    /// The model directory.
    pub(crate) saved_path: String,
    /// The requested name without version suffix.
    pub(crate) base_name: String,
    /// Same as `model`.
    pub(crate) versioned_name: String,
    /// As requested.
    pub(crate) overwrite: bool,
    /// Contrastive pairs trained on.
    pub(crate) num_pairs: usize,
    /// Optimisation steps.
    pub(crate) steps: usize,
    /// Mean loss of the first tenth of the steps.
    pub(crate) initial_loss: f32,
    /// Mean loss of the last tenth of the steps.
    pub(crate) final_loss: f32,
}

impl From<domain::FittedClassifier> for ClassifierFitResponse {
    fn from(f: domain::FittedClassifier) -> Self {
        Self {
            object: "fit_result".into(),
            model: f.name.clone(),
            base_model: f.base_model,
            samples_fitted: f.samples_fitted,
            num_classes: f.labels.len(),
            labels: f.labels,
            training_time_ms: f.training_time_ms,
            status: "fitted".into(),
            auto_saved: true,
            saved_path: f.path.display().to_string(),
            base_name: f.base_name,
            versioned_name: f.name,
            overwrite: f.overwrite,
            num_pairs: f.num_pairs,
            steps: f.steps,
            initial_loss: f.initial_loss,
            final_loss: f.final_loss,
        }
    }
}

/// `POST /v1/ml/classifier/predict`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct ClassifierPredictRequest {
    /// A stored or loaded classifier; `{base}-latest` picks the newest version.
    pub(crate) model: String,
    /// Texts to classify (1..=10000, none empty).
    pub(crate) texts: Vec<String>,
}

/// One classified text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierPrediction {
    /// The input text.
    pub(crate) text: String,
    /// The predicted label.
    pub(crate) label: String,
    /// Probability of `label`.
    pub(crate) score: f32,
    /// Probability of every label.
    pub(crate) all_scores: BTreeMap<String, f32>,
}

impl From<domain::Prediction> for ClassifierPrediction {
    fn from(p: domain::Prediction) -> Self {
        Self { text: p.text, label: p.label, score: p.score, all_scores: p.all_scores }
    }
}

/// Predictions, in input order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierPredictResponse {
    /// `list`.
    pub(crate) object: String,
    /// The entries.
    pub(crate) data: Vec<ClassifierPrediction>,
    /// Number of entries.
    pub(crate) total_count: usize,
    /// The resolved model name.
    pub(crate) model: String,
}

impl From<domain::Predictions> for ClassifierPredictResponse {
    fn from(p: domain::Predictions) -> Self {
        Self { object: "list".into(), total_count: p.predictions.len(), data: p.predictions.into_iter().map(Into::into).collect(), model: p.model }
    }
}

/// `POST /v1/ml/classifier/save` and `/load`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct ClassifierModelRequest {
    /// Model name; `{base}-latest` picks the newest version.
    pub(crate) model: String,
    /// Save only: replaces the stored description.
    #[serde(default)]
    pub(crate) description: Option<String>,
}

/// Result of a save.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierSaveResponse {
    /// `save_result`.
    pub(crate) object: String,
    /// The resolved model name.
    pub(crate) model: String,
    /// The model directory.
    pub(crate) path: String,
    /// `saved`.
    pub(crate) status: String,
}

impl From<domain::SavedClassifier> for ClassifierSaveResponse {
    fn from(s: domain::SavedClassifier) -> Self {
        Self { object: "save_result".into(), model: s.name, path: s.path.display().to_string(), status: "saved".into() }
    }
}

/// Result of a load.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierLoadResponse {
    /// `load_result`.
    pub(crate) object: String,
    /// The resolved model name.
    pub(crate) model: String,
    /// Sorted labels.
    pub(crate) labels: Vec<String>,
    /// `loaded`.
    pub(crate) status: String,
}

impl From<domain::LoadedInfo> for ClassifierLoadResponse {
    fn from(l: domain::LoadedInfo) -> Self {
        Self { object: "load_result".into(), model: l.name, labels: l.labels, status: "loaded".into() }
    }
}

/// A stored classifier.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierModelInfo {
    /// Stored name (directory name).
    pub(crate) name: String,
    /// The requested name without version suffix.
    pub(crate) base_name: String,
    /// The model directory.
    pub(crate) path: String,
    /// RFC 3339.
    pub(crate) created: String,
    /// Whether the name carries a `_{YYYYmmdd_HHMMSS}` suffix.
    pub(crate) is_versioned: bool,
    /// Sorted labels.
    pub(crate) labels: Vec<String>,
    /// Free text.
    pub(crate) description: Option<String>,
    /// The base sentence-transformer.
    pub(crate) base_model: String,
    /// In memory now.
    pub(crate) loaded: bool,
}

impl From<domain::StoredClassifier> for ClassifierModelInfo {
    fn from(c: domain::StoredClassifier) -> Self {
        Self {
            name: c.name,
            base_name: c.base_name,
            path: c.path.display().to_string(),
            created: c.created,
            is_versioned: c.is_versioned,
            labels: c.labels,
            description: c.description,
            base_model: c.base_model,
            loaded: c.loaded,
        }
    }
}

/// `GET /v1/ml/classifier/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierModelList {
    /// `list`.
    pub(crate) object: String,
    /// The entries.
    pub(crate) data: Vec<ClassifierModelInfo>,
    /// Number of entries.
    pub(crate) total: usize,
}

impl From<Vec<domain::StoredClassifier>> for ClassifierModelList {
    fn from(v: Vec<domain::StoredClassifier>) -> Self {
        Self { object: "list".into(), total: v.len(), data: v.into_iter().map(Into::into).collect() }
    }
}

/// Result of a delete.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifierDeleteResponse {
    /// `delete_result`.
    pub(crate) object: String,
    /// The resolved model name.
    pub(crate) model: String,
    /// `deleted`.
    pub(crate) status: String,
}

impl ClassifierDeleteResponse {
    /// The answer for the deleted classifier `model`.
    pub(crate) fn deleted(model: String) -> Self {
        Self { object: "delete_result".into(), model, status: "deleted".into() }
    }
}

/// `POST /v1/classify` on the runtime.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(crate) struct ClassifyRequest {
    /// A trained SetFit classifier (name or `{base}-latest`), or a Hugging Face
    /// sequence-classification model id in the model cache.
    pub(crate) model: String,
    /// Texts to classify.
    pub(crate) texts: Vec<String>,
    /// Most tokens a pre-trained model reads (default: the model's maximum); SetFit
    /// classifiers truncate at their own maximum.
    #[serde(default)]
    pub(crate) max_length: Option<usize>,
}

/// One result of `/v1/classify`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifyResult {
    /// Position in the request.
    pub(crate) index: usize,
    /// The predicted label.
    pub(crate) label: String,
    /// Probability of `label`.
    pub(crate) score: f32,
    /// Probability of every label.
    pub(crate) all_scores: BTreeMap<String, f32>,
}

/// `/v1/classify` response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClassifyResponse {
    /// `list`.
    pub(crate) object: String,
    /// The entries.
    pub(crate) data: Vec<ClassifyResult>,
    /// The resolved model name.
    pub(crate) model: String,
}

impl From<domain::Predictions> for ClassifyResponse {
    fn from(p: domain::Predictions) -> Self {
        let data =
            p.predictions.into_iter().enumerate().map(|(index, p)| ClassifyResult { index, label: p.label, score: p.score, all_scores: p.all_scores }).collect();
        Self { object: "list".into(), data, model: p.model }
    }
}
