//! The classification head: multinomial logistic regression with an L2 penalty,
//! scikit-learn's `LogisticRegression()` defaults (C = 1, intercept not penalised),
//! minimised with L-BFGS to convergence.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Weights `(classes x dim)`, row-major, and one bias per class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LogisticHead {
    pub labels: Vec<String>,
    pub dim: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LogisticHead {
    /// Class probabilities for one embedding.
    pub(crate) fn predict_proba(&self, x: &[f32]) -> Vec<f32> {
        let k = self.labels.len();
        let mut z: Vec<f64> = (0..k)
            .map(|c| {
                let w = &self.weights[c * self.dim..(c + 1) * self.dim];
                self.bias[c] as f64 + w.iter().zip(x).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>()
            })
            .collect();
        softmax_in_place(&mut z);
        z.into_iter().map(|p| p as f32).collect()
    }

    /// Check shapes after deserialising.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let k = self.labels.len();
        if k < 2 || self.dim == 0 || self.weights.len() != k * self.dim || self.bias.len() != k {
            return Err(format!("head has {} labels, dim {}, {} weights, {} biases", k, self.dim, self.weights.len(), self.bias.len()));
        }
        if self.weights.iter().chain(&self.bias).any(|v| !v.is_finite()) {
            return Err("head has non-finite weights".into());
        }
        Ok(())
    }
}

fn softmax_in_place(z: &mut [f64]) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in z.iter_mut() {
        *v /= s;
    }
}

