//! SetFit few-shot text classifiers, trained and served in candle.
//!
//! Training ([`Ml::classifier_fit`]) follows the `setfit` package:
//!
//! 1. contrastive pairs from the labelled examples (`num_iterations` positive and
//!    `num_iterations` negative pairs per example, `pairs`);
//! 2. fine-tuning of the sentence-transformer body on those pairs (`native`: the
//!    forward and backward passes written out on our packed GEMM, checked gradient
//!    by gradient against candle's autograd, which `train` uses and
//!    `LF_SETFIT_TRAINER=autograd` selects): mean pooling, CosineSimilarityLoss (MSE
//!    between cos(u, v) and the 0/1 label), AdamW (lr 2e-5, weight decay 0.01),
//!    10 % linear warm-up then linear decay, `batch_size` pairs per step, one epoch
//!    by default, a fixed seed (`train`);
//! 3. a multinomial logistic-regression head (L2, C = 1, as scikit-learn's
//!    `LogisticRegression()`) on the fine-tuned, normalised embeddings (`head`).
//!
//! ## On-disk format
//!
//! Each model is a directory `{data}/models/classifier/{name}/`:
//!
//! - a complete sentence-transformers model: `model.safetensors` (the fine-tuned
//!   weights), `config.json`, `tokenizer.json`, `modules.json`, `1_Pooling/config.json`,
//!   `sentence_bert_config.json` and whatever else the base model directory had;
//! - `head.json`: `{labels, dim, weights (classes x dim, row-major), bias}`;
//! - `labels.txt`: one label per line (as upstream writes it);
//! - `metadata.json`: [`ClassifierModelInfo`] fields plus the training settings.
//!
//! A directory is built under a temporary name inside `classifier/` and renamed into
//! place, so a model is either complete or absent. Names follow [`super::registry`]:
//! `overwrite: false` saves as `{name}_{YYYYmmdd_HHMMSS}`, `{name}-latest` resolves
//! to the newest version.

pub(crate) mod head;
pub(crate) mod pairs;
pub(crate) mod native;
pub(crate) mod train;

use super::registry;
use super::Ml;
use crate::embed::{BertEmbedder, Embedder};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Default base model.
pub const DEFAULT_BASE_MODEL: &str = crate::embed::DEFAULT_EMBEDDING_MODEL;
/// Most examples one fit accepts.
pub const MAX_TRAINING_EXAMPLES: usize = 20_000;
/// Most texts one predict accepts.
pub const MAX_PREDICT_TEXTS: usize = 10_000;
/// Most contrastive pairs one fit may train on (`2 * num_iterations * examples * epochs`).
pub const MAX_TRAINING_PAIRS: usize = 2_000_000;
const FORMAT: &str = "llamafarm-setfit/1";

/// One labelled example.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainingExample {
    /// The text.
    pub text: String,
    /// Its class.
    pub label: String,
}

impl TrainingExample {
    /// Shorthand.
    pub fn new(text: impl Into<String>, label: impl Into<String>) -> Self {
        Self { text: text.into(), label: label.into() }
    }
}

fn default_base() -> String {
    DEFAULT_BASE_MODEL.to_string()
}
fn default_iterations() -> usize {
    20
}
fn default_batch() -> usize {
    16
}
fn default_epochs() -> usize {
    1
}
fn default_lr() -> f64 {
    2e-5
}
fn default_seed() -> u64 {
    42
}

/// `POST /v1/ml/classifier/fit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassifierFitRequest {
    /// Base name of the classifier (1-128 of `[A-Za-z0-9_.-]`).
    pub model: String,
    /// Sentence-transformer (BERT family) to fine-tune, a model id in the cache.
    #[serde(default = "default_base")]
    pub base_model: String,
    /// Labelled examples (at least two classes).
    pub training_data: Vec<TrainingExample>,
    /// Contrastive iterations: positive and negative pairs per example (1..=1000).
    #[serde(default = "default_iterations")]
    pub num_iterations: usize,
    /// Pairs per optimisation step (1..=512).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Passes over the pairs (1..=20).
    #[serde(default = "default_epochs")]
    pub num_epochs: usize,
    /// AdamW learning rate of the body (0 < lr <= 0.01).
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Seed of the pair sampling and shuffling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Replace `{model}` in place; when false (default) save as `{model}_{YYYYmmdd_HHMMSS}`.
    #[serde(default)]
    pub overwrite: bool,
    /// Stored in `metadata.json`.
    #[serde(default)]
    pub description: Option<String>,
}

