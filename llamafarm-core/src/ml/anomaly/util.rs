//! Small numeric helpers shared by the backends: a row-major matrix, a seeded RNG,
//! numpy-style percentiles and sklearn's `RobustScaler`.

use serde::{Deserialize, Serialize};

/// A dense row-major matrix of `f64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mat {
    /// Rows.
    pub n: usize,
    /// Columns.
    pub d: usize,
    /// `n * d` values, row after row.
    pub data: Vec<f64>,
}

impl Mat {
    /// A matrix from rows of equal length (the caller checked that).
    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let d = rows.first().map_or(0, |r| r.len());
        let mut data = Vec::with_capacity(rows.len() * d);
        for r in rows {
            data.extend_from_slice(r);
        }
        Self { n: rows.len(), d, data }
    }
    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
    /// Column `j` as a new vector.
    pub fn col(&self, j: usize) -> Vec<f64> {
        (0..self.n).map(|i| self.data[i * self.d + j]).collect()
    }
    /// Rows picked by index.
    pub fn select(&self, idx: &[usize]) -> Mat {
        let mut data = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Mat { n: idx.len(), d: self.d, data }
    }
}

/// Squared Euclidean distance.
#[inline]
pub fn sqdist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// SplitMix64-seeded xoshiro256** (deterministic, no dependency).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Self { s: [next(), next(), next(), next()] }
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Standard normal (Box-Muller).
    #[allow(dead_code)]
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
    /// `k` distinct indices out of `0..n` (k <= n), in random order.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k.min(n));
        idx
    }
}

/// numpy's `percentile(v, q)` with linear interpolation (`q` in 0..=100) of unsorted data.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    percentile_sorted(&s, q)
}

/// [`percentile`] of sorted data.
pub fn percentile_sorted(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = (q / 100.0).clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    s[lo] + (s[hi] - s[lo]) * frac
}

/// Mean and population standard deviation (numpy's `std`, ddof 0).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// ROC-AUC of `scores` (higher = more anomalous) against `labels` (1 = anomaly), with
/// average ranks for tied scores, as scikit-learn's `roc_auc_score`. NaN when the labels
/// hold only one class.
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            ranks[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l > 0.5).count() as f64;
    let neg = labels.len() as f64 - pos;
    let rs: f64 = ranks.iter().zip(labels).filter(|(_, l)| **l > 0.5).map(|(r, _)| r).sum();
    (rs - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// How features are scaled before a detector sees them.
///
/// The original always used scikit-learn's `RobustScaler`, and so does the default.
/// A robust scale divides by the interquartile range, which is tiny for
/// discrete-valued features (a hormone level recorded in a few steps): those
/// features then dominate every distance, and distance-based detectors (LOF,
/// one-class SVM) rank differently than on standardised data. Measured on ADBench
/// thyroid (`docs/benchmarks.md`): LOF ROC-AUC 0.67 robust, 0.78 standard, 0.87
/// min-max. Data that is already scaled can skip the step with `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// sklearn's `RobustScaler`: median centring, 25-75 interquartile range (a zero
    /// range scales by 1).
    #[default]
    Robust,
    /// sklearn's `StandardScaler`: mean centring, population standard deviation (a
    /// zero deviation scales by 1).
    Standard,
    /// sklearn's `MinMaxScaler`: `(x - min) / (max - min)` (a zero range scales by 1).
    MinMax,
    /// The features as given.
    None,
}

impl Scaling {
    /// Every scaling, in the order the docs list them.
    pub const ALL: [Scaling; 4] = [Scaling::Robust, Scaling::Standard, Scaling::MinMax, Scaling::None];

    /// The name used in requests and model files.
    pub fn as_str(self) -> &'static str {
        match self {
            Scaling::Robust => "robust",
            Scaling::Standard => "standard",
            Scaling::MinMax => "minmax",
            Scaling::None => "none",
        }
    }
}

