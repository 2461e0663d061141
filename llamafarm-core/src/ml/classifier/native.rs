//! The SetFit contrastive stage with the BERT body's forward and backward passes
//! written out by hand, on the encoder's packed-weight GEMM ([`crate::embed::gemm`]).
//!
//! It computes what [`super::train`] computes with candle's autograd (a test checks
//! loss and every gradient against it on a random model), faster:
//! - one packed (padding-free) forward over all distinct sentences of a step, saving
//!   only what the backward pass reads (layer-norm `x̂` and `1/σ`, pre-activation
//!   values, attention probabilities);
//! - every product on the 6x16 AVX2 micro-kernel with the rows split over the rayon
//!   pool; weights are packed once per step in the two orientations the passes need;
//! - weight gradients as one product per layer and step (`dW = dYᵀ X`), never
//!   accumulated per micro-batch;
//! - AdamW (decoupled weight decay) as `candle_nn::AdamW` implements it.

use super::pairs::Pair;
use super::train::{ce, TrainConfig, TrainReport};
use crate::embed::encoder::{attend, embed_tokens, erf, exp, gelu_erf, gelu_tanh, AttnBuf};
use crate::embed::gemm::{gemm, PackedB};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

// Parameter slots: five embedding tensors, then sixteen per layer.
const WORD: usize = 0;
const POS: usize = 1;
const TYP: usize = 2;
const LNW: usize = 3;
const LNB: usize = 4;
const BASE: usize = 5;
const PER_LAYER: usize = 16;
const QW: usize = 0;
const QB: usize = 1;
const KW: usize = 2;
const KB: usize = 3;
const VW: usize = 4;
const VB: usize = 5;
const AOW: usize = 6;
const AOB: usize = 7;
const LN1W: usize = 8;
const LN1B: usize = 9;
const IW: usize = 10;
const IB: usize = 11;
const OW: usize = 12;
const OB: usize = 13;
const LN2W: usize = 14;
const LN2B: usize = 15;
const LAYER_NAMES: [&str; PER_LAYER] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

/// Most token rows in one forward/backward group (bounds the saved activations:
/// about 100 MB for MiniLM-L6).
const ROW_CAP: usize = 2048;

/// A BERT body as plain `f32` arrays in PyTorch layout, with gradients and AdamW state.
pub(crate) struct NativeBert {
    h: usize,
    heads: usize,
    inter: usize,
    layers: usize,
    eps: f32,
    act: HiddenAct,
    vocab: usize,
    max_pos: usize,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    params: Vec<Vec<f32>>,
    /// Tensors of the base file that are not trained (e.g. `pooler.*`), saved as they were.
    frozen: HashMap<String, Tensor>,
    /// Most token rows per forward/backward group ([`ROW_CAP`]; a batch with more is
    /// forwarded once for the loss, then again group by group for the gradients).
    pub(crate) row_cap: usize,
}

