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

use super::util::Mat;
use super::AnomalyBackend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// Scores of the training rows, `rho - (Qα)_k` from the solver's final gradient,
    /// kept until `score_training` takes them.
    #[serde(skip)]
    train_scores: TrainScores,
}

/// The fit's training scores, taken once; a clone starts empty.
#[derive(Debug, Default)]
struct TrainScores(std::sync::Mutex<Option<Vec<f64>>>);

impl Clone for TrainScores {
    fn clone(&self) -> Self {
        Self::default()
    }
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

/// `exp(-g·|x_i - x_k|²)` for every `k` in `rows`, into `out[k]`: squared distances
/// in f64, the exponential in f32 through a branch-free polynomial the loop
/// vectorises (libsvm keeps its kernel cache in f32 as well).
fn kernel_row(x: &Mat, sq: &[f64], gamma: f64, i: usize, rows: &[usize], out: &mut [f32]) {
    let (xi, sqi, d) = (x.row(i), sq[i], x.d);
    for (o, &k) in out.iter_mut().zip(rows) {
        let xk = &x.data[k * d..(k + 1) * d];
        let dot: f64 = xi.iter().zip(xk).map(|(a, b)| a * b).sum();
        *o = (-gamma * (sqi + sq[k] - 2.0 * dot).max(0.0)) as f32;
    }
    for o in out.iter_mut() {
        *o = crate::embed::encoder::exp(*o);
    }
}

/// Kernel columns computed on demand over the active rows, cached (LRU past the
/// byte budget, like sklearn's `cache_size`). A cached column is valid for every
/// active set contained in the one it was computed for, so the cache is only
/// dropped when the active set grows back (unshrinking).
struct Kernel<'a> {
    x: &'a Mat,
    sq: Vec<f64>,
    gamma: f64,
    cols: Vec<Option<(Box<[f32]>, u64)>>,
    cached: usize,
    capacity: usize,
    clock: u64,
}

impl<'a> Kernel<'a> {
    fn new(x: &'a Mat, gamma: f64, cache_bytes: usize) -> Self {
        let sq = (0..x.n).map(|i| x.row(i).iter().map(|v| v * v).sum()).collect();
        let capacity = (cache_bytes / (x.n.max(1) * 4)).max(2);
        Self { x, sq, gamma, cols: vec![None; x.n], cached: 0, capacity, clock: 0 }
    }

    fn clear(&mut self) {
        self.cols.iter_mut().for_each(|c| *c = None);
        self.cached = 0;
    }

    /// Make column `i` present for `active`.
    fn ensure(&mut self, i: usize, active: &[usize]) {
        self.clock += 1;
        if let Some(c) = &mut self.cols[i] {
            c.1 = self.clock;
            return;
        }
        let mut buf = if self.cached >= self.capacity {
            let victim = (0..self.cols.len()).filter(|&t| self.cols[t].is_some()).min_by_key(|&t| self.cols[t].as_ref().map_or(0, |c| c.1));
            self.cached -= 1;
            victim.and_then(|v| self.cols[v].take()).map(|c| c.0).unwrap_or_else(|| vec![0.0; self.x.n].into_boxed_slice())
        } else {
            vec![0.0; self.x.n].into_boxed_slice()
        };
        // Values in active order, then scattered to their rows.
        let mut vals = vec![0.0f32; active.len()];
        let (x, sq, g) = (self.x, &self.sq, self.gamma);
        if active.len() >= 4096 {
            vals.par_chunks_mut(1024).zip(active.par_chunks(1024)).for_each(|(out, rows)| kernel_row(x, sq, g, i, rows, out));
        } else {
            kernel_row(x, sq, g, i, active, &mut vals);
        }
        for (&k, v) in active.iter().zip(vals) {
            buf[k] = v;
        }
        self.cols[i] = Some((buf, self.clock));
        self.cached += 1;
    }

    fn col(&self, i: usize) -> &[f32] {
        self.cols[i].as_ref().map(|c| &*c.0).unwrap_or(&[])
    }
}