/// Objective and gradient. Parameters: `k*d` weights then `k` biases.
/// f = mean_i(-log p_i[y_i]) + 0.5 / (C n) * ||W||^2 (sklearn's scaling; same minimiser
/// as the sum form with 0.5 / C).
fn objective(params: &[f64], x: &[Vec<f32>], y: &[usize], k: usize, d: usize, c: f64, grad: &mut [f64]) -> f64 {
    let n = x.len();
    let (w, b) = params.split_at(k * d);
    let chunk = n.div_ceil(rayon::current_num_threads().max(1)).max(16);
    let (loss, g) = x
        .par_chunks(chunk)
        .zip(y.par_chunks(chunk))
        .map(|(xs, ys)| {
            let mut g = vec![0.0f64; k * d + k];
            let mut loss = 0.0;
            let mut z = vec![0.0f64; k];
            for (xi, &yi) in xs.iter().zip(ys) {
                for (cl, zc) in z.iter_mut().enumerate() {
                    let wr = &w[cl * d..(cl + 1) * d];
                    *zc = b[cl] + wr.iter().zip(xi).map(|(a, v)| a * *v as f64).sum::<f64>();
                }
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                loss += lse - z[yi];
                for cl in 0..k {
                    let p = (z[cl] - lse).exp() - if cl == yi { 1.0 } else { 0.0 };
                    let gr = &mut g[cl * d..(cl + 1) * d];
                    for (gv, xv) in gr.iter_mut().zip(xi) {
                        *gv += p * *xv as f64;
                    }
                    g[k * d + cl] += p;
                }
            }
            (loss, g)
        })
        .reduce(
            || (0.0, vec![0.0f64; k * d + k]),
            |(l1, mut g1), (l2, g2)| {
                g1.iter_mut().zip(&g2).for_each(|(a, b)| *a += b);
                (l1 + l2, g1)
            },
        );
    let nf = n as f64;
    let lam = 1.0 / (c * nf);
    let mut f = loss / nf;
    for i in 0..k * d {
        grad[i] = g[i] / nf + lam * params[i];
        f += 0.5 * lam * params[i] * params[i];
    }
    for i in k * d..k * d + k {
        grad[i] = g[i] / nf;
    }
    f
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fit on `x` (rows of equal length) with class ids `y` in `0..labels.len()`.
/// Returns the head and the number of L-BFGS iterations used.
pub(crate) fn fit(x: &[Vec<f32>], y: &[usize], labels: Vec<String>, c: f64, max_iter: usize) -> (LogisticHead, usize) {
    let k = labels.len();
    let d = x.first().map(|r| r.len()).unwrap_or(0);
    let np = k * d + k;
    let mut p = vec![0.0f64; np];
    let mut g = vec![0.0f64; np];
    let mut f = objective(&p, x, y, k, d, c, &mut g);
    let m = 10;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut iters = 0;
    let mut g_new = vec![0.0f64; np];
    let mut p_new = vec![0.0f64; np];
    while iters < max_iter {
        let gmax = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if gmax < 1e-5 {
            break;
        }
        iters += 1;
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let mut alphas = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alphas[i] = rho * dot(&s_hist[i], &q);
            q.iter_mut().zip(&y_hist[i]).for_each(|(a, b)| *a -= alphas[i] * b);
        }
        if let (Some(s), Some(yv)) = (s_hist.last(), y_hist.last()) {
            let gamma = dot(s, yv) / dot(yv, yv);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for i in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            q.iter_mut().zip(&s_hist[i]).for_each(|(a, b)| *a += (alphas[i] - beta) * b);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&dir, &g);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            dir = g.iter().map(|v| -v).collect();
            slope = dot(&dir, &g);
        }
        // Backtracking (Armijo) line search; the first step is scaled on iteration one.
        let mut step = if s_hist.is_empty() { 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12) } else { 1.0 };
        let mut accepted = false;
        for _ in 0..40 {
            for i in 0..np {
                p_new[i] = p[i] + step * dir[i];
            }
            let f_new = objective(&p_new, x, y, k, d, c, &mut g_new);
            if f_new <= f + 1e-4 * step * slope {
                let s: Vec<f64> = p_new.iter().zip(&p).map(|(a, b)| a - b).collect();
                let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                if dot(&s, &yv) > 1e-12 {
                    s_hist.push(s);
                    y_hist.push(yv);
                    if s_hist.len() > m {
                        s_hist.remove(0);
                        y_hist.remove(0);
                    }
                }
                let rel = (f - f_new).abs() / f.abs().max(1.0);
                std::mem::swap(&mut p, &mut p_new);
                std::mem::swap(&mut g, &mut g_new);
                f = f_new;
                accepted = true;
                if rel < 1e-10 {
                    iters = max_iter;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    let head = LogisticHead { labels, dim: d, weights: p[..k * d].iter().map(|v| *v as f32).collect(), bias: p[k * d..].iter().map(|v| *v as f32).collect() };
    (head, iters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::classifier::pairs::Rng;

    #[test]
    fn separates_a_toy_set_and_matches_the_optimum() {
        // Three Gaussian blobs on the unit sphere in 8 dimensions.
        let mut rng = Rng::new(5);
        let mut gauss = || {
            let u = (rng.below(1 << 30) as f64 + 0.5) / (1u64 << 30) as f64;
            let v = (rng.below(1 << 30) as f64 + 0.5) / (1u64 << 30) as f64;
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        let centers = [[1.0f32, 0., 0., 0., 0., 0., 0., 0.], [0., 1., 0., 0., 0., 0., 0., 0.], [0., 0., 1., 0., 0., 0., 0., 0.]];
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (c, ctr) in centers.iter().enumerate() {
            for _ in 0..30 {
                let mut v: Vec<f32> = ctr.iter().map(|m| m + 0.2 * gauss()).collect();
                crate::embed::normalize(&mut v);
                x.push(v);
                y.push(c);
            }
        }
        let labels = vec!["a".to_string(), "b".into(), "c".into()];
        let (head, iters) = fit(&x, &y, labels, 1.0, 500);
        assert!(iters > 1 && iters < 500, "converged in {iters}");
        head.validate().unwrap();
        let correct = x.iter().zip(&y).filter(|(xi, &yi)| {
            let p = head.predict_proba(xi);
            let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            (p.iter().sum::<f32>() - 1.0).abs() < 1e-5 && best == yi
        });
        assert_eq!(correct.count(), 90);
        // At the optimum the gradient vanishes: small moves do not lower the objective.
        let k = 3;
        let d = 8;
        let mut p: Vec<f64> = head.weights.iter().chain(&head.bias).map(|v| *v as f64).collect();
        let mut g = vec![0.0; k * d + k];
        let f0 = objective(&p, &x, &y, k, d, 1.0, &mut g);
        assert!(g.iter().all(|v| v.abs() < 1e-3), "{g:?}");
        p[0] += 0.05;
        assert!(objective(&p, &x, &y, k, d, 1.0, &mut g) > f0);
        // The L2 penalty keeps weights finite even when classes are separable.
        assert!(head.weights.iter().all(|w| w.abs() < 50.0));
    }
}