impl ClassifierFitRequest {
    /// A request with the defaults.
    pub fn new(model: impl Into<String>, training_data: Vec<TrainingExample>) -> Self {
        Self {
            model: model.into(),
            base_model: default_base(),
            training_data,
            num_iterations: default_iterations(),
            batch_size: default_batch(),
            num_epochs: default_epochs(),
            learning_rate: default_lr(),
            seed: default_seed(),
            overwrite: false,
            description: None,
        }
    }
}

/// Result of a fit (the model is loaded and saved).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierFitResponse {
    /// `fit_result`.
    pub object: String,
    /// The stored name (versioned unless `overwrite`).
    pub model: String,
    /// The base sentence-transformer.
    pub base_model: String,
    /// Training examples.
    pub samples_fitted: usize,
    /// Distinct labels.
    pub num_classes: usize,
    /// Sorted labels.
    pub labels: Vec<String>,
    /// Wall time of the fit, saving included.
    pub training_time_ms: f64,
    /// `fitted`.
    pub status: String,
    /// Always true: fit saves the model.
    pub auto_saved: bool,
    /// The model directory.
    pub saved_path: String,
    /// The requested name without version suffix.
    pub base_name: String,
    /// Same as `model`.
    pub versioned_name: String,
    /// As requested.
    pub overwrite: bool,
    /// Contrastive pairs trained on.
    pub num_pairs: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Mean loss of the first and the last tenth of the steps.
    pub initial_loss: f32,
    /// Mean loss of the last tenth of the steps.
    pub final_loss: f32,
}

/// `POST /v1/ml/classifier/predict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierPredictRequest {
    /// A stored or loaded classifier; `{base}-latest` picks the newest version.
    pub model: String,
    /// Texts to classify (1..=10000, none empty).
    pub texts: Vec<String>,
}

/// One classified text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierPrediction {
    /// The input text.
    pub text: String,
    /// The predicted label.
    pub label: String,
    /// Probability of `label`.
    pub score: f32,
    /// Probability of every label.
    pub all_scores: BTreeMap<String, f32>,
}

/// Predictions, in input order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierPredictResponse {
    /// `list`.
    pub object: String,
    /// The entries.
    pub data: Vec<ClassifierPrediction>,
    /// Number of entries.
    pub total_count: usize,
    /// The resolved model name.
    pub model: String,
}

/// `POST /v1/ml/classifier/save` and `/load`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierModelRequest {
    /// Model name; `{base}-latest` picks the newest version.
    pub model: String,
    /// Save only: replaces the stored description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Result of a save.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierSaveResponse {
    /// `save_result`.
    pub object: String,
    /// The resolved model name.
    pub model: String,
    /// The model directory.
    pub path: String,
    /// `saved`.
    pub status: String,
}

/// Result of a load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierLoadResponse {
    /// `load_result`.
    pub object: String,
    /// The resolved model name.
    pub model: String,
    /// Sorted labels.
    pub labels: Vec<String>,
    /// `loaded`.
    pub status: String,
}

/// A stored classifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierModelInfo {
    /// Stored name (directory name).
    pub name: String,
    /// The requested name without version suffix.
    pub base_name: String,
    /// The model directory.
    pub path: String,
    /// RFC 3339.
    pub created: String,
    /// Whether the name carries a `_{YYYYmmdd_HHMMSS}` suffix.
    pub is_versioned: bool,
    /// Sorted labels.
    pub labels: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// The base sentence-transformer.
    pub base_model: String,
    /// In memory now.
    #[serde(default)]
    pub loaded: bool,
}

