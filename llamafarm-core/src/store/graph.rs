//! A flat, read-only copy of the HNSW graph that hnsw_rs builds, for searching.
//!
//! hnsw_rs builds the graph well but searches it slowly for our sizes: every visited
//! point is an `Arc` behind a lock, every candidate a heap allocation, the visited set
//! a `HashMap`. After each build or batch of inserts the store copies the graph into
//! this form (neighbour lists as `u32` arrays, the int8 codes in one matrix padded to
//! 16 bytes, a reusable generation-stamped visited array) and searches it with the
//! usual HNSW algorithm: greedy descent through the upper layers, then a best-first
//! search of width `ef` on layer 0. The distance is the graph's own (cosine on the
//! int8 codes, see `embedded::quantize`), so the copy finds what hnsw_rs would; the
//! caller re-scores the hits on the f32 vectors.

use super::embedded::{dot_i8, QuantizedCosine};
use hnsw_rs::hnsw::Hnsw;
use rayon::prelude::*;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// See the module docs.
pub(super) struct FlatGraph {
    /// Rows `0..n` are in the graph.
    pub n: usize,
    /// Code bytes per row (the vector's dimension).
    dim: usize,
    /// Bytes per row in `codes` (`dim` rounded up to 16, zero padded).
    stride: usize,
    codes: Vec<i8>,
    /// Per-row inverse scale of the codes.
    inv: Vec<f32>,
    /// Layer-0 neighbours of row `r`: `nb0[off0[r]..off0[r + 1]]`.
    off0: Vec<u32>,
    nb0: Vec<u32>,
    /// Neighbours on layers `1..=level` of the rows above layer 0 (index `layer - 1`).
    upper: HashMap<u32, Vec<Vec<u32>>>,
    /// Entry row and its level.
    entry: Option<(u32, u8)>,
}

fn inv_of(code: &[i8], dim: usize) -> f32 {
    if code.len() < dim + 4 {
        return 0.0;
    }
    f32::from_le_bytes([code[dim] as u8, code[dim + 1] as u8, code[dim + 2] as u8, code[dim + 3] as u8])
}

impl FlatGraph {
    /// Copy `hnsw` (rows `0..n`, codes of `dim` bytes plus the 4-byte scale). The
    /// caller holds the insert lock, so the graph does not change meanwhile.
    // Clippy reads `ids(0)` as the only call of `ids`; it is also mapped over the upper levels.
    #[allow(clippy::redundant_closure_call)]
    pub fn from_hnsw(hnsw: &Hnsw<'static, i8, QuantizedCosine>, n: usize, dim: usize) -> Self {
        let stride = dim.div_ceil(16) * 16;
        let mut codes = vec![0i8; n * stride];
        let mut inv = vec![0f32; n];
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut upper = HashMap::new();
        let mut entry: Option<(u32, u8)> = None;
        for p in hnsw.get_point_indexation() {
            let r = p.get_origin_id();
            if r >= n {
                continue;
            }
            let v = p.get_v();
            let d = dim.min(v.len());
            codes[r * stride..r * stride + d].copy_from_slice(&v[..d]);
            inv[r] = inv_of(v, dim);
            let level = p.get_point_id().0;
            let hood = p.get_neighborhood_id();
            let ids = |l: usize| -> Vec<u32> { hood.get(l).map(|ns| ns.iter().filter(|x| x.d_id < n).map(|x| x.d_id as u32).collect()).unwrap_or_default() };
            lists[r] = ids(0);
            if level > 0 {
                upper.insert(r as u32, (1..=level as usize).map(ids).collect::<Vec<_>>());
            }
            if entry.is_none_or(|(_, l)| level > l) {
                entry = Some((r as u32, level));
            }
        }
        let mut off0 = Vec::with_capacity(n + 1);
        let mut nb0 = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        off0.push(0u32);
        for l in &lists {
            nb0.extend_from_slice(l);
            off0.push(nb0.len() as u32);
        }
        Self { n, dim, stride, codes, inv, off0, nb0, upper, entry }
    }