impl NativeBert {
    /// Load `model.safetensors` and `config.json` of a sentence-transformers directory.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let cfg: BertConfig =
            serde_json::from_str(&text).map_err(|e| Error::invalid("base_model", format!("is not a BERT model: its config.json does not parse: {e}")))?;
        if let Some(t) = &cfg.model_type {
            if t != "bert" {
                return Err(Error::invalid("base_model", format!("type '{t}' is not supported: SetFit here fine-tunes BERT sentence-transformers")));
            }
        }
        if cfg.hidden_size == 0 || cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::invalid("base_model", "config: hidden_size is not a positive multiple of num_attention_heads"));
        }
        let mut tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).map_err(ce)?;
        if !tensors.contains_key("embeddings.word_embeddings.weight") && tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            tensors = tensors.into_iter().map(|(k, v)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), v)).collect();
        }
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let mut wanted: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![cfg.vocab_size, h]),
            ("embeddings.position_embeddings.weight".into(), vec![cfg.max_position_embeddings, h]),
            ("embeddings.token_type_embeddings.weight".into(), vec![cfg.type_vocab_size.max(1), h]),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..cfg.num_hidden_layers {
            let shapes: [Vec<usize>; PER_LAYER] = [
                vec![h, h],
                vec![h],
                vec![h, h],
                vec![h],
                vec![h, h],
                vec![h],
                vec![h, h],
                vec![h],
                vec![h],
                vec![h],
                vec![i, h],
                vec![i],
                vec![h, i],
                vec![h],
                vec![h],
                vec![h],
            ];
            for (n, s) in LAYER_NAMES.iter().zip(shapes) {
                wanted.push((format!("encoder.layer.{l}.{n}"), s));
            }
        }
        let (mut names, mut shapes, mut params) = (Vec::new(), Vec::new(), Vec::new());
        for (name, shape) in wanted {
            let t = tensors.remove(&name).ok_or_else(|| Error::invalid("base_model", format!("weights lack '{name}' (not a BERT sentence-transformer?)")))?;
            let v: Vec<f32> = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).map_err(ce)?;
            if v.len() != shape.iter().product::<usize>() {
                return Err(Error::invalid("base_model", format!("weight '{name}' has {} values, the config implies {shape:?}", v.len())));
            }
            names.push(name);
            shapes.push(shape);
            params.push(v);
        }
        Ok(Self {
            h,
            heads: cfg.num_attention_heads,
            inter: i,
            layers: cfg.num_hidden_layers,
            eps: cfg.layer_norm_eps as f32,
            act: cfg.hidden_act,
            vocab: cfg.vocab_size,
            max_pos: cfg.max_position_embeddings,
            names,
            shapes,
            params,
            frozen: tensors,
            row_cap: ROW_CAP,
        })
    }

    /// Write the current weights (trained and frozen) as one safetensors file.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut all: HashMap<String, Tensor> = self.frozen.clone();
        for ((n, s), p) in self.names.iter().zip(&self.shapes).zip(&self.params) {
            all.insert(n.clone(), Tensor::from_slice(p, s.as_slice(), &Device::Cpu).map_err(ce)?);
        }
        candle_core::safetensors::save(&all, path).map_err(ce)
    }

    fn p(&self, layer: usize, slot: usize) -> &[f32] {
        &self.params[BASE + layer * PER_LAYER + slot]
    }

    /// Weights packed for this step's products.
    fn pack(&self) -> Vec<Packs> {
        (0..self.layers)
            .into_par_iter()
            .map(|l| {
                let (h, i) = (self.h, self.inter);
                let wqkv: Vec<f32> = [self.p(l, QW), self.p(l, KW), self.p(l, VW)].concat();
                let bqkv: Vec<f32> = [self.p(l, QB), self.p(l, KB), self.p(l, VB)].concat();
                Packs {
                    qkv_f: PackedB::pack_transposed(&wqkv, 3 * h, h),
                    qkv_b: PackedB::pack(&wqkv, 3 * h, h),
                    bqkv,
                    ao_f: PackedB::pack_transposed(self.p(l, AOW), h, h),
                    ao_b: PackedB::pack(self.p(l, AOW), h, h),
                    i_f: PackedB::pack_transposed(self.p(l, IW), i, h),
                    i_b: PackedB::pack(self.p(l, IW), i, h),
                    o_f: PackedB::pack_transposed(self.p(l, OW), h, i),
                    o_b: PackedB::pack(self.p(l, OW), h, i),
                }
            })
            .collect()
    }

    /// `d *= act'(pre)` elementwise (one loop per activation, so each vectorises).
    fn act_backward(&self, d: &mut [f32], pre: &[f32]) {
        let it = d.iter_mut().zip(pre);
        match self.act {
            HiddenAct::Gelu => it.for_each(|(d, &x)| {
                let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = exp(-0.5 * x * x) * 0.398_942_3; // 1/√(2π)
                *d *= cdf + x * pdf;
            }),
            HiddenAct::GeluApproximate => it.for_each(|(d, &x)| {
                let c = 0.797_884_6f32;
                let u = c * (x + 0.044_715 * x * x * x);
                let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                *d *= 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044_715 * x * x);
            }),
            HiddenAct::Relu => it.for_each(|(d, &x)| *d = if x > 0.0 { *d } else { 0.0 }),
        }
    }

    /// Forward over `seqs` packed row after row, keeping what backward needs.
    fn forward(&self, w: &[Packs], seqs: &[&[u32]]) -> Result<Cache> {
        let (h, inter) = (self.h, self.inter);
        let rows: usize = seqs.iter().map(|s| s.len()).sum();
        let starts: Vec<usize> = seqs
            .iter()
            .scan(0, |a, s| {
                let st = *a;
                *a += s.len();
                Some(st)
            })
            .collect();
        let mut x = embed_tokens(seqs, &self.params[WORD], &self.params[POS], &self.params[TYP][..h], self.vocab, self.max_pos)?;
        let (mut xhat0, mut rstd0) = (vec![0f32; rows * h], vec![0f32; rows]);
        ln_forward(&mut x, &mut xhat0, &mut rstd0, &self.params[LNW], &self.params[LNB], self.eps);
        let mut layers = Vec::with_capacity(self.layers);
        for (l, pk) in w.iter().enumerate() {
            let x_in = x;
            let mut qkv = vec![0f32; rows * 3 * h];
            mm(rows, &x_in, &pk.qkv_f, &mut qkv);
            add_bias(&mut qkv, &pk.bqkv);
            let mut ctx = vec![0f32; rows * h];
            let probs = self.attention(&qkv, &mut ctx, seqs, &starts);
            let mut y = vec![0f32; rows * h];
            mm(rows, &ctx, &pk.ao_f, &mut y);
            let bo = self.p(l, AOB);
            for (yr, xr) in y.chunks_exact_mut(h).zip(x_in.chunks_exact(h)) {
                for j in 0..h {
                    yr[j] += bo[j] + xr[j];
                }
            }
            let (mut xhat1, mut rstd1) = (vec![0f32; rows * h], vec![0f32; rows]);
            ln_forward(&mut y, &mut xhat1, &mut rstd1, self.p(l, LN1W), self.p(l, LN1B), self.eps);
            let mut pre = vec![0f32; rows * inter];
            mm(rows, &y, &pk.i_f, &mut pre);
            add_bias(&mut pre, self.p(l, IB));
            let mid: Vec<f32> = match self.act {
                HiddenAct::Gelu => pre.iter().map(|&v| gelu_erf(v)).collect(),
                HiddenAct::GeluApproximate => pre.iter().map(|&v| gelu_tanh(v)).collect(),
                HiddenAct::Relu => pre.iter().map(|&v| v.max(0.0)).collect(),
            };
            let mut out = vec![0f32; rows * h];
            mm(rows, &mid, &pk.o_f, &mut out);
            let bo2 = self.p(l, OB);
            for (or, yr) in out.chunks_exact_mut(h).zip(y.chunks_exact(h)) {
                for j in 0..h {
                    or[j] += bo2[j] + yr[j];
                }
            }
            let (mut xhat2, mut rstd2) = (vec![0f32; rows * h], vec![0f32; rows]);
            ln_forward(&mut out, &mut xhat2, &mut rstd2, self.p(l, LN2W), self.p(l, LN2B), self.eps);
            layers.push(LayerCache { x_in, qkv, probs, ctx, xhat1, rstd1, y, pre, mid, xhat2, rstd2 });
            x = out;
        }
        Ok(Cache { seqs: seqs.iter().map(|s| s.to_vec()).collect(), starts, rows, xhat0, rstd0, layers, out: x })
    }

    /// Self-attention per (sequence, head); returns the probabilities of each job.
    fn attention(&self, qkv: &[f32], ctx: &mut [f32], seqs: &[&[u32]], starts: &[usize]) -> Vec<Vec<f32>> {
        let (h, nh) = (self.h, self.heads);
        let dh = h / nh;
        let bounds: Vec<usize> = starts.iter().copied().chain([starts.last().map_or(0, |&l| l + seqs.last().map_or(0, |s| s.len()))]).collect();
        let out = llamafarm_kernels::par::Grid::new(ctx, h, &bounds, dh);
        let jobs: Vec<(usize, usize)> = (0..seqs.len()).flat_map(|s| (0..nh).map(move |hd| (s, hd))).collect();
        jobs.into_par_iter()
            .map(|(s, head)| {
                let len = seqs[s].len();
                if len == 0 {
                    return Vec::new();
                }
                let r0 = starts[s];
                // The inference encoder's head attention; its probabilities are kept.
                let mut buf = AttnBuf::default();
                let o = attend(&mut buf, &qkv[r0 * 3 * h..(r0 + len) * 3 * h], h, nh, head, len);
                // Row r0+i, this head's columns: this job's own cell of `ctx`.
                let mut cell = out.cell(s, head);
                for (i, orow) in o.chunks_exact(dh).enumerate() {
                    cell.row_mut(i).copy_from_slice(orow);
                }
                std::mem::take(&mut buf.p)
            })
            .collect()
    }

    /// Backpropagate `d_out` (gradient of the last hidden states) through `c`,
    /// adding every parameter's gradient into `grads`.
    fn backward(&self, w: &[Packs], c: &Cache, mut dx: Vec<f32>, grads: &mut [Vec<f32>]) {
        let (h, inter, rows) = (self.h, self.inter, c.rows);
        for l in (0..self.layers).rev() {
            let (lc, pk) = (&c.layers[l], &w[l]);
            let g = |slot: usize| BASE + l * PER_LAYER + slot;
            // LN2 and the residual around the FFN.
            let mut dz = vec![0f32; rows * h];
            ln_backward(&dx, &lc.xhat2, &lc.rstd2, self.p(l, LN2W), &mut dz, grads, g(LN2W), g(LN2B));
            let mut dy = dz.clone();
            // out = mid · Woᵀ + bo
            col_sums_add(&dz, &mut grads[g(OB)]);
            weight_grad(&dz, h, &lc.mid, inter, &mut grads[g(OW)]);
            let mut dmid = vec![0f32; rows * inter];
            mm(rows, &dz, &pk.o_b, &mut dmid);
            self.act_backward(&mut dmid, &lc.pre);
            // pre = y · Wiᵀ + bi
            col_sums_add(&dmid, &mut grads[g(IB)]);
            weight_grad(&dmid, inter, &lc.y, h, &mut grads[g(IW)]);
            let mut tmp = vec![0f32; rows * h];
            mm(rows, &dmid, &pk.i_b, &mut tmp);
            dy.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            // LN1 and the residual around attention.
            let mut dz1 = vec![0f32; rows * h];
            ln_backward(&dy, &lc.xhat1, &lc.rstd1, self.p(l, LN1W), &mut dz1, grads, g(LN1W), g(LN1B));
            let mut dxin = dz1.clone();
            // y_pre = ctx · Waoᵀ + bao + x_in
            col_sums_add(&dz1, &mut grads[g(AOB)]);
            weight_grad(&dz1, h, &lc.ctx, h, &mut grads[g(AOW)]);
            let mut dctx = vec![0f32; rows * h];
            mm(rows, &dz1, &pk.ao_b, &mut dctx);
            let dqkv = self.attention_backward(&lc.qkv, &lc.probs, &dctx, c);
            // qkv = x_in · Wqkvᵀ + bqkv
            let mut db = vec![0f32; 3 * h];
            col_sums_add(&dqkv, &mut db);
            let mut dw = vec![0f32; 3 * h * h];
            weight_grad(&dqkv, 3 * h, &lc.x_in, h, &mut dw);
            for (t, (ws, bs)) in [(QW, QB), (KW, KB), (VW, VB)].into_iter().enumerate() {
                grads[g(ws)].iter_mut().zip(&dw[t * h * h..(t + 1) * h * h]).for_each(|(a, b)| *a += b);
                grads[g(bs)].iter_mut().zip(&db[t * h..(t + 1) * h]).for_each(|(a, b)| *a += b);
            }
            mm(rows, &dqkv, &pk.qkv_b, &mut tmp);
            dxin.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            dx = dxin;
        }
        // Embedding layer norm, then the three tables.
        let mut de = vec![0f32; rows * h];
        ln_backward(&dx, &c.xhat0, &c.rstd0, &self.params[LNW], &mut de, grads, LNW, LNB);
        let mut r = 0;
        for s in &c.seqs {
            for (p, &t) in s.iter().enumerate() {
                let d = &de[r * h..(r + 1) * h];
                for (a, b) in grads[WORD][t as usize * h..(t as usize + 1) * h].iter_mut().zip(d) {
                    *a += b;
                }
                for (a, b) in grads[POS][p * h..(p + 1) * h].iter_mut().zip(d) {
                    *a += b;
                }
                for (a, b) in grads[TYP][..h].iter_mut().zip(d) {
                    *a += b;
                }
                r += 1;
            }
        }
    }

    /// Gradient of `qkv` from the gradient of the attention output.
    fn attention_backward(&self, qkv: &[f32], probs: &[Vec<f32>], dctx: &[f32], c: &Cache) -> Vec<f32> {
        let (h, nh) = (self.h, self.heads);
        let dh = h / nh;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut dqkv = vec![0f32; c.rows * 3 * h];
        let jobs: Vec<(usize, usize)> = (0..c.seqs.len()).flat_map(|s| (0..nh).map(move |hd| (s, hd))).collect();
        // Each job's dQ, dK and dV (`len x dh` each), scattered into `dqkv` afterwards.
        let grads: Vec<Option<[Vec<f32>; 3]>> = jobs
            .par_iter()
            .map(|&(s, head)| {
                let len = c.seqs[s].len();
                if len == 0 {
                    return None;
                }
                let r0 = c.starts[s];
                let p = &probs[s * nh + head];
                let mut dp = vec![0f32; len * len];
                let (q, k, v) = (&qkv[r0 * 3 * h + head * dh..], &qkv[r0 * 3 * h + h + head * dh..], &qkv[r0 * 3 * h + 2 * h + head * dh..]);
                let dc = &dctx[r0 * h + head * dh..];
                let (mut dq, mut dk, mut dv) = (vec![0f32; len * dh], vec![0f32; len * dh], vec![0f32; len * dh]);
                let (ld, ldo) = ((3 * h) as isize, dh as isize);
                use llamafarm_kernels::blas::sgemm;
                // dP = dctx · Vᵀ
                sgemm(len, dh, len, 1.0, dc, h as isize, 1, v, 1, ld, 0.0, &mut dp, len as isize, 1);
                // dV = Pᵀ · dctx
                sgemm(len, len, dh, 1.0, p, 1, len as isize, dc, h as isize, 1, 0.0, &mut dv, ldo, 1);
                // dS = P ∘ (dP - rowsum(dP ∘ P))
                for (dr, pr) in dp.chunks_exact_mut(len).zip(p.chunks_exact(len)) {
                    let dot: f32 = dr.iter().zip(pr).map(|(a, b)| a * b).sum();
                    dr.iter_mut().zip(pr).for_each(|(a, b)| *a = b * (*a - dot));
                }
                // dQ = scale · dS · K ; dK = scale · dSᵀ · Q
                sgemm(len, len, dh, scale, &dp, len as isize, 1, k, ld, 1, 0.0, &mut dq, ldo, 1);
                sgemm(len, len, dh, scale, &dp, 1, len as isize, q, ld, 1, 0.0, &mut dk, ldo, 1);
                Some([dq, dk, dv])
            })
            .collect();
        for (&(s, head), g) in jobs.iter().zip(grads) {
            let Some(parts) = g else { continue };
            let r0 = c.starts[s];
            for (part, m) in parts.iter().enumerate() {
                for (i, row) in m.chunks_exact(dh).enumerate() {
                    let at = (r0 + i) * 3 * h + part * h + head * dh;
                    dqkv[at..at + dh].copy_from_slice(row);
                }
            }
        }
        dqkv
    }

    /// Loss of `pairs` and, with `grads`, its gradient, over the distinct sentences
    /// of the batch (each forwarded once).
    pub(crate) fn loss_and_grads(&self, tokens: &[Vec<u32>], pairs: &[Pair], grads: Option<&mut [Vec<f32>]>) -> Result<f32> {
        let h = self.h;
        let mut distinct: Vec<usize> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let row_of: HashMap<usize, usize> = distinct.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        // Groups of at most ROW_CAP token rows.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
        let mut in_group = 0;
        for (r, &i) in distinct.iter().enumerate() {
            let len = tokens[i].len();
            if in_group + len > self.row_cap && !groups.last().is_some_and(|g| g.is_empty()) {
                groups.push(Vec::new());
                in_group = 0;
            }
            groups.last_mut().expect("one group").push(r);
            in_group += len;
        }
        let w = self.pack();
        let seqs_of = |g: &[usize]| -> Vec<&[u32]> { g.iter().map(|&r| tokens[distinct[r]].as_slice()).collect() };
        let mut pooled = vec![0f32; distinct.len() * h];
        let mut kept: Option<Cache> = None;
        for g in &groups {
            let c = self.forward(&w, &seqs_of(g))?;
            for (&r, (s, st)) in g.iter().zip(c.seqs.iter().zip(&c.starts)) {
                let u = &mut pooled[r * h..(r + 1) * h];
                for t in 0..s.len() {
                    u.iter_mut().zip(&c.out[(st + t) * h..(st + t + 1) * h]).for_each(|(a, b)| *a += b);
                }
                let n = (s.len() as f32).max(1e-9);
                u.iter_mut().for_each(|a| *a /= n);
            }
            if groups.len() == 1 {
                kept = Some(c);
            }
        }
        // CosineSimilarityLoss: mean over pairs of (cos(u, v) - target)^2.
        let np = pairs.len().max(1) as f32;
        let mut loss = 0f32;
        let mut dpooled = vec![0f32; distinct.len() * h];
        for p in pairs {
            let (ra, rb) = (row_of[&p.a], row_of[&p.b]);
            let (u, v) = (&pooled[ra * h..(ra + 1) * h], &pooled[rb * h..(rb + 1) * h]);
            let dot: f32 = u.iter().zip(v).map(|(a, b)| a * b).sum();
            let (nu, nv) = (u.iter().map(|a| a * a).sum::<f32>().sqrt(), v.iter().map(|a| a * a).sum::<f32>().sqrt());
            let den = (nu * nv).max(1e-8);
            let cos = dot / den;
            loss += (cos - p.target) * (cos - p.target) / np;
            let dcos = 2.0 * (cos - p.target) / np;
            if nu * nv > 1e-8 {
                for j in 0..h {
                    let du = dcos * (v[j] / den - cos * u[j] / (nu * nu));
                    let dv = dcos * (u[j] / den - cos * v[j] / (nv * nv));
                    dpooled[ra * h + j] += du;
                    dpooled[rb * h + j] += dv;
                }
            } else {
                for j in 0..h {
                    dpooled[ra * h + j] += dcos * v[j] / den;
                    dpooled[rb * h + j] += dcos * u[j] / den;
                }
            }
        }
        let Some(grads) = grads else { return Ok(loss) };
        for g in &groups {
            let c = match kept.take() {
                Some(c) => c,
                None => self.forward(&w, &seqs_of(g))?,
            };
            // Mean pooling spreads each sentence's gradient evenly over its rows.
            let mut dout = vec![0f32; c.rows * h];
            for (&r, (s, st)) in g.iter().zip(c.seqs.iter().zip(&c.starts)) {
                let n = (s.len() as f32).max(1e-9);
                for t in 0..s.len() {
                    dout[(st + t) * h..(st + t + 1) * h].iter_mut().zip(&dpooled[r * h..(r + 1) * h]).for_each(|(a, b)| *a = b / n);
                }
            }
            self.backward(&w, &c, dout, grads);
        }
        Ok(loss)
    }

    /// Zeroed gradient buffers, one per parameter.
    pub(crate) fn zero_grads(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| vec![0f32; p.len()]).collect()
    }

    #[cfg(test)]
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }
}

