//! Sentence-embedding models of the architectures beyond BERT, run by
//! candle-transformers: nomic-bert (`nomic-ai/nomic-embed-text-v1`/`v1.5`), XLM-RoBERTa
//! (`BAAI/bge-m3`, `intfloat/multilingual-e5-*`) and ModernBERT. The architecture comes
//! from `config.json`'s `model_type`; pooling and normalisation from the
//! sentence-transformers files (`modules.json`, `1_Pooling/config.json`), as for BERT
//! ([`super::bert`]). These run in fp32 on candle's CPU kernels; BERT models keep our own
//! encoder.
//!
//! Texts are padded per batch with the tokenizer's pad id and pooled with the attention
//! mask, so a text's vector does not depend on what it is batched with.

use super::bert::{read_head, Pooling};
use super::{normalize, Embedder};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{modernbert, nomic_bert, xlm_roberta};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// The `model_type`s this backend loads.
pub const MODEL_TYPES: &[&str] = &["nomic_bert", "xlm-roberta", "modernbert"];

enum Model {
    Nomic(nomic_bert::NomicBertModel),
    XlmRoberta(Box<xlm_roberta::XLMRobertaModel>),
    ModernBert(modernbert::ModernBert),
}

/// See the module docs.
pub struct CandleEmbedder {
    id: String,
    model: Model,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dim: usize,
    batch_size: usize,
    pad_id: u32,
}

fn bad(id: &str, what: impl std::fmt::Display) -> Error {
    Error::internal(format!("embedding model '{id}': {what}"))
}

/// The `model_type` of the model in `dir`, if its `config.json` names one.
pub fn model_type(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["model_type"].as_str().map(str::to_string)
}

impl CandleEmbedder {
    /// Whether the model in `dir` is of an architecture this backend loads.
    pub fn supports(dir: &Path) -> bool {
        model_type(dir).is_some_and(|t| MODEL_TYPES.contains(&t.as_str()))
    }

    /// Load from a sentence-transformers directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, optional `modules.json` and `1_Pooling/config.json`).
    pub fn load(dir: &Path, id: &str, batch_size: usize) -> Result<Self> {
        let ty = model_type(dir).unwrap_or_default();
        let text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| Error::io(dir.join("config.json"), e))?;
        let parse = |e: serde_json::Error| Error::parse(format!("config.json of model '{id}'"), e.to_string());
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::ModelMissing {
                model: id.into(),
                reason: "model.safetensors is missing".into(),
                fetch_hint: crate::model_cache::FETCH_COMMAND.into(),
            });
        }
        // SAFETY: the weights file is memory-mapped read-only; the model cache does not
        // change files in place (it writes snapshots anew).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }.map_err(|e| bad(id, e))?;
        let (model, dim) = match ty.as_str() {
            "nomic_bert" => {
                let cfg: nomic_bert::Config = serde_json::from_str(&text).map_err(parse)?;
                (Model::Nomic(nomic_bert::NomicBertModel::load(vb, &cfg).map_err(|e| bad(id, e))?), cfg.n_embd)
            }
            "xlm-roberta" => {
                let cfg: xlm_roberta::Config = serde_json::from_str(&text).map_err(parse)?;
                let m = xlm_roberta::XLMRobertaModel::new(&cfg, vb.clone())
                    .or_else(|_| xlm_roberta::XLMRobertaModel::new(&cfg, vb.pp("roberta")))
                    .map_err(|e| bad(id, e))?;
                (Model::XlmRoberta(Box::new(m)), cfg.hidden_size)
            }
            "modernbert" => {
                let cfg: modernbert::Config = serde_json::from_str(&text).map_err(parse)?;
                (Model::ModernBert(modernbert::ModernBert::load(vb, &cfg).map_err(|e| bad(id, e))?), cfg.hidden_size)
            }
            other => {
                return Err(Error::unavailable(
                    format!("embedding model '{id}'"),
                    format!("architecture '{other}' is not supported (BERT, {})", MODEL_TYPES.join(", ")),
                ))
            }
        };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| bad(id, format!("tokenizer: {e}")))?;
        let head = read_head(dir);
        tokenizer.with_padding(None);
        tokenizer.with_truncation(Some(TruncationParams { max_length: head.max_len.unwrap_or(512), ..Default::default() })).map_err(|e| bad(id, e))?;
        let pad_id = ["<pad>", "[PAD]"].iter().find_map(|t| tokenizer.token_to_id(t)).unwrap_or(0);
        Ok(Self { id: id.into(), model, tokenizer, pooling: head.pooling, normalize: head.normalize, dim, batch_size: batch_size.max(1), pad_id })
    }

    fn batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| bad(&self.id, e))?;
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let (mut ids, mut mask) = (Vec::with_capacity(texts.len() * len), Vec::with_capacity(texts.len() * len));
        for e in &enc {
            let n = e.get_ids().len();
            ids.extend_from_slice(e.get_ids());
            ids.extend(std::iter::repeat_n(self.pad_id, len - n));
            mask.extend(std::iter::repeat_n(1u32, n));
            mask.extend(std::iter::repeat_n(0u32, len - n));
        }
        let c = |e: candle_core::Error| bad(&self.id, e);
        let ids = Tensor::from_vec(ids, (texts.len(), len), &Device::Cpu).map_err(c)?;
        let mask = Tensor::from_vec(mask, (texts.len(), len), &Device::Cpu).map_err(c)?;
        let hidden = match &self.model {
            Model::Nomic(m) => m.forward(&ids, None, Some(&mask)),
            Model::XlmRoberta(m) => m.forward(&ids, &mask, &ids.zeros_like().map_err(c)?, None, None, None),
            Model::ModernBert(m) => m.forward(&ids, &mask),
        }
        .map_err(c)?;
        // Padding is on the right: a text's real tokens are its first rows.
        let hidden: Vec<f32> = hidden.flatten_all().and_then(|h| h.to_vec1()).map_err(c)?;
        let stride = len * self.dim;
        Ok(enc
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut v = self.pooling.pool(&hidden[i * stride..i * stride + e.get_ids().len() * self.dim], self.dim);
                if self.normalize {
                    normalize(&mut v);
                }
                v
            })
            .collect())
    }
}

