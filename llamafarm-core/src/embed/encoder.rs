//! A BERT encoder for inference, written for CPU throughput.
//!
//! It computes what `candle_transformers::models::bert::BertModel` computes (a test
//! checks the two agree within 1e-5 on a random model and the golden values hold on
//! the real one), with three differences in how:
//! - **No padding.** The sequences of a batch are packed row after row; attention runs
//!   per sequence over its own length, so no row or key of padding is ever computed
//!   (a masked key contributes exactly zero in the padded form, so results agree).
//! - **Own GEMM.** Linear layers run on [`super::gemm`] against weights transposed
//!   and packed once at load (or on [`super::bgemm`] in bf16, [`super::qgemm`] in int8). Attention runs on it
//!   too: per head, Q (pre-scaled) and the probabilities are read straight from their
//!   rows and only the small `len x d` Kᵀ and V are packed, so nothing of size `len²`
//!   is copied (a general sgemm packs the probabilities on every call). Bias,
//!   activation, residual and layer norm are fused row loops.
//! - **Vectorisable math.** `exp` (softmax) and `erf` (GELU) are polynomial forms
//!   that the compiler vectorises (relative error about 2e-7), instead of libm calls
//!   ([`llamafarm_kernels::math`]).

use super::bgemm::{BPackedB, BRows};
use super::gemm::PackedB;
use super::qgemm::{QPackedB, QRows};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use llamafarm_kernels::math::{add_rows, layer_norm, softmax, softmax_unnormalised};
pub(crate) use llamafarm_kernels::math::{erf, exp, gelu_erf, gelu_tanh};
use llamafarm_kernels::par::Grid;
use std::cell::RefCell;
use std::collections::HashMap;

/// Rows per thread in one block of the feed-forward half (see `BertEncoder::forward`).
const FFN_ROWS: usize = 128;

/// Numeric precision of the encoder's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// fp32 weights and activations (the reference numerics).
    #[default]
    F32,
    /// Weights and activations rounded to bfloat16 for each product, fp32 sums
    /// (PyTorch's `autocast(bfloat16)` numerics; `embed::bgemm`). Twice fp32's
    /// multiply-adds per instruction on CPUs with AVX-512 BF16; a portable loop
    /// elsewhere (slower than fp32, so [`Precision::native`] picks it only where the
    /// instruction exists); on the AMX tile unit where the CPU has it
    /// ([`super::has_amx`]), for the products and attention alike. Layer norms and
    /// activations stay fp32.
    Bf16,
    /// Weights quantised to int8 per output column at load, activations to u8 per
    /// row at each product, i32 accumulation (`embed::qgemm`; both 7-bit on the AVX2
    /// kernel). Attention's scores `Q Kᵀ` run on the same kernels (Q and K quantised per
    /// call; [`super::EmbedOptions::fp32_attention`] keeps them fp32); the probabilities times V, the
    /// softmax, layer norms and activations stay fp32.
    Int8,
}

impl Precision {
    /// The default for a model id without a precision suffix: [`Precision::Bf16`]
    /// where the CPU has AVX-512 BF16 ([`super::has_bf16`]; [`super::KernelOptions::no_bf16`]
    /// turns it off; with AMX it runs on the tiles), else [`Precision::Int8`] where an int8
    /// kernel runs faster than fp32 (AVX-512 VNNI, AVX-VNNI or AVX2: [`super::int8_kernel`];
    /// an `int8_kernel` of `Portable` in [`super::KernelOptions`] turns it off),
    /// else [`Precision::F32`].
    pub fn native() -> Self {
        if super::bgemm::has_bf16() {
            Precision::Bf16
        } else if super::qgemm::int8_kernel() != super::qgemm::Int8Kernel::Portable {
            Precision::Int8
        } else {
            Precision::F32
        }
    }

