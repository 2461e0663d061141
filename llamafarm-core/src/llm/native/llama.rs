//! The llama architecture (Llama 2/3, SmolLM, TinyLlama, Mistral-style GQA) over our
//! own quantised kernels: RMS norm, rotary embeddings on adjacent pairs (the GGUF
//! converter permutes Q and K for it), grouped-query attention over a per-request KV
//! cache, a SwiGLU feed-forward block, tied or separate output weights.
//!
//! A prompt is prefilled in one batch: each weight matrix is read once for all of its
//! tokens (see [`QMatrix::matmul`]); decoding then runs one token at a time.

pub use super::attention::KvCache;
use super::attention::{attention, Heads};
use super::quant::{f16_to_f32, QActs, QMatrix, QK};
use super::team::Team;
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use llamafarm_kernels::math::exp;

/// Shape and constants of a llama model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden width.
    pub dim: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Leading dimensions of each head that are rotated.
    pub rope_dim: usize,
    /// Rotary base frequency.
    pub rope_base: f32,
    /// RMS norm epsilon.
    pub eps: f32,
    /// Vocabulary size (embedding rows).
    pub vocab: usize,
    /// Training context length.
    pub context: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V stacked (one matmul).
    qkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// Gate and up stacked.
    gate_up: QMatrix,
    down: QMatrix,
}

