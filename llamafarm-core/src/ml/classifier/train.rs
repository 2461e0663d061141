//! Fine-tuning of a sentence-transformers BERT body with candle's autograd: the
//! SetFit contrastive stage (CosineSimilarityLoss, AdamW, linear warm-up and decay).
//!
//! The forward pass is written out here rather than taken from
//! `candle_transformers::models::bert`, whose layer norm is a fused op without a
//! backward pass; the weights (and their names) are the same, so the fine-tuned
//! tensors are saved as a `model.safetensors` that the inference path
//! ([`crate::embed::BertEmbedder`]) loads unchanged.

use super::pairs::Pair;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Optimizer, VarMap};
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use std::collections::HashMap;
use std::path::Path;

pub(crate) fn ce(e: candle_core::Error) -> Error {
    Error::Internal(format!("candle: {e}"))
}

struct Layer {
    q_w: Tensor,
    q_b: Tensor,
    k_w: Tensor,
    k_b: Tensor,
    v_w: Tensor,
    v_b: Tensor,
    ao_w: Tensor,
    ao_b: Tensor,
    ln1_w: Tensor,
    ln1_b: Tensor,
    i_w: Tensor,
    i_b: Tensor,
    o_w: Tensor,
    o_b: Tensor,
    ln2_w: Tensor,
    ln2_b: Tensor,
}

/// A BERT encoder whose weights are [`Var`]s in a [`VarMap`].
pub(crate) struct TrainableBert {
    pub varmap: VarMap,
    /// Tensors of the base file that are not trained (e.g. `pooler.*`), saved as they were.
    pub frozen: HashMap<String, Tensor>,
    cfg: BertConfig,
    word: Tensor,
    pos: Tensor,
    typ: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    layers: Vec<Layer>,
}

