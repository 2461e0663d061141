//! SetFit few-shot text classifiers, trained by a hand-written backward pass over our
//! own encoder (candle's autograd on request) and served on that encoder.
//!
//! Training ([`Classifiers::fit`]) follows the `setfit` package:
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
//! - `metadata.json`: [`StoredClassifier`] fields plus the training settings.
//!
//! A directory is built under a temporary name inside `classifier/` and renamed into
//! place, so a model is either complete or absent. Names follow [`super::registry`]:
//! without [`FitOptions::overwrite`] a fit saves as `{name}_{YYYYmmdd_HHMMSS}`,
//! `{name}-latest` resolves to the newest version.
//!
//! ## Layout
//!
//! `fit` trains and commits a model directory, `store` reads and lists them and
//! keeps the loaded ones; `pairs`, `native`, `train` and `head` are the training
//! pieces; this module is the facade, `lf.ml().classifier()`.

mod fit;
pub(crate) mod head;
pub(crate) mod native;
pub(crate) mod pairs;
mod store;
pub(crate) mod train;

pub(crate) use store::ClassifierState;

use super::registry;
use super::Ml;
use crate::error::{Error, ResourceKind, Result};
use crate::LlamaFarm;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use store::{read_json, LoadedClassifier, Metadata};

/// Default base model.
pub const DEFAULT_BASE_MODEL: &str = crate::embed::DEFAULT_EMBEDDING_MODEL;
/// Most examples one fit accepts.
pub const MAX_TRAINING_EXAMPLES: usize = 20_000;
/// Most texts one predict accepts.
pub const MAX_PREDICT_TEXTS: usize = 10_000;
/// Most contrastive pairs one fit may train on (`2 * num_iterations * examples * epochs`).
pub const MAX_TRAINING_PAIRS: usize = 2_000_000;

/// One labelled example.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

/// Settings of a fit; `FitOptions::default()` fine-tunes [`DEFAULT_BASE_MODEL`]
/// with `setfit`'s defaults and saves a timestamped version.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Sentence-transformer (BERT family) to fine-tune, a model id in the cache.
    pub base_model: String,
    /// Contrastive iterations: positive and negative pairs per example (1..=1000, 20).
    pub num_iterations: usize,
    /// Pairs per optimisation step (1..=512, 16).
    pub batch_size: usize,
    /// Passes over the pairs (1..=20, 1).
    pub num_epochs: usize,
    /// AdamW learning rate of the body (0 < lr <= 0.01, 2e-5).
    pub learning_rate: f64,
    /// Seed of the pair sampling and shuffling (42).
    pub seed: u64,
    /// Replace the model of that name in place instead of saving `{name}_{YYYYmmdd_HHMMSS}`.
    pub overwrite: bool,
    /// Stored in `metadata.json`.
    pub description: Option<String>,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            base_model: DEFAULT_BASE_MODEL.to_string(),
            num_iterations: 20,
            batch_size: 16,
            num_epochs: 1,
            learning_rate: 2e-5,
            seed: 42,
            overwrite: false,
            description: None,
        }
    }
}

/// A classifier just trained, saved and loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedClassifier {
    /// The stored name (versioned unless `overwrite`).
    pub name: String,
    /// The name asked for.
    pub base_name: String,
    /// The base sentence-transformer.
    pub base_model: String,
    /// Training examples.
    pub samples_fitted: usize,
    /// Sorted distinct labels.
    pub labels: Vec<String>,
    /// Wall time of the fit, saving included.
    pub training_time_ms: f64,
    /// The model directory.
    pub path: PathBuf,
    /// Whether the plain name was replaced instead of a version being added.
    pub overwrite: bool,
    /// Contrastive pairs trained on.
    pub num_pairs: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Mean loss of the first tenth of the steps.
    pub initial_loss: f32,
    /// Mean loss of the last tenth of the steps.
    pub final_loss: f32,
}

/// One classified text.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The input text.
    pub text: String,
    /// The predicted label.
    pub label: String,
    /// Probability of `label`.
    pub score: f32,
    /// Probability of every label.
    pub all_scores: BTreeMap<String, f32>,
}

/// The predictions of one classifier, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The resolved model name.
    pub model: String,
    /// One per input text.
    pub predictions: Vec<Prediction>,
}

/// A classifier on disk, as [`Classifiers::save`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedClassifier {
    /// The resolved model name.
    pub name: String,
    /// The model directory.
    pub path: PathBuf,
}

/// A classifier [`Classifiers::load`] read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedInfo {
    /// The resolved model name.
    pub name: String,
    /// Sorted labels.
    pub labels: Vec<String>,
}

/// A stored classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClassifier {
    /// Stored name (directory name).
    pub name: String,
    /// The requested name without version suffix.
    pub base_name: String,
    /// The model directory.
    pub path: PathBuf,
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
    pub loaded: bool,
}

fn check_texts(texts: &[String], what: &str, max: usize) -> Result<()> {
    if texts.is_empty() {
        return Err(Error::invalid(what, "needs at least one text"));
    }
    if texts.len() > max {
        return Err(Error::invalid(what, format!("has at most {max} texts per request (got {})", texts.len())));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(Error::invalid(format!("{what}[{i}]"), "is empty"));
    }
    Ok(())
}