/// Weights packed for one step: `_f` for the forward products (`X · Wᵀ`), `_b` for the
/// input gradients (`dY · W`).
struct Packs {
    qkv_f: PackedB,
    qkv_b: PackedB,
    bqkv: Vec<f32>,
    ao_f: PackedB,
    ao_b: PackedB,
    i_f: PackedB,
    i_b: PackedB,
    o_f: PackedB,
    o_b: PackedB,
}

struct LayerCache {
    x_in: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<Vec<f32>>,
    ctx: Vec<f32>,
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    y: Vec<f32>,
    pre: Vec<f32>,
    mid: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
}

struct Cache {
    seqs: Vec<Vec<u32>>,
    starts: Vec<usize>,
    rows: usize,
    xhat0: Vec<f32>,
    rstd0: Vec<f32>,
    layers: Vec<LayerCache>,
    out: Vec<f32>,
}

/// `c (m, n) = a (m, k) · b`, rows split over the rayon pool.
fn mm(m: usize, a: &[f32], b: &PackedB, c: &mut [f32]) {
    let (k, n) = (b.k(), b.n());
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if threads > 1 && m >= 32 {
        let per = m.div_ceil(threads).div_ceil(6) * 6;
        c[..m * n].par_chunks_mut(per * n).zip(a[..m * k].par_chunks(per * k)).for_each(|(cs, xs)| gemm(xs.len() / k, xs, b, cs));
    } else {
        gemm(m, &a[..m * k], b, &mut c[..m * n]);
    }
}

