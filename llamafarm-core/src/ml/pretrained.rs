//! Pre-trained Hugging Face classifiers in candle: sequence classification
//! (`/v1/classify`: sentiment, spam, ...) and token classification (`/v1/ner`).
//!
//! A model is a Hugging Face directory in the model cache: `config.json` (with
//! `model_type` `bert` or `distilbert`, `architectures` naming the head, and
//! `id2label`), `model.safetensors` and `tokenizer.json`. Heads, as transformers
//! defines them: BERT sequence classification runs the pooler (`tanh` of a dense
//! layer over `[CLS]`) then `classifier`; DistilBERT runs `pre_classifier`, ReLU, then
//! `classifier` over the first token; token classification applies `classifier` to
//! every token. Scores are a softmax over the labels.
//!
//! NER merges BIO tags into entities as transformers' `aggregation_strategy="simple"`
//! does at word level: a word takes its first token's tag; a `B-` tag or a new type
//! starts an entity, `I-` of the same type continues it; an entity's score is the mean
//! of its words' scores, its offsets are character offsets into the text.

use crate::error::{Error, Result};
use crate::ml::classifier::Prediction;
use crate::model_cache::ModelCache;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use candle_transformers::models::{bert, distilbert};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokenizers::{Tokenizer, TruncationParams};

enum Encoder {
    Bert(bert::BertModel),
    DistilBert(distilbert::DistilBertModel),
}

enum Head {
    /// BERT's pooler, then the classifier.
    Pooled { pooler: Linear, classifier: Linear },
    /// DistilBERT's pre-classifier (ReLU), then the classifier.
    PreClassified { pre: Linear, classifier: Linear },
    /// Per token.
    Tokens(Linear),
}

/// What a model's head does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// One label per text.
    Sequence,
    /// One label per token (NER).
    Token,
}

/// A loaded pre-trained classifier.
pub struct PretrainedModel {
    id: String,
    encoder: Encoder,
    head: Head,
    tokenizer: Tokenizer,
    labels: Vec<String>,
    /// What the head does.
    pub task: Task,
}

impl std::fmt::Debug for PretrainedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainedModel").field("id", &self.id).field("task", &self.task).field("labels", &self.labels).finish()
    }
}

/// A named entity.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entity {
    /// The text of the span.
    pub text: String,
    /// The entity type (`PER`, `ORG`, ...).
    pub label: String,
    /// Character offset of the first character.
    pub start: usize,
    /// Character offset past the last character.
    pub end: usize,
    /// Mean probability of its words' tags.
    pub score: f32,
}

fn bad(id: &str, e: impl std::fmt::Display) -> Error {
    Error::NotAvailable { what: format!("model '{id}'"), reason: format!("cannot be loaded: {e}") }
}

