//! A fitted model and how it scores: fit settings ([`FitOptions`]), the
//! normalisation of raw scores ([`NormStats`]), the contamination thresholds, and
//! [`AnomalyModel`] (encoder, scaler, detector), which is also the on-disk format.

use super::backend::{AnomalyBackend, Backend, Detector, DetectorParams};
use super::encode::{infer_schema, split_rows, AnomalyRow, FeatureEncoder, FieldEncoding, Rows};
use super::util::{mean_std, percentile, FeatureScaler, Mat, Scaling};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// How raw scores are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// Settings of a fit; `FitOptions::default()` is an isolation forest with
/// contamination 0.1, standardised scores and a versioned save.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Algorithm.
    pub backend: Backend,
    /// Field encodings for object rows (inferred from the rows when absent).
    pub schema: Option<BTreeMap<String, FieldEncoding>>,
    /// Expected share of anomalies, 0 < c <= 0.5 (0.1).
    pub contamination: f64,
    /// Score normalisation.
    pub normalization: Normalization,
    /// Feature scaling before the detector (robust, as the original).
    pub scaling: Scaling,
    /// A fixed threshold instead of the contamination percentile.
    pub threshold: Option<f64>,
    /// Autoencoder epochs, 1..=10000 (100).
    pub epochs: usize,
    /// Autoencoder mini-batch size (32).
    pub batch_size: usize,
    /// Replace the model of that name instead of saving a timestamped version.
    pub overwrite: bool,
    /// Free text kept with the model.
    pub description: Option<String>,
    /// Isolation forest trees, 1..=2000 (100).
    pub n_estimators: Option<usize>,
    /// LOF neighbours (20).
    pub n_neighbors: Option<usize>,
    /// One-class SVM `nu` in (0, 1] (the contamination).
    pub nu: Option<f64>,
    /// RBF kernel gamma (`scale`: `1 / (d * X.var())`).
    pub gamma: Option<f64>,
    /// Random seed (42).
    pub seed: Option<u64>,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            schema: None,
            contamination: 0.1,
            normalization: Normalization::default(),
            scaling: Scaling::default(),
            threshold: None,
            epochs: 100,
            batch_size: 32,
            overwrite: false,
            description: None,
            n_estimators: None,
            n_neighbors: None,
            nu: None,
            gamma: None,
            seed: None,
        }
    }
}

impl FitOptions {
    /// The defaults with `backend`.
    pub fn with_backend(backend: Backend) -> Self {
        Self { backend, ..Self::default() }
    }