    /// `fp32`, `bf16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

/// A linear layer's weight, transposed to `(in, out)` and packed.
enum Lin {
    F32(PackedB),
    Bf16(BPackedB),
    I8(QPackedB),
}

impl Lin {
    fn new(wt: &[f32], k: usize, n: usize, precision: Precision) -> Self {
        match precision {
            Precision::F32 => Lin::F32(PackedB::pack(wt, k, n)),
            Precision::Bf16 => Lin::Bf16(BPackedB::pack(wt, k, n)),
            Precision::Int8 => Lin::I8(QPackedB::quantize(wt, k, n)),
        }
    }

    fn shape(&self) -> (usize, usize) {
        match self {
            Lin::F32(p) => (p.k(), p.n()),
            Lin::Bf16(p) => (p.k(), p.n()),
            Lin::I8(q) => (q.k(), q.n()),
        }
    }
}

/// Weights are stored transposed, `(in, out)`, and packed for [`super::gemm`]
/// (or [`super::qgemm`]).
struct Layer {
    /// Q, K and V weights side by side: `(H, 3H)`.
    wqkv: Lin,
    bqkv: Vec<f32>,
    wo: Lin,
    bo: Vec<f32>,
    ln1_w: Vec<f32>,
    ln1_b: Vec<f32>,
    wi: Lin,
    bi: Vec<f32>,
    wo2: Lin,
    bo2: Vec<f32>,
    ln2_w: Vec<f32>,
    ln2_b: Vec<f32>,
}

/// BERT weights as plain `f32` arrays (see the module docs).
pub struct BertEncoder {
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    act: HiddenAct,
    vocab: usize,
    max_pos: usize,
    word: Vec<f32>,
    pos: Vec<f32>,
    /// Row 0 of the token-type table (sentence-transformers use type 0 only).
    typ0: Vec<f32>,
    ln_w: Vec<f32>,
    ln_b: Vec<f32>,
    layers: Vec<Layer>,
    precision: Precision,
    /// The attention's arithmetic (follows `precision`; see [`AttnMath::for_precision`]).
    attention: AttnMath,
}

fn ce(e: candle_core::Error) -> Error {
    Error::Internal(format!("candle: {e}"))
}

impl BertEncoder {
    /// Build from named tensors (a `model.safetensors` of a BERT sentence-transformer;
    /// a `bert.` prefix is accepted).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, cfg: &BertConfig) -> Result<Self> {
        Self::from_tensors_with(tensors, cfg, Precision::F32)
    }