/// `grad (n, k) += dyᵀ (n, rows) · x (rows, k)`.
fn weight_grad(dy: &[f32], n: usize, x: &[f32], k: usize, grad: &mut [f32]) {
    let rows = dy.len() / n;
    let mut dyt = vec![0f32; n * rows];
    for r in 0..rows {
        for j in 0..n {
            dyt[j * rows + r] = dy[r * n + j];
        }
    }
    let xb = PackedB::pack(x, rows, k);
    let mut out = vec![0f32; n * k];
    mm(n, &dyt, &xb, &mut out);
    grad.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
}

fn add_bias(m: &mut [f32], b: &[f32]) {
    for row in m.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(v, bb)| *v += bb);
    }
}

fn col_sums_add(m: &[f32], out: &mut [f32]) {
    for row in m.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
}

/// Layer norm of each row of `x` in place, saving `x̂` and `1/σ`.
fn ln_forward(x: &mut [f32], xhat: &mut [f32], rstd: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let h = w.len();
    for ((row, xh), rs) in x.chunks_exact_mut(h).zip(xhat.chunks_exact_mut(h)).zip(rstd.iter_mut()) {
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        *rs = inv;
        for j in 0..h {
            xh[j] = (row[j] - mean) * inv;
            row[j] = xh[j] * w[j] + b[j];
        }
    }
}