impl PretrainedModel {
    /// Load a model directory.
    pub fn load(dir: &Path, id: &str) -> Result<Self> {
        let cfg_text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| bad(id, format!("config.json: {e}")))?;
        let cfg: serde_json::Value = serde_json::from_str(&cfg_text).map_err(|e| bad(id, format!("config.json: {e}")))?;
        let arch = cfg["architectures"].get(0).and_then(|a| a.as_str()).unwrap_or("");
        let task = if arch.ends_with("ForTokenClassification") {
            Task::Token
        } else if arch.ends_with("ForSequenceClassification") {
            Task::Sequence
        } else {
            return Err(bad(id, format!("architecture '{arch}' is not a sequence or token classifier")));
        };
        let mut labels: Vec<(usize, String)> =
            cfg["id2label"].as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect()).unwrap_or_default();
        labels.sort();
        let labels: Vec<String> = labels.into_iter().map(|(_, l)| l).collect();
        if labels.is_empty() {
            return Err(bad(id, "config.json has no id2label"));
        }
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(bad(id, "no model.safetensors"));
        }
        // SAFETY: the weights file is mapped read-only and not modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }.map_err(|e| bad(id, e))?;
        let n = labels.len();
        let model_type = cfg["model_type"].as_str().unwrap_or("");
        let (encoder, head) = match model_type {
            "bert" => {
                let c: bert::Config = serde_json::from_value(cfg.clone()).map_err(|e| bad(id, e))?;
                let h = c.hidden_size;
                let enc = bert::BertModel::load(vb.clone(), &c).map_err(|e| bad(id, e))?;
                let head = match task {
                    Task::Token => Head::Tokens(linear(h, n, vb.pp("classifier")).map_err(|e| bad(id, e))?),
                    Task::Sequence => Head::Pooled {
                        pooler: linear(h, h, vb.pp("bert.pooler.dense")).map_err(|e| bad(id, e))?,
                        classifier: linear(h, n, vb.pp("classifier")).map_err(|e| bad(id, e))?,
                    },
                };
                (Encoder::Bert(enc), head)
            }
            "distilbert" => {
                let c: distilbert::Config = serde_json::from_value(cfg.clone()).map_err(|e| bad(id, e))?;
                let h = c.dim;
                let enc = distilbert::DistilBertModel::load(vb.clone(), &c).map_err(|e| bad(id, e))?;
                let head = match task {
                    Task::Token => Head::Tokens(linear(h, n, vb.pp("classifier")).map_err(|e| bad(id, e))?),
                    Task::Sequence => Head::PreClassified {
                        pre: linear(h, h, vb.pp("pre_classifier")).map_err(|e| bad(id, e))?,
                        classifier: linear(h, n, vb.pp("classifier")).map_err(|e| bad(id, e))?,
                    },
                };
                (Encoder::DistilBert(enc), head)
            }
            other => return Err(bad(id, format!("model_type '{other}' is not supported (bert and distilbert are)"))),
        };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| bad(id, format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        let max_len = cfg["max_position_embeddings"].as_u64().unwrap_or(512) as usize;
        tokenizer.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).map_err(|e| bad(id, e))?;
        Ok(Self { id: id.to_string(), encoder, head, tokenizer, labels, task })
    }

    /// The labels, in class order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    fn hidden(&self, ids: &[u32], max_len: usize) -> Result<Tensor> {
        let ids = &ids[..ids.len().min(max_len.max(2))];
        let fail = |e: candle_core::Error| Error::internal(format!("model '{}' failed: {e}", self.id));
        let t = Tensor::new(ids, &Device::Cpu).and_then(|t| t.unsqueeze(0)).map_err(fail)?;
        let h = match &self.encoder {
            Encoder::Bert(m) => m.forward(&t, &t.zeros_like().map_err(fail)?, None),
            Encoder::DistilBert(m) => {
                // DistilBERT's mask is true where attention is blocked: nothing is, for one text.
                let mask = Tensor::zeros((1, 1, 1, ids.len()), DType::U8, &Device::Cpu).map_err(fail)?;
                m.forward(&t, &mask)
            }
        };
        h.and_then(|h| h.squeeze(0)).map_err(fail)
    }

    fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        match &self.head {
            Head::Pooled { pooler, classifier } => classifier.forward(&pooler.forward(&hidden.narrow(0, 0, 1)?)?.tanh()?),
            Head::PreClassified { pre, classifier } => classifier.forward(&pre.forward(&hidden.narrow(0, 0, 1)?)?.relu()?),
            Head::Tokens(c) => c.forward(hidden),
        }
    }

    /// Classify each text (sequence classifiers); `max_length` caps the tokens read.
    pub fn classify(&self, texts: &[String], max_length: Option<usize>) -> Result<Vec<Prediction>> {
        if self.task != Task::Sequence {
            return Err(Error::InvalidField { field: "model".into(), reason: format!("'{}' is a token classifier: use /v1/ner", self.id) });
        }
        texts
            .iter()
            .map(|text| {
                let enc = self.tokenizer.encode(text.as_str(), true).map_err(|e| Error::internal(format!("tokenizer: {e}")))?;
                let h = self.hidden(enc.get_ids(), max_length.unwrap_or(usize::MAX))?;
                let probs: Vec<f32> = self
                    .logits(&h)
                    .and_then(|l| candle_nn::ops::softmax(&l, D::Minus1))
                    .and_then(|p| p.squeeze(0))
                    .and_then(|p| p.to_vec1())
                    .map_err(|e| Error::internal(format!("model '{}' failed: {e}", self.id)))?;
                let best = (0..probs.len()).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap_or(0);
                let all_scores: BTreeMap<String, f32> = self.labels.iter().cloned().zip(probs.iter().copied()).collect();
                Ok(Prediction { text: text.clone(), label: self.labels[best].clone(), score: probs[best], all_scores })
            })
            .collect()
    }

    /// The entities of each text (token classifiers).
    pub fn entities(&self, texts: &[String]) -> Result<Vec<Vec<Entity>>> {
        if self.task != Task::Token {
            return Err(Error::InvalidField { field: "model".into(), reason: format!("'{}' is a sequence classifier: use /v1/classify", self.id) });
        }
        texts.iter().map(|text| self.entities_of(text)).collect()
    }

    fn entities_of(&self, text: &str) -> Result<Vec<Entity>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::internal(format!("tokenizer: {e}")))?;
        let h = self.hidden(enc.get_ids(), usize::MAX)?;
        let probs: Vec<Vec<f32>> = self
            .logits(&h)
            .and_then(|l| candle_nn::ops::softmax(&l, D::Minus1))
            .and_then(|p| p.to_vec2())
            .map_err(|e| Error::internal(format!("model '{}' failed: {e}", self.id)))?;
        // Words: (word id, byte start, byte end, tag, score) from each word's first token.
        let mut words: Vec<(u32, usize, usize, String, f32)> = Vec::new();
        for (i, p) in probs.iter().enumerate() {
            let (Some(w), Some(&(s, e))) = (enc.get_word_ids().get(i).copied().flatten(), enc.get_offsets().get(i)) else { continue };
            if enc.get_special_tokens_mask().get(i) == Some(&1) {
                continue;
            }
            match words.last_mut() {
                Some(last) if last.0 == w => last.2 = last.2.max(e),
                _ => {
                    let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                    words.push((w, s, e, self.labels.get(best).cloned().unwrap_or_default(), p[best]));
                }
            }
        }
        let mut out: Vec<(String, usize, usize, Vec<f32>)> = Vec::new();
        let mut open = false;
        for (_, s, e, tag, score) in words {
            let (prefix, ty) = match tag.split_once('-') {
                Some((p, t)) if matches!(p, "B" | "I" | "E" | "S") => (p, t.to_string()),
                _ if tag == "O" => ("O", String::new()),
                _ => ("B", tag.clone()),
            };
            if prefix == "O" {
                open = false;
                continue;
            }
            match out.last_mut() {
                Some(last) if open && prefix == "I" && last.0 == ty => {
                    last.2 = e;
                    last.3.push(score);
                }
                _ => {
                    out.push((ty, s, e, vec![score]));
                    open = true;
                }
            }
        }
        let char_at = |byte: usize| text[..byte.min(text.len())].chars().count();
        Ok(out
            .into_iter()
            .filter(|(_, s, e, _)| s < e && *e <= text.len() && text.is_char_boundary(*s) && text.is_char_boundary(*e))
            .map(|(label, s, e, scores)| Entity {
                text: text[s..e].to_string(),
                label,
                start: char_at(s),
                end: char_at(e),
                score: scores.iter().sum::<f32>() / scores.len() as f32,
            })
            .collect())
    }
}