    /// [`Self::from_tensors`] with the linear layers at `precision`.
    pub fn from_tensors_with(mut tensors: HashMap<String, Tensor>, cfg: &BertConfig, precision: Precision) -> Result<Self> {
        if !tensors.contains_key("embeddings.word_embeddings.weight") && tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            tensors = tensors.into_iter().map(|(k, v)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), v)).collect();
        }
        if cfg.hidden_size == 0 || cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::internal("BERT config: hidden_size must be a positive multiple of num_attention_heads"));
        }
        let t = |w: Vec<f32>, n: usize, k: usize| -> Lin {
            let mut out = vec![0f32; w.len()];
            for j in 0..n {
                for kk in 0..k {
                    out[kk * n + j] = w[j * k + kk];
                }
            }
            Lin::new(&out, k, n, precision)
        };
        let mut take = |name: &str, len: usize| -> Result<Vec<f32>> {
            let t = tensors.remove(name).ok_or_else(|| Error::internal(format!("model weights lack '{name}' (not a BERT sentence-transformer?)")))?;
            let v: Vec<f32> = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).map_err(ce)?;
            if v.len() != len {
                return Err(Error::internal(format!("model weight '{name}' has {} values, the config implies {len}", v.len())));
            }
            Ok(v)
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let e = "embeddings";
        let word = take(&format!("{e}.word_embeddings.weight"), cfg.vocab_size * h)?;
        let pos = take(&format!("{e}.position_embeddings.weight"), cfg.max_position_embeddings * h)?;
        let typ = take(&format!("{e}.token_type_embeddings.weight"), cfg.type_vocab_size.max(1) * h)?;
        let ln_w = take(&format!("{e}.LayerNorm.weight"), h)?;
        let ln_b = take(&format!("{e}.LayerNorm.bias"), h)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let mut wqkv = take(&format!("{p}.attention.self.query.weight"), h * h)?;
            wqkv.extend(take(&format!("{p}.attention.self.key.weight"), h * h)?);
            wqkv.extend(take(&format!("{p}.attention.self.value.weight"), h * h)?);
            let mut bqkv = take(&format!("{p}.attention.self.query.bias"), h)?;
            bqkv.extend(take(&format!("{p}.attention.self.key.bias"), h)?);
            bqkv.extend(take(&format!("{p}.attention.self.value.bias"), h)?);
            layers.push(Layer {
                wqkv: t(wqkv, 3 * h, h),
                bqkv,
                wo: t(take(&format!("{p}.attention.output.dense.weight"), h * h)?, h, h),
                bo: take(&format!("{p}.attention.output.dense.bias"), h)?,
                ln1_w: take(&format!("{p}.attention.output.LayerNorm.weight"), h)?,
                ln1_b: take(&format!("{p}.attention.output.LayerNorm.bias"), h)?,
                wi: t(take(&format!("{p}.intermediate.dense.weight"), i * h)?, i, h),
                bi: take(&format!("{p}.intermediate.dense.bias"), i)?,
                wo2: t(take(&format!("{p}.output.dense.weight"), h * i)?, h, i),
                bo2: take(&format!("{p}.output.dense.bias"), h)?,
                ln2_w: take(&format!("{p}.output.LayerNorm.weight"), h)?,
                ln2_b: take(&format!("{p}.output.LayerNorm.bias"), h)?,
            });
        }
        Ok(Self {
            hidden: h,
            heads: cfg.num_attention_heads,
            inter: i,
            eps: cfg.layer_norm_eps as f32,
            act: cfg.hidden_act,
            vocab: cfg.vocab_size,
            max_pos: cfg.max_position_embeddings,
            word,
            pos,
            typ0: typ[..h].to_vec(),
            ln_w,
            ln_b,
            layers,
            precision,
            attention: AttnMath::for_precision(precision),
        })
    }

    /// Load `model.safetensors` (any float dtype) for `cfg`.
    pub fn load(path: &std::path::Path, cfg: &BertConfig) -> Result<Self> {
        Self::load_with(path, cfg, Precision::F32)
    }

    /// [`Self::load`] with the linear layers at `precision`.
    pub fn load_with(path: &std::path::Path, cfg: &BertConfig, precision: Precision) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(ce)?;
        Self::from_tensors_with(tensors, cfg, precision)
    }

    /// The linear layers' precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Last hidden states of `seqs` packed row after row: `(sum of lengths, hidden)`.
    /// `threads > 1` splits the products and the attention heads over the rayon pool.
    pub fn forward(&self, seqs: &[Vec<u32>], threads: usize) -> Result<Vec<f32>> {
        let h = self.hidden;
        let rows: usize = seqs.iter().map(Vec::len).sum();
        let par = threads;
        // Embeddings + layer norm.
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let mut x = embed_tokens(&refs, &self.word, &self.pos, &self.typ0, self.vocab, self.max_pos)?;
        for row in x.chunks_exact_mut(h) {
            layer_norm(row, &self.ln_w, &self.ln_b, self.eps);
        }
        let mut qkv = vec![0f32; rows * 3 * h];
        let mut ctx = vec![0f32; rows * h];
        let mut y = vec![0f32; rows * h];
        // Rows per feed-forward block: the int8 product's row block per thread.
        let ffn_rows = FFN_ROWS * par.max(1);
        let mut mid = vec![0f32; rows.min(ffn_rows) * self.inter];
        let starts: Vec<usize> = seqs
            .iter()
            .scan(0, |acc, s| {
                let st = *acc;
                *acc += s.len();
                Some(st)
            })
            .collect();
        for l in &self.layers {
            linear(&mut qkv, &x, rows, h, &l.wqkv, 3 * h, par);
            // The QKV bias is added as each head's rows are gathered.
            self.attention(&qkv, &l.bqkv, &mut ctx, seqs, &starts, threads);
            linear(&mut y, &ctx, rows, h, &l.wo, h, par);
            for (yr, xr) in y.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
                // Zipped, not indexed: no bounds checks, so the loop vectorises.
                for ((v, b), r) in yr.iter_mut().zip(&l.bo).zip(xr) {
                    *v += b + r;
                }
                layer_norm(yr, &l.ln1_w, &l.ln1_b, self.eps);
            }
            // The feed-forward half in blocks of rows: one block's `inter`-wide
            // intermediate stays in cache between its product, the bias + GELU and the
            // next product (the whole batch's is megabytes, so every pass over it went
            // to memory). Rows are independent, so the results are the same.
            for r0 in (0..rows).step_by(ffn_rows) {
                let n = ffn_rows.min(rows - r0);
                let (mid, yb) = (&mut mid[..n * self.inter], &y[r0 * h..(r0 + n) * h]);
                linear(mid, yb, n, h, &l.wi, self.inter, par);
                match self.act {
                    HiddenAct::Gelu => add_rows(mid, &l.bi, gelu_erf),
                    HiddenAct::GeluApproximate => add_rows(mid, &l.bi, gelu_tanh),
                    HiddenAct::Relu => add_rows(mid, &l.bi, |v: f32| v.max(0.0)),
                }
                let xb = &mut x[r0 * h..(r0 + n) * h];
                linear(xb, mid, n, self.inter, &l.wo2, h, par);
                for (xr, yr) in xb.chunks_exact_mut(h).zip(yb.chunks_exact(h)) {
                    for ((v, b), r) in xr.iter_mut().zip(&l.bo2).zip(yr) {
                        *v += b + r;
                    }
                    layer_norm(xr, &l.ln2_w, &l.ln2_b, self.eps);
                }
            }
        }
        Ok(x)
    }

    /// Self-attention of every sequence and head, reading Q, K, V inside `qkv` (before
    /// their `bias`, which is added as they are read).
    fn attention(&self, qkv: &[f32], bias: &[f32], ctx: &mut [f32], seqs: &[Vec<u32>], starts: &[usize], threads: usize) {
        let (h, nh) = (self.hidden, self.heads);
        // Sequence `s` is rows `starts[s]..` of `ctx`; head `head` its columns `head * d..`.
        let bounds: Vec<usize> = starts.iter().copied().chain([starts.last().map_or(0, |&l| l + seqs.last().map_or(0, Vec::len))]).collect();
        let out = Grid::new(ctx, h, &bounds, h / nh);
        let one = |(s, head): (usize, usize)| {
            let len = seqs[s].len();
            if len == 0 {
                return;
            }
            let r0 = starts[s];
            let rows = &qkv[r0 * 3 * h..(r0 + len) * 3 * h];
            ATT.with(|buf| {
                let mut buf = buf.borrow_mut();
                let o = attend_infer(&mut buf, rows, Some(bias), h, nh, head, len, self.attention);
                let mut cell = out.cell(s, head);
                for (i, orow) in o.chunks_exact(h / nh).enumerate() {
                    copy_row(cell.row_mut(i), orow);
                }
            });
        };
        let jobs: Vec<(usize, usize)> = (0..seqs.len()).flat_map(|s| (0..nh).map(move |hd| (s, hd))).collect();
        if threads > 1 {
            use rayon::prelude::*;
            jobs.into_par_iter().for_each(one);
        } else {
            jobs.into_iter().for_each(one);
        }
    }
}