/// Backward of [`ln_forward`]: `dx` from `dout`; the weight and bias gradients are
/// added into `grads[gw]` and `grads[gb]`.
#[allow(clippy::too_many_arguments)]
fn ln_backward(dout: &[f32], xhat: &[f32], rstd: &[f32], w: &[f32], dx: &mut [f32], grads: &mut [Vec<f32>], gw: usize, gb: usize) {
    let h = w.len();
    let mut dg = vec![0f32; h];
    let mut dbias = vec![0f32; h];
    let mut dxh = vec![0f32; h];
    for (((d, xh), &rs), o) in dout.chunks_exact(h).zip(xhat.chunks_exact(h)).zip(rstd).zip(dx.chunks_exact_mut(h)) {
        let (mut m1, mut m2) = (0f32, 0f32);
        for j in 0..h {
            dg[j] += d[j] * xh[j];
            dbias[j] += d[j];
            dxh[j] = d[j] * w[j];
            m1 += dxh[j];
            m2 += dxh[j] * xh[j];
        }
        let (m1, m2) = (m1 / h as f32, m2 / h as f32);
        for j in 0..h {
            o[j] = rs * (dxh[j] - m1 - xh[j] * m2);
        }
    }
    grads[gw].iter_mut().zip(&dg).for_each(|(a, b)| *a += b);
    grads[gb].iter_mut().zip(&dbias).for_each(|(a, b)| *a += b);
}