/// SetFit classifiers: `lf.ml().classifier()`.
pub struct Classifiers<'a> {
    lf: &'a LlamaFarm,
}

impl<'a> Ml<'a> {
    /// Few-shot text classifiers.
    pub fn classifier(&self) -> Classifiers<'a> {
        Classifiers { lf: self.lf }
    }
}

impl Classifiers<'_> {
    /// `{data}/models/classifier`.
    pub fn dir(&self) -> PathBuf {
        self.lf.layout().models_dir().join("classifier")
    }

    /// Classify texts with a stored or loaded classifier (`{base}-latest` allowed).
    pub fn predict(&self, model: &str, texts: &[String]) -> Result<Predictions> {
        check_texts(texts, "texts", MAX_PREDICT_TEXTS)?;
        let name = self.resolve(model)?;
        let c = self.loaded(&name)?;
        Ok(Predictions { predictions: c.predict(texts)?, model: name })
    }

    /// Persist a classifier's description (fit already saved its weights); `None`
    /// leaves the stored description as it is.
    pub fn save(&self, model: &str, description: Option<&str>) -> Result<SavedClassifier> {
        let name = self.resolve(model)?;
        let c = self.loaded(&name)?;
        let meta_path = c.dir.join("metadata.json");
        if !meta_path.is_file() {
            return Err(Error::missing_in(ResourceKind::Classifier, &name, "(its stored files are gone)"));
        }
        if let Some(d) = description {
            let _commit = self.state().commit.lock().unwrap_or_else(|e| e.into_inner());
            let mut meta: Metadata = read_json(&meta_path)?;
            meta.description = Some(d.to_string());
            let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Internal(e.to_string()))?;
            crate::fsutil::atomic_write(&meta_path, &bytes)?;
        }
        Ok(SavedClassifier { name, path: c.dir.clone() })
    }

    /// Load a stored classifier into memory (reloads it if already loaded).
    pub fn load(&self, model: &str) -> Result<LoadedInfo> {
        let plain = model.strip_suffix(registry::LATEST_SUFFIX).unwrap_or(model);
        registry::validate_name(plain)?;
        let name = registry::resolve(model, &self.stored()).ok_or_else(|| Error::missing_in(ResourceKind::Classifier, model, "among the saved classifiers"))?;
        let c = self.state().insert(LoadedClassifier::load(&self.dir().join(&name), &name)?);
        Ok(LoadedInfo { name, labels: c.head.labels.clone() })
    }

    /// Stored classifiers, sorted by name.
    pub fn list(&self) -> Result<Vec<StoredClassifier>> {
        let loaded = self.state().names();
        Ok(self
            .stored()
            .into_iter()
            .filter_map(|name| {
                let dir = self.dir().join(&name);
                let meta: Metadata = read_json(&dir.join("metadata.json")).ok()?;
                let is_versioned = name != meta.base_name && registry::is_version_of(&name, &meta.base_name);
                Some(StoredClassifier {
                    loaded: loaded.contains(&name),
                    path: dir,
                    base_name: meta.base_name.clone(),
                    is_versioned,
                    created: meta.created,
                    labels: meta.labels,
                    description: meta.description,
                    base_model: meta.base_model,
                    name,
                })
            })
            .collect())
    }

    /// Delete a stored classifier (exact name) and unload it; returns the name.
    pub fn delete(&self, name: &str) -> Result<String> {
        registry::validate_name(name)?;
        let root = self.dir();
        let dir = root.join(name);
        let _commit = self.state().commit.lock().unwrap_or_else(|e| e.into_inner());
        let was_loaded = self.state().remove(name);
        if dir.is_dir() {
            crate::fsutil::remove_dir_atomic(&dir, &root.join(".trash"))?;
        } else if !was_loaded {
            return Err(Error::missing(ResourceKind::Classifier, name));
        }
        Ok(name.to_string())
    }

    /// The runtime's `/v1/classify`: a trained SetFit classifier by name, else a
    /// pre-trained Hugging Face sequence classifier from the model cache
    /// ([`crate::ml::pretrained`]); `max_length` caps the tokens a pre-trained model reads.
    pub fn classify(&self, model: &str, texts: &[String], max_length: Option<usize>) -> Result<Predictions> {
        check_texts(texts, "texts", MAX_PREDICT_TEXTS)?;
        let plain = model.strip_suffix(registry::LATEST_SUFFIX).unwrap_or(model);
        if registry::validate_name(plain).is_ok() {
            match self.resolve(model) {
                Ok(name) => {
                    let c = self.loaded(&name)?;
                    return Ok(Predictions { predictions: c.predict(texts)?, model: name });
                }
                Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        match self.lf.ml().pretrained().classify(model, texts, max_length) {
            Ok(predictions) => Ok(Predictions { predictions, model: model.trim().to_string() }),
            Err(Error::ModelMissing { model, fetch_hint, .. }) => Err(Error::ModelMissing {
                model,
                reason: "neither a SetFit classifier trained with POST /v1/classifier/fit (see GET /v1/classifier/models) nor a Hugging Face sequence-classification model in the model cache".into(),
                fetch_hint,
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