impl TrainableBert {
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
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::invalid("base_model", "config: hidden_size is not a multiple of num_attention_heads"));
        }
        let mut tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).map_err(ce)?;
        // Checkpoints saved from a BertModel inside another model carry a `bert.` prefix.
        if !tensors.contains_key("embeddings.word_embeddings.weight") && tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            tensors = tensors.into_iter().map(|(k, v)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), v)).collect();
        }
        let varmap = VarMap::new();
        let mut take = |name: String| -> Result<Tensor> {
            let t = tensors.remove(&name).ok_or_else(|| Error::invalid("base_model", format!("weights lack '{name}' (not a BERT sentence-transformer?)")))?;
            let t = t.to_dtype(DType::F32).map_err(ce)?;
            let var = Var::from_tensor(&t).map_err(ce)?;
            let out = var.as_tensor().clone();
            varmap.data().lock().map_err(|_| Error::Internal("varmap lock".into()))?.insert(name, var);
            Ok(out)
        };
        let e = "embeddings";
        let word = take(format!("{e}.word_embeddings.weight"))?;
        let pos = take(format!("{e}.position_embeddings.weight"))?;
        let typ = take(format!("{e}.token_type_embeddings.weight"))?;
        let ln_w = take(format!("{e}.LayerNorm.weight"))?;
        let ln_b = take(format!("{e}.LayerNorm.bias"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q_w: take(format!("{p}.attention.self.query.weight"))?,
                q_b: take(format!("{p}.attention.self.query.bias"))?,
                k_w: take(format!("{p}.attention.self.key.weight"))?,
                k_b: take(format!("{p}.attention.self.key.bias"))?,
                v_w: take(format!("{p}.attention.self.value.weight"))?,
                v_b: take(format!("{p}.attention.self.value.bias"))?,
                ao_w: take(format!("{p}.attention.output.dense.weight"))?,
                ao_b: take(format!("{p}.attention.output.dense.bias"))?,
                ln1_w: take(format!("{p}.attention.output.LayerNorm.weight"))?,
                ln1_b: take(format!("{p}.attention.output.LayerNorm.bias"))?,
                i_w: take(format!("{p}.intermediate.dense.weight"))?,
                i_b: take(format!("{p}.intermediate.dense.bias"))?,
                o_w: take(format!("{p}.output.dense.weight"))?,
                o_b: take(format!("{p}.output.dense.bias"))?,
                ln2_w: take(format!("{p}.output.LayerNorm.weight"))?,
                ln2_b: take(format!("{p}.output.LayerNorm.bias"))?,
            });
        }
        Ok(Self { varmap, frozen: tensors, cfg, word, pos, typ, ln_w, ln_b, layers })
    }

    /// Write the current weights (trained and frozen) as one safetensors file.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut all: HashMap<String, Tensor> = self.frozen.clone();
        for (k, v) in self.varmap.data().lock().map_err(|_| Error::Internal("varmap lock".into()))?.iter() {
            all.insert(k.clone(), v.as_tensor().detach());
        }
        candle_core::safetensors::save(&all, path).map_err(ce)
    }

    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.cfg.layer_norm_eps)?.sqrt()?)?;
        xn.broadcast_mul(w)?.broadcast_add(b)
    }

    /// Mean-pooled (attention-mask) sentence vectors of one padded batch, with the
    /// graph kept for backpropagation. `ids` and `mask` are `(n, len)`.
    pub(crate) fn forward_pooled(&self, ids: &[Vec<u32>], pad_id: u32) -> candle_core::Result<Tensor> {
        let n = ids.len();
        let len = ids.iter().map(|b| b.len()).max().unwrap_or(1).max(1);
        let hsz = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let hd = hsz / heads;
        let mut flat = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for b in ids {
            flat.extend_from_slice(b);
            flat.extend(std::iter::repeat_n(pad_id, len - b.len()));
            mask.extend(std::iter::repeat_n(1f32, b.len()));
            mask.extend(std::iter::repeat_n(0f32, len - b.len()));
        }
        let dev = &Device::Cpu;
        let ids_t = Tensor::from_vec(flat, n * len, dev)?;
        let mask_t = Tensor::from_vec(mask, (n, len), dev)?;
        // Embeddings: word + position + token type 0.
        let x = self.word.index_select(&ids_t, 0)?.reshape((n, len, hsz))?;
        let x = x.broadcast_add(&self.pos.narrow(0, 0, len)?.unsqueeze(0)?)?;
        let x = x.broadcast_add(&self.typ.narrow(0, 0, 1)?.unsqueeze(0)?)?;
        let mut x = self.layer_norm(&x, &self.ln_w, &self.ln_b)?.reshape((n * len, hsz))?;
        // Additive attention mask (n, 1, 1, len).
        let neg = ((mask_t.ones_like()? - &mask_t)? * -1e9f64)?.reshape((n, 1, 1, len))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let linear = |x: &Tensor, w: &Tensor, b: &Tensor| x.matmul(&w.t()?)?.broadcast_add(b);
        let split = |t: Tensor| t.reshape((n, len, heads, hd))?.transpose(1, 2)?.contiguous();
        for l in &self.layers {
            let q = split(linear(&x, &l.q_w, &l.q_b)?)?;
            let k = split(linear(&x, &l.k_w, &l.k_b)?)?;
            let v = split(linear(&x, &l.v_w, &l.v_b)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&neg)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((n * len, hsz))?;
            let a = linear(&ctx, &l.ao_w, &l.ao_b)?;
            x = self.layer_norm(&(a + &x)?, &l.ln1_w, &l.ln1_b)?;
            let h = linear(&x, &l.i_w, &l.i_b)?;
            let h = match self.cfg.hidden_act {
                HiddenAct::Gelu => h.gelu_erf()?,
                HiddenAct::GeluApproximate => h.gelu()?,
                HiddenAct::Relu => h.relu()?,
            };
            let o = linear(&h, &l.o_w, &l.o_b)?;
            x = self.layer_norm(&(o + &x)?, &l.ln2_w, &l.ln2_b)?;
        }
        let x = x.reshape((n, len, hsz))?;
        let m = mask_t.unsqueeze(2)?;
        let summed = x.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        summed.broadcast_div(&counts)
    }
}

/// Contrastive training settings.
#[derive(Debug, Clone)]
pub(crate) struct TrainConfig {
    pub batch_size: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub warmup_proportion: f64,
    pub weight_decay: f64,
    /// Sentences per forward micro-batch (length-sorted).
    pub micro_batch: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { batch_size: 16, epochs: 1, learning_rate: 2e-5, warmup_proportion: 0.1, weight_decay: 0.01, micro_batch: 8 }
    }
}

impl TrainConfig {
    /// Learning rate at `step` of `total`: linear warm-up over `warmup_proportion` of
    /// the steps, then linear decay to 0 (transformers' `get_linear_schedule_with_warmup`).
    pub(crate) fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warmup = (total as f64 * self.warmup_proportion).ceil() as usize;
        if step < warmup {
            self.learning_rate * step as f64 / warmup.max(1) as f64
        } else {
            self.learning_rate * total.saturating_sub(step) as f64 / (total - warmup).max(1) as f64
        }
    }
}

/// Loss of each optimisation step.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrainReport {
    pub losses: Vec<f32>,
}