/// AdamW with decoupled weight decay, as `candle_nn::AdamW` (and PyTorch) define it.
pub(crate) struct AdamW {
    lr: f64,
    wd: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    t: i32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl AdamW {
    pub(crate) fn new(model: &NativeBert, lr: f64, wd: f64) -> Self {
        Self { lr, wd, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 0, m: model.zero_grads(), v: model.zero_grads() }
    }

    pub(crate) fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub(crate) fn step(&mut self, model: &mut NativeBert, grads: &[Vec<f32>]) {
        self.t += 1;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let sm = (1.0 / (1.0 - self.beta1.powi(self.t))) as f32;
        let sv = (1.0 / (1.0 - self.beta2.powi(self.t))) as f32;
        let decay = (1.0 - self.lr * self.wd) as f32;
        let (lr, eps) = (self.lr as f32, self.eps as f32);
        // Chunks of 64k values, so the word-embedding table (half of all parameters)
        // is shared by every thread.
        const CH: usize = 1 << 16;
        model.params.par_iter_mut().zip(grads.par_iter()).zip(self.m.par_iter_mut().zip(self.v.par_iter_mut())).for_each(|((p, g), (m, v))| {
            p.par_chunks_mut(CH).zip(g.par_chunks(CH)).zip(m.par_chunks_mut(CH).zip(v.par_chunks_mut(CH))).for_each(|((p, g), (m, v))| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = *m * b1 + g * (1.0 - b1);
                    *v = *v * b2 + g * g * (1.0 - b2);
                    *p = *p * decay - lr * (*m * sm) / ((*v * sv).sqrt() + eps);
                }
            });
        });
    }
}

