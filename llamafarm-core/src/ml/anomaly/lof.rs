//! Local outlier factor (Breunig et al. 2000) in novelty mode, as scikit-learn's
//! `LocalOutlierFactor(novelty=True)` (`n_neighbors = 20`, Euclidean distance):
//!
//! - `reach_k(p, o) = max(k_distance(o), d(p, o))`
//! - `lrd(p) = 1 / (mean_{o in kNN(p)} reach_k(p, o) + 1e-10)`
//! - `LOF(q) = mean_{o in kNN(q)} lrd(o) / lrd(q)`, neighbours taken among the
//!   training points (a training point is not its own neighbour during fit).
//!
//! Raw score = `LOF(q)` (PyOD's `decision_function`; about 1 for inliers). Neighbour
//! search: exact, with a k-d tree (leaf size 32) below 16 dimensions and brute force
//! above; queries run in parallel.

use super::util::{sqdist, Mat};
use super::AnomalyBackend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BinaryHeap;
use std::sync::OnceLock;

const LEAF: usize = 32;

/// Whether the k-d tree beats the blocked brute force for this training set (below
/// 16 dimensions, as scikit-learn's `algorithm="auto"` decides; measured on ADBench
/// shuttle, 9 dimensions: tree 3.5 s, brute force 19.4 s).
fn use_tree(x: &Mat) -> bool {
    x.d < 16
}