thread_local! {
    static ATT: RefCell<AttnBuf> = RefCell::new(AttnBuf::default());
}

/// Per-thread scratch of [`attend`].
#[derive(Default)]
pub(crate) struct AttnBuf {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    pub(crate) p: Vec<f32>,
    o: Vec<f32>,
    /// `1 / Σ` of each unnormalised probability row ([`attend_infer`]).
    inv: Vec<f32>,
    /// Scratch of the bf16 route ([`attend_infer`]).
    bf16: super::bgemm::AttnScratch,
    /// Scratch of the int8 route ([`attend_infer`]).
    int8: Int8Attn,
}

/// The quantised operands of [`AttnMath::Int8`], reused across calls.
struct Int8Attn {
    q: QRows,
    keys: QPackedB,
}

impl Default for Int8Attn {
    fn default() -> Self {
        Int8Attn { q: QRows::default(), keys: QPackedB::empty(super::qgemm::int8_kernel()) }
    }
}

/// One head of self-attention over one sequence: `softmax(Q Kᵀ / √d) V`, with Q, K
/// and V read from `rows` (`len` rows of the fused `3h`-wide QKV). Both products run
/// on [`super::gemm`]: Q (scaled) and P broadcast from their rows, Kᵀ and V packed
/// (small: `len x d`), so nothing of size `len²` is ever packed. Returns the `(len,
/// d)` output; the probabilities stay in `buf.p`.
pub(crate) fn attend<'b>(buf: &'b mut AttnBuf, rows: &[f32], h: usize, nh: usize, head: usize, len: usize) -> &'b [f32] {
    let dh = buf.gather(rows, None, h, nh, head, len);
    let kt = PackedB::pack_transposed(&buf.k, len, dh);
    buf.p.resize(len * len, 0.0);
    super::gemm::gemm(len, &buf.q, &kt, &mut buf.p);
    for row in buf.p.chunks_exact_mut(len) {
        softmax(row);
    }
    let vb = PackedB::pack(&buf.v, len, dh);
    buf.o.resize(len * dh, 0.0);
    super::gemm::gemm(len, &buf.p, &vb, &mut buf.o);
    &buf.o
}

