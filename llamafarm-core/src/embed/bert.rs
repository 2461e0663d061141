//! Sentence-transformers (BERT family) on our own encoder ([`BertEncoder`]); candle
//! supplies only the `config.json` type.

use super::encoder::{BertEncoder, Precision};
use super::{normalize, Embedder};
use crate::error::{Error, Result};
use candle_transformers::models::bert::Config as BertConfig;
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over real (non-padding) tokens.
    Mean,
    /// The `[CLS]` token.
    Cls,
    /// Element-wise max over real tokens.
    Max,
}

/// What a sentence-transformers directory says about turning token vectors into one:
/// `modules.json` (a `Normalize` module), the pooling module's `config.json`, and
/// `sentence_bert_config.json`'s `max_seq_length`.
pub struct Head {
    /// How token vectors become one.
    pub pooling: Pooling,
    /// L2-normalise the result.
    pub normalize: bool,
    /// Most tokens per text, when the directory says.
    pub max_len: Option<usize>,
}

/// Read the [`Head`] of the sentence-transformers model in `dir` (mean pooling and no
/// normalisation where it says nothing).
pub fn read_head(dir: &Path) -> Head {
    let mut head = Head { pooling: Pooling::Mean, normalize: false, max_len: None };
    if let Ok(modules) = read_json(&dir.join("modules.json")) {
        for m in modules.as_array().into_iter().flatten() {
            let ty = m["type"].as_str().unwrap_or("");
            if ty.ends_with("Normalize") {
                head.normalize = true;
            }
            if ty.ends_with("Pooling") {
                let p = m["path"].as_str().unwrap_or("1_Pooling");
                if let Ok(pc) = read_json(&dir.join(p).join("config.json")) {
                    if pc["pooling_mode_cls_token"].as_bool() == Some(true) {
                        head.pooling = Pooling::Cls;
                    } else if pc["pooling_mode_max_tokens"].as_bool() == Some(true) {
                        head.pooling = Pooling::Max;
                    }
                }
            }
        }
    }
    head.max_len = read_json(&dir.join("sentence_bert_config.json")).ok().and_then(|v| v["max_seq_length"].as_u64()).map(|v| v as usize);
    head
}

impl Pooling {
    /// One vector from the token vectors `rows` (`d` wide, real tokens only, no
    /// padding); zeros when there are none.
    pub fn pool(self, rows: &[f32], d: usize) -> Vec<f32> {
        let mut v = vec![0f32; d];
        if rows.len() < d {
            return v;
        }
        match self {
            Pooling::Cls => v.copy_from_slice(&rows[..d]),
            Pooling::Mean => {
                for row in rows.chunks_exact(d) {
                    v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                }
                let n = (rows.len() / d) as f32;
                v.iter_mut().for_each(|a| *a /= n);
            }
            Pooling::Max => {
                v.fill(f32::NEG_INFINITY);
                for row in rows.chunks_exact(d) {
                    v.iter_mut().zip(row).for_each(|(a, b)| *a = a.max(*b));
                }
            }
        }
        v
    }
}

/// A local sentence-transformers model.
pub struct BertEmbedder {
    id: String,
    encoder: BertEncoder,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dim: usize,
    max_len: usize,
    batch_size: usize,
    pad_id: u32,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::parse(crate::error::file_name(path), e.to_string()))
}

impl BertEmbedder {
    /// Load from a sentence-transformers directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, optional `modules.json`, `1_Pooling/config.json`,
    /// `sentence_bert_config.json`), in fp32 (the reference numerics; model ids in a
    /// config go through [`crate::embed::split_precision`] and [`Self::load_with`]).
    pub fn load(dir: &Path, id: &str, batch_size: usize) -> Result<Self> {
        Self::load_with(dir, id, batch_size, Precision::F32)
    }