/// `GET /v1/ml/classifier/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierModelList {
    /// `list`.
    pub object: String,
    /// The entries.
    pub data: Vec<ClassifierModelInfo>,
    /// Number of entries.
    pub total: usize,
}

/// Result of a delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifierDeleteResponse {
    /// `delete_result`.
    pub object: String,
    /// The resolved model name.
    pub model: String,
    /// `deleted`.
    pub status: String,
}

/// `POST /v1/classify` on the runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifyRequest {
    /// A trained SetFit classifier (name or `{base}-latest`).
    pub model: String,
    /// Texts to classify.
    pub texts: Vec<String>,
    /// Accepted for compatibility; texts are truncated at the model's own maximum.
    #[serde(default)]
    pub max_length: Option<usize>,
}

/// One result of `/v1/classify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifyResult {
    /// Position in the request.
    pub index: usize,
    /// The predicted label.
    pub label: String,
    /// Probability of `label`.
    pub score: f32,
    /// Probability of every label.
    pub all_scores: BTreeMap<String, f32>,
}

/// `/v1/classify` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassifyResponse {
    /// `list`.
    pub object: String,
    /// The entries.
    pub data: Vec<ClassifyResult>,
    /// The resolved model name.
    pub model: String,
}

/// `metadata.json` of a stored classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Metadata {
    format: String,
    name: String,
    base_name: String,
    base_model: String,
    labels: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    created: String,
    samples_fitted: usize,
    num_iterations: usize,
    batch_size: usize,
    num_epochs: usize,
    learning_rate: f64,
    seed: u64,
    num_pairs: usize,
    training_time_ms: f64,
}

/// A classifier in memory.
pub(crate) struct LoadedClassifier {
    name: String,
    dir: PathBuf,
    embedder: BertEmbedder,
    head: head::LogisticHead,
}

impl LoadedClassifier {
    fn load(dir: &Path, name: &str) -> Result<Self> {
        let _meta: Metadata = read_json(&dir.join("metadata.json"))?;
        let head: head::LogisticHead = read_json(&dir.join("head.json"))?;
        head.validate().map_err(|e| Error::Invalid(format!("classifier '{name}': {e}")))?;
        let embedder = BertEmbedder::load(dir, name, 16)?;
        if embedder.dimension() != head.dim {
            return Err(Error::Invalid(format!("classifier '{name}': head dimension {} differs from the body's {}", head.dim, embedder.dimension())));
        }
        Ok(Self { name: name.to_string(), dir: dir.to_path_buf(), embedder, head })
    }