/// Fine-tune `model` on `pairs` (already shuffled; later epochs reshuffle with `rng`),
/// with the schedule of [`super::train::train`].
pub(crate) fn train(model: &mut NativeBert, tokens: &[Vec<u32>], pairs: &[Pair], cfg: &TrainConfig, rng: &mut super::pairs::Rng) -> Result<TrainReport> {
    let bs = cfg.batch_size.max(1);
    let steps_per_epoch = pairs.len().div_ceil(bs);
    let total = steps_per_epoch * cfg.epochs.max(1);
    let mut opt = AdamW::new(model, cfg.learning_rate, cfg.weight_decay);
    let mut report = TrainReport::default();
    let mut order: Vec<Pair> = pairs.to_vec();
    let mut grads = model.zero_grads();
    let mut step = 0usize;
    for epoch in 0..cfg.epochs.max(1) {
        if epoch > 0 {
            rng.shuffle(&mut order);
        }
        for batch in order.chunks(bs) {
            opt.set_lr(cfg.lr_at(step, total));
            grads.par_iter_mut().for_each(|g| g.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0)));
            let loss = model.loss_and_grads(tokens, batch, Some(&mut grads))?;
            if !loss.is_finite() {
                return Err(Error::Internal(format!("training diverged at step {step} (loss {loss})")));
            }
            opt.step(model, &grads);
            report.losses.push(loss);
            step += 1;
        }
    }
    Ok(report)
}