impl Embedder for CandleEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            out.extend(self.batch(chunk)?);
        }
        Ok(out)
    }

    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.tokenizer.encode(text, true).ok().map(|e| e.get_ids().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use std::collections::HashMap;

    const WORDS: &[&str] = &["[PAD]", "[UNK]", "hello", "world", "llamas", "hum", "quietly", "the", "farm", "at", "night", "on"];

    fn configs() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "nomic_bert",
                serde_json::json!({"model_type": "nomic_bert", "n_embd": 32, "n_head": 4, "n_layer": 2, "n_inner": 64, "vocab_size": 16, "n_positions": 64,
                    "type_vocab_size": 2, "layer_norm_epsilon": 1e-12, "rotary_emb_fraction": 1.0, "rotary_emb_base": 1000.0, "activation_function": "swiglu"}),
            ),
            (
                "xlm-roberta",
                serde_json::json!({"model_type": "xlm-roberta", "hidden_size": 32, "layer_norm_eps": 1e-5, "attention_probs_dropout_prob": 0.0,
                    "hidden_dropout_prob": 0.0, "num_attention_heads": 4, "position_embedding_type": "absolute", "intermediate_size": 64, "hidden_act": "gelu",
                    "num_hidden_layers": 2, "vocab_size": 16, "max_position_embeddings": 40, "type_vocab_size": 1, "pad_token_id": 0}),
            ),
            (
                "modernbert",
                serde_json::json!({"model_type": "modernbert", "vocab_size": 16, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
                    "intermediate_size": 64, "max_position_embeddings": 64, "layer_norm_eps": 1e-5, "pad_token_id": 0, "global_attn_every_n_layers": 3,
                    "global_rope_theta": 160000.0, "local_attention": 8, "local_rope_theta": 10000.0}),
            ),
        ]
    }

    /// Write a tiny random model of `ty` (a sentence-transformers directory: weights,
    /// config, a word-level tokenizer, mean pooling and normalisation), and return the
    /// reference: the model's hidden states for ids, straight from candle.
    fn tiny(dir: &Path, ty: &str, cfg: &serde_json::Value) -> Box<dyn Fn(&[u32]) -> Vec<Vec<f32>>> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let model = match ty {
            "nomic_bert" => Model::Nomic(nomic_bert::NomicBertModel::load(vb, &serde_json::from_value(cfg.clone()).unwrap()).unwrap()),
            "xlm-roberta" => Model::XlmRoberta(Box::new(xlm_roberta::XLMRobertaModel::new(&serde_json::from_value(cfg.clone()).unwrap(), vb).unwrap())),
            _ => Model::ModernBert(modernbert::ModernBert::load(vb, &serde_json::from_value(cfg.clone()).unwrap()).unwrap()),
        };
        vm.save(dir.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let vocab: HashMap<String, u32> = WORDS.iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
        let wl = tokenizers::models::wordlevel::WordLevel::builder().vocab(vocab.into_iter().collect()).unk_token("[UNK]".into()).build().unwrap();
        let mut tk = Tokenizer::new(wl);
        tk.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
        tk.save(dir.join("tokenizer.json"), false).unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens": true}"#).unwrap();
        Box::new(move |ids: &[u32]| {
            let t = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let mask = t.ones_like().unwrap();
            let h = match &model {
                Model::Nomic(m) => m.forward(&t, None, Some(&mask)),
                Model::XlmRoberta(m) => m.forward(&t, &mask, &t.zeros_like().unwrap(), None, None, None),
                Model::ModernBert(m) => m.forward(&t, &mask),
            };
            h.unwrap().squeeze(0).unwrap().to_vec2().unwrap()
        })
    }

    /// Each architecture loads from its files, pools with the mask and normalises: a
    /// text's vector is the mean of the model's own hidden states for it, alone or
    /// padded in a batch.
    #[test]
    fn tiny_models_of_each_architecture_embed_like_their_reference() {
        let texts = ["hello world", "llamas hum quietly at night on the farm", "the farm"];
        for (ty, cfg) in configs() {
            let dir = tempfile::tempdir().unwrap();
            let reference = tiny(dir.path(), ty, &cfg);
            assert!(CandleEmbedder::supports(dir.path()), "{ty}");
            let e = CandleEmbedder::load(dir.path(), "tiny", 8).unwrap();
            assert_eq!(e.dimension(), 32);
            let batched = e.embed(&texts).unwrap();
            for (t, got) in texts.iter().zip(&batched) {
                let ids: Vec<u32> = t.split(' ').map(|w| WORDS.iter().position(|x| x == &w).unwrap() as u32).collect();
                let h = reference(&ids);
                let mut want: Vec<f32> = (0..32).map(|d| h.iter().map(|r| r[d]).sum::<f32>() / h.len() as f32).collect();
                normalize(&mut want);
                let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(diff < 1e-4, "{ty} {t:?}: off by {diff}");
                let alone = e.embed_one(t).unwrap();
                let diff = alone.iter().zip(got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(diff < 1e-4, "{ty} {t:?}: batched and alone differ by {diff}");
            }
        }
    }

    #[test]
    fn prefixes_mark_queries_and_documents() {
        let (ty, cfg) = configs().remove(0);
        let dir = tempfile::tempdir().unwrap();
        let _ = tiny(dir.path(), ty, &cfg);
        let inner: std::sync::Arc<dyn Embedder> = std::sync::Arc::new(CandleEmbedder::load(dir.path(), "tiny", 8).unwrap());
        let p = super::super::Prefixed { document: "hello ".into(), query: "world ".into(), inner: inner.clone() };
        assert_eq!(p.embed(&["farm"]).unwrap()[0], inner.embed_one("hello farm").unwrap());
        assert_eq!(p.embed_query("farm").unwrap(), inner.embed_one("world farm").unwrap());
        assert_eq!(super::super::default_prefixes("nomic-ai/nomic-embed-text-v1.5"), (Some("search_document: ".into()), Some("search_query: ".into())));
        assert_eq!(super::super::default_prefixes("sentence-transformers/all-MiniLM-L6-v2"), (None, None));
    }
}