impl OneClassSvm {
    /// Solve the dual on `x` (rows already scaled), with libsvm's shrinking: every
    /// `min(l, 1000)` iterations, variables at a bound that cannot enter a violating
    /// pair leave the active set; near convergence the gradient is rebuilt for all of
    /// them and the solver checks the full problem before stopping.
    pub fn fit(x: &Mat, nu: f64, gamma: f64, tol: f64) -> Self {
        let l = x.n;
        let mut kern = Kernel::new(x, gamma, 200 << 20);
        let sq = kern.sq.clone();
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
        let full_gradient = |alpha: &[f64], rows: &[usize]| -> Vec<(usize, f64)> {
            let nz: Vec<(usize, f64)> = alpha.iter().copied().enumerate().filter(|(_, a)| *a > 0.0).collect();
            let sq = &sq;
            rows.par_iter()
                .with_min_len(64)
                .map(|&k| {
                    let xk = x.row(k);
                    let g = nz
                        .iter()
                        .map(|&(j, a)| {
                            let dot: f64 = xk.iter().zip(x.row(j)).map(|(p, q)| p * q).sum();
                            a * (-gamma * (sq[k] + sq[j] - 2.0 * dot).max(0.0)).exp()
                        })
                        .sum::<f64>();
                    (k, g)
                })
                .collect()
        };
        let all: Vec<usize> = (0..l).collect();
        let mut grad = vec![0.0; l];
        for (k, g) in full_gradient(&alpha, &all) {
            grad[k] = g;
        }
        let mut active = all.clone();
        let mut unshrunk = false;
        let shrink_every = l.clamp(1, 1000);
        let mut counter = shrink_every;
        let max_iter = (100 * l).max(10_000_000);
        let mut iter = 0;
        while iter < max_iter {
            counter -= 1;
            if counter == 0 {
                counter = shrink_every;
                // libsvm's do_shrinking (all y = +1, C = 1).
                let (mut gmax1, mut gmax2) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
                for &t in &active {
                    if alpha[t] < 1.0 {
                        gmax1 = gmax1.max(-grad[t]);
                    }
                    if alpha[t] > 0.0 {
                        gmax2 = gmax2.max(grad[t]);
                    }
                }
                if !unshrunk && gmax1 + gmax2 <= tol * 10.0 {
                    unshrunk = true;
                    reconstruct(&mut grad, &active, &alpha, l, &full_gradient);
                    active = all.clone();
                    kern.clear();
                }
                active.retain(|&t| {
                    let shrink = if alpha[t] >= 1.0 {
                        -grad[t] > gmax1
                    } else if alpha[t] <= 0.0 {
                        grad[t] > gmax2
                    } else {
                        false
                    };
                    !shrink
                });
            }
            let Some((i, j)) = select(&active, &alpha, &grad, &mut kern, tol) else {
                if active.len() == l {
                    break;
                }
                // Converged on the active set: rebuild the gradient and check everything.
                reconstruct(&mut grad, &active, &alpha, l, &full_gradient);
                active = all.clone();
                kern.clear();
                if select(&active, &alpha, &grad, &mut kern, tol).is_none() {
                    break;
                }
                counter = 1;
                continue;
            };
            iter += 1;
            // Two-variable update (libsvm, y_i == y_j).
            let (oi, oj) = (alpha[i], alpha[j]);
            let mut quad = 2.0 - 2.0 * kern.col(i)[j] as f64;
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
            kern.ensure(j, &active);
            let (qi, qj) = (kern.col(i), kern.col(j));
            for &k in &active {
                grad[k] += qi[k] as f64 * di + qj[k] as f64 * dj;
            }
        }
        if active.len() < l {
            // Stopped at the iteration cap on a shrunk set: bring every gradient up to date.
            reconstruct(&mut grad, &active, &alpha, l, &full_gradient);
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
        // The decision value of training row k is sum_j a_j K(x_k, x_j) = grad[k] (one-class
        // SVM has no linear term), so its score needs no second pass over the data.
        let train_scores = TrainScores(std::sync::Mutex::new(Some(grad.iter().map(|g| rho - g).collect())));
        Self { support: x.select(&sv), coef: sv.iter().map(|&t| alpha[t]).collect(), rho, gamma, iterations: iter, train_scores }
    }

    /// Number of support vectors.
    pub fn n_support(&self) -> usize {
        self.coef.len()
    }
}

/// The gradient of the rows outside the active set, recomputed from the alphas.
fn reconstruct(grad: &mut [f64], active: &[usize], alpha: &[f64], l: usize, full: &dyn Fn(&[f64], &[usize]) -> Vec<(usize, f64)>) {
    if active.len() == l {
        return;
    }
    let mut in_active = vec![false; l];
    active.iter().for_each(|&t| in_active[t] = true);
    let rest: Vec<usize> = (0..l).filter(|&t| !in_active[t]).collect();
    for (k, g) in full(alpha, &rest) {
        grad[k] = g;
    }
}

/// libsvm's second-order working-set selection (WSS2, all y = +1, C = 1, Q_ii = 1)
/// over the active rows; `None` when the pair's violation is below `tol`.
fn select(active: &[usize], alpha: &[f64], grad: &[f64], kern: &mut Kernel<'_>, tol: f64) -> Option<(usize, usize)> {
    let mut gmax = f64::NEG_INFINITY;
    let mut i = usize::MAX;
    for &t in active {
        if alpha[t] < 1.0 && -grad[t] >= gmax {
            gmax = -grad[t];
            i = t;
        }
    }
    if i == usize::MAX {
        return None;
    }
    kern.ensure(i, active);
    let qi = kern.col(i);
    let mut gmax2 = f64::NEG_INFINITY;
    let mut j = usize::MAX;
    let mut obj_min = f64::INFINITY;
    for &t in active {
        if alpha[t] > 0.0 {
            let g = grad[t];
            let gd = gmax + g;
            if g >= gmax2 {
                gmax2 = g;
            }
            if gd > 0.0 {
                let mut quad = 2.0 - 2.0 * qi[t] as f64;
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
        return None;
    }
    Some((i, j))
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

    /// From the solver's final gradient (see `fit`): equal to `score(x)` up to the f32
    /// kernel cache's rounding (relative 1e-6).
    fn score_training(&self, x: &Mat) -> Vec<f64> {
        match self.train_scores.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(s) if s.len() == x.n => s,
            _ => self.score(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::anomaly::util::Rng;

    #[test]
    fn training_scores_from_the_gradient_match_a_fresh_pass() {
        let mut rng = Rng::new(17);
        let rows: Vec<Vec<f64>> = (0..600).map(|i| (0..5).map(|_| rng.normal() * if i % 10 == 0 { 3.0 } else { 1.0 }).collect()).collect();
        let x = Mat::from_rows(&rows);
        let m = OneClassSvm::fit(&x, 0.1, gamma_scale(&x), 1e-3);
        let fresh = m.score(&x);
        let reused = m.score_training(&x);
        let scale = fresh.iter().fold(0f64, |a, v| a.max(v.abs()));
        for (a, b) in fresh.iter().zip(&reused) {
            assert!((a - b).abs() < 1e-5 * scale, "{a} vs {b}");
        }
    }

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