/// The CosineSimilarityLoss of `pairs` over `tokens` (token ids per example), with
/// its graph. Each distinct sentence is forwarded once; sentences are sorted by length
/// into micro-batches that run on the rayon pool.
pub(crate) fn batch_loss(model: &TrainableBert, tokens: &[Vec<u32>], pairs: &[Pair], pad_id: u32, micro: usize) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    // Distinct sentences of the batch, by length.
    let mut distinct: Vec<usize> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.sort_by_key(|&i| tokens[i].len());
    let mut row_of: HashMap<usize, u32> = HashMap::with_capacity(distinct.len());
    for (r, &i) in distinct.iter().enumerate() {
        row_of.insert(i, r as u32);
    }
    let chunks: Vec<&[usize]> = distinct.chunks(micro.max(1)).collect();
    let pooled: Vec<candle_core::Result<Tensor>> = chunks
        .par_iter()
        .map(|c| {
            let batch: Vec<Vec<u32>> = c.iter().map(|&i| tokens[i].clone()).collect();
            model.forward_pooled(&batch, pad_id)
        })
        .collect();
    let pooled: Vec<Tensor> = pooled.into_iter().collect::<candle_core::Result<_>>()?;
    let emb = Tensor::cat(&pooled, 0)?;
    let dev = &Device::Cpu;
    let ia = Tensor::from_vec(pairs.iter().map(|p| row_of[&p.a]).collect::<Vec<u32>>(), pairs.len(), dev)?;
    let ib = Tensor::from_vec(pairs.iter().map(|p| row_of[&p.b]).collect::<Vec<u32>>(), pairs.len(), dev)?;
    let target = Tensor::from_vec(pairs.iter().map(|p| p.target).collect::<Vec<f32>>(), pairs.len(), dev)?;
    let u = emb.index_select(&ia, 0)?;
    let v = emb.index_select(&ib, 0)?;
    let dotp = (&u * &v)?.sum(1)?;
    let nu = u.sqr()?.sum(1)?.sqrt()?;
    let nv = v.sqr()?.sum(1)?.sqrt()?;
    let cos = dotp.div(&(nu * nv)?.clamp(1e-8f32, f32::MAX)?)?;
    (cos - target)?.sqr()?.mean_all()
}

fn step_grads(
    model: &TrainableBert,
    tokens: &[Vec<u32>],
    pairs: &[Pair],
    pad_id: u32,
    micro: usize,
) -> candle_core::Result<(f32, candle_core::backprop::GradStore)> {
    let loss = batch_loss(model, tokens, pairs, pad_id, micro)?;
    let lv = loss.to_scalar::<f32>()?;
    let grads = loss.backward()?;
    Ok((lv, grads))
}

/// Mean loss over all `pairs` with the current weights (no training).
#[cfg(test)]
pub(crate) fn eval_loss(model: &TrainableBert, tokens: &[Vec<u32>], pairs: &[Pair], pad_id: u32) -> Result<f32> {
    let mut total = 0.0f64;
    for chunk in pairs.chunks(64) {
        let l = batch_loss(model, tokens, chunk, pad_id, 16).and_then(|l| l.detach().to_scalar::<f32>()).map_err(ce)?;
        total += l as f64 * chunk.len() as f64;
    }
    Ok((total / pairs.len().max(1) as f64) as f32)
}

/// Fine-tune `model` on `pairs` (already shuffled; one epoch = all of them in order,
/// later epochs reshuffle with `rng`). `cancel` is polled between steps.
pub(crate) fn train(model: &TrainableBert, tokens: &[Vec<u32>], pairs: &[Pair], pad_id: u32, cfg: &TrainConfig, rng: &mut super::pairs::Rng) -> Result<TrainReport> {
    let bs = cfg.batch_size.max(1);
    let steps_per_epoch = pairs.len().div_ceil(bs);
    let total = steps_per_epoch * cfg.epochs.max(1);
    let vars = model.varmap.all_vars();
    let params = candle_nn::ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..Default::default() };
    let mut opt = candle_nn::AdamW::new(vars, params).map_err(ce)?;
    let mut report = TrainReport::default();
    let mut order: Vec<Pair> = pairs.to_vec();
    let mut step = 0usize;
    for epoch in 0..cfg.epochs.max(1) {
        if epoch > 0 {
            rng.shuffle(&mut order);
        }
        for batch in order.chunks(bs) {
            opt.set_learning_rate(cfg.lr_at(step, total));
            let (loss, grads) = step_grads(model, tokens, batch, pad_id, cfg.micro_batch).map_err(ce)?;
            if !loss.is_finite() {
                return Err(Error::Internal(format!("training diverged at step {step} (loss {loss})")));
            }
            opt.step(&grads).map_err(ce)?;
            report.losses.push(loss);
            step += 1;
        }
    }
    Ok(report)
}