/// How [`attend_infer`] computes a head's two products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttnMath {
    /// fp32 on [`super::gemm`].
    F32,
    /// bf16 on [`super::bgemm::attention`] (the AMX tiles where the CPU has them).
    Bf16,
    /// The scores `Q Kᵀ` in int8 on [`super::qgemm`] (Q per row, u8 with a zero point; Kᵀ
    /// per key, symmetric), the probabilities times V in fp32. Rounding the scores errs
    /// by a small factor on each probability; rounding the probabilities would not: at
    /// `1/127` steps of the row's largest, the many small ones of a long sequence (a head
    /// that attends mostly to `[SEP]` gives the other 255 keys well under a step each, yet
    /// a tenth of the mass together) would all round to zero or double.
    Int8,
}

impl AttnMath {
    /// The attention of an encoder whose linear layers run in `precision`: the same
    /// arithmetic, except that [`super::EmbedOptions::fp32_attention`] keeps an int8 model's
    /// attention fp32.
    pub(crate) fn for_precision(precision: Precision) -> Self {
        match precision {
            Precision::F32 => AttnMath::F32,
            Precision::Bf16 => AttnMath::Bf16,
            Precision::Int8 if super::options().fp32_attention => AttnMath::F32,
            Precision::Int8 => AttnMath::Int8,
        }
    }
}