    /// [`Self::load`] with the encoder's linear layers at `precision`
    /// ([`Precision::Bf16`]: about 2x the fp32 speed of the products on CPUs with
    /// AVX-512 BF16, 4x-8x on AMX; [`Precision::Int8`]: about 2x-3x on CPUs with AVX-512
    /// VNNI, about 3x with AVX-VNNI, 1.9x on AVX2).
    pub fn load_with(dir: &Path, id: &str, batch_size: usize, precision: Precision) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: BertConfig =
            serde_json::from_value(read_json(&config_path)?).map_err(|e| Error::parse(format!("config.json of model '{id}'"), e.to_string()))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::ModelMissing {
                model: id.into(),
                reason: format!("{} is missing", weights.display()),
                fetch_hint: crate::model_cache::FETCH_COMMAND.into(),
            });
        }
        let encoder = BertEncoder::load_with(&weights, &config, precision)?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| Error::Internal(format!("loading tokenizer of {id}: {e}")))?;

        let head = read_head(dir);
        let max_len = head.max_len.unwrap_or(config.max_position_embeddings.min(512));
        let (pooling, normalize) = (head.pooling, head.normalize);
        Self::from_parts(id, encoder, tokenizer, pooling, normalize, max_len, batch_size)
    }

    /// Assemble from a loaded encoder (used with tiny random models in tests).
    pub fn from_parts(
        id: &str,
        encoder: BertEncoder,
        mut tokenizer: Tokenizer,
        pooling: Pooling,
        normalize: bool,
        max_len: usize,
        batch_size: usize,
    ) -> Result<Self> {
        // The shipped tokenizer pads every input to 128 tokens; we pad per batch
        // ourselves and pool with the attention mask.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::Internal(format!("tokenizer truncation: {e}")))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        let dim = encoder.hidden();
        Ok(Self { id: id.into(), encoder, tokenizer, pooling, normalize, dim, max_len, batch_size: batch_size.max(1), pad_id })
    }

    /// Maximum tokens per text (longer texts are truncated).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Id of the padding token.
    pub(crate) fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of `text` (with special tokens, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Internal(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Run one batch (packed, no padding; `threads` for the encoder's own parallelism);
    /// returns one pooled vector per input.
    fn forward_batch(&self, batch: &[Vec<u32>], threads: usize) -> Result<Vec<Vec<f32>>> {
        let d = self.dim;
        let hidden = self.encoder.forward(batch, threads)?; // (sum of lengths, d)
        let mut out = Vec::with_capacity(batch.len());
        let mut r0 = 0;
        for s in batch {
            let rows = &hidden[r0 * d..(r0 + s.len()) * d];
            r0 += s.len();
            let mut v = self.pooling.pool(rows, d);
            if self.normalize {
                normalize(&mut v);
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Tokens per forward pass unless [`super::EmbedOptions::batch_tokens`] says otherwise (on top of the
/// configured `batch_size` in sequences). A pass streams its activations (`rows x
/// 3·hidden` for Q, K, V, and the hidden states, one row per token) through every layer;
/// at about a thousand rows they stay near the core, at eight full-length sequences
/// (about 2,000 rows of a chunked document) they did not. Measured on markdown chunks
/// (`docs/benchmarks.md`, eighth session): 1,024 tokens a pass ran 1.06-1.14x faster than
/// eight sequences; 256 (one sequence) was slower again.
pub(crate) const BATCH_TOKENS: usize = 1024;

fn batch_tokens() -> usize {
    Some(super::options().batch_tokens).filter(|&n| n > 0).unwrap_or(BATCH_TOKENS)
}

/// Splits sequences of these token `lengths` (in the order they will run) into
/// consecutive batches of at most `max_seqs` sequences and `max_tokens` tokens; a
/// sequence longer than `max_tokens` gets a batch of its own.
fn plan_batches(lengths: &[usize], max_seqs: usize, max_tokens: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (pos, &len) in lengths.iter().enumerate() {
        if pos > start && (pos - start >= max_seqs.max(1) || sum + len > max_tokens) {
            out.push(start..pos);
            (start, sum) = (pos, 0);
        }
        sum += len;
    }
    if start < lengths.len() {
        out.push(start..lengths.len());
    }
    out
}

impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dim
    }

    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.tokenize(text).ok().map(|t| t.len())
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let tokens: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect::<Result<_>>()?;
        // Sort by length so each batch pads little; restore the order afterwards.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokens[i].len());
        // With enough batches, each runs single-threaded and the batches run concurrently
        // (no synchronisation inside a forward pass); with few, one batch at a time uses
        // every core inside the encoder (products split, heads in parallel).
        use rayon::prelude::*;
        let threads = rayon::current_num_threads().max(1);
        let size = self.batch_size.min(texts.len().div_ceil(threads)).max(1);
        let lengths: Vec<usize> = order.iter().map(|&i| tokens[i].len()).collect();
        let batches: Vec<&[usize]> = plan_batches(&lengths, size, batch_tokens()).into_iter().map(|r| &order[r]).collect();
        let run = |chunk: &&[usize], inner: usize| {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| tokens[i].clone()).collect();
            self.forward_batch(&batch, inner)
        };
        let results: Vec<Result<Vec<Vec<f32>>>> =
            if batches.len() >= threads { batches.par_iter().map(|c| run(c, 1)).collect() } else { batches.iter().map(|c| run(c, threads)).collect() };
        let mut out = vec![Vec::new(); texts.len()];
        for (chunk, r) in batches.iter().zip(results) {
            for (&i, v) in chunk.iter().zip(r?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::embed::cosine;

    /// The real all-MiniLM-L6-v2 from the model cache (`scripts/fetch-models.sh` puts it there).
    pub(crate) fn minilm() -> BertEmbedder {
        let cache = crate::ModelCache::from_env();
        let m = cache
            .resolve(crate::embed::DEFAULT_EMBEDDING_MODEL)
            .unwrap_or_else(|e| panic!("{e}\n(the test suite needs the real model: run scripts/fetch-models.sh)"));
        BertEmbedder::load(&m.dir, crate::embed::DEFAULT_EMBEDDING_MODEL, 32).unwrap()
    }

    #[test]
    fn golden_values_match_sentence_transformers() {
        let e = minilm();
        assert_eq!(e.dimension(), 384);
        let v = e.embed_one("This is an example sentence").unwrap();
        let want = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448];
        for (g, w) in v.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "got {:?}", &v[..5]);
        }
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);

        // Batched with very different lengths (padding must not leak into the mean).
        let texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.", "This is an example sentence"];
        let vs = e.embed(&texts).unwrap();
        assert!((cosine(&vs[0], &vs[1]) - 0.7553).abs() < 1e-3, "{}", cosine(&vs[0], &vs[1]));
        assert!((cosine(&vs[0], &vs[2]) - (-0.105)).abs() < 1e-3, "{}", cosine(&vs[0], &vs[2]));
        for (a, b) in vs[3].iter().zip(&v) {
            assert!((a - b).abs() < 1e-5, "batched result differs from single");
        }
    }

    #[test]
    fn batches_respect_both_caps_and_keep_the_order() {
        assert!(plan_batches(&[], 32, 1024).is_empty());
        // By tokens: 300 + 300 + 300 fits 1,024, a fourth does not; an over-long
        // sequence runs alone.
        assert_eq!(plan_batches(&[300, 300, 300, 300, 2000, 10], 32, 1024), vec![0..3, 3..4, 4..5, 5..6]);
        // By count.
        assert_eq!(plan_batches(&[1; 5], 2, 1024), vec![0..2, 2..4, 4..5]);
        // Exactly at the budget still fits; empty sequences take none of it.
        assert_eq!(plan_batches(&[0, 0, 1024, 0], 32, 1024), vec![0..4]);
        assert_eq!(plan_batches(&[1024, 1], 32, 1024), vec![0..1, 1..2]);
    }

    #[test]
    fn long_inputs_are_truncated_not_rejected() {
        let e = minilm();
        let long = "word ".repeat(5000);
        let v = e.embed(&[long.as_str(), ""]).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|x| x.len() == 384 && x.iter().all(|f| f.is_finite())));
        assert!(e.tokenize(&long).unwrap().len() <= 256);
    }

    #[test]
    fn reduced_precisions_stay_close_to_fp32_and_keep_the_ranking() {
        let cache = crate::ModelCache::from_env();
        let f = minilm();
        assert_eq!(f.encoder.precision(), Precision::F32);
        let texts = [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
            "Neural scaling laws relate model size, data and compute to the loss.",
            "Aspirin irreversibly inhibits cyclooxygenase, reducing thromboxane synthesis in platelets.",
            &"Long documents are truncated to the model's 256 tokens. ".repeat(40),
        ];
        let vf = f.embed(&texts).unwrap();
        // (suffix, precision, least cosine to fp32): bf16 rounds each factor to 8
        // mantissa bits, int8 to 255 levels.
        for (suffix, want, min_cos) in [("INT8", Precision::Int8, 0.99), ("bf16", Precision::Bf16, 0.998)] {
            let id = format!("sentence-transformers/all-MiniLM-L6-v2:{suffix}");
            let (base, precision) = crate::embed::split_precision(&id);
            assert_eq!(precision, want);
            let m = cache.resolve(base).unwrap_or_else(|e| panic!("{e}\n(run scripts/fetch-models.sh)"));
            let q = BertEmbedder::load_with(&m.dir, suffix, 32, precision).unwrap();
            assert_eq!(q.encoder.precision(), want);
            let vq = q.embed(&texts).unwrap();
            for (a, b) in vf.iter().zip(&vq) {
                let c = cosine(a, b);
                assert!(c > min_cos, "{suffix} vs fp32 cosine {c}");
            }
            // Similarity structure survives: related pair stays far above the unrelated one.
            assert!((cosine(&vq[0], &vq[1]) - cosine(&vf[0], &vf[1])).abs() < 0.03, "{suffix}");
            assert!(cosine(&vq[0], &vq[1]) > cosine(&vq[0], &vq[2]) + 0.5, "{suffix}");
            if want == Precision::Bf16 {
                // Batched and one at a time agree (the kernel has no batch-dependent state).
                let one = q.embed_one(texts[3]).unwrap();
                assert!(cosine(&one, &vq[3]) > 0.99999);
            }
        }
    }
}

