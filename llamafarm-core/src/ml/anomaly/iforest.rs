//! Isolation forest (Liu et al. 2008), as scikit-learn's `IsolationForest`:
//! 100 trees, `max_samples = min(256, n)` drawn without replacement, depth limit
//! `ceil(log2(max_samples))`, a random non-constant feature and a uniform threshold
//! per split, path length plus `c(leaf size)` at the leaves.
//!
//! Raw score (PyOD's `decision_function`, higher = more anomalous):
//! `2^(-E[h(x)] / c(max_samples)) + offset`, where `offset` is sklearn's
//! `offset_ = percentile(score_samples(train), 100 * contamination)`.

use super::util::{percentile, Mat, Rng};
use super::AnomalyBackend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One tree as flat arrays; `feature[i] < 0` marks a leaf whose path value is `value[i]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    feature: Vec<i32>,
    threshold: Vec<f64>,
    left: Vec<u32>,
    right: Vec<u32>,
    value: Vec<f64>,
}

/// A fitted isolation forest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationForest {
    trees: Vec<Tree>,
    max_samples: usize,
    offset: f64,
}

/// Average path length of an unsuccessful BST search over `n` points.
pub fn c_factor(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl Tree {
    fn grow(x: &Mat, idx: &mut [usize], max_depth: usize, rng: &mut Rng) -> Tree {
        let mut t = Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], value: vec![] };
        t.node(x, idx, 0, max_depth, rng);
        t
    }

    fn push_leaf(&mut self, depth: usize, n: usize) -> u32 {
        self.feature.push(-1);
        self.threshold.push(0.0);
        self.left.push(0);
        self.right.push(0);
        self.value.push(depth as f64 + c_factor(n));
        (self.feature.len() - 1) as u32
    }

    fn node(&mut self, x: &Mat, idx: &mut [usize], depth: usize, max_depth: usize, rng: &mut Rng) -> u32 {
        if depth >= max_depth || idx.len() <= 1 {
            return self.push_leaf(depth, idx.len());
        }
        // Draw features without replacement until one is not constant here.
        let mut feats: Vec<usize> = (0..x.d).collect();
        let mut remaining = x.d;
        let mut split = None;
        while remaining > 0 {
            let k = rng.below(remaining);
            let f = feats[k];
            feats.swap(k, remaining - 1);
            remaining -= 1;
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &i in idx.iter() {
                let v = x.data[i * x.d + f];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi > lo {
                let mut thr = lo + rng.f64() * (hi - lo);
                if thr >= hi {
                    thr = lo;
                }
                split = Some((f, thr));
                break;
            }
        }
        let Some((f, thr)) = split else { return self.push_leaf(depth, idx.len()) };
        // Partition: left gets values <= thr.
        let mut m = 0;
        for k in 0..idx.len() {
            if x.data[idx[k] * x.d + f] <= thr {
                idx.swap(k, m);
                m += 1;
            }
        }
        let me = self.feature.len();
        self.feature.push(f as i32);
        self.threshold.push(thr);
        self.left.push(0);
        self.right.push(0);
        self.value.push(0.0);
        let (l, r) = idx.split_at_mut(m);
        let li = self.node(x, l, depth + 1, max_depth, rng);
        let ri = self.node(x, r, depth + 1, max_depth, rng);
        self.left[me] = li;
        self.right[me] = ri;
        me as u32
    }

    #[inline]
    fn path(&self, row: &[f64]) -> f64 {
        let mut i = 0usize;
        loop {
            let f = self.feature[i];
            if f < 0 {
                return self.value[i];
            }
            i = if row[f as usize] <= self.threshold[i] { self.left[i] } else { self.right[i] } as usize;
        }
    }
}

impl IsolationForest {
    /// Fit `n_estimators` trees on `x`.
    pub fn fit(x: &Mat, n_estimators: usize, max_samples: usize, contamination: f64, seed: u64) -> Self {
        let max_samples = max_samples.clamp(1, x.n.max(1));
        let max_depth = (max_samples.max(2) as f64).log2().ceil() as usize;
        let trees: Vec<Tree> = (0..n_estimators.max(1))
            .into_par_iter()
            .map(|t| {
                let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut idx = rng.sample(x.n, max_samples);
                Tree::grow(x, &mut idx, max_depth, &mut rng)
            })
            .collect();
        let mut f = Self { trees, max_samples, offset: 0.0 };
        // sklearn: offset_ = percentile(score_samples(X), 100 * contamination), score_samples = -s(x).
        let neg: Vec<f64> = f.anomaly(x).into_iter().map(|s| -s).collect();
        f.offset = percentile(&neg, 100.0 * contamination);
        f
    }

    /// `s(x) = 2^(-E[h(x)] / c(max_samples))` in (0, 1].
    fn anomaly(&self, x: &Mat) -> Vec<f64> {
        let c = c_factor(self.max_samples).max(f64::MIN_POSITIVE);
        let nt = self.trees.len() as f64;
        (0..x.n)
            .into_par_iter()
            .with_min_len(64)
            .map(|i| {
                let row = x.row(i);
                let mean = self.trees.iter().map(|t| t.path(row)).sum::<f64>() / nt;
                2f64.powf(-mean / c)
            })
            .collect()
    }
}

impl AnomalyBackend for IsolationForest {
    fn score(&self, x: &Mat) -> Vec<f64> {
        self.anomaly(x).into_iter().map(|s| s + self.offset).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_factor_values() {
        assert_eq!(c_factor(1), 0.0);
        assert_eq!(c_factor(2), 1.0);
        // 2 * (ln 255 + gamma) - 2 * 255 / 256
        assert!((c_factor(256) - 10.244_770_920_119_917).abs() < 1e-9, "{}", c_factor(256));
    }
}