/// Weights of a llama model in our kernels' layout.
pub struct Llama {
    /// Shape and constants.
    pub cfg: LlamaConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None`: tied to `embed`.
    output: Option<QMatrix>,
    /// Rotation angles' cos/sin per position are computed from these.
    inv_freq: Vec<f32>,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("GGUF: {what}"))
}

/// Read a GGUF tensor into our layout (`Q4_1`/`Q8_0` kept, the rest re-quantised to `Q8_0`).
fn qmatrix(ct: &Content, file: &mut (impl std::io::Read + std::io::Seek), name: &str) -> Result<QMatrix> {
    let q = ct.tensor(file, name, &candle_core::Device::Cpu).map_err(|e| bad(format!("tensor {name}: {e}")))?;
    let dims = q.shape().dims().to_vec();
    let (rows, cols) = match dims[..] {
        [r, c] => (r, c),
        _ => return Err(bad(format!("tensor {name} has shape {dims:?}, expected a matrix"))),
    };
    if cols % QK != 0 {
        return Err(bad(format!("tensor {name}: {cols} columns is not a multiple of {QK}")));
    }
    let data = q.data().map_err(|e| bad(format!("tensor {name}: {e}")))?;
    let m = match q.dtype() {
        GgmlDType::Q4_1 => QMatrix::from_q4_1(&data, rows, cols),
        GgmlDType::Q8_0 => QMatrix::from_q8_0(&data, rows, cols),
        _ => {
            let f = dequant(&q, name)?;
            QMatrix::q8_0_from_f32(&f, rows, cols)
        }
    };
    m.ok_or_else(|| bad(format!("tensor {name}: unexpected size")))
}

fn dequant(q: &QTensor, name: &str) -> Result<Vec<f32>> {
    q.dequantize(&candle_core::Device::Cpu).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(|e| bad(format!("tensor {name}: {e}")))
}

fn vector(ct: &Content, file: &mut (impl std::io::Read + std::io::Seek), name: &str, len: usize) -> Result<Vec<f32>> {
    let q = ct.tensor(file, name, &candle_core::Device::Cpu).map_err(|e| bad(format!("tensor {name}: {e}")))?;
    let v = if q.dtype() == GgmlDType::F16 {
        q.data().map_err(|e| bad(format!("tensor {name}: {e}")))?.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
    } else {
        dequant(&q, name)?
    };
    if v.len() != len {
        return Err(bad(format!("tensor {name} has {} values, expected {len}", v.len())));
    }
    Ok(v)
}

/// Stack matrices of one input width into one (their rows one after the other).
fn stack(parts: Vec<QMatrix>) -> Result<QMatrix> {
    let kind = parts[0].kind;
    if parts.iter().any(|p| p.kind != kind || p.cols != parts[0].cols) {
        // Mixed types: bring all to Q8_0.
        let cols = parts[0].cols;
        let mut f = Vec::new();
        let mut rows = 0;
        for p in &parts {
            let mut row = vec![0f32; p.cols];
            for r in 0..p.rows {
                p.row_f32(r, &mut row);
                f.extend_from_slice(&row);
            }
            rows += p.rows;
        }
        return QMatrix::q8_0_from_f32(&f, rows, cols).ok_or_else(|| bad("stacking matrices of different widths"));
    }
    QMatrix::stack(parts).ok_or_else(|| bad("no matrices to stack"))
}

impl Llama {
    /// Load from a GGUF whose `general.architecture` is `llama`.
    pub fn from_gguf(ct: &Content, file: &mut (impl std::io::Read + std::io::Seek)) -> Result<Self> {
        let md = &ct.metadata;
        let arch = md.get("general.architecture").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
        if arch != "llama" {
            return Err(Error::unavailable("native engine", format!("runs llama-architecture GGUFs; this one is '{arch}'")));
        }
        let u = |k: &str| -> Result<usize> {
            md.get(&format!("llama.{k}"))
                .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("missing llama.{k}")))
        };
        let f = |k: &str, d: f32| -> f32 { md.get(&format!("llama.{k}")).and_then(|v: &Value| v.to_f32().ok()).unwrap_or(d) };
        let (layers, dim, ffn, heads) = (u("block_count")?, u("embedding_length")?, u("feed_forward_length")?, u("attention.head_count")?);
        let kv_heads = u("attention.head_count_kv").unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || dim % heads != 0 || heads % kv_heads != 0 {
            return Err(bad(format!("inconsistent attention shape: {dim} wide, {heads} heads, {kv_heads} KV heads")));
        }
        let head_dim = dim / heads;
        let rope_dim = u("rope.dimension_count").unwrap_or(head_dim).min(head_dim);
        let embed = qmatrix(ct, file, "token_embd.weight")?;
        let cfg = LlamaConfig {
            layers,
            dim,
            ffn,
            heads,
            kv_heads,
            head_dim,
            rope_dim,
            rope_base: f("rope.freq_base", 10_000.0),
            eps: f("attention.layer_norm_rms_epsilon", 1e-5),
            vocab: embed.rows,
            context: u("context_length").unwrap_or(4096),
        };
        if embed.cols != dim {
            return Err(bad(format!("token_embd.weight is {} wide, the model {dim}", embed.cols)));
        }
        let mut ls = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            let (q, k, v) = (qmatrix(ct, file, &p("attn_q"))?, qmatrix(ct, file, &p("attn_k"))?, qmatrix(ct, file, &p("attn_v"))?);
            let kv = kv_heads * head_dim;
            if (q.rows, k.rows, v.rows, q.cols) != (dim, kv, kv, dim) {
                return Err(bad(format!("layer {i}: attention weights of unexpected shape")));
            }
            let (gate, up, down) = (qmatrix(ct, file, &p("ffn_gate"))?, qmatrix(ct, file, &p("ffn_up"))?, qmatrix(ct, file, &p("ffn_down"))?);
            if (gate.rows, up.rows, down.rows, down.cols) != (ffn, ffn, dim, ffn) {
                return Err(bad(format!("layer {i}: feed-forward weights of unexpected shape")));
            }
            let wo = qmatrix(ct, file, &p("attn_output"))?;
            ls.push(Layer {
                attn_norm: vector(ct, file, &p("attn_norm"), dim)?,
                qkv: stack(vec![q, k, v])?,
                wo,
                ffn_norm: vector(ct, file, &p("ffn_norm"), dim)?,
                gate_up: stack(vec![gate, up])?,
                down,
            });
        }
        let output = if ct.tensor_infos.contains_key("output.weight") { Some(qmatrix(ct, file, "output.weight")?) } else { None };
        let inv_freq = (0..rope_dim / 2).map(|j| 1.0 / cfg.rope_base.powf(2.0 * j as f32 / rope_dim as f32)).collect();
        Ok(Self { norm: vector(ct, file, "output_norm.weight", dim)?, cfg, embed, layers: ls, output, inv_freq })
    }

    /// An empty cache with room for `capacity` positions (it grows past them).
    pub fn cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.cfg.layers, self.cfg.kv_heads * self.cfg.head_dim, capacity)
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self.layers.iter().map(|l| l.qkv.bytes() + l.wo.bytes() + l.gate_up.bytes() + l.down.bytes() + 8 * self.cfg.dim).sum();
        l + self.embed.bytes() + self.output.as_ref().map_or(0, QMatrix::bytes)
    }

    /// Run `tokens` at the cache's next positions; returns the logits of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, team: &Team) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::internal("nothing to run"));
        }
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(Error::internal(format!("token id {t} is outside the vocabulary of {}", c.vocab)));
        }
        let (dim, hd, kvd) = (c.dim, c.head_dim, c.kv_heads * c.head_dim);
        let p0 = cache.len;
        let mut x = vec![0f32; n * dim];
        for (t, row) in tokens.iter().zip(x.chunks_mut(dim)) {
            self.embed.row_f32(*t as usize, row);
        }
        // Rotation per (position, pair).
        let half = c.rope_dim / 2;
        let (mut cos, mut sin) = (vec![0f32; n * half], vec![0f32; n * half]);
        for t in 0..n {
            for (j, f) in self.inv_freq.iter().enumerate() {
                let a = (p0 + t) as f32 * f;
                cos[t * half + j] = a.cos();
                sin[t * half + j] = a.sin();
            }
        }
        let rope = |v: &mut [f32], t: usize| {
            for (j, pair) in v[..c.rope_dim].chunks_exact_mut(2).enumerate() {
                let (co, si) = (cos[t * half + j], sin[t * half + j]);
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * co - b * si;
                pair[1] = a * si + b * co;
            }
        };
        let mut h = vec![0f32; n * dim];
        let qkv_w = dim + 2 * kvd;
        let mut qkv = vec![0f32; n * qkv_w];
        let mut att = vec![0f32; n * dim];
        let mut o = vec![0f32; n * dim];
        let mut gu = vec![0f32; n * 2 * c.ffn];
        let mut act = vec![0f32; n * c.ffn];
        let mut down = vec![0f32; n * dim];
        let scale = 1.0 / (hd as f32).sqrt();
        let heads = Heads { heads: c.heads, kv_heads: c.kv_heads, head_dim: hd };
        cache.reserve(p0 + n);
        for (li, l) in self.layers.iter().enumerate() {
            rms_norm(&x, &l.attn_norm, c.eps, &mut h, dim);
            l.qkv.matmul(&QActs::quantize(&h, dim), &mut qkv, team);
            for t in 0..n {
                let row = &mut qkv[t * qkv_w..(t + 1) * qkv_w];
                for hh in 0..c.heads {
                    rope(&mut row[hh * hd..(hh + 1) * hd], t);
                    row[hh * hd..(hh + 1) * hd].iter_mut().for_each(|x| *x *= scale);
                }
                for hh in 0..c.kv_heads {
                    rope(&mut row[dim + hh * hd..dim + (hh + 1) * hd], t);
                }
                let (k, v) = row[dim..].split_at(kvd);
                cache.put(li, p0 + t, k, v);
            }
            attention(&heads, &qkv, qkv_w, cache, li, p0, n, &mut att, team);
            l.wo.matmul(&QActs::quantize(&att, dim), &mut o, team);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            rms_norm(&x, &l.ffn_norm, c.eps, &mut h, dim);
            l.gate_up.matmul(&QActs::quantize(&h, dim), &mut gu, team);
            for t in 0..n {
                let (g, u) = gu[t * 2 * c.ffn..(t + 1) * 2 * c.ffn].split_at(c.ffn);
                for ((a, &g), &u) in act[t * c.ffn..(t + 1) * c.ffn].iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + exp(-g)) * u;
                }
            }
            l.down.matmul(&QActs::quantize(&act, c.ffn), &mut down, team);
            x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }
        cache.len += n;
        let last = &x[(n - 1) * dim..];
        let mut hl = vec![0f32; dim];
        rms_norm(last, &self.norm, c.eps, &mut hl, dim);
        let mut logits = vec![0f32; c.vocab];
        self.output.as_ref().unwrap_or(&self.embed).matmul(&QActs::quantize(&hl, dim), &mut logits, team);
        Ok(logits)
    }
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], dim: usize) {
    for (xr, or) in x.chunks(dim).zip(out.chunks_mut(dim)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * inv * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};

    fn rand(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    /// A tiny random llama (2 layers, 64 wide, GQA 4:2, 96 tokens) as a GGUF: Q4_1
    /// blocks, a Q8_0 embedding, f32 norms.
    /// With `exact`, every tensor is written as the `f32` values its blocks decode to
    /// (the same model, evaluated without quantised arithmetic by candle).
    fn tiny_gguf(path: &std::path::Path, exact: bool) {
        let (dim, ffn, heads, kv, layers, vocab) = (64usize, 128usize, 4usize, 2usize, 2usize, 96usize);
        let hd = dim / heads;
        let q = |rows: usize, cols: usize, seed: u64, dt: GgmlDType| {
            let t = Tensor::from_vec(rand(rows * cols, seed, 0.3), (rows, cols), &Device::Cpu).unwrap();
            QTensor::quantize(&t, dt).unwrap()
        };
        let norm = |seed: u64| {
            let v: Vec<f32> = rand(dim, seed, 0.2).into_iter().map(|x| 1.0 + x).collect();
            QTensor::quantize(&Tensor::from_vec(v, dim, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
        };
        let mut tensors: Vec<(String, QTensor)> = vec![("token_embd.weight".into(), q(vocab, dim, 1, GgmlDType::Q8_0)), ("output_norm.weight".into(), norm(2))];
        for l in 0..layers as u64 {
            let p = |n: &str| format!("blk.{l}.{n}.weight");
            let s = 100 * (l + 1);
            tensors.push((p("attn_norm"), norm(s)));
            tensors.push((p("ffn_norm"), norm(s + 1)));
            tensors.push((p("attn_q"), q(dim, dim, s + 2, GgmlDType::Q4_1)));
            tensors.push((p("attn_k"), q(kv * hd, dim, s + 3, GgmlDType::Q4_1)));
            tensors.push((p("attn_v"), q(kv * hd, dim, s + 4, GgmlDType::Q4_1)));
            tensors.push((p("attn_output"), q(dim, dim, s + 5, GgmlDType::Q4_1)));
            tensors.push((p("ffn_gate"), q(ffn, dim, s + 6, GgmlDType::Q4_1)));
            tensors.push((p("ffn_up"), q(ffn, dim, s + 7, GgmlDType::Q4_1)));
            // A type we re-quantise at load.
            tensors.push((p("ffn_down"), q(dim, ffn, s + 8, if l == 0 { GgmlDType::Q4_1 } else { GgmlDType::Q5_0 })));
        }
        use gguf_file::Value as V;
        let md: Vec<(String, V)> = vec![
            ("general.architecture".into(), V::String("llama".into())),
            ("llama.block_count".into(), V::U32(layers as u32)),
            ("llama.embedding_length".into(), V::U32(dim as u32)),
            ("llama.feed_forward_length".into(), V::U32(ffn as u32)),
            ("llama.attention.head_count".into(), V::U32(heads as u32)),
            ("llama.attention.head_count_kv".into(), V::U32(kv as u32)),
            ("llama.rope.dimension_count".into(), V::U32(hd as u32)),
            ("llama.rope.freq_base".into(), V::F32(10_000.0)),
            ("llama.attention.layer_norm_rms_epsilon".into(), V::F32(1e-5)),
            ("llama.context_length".into(), V::U32(256)),
        ];
        let mdr: Vec<(&str, &V)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        if exact {
            for (_, t) in tensors.iter_mut() {
                *t = QTensor::quantize(&t.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
            }
        }
        let tr: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut f = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &mdr, &tr).unwrap();
    }

    /// Our forward pass computes the model: against candle evaluating the same decoded
    /// weights in exact `f32`, our logits are as close as candle-transformers' own
    /// quantised llama on the quantised file (both quantise activations per block), for a
    /// prompt at once and token by token after it.
    #[test]
    fn forward_matches_candle_quantized_llama() {
        let dir = tempfile::tempdir().unwrap();
        let (path, exact) = (dir.path().join("tiny.gguf"), dir.path().join("tiny-f32.gguf"));
        tiny_gguf(&path, false);
        tiny_gguf(&exact, true);
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = Content::read(&mut f).unwrap();
        let ours = Llama::from_gguf(&ct, &mut f).unwrap();
        assert_eq!((ours.cfg.layers, ours.cfg.heads, ours.cfg.kv_heads, ours.cfg.vocab), (2, 4, 2, 96));
        let candle = |p: &std::path::Path| {
            let mut f = std::fs::File::open(p).unwrap();
            let ct = Content::read(&mut f).unwrap();
            candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap()
        };
        let (mut theirs, mut truth) = (candle(&path), candle(&exact));
        let prompt: Vec<u32> = vec![5, 17, 3, 88, 42, 9, 61];
        let run = |m: &mut candle_transformers::models::quantized_llama::ModelWeights, ids: &[u32], pos: usize| -> Vec<f32> {
            let t = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            m.forward(&t, pos).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        let mut cache = ours.cache(16);
        let team = Team::new(2);
        let mut got = vec![ours.forward(&prompt, &mut cache, &team).unwrap()];
        let mut want = vec![run(&mut theirs, &prompt, 0)];
        let mut exact_l = vec![run(&mut truth, &prompt, 0)];
        for (i, t) in [7u32, 70, 1].into_iter().enumerate() {
            got.push(ours.forward(&[t], &mut cache, &team).unwrap());
            want.push(run(&mut theirs, &[t], prompt.len() + i));
            exact_l.push(run(&mut truth, &[t], prompt.len() + i));
        }
        assert_eq!(cache.len, prompt.len() + 3);
        let maxdiff = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        for step in 0..got.len() {
            assert_eq!(got[step].len(), 96);
            let (ours_err, candle_err) = (maxdiff(&got[step], &exact_l[step]), maxdiff(&want[step], &exact_l[step]));
            let scale = exact_l[step].iter().fold(0f32, |a, x| a.max(x.abs()));
            assert!(ours_err <= 1.5 * candle_err + 0.01 * scale, "step {step}: ours off by {ours_err}, candle's quantised llama by {candle_err} (scale {scale})");
            assert!(ours_err < 0.05 * scale, "step {step}: {ours_err} of {scale}");
        }
        // Prefilling the whole sequence at once gives the last step's logits too.
        let all: Vec<u32> = prompt.iter().copied().chain([7, 70, 1]).collect();
        let once = ours.forward(&all, &mut ours.cache(16), &Team::new(1)).unwrap();
        let diff = once.iter().zip(&got[3]).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(diff < 1e-3, "batched and incremental runs differ by {diff}");
        assert!(ours.forward(&[500], &mut ours.cache(4), &team).is_err(), "an id outside the vocabulary is an error");
    }
}