impl std::fmt::Display for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fitted per-feature affine scaling, `(x - center) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureScaler {
    /// How `center` and `scale` were fitted (models saved before this field are robust).
    #[serde(default)]
    pub kind: Scaling,
    /// Per-feature centre (median, mean, minimum or 0).
    pub center: Vec<f64>,
    /// Per-feature divisor (interquartile range, deviation, range or 1; never 0).
    pub scale: Vec<f64>,
}

impl FeatureScaler {
    /// Fit `kind` on the training matrix.
    pub fn fit(kind: Scaling, x: &Mat) -> Self {
        let mut center = Vec::with_capacity(x.d);
        let mut scale = Vec::with_capacity(x.d);
        let nonzero = |s: f64| if s == 0.0 || !s.is_finite() { 1.0 } else { s };
        for j in 0..x.d {
            let mut c = x.col(j);
            let (m, s) = match kind {
                Scaling::Robust => {
                    c.sort_by(|a, b| a.total_cmp(b));
                    (percentile_sorted(&c, 50.0), percentile_sorted(&c, 75.0) - percentile_sorted(&c, 25.0))
                }
                Scaling::Standard => mean_std(&c),
                Scaling::MinMax => {
                    let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (if lo.is_finite() { lo } else { 0.0 }, hi - lo)
                }
                Scaling::None => (0.0, 1.0),
            };
            center.push(m);
            scale.push(nonzero(s));
        }
        Self { kind, center, scale }
    }

    /// Scale a matrix with the fitted statistics.
    pub fn transform(&self, x: &Mat) -> Mat {
        let mut out = x.clone();
        if self.kind == Scaling::None {
            return out;
        }
        for row in out.data.chunks_mut(x.d.max(1)) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - self.center[j]) / self.scale[j];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) == [1, 1.75, 2.5, 3.7, 4]
        let v = [4.0, 1.0, 3.0, 2.0];
        for (q, want) in [(0.0, 1.0), (25.0, 1.75), (50.0, 2.5), (90.0, 3.7), (100.0, 4.0)] {
            assert!((percentile(&v, q) - want).abs() < 1e-12, "q={q}");
        }
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12 && (s - 1.118033988749895).abs() < 1e-12);
    }

    #[test]
    fn robust_scaler_matches_sklearn() {
        // sklearn RobustScaler().fit([[1, 5], [2, 5], [3, 5], [10, 5]]):
        // center_ = [2.5, 5], scale_ = [4.75 - 1.75, 1 (zero range)]
        let x = Mat::from_rows(&[vec![1.0, 5.0], vec![2.0, 5.0], vec![3.0, 5.0], vec![10.0, 5.0]]);
        let s = FeatureScaler::fit(Scaling::Robust, &x);
        assert_eq!(s.center, vec![2.5, 5.0]);
        assert_eq!(s.scale, vec![3.0, 1.0]);
        let t = s.transform(&x);
        assert!((t.row(3)[0] - 2.5).abs() < 1e-12);
        assert_eq!(t.row(0)[1], 0.0);
    }

    #[test]
    fn roc_auc_matches_sklearn() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75; ties count half.
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]), 0.75);
        assert_eq!(roc_auc(&[0.5, 0.5], &[0.0, 1.0]), 0.5);
        assert!(roc_auc(&[0.1, 0.2], &[1.0, 1.0]).is_nan());
    }

    #[test]
    fn standard_minmax_and_none_match_sklearn() {
        // sklearn StandardScaler().fit([[1, 5], [2, 5], [3, 5], [10, 5]]): mean_ = [4, 5],
        // scale_ = [sqrt(12.5), 1 (zero variance)]; MinMaxScaler: data_min_ = [1, 5],
        // data_range_ = [9, 0 -> 1].
        let x = Mat::from_rows(&[vec![1.0, 5.0], vec![2.0, 5.0], vec![3.0, 5.0], vec![10.0, 5.0]]);
        let s = FeatureScaler::fit(Scaling::Standard, &x);
        assert_eq!(s.center, vec![4.0, 5.0]);
        assert!((s.scale[0] - 12.5f64.sqrt()).abs() < 1e-12 && s.scale[1] == 1.0);
        let m = FeatureScaler::fit(Scaling::MinMax, &x);
        assert_eq!((m.center.clone(), m.scale.clone()), (vec![1.0, 5.0], vec![9.0, 1.0]));
        assert_eq!(m.transform(&x).row(3), &[1.0, 0.0]);
        let n = FeatureScaler::fit(Scaling::None, &x);
        assert_eq!(n.transform(&x), x);
        // A model file written before `kind` existed reads as robust.
        let old: FeatureScaler = serde_json::from_str(r#"{"center": [1.0], "scale": [2.0]}"#).unwrap();
        assert_eq!(old.kind, Scaling::Robust);
    }

    #[test]
    fn rng_is_deterministic_and_uniform() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let s = a.sample(10, 10);
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let mean = (0..10000).map(|_| a.f64()).sum::<f64>() / 10000.0;
        assert!((mean - 0.5).abs() < 0.02);
    }
}
