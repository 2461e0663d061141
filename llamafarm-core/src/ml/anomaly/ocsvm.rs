//! One-class SVM (Schölkopf et al. 2001) with an RBF kernel, trained like libsvm:
//! SMO on the nu-SVM dual
//!
//! ```text
//! min_a 1/2 a'Qa   s.t. 0 <= a_i <= 1, sum_i a_i = nu * l,   Q_ij = exp(-gamma |x_i - x_j|^2)
//! ```
//!
//! with libsvm's initial point (the first `floor(nu l)` alphas at 1), second-order
//! working-set selection (WSS2, Fan et al. 2005), stopping tolerance `1e-3` and
//! `rho` from the free support vectors. Kernel columns are computed on demand and kept
//! in an LRU cache (200 MB, like sklearn's `cache_size`). `gamma = "scale"` is
//! sklearn's `1 / (d * X.var())`.
//!
//! Raw score (PyOD's `decision_function`, higher = more anomalous):
//! `rho - sum_i a_i K(x_i, x)`.

use super::util::{Mat};
use super::AnomalyBackend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const TAU: f64 = 1e-12;

/// A fitted one-class SVM: the support vectors with their coefficients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneClassSvm {
    support: Mat,
    coef: Vec<f64>,
    rho: f64,
    gamma: f64,
    /// SMO iterations used.
    iterations: usize,
}

/// sklearn's `gamma="scale"`: `1 / (n_features * X.var())` (1.0 when the variance is 0).
pub fn gamma_scale(x: &Mat) -> f64 {
    let n = x.data.len() as f64;
    if n == 0.0 {
        return 1.0;
    }
    let m = x.data.iter().sum::<f64>() / n;
    let var = x.data.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
    if var > 0.0 {
        1.0 / (x.d as f64 * var)
    } else {
        1.0
    }
}

struct Kernel<'a> {
    x: &'a Mat,
    sq: Vec<f64>,
    gamma: f64,
    cache: HashMap<usize, (Vec<f64>, u64)>,
    capacity: usize,
    clock: u64,
}

impl<'a> Kernel<'a> {
    fn new(x: &'a Mat, gamma: f64, cache_bytes: usize) -> Self {
        let sq = (0..x.n).map(|i| x.row(i).iter().map(|v| v * v).sum()).collect();
        let capacity = (cache_bytes / (x.n.max(1) * 8)).max(2);
        Self { x, sq, gamma, cache: HashMap::new(), capacity, clock: 0 }
    }

    fn compute(&self, i: usize, out: &mut [f64]) {
        let xi = self.x.row(i);
        let (sqi, g, d) = (self.sq[i], self.gamma, self.x.d);
        let f = |(k, o): (usize, &mut f64)| {
            let xk = &self.x.data[k * d..(k + 1) * d];
            let dot: f64 = xi.iter().zip(xk).map(|(a, b)| a * b).sum();
            *o = (-g * (sqi + self.sq[k] - 2.0 * dot).max(0.0)).exp();
        };
        if out.len() >= 4096 {
            out.par_iter_mut().enumerate().with_min_len(1024).for_each(f);
        } else {
            out.iter_mut().enumerate().for_each(f);
        }
    }

    /// Column `i` of Q (cached).
    fn column(&mut self, i: usize) -> &[f64] {
        self.clock += 1;
        let now = self.clock;
        if !self.cache.contains_key(&i) {
            let mut buf = if self.cache.len() >= self.capacity {
                let victim = *self.cache.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k).unwrap_or(&i);
                self.cache.remove(&victim).map(|(v, _)| v).unwrap_or_else(|| vec![0.0; self.x.n])
            } else {
                vec![0.0; self.x.n]
            };
            self.compute(i, &mut buf);
            self.cache.insert(i, (buf, now));
        }
        let e = self.cache.get_mut(&i).expect("just inserted");
        e.1 = now;
        &e.0
    }
}

