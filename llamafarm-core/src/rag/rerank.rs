//! Rerankers: a candle cross-encoder (BERT with a one-logit head, the layout of
//! `BertForSequenceClassification` checkpoints such as ms-marco MiniLM), and an
//! embedding-similarity reranker used when no cross-encoder is available.

use crate::embed::{cosine, Embedder};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

fn ce(e: candle_core::Error) -> Error {
    Error::internal(format!("candle: {e}"))
}

/// Scores (query, document) pairs.
pub trait Reranker: Send + Sync {
    /// One relevance score per document (higher is more relevant).
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>>;
    /// A name for responses.
    fn name(&self) -> &str;
}

/// A BERT cross-encoder with a single-logit classification head.
pub struct CrossEncoder {
    id: String,
    bert: BertModel,
    pooler: Linear,
    classifier: Linear,
    tokenizer: Tokenizer,
    max_len: usize,
}

impl CrossEncoder {
    /// Load `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, id: &str) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| Error::parse(format!("config.json of reranker '{id}'"), e.to_string()))?;
        let weights = dir.join("model.safetensors");
        let vb = VarBuilder::from_tensors(candle_core::safetensors::load(&weights, &Device::Cpu).map_err(ce)?, DType::F32, &Device::Cpu);
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| Error::internal(format!("tokenizer of {id}: {e}")))?;
        Self::from_var_builder(vb, &config, tokenizer, id)
    }

    /// Build from weights (`bert.*`, `bert.pooler.dense`, `classifier`).
    pub fn from_var_builder(vb: VarBuilder, config: &BertConfig, mut tokenizer: Tokenizer, id: &str) -> Result<Self> {
        let h = config.hidden_size;
        let bert = BertModel::load(vb.pp("bert"), config).map_err(ce)?;
        let pooler = candle_nn::linear(h, h, vb.pp("bert.pooler.dense")).map_err(ce)?;
        let classifier = candle_nn::linear(h, 1, vb.pp("classifier")).map_err(ce)?;
        let max_len = config.max_position_embeddings.min(512);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::internal(format!("tokenizer truncation: {e}")))?;
        Ok(Self { id: id.into(), bert, pooler, classifier, tokenizer, max_len })
    }

    /// Longest pair, in tokens.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Reranker for CrossEncoder {
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(documents.len());
        for batch in documents.chunks(16) {
            let encs = batch
                .iter()
                .map(|d| self.tokenizer.encode((query, *d), true).map_err(|e| Error::internal(format!("tokenizer: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            let n = encs.len();
            let len = encs.iter().map(|e| e.get_ids().len()).max().unwrap_or(1).max(1);
            let (mut ids, mut types, mut mask) = (Vec::with_capacity(n * len), Vec::with_capacity(n * len), Vec::with_capacity(n * len));
            for e in &encs {
                let pad = len - e.get_ids().len();
                ids.extend_from_slice(e.get_ids());
                ids.extend(std::iter::repeat_n(0u32, pad));
                types.extend_from_slice(e.get_type_ids());
                types.extend(std::iter::repeat_n(0u32, pad));
                mask.extend(std::iter::repeat_n(1u32, e.get_ids().len()));
                mask.extend(std::iter::repeat_n(0u32, pad));
            }
            let dev = &self.bert.device;
            let ids = Tensor::from_vec(ids, (n, len), dev).map_err(ce)?;
            let types = Tensor::from_vec(types, (n, len), dev).map_err(ce)?;
            let mask = Tensor::from_vec(mask, (n, len), dev).map_err(ce)?;
            let hidden = self.bert.forward(&ids, &types, Some(&mask)).map_err(ce)?;
            let cls = hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1)).map_err(ce)?;
            let pooled = self.pooler.forward(&cls).and_then(|t| t.tanh()).map_err(ce)?;
            let logits = self.classifier.forward(&pooled).and_then(|t| t.squeeze(1)).map_err(ce)?;
            out.extend(logits.to_vec1::<f32>().map_err(ce)?);
        }
        Ok(out)
    }

    fn name(&self) -> &str {
        &self.id
    }
}

/// Reranks by cosine similarity of query and document embeddings (the fallback
/// when a configured cross-encoder is missing).
pub struct EmbeddingReranker {
    /// The embedder to use.
    pub embedder: std::sync::Arc<dyn Embedder>,
}