/// Pre-trained models loaded from the model cache, kept for the process.
#[derive(Default)]
pub(crate) struct PretrainedState {
    loaded: Mutex<HashMap<String, Arc<PretrainedModel>>>,
}

/// The pre-trained classifiers of a library instance: `lf.ml().pretrained()`.
pub struct Pretrained<'a> {
    pub(crate) lf: &'a crate::LlamaFarm,
}

/// Models that fit `/v1/ner` when the user has them (for messages).
pub const NER_EXAMPLE: &str = "dslim/bert-base-NER";

impl Pretrained<'_> {
    fn cache(&self) -> &ModelCache {
        self.lf.models()
    }

    /// Load (once) the model `id` from the model cache.
    pub fn get(&self, id: &str) -> Result<Arc<PretrainedModel>> {
        let id = id.trim();
        let id = id.split_once(':').map(|(r, _)| r).unwrap_or(id);
        let state = &self.lf.ml_state().pretrained;
        if let Some(m) = state.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(m.clone());
        }
        let r = self.cache().resolve(id)?;
        let m = Arc::new(PretrainedModel::load(&r.dir, id)?);
        state.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), m.clone());
        Ok(m)
    }

    /// Named entities in each text.
    pub fn ner(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<Entity>>> {
        check(texts)?;
        if model.trim().is_empty() {
            return Err(Error::InvalidField {
                field: "model".into(),
                reason: format!("is required (a token-classification model in the model cache, e.g. {NER_EXAMPLE})"),
            });
        }
        self.get(model)?.entities(texts)
    }

    /// Labels of each text.
    pub fn classify(&self, model: &str, texts: &[String], max_length: Option<usize>) -> Result<Vec<Prediction>> {
        check(texts)?;
        self.get(model)?.classify(texts, max_length)
    }
}