/// [`attend`] for inference: the softmax's normalisation is applied to the `(len, d)`
/// output rather than to the `len x len` probabilities (one pass fewer over them;
/// `buf.p` is left unnormalised), in `math`'s arithmetic ([`AttnMath`]; bf16 keeps eight
/// query rows at a time in L1 and does not use `buf.p`). `bias`, the QKV bias, is added
/// to `rows` as they are read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_infer<'b>(buf: &'b mut AttnBuf, rows: &[f32], bias: Option<&[f32]>, h: usize, nh: usize, head: usize, len: usize, math: AttnMath) -> &'b [f32] {
    let dh = buf.gather(rows, bias, h, nh, head, len);
    buf.o.resize(len * dh, 0.0);
    match math {
        AttnMath::Bf16 => {
            super::bgemm::attention(&buf.q, &buf.k, &buf.v, len, dh, &mut buf.o, &mut buf.bf16, softmax_unnormalised);
            return &buf.o;
        }
        AttnMath::Int8 => {
            let i = &mut buf.int8;
            i.keys.pack_keys(&buf.k, len, dh);
            i.q.quantize_for(&buf.q, len, dh, &i.keys);
            buf.p.resize(len * len, 0.0);
            super::qgemm::qgemm(len, &i.q, &i.keys, &mut buf.p);
        }
        AttnMath::F32 => {
            buf.p.resize(len * len, 0.0);
            super::gemm::gemm(len, &buf.q, &PackedB::pack_transposed(&buf.k, len, dh), &mut buf.p);
        }
    }
    buf.inv.clear();
    for row in buf.p.chunks_exact_mut(len) {
        buf.inv.push(softmax_unnormalised(row));
    }
    super::gemm::gemm(len, &buf.p, &PackedB::pack(&buf.v, len, dh), &mut buf.o);
    for (orow, inv) in buf.o.chunks_exact_mut(dh).zip(&buf.inv) {
        orow.iter_mut().for_each(|v| *v *= inv);
    }
    &buf.o
}

impl AttnBuf {
    /// Copy one head's Q (scaled by `1/√d`), K and V out of `len` fused QKV rows, adding
    /// the QKV `bias` (`3h`) on the way when given (one pass fewer over the fused rows);
    /// returns `d`.
    fn gather(&mut self, rows: &[f32], bias: Option<&[f32]>, h: usize, nh: usize, head: usize, len: usize) -> usize {
        let dh = h / nh;
        let scale = 1.0 / (dh as f32).sqrt();
        for b in [&mut self.q, &mut self.k, &mut self.v] {
            b.clear();
            b.resize(len * dh, 0.0);
        }
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = vec![0f32; 3 * h];
                &zeros
            }
        };
        let part = |i: usize| i * h + head * dh..i * h + (head + 1) * dh;
        let (bq, bk, bv) = (&bias[part(0)], &bias[part(1)], &bias[part(2)]);
        let rows = rows.chunks_exact(3 * h).take(len);
        let dst = self.q.chunks_exact_mut(dh.max(1)).zip(self.k.chunks_exact_mut(dh.max(1))).zip(self.v.chunks_exact_mut(dh.max(1)));
        for (r, ((q, k), v)) in rows.zip(dst) {
            for ((d, x), b) in q.iter_mut().zip(&r[part(0)]).zip(bq) {
                *d = (x + b) * scale;
            }
            for ((d, x), b) in k.iter_mut().zip(&r[part(1)]).zip(bk) {
                *d = x + b;
            }
            for ((d, x), b) in v.iter_mut().zip(&r[part(2)]).zip(bv) {
                *d = x + b;
            }
        }
        dh
    }
}

/// `dst = src` (equal lengths). Head rows are short (32 floats for MiniLM) and a
/// `memcpy` call per row cost more than the copy, so the common widths are
/// fixed-size moves.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) -> bool {
        match (<&mut [f32; N]>::try_from(dst), <&[f32; N]>::try_from(src)) {
            (Ok(d), Ok(s)) => {
                *d = *s;
                true
            }
            _ => false,
        }
    }
    if !(fixed::<32>(dst, src) || fixed::<64>(dst, src)) {
        dst.copy_from_slice(src);
    }
}

