//! Two parameter-free per-feature detectors.
//!
//! **ECOD** (Li et al. 2022, PyOD's `ECOD`): per feature the empirical left and right
//! tail probabilities `F_l(x) = (#{train <= x} + 1) / (n + 1)` and
//! `F_r(x) = (#{train >= x} + 1) / (n + 1)` (the `+1` keeps new points outside the
//! training range finite); `O(x) = max(sum -ln F_l, sum -ln F_r, sum -ln F_skew)`, where
//! `F_skew` is the left tail for features with negative skewness and the right tail
//! otherwise. Unlike PyOD, scoring does not refit the ECDF on the new points.
//!
//! **HBOS** (Goldstein & Dengel 2012, PyOD's `HBOS`, static bins): a 10-bin density
//! histogram per feature; `score(x) = sum_j -ln(density_j(x) + alpha)`, `alpha = 0.1`;
//! values outside the range but within `tol = 0.5` bin widths use the edge bin.

use super::util::Mat;
use super::AnomalyBackend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Fitted ECOD: sorted training columns and their skewness signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ecod {
    sorted: Vec<Vec<f64>>,
    negative_skew: Vec<bool>,
}

impl Ecod {
    /// Fit on `x`.
    pub fn fit(x: &Mat) -> Self {
        let mut sorted = Vec::with_capacity(x.d);
        let mut negative_skew = Vec::with_capacity(x.d);
        for j in 0..x.d {
            let mut c = x.col(j);
            let n = c.len() as f64;
            let m = c.iter().sum::<f64>() / n;
            let m2 = c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
            let m3 = c.iter().map(|v| (v - m).powi(3)).sum::<f64>() / n;
            let skew = if m2 > 0.0 { m3 / m2.powf(1.5) } else { 0.0 };
            negative_skew.push(skew < 0.0);
            c.sort_by(|a, b| a.total_cmp(b));
            sorted.push(c);
        }
        Self { sorted, negative_skew }
    }
}

impl AnomalyBackend for Ecod {
    fn score(&self, x: &Mat) -> Vec<f64> {
        (0..x.n)
            .into_par_iter()
            .with_min_len(64)
            .map(|i| {
                let (mut sl, mut sr, mut ss) = (0.0, 0.0, 0.0);
                for (j, v) in x.row(i).iter().enumerate() {
                    let c = &self.sorted[j];
                    let n = c.len() as f64;
                    let le = c.partition_point(|t| t <= v) as f64;
                    let ge = (c.len() - c.partition_point(|t| t < v)) as f64;
                    let ul = -((le + 1.0) / (n + 1.0)).ln();
                    let ur = -((ge + 1.0) / (n + 1.0)).ln();
                    sl += ul;
                    sr += ur;
                    ss += if self.negative_skew[j] { ul } else { ur };
                }
                sl.max(sr).max(ss)
            })
            .collect()
    }
}

/// Fitted HBOS: per-feature bin edges and densities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hbos {
    lo: Vec<f64>,
    width: Vec<f64>,
    density: Vec<Vec<f64>>,
    alpha: f64,
    tol: f64,
}

impl Hbos {
    /// Fit `n_bins` static bins per feature.
    pub fn fit(x: &Mat, n_bins: usize) -> Self {
        let bins = n_bins.max(1);
        let (mut lo, mut width, mut density) = (vec![], vec![], vec![]);
        for j in 0..x.d {
            let c = x.col(j);
            let mn = c.iter().copied().fold(f64::INFINITY, f64::min);
            let mx = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // numpy widens a zero range to [v - 0.5, v + 0.5].
            let (a, b) = if mx > mn { (mn, mx) } else { (mn - 0.5, mx + 0.5) };
            let w = (b - a) / bins as f64;
            let mut h = vec![0.0; bins];
            for v in &c {
                let k = (((v - a) / w) as usize).min(bins - 1);
                h[k] += 1.0;
            }
            let n = c.len() as f64;
            for v in h.iter_mut() {
                *v /= n * w; // numpy density=True
            }
            lo.push(a);
            width.push(w);
            density.push(h);
        }
        Self { lo, width, density, alpha: 0.1, tol: 0.5 }
    }
}

impl AnomalyBackend for Hbos {
    fn score(&self, x: &Mat) -> Vec<f64> {
        (0..x.n)
            .into_par_iter()
            .with_min_len(64)
            .map(|i| {
                x.row(i)
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        let bins = self.density[j].len();
                        let pos = (v - self.lo[j]) / self.width[j];
                        let dens = if pos >= 0.0 && pos < bins as f64 {
                            self.density[j][pos as usize]
                        } else if pos == bins as f64 || (pos < 0.0 && pos >= -self.tol) || (pos > bins as f64 && pos <= bins as f64 + self.tol) {
                            if pos < 0.0 {
                                self.density[j][0]
                            } else {
                                self.density[j][bins - 1]
                            }
                        } else {
                            0.0
                        };
                        -(dens + self.alpha).ln()
                    })
                    .sum::<f64>()
            })
            .collect()
    }
}