    /// Checked backend hyper-parameters (`Error::Invalid` names the bad setting).
    pub fn detector_params(&self) -> Result<DetectorParams> {
        let c = self.contamination;
        if !(c > 0.0 && c <= 0.5) {
            return Err(Error::invalid("contamination", format!("must be in (0, 0.5], got {c}")));
        }
        let nu = self.nu.unwrap_or(c);
        if !(nu > 0.0 && nu <= 1.0) {
            return Err(Error::invalid("nu", format!("must be in (0, 1], got {nu}")));
        }
        if let Some(g) = self.gamma {
            if !(g > 0.0 && g.is_finite()) {
                return Err(Error::invalid("gamma", format!("must be positive, got {g}")));
            }
        }
        if let Some(t) = self.threshold {
            if !t.is_finite() {
                return Err(Error::invalid("threshold", "must be finite"));
            }
        }
        let n_estimators = self.n_estimators.unwrap_or(100);
        if !(1..=2000).contains(&n_estimators) {
            return Err(Error::invalid("n_estimators", format!("must be 1..=2000, got {n_estimators}")));
        }
        let n_neighbors = self.n_neighbors.unwrap_or(20);
        if n_neighbors == 0 {
            return Err(Error::invalid("n_neighbors", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.epochs) {
            return Err(Error::invalid("epochs", format!("must be 1..=10000, got {}", self.epochs)));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
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
    /// Feature scaler.
    pub scaler: FeatureScaler,
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
                return Err(Error::invalid("schema", "was given but the rows are arrays; a schema describes object rows"));
            }
            Ok(m)
        }
        (Rows::Numeric(_), Some(_)) => Err(Error::invalid("data", "must be objects: the model was fitted on object rows with a schema")),
        (Rows::Records(_), None) => Err(Error::invalid("data", "must be arrays of numbers: the model was fitted on numeric arrays")),
        (Rows::Records(r), Some(enc)) => {
            if let Some(s) = schema {
                if s != &enc.schema {
                    return Err(Error::invalid(
                        "schema",
                        format!("does not match the model's: model has {}", serde_json::to_string(&enc.schema).unwrap_or_default()),
                    ));
                }
            }
            enc.transform(&r)
        }
    }
}

impl AnomalyModel {
    /// Encode, scale and fit `rows` (no saving; the model is named `name`).
    pub fn fit(name: &str, rows: &[AnomalyRow], opts: &FitOptions) -> Result<AnomalyModel> {
        let params = opts.detector_params()?;
        let start = Instant::now();
        let (x, encoder) = match split_rows(rows)? {
            Rows::Numeric(m) => {
                if opts.schema.is_some() {
                    return Err(Error::invalid("schema", "was given but the rows are arrays; a schema describes object rows"));
                }
                (m, None)
            }
            Rows::Records(r) => {
                let schema = match &opts.schema {
                    Some(s) => s.clone(),
                    None => infer_schema(&r),
                };
                let enc = FeatureEncoder::fit(schema, &r)?;
                (enc.transform(&r)?, Some(enc))
            }
        };
        if x.n < 2 {
            return Err(Error::invalid("data", format!("needs at least 2 training rows, got {}", x.n)));
        }
        let scaler = FeatureScaler::fit(opts.scaling, &x);
        let xs = scaler.transform(&x);
        let detector = Detector::fit(opts.backend, &xs, &params)?;
        let raw = detector.score_training(&xs);
        if raw.iter().any(|v| !v.is_finite()) {
            return Err(Error::Internal(format!("{} produced non-finite training scores", opts.backend)));
        }
        let stats = NormStats::from_scores(&raw);
        let q = (1.0 - params.contamination) * 100.0;
        let th = |n: Normalization| percentile(&raw.iter().map(|r| stats.apply(*r, n)).collect::<Vec<_>>(), q);
        let thresholds = Thresholds { standardization: th(Normalization::Standardization), zscore: th(Normalization::Zscore), raw: th(Normalization::Raw) };
        Ok(AnomalyModel {
            format: FORMAT.to_string(),
            name: name.to_string(),
            backend: opts.backend,
            created: chrono::Utc::now().to_rfc3339(),
            description: opts.description.clone(),
            contamination: params.contamination,
            normalization: opts.normalization,
            threshold: opts.threshold.unwrap_or(thresholds.get(opts.normalization)),
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
            return Err(Error::invalid("data", format!("has {1} features per row; the model expects {0} features", self.input_dim, x.d)));
        }
        Ok(self.detector.score(&self.scaler.transform(&x)))
    }

    /// Score every row.
    pub fn score(&self, rows: &[AnomalyRow], opts: &ScoreOptions) -> Result<Scores> {
        if let Some(t) = opts.threshold {
            if !t.is_finite() {
                return Err(Error::invalid("threshold", "must be finite"));
            }
        }
        let normalization = opts.normalization.unwrap_or(self.normalization);
        let threshold = opts.threshold.unwrap_or(self.threshold_for(normalization));
        let raw = self.raw_scores(rows, opts.schema.as_ref())?;
        let rows = raw
            .iter()
            .enumerate()
            .map(|(index, &r)| {
                let score = self.stats.apply(r, normalization);
                ScoredRow { index, score, is_anomaly: score > threshold, raw_score: r }
            })
            .collect();
        Ok(Scores { model: self.name.clone(), backend: self.backend, normalization, threshold, rows })
    }
}

/// How a score call reports; `ScoreOptions::default()` uses the model's own
/// normalisation and threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreOptions {
    /// Must equal the model's schema when given.
    pub schema: Option<BTreeMap<String, FieldEncoding>>,
    /// Report scores this way instead of the model's normalisation.
    pub normalization: Option<Normalization>,
    /// Override the model's threshold.
    pub threshold: Option<f64>,
}

/// One scored row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredRow {
    /// Row index in the input.
    pub index: usize,
    /// Normalised score.
    pub score: f64,
    /// `score > threshold`.
    pub is_anomaly: bool,
    /// The backend's raw score.
    pub raw_score: f64,
}

/// The scores of a set of rows under one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The resolved model name.
    pub model: String,
    /// Its backend.
    pub backend: Backend,
    /// Normalisation of the scores.
    pub normalization: Normalization,
    /// The threshold applied.
    pub threshold: f64,
    /// Scored rows in input order (only the anomalous ones after a detect).
    pub rows: Vec<ScoredRow>,
}

impl Scores {
    /// Rows above the threshold.
    pub fn anomaly_count(&self) -> usize {
        self.rows.iter().filter(|r| r.is_anomaly).count()
    }

    /// `anomaly_count / rows` (0 without rows).
    pub fn anomaly_rate(&self) -> f64 {
        self.anomaly_count() as f64 / self.rows.len().max(1) as f64
    }

    /// Only the rows above the threshold.
    pub fn anomalies(mut self) -> Scores {
        self.rows.retain(|r| r.is_anomaly);
        self
    }
}