/// `word[t] + pos[p] + typ0` for every token of `seqs`, packed row after row (the
/// embedding sum before its layer norm); token ids and lengths are checked.
pub(crate) fn embed_tokens(seqs: &[&[u32]], word: &[f32], pos: &[f32], typ0: &[f32], vocab: usize, max_pos: usize) -> Result<Vec<f32>> {
    let h = typ0.len();
    let rows: usize = seqs.iter().map(|s| s.len()).sum();
    let mut x = vec![0f32; rows * h];
    let mut rows_out = x.chunks_exact_mut(h.max(1));
    for s in seqs {
        if s.len() > max_pos {
            return Err(Error::internal(format!("sequence of {} tokens exceeds the model's {max_pos} positions", s.len())));
        }
        for (p, &t) in s.iter().enumerate() {
            let t = t as usize;
            if t >= vocab {
                return Err(Error::internal(format!("token id {t} is outside the vocabulary ({vocab})")));
            }
            let Some(row) = rows_out.next() else { break };
            let (w, pe) = (&word[t * h..(t + 1) * h], &pos[p * h..(p + 1) * h]);
            for j in 0..h {
                row[j] = w[j] + pe[j] + typ0[j];
            }
        }
    }
    Ok(x)
}

/// `dst (rows, n) = x (rows, k) · Wt`, with `Wt` the `(k, n)` transpose of PyTorch's
/// `(n, k)` weight, transposed and packed once at load ([`super::gemm`]);
/// `threads > 1` splits the rows over the rayon pool.
fn linear(dst: &mut [f32], x: &[f32], rows: usize, k: usize, w: &Lin, n: usize, threads: usize) {
    assert!(dst.len() >= rows * n && x.len() >= rows * k && w.shape() == (k, n));
    if rows == 0 {
        return;
    }
    thread_local! {
        static QA: RefCell<QRows> = RefCell::new(QRows::default());
        static BA: RefCell<BRows> = RefCell::new(BRows::default());
    }
    let one = |dst: &mut [f32], x: &[f32]| {
        let m = x.len() / k;
        match w {
            Lin::F32(p) => super::gemm::gemm(m, x, p, dst),
            Lin::Bf16(p) => BA.with(|ba| super::bgemm::bgemm(m, x, p, dst, &mut ba.borrow_mut())),
            Lin::I8(q) => QA.with(|qa| {
                let mut qa = qa.borrow_mut();
                qa.quantize_for(x, m, k, q);
                super::qgemm::qgemm(m, &qa, q, dst);
            }),
        }
    };
    if threads > 1 && rows >= 32 {
        use rayon::prelude::*;
        // AMX computes whole blocks of 32 rows: split there so no share leaves a tail.
        let align = if matches!(w, Lin::Bf16(_)) && super::has_amx() { 32 } else { 1 };
        let per = rows.div_ceil(threads).next_multiple_of(align);
        dst[..rows * n].par_chunks_mut(per * n).zip(x[..rows * k].par_chunks(per * k)).for_each(|(d, xs)| one(d, xs));
    } else {
        one(&mut dst[..rows * n], &x[..rows * k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::bert::BertModel;

    #[test]
    fn inference_attention_matches_the_reference() {
        let (h, nh) = (64, 2);
        let mut s = 3u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for len in [1, 7, 40, 129] {
            let rows: Vec<f32> = (0..len * 3 * h).map(|_| rnd() * 4.0).collect();
            for head in 0..nh {
                let want = attend(&mut AttnBuf::default(), &rows, h, nh, head, len).to_vec();
                let mut buf = AttnBuf::default();
                let f = attend_infer(&mut buf, &rows, None, h, nh, head, len, AttnMath::F32).to_vec();
                let b = attend_infer(&mut buf, &rows, None, h, nh, head, len, AttnMath::Bf16).to_vec();
                let q = attend_infer(&mut buf, &rows, None, h, nh, head, len, AttnMath::Int8).to_vec();
                for (((w, f), b), q) in want.iter().zip(&f).zip(&b).zip(&q) {
                    assert!((w - f).abs() < 1e-5, "fp32 len {len}: {f} vs {w}");
                    // bf16 rounds Q, K, P and V: a few parts in a thousand of the values' scale (2).
                    assert!((w - b).abs() < 0.03, "bf16 len {len}: {b} vs {w}");
                    // int8 scores (Q at 7 bits, K at 6 on the AVX2 kernel; P and V stay fp32):
                    // about 1 % of the values' scale.
                    assert!((w - q).abs() < 0.06, "int8 len {len}: {q} vs {w}");
                }
                let e = (q.iter().zip(&want).map(|(q, w)| (q - w).powi(2)).sum::<f32>() / want.iter().map(|w| w * w).sum::<f32>()).sqrt();
                assert!(e < 0.02, "int8 len {len}: relative error {e}");
            }
            // A QKV bias given to the gather equals the bias added to the rows first.
            let bias: Vec<f32> = (0..3 * h).map(|_| rnd()).collect();
            let biased: Vec<f32> = rows.chunks_exact(3 * h).flat_map(|r| r.iter().zip(&bias).map(|(x, b)| x + b)).collect();
            for head in 0..nh {
                let want = attend(&mut AttnBuf::default(), &biased, h, nh, head, len).to_vec();
                let got = attend_infer(&mut AttnBuf::default(), &rows, Some(&bias), h, nh, head, len, AttnMath::F32).to_vec();
                for (w, g) in want.iter().zip(&got) {
                    assert!((w - g).abs() < 1e-5, "biased len {len}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn matches_candle_bert_on_a_random_model() {
        let cfg = BertConfig {
            vocab_size: 50,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            max_position_embeddings: 64,
            type_vocab_size: 2,
            ..Default::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // Non-trivial layer norms and biases: perturb everything after init.
        let bert = BertModel::load(vb, &cfg).unwrap();
        for (_, v) in varmap.data().lock().unwrap().iter() {
            let r = Tensor::randn(0f32, 0.2, v.shape(), &Device::Cpu).unwrap();
            v.set(&(v.as_tensor() + r).unwrap()).unwrap();
        }
        let tensors: HashMap<String, Tensor> = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let enc = BertEncoder::from_tensors(tensors, &cfg).unwrap();
        let seqs = vec![vec![1u32, 5, 7, 9, 2], vec![1, 3, 2], vec![1, 4, 4, 4, 4, 4, 4, 2]];
        for threads in [1, 2] {
            let ours = enc.forward(&seqs, threads).unwrap();
            let mut row = 0;
            for s in &seqs {
                // candle on the padded batch of this one sequence plus a longer one.
                let len = 8;
                let mut ids = s.clone();
                ids.resize(len, 0);
                let mask: Vec<u32> = (0..len).map(|i| u32::from(i < s.len())).collect();
                let ids_t = Tensor::from_vec(ids, (1, len), &Device::Cpu).unwrap();
                let mask_t = Tensor::from_vec(mask, (1, len), &Device::Cpu).unwrap();
                let out = bert.forward(&ids_t, &ids_t.zeros_like().unwrap(), Some(&mask_t)).unwrap();
                let want: Vec<Vec<f32>> = out.squeeze(0).unwrap().to_vec2().unwrap();
                for w in want.iter().take(s.len()) {
                    let got = &ours[row * 32..(row + 1) * 32];
                    for (a, b) in got.iter().zip(w) {
                        assert!((a - b).abs() < 1e-4, "threads {threads}: {a} vs {b}");
                    }
                    row += 1;
                }
            }
        }
        assert!(enc.forward(&[vec![999]], 1).is_err(), "token outside the vocabulary");
        assert!(enc.forward(&[vec![1; 65]], 1).is_err(), "sequence longer than the positions");
    }
}