    /// Probabilities for each text; each distinct text is embedded once.
    fn predict(&self, texts: &[String]) -> Result<Vec<ClassifierPrediction>> {
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
                ClassifierPrediction {
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
    commit: Mutex<()>,
}

impl ClassifierState {
    fn get(&self, name: &str) -> Option<Arc<LoadedClassifier>> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
    fn insert(&self, c: LoadedClassifier) -> Arc<LoadedClassifier> {
        let c = Arc::new(c);
        self.loaded.write().unwrap_or_else(|e| e.into_inner()).insert(c.name.clone(), c.clone());
        c
    }
    fn remove(&self, name: &str) -> bool {
        self.loaded.write().unwrap_or_else(|e| e.into_inner()).remove(name).is_some()
    }
    fn names(&self) -> Vec<String> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

/// A fine-tuned body, from either trainer.
enum Body {
    Native(native::NativeBert),
    Autograd(train::TrainableBert),
}

impl Body {
    fn save(&self, path: &Path) -> Result<()> {
        match self {
            Body::Native(b) => b.save(path),
            Body::Autograd(b) => b.save(path),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Parse { what: path.display().to_string(), message: e.to_string() })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Copy the sentence-transformers files (everything but the weights) of `base` into `dst`.
fn copy_model_files(base: &Path, dst: &Path) -> Result<()> {
    fn walk(src: &Path, dst: &Path, top: bool) -> Result<()> {
        std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
        for entry in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
            let entry = entry.map_err(|e| Error::io(src, e))?;
            let name = entry.file_name();
            let name_s = name.to_string_lossy();
            let from = entry.path();
            // Weights other than the safetensors we write (pytorch_model.bin, onnx/, ...) are not copied.
            let skip = name_s.starts_with('.')
                || (top && (name_s == "model.safetensors" || name_s.ends_with(".bin") || name_s.ends_with(".onnx") || name_s == "onnx" || name_s == "openvino" || name_s.ends_with(".h5") || name_s.ends_with(".msgpack") || name_s.ends_with(".ot")));
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

fn check_texts(texts: &[String], what: &str, max: usize) -> Result<()> {
    if texts.is_empty() {
        return Err(Error::Invalid(format!("{what}: at least one text is required")));
    }
    if texts.len() > max {
        return Err(Error::Invalid(format!("{what}: at most {max} texts per request (got {})", texts.len())));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(Error::Invalid(format!("{what}[{i}]: text is empty")));
    }
    Ok(())
}

impl<'a> Ml<'a> {
    fn classifier_state(&self) -> &ClassifierState {
        &self.lf.ml_state().classifier
    }

    /// Names of the classifiers stored on disk (complete directories only).
    fn stored_classifiers(&self) -> Vec<String> {
        let dir = self.classifier_dir();
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
    fn resolve_classifier(&self, requested: &str) -> Result<String> {
        let plain = requested.strip_suffix(registry::LATEST_SUFFIX).unwrap_or(requested);
        registry::validate_name(plain)?;
        let mut known = self.stored_classifiers();
        known.extend(self.classifier_state().names());
        known.sort();
        known.dedup();
        registry::resolve(requested, &known).ok_or_else(|| Error::not_found(format!("Classifier '{requested}'")))
    }

    /// The loaded classifier `name` (already resolved), loading it from disk if needed.
    fn classifier(&self, name: &str) -> Result<Arc<LoadedClassifier>> {
        if let Some(c) = self.classifier_state().get(name) {
            return Ok(c);
        }
        let dir = self.classifier_dir().join(name);
        if !dir.join("head.json").is_file() {
            return Err(Error::not_found(format!("Classifier '{name}'")));
        }
        Ok(self.classifier_state().insert(LoadedClassifier::load(&dir, name)?))
    }

    /// Train a SetFit classifier, save it (auto-save) and keep it loaded.
    ///
    /// Runs on the calling thread and the rayon pool; call it from a blocking
    /// context. No global lock is held while training.
    ///
    /// ```no_run
    /// use llamafarm_core::ml::classifier::{ClassifierFitRequest, ClassifierPredictRequest, TrainingExample};
    /// # fn main() -> llamafarm_core::Result<()> {
    /// let lf = llamafarm_core::LlamaFarm::open("/tmp/lf-data")?;
    /// let data = vec![
    ///     TrainingExample::new("Book me a flight to Paris", "booking"),
    ///     TrainingExample::new("Reserve a table for two", "booking"),
    ///     TrainingExample::new("Cancel my reservation", "cancellation"),
    ///     TrainingExample::new("I want to cancel my order", "cancellation"),
    /// ];
    /// let mut req = ClassifierFitRequest::new("intent", data);
    /// req.num_iterations = 5;
    /// let fit = lf.ml().classifier_fit(&req)?;
    /// println!("saved as {} at {}", fit.model, fit.saved_path);
    /// let out = lf.ml().classifier_predict(&ClassifierPredictRequest {
    ///     model: "intent-latest".into(),
    ///     texts: vec!["Please cancel the booking".into()],
    /// })?;
    /// println!("{} ({:.2})", out.data[0].label, out.data[0].score);
    /// # Ok(()) }
    /// ```
    pub fn classifier_fit(&self, req: &ClassifierFitRequest) -> Result<ClassifierFitResponse> {
        let started = Instant::now();
        registry::validate_name(&req.model)?;
        if req.model.ends_with(registry::LATEST_SUFFIX) {
            return Err(Error::Invalid(format!("model name '{}' must not end in '{}' (that suffix selects the newest version)", req.model, registry::LATEST_SUFFIX)));
        }
        if req.training_data.is_empty() {
            return Err(Error::Invalid("training_data: at least two examples of two classes are required".into()));
        }
        if req.training_data.len() > MAX_TRAINING_EXAMPLES {
            return Err(Error::Invalid(format!("training_data: at most {MAX_TRAINING_EXAMPLES} examples (got {})", req.training_data.len())));
        }
        for (i, ex) in req.training_data.iter().enumerate() {
            if ex.text.trim().is_empty() {
                return Err(Error::Invalid(format!("training_data[{i}].text is empty")));
            }
            if ex.label.trim().is_empty() {
                return Err(Error::Invalid(format!("training_data[{i}].label is empty")));
            }
        }
        if !(1..=1000).contains(&req.num_iterations) {
            return Err(Error::Invalid(format!("num_iterations must be in 1..=1000 (got {})", req.num_iterations)));
        }
        if !(1..=512).contains(&req.batch_size) {
            return Err(Error::Invalid(format!("batch_size must be in 1..=512 (got {})", req.batch_size)));
        }
        if !(1..=20).contains(&req.num_epochs) {
            return Err(Error::Invalid(format!("num_epochs must be in 1..=20 (got {})", req.num_epochs)));
        }
        if !(req.learning_rate.is_finite() && req.learning_rate > 0.0 && req.learning_rate <= 0.01) {
            return Err(Error::Invalid(format!("learning_rate must be in (0, 0.01] (got {})", req.learning_rate)));
        }
        let mut labels: Vec<String> = req.training_data.iter().map(|e| e.label.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(Error::Invalid(format!("training_data needs at least two classes (got {}: {:?})", labels.len(), labels)));
        }
        let n = req.training_data.len();
        let num_pairs = 2 * req.num_iterations * n;
        if num_pairs.saturating_mul(req.num_epochs) > MAX_TRAINING_PAIRS {
            return Err(Error::Invalid(format!(
                "2 * num_iterations * examples * num_epochs = {} pairs is above the limit of {MAX_TRAINING_PAIRS}; lower num_iterations",
                num_pairs * req.num_epochs
            )));
        }
        let base = self.lf.models().resolve(&req.base_model)?;
        let y: Vec<usize> = req.training_data.iter().map(|e| labels.binary_search(&e.label).unwrap_or(0)).collect();

        // Tokens per example, as the inference path tokenises (no padding, truncation).
        let tok_probe = BertEmbedder::load(&base.dir, &req.base_model, 16)?;
        let tokens: Vec<Vec<u32>> = req.training_data.iter().map(|e| tok_probe.tokenize(&e.text)).collect::<Result<_>>()?;
        let pad_id = tok_probe.pad_id();
        drop(tok_probe);

        let mut rng = pairs::Rng::new(req.seed);
        let pairs = pairs::sample_pairs(&y, req.num_iterations, &mut rng);
        let cfg = train::TrainConfig { batch_size: req.batch_size, epochs: req.num_epochs, learning_rate: req.learning_rate, ..Default::default() };
        // The native trainer (hand-written backward pass) by default; candle's
        // autograd with `LF_SETFIT_TRAINER=autograd`. Both compute the same gradients
        // (tested); the native one is several times faster.
        let (body, report) = if self.lf.setfit_autograd() {
            let body = train::TrainableBert::load(&base.dir)?;
            let report = train::train(&body, &tokens, &pairs, pad_id, &cfg, &mut rng)?;
            (Body::Autograd(body), report)
        } else {
            let mut body = native::NativeBert::load(&base.dir)?;
            let t = Instant::now();
            let report = native::train(&mut body, &tokens, &pairs, &cfg, &mut rng)?;
            tracing::info!(secs = t.elapsed().as_secs_f64(), steps = report.losses.len(), "classifier body fine-tuned");
            (Body::Native(body), report)
        };

        // Build the model directory under a temporary name, then rename it in.
        let root = self.classifier_dir();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let tmp = root.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let result = (|| -> Result<ClassifierFitResponse> {
            copy_model_files(&base.dir, &tmp)?;
            body.save(&tmp.join("model.safetensors"))?;
            drop(body);
            let embedder = BertEmbedder::load(&tmp, &req.model, 16)?;
            let texts: Vec<&str> = req.training_data.iter().map(|e| e.text.as_str()).collect();
            let t = Instant::now();
            let x = embedder.embed(&texts)?;
            let embed_s = t.elapsed().as_secs_f64();
            let (head, iters) = head::fit(&x, &y, labels.clone(), 1.0, 1000);
            tracing::info!(embed_s, head_s = t.elapsed().as_secs_f64() - embed_s, iters, "classifier head fitted");
            write_json(&tmp.join("head.json"), &head)?;
            std::fs::write(tmp.join("labels.txt"), labels.join("\n") + "\n").map_err(|e| Error::io(tmp.join("labels.txt"), e))?;
            let training_time_ms = started.elapsed().as_secs_f64() * 1000.0;

            let _commit = self.classifier_state().commit.lock().unwrap_or_else(|e| e.into_inner());
            let name = registry::version_name(&req.model, req.overwrite, &self.stored_classifiers());
            let meta = Metadata {
                format: FORMAT.into(),
                name: name.clone(),
                base_name: req.model.clone(),
                base_model: req.base_model.clone(),
                labels: labels.clone(),
                description: req.description.clone(),
                created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                samples_fitted: n,
                num_iterations: req.num_iterations,
                batch_size: req.batch_size,
                num_epochs: req.num_epochs,
                learning_rate: req.learning_rate,
                seed: req.seed,
                num_pairs: pairs.len(),
                training_time_ms,
            };
            write_json(&tmp.join("metadata.json"), &meta)?;
            crate::fsutil::sync_dir(&tmp)?;
            let dst = root.join(&name);
            if dst.exists() {
                crate::fsutil::remove_dir_atomic(&dst, &root.join(".trash"))?;
            }
            std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
            crate::fsutil::sync_dir(&root)?;
            self.classifier_state().insert(LoadedClassifier { name: name.clone(), dir: dst.clone(), embedder, head });
            let tenth = (report.losses.len() / 10).max(1);
            let mean = |s: &[f32]| if s.is_empty() { 0.0 } else { s.iter().sum::<f32>() / s.len() as f32 };
            Ok(ClassifierFitResponse {
                object: "fit_result".into(),
                model: name.clone(),
                base_model: req.base_model.clone(),
                samples_fitted: n,
                num_classes: labels.len(),
                labels: labels.clone(),
                training_time_ms,
                status: "fitted".into(),
                auto_saved: true,
                saved_path: dst.display().to_string(),
                base_name: req.model.clone(),
                versioned_name: name,
                overwrite: req.overwrite,
                num_pairs: pairs.len(),
                steps: report.losses.len(),
                initial_loss: mean(&report.losses[..tenth.min(report.losses.len())]),
                final_loss: mean(&report.losses[report.losses.len().saturating_sub(tenth)..]),
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Classify texts with a stored or loaded classifier (`{base}-latest` allowed).
    pub fn classifier_predict(&self, req: &ClassifierPredictRequest) -> Result<ClassifierPredictResponse> {
        check_texts(&req.texts, "texts", MAX_PREDICT_TEXTS)?;
        let name = self.resolve_classifier(&req.model)?;
        let c = self.classifier(&name)?;
        let data = c.predict(&req.texts)?;
        Ok(ClassifierPredictResponse { object: "list".into(), total_count: data.len(), data, model: name })
    }

    /// Persist a classifier's description (fit already saved its weights).
    pub fn classifier_save(&self, req: &ClassifierModelRequest) -> Result<ClassifierSaveResponse> {
        let name = self.resolve_classifier(&req.model)?;
        let c = self.classifier(&name)?;
        let meta_path = c.dir.join("metadata.json");
        if !meta_path.is_file() {
            return Err(Error::not_found(format!("Stored files of classifier '{name}'")));
        }
        if let Some(d) = &req.description {
            let _commit = self.classifier_state().commit.lock().unwrap_or_else(|e| e.into_inner());
            let mut meta: Metadata = read_json(&meta_path)?;
            meta.description = Some(d.clone());
            let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Internal(e.to_string()))?;
            crate::fsutil::atomic_write(&meta_path, &bytes)?;
        }
        Ok(ClassifierSaveResponse { object: "save_result".into(), model: name, path: c.dir.display().to_string(), status: "saved".into() })
    }

    /// Load a stored classifier into memory (reloads it if already loaded).
    pub fn classifier_load(&self, req: &ClassifierModelRequest) -> Result<ClassifierLoadResponse> {
        let plain = req.model.strip_suffix(registry::LATEST_SUFFIX).unwrap_or(&req.model);
        registry::validate_name(plain)?;
        let name = registry::resolve(&req.model, &self.stored_classifiers()).ok_or_else(|| Error::not_found(format!("Stored classifier '{}'", req.model)))?;
        let c = self.classifier_state().insert(LoadedClassifier::load(&self.classifier_dir().join(&name), &name)?);
        Ok(ClassifierLoadResponse { object: "load_result".into(), model: name, labels: c.head.labels.clone(), status: "loaded".into() })
    }

    /// Stored classifiers, sorted by name.
    pub fn classifier_models(&self) -> Result<ClassifierModelList> {
        let loaded = self.classifier_state().names();
        let data: Vec<ClassifierModelInfo> = self
            .stored_classifiers()
            .into_iter()
            .filter_map(|name| {
                let dir = self.classifier_dir().join(&name);
                let meta: Metadata = read_json(&dir.join("metadata.json")).ok()?;
                let is_versioned = name != meta.base_name && registry::is_version_of(&name, &meta.base_name);
                Some(ClassifierModelInfo {
                    loaded: loaded.contains(&name),
                    path: dir.display().to_string(),
                    base_name: meta.base_name.clone(),
                    is_versioned,
                    created: meta.created,
                    labels: meta.labels,
                    description: meta.description,
                    base_model: meta.base_model,
                    name,
                })
            })
            .collect();
        Ok(ClassifierModelList { object: "list".into(), total: data.len(), data })
    }

    /// Delete a stored classifier (exact name) and unload it.
    pub fn classifier_delete(&self, name: &str) -> Result<ClassifierDeleteResponse> {
        registry::validate_name(name)?;
        let root = self.classifier_dir();
        let dir = root.join(name);
        let _commit = self.classifier_state().commit.lock().unwrap_or_else(|e| e.into_inner());
        let was_loaded = self.classifier_state().remove(name);
        if dir.is_dir() {
            crate::fsutil::remove_dir_atomic(&dir, &root.join(".trash"))?;
        } else if !was_loaded {
            return Err(Error::not_found(format!("Classifier '{name}'")));
        }
        Ok(ClassifierDeleteResponse { object: "delete_result".into(), model: name.to_string(), status: "deleted".into() })
    }

    /// The runtime's `/v1/classify`: serves trained SetFit classifiers by name.
    pub fn classify(&self, req: &ClassifyRequest) -> Result<ClassifyResponse> {
        check_texts(&req.texts, "texts", MAX_PREDICT_TEXTS)?;
        let not_setfit = || {
            Error::BadRequest(format!(
                "model '{}' is not a trained classifier: /v1/classify serves SetFit classifiers trained with POST /v1/classifier/fit \
                 (see GET /v1/classifier/models); pre-trained Hugging Face sequence-classification models are not supported",
                req.model
            ))
        };
        let plain = req.model.strip_suffix(registry::LATEST_SUFFIX).unwrap_or(&req.model);
        if registry::validate_name(plain).is_err() {
            return Err(not_setfit());
        }
        let name = match self.resolve_classifier(&req.model) {
            Ok(n) => n,
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => return Err(not_setfit()),
            Err(e) => return Err(e),
        };
        let c = self.classifier(&name)?;
        let data = c
            .predict(&req.texts)?
            .into_iter()
            .enumerate()
            .map(|(index, p)| ClassifyResult { index, label: p.label, score: p.score, all_scores: p.all_scores })
            .collect();
        Ok(ClassifyResponse { object: "list".into(), data, model: name })
    }
}

#[cfg(test)]
mod tests;