fn check(texts: &[String]) -> Result<()> {
    if texts.is_empty() {
        return Err(Error::InvalidField { field: "texts".into(), reason: "must not be empty".into() });
    }
    if texts.len() > 256 {
        return Err(Error::InvalidField { field: "texts".into(), reason: format!("lists {} texts; at most 256 per request", texts.len()) });
    }
    if let Some(i) = texts.iter().position(|t| t.len() > 100_000) {
        return Err(Error::InvalidField { field: format!("texts[{i}]"), reason: "is longer than 100000 bytes".into() });
    }
    Ok(())
}

impl<'a> crate::ml::Ml<'a> {
    /// Pre-trained Hugging Face classifiers (sequence and token classification).
    pub fn pretrained(&self) -> Pretrained<'a> {
        Pretrained { lf: self.lf }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    const WORDS: &[&str] = &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "john", "smith", "works", "at", "google", "in", "paris", "great", "awful", "##s"];

    /// A tiny random model of `model_type` with `arch`'s head, its config and a WordPiece
    /// tokenizer with BERT's special tokens, in `dir`.
    fn tiny(dir: &Path, model_type: &str, arch: &str, labels: &[&str]) {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let id2label: serde_json::Map<String, serde_json::Value> = labels.iter().enumerate().map(|(i, l)| (i.to_string(), serde_json::json!(l))).collect();
        let (cfg, h) = if model_type == "bert" {
            (
                serde_json::json!({"model_type": "bert", "architectures": [arch], "vocab_size": WORDS.len(), "hidden_size": 16, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "max_position_embeddings": 64,
                    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "id2label": id2label}),
                16,
            )
        } else {
            (
                serde_json::json!({"model_type": "distilbert", "architectures": [arch], "vocab_size": WORDS.len(), "dim": 16, "n_layers": 2, "n_heads": 2,
                    "hidden_dim": 32, "activation": "gelu", "max_position_embeddings": 64, "initializer_range": 0.02, "pad_token_id": 0, "id2label": id2label}),
                16,
            )
        };
        let n = labels.len();
        if model_type == "bert" {
            bert::BertModel::load(vb.pp("bert"), &serde_json::from_value(cfg.clone()).unwrap()).unwrap();
            if arch.ends_with("SequenceClassification") {
                linear(h, h, vb.pp("bert.pooler.dense")).unwrap();
            }
        } else {
            distilbert::DistilBertModel::load(vb.pp("distilbert"), &serde_json::from_value(cfg.clone()).unwrap()).unwrap();
            if arch.ends_with("SequenceClassification") {
                linear(h, h, vb.pp("pre_classifier")).unwrap();
            }
        }
        linear(h, n, vb.pp("classifier")).unwrap();
        vm.save(dir.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        std::fs::write(dir.join("vocab.txt"), WORDS.join("\n")).unwrap();
        let wp = tokenizers::models::wordpiece::WordPiece::from_file(&dir.join("vocab.txt").display().to_string()).unk_token("[UNK]".into()).build().unwrap();
        let mut tk = Tokenizer::new(wp);
        tk.with_normalizer(Some(tokenizers::normalizers::bert::BertNormalizer::default()));
        tk.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::bert::BertPreTokenizer));
        tk.with_post_processor(Some(tokenizers::processors::bert::BertProcessing::new(("[SEP]".into(), 3), ("[CLS]".into(), 2))));
        tk.save(dir.join("tokenizer.json"), false).unwrap();
    }

    #[test]
    fn sequence_classifiers_of_both_architectures_give_softmax_scores() {
        for ty in ["bert", "distilbert"] {
            let dir = tempfile::tempdir().unwrap();
            let arch = if ty == "bert" { "BertForSequenceClassification" } else { "DistilBertForSequenceClassification" };
            tiny(dir.path(), ty, arch, &["NEGATIVE", "POSITIVE"]);
            let m = PretrainedModel::load(dir.path(), "tiny").unwrap();
            let p = m.classify(&["great".into(), "awful awful".into()], None).unwrap();
            assert_eq!(p.len(), 2);
            for x in &p {
                let sum: f32 = x.all_scores.values().sum();
                assert!((sum - 1.0).abs() < 1e-4 && x.all_scores[&x.label] == x.score, "{ty}: {x:?}");
            }
            // The same text scores the same alone and in a list.
            assert_eq!(m.classify(&["great".into()], None).unwrap()[0], p[0]);
            assert!(m.entities(&["great".into()]).is_err());
        }
    }

    #[test]
    fn token_classifiers_merge_bio_tags_into_entities_with_char_offsets() {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path(), "bert", "BertForTokenClassification", &["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]);
        let m = PretrainedModel::load(dir.path(), "tiny-ner").unwrap();
        let text = "John Smith works at Google in Paris";
        let ents = m.entities(&[text.into()]).unwrap().pop().unwrap();
        // Random weights tag arbitrarily; whatever they tag, spans must be words of the text.
        for e in &ents {
            assert_eq!(text.chars().skip(e.start).take(e.end - e.start).collect::<String>(), e.text);
            assert!(["PER", "ORG", "LOC"].contains(&e.label.as_str()) && e.score > 0.0 && e.score <= 1.0, "{e:?}");
        }
        assert!(m.classify(&[text.into()], None).is_err());
    }

    #[test]
    fn bio_merging_follows_the_simple_strategy() {
        // A head set by hand so the tags are known: john, smith -> PER; google -> ORG;
        // paris -> LOC; the rest O.
        let dir = tempfile::tempdir().unwrap();
        let labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"];
        tiny(dir.path(), "bert", "BertForTokenClassification", &labels);
        let mut m = PretrainedModel::load(dir.path(), "tiny-ner").unwrap();
        let text = "John Smith works at Google in Paris";
        let enc = m.tokenizer.encode(text, true).unwrap();
        let h = m.hidden(enc.get_ids(), usize::MAX).unwrap();
        let want = [0usize, 1, 2, 0, 0, 3, 0, 5, 0]; // [CLS] john smith works at google in paris [SEP]
        let hv: Vec<Vec<f32>> = h.to_vec2().unwrap();
        assert_eq!(hv.len(), want.len());
        // A head whose logits are exactly 50 at each token's wanted tag: W = A^T H with
        // (H H^T) A = Y (H has fewer rows than columns, so this solves H W^T = Y).
        let n = hv.len();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum::<f64>();
        let mut g: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| dot(&hv[i], &hv[j])).collect()).collect();
        let mut y: Vec<Vec<f64>> = want.iter().map(|&t| (0..labels.len()).map(|k| if k == t { 50.0 } else { 0.0 }).collect()).collect();
        for c in 0..n {
            let p = (c..n).max_by(|&a, &b| g[a][c].abs().total_cmp(&g[b][c].abs())).unwrap();
            g.swap(c, p);
            y.swap(c, p);
            for r in 0..n {
                if r != c {
                    let f = g[r][c] / g[c][c];
                    for k in 0..n {
                        g[r][k] -= f * g[c][k];
                    }
                    for k in 0..labels.len() {
                        y[r][k] -= f * y[c][k];
                    }
                }
            }
        }
        let a: Vec<Vec<f64>> = (0..n).map(|r| y[r].iter().map(|v| v / g[r][r]).collect()).collect();
        let w: Vec<Vec<f32>> =
            (0..labels.len()).map(|t| (0..hv[0].len()).map(|k| (0..n).map(|i| a[i][t] * hv[i][k] as f64).sum::<f64>() as f32).collect()).collect();
        let wt = Tensor::new(w, &Device::Cpu).unwrap();
        m.head = Head::Tokens(Linear::new(wt, None));
        let ents = m.entities(&[text.into()]).unwrap().pop().unwrap();
        let got: Vec<(&str, &str, usize, usize)> = ents.iter().map(|e| (e.text.as_str(), e.label.as_str(), e.start, e.end)).collect();
        assert_eq!(got, vec![("John Smith", "PER", 0, 10), ("Google", "ORG", 20, 26), ("Paris", "LOC", 30, 35)], "{ents:?}");
    }
}
