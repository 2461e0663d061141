//! ML: few-shot text classifiers (SetFit) and anomaly detection, with a
//! versioned on-disk model registry.
//!
//! Entry point: [`crate::LlamaFarm::ml`], grouped by domain: `lf.ml().classifier()`
//! ([`classifier::Classifiers`]) and `lf.ml().anomaly()` ([`anomaly::Anomaly`]).
//! Trained models live under `{data}/models/classifier/` and `{data}/models/anomaly/`
//! (see [`registry`]).

pub mod anomaly;
pub mod classifier;
pub mod pretrained;
pub mod registry;

use crate::LlamaFarm;

/// In-memory state of the ML APIs (loaded models), owned by the library handle.
#[derive(Default)]
pub(crate) struct MlState {
    pub(crate) anomaly: anomaly::AnomalyState,
    pub(crate) classifier: classifier::ClassifierState,
    pub(crate) pretrained: pretrained::PretrainedState,
}

/// ML operations: `lf.ml()`.
pub struct Ml<'a> {
    pub(crate) lf: &'a LlamaFarm,
}

impl LlamaFarm {
    /// Classifiers and anomaly detectors.
    pub fn ml(&self) -> Ml<'_> {
        Ml { lf: self }
    }

    pub(crate) fn ml_state(&self) -> &MlState {
        &self.inner.ml
    }
}