#[cfg(test)]
mod batch_invariance {
    use super::tests::minilm;
    use super::*;

    /// A text's vector does not depend on the texts embedded with it, at every
    /// precision: ingestion groups the chunks of many files into one call, and its
    /// vectors must be the ones each file would have had alone.
    #[test]
    fn vectors_are_the_same_in_any_batch() {
        let cache = crate::ModelCache::from_env();
        let m = cache.resolve(crate::embed::DEFAULT_EMBEDDING_MODEL).unwrap_or_else(|e| panic!("{e}\n(run scripts/fetch-models.sh)"));
        let texts: Vec<String> = (0..40).map(|i| format!("Sentence number {i} about {} things", "many ".repeat(i % 13))).collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        for e in
            [minilm(), BertEmbedder::load_with(&m.dir, "bf16", 32, Precision::Bf16).unwrap(), BertEmbedder::load_with(&m.dir, "int8", 32, Precision::Int8).unwrap()]
        {
            let all = e.embed(&refs).unwrap();
            let threes: Vec<Vec<f32>> = refs.chunks(3).flat_map(|c| e.embed(c).unwrap()).collect();
            for (i, t) in refs.iter().enumerate() {
                let one = e.embed(&[t]).unwrap().remove(0);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(&all[i]), "{:?}: text {i} alone vs in a batch of 40", e.encoder.precision());
                assert_eq!(bits(&threes[i]), bits(&all[i]), "{:?}: text {i} in a batch of 3 vs 40", e.encoder.precision());
            }
        }
    }
}
