//! The detector seam: the [`AnomalyBackend`] trait, the [`Backend`] names, the
//! [`Detector`] enum that dispatches to the six implementations, and the catalogue
//! of backends with their metadata.

use super::util::Mat;
use super::{autoencoder, iforest, lof, ocsvm, stats};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

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
    pub const ALL: [Backend; 6] = [Backend::IsolationForest, Backend::OneClassSvm, Backend::LocalOutlierFactor, Backend::Autoencoder, Backend::Ecod, Backend::Hbos];

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
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| Error::invalid("backend", format!("'{s}' is unknown; one of: {}", Backend::ALL.map(|b| b.as_str()).join(", "))))
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Backend hyper-parameters, resolved from [`super::FitOptions`].
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

/// What a backend is and when to choose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// The backend.
    pub backend: Backend,
    /// Display name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// legacy, fast, deep_learning.
    pub category: &'static str,
    /// Relative training speed.
    pub speed: &'static str,
    /// Relative memory use.
    pub memory: &'static str,
    /// Fit settings it reads.
    pub parameters: &'static [&'static str],
    /// When to choose it.
    pub best_for: &'static str,
    /// One of the original four backends.
    pub is_legacy: bool,
}

/// Every backend with its metadata, in [`Backend::ALL`] order.
pub fn catalogue() -> Vec<BackendInfo> {
    #[allow(clippy::too_many_arguments)]
    fn e(
        backend: Backend,
        name: &'static str,
        description: &'static str,
        category: &'static str,
        speed: &'static str,
        memory: &'static str,
        parameters: &'static [&'static str],
        best_for: &'static str,
        is_legacy: bool,
    ) -> BackendInfo {
        BackendInfo { backend, name, description, category, speed, memory, parameters, best_for, is_legacy }
    }
    vec![
        e(
            Backend::IsolationForest,
            "Isolation Forest",
            "Random trees isolate points; anomalies need fewer splits.",
            "legacy",
            "fast",
            "low",
            &["contamination", "n_estimators", "seed"],
            "General purpose (recommended default)",
            true,
        ),
        e(
            Backend::OneClassSvm,
            "One-Class SVM",
            "RBF-kernel boundary around the normal data (nu-SVM, SMO).",
            "legacy",
            "slow",
            "medium",
            &["contamination", "nu", "gamma"],
            "Small datasets, tight boundaries",
            true,
        ),
        e(
            Backend::LocalOutlierFactor,
            "Local Outlier Factor",
            "Local density compared with the neighbours' (novelty mode).",
            "legacy",
            "medium",
            "medium",
            &["contamination", "n_neighbors"],
            "Local/density-based anomalies",
            true,
        ),
        e(
            Backend::Autoencoder,
            "Autoencoder",
            "Dense autoencoder (candle); reconstruction error is the score.",
            "deep_learning",
            "slow",
            "high",
            &["contamination", "epochs", "batch_size", "seed"],
            "Complex patterns, large datasets",
            true,
        ),
        e(
            Backend::Ecod,
            "ECOD",
            "Empirical cumulative distribution tails per feature; parameter-free.",
            "fast",
            "very_fast",
            "low",
            &["contamination"],
            "Recommended for new projects - parameter-free",
            false,
        ),
        e(
            Backend::Hbos,
            "HBOS",
            "Histogram-based outlier score, features treated independently.",
            "fast",
            "very_fast",
            "low",
            &["contamination"],
            "Fastest algorithm, high dimensions",
            false,
        ),
    ]
}
