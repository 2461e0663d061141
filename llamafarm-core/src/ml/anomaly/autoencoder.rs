//! A dense autoencoder trained with candle's autograd: `d -> 64 -> 32 -> 64 -> d`,
//! ReLU between layers, mean-squared reconstruction loss, AdamW (lr 1e-3, weight decay
//! 1e-5), shuffled mini-batches. Weights start from a seeded uniform
//! `±1/sqrt(fan_in)` (PyTorch's `Linear` default), so a fit is reproducible.
//!
//! Raw score = the mean squared reconstruction error of a row. Scoring runs in plain
//! Rust on the stored weights (no tensors needed).

use super::util::{Mat, Rng};
use super::AnomalyBackend;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, Optimizer, VarBuilder, VarMap};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Hidden layer widths.
pub const HIDDEN: [usize; 3] = [64, 32, 64];

/// One dense layer, `out x in` row-major weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dense {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// A trained autoencoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoEncoder {
    layers: Vec<Dense>,
    /// Mean training loss of the last epoch.
    final_loss: f64,
}

fn ce(e: candle_core::Error) -> Error {
    Error::Internal(format!("autoencoder: {e}"))
}

impl AutoEncoder {
    /// Train on `x` for `epochs` passes of mini-batches of `batch_size`.
    pub fn fit(x: &Mat, epochs: usize, batch_size: usize, seed: u64) -> Result<Self> {
        let dev = Device::Cpu;
        let d = x.d;
        let sizes = [d, HIDDEN[0], HIDDEN[1], HIDDEN[2], d];
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let layers: Vec<candle_nn::Linear> =
            (0..4).map(|i| candle_nn::linear(sizes[i], sizes[i + 1], vb.pp(format!("l{i}")))).collect::<std::result::Result<_, _>>().map_err(ce)?;
        // Deterministic initialisation.
        let mut rng = Rng::new(seed);
        {
            let data = varmap.data().lock().map_err(|_| Error::Internal("autoencoder: poisoned var map".into()))?;
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let layer: usize = name[1..2].parse().unwrap_or(0);
                let bound = 1.0 / (sizes[layer] as f64).sqrt();
                let var = &data[name];
                let shape = var.shape().clone();
                let vals: Vec<f32> = (0..shape.elem_count()).map(|_| ((rng.f64() * 2.0 - 1.0) * bound) as f32).collect();
                var.set(&Tensor::from_vec(vals, shape, &dev).map_err(ce)?).map_err(ce)?;
            }
        }
        let params = candle_nn::ParamsAdamW { lr: 1e-3, weight_decay: 1e-5, ..Default::default() };
        let mut opt = candle_nn::AdamW::new(varmap.all_vars(), params).map_err(ce)?;
        let xs: Vec<f32> = x.data.iter().map(|v| *v as f32).collect();
        let xt = Tensor::from_vec(xs, (x.n, d), &dev).map_err(ce)?;
        let forward = |t: &Tensor| -> candle_core::Result<Tensor> {
            let mut h = t.clone();
            for (i, l) in layers.iter().enumerate() {
                h = l.forward(&h)?;
                if i < 3 {
                    h = h.relu()?;
                }
            }
            Ok(h)
        };
        let mut order: Vec<u32> = (0..x.n as u32).collect();
        let bs = batch_size.max(1);
        let mut final_loss = 0.0;
        for _ in 0..epochs.max(1) {
            rng.shuffle(&mut order);
            let (mut total, mut batches) = (0.0, 0usize);
            for chunk in order.chunks(bs) {
                let ids = Tensor::from_slice(chunk, chunk.len(), &dev).map_err(ce)?;
                let xb = xt.index_select(&ids, 0).map_err(ce)?;
                let out = forward(&xb).map_err(ce)?;
                let loss = (out - &xb).map_err(ce)?.sqr().map_err(ce)?.mean_all().map_err(ce)?;
                opt.backward_step(&loss).map_err(ce)?;
                total += loss.to_scalar::<f32>().map_err(ce)? as f64;
                batches += 1;
            }
            final_loss = total / batches.max(1) as f64;
        }
        let data = varmap.data().lock().map_err(|_| Error::Internal("autoencoder: poisoned var map".into()))?;
        let get = |n: String| -> Result<Vec<f32>> {
            data.get(&n).ok_or_else(|| Error::Internal(format!("autoencoder: no {n}")))?.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(ce)
        };
        let mut dense = Vec::with_capacity(4);
        for i in 0..4 {
            dense.push(Dense { inputs: sizes[i], outputs: sizes[i + 1], weight: get(format!("l{i}.weight"))?, bias: get(format!("l{i}.bias"))? });
        }
        Ok(Self { layers: dense, final_loss })
    }

    fn reconstruct(&self, row: &[f64]) -> Vec<f32> {
        let mut h: Vec<f32> = row.iter().map(|v| *v as f32).collect();
        for (li, l) in self.layers.iter().enumerate() {
            let mut out = l.bias.clone();
            for (o, acc) in out.iter_mut().enumerate() {
                let w = &l.weight[o * l.inputs..(o + 1) * l.inputs];
                *acc += w.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>();
                if li < self.layers.len() - 1 {
                    *acc = acc.max(0.0);
                }
            }
            h = out;
        }
        h
    }

    /// Input width.
    pub fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }
}

impl AnomalyBackend for AutoEncoder {
    fn score(&self, x: &Mat) -> Vec<f64> {
        (0..x.n)
            .into_par_iter()
            .with_min_len(64)
            .map(|i| {
                let row = x.row(i);
                let r = self.reconstruct(row);
                row.iter().zip(&r).map(|(a, b)| (a - *b as f64).powi(2)).sum::<f64>() / row.len().max(1) as f64
            })
            .collect()
    }
}