impl OneClassSvm {
    /// Solve the dual on `x` (rows already scaled).
    pub fn fit(x: &Mat, nu: f64, gamma: f64, tol: f64) -> Self {
        let l = x.n;
        let mut kern = Kernel::new(x, gamma, 200 << 20);
        // libsvm's initial alphas.
        let mut alpha = vec![0.0; l];
        let total = nu * l as f64;
        let n_full = (total.floor() as usize).min(l);
        for a in alpha.iter_mut().take(n_full) {
            *a = 1.0;
        }
        if n_full < l {
            alpha[n_full] = total - n_full as f64;
        }
        // G = Q alpha, row by row in parallel.
        let nz: Vec<(usize, f64)> = alpha.iter().copied().enumerate().filter(|(_, a)| *a > 0.0).collect();
        let mut grad: Vec<f64> = (0..l)
            .into_par_iter()
            .with_min_len(64)
            .map(|k| {
                let xk = x.row(k);
                nz.iter()
                    .map(|&(j, a)| {
                        let dot: f64 = xk.iter().zip(x.row(j)).map(|(p, q)| p * q).sum();
                        a * (-gamma * (kern.sq[k] + kern.sq[j] - 2.0 * dot).max(0.0)).exp()
                    })
                    .sum::<f64>()
            })
            .collect();
        let max_iter = (100 * l).max(10_000_000);
        let mut iter = 0;
        while iter < max_iter {
            // WSS2 (all y = +1, C = 1, QD = 1).
            let mut gmax = f64::NEG_INFINITY;
            let mut i = usize::MAX;
            for t in 0..l {
                if alpha[t] < 1.0 && -grad[t] >= gmax {
                    gmax = -grad[t];
                    i = t;
                }
            }
            if i == usize::MAX {
                break;
            }
            let qi = kern.column(i).to_vec();
            let mut gmax2 = f64::NEG_INFINITY;
            let mut j = usize::MAX;
            let mut obj_min = f64::INFINITY;
            for t in 0..l {
                if alpha[t] > 0.0 {
                    let gd = gmax + grad[t];
                    if grad[t] >= gmax2 {
                        gmax2 = grad[t];
                    }
                    if gd > 0.0 {
                        let mut quad = 2.0 - 2.0 * qi[t];
                        if quad <= 0.0 {
                            quad = TAU;
                        }
                        let obj = -(gd * gd) / quad;
                        if obj <= obj_min {
                            j = t;
                            obj_min = obj;
                        }
                    }
                }
            }
            if gmax + gmax2 < tol || j == usize::MAX {
                break;
            }
            iter += 1;
            // Two-variable update (libsvm, y_i == y_j).
            let (oi, oj) = (alpha[i], alpha[j]);
            let mut quad = 2.0 - 2.0 * qi[j];
            if quad <= 0.0 {
                quad = TAU;
            }
            let delta = (grad[i] - grad[j]) / quad;
            let sum = oi + oj;
            let (mut ai, mut aj) = (oi - delta, oj + delta);
            if sum > 1.0 {
                if ai > 1.0 {
                    ai = 1.0;
                    aj = sum - 1.0;
                }
            } else if aj < 0.0 {
                aj = 0.0;
                ai = sum;
            }
            if sum > 1.0 {
                if aj > 1.0 {
                    aj = 1.0;
                    ai = sum - 1.0;
                }
            } else if ai < 0.0 {
                ai = 0.0;
                aj = sum;
            }
            alpha[i] = ai;
            alpha[j] = aj;
            let (di, dj) = (ai - oi, aj - oj);
            let qj = kern.column(j);
            if l >= 8192 {
                grad.par_iter_mut().enumerate().with_min_len(2048).for_each(|(k, g)| *g += qi[k] * di + qj[k] * dj);
            } else {
                for k in 0..l {
                    grad[k] += qi[k] * di + qj[k] * dj;
                }
            }
        }
        // rho: mean gradient over free alphas, else the middle of the feasible interval.
        let (mut ub, mut lb, mut sum_free, mut nr_free) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
        for t in 0..l {
            if alpha[t] >= 1.0 {
                lb = lb.max(grad[t]);
            } else if alpha[t] <= 0.0 {
                ub = ub.min(grad[t]);
            } else {
                nr_free += 1;
                sum_free += grad[t];
            }
        }
        let rho = if nr_free > 0 { sum_free / nr_free as f64 } else { (ub + lb) / 2.0 };
        let sv: Vec<usize> = (0..l).filter(|&t| alpha[t] > 0.0).collect();
        Self { support: x.select(&sv), coef: sv.iter().map(|&t| alpha[t]).collect(), rho, gamma, iterations: iter }
    }

    /// Number of support vectors.
    pub fn n_support(&self) -> usize {
        self.coef.len()
    }
}

impl AnomalyBackend for OneClassSvm {
    fn score(&self, x: &Mat) -> Vec<f64> {
        let sv = &self.support;
        let sq: Vec<f64> = (0..sv.n).map(|i| sv.row(i).iter().map(|v| v * v).sum()).collect();
        (0..x.n)
            .into_par_iter()
            .with_min_len(16)
            .map(|k| {
                let xk = x.row(k);
                let sqk: f64 = xk.iter().map(|v| v * v).sum();
                let f: f64 = (0..sv.n)
                    .map(|i| {
                        let dot: f64 = xk.iter().zip(sv.row(i)).map(|(a, b)| a * b).sum();
                        self.coef[i] * (-self.gamma * (sqk + sq[i] - 2.0 * dot).max(0.0)).exp()
                    })
                    .sum();
                self.rho - f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::anomaly::util::Rng;

    #[test]
    fn dual_constraints_and_kkt_hold() {
        let mut rng = Rng::new(3);
        let rows: Vec<Vec<f64>> = (0..200).map(|_| vec![rng.normal(), rng.normal()]).collect();
        let x = Mat::from_rows(&rows);
        let nu = 0.2;
        let m = OneClassSvm::fit(&x, nu, gamma_scale(&x), 1e-3);
        // sum alpha = nu * l, 0 <= alpha <= 1
        let s: f64 = m.coef.iter().sum();
        assert!((s - nu * 200.0).abs() < 1e-9, "{s}");
        assert!(m.coef.iter().all(|a| *a > 0.0 && *a <= 1.0));
        // nu bounds the fraction of training outliers (raw > 0) from above, roughly.
        let scores = m.score(&x);
        let outliers = scores.iter().filter(|s| **s > 1e-6).count() as f64 / 200.0;
        assert!(outliers <= nu + 0.05, "{outliers}");
        assert!(m.n_support() as f64 >= nu * 200.0 - 1.0);
        // far points score higher than the centre
        let probe = Mat::from_rows(&[vec![0.0, 0.0], vec![6.0, 6.0]]);
        let p = m.score(&probe);
        assert!(p[1] > p[0]);
    }
}