/// Exact k-nearest-neighbour index over a fixed point set.
#[derive(Debug, Clone)]
pub struct KdTree {
    /// Point indices, permuted so every node owns a contiguous range.
    idx: Vec<usize>,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Node {
    start: usize,
    end: usize,
    /// Split dimension and value, children; `dim == usize::MAX` for leaves.
    dim: usize,
    split: f64,
    left: usize,
    right: usize,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

#[derive(PartialEq)]
struct Cand(f64, usize);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

impl KdTree {
    /// Build over the rows of `x`.
    pub fn build(x: &Mat) -> Self {
        let mut t = KdTree { idx: (0..x.n).collect(), nodes: Vec::new() };
        if x.n > 0 {
            t.grow(x, 0, x.n);
        }
        t
    }

    fn grow(&mut self, x: &Mat, start: usize, end: usize) -> usize {
        let d = x.d;
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for &i in &self.idx[start..end] {
            for (j, v) in x.row(i).iter().enumerate() {
                lo[j] = lo[j].min(*v);
                hi[j] = hi[j].max(*v);
            }
        }
        let me = self.nodes.len();
        self.nodes.push(Node { start, end, dim: usize::MAX, split: 0.0, left: 0, right: 0, lo: lo.clone(), hi: hi.clone() });
        if end - start <= LEAF {
            return me;
        }
        let (dim, spread) = (0..d).map(|j| (j, hi[j] - lo[j])).fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        if spread <= 0.0 {
            return me; // all points identical: one leaf
        }
        let mid = start + (end - start) / 2;
        self.idx[start..end].select_nth_unstable_by(mid - start, |&a, &b| x.data[a * d + dim].total_cmp(&x.data[b * d + dim]));
        let split = x.data[self.idx[mid] * d + dim];
        let l = self.grow(x, start, mid);
        let r = self.grow(x, mid, end);
        let n = &mut self.nodes[me];
        n.dim = dim;
        n.split = split;
        n.left = l;
        n.right = r;
        me
    }

    fn box_dist(n: &Node, q: &[f64]) -> f64 {
        q.iter()
            .enumerate()
            .map(|(j, v)| {
                let e = if *v < n.lo[j] {
                    n.lo[j] - v
                } else if *v > n.hi[j] {
                    v - n.hi[j]
                } else {
                    0.0
                };
                e * e
            })
            .sum()
    }

    /// The `k` nearest rows of `x` to `q` as (squared distance, index), nearest first;
    /// `skip` is left out (a point's own index during fit).
    pub fn knn(&self, x: &Mat, q: &[f64], k: usize, skip: Option<usize>) -> Vec<(f64, usize)> {
        let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        if !self.nodes.is_empty() && k > 0 {
            self.search(x, 0, q, k, skip, &mut heap);
        }
        let mut v: Vec<(f64, usize)> = heap.into_iter().map(|c| (c.0, c.1)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v
    }

    fn search(&self, x: &Mat, ni: usize, q: &[f64], k: usize, skip: Option<usize>, heap: &mut BinaryHeap<Cand>) {
        let n = &self.nodes[ni];
        // Only strictly closer points enter a full heap, so a box at >= the worst distance
        // cannot help (this matters with many duplicates, where the worst distance is 0).
        if heap.len() == k && Self::box_dist(n, q) >= heap.peek().map_or(f64::INFINITY, |c| c.0) {
            return;
        }
        if n.dim == usize::MAX {
            for &i in &self.idx[n.start..n.end] {
                if Some(i) == skip {
                    continue;
                }
                offer(heap, k, sqdist(q, x.row(i)), i);
            }
            return;
        }
        let (first, second) = if q[n.dim] <= n.split { (n.left, n.right) } else { (n.right, n.left) };
        self.search(x, first, q, k, skip, heap);
        self.search(x, second, q, k, skip, heap);
    }
}

/// Keep the k nearest candidates in a max-heap.
fn offer(heap: &mut BinaryHeap<Cand>, k: usize, dd: f64, i: usize) {
    if heap.len() < k {
        heap.push(Cand(dd, i));
    } else if dd < heap.peek().map_or(f64::INFINITY, |c| c.0) {
        heap.pop();
        heap.push(Cand(dd, i));
    }
}

/// Brute-force k nearest neighbours of every row of `q` among the rows of `x`, by
/// blocks of 64 queries: squared distances as `|q|² + |x|² - 2 q·x` from one `dgemm`
/// per block (the BLAS route scikit-learn's brute force takes), the `k` smallest
/// kept, then their distances recomputed exactly (so duplicates are at exactly 0,
/// which LOF's densities are sensitive to). `skip_self`: query `i` is training row `i`.
pub fn brute_knn_all(x: &Mat, q: &Mat, k: usize, skip_self: bool) -> Vec<Vec<(f64, usize)>> {
    const B: usize = 64;
    let (n, d) = (x.n, x.d);
    let xn: Vec<f64> = (0..n).map(|j| x.row(j).iter().map(|v| v * v).sum()).collect();
    let blocks: Vec<usize> = (0..q.n).step_by(B).collect();
    blocks
        .into_par_iter()
        .flat_map_iter(|start| {
            let b = B.min(q.n - start);
            let mut c = vec![0.0f64; b * n];
            if d > 0 && n > 0 {
                // a is b x d (row-major, row stride d), x^T is d x n (element (p, j) at j*d + p),
                // c is b x n (row stride n).
                llamafarm_kernels::blas::dgemm(b, d, n, -2.0, &q.data[start * d..], d as isize, 1, &x.data, 1, d as isize, 0.0, &mut c, n as isize, 1);
            }
            (0..b)
                .map(|r| {
                    let qi = start + r;
                    let qr = q.row(qi);
                    let qn: f64 = qr.iter().map(|v| v * v).sum();
                    let row = &mut c[r * n..(r + 1) * n];
                    for (cj, &xj) in row.iter_mut().zip(&xn) {
                        *cj += qn + xj;
                    }
                    let avail = if skip_self && qi < n { n - 1 } else { n };
                    let kk = k.min(avail);
                    // The kk smallest by (distance, index): a sorted buffer that a value
                    // enters only if it beats the current worst (ties keep the lower
                    // index, scanned first). Few values enter once it is full, so this is
                    // about one comparison per row (quickselect moved the whole row).
                    let mut best: Vec<(f64, usize)> = Vec::with_capacity(kk + 1);
                    if kk > 0 {
                        for (j, &dv) in row.iter().enumerate() {
                            if best.len() == kk && dv >= best[kk - 1].0 {
                                continue;
                            }
                            if skip_self && j == qi {
                                continue;
                            }
                            let pos = best.partition_point(|b| b.0 <= dv);
                            best.insert(pos, (dv, j));
                            if best.len() > kk {
                                best.pop();
                            }
                        }
                    }
                    let picked = best.into_iter().map(|b| b.1);
                    let mut v: Vec<(f64, usize)> = picked.into_iter().map(|j| (sqdist(qr, x.row(j)), j)).collect();
                    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    v
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
fn brute_knn(x: &Mat, q: &[f64], k: usize, skip: Option<usize>) -> Vec<(f64, usize)> {
    let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
    for i in 0..x.n {
        if Some(i) == skip {
            continue;
        }
        offer(&mut heap, k, sqdist(q, x.row(i)), i);
    }
    let mut v: Vec<(f64, usize)> = heap.into_iter().map(|c| (c.0, c.1)).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v
}

/// A fitted LOF model: the training points, their k-distances and densities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalOutlierFactor {
    train: Mat,
    k: usize,
    k_distance: Vec<f64>,
    lrd: Vec<f64>,
    #[serde(skip)]
    tree: OnceLock<Option<KdTree>>,
    /// The fit's neighbour lists (self excluded), kept until the training set is
    /// scored once (`score_training`), then dropped.
    #[serde(skip)]
    fit_neighbours: FitNeighbours,
}

/// The fit's neighbour lists, taken once; a clone starts empty.
#[derive(Debug, Default)]
struct FitNeighbours(std::sync::Mutex<Option<Vec<Vec<(f64, usize)>>>>);

impl Clone for FitNeighbours {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl LocalOutlierFactor {
    /// Fit with `n_neighbors` (capped at `n - 1`).
    pub fn fit(x: &Mat, n_neighbors: usize) -> Self {
        let k = n_neighbors.clamp(1, x.n.saturating_sub(1).max(1));
        let mut m = Self { train: x.clone(), k, k_distance: vec![], lrd: vec![], tree: OnceLock::new(), fit_neighbours: Default::default() };
        let neigh = m.neighbours_all(x, true);
        m.k_distance = neigh.iter().map(|nb| nb.last().map_or(0.0, |v| v.0.sqrt())).collect();
        m.lrd = neigh.iter().map(|nb| m.lrd_of(nb)).collect();
        m.fit_neighbours = FitNeighbours(std::sync::Mutex::new(Some(neigh)));
        m
    }

    fn index(&self) -> Option<&KdTree> {
        self.tree.get_or_init(|| use_tree(&self.train).then(|| KdTree::build(&self.train))).as_ref()
    }

    /// Neighbours of every row of `q` (`skip_self`: `q` is the training set).
    fn neighbours_all(&self, q: &Mat, skip_self: bool) -> Vec<Vec<(f64, usize)>> {
        match self.index() {
            Some(t) => (0..q.n).into_par_iter().with_min_len(32).map(|i| t.knn(&self.train, q.row(i), self.k, skip_self.then_some(i))).collect(),
            None => brute_knn_all(&self.train, q, self.k, skip_self),
        }
    }

    fn lrd_of(&self, nb: &[(f64, usize)]) -> f64 {
        let reach: f64 = nb.iter().map(|&(d2, o)| d2.sqrt().max(self.k_distance[o])).sum::<f64>() / nb.len().max(1) as f64;
        1.0 / (reach + 1e-10)
    }
}

impl LocalOutlierFactor {
    fn score_from(&self, neigh: &[Vec<(f64, usize)>]) -> Vec<f64> {
        neigh
            .iter()
            .map(|nb| {
                let lrd_q = self.lrd_of(nb);
                nb.iter().map(|&(_, o)| self.lrd[o]).sum::<f64>() / nb.len().max(1) as f64 / lrd_q
            })
            .collect()
    }
}

impl AnomalyBackend for LocalOutlierFactor {
    fn score(&self, x: &Mat) -> Vec<f64> {
        self.score_from(&self.neighbours_all(x, false))
    }

    /// A training point queried against the training set finds itself first (at
    /// distance 0), then its fit neighbours: so its k neighbours are itself plus the
    /// first k - 1 of the fit's list, with no second search. (Exact duplicates of a
    /// point may order differently at the k-th place; the scores of test points never
    /// depend on this.)
    fn score_training(&self, x: &Mat) -> Vec<f64> {
        let cached = self.fit_neighbours.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match cached {
            Some(neigh) if neigh.len() == x.n && x.n == self.train.n && x.data == self.train.data => {
                let with_self: Vec<Vec<(f64, usize)>> =
                    neigh.into_iter().enumerate().map(|(i, nb)| std::iter::once((0.0, i)).chain(nb.into_iter().take(self.k.saturating_sub(1))).collect()).collect();
                self.score_from(&with_self)
            }
            _ => self.score(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::anomaly::util::Rng;

    #[test]
    fn training_scores_from_the_fit_equal_a_fresh_search() {
        let mut rng = Rng::new(5);
        for d in [3usize, 20] {
            let rows: Vec<Vec<f64>> = (0..300).map(|_| (0..d).map(|_| rng.normal()).collect()).collect();
            let x = Mat::from_rows(&rows);
            let m = LocalOutlierFactor::fit(&x, 20);
            let fresh = m.score(&x);
            let reused = m.score_training(&x);
            for (a, b) in fresh.iter().zip(&reused) {
                assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()), "d={d}: {a} vs {b}");
            }
            // The cache is used once; later calls search again and agree.
            assert_eq!(m.score_training(&x), fresh);
        }
    }

    #[test]
    fn kd_tree_matches_brute_force() {
        let mut rng = Rng::new(11);
        let rows: Vec<Vec<f64>> = (0..500).map(|i| vec![rng.normal(), rng.normal(), (i % 7) as f64]).collect();
        let x = Mat::from_rows(&rows);
        let t = KdTree::build(&x);
        for q in 0..50 {
            let a = t.knn(&x, x.row(q), 7, Some(q));
            let b = brute_knn(&x, x.row(q), 7, Some(q));
            let da: Vec<f64> = a.iter().map(|v| v.0).collect();
            let db: Vec<f64> = b.iter().map(|v| v.0).collect();
            assert_eq!(da, db);
            assert!(a.iter().all(|v| v.1 != q));
        }
    }

    #[test]
    fn blocked_brute_force_matches_the_plain_scan() {
        let mut rng = Rng::new(5);
        // Duplicates included: their exact distance must come back as 0.
        let rows: Vec<Vec<f64>> = (0..300).map(|i| if i % 50 == 0 { vec![1.0; 20] } else { (0..20).map(|_| rng.normal()).collect() }).collect();
        let x = Mat::from_rows(&rows);
        let all = brute_knn_all(&x, &x, 6, true);
        for (q, got) in all.iter().enumerate().take(120) {
            let want = brute_knn(&x, x.row(q), 6, Some(q));
            let (dg, dw): (Vec<f64>, Vec<f64>) = (got.iter().map(|v| v.0).collect(), want.iter().map(|v| v.0).collect());
            assert_eq!(dg, dw, "query {q}");
        }
        assert_eq!(all[0][0].0, 0.0);
    }

    #[test]
    fn lof_is_about_one_inside_and_large_outside() {
        // A 10x10 grid: interior points have LOF 1 exactly when densities are equal.
        let rows: Vec<Vec<f64>> = (0..100).map(|i| vec![(i % 10) as f64, (i / 10) as f64]).collect();
        let x = Mat::from_rows(&rows);
        let m = LocalOutlierFactor::fit(&x, 5);
        let s = m.score(&Mat::from_rows(&[vec![4.5, 4.5], vec![30.0, 30.0]]));
        assert!((s[0] - 1.0).abs() < 0.2, "{s:?}");
        assert!(s[1] > 5.0, "{s:?}");
    }
}
