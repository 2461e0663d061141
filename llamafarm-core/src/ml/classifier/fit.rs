//! Training: validation of the examples and settings, contrastive fine-tuning of
//! the body (native or autograd trainer), the logistic head, and the atomic commit
//! of the model directory.

use super::store::{copy_model_files, write_json, LoadedClassifier, Metadata, FORMAT};
use super::{head, native, pairs, train, Classifiers, FitOptions, FittedClassifier, TrainingExample, MAX_TRAINING_EXAMPLES, MAX_TRAINING_PAIRS};
use crate::embed::{BertEmbedder, Embedder};
use crate::error::{Error, Result};
use crate::ml::registry;
use std::path::Path;
use std::time::Instant;

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

impl Classifiers<'_> {
    /// Train a SetFit classifier on `examples`, save it (auto-save) and keep it loaded.
    ///
    /// Runs on the calling thread and the rayon pool; call it from a blocking
    /// context. No global lock is held while training.
    ///
    /// ```no_run
    /// use llamafarm_core::ml::classifier::{FitOptions, TrainingExample};
    /// # fn main() -> llamafarm_core::Result<()> {
    /// let lf = llamafarm_core::LlamaFarm::open("/tmp/lf-data")?;
    /// let data = vec![
    ///     TrainingExample::new("Book me a flight to Paris", "booking"),
    ///     TrainingExample::new("Reserve a table for two", "booking"),
    ///     TrainingExample::new("Cancel my reservation", "cancellation"),
    ///     TrainingExample::new("I want to cancel my order", "cancellation"),
    /// ];
    /// let fit = lf.ml().classifier().fit("intent", &data, &FitOptions { num_iterations: 5, ..Default::default() })?;
    /// println!("saved as {} at {}", fit.name, fit.path.display());
    /// let out = lf.ml().classifier().predict("intent-latest", &["Please cancel the booking".to_string()])?;
    /// println!("{} ({:.2})", out.predictions[0].label, out.predictions[0].score);
    /// # Ok(()) }
    /// ```
    pub fn fit(&self, model: &str, examples: &[TrainingExample], opts: &FitOptions) -> Result<FittedClassifier> {
        let started = Instant::now();
        registry::validate_name(model)?;
        if model.ends_with(registry::LATEST_SUFFIX) {
            return Err(Error::invalid("model", format!("name '{}' must not end in '{}' (that suffix selects the newest version)", model, registry::LATEST_SUFFIX)));
        }
        if examples.is_empty() {
            return Err(Error::invalid("training_data", "needs at least two examples of two classes"));
        }
        if examples.len() > MAX_TRAINING_EXAMPLES {
            return Err(Error::invalid("training_data", format!("has at most {MAX_TRAINING_EXAMPLES} examples (got {})", examples.len())));
        }
        for (i, ex) in examples.iter().enumerate() {
            if ex.text.trim().is_empty() {
                return Err(Error::invalid(format!("training_data[{i}].text"), "is empty"));
            }
            if ex.label.trim().is_empty() {
                return Err(Error::invalid(format!("training_data[{i}].label"), "is empty"));
            }
        }
        if !(1..=1000).contains(&opts.num_iterations) {
            return Err(Error::invalid("num_iterations", format!("must be in 1..=1000 (got {})", opts.num_iterations)));
        }
        if !(1..=512).contains(&opts.batch_size) {
            return Err(Error::invalid("batch_size", format!("must be in 1..=512 (got {})", opts.batch_size)));
        }
        if !(1..=20).contains(&opts.num_epochs) {
            return Err(Error::invalid("num_epochs", format!("must be in 1..=20 (got {})", opts.num_epochs)));
        }
        if !(opts.learning_rate.is_finite() && opts.learning_rate > 0.0 && opts.learning_rate <= 0.01) {
            return Err(Error::invalid("learning_rate", format!("must be in (0, 0.01] (got {})", opts.learning_rate)));
        }
        let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(Error::invalid("training_data", format!("needs at least two classes (got {}: {:?})", labels.len(), labels)));
        }
        let n = examples.len();
        let num_pairs = 2 * opts.num_iterations * n;
        if num_pairs.saturating_mul(opts.num_epochs) > MAX_TRAINING_PAIRS {
            return Err(Error::invalid(
                "num_iterations",
                format!(
                    "is too high: 2 * num_iterations * examples * num_epochs = {} pairs is above the limit of {MAX_TRAINING_PAIRS}; lower num_iterations",
                    num_pairs * opts.num_epochs
                ),
            ));
        }
        let base = self.lf.models().resolve(&opts.base_model)?;
        let y: Vec<usize> = examples.iter().map(|e| labels.binary_search(&e.label).unwrap_or(0)).collect();

        // Tokens per example, as the inference path tokenises (no padding, truncation).
        let tok_probe = BertEmbedder::load(&base.dir, &opts.base_model, 16)?;
        let tokens: Vec<Vec<u32>> = examples.iter().map(|e| tok_probe.tokenize(&e.text)).collect::<Result<_>>()?;
        let pad_id = tok_probe.pad_id();
        drop(tok_probe);

        let mut rng = pairs::Rng::new(opts.seed);
        let pairs = pairs::sample_pairs(&y, opts.num_iterations, &mut rng);
        let cfg = train::TrainConfig { batch_size: opts.batch_size, epochs: opts.num_epochs, learning_rate: opts.learning_rate, ..Default::default() };
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
        let root = self.dir();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let tmp = root.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let result = (|| -> Result<FittedClassifier> {
            copy_model_files(&base.dir, &tmp)?;
            body.save(&tmp.join("model.safetensors"))?;
            drop(body);
            let embedder = BertEmbedder::load(&tmp, model, 16)?;
            let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
            let t = Instant::now();
            let x = embedder.embed(&texts)?;
            let embed_s = t.elapsed().as_secs_f64();
            let (head, iters) = head::fit(&x, &y, labels.clone(), 1.0, 1000);
            tracing::info!(embed_s, head_s = t.elapsed().as_secs_f64() - embed_s, iters, "classifier head fitted");
            write_json(&tmp.join("head.json"), &head)?;
            std::fs::write(tmp.join("labels.txt"), labels.join("\n") + "\n").map_err(|e| Error::io(tmp.join("labels.txt"), e))?;
            let training_time_ms = started.elapsed().as_secs_f64() * 1000.0;

            let _commit = self.state().commit.lock().unwrap_or_else(|e| e.into_inner());
            let name = registry::version_name(model, opts.overwrite, &self.stored());
            let meta = Metadata {
                format: FORMAT.into(),
                name: name.clone(),
                base_name: model.to_string(),
                base_model: opts.base_model.clone(),
                labels: labels.clone(),
                description: opts.description.clone(),
                created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                samples_fitted: n,
                num_iterations: opts.num_iterations,
                batch_size: opts.batch_size,
                num_epochs: opts.num_epochs,
                learning_rate: opts.learning_rate,
                seed: opts.seed,
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
            self.state().insert(LoadedClassifier { name: name.clone(), dir: dst.clone(), embedder, head });
            let tenth = (report.losses.len() / 10).max(1);
            let mean = |s: &[f32]| if s.is_empty() { 0.0 } else { s.iter().sum::<f32>() / s.len() as f32 };
            Ok(FittedClassifier {
                name,
                base_name: model.to_string(),
                base_model: opts.base_model.clone(),
                samples_fitted: n,
                labels: labels.clone(),
                training_time_ms,
                path: dst,
                overwrite: opts.overwrite,
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
}