    /// The graph's structure with the chunk id of each of its rows (`ids[r]` for row
    /// `r < n`), as the bytes of a graph file. The int8 codes are not written: they are
    /// recomputed from the vectors when the file is read.
    ///
    /// Layout, little endian: `LFGRAPH1`, dim and n (u32), the entry row (u32,
    /// `u32::MAX` for none) and its level (u8); n ids (u32 length, UTF-8); `off0`
    /// (n + 1 u32) and `nb0` (u32 count, then the rows); the upper layers (u32 count,
    /// then per row: the row (u32), its level count (u8), and per level a u32 count and
    /// the rows); last an FNV-1a 64 checksum of everything before it.
    pub fn to_bytes(&self, ids: &[Arc<str>]) -> Vec<u8> {
        let mut b: Vec<u8> = Vec::with_capacity(32 + self.n * 24 + (self.nb0.len() + self.off0.len()) * 4);
        let u32s = |b: &mut Vec<u8>, v: &[u32]| v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        b.extend_from_slice(GRAPH_MAGIC);
        u32s(&mut b, &[self.dim as u32, self.n as u32]);
        let (er, el) = self.entry.unwrap_or((u32::MAX, 0));
        u32s(&mut b, &[er]);
        b.push(el);
        for id in &ids[..self.n] {
            u32s(&mut b, &[id.len() as u32]);
            b.extend_from_slice(id.as_bytes());
        }
        u32s(&mut b, &self.off0);
        u32s(&mut b, &[self.nb0.len() as u32]);
        u32s(&mut b, &self.nb0);
        let mut rows: Vec<&u32> = self.upper.keys().collect();
        rows.sort();
        u32s(&mut b, &[rows.len() as u32]);
        for r in rows {
            let levels = &self.upper[r];
            u32s(&mut b, &[*r]);
            b.push(levels.len() as u8);
            for l in levels {
                u32s(&mut b, &[l.len() as u32]);
                u32s(&mut b, l);
            }
        }
        let sum = fnv64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// The graph of a graph file ([`Self::to_bytes`]) renumbered to the rows of a store
    /// that holds exactly the file's chunks, in any order: `row_of` gives each id's row,
    /// `rows` is the number of rows, `code_of(r)` the [`quantize`](super::embedded::quantize)d
    /// vector of row `r`. `None` when the file is damaged or describes other chunks (one
    /// missing, added or deleted since it was written): the caller builds a new graph.
    pub fn from_bytes(bytes: &[u8], dim: usize, rows: usize, row_of: impl Fn(&str) -> Option<usize>, code_of: impl Fn(usize) -> Vec<i8> + Sync) -> Option<Self> {
        let body = bytes.len().checked_sub(8).map(|n| &bytes[..n])?;
        if u64::from_le_bytes(bytes[body.len()..].try_into().ok()?) != fnv64(body) {
            return None;
        }
        let mut c = Cursor { b: body, at: 0 };
        if c.take(8)? != GRAPH_MAGIC || c.u32()? as usize != dim {
            return None;
        }
        let n = c.u32()? as usize;
        if n != rows {
            return None;
        }
        let (er, el) = (c.u32()?, c.take(1)?[0]);
        // perm[g]: the store's row of the file's row g.
        let mut perm = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        for _ in 0..n {
            let len = c.u32()? as usize;
            let r = row_of(std::str::from_utf8(c.take(len)?).ok()?)?;
            if r >= n || std::mem::replace(&mut seen[r], true) {
                return None;
            }
            perm.push(r as u32);
        }
        let off0 = c.u32s(n + 1)?;
        let m = c.u32()? as usize;
        let nb0 = c.u32s(m)?;
        if off0.windows(2).any(|w| w[0] > w[1]) || off0[n] as usize != m || nb0.iter().any(|&x| x as usize >= n) {
            return None;
        }
        let mut upper = HashMap::new();
        for _ in 0..c.u32()? {
            let r = c.u32()? as usize;
            let levels = c.take(1)?[0] as usize;
            let mut ls = Vec::with_capacity(levels);
            for _ in 0..levels {
                let k = c.u32()? as usize;
                let l = c.u32s(k)?;
                if r >= n || l.iter().any(|&x| x as usize >= n) {
                    return None;
                }
                ls.push(l.into_iter().map(|x| perm[x as usize]).collect::<Vec<u32>>());
            }
            upper.insert(perm[r], ls);
        }
        if c.at != body.len() {
            return None;
        }
        let entry = match er {
            u32::MAX => None,
            e if (e as usize) < n => Some((perm[e as usize], el)),
            _ => return None,
        };
        // Layer 0 in the store's row order.
        let mut of_row = vec![0u32; n];
        for (g, &r) in perm.iter().enumerate() {
            of_row[r as usize] = g as u32;
        }
        let mut new_off0 = Vec::with_capacity(n + 1);
        let mut new_nb0 = Vec::with_capacity(m);
        new_off0.push(0u32);
        for &g in &of_row {
            let (a, b) = (off0[g as usize] as usize, off0[g as usize + 1] as usize);
            new_nb0.extend(nb0[a..b].iter().map(|&x| perm[x as usize]));
            new_off0.push(new_nb0.len() as u32);
        }
        let stride = dim.div_ceil(16) * 16;
        // The rows' codes are made again from their vectors, on every core.
        let mut codes = vec![0i8; n * stride];
        let mut inv = vec![0f32; n];
        codes.par_chunks_mut(stride).zip(inv.par_iter_mut()).enumerate().with_min_len(1024).for_each(|(r, (code, inv))| {
            let v = code_of(r);
            let d = dim.min(v.len());
            code[..d].copy_from_slice(&v[..d]);
            *inv = inv_of(&v, dim);
        });
        Some(Self { n, dim, stride, codes, inv, off0: new_off0, nb0: new_nb0, upper, entry })
    }

    /// The `k` nearest rows to `query` (a quantised code with its trailing scale) by
    /// the graph's distance, nearest first, searching layer 0 with width `ef`.
    pub fn search(&self, query: &[i8], k: usize, ef: usize) -> Vec<(usize, f32)> {
        let Some((mut ep, top)) = self.entry else {
            return Vec::new();
        };
        if self.n == 0 || query.len() < self.dim {
            return Vec::new();
        }
        let mut q = vec![0i8; self.stride];
        q[..self.dim].copy_from_slice(&query[..self.dim]);
        let qi = inv_of(query, self.dim);
        let dist = |r: u32| -> f32 {
            let r = r as usize;
            let c = &self.codes[r * self.stride..(r + 1) * self.stride];
            (1.0 - dot_i8(&q, c) as f32 * qi * self.inv[r]).max(0.0)
        };
        let mut d = dist(ep);
        for layer in (1..=top as usize).rev() {
            loop {
                let mut moved = false;
                let nbs = self.upper.get(&ep).and_then(|l| l.get(layer - 1)).map(Vec::as_slice).unwrap_or(&[]);
                for &nb in nbs {
                    let dd = dist(nb);
                    if dd < d {
                        (d, ep, moved) = (dd, nb, true);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let ef = ef.max(k).max(1);
        thread_local! {
            static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
        }
        VISITED.with(|v| {
            let mut v = v.borrow_mut();
            let (marks, gen) = &mut *v;
            if marks.len() < self.n {
                marks.clear();
                marks.resize(self.n, 0);
                *gen = 0;
            }
            *gen = gen.wrapping_add(1);
            if *gen == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *gen = 1;
            }
            let g = *gen;
            let mut fresh: Vec<u32> = Vec::with_capacity(64);
            // Distances are >= 0, so their bit patterns order like the values.
            let mut cands: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::with_capacity(ef * 2);
            let mut best: BinaryHeap<(u32, u32)> = BinaryHeap::with_capacity(ef + 1);
            marks[ep as usize] = g;
            cands.push(Reverse((d.to_bits(), ep)));
            best.push((d.to_bits(), ep));
            while let Some(Reverse((cd, c))) = cands.pop() {
                if best.len() >= ef && best.peek().is_some_and(|&(w, _)| cd > w) {
                    break;
                }
                let (a, b) = (self.off0[c as usize] as usize, self.off0[c as usize + 1] as usize);
                // The unvisited neighbours first, all their codes requested at once, so
                // the memory fetches overlap instead of arriving one by one.
                fresh.clear();
                for &nb in &self.nb0[a..b] {
                    let m = &mut marks[nb as usize];
                    if *m != g {
                        *m = g;
                        fresh.push(nb);
                        prefetch(&self.codes[nb as usize * self.stride..(nb as usize + 1) * self.stride]);
                    }
                }
                for &nb in fresh.iter() {
                    let dd = dist(nb).to_bits();
                    if best.len() < ef || best.peek().is_some_and(|&(w, _)| dd < w) {
                        cands.push(Reverse((dd, nb)));
                        best.push((dd, nb));
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
            let mut out: Vec<(usize, f32)> = best.into_iter().map(|(dd, r)| (r as usize, f32::from_bits(dd))).collect();
            out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            out.truncate(k);
            out
        })
    }
}

const GRAPH_MAGIC: &[u8; 8] = b"LFGRAPH1";

fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// Reads a graph file; every read is bounds-checked (`None` past the end).
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let s = self.take(n.checked_mul(4)?)?;
        Some(s.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

// Ask for every cache line of `p`.
use llamafarm_kernels::vector::prefetch;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::quantize;

    #[test]
    fn flat_search_finds_the_true_neighbours_and_matches_hnsw_rs() {
        let (n, dim) = (3000, 32);
        let mut s = 5u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let vs: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
        let codes: Vec<Vec<i8>> = vs.iter().map(|v| quantize(v)).collect();
        let hnsw: Hnsw<'static, i8, QuantizedCosine> = Hnsw::new(16, n, 16, 100, QuantizedCosine);
        let data: Vec<(&Vec<i8>, usize)> = codes.iter().zip(0..n).collect();
        hnsw.parallel_insert(&data[..n / 2]);
        let half = FlatGraph::from_hnsw(&hnsw, n / 2, dim);
        hnsw.parallel_insert(&data[n / 2..]);
        let g = FlatGraph::from_hnsw(&hnsw, n, dim);
        assert_eq!((half.n, g.n), (n / 2, n));
        let cos = |a: &[f32], b: &[f32]| {
            let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            d / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        let (mut ours, mut theirs) = (0, 0);
        for qi in (0..n).step_by(61) {
            let mut exact: Vec<(usize, f32)> = (0..n).map(|r| (r, cos(&vs[qi], &vs[r]))).collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let truth: Vec<usize> = exact[..10].iter().map(|e| e.0).collect();
            let got = g.search(&codes[qi], 10, 64);
            assert_eq!(got.len(), 10);
            assert_eq!(got[0].0, qi, "a stored vector is its own nearest neighbour");
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
            ours += got.iter().filter(|h| truth.contains(&h.0)).count();
            theirs += hnsw.search(&codes[qi], 10, 64).iter().filter(|h| truth.contains(&h.d_id)).count();
            // The copy taken halfway only knows the first half.
            assert!(half.search(&codes[qi], 10, 64).iter().all(|h| h.0 < n / 2));
        }
        let total = (0..n).step_by(61).count() * 10;
        assert!(ours * 100 >= total * 95, "recall@10 {ours}/{total}");
        assert!(ours + total / 50 >= theirs, "ours {ours} vs hnsw_rs {theirs} of {total}");
        assert!(FlatGraph::from_hnsw(&hnsw, 0, dim).search(&codes[0], 10, 64).is_empty());

        // Written and read back into a store whose rows are in another order (reversed):
        // the same neighbours, renumbered.
        let ids: Vec<Arc<str>> = (0..n).map(|g| Arc::from(format!("c{g}"))).collect();
        let bytes = g.to_bytes(&ids);
        let row_of = |id: &str| id[1..].parse::<usize>().ok().map(|g| n - 1 - g);
        let back = FlatGraph::from_bytes(&bytes, dim, n, row_of, |r| codes[n - 1 - r].clone()).expect("the file reads back");
        for qi in (0..n).step_by(97) {
            let want: Vec<(usize, f32)> = g.search(&codes[qi], 10, 64).into_iter().map(|(r, d)| (n - 1 - r, d)).collect();
            let mut got = back.search(&codes[qi], 10, 64);
            // Ties may come out in the other order once renumbered.
            let mut want = want;
            for v in [&mut want, &mut got] {
                v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            }
            assert_eq!(got, want, "query {qi}");
        }
        // A damaged, cut or foreign file, or another set of chunks, is refused.
        let mut bad = bytes.clone();
        bad[bytes.len() / 2] ^= 1;
        assert!(FlatGraph::from_bytes(&bad, dim, n, row_of, |r| codes[n - 1 - r].clone()).is_none());
        assert!(FlatGraph::from_bytes(&bytes[..bytes.len() - 9], dim, n, row_of, |r| codes[n - 1 - r].clone()).is_none());
        assert!(FlatGraph::from_bytes(b"short", dim, n, row_of, |r| codes[r].clone()).is_none());
        assert!(FlatGraph::from_bytes(&bytes, dim, n - 1, row_of, |r| codes[r].clone()).is_none());
        assert!(FlatGraph::from_bytes(&bytes, dim + 1, n, row_of, |r| codes[r].clone()).is_none());
        let missing = |id: &str| if id == "c7" { None } else { row_of(id) };
        assert!(FlatGraph::from_bytes(&bytes, dim, n, missing, |r| codes[r].clone()).is_none());
        let twice = |id: &str| if id == "c7" { row_of("c8") } else { row_of(id) };
        assert!(FlatGraph::from_bytes(&bytes, dim, n, twice, |r| codes[r].clone()).is_none());
    }
}
