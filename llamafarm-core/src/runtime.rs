//! Model-level operations by model id, for the Universal Runtime API
//! (`/v1/embeddings`, `/v1/rerank`): no project needed.

use crate::embed::{Embedder, EmbedderSpec};
use crate::error::{Error, Result};
use crate::rag::rerank::{EmbeddingReranker, Reranker};
use crate::LlamaFarm;
use std::sync::Arc;

/// Vectors for a batch of inputs.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// The model that produced them.
    pub model: String,
    /// One per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read (after truncation).
    pub prompt_tokens: usize,
}

/// Relevance of each document to a query.
#[derive(Debug, Clone)]
pub struct Reranked {
    /// The model used.
    pub model: String,
    /// `cross-encoder` or `bi-encoder` (embedding similarity).
    pub method: &'static str,
    /// One score per document, 0..1, in input order.
    pub scores: Vec<f32>,
}

/// Most texts one embeddings request may carry (OpenAI's limit too).
pub const MAX_EMBED_INPUTS: usize = 2048;

impl LlamaFarm {
    /// A local embedding model by id, loaded once and shared.
    pub fn embedder(&self, model: &str) -> Result<Arc<dyn Embedder>> {
        let spec = EmbedderSpec::Local {
            model: model.to_string(),
            dimension: None,
            batch_size: crate::embed::LOCAL_MICRO_BATCH,
            // The OpenAI endpoint embeds the texts as sent.
            document_prefix: None,
            query_prefix: None,
        };
        self.rag_engine().embedder(&spec, self.models())
    }

    /// Embed texts with a local model (at most [`MAX_EMBED_INPUTS`] in one call, as OpenAI's API).
    pub fn embed(&self, model: &str, texts: &[&str]) -> Result<Embeddings> {
        if texts.is_empty() {
            return Err(Error::invalid("input", "must not be empty"));
        }
        if texts.len() > MAX_EMBED_INPUTS {
            return Err(Error::invalid("input", format!("may hold at most {MAX_EMBED_INPUTS} texts, got {}", texts.len())));
        }
        let e = self.embedder(model)?;
        let vectors = e.embed(texts)?;
        let prompt_tokens = texts.iter().map(|t| e.count_tokens(t).unwrap_or_else(|| t.split_whitespace().count())).sum();
        Ok(Embeddings { model: model.to_string(), vectors, prompt_tokens })
    }

    /// [`LlamaFarm::embed`], where `dimensions`, when given, must be the model's own
    /// dimension (a model's vectors cannot be shortened).
    pub fn embed_with_dimensions(&self, model: &str, texts: &[&str], dimensions: Option<usize>) -> Result<Embeddings> {
        let out = self.embed(model, texts)?;
        if let (Some(d), Some(v)) = (dimensions, out.vectors.first()) {
            if d != v.len() {
                return Err(Error::invalid("dimensions", format!("{d} is not supported: model '{model}' produces {} dimensions", v.len())));
            }
        }
        Ok(out)
    }

    /// Score documents against a query. A cross-encoder checkpoint
    /// (`*ForSequenceClassification`) scores pairs (sigmoid of its logit); any other
    /// sentence-transformers model scores by embedding cosine similarity mapped to 0..1.
    pub fn rerank(&self, model: &str, query: &str, documents: &[&str]) -> Result<Reranked> {
        if query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        if documents.is_empty() {
            return Err(Error::invalid("documents", "must not be empty"));
        }
        let m = self.models().resolve(model)?;
        let is_cross = std::fs::read_to_string(m.dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["architectures"].as_array().cloned())
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.ends_with("ForSequenceClassification"))));
        if is_cross {
            let ce = self.rag_engine().cross_encoder(model, self.models())?;
            let logits = ce.score(query, documents)?;
            Ok(Reranked { model: model.into(), method: "cross-encoder", scores: logits.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect() })
        } else {
            let r = EmbeddingReranker { embedder: self.embedder(model)? };
            let cos = r.score(query, documents)?;
            Ok(Reranked { model: model.into(), method: "bi-encoder", scores: cos.iter().map(|c| ((1.0 + c) / 2.0).clamp(0.0, 1.0)).collect() })
        }
    }
}