impl Reranker for EmbeddingReranker {
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>> {
        let q = self.embedder.embed_query(query)?;
        let d = self.embedder.embed(documents)?;
        Ok(d.iter().map(|v| cosine(&q, v)).collect())
    }

    fn name(&self) -> &str {
        self.embedder.model_id()
    }
}

/// Min-max normalise to 0..1 (all equal: 0.5), as the original does with reranker scores.
pub fn min_max(scores: &[f32]) -> Vec<f32> {
    let (lo, hi) = scores.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![0.5; scores.len()];
    }
    scores.iter().map(|x| (x - lo) / (hi - lo)).collect()
}

/// Documents ranked against a query, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// The model used.
    pub model: String,
    /// `cross-encoder` or `bi-encoder` (embedding similarity).
    pub method: &'static str,
    /// `(index in the input, score 0..1)`, best first.
    pub ranked: Vec<(usize, f32)>,
}

impl crate::runtime::Reranked {
    /// The documents' indices sorted by score, best first (ties keep input order),
    /// cut to the best `top_n` when given.
    pub fn into_ranking(self, top_n: Option<usize>) -> Ranking {
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        let n = top_n.unwrap_or(order.len()).min(order.len());
        let ranked = order.into_iter().take(n).map(|i| (i, self.scores[i])).collect();
        Ranking { model: self.model, method: self.method, ranked }
    }
}

impl crate::LlamaFarm {
    /// [`crate::LlamaFarm::rerank`], sorted best first and cut to `top_n`.
    pub fn rank(&self, model: &str, query: &str, documents: &[&str], top_n: Option<usize>) -> Result<Ranking> {
        Ok(self.rerank(model, query, documents)?.into_ranking(top_n))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranking_is_best_first_stable_and_cut() {
        let r = crate::runtime::Reranked { model: "m".into(), method: "bi-encoder", scores: vec![0.2, 0.9, 0.5, 0.9] };
        assert_eq!(r.clone().into_ranking(None).ranked, vec![(1, 0.9), (3, 0.9), (2, 0.5), (0, 0.2)]);
        assert_eq!(r.clone().into_ranking(Some(2)).ranked, vec![(1, 0.9), (3, 0.9)]);
        assert_eq!(r.into_ranking(Some(10)).ranked.len(), 4);
    }

    use super::*;
    use candle_nn::VarMap;

    /// A tiny randomly initialised cross-encoder of the real architecture, saved to
    /// disk and loaded back through the production loader.
    #[test]
    fn tiny_random_cross_encoder_loads_and_scores() {
        let cache = crate::ModelCache::from_env();
        let minilm = cache.resolve(crate::embed::DEFAULT_EMBEDDING_MODEL).expect("run scripts/fetch-models.sh");
        let dir = tempfile::tempdir().unwrap();
        let config = BertConfig {
            vocab_size: 30522,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 64,
            max_position_embeddings: 128,
            ..Default::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let tok = Tokenizer::from_file(minilm.dir.join("tokenizer.json")).unwrap();
        CrossEncoder::from_var_builder(vb, &config, tok, "tiny").unwrap();
        varmap.save(dir.path().join("model.safetensors")).unwrap();
        let cfg_json = serde_json::json!({
            "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "max_position_embeddings": 128,
            "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "classifier_dropout": null, "model_type": "bert", "architectures": ["BertForSequenceClassification"]
        });
        std::fs::write(dir.path().join("config.json"), cfg_json.to_string()).unwrap();
        std::fs::copy(minilm.dir.join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();

        let ce = CrossEncoder::load(dir.path(), "tiny").unwrap();
        let docs = ["cats purr", "the stock market fell", &"long text ".repeat(400)];
        let s1 = ce.score("what do cats do", &docs).unwrap();
        assert_eq!(s1.len(), 3);
        assert!(s1.iter().all(|x| x.is_finite()));
        // Deterministic, and batch-independent.
        let s2 = ce.score("what do cats do", &docs[..1]).unwrap();
        assert!((s1[0] - s2[0]).abs() < 1e-4, "{s1:?} vs {s2:?}");
        assert_ne!(s1[0], s1[1], "different pairs get different scores");
    }

    #[test]
    fn min_max_normalisation() {
        assert_eq!(min_max(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
        assert_eq!(min_max(&[2.0, 2.0]), vec![0.5, 0.5]);
    }
}
