//! The KV cache and causal attention over it.
//!
//! Keys are cached transposed (`[kv_head][dim][position]`), values row by row, so both
//! halves of attention are small register-blocked products with no horizontal sums:
//! scores are `MR` queries times `NR` consecutive positions (one broadcast query value
//! times a row of keys per step), and the weighted values `MR` queries times `NR`
//! consecutive value dimensions. The queries that share a KV head (grouped-query
//! attention) and, in a prefill, four consecutive tokens are one block, so each key and
//! value row is read once for up to `4 x group` queries.
//!
//! Both products are one block product (`avx2.rs`: AVX2 with FMA; `portable.rs`), chosen
//! at run time from the [`Cpu`].

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;

use crate::math::exp;
use crate::team::{share, Disjoint, Team};
use crate::Cpu;

/// Positions are allocated in multiples of this (the widest key block).
const POS_ALIGN: usize = 64;

/// Tokens per prefill block.
const TOKENS: usize = 4;

/// Keys and values of every layer for the positions seen so far.
pub struct KvCache {
    /// Per layer: keys transposed, `kvd` rows of `cap` positions (what lies past `len`,
    /// zeros or an earlier sequence's keys, is never weighed).
    k: Vec<Vec<f32>>,
    /// Per layer: values, `cap` rows of `kvd`.
    v: Vec<Vec<f32>>,
    /// Positions held.
    pub len: usize,
    cap: usize,
    kvd: usize,
}

impl KvCache {
    /// An empty cache of `layers` layers, `kvd` (KV heads times head width) wide, with
    /// room for `capacity` positions before it grows.
    pub fn new(layers: usize, kvd: usize, capacity: usize) -> Self {
        let cap = capacity.max(1).next_multiple_of(POS_ALIGN);
        KvCache { k: (0..layers).map(|_| vec![0f32; kvd * cap]).collect(), v: (0..layers).map(|_| vec![0f32; kvd * cap]).collect(), len: 0, cap, kvd }
    }

    /// Make room for `total` positions (doubling, so appends stay amortised).
    pub fn reserve(&mut self, total: usize) {
        if total <= self.cap {
            return;
        }
        let cap = total.max(2 * self.cap).next_multiple_of(POS_ALIGN);
        for k in &mut self.k {
            let mut nk = vec![0f32; self.kvd * cap];
            for (dst, src) in nk.chunks_exact_mut(cap).zip(k.chunks_exact(self.cap)) {
                dst[..self.len].copy_from_slice(&src[..self.len]);
            }
            *k = nk;
        }
        for v in &mut self.v {
            v.resize(self.kvd * cap, 0.0);
        }
        self.cap = cap;
    }

    /// Bytes held (keys and values of every layer, at the allocated capacity).
    pub fn bytes(&self) -> usize {
        4 * (self.k.iter().map(Vec::len).sum::<usize>() + self.v.iter().map(Vec::len).sum::<usize>())
    }

    /// Store layer `layer`'s key and value (each `kvd` wide) for position `pos` (below
    /// the reserved capacity).
    pub fn put(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let cap = self.cap;
        for (row, &x) in self.k[layer].chunks_exact_mut(cap).zip(k) {
            row[pos] = x;
        }
        self.v[layer][pos * self.kvd..(pos + 1) * self.kvd].copy_from_slice(v);
    }
}

/// Shape of one attention call.
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Sliding window: a query at position `p` sees keys at `p + 1 - window ..= p`
    /// (`0`: every earlier position).
    pub window: usize,
}

/// Causal attention of `n` new tokens at positions `p0..p0 + n` (already in `cache`,
/// layer `layer`): `q` is `n x heads x head_dim`, scaled; `out` gets the same shape.
#[allow(clippy::too_many_arguments)]
pub fn attention(h: &Heads, q: &[f32], q_stride: usize, cache: &KvCache, layer: usize, p0: usize, n: usize, out: &mut [f32], team: &Team) {
    attention_with(Cpu::active(), h, q, q_stride, cache, layer, p0, n, out, team)
}

/// [`attention`] on the best path `cpu` allows (AVX2 with FMA, else portable).
#[allow(clippy::too_many_arguments)]
pub fn attention_with(cpu: Cpu, h: &Heads, q: &[f32], q_stride: usize, cache: &KvCache, layer: usize, p0: usize, n: usize, out: &mut [f32], team: &Team) {
    assert!(out.len() == n * h.heads * h.head_dim, "attention shape");
    attention_batch_with(cpu, h, q, q_stride, &[Seq { cache, p0, n, row0: 0 }], layer, out, team)
}

/// One sequence of a batched attention call: `n` new tokens at positions `p0..p0 + n`
/// of `cache`, which are rows `row0..row0 + n` of the call's queries and output.
pub struct Seq<'a> {
    /// The sequence's cache, holding the new tokens' keys and values.
    pub cache: &'a KvCache,
    /// Position of the first new token.
    pub p0: usize,
    /// New tokens.
    pub n: usize,
    /// Row of the first new token in the call's `q` and `out`.
    pub row0: usize,
}

/// [`attention`] for several sequences at once, each over its own cache: one split of
/// all their work between the team's threads (decoding a batch, each sequence alone has
/// only a head or two per thread).
pub fn attention_batch(h: &Heads, q: &[f32], q_stride: usize, seqs: &[Seq], layer: usize, out: &mut [f32], team: &Team) {
    attention_batch_with(Cpu::active(), h, q, q_stride, seqs, layer, out, team)
}

/// [`attention_batch`] on the best path `cpu` allows.
#[allow(clippy::too_many_arguments)]
pub fn attention_batch_with(cpu: Cpu, h: &Heads, q: &[f32], q_stride: usize, seqs: &[Seq], layer: usize, out: &mut [f32], team: &Team) {
    let (hd, group) = (h.head_dim, h.heads / h.kv_heads);
    let dim = h.heads * hd;
    // Items: in a prefill, (block of tokens, KV head) with every query head of the
    // group; when decoding, single query heads (so both threads have work). `first[i]`
    // is sequence `i`'s first item.
    let mut first = Vec::with_capacity(seqs.len() + 1);
    first.push(0);
    for s in seqs {
        assert!(s.p0 + s.n <= s.cache.cap && (s.row0 + s.n) * dim <= out.len(), "attention shape");
        assert!(s.n == 0 || (s.row0 + s.n - 1) * q_stride + dim <= q.len(), "attention shape");
        let items = if s.n == 1 { h.heads } else { s.n.div_ceil(TOKENS) * h.kv_heads };
        first.push(first[first.len() - 1] + items);
    }
    // Each sequence writes its own rows of `out`.
    let mut rows: Vec<(usize, usize)> = seqs.iter().filter(|s| s.n > 0).map(|s| (s.row0, s.row0 + s.n)).collect();
    rows.sort_unstable();
    assert!(rows.windows(2).all(|w| w[0].1 <= w[1].0), "attention sequences share rows");
    let items = first[seqs.len()];
    let parts = team.threads();
    let od = Disjoint::new(out);
    team.run(&|p| {
        let mut s = Scratch::default();
        let mut si = 0;
        for it in share(items, parts, p) {
            while it >= first[si + 1] {
                si += 1;
            }
            let (sq, it) = (&seqs[si], it - first[si]);
            let (n, p0, r0, cache) = (sq.n, sq.p0, sq.row0, sq.cache);
            let (tokens, kvh, heads) = if n == 1 {
                (0..1, it / group, it..it + 1)
            } else {
                let (b, kvh) = (it / h.kv_heads, it % h.kv_heads);
                (b * TOKENS..((b + 1) * TOKENS).min(n), kvh, kvh * group..(kvh + 1) * group)
            };
            s.q.clear();
            s.lens.clear();
            s.starts.clear();
            for t in tokens.clone() {
                for hh in heads.clone() {
                    let at = (r0 + t) * q_stride + hh * hd;
                    s.q.extend_from_slice(&q[at..at + hd]);
                    s.lens.push(p0 + t + 1);
                    s.starts.push(if h.window > 0 { (p0 + t + 1).saturating_sub(h.window) } else { 0 });
                }
            }
            let m = s.lens.len();
            s.o.clear();
            s.o.resize(m * hd, 0.0);
            let kh = &cache.k[layer][kvh * hd * cache.cap..(kvh + 1) * hd * cache.cap];
            attend(cpu, &mut s, hd, kh, cache.cap, &cache.v[layer], cache.kvd, kvh * hd);
            let mut i = 0;
            for t in tokens.clone() {
                for hh in heads.clone() {
                    let at = (r0 + t) * dim + hh * hd;
                    // SAFETY: `share` gives each part its own items, items cover
                    // disjoint (token, head) cells of their sequence, and sequences'
                    // rows do not overlap (asserted above).
                    let o = unsafe { od.range(at..at + hd) };
                    o.copy_from_slice(&s.o[i * hd..(i + 1) * hd]);
                    i += 1;
                }
            }
        }
    });
}

/// Per-thread buffers.
#[derive(Default)]
struct Scratch {
    /// Queries, `m x hd`.
    q: Vec<f32>,
    /// Positions each query sees: `starts[i]..lens[i]`.
    lens: Vec<usize>,
    starts: Vec<usize>,
    /// Scores then weights, `m x lp`.
    s: Vec<f32>,
    /// Queries transposed, or weights transposed, for one block of rows.
    t: Vec<f32>,
    /// Output, `m x hd`.
    o: Vec<f32>,
}

/// Attention of the scratch's queries over one KV head: `kt` its keys (`hd` rows of
/// `cap`), `v` the values (`kvd` wide, this head's at `off`).
#[allow(clippy::too_many_arguments)]
fn attend(cpu: Cpu, s: &mut Scratch, hd: usize, kt: &[f32], cap: usize, v: &[f32], kvd: usize, off: usize) {
    let m = s.lens.len();
    let lmax = s.lens.iter().copied().max().unwrap_or(0);
    let lp = lmax.next_multiple_of(POS_ALIGN).min(cap);
    s.s.clear();
    s.s.resize(m * lp, 0.0);
    let mut i0 = 0;
    while i0 < m {
        let mr = (m - i0).min(4);
        // The block's queries transposed (`hd x mr`), so one step reads `mr` adjacent values.
        s.t.clear();
        for d in 0..hd {
            s.t.extend((i0..i0 + mr).map(|i| s.q[i * hd + d]));
        }
        let rows = &mut s.s[i0 * lp..(i0 + mr) * lp];
        match mr {
            4 => scores::<4, 16>(cpu, &s.t, kt, cap, lp, rows),
            3 => scores::<3, 16>(cpu, &s.t, kt, cap, lp, rows),
            2 => scores::<2, 32>(cpu, &s.t, kt, cap, lp, rows),
            _ => scores::<1, 64>(cpu, &s.t, kt, cap, lp, rows),
        }
        i0 += mr;
    }
    for ((row, &len), &start) in s.s.chunks_exact_mut(lp).zip(&s.lens).zip(&s.starts) {
        let (seen, rest) = row.split_at_mut(len);
        let (before, seen) = seen.split_at_mut(start);
        before.fill(0.0);
        let mx = seen.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        seen.iter_mut().for_each(|x| *x = exp(*x - mx));
        let inv = 1.0 / sum(seen);
        seen.iter_mut().for_each(|x| *x *= inv);
        rest.fill(0.0);
    }
    let mut i0 = 0;
    while i0 < m {
        let mr = (m - i0).min(4);
        let len = s.lens[i0..i0 + mr].iter().copied().max().unwrap_or(0);
        // Weights transposed (`len x mr`).
        s.t.clear();
        for k in 0..len {
            s.t.extend((i0..i0 + mr).map(|i| s.s[i * lp + k]));
        }
        let o = &mut s.o[i0 * hd..(i0 + mr) * hd];
        let vh = |k: usize| &v[k * kvd + off..k * kvd + off + hd];
        match mr {
            4 if hd.is_multiple_of(16) => weigh::<4, 16>(cpu, &s.t, len, v, kvd, off, hd, o),
            3 if hd.is_multiple_of(16) => weigh::<3, 16>(cpu, &s.t, len, v, kvd, off, hd, o),
            2 if hd.is_multiple_of(32) => weigh::<2, 32>(cpu, &s.t, len, v, kvd, off, hd, o),
            1 if hd.is_multiple_of(64) => weigh::<1, 64>(cpu, &s.t, len, v, kvd, off, hd, o),
            _ => {
                for k in 0..len {
                    let vr = vh(k);
                    for (i, oi) in o.chunks_exact_mut(hd).enumerate() {
                        let w = s.t[k * mr + i];
                        oi.iter_mut().zip(vr).for_each(|(a, &x)| *a = w.mul_add(x, *a));
                    }
                }
            }
        }
        i0 += mr;
    }
}

/// `out[i][k] = q_i . key k` for `MR` queries (`qt`: `hd x MR`) and the first `lp`
/// positions, `NR` at a time (`lp` and `cap` are multiples of `NR`, which is a multiple
/// of 8).
#[inline(always)]
fn scores<const MR: usize, const NR: usize>(cpu: Cpu, qt: &[f32], kt: &[f32], cap: usize, lp: usize, out: &mut [f32]) {
    let hd = qt.len() / MR;
    assert!(kt.len() >= hd * cap && lp <= cap && out.len() >= MR * lp && NR.is_multiple_of(8));
    let mut k0 = 0;
    while k0 + NR <= lp {
        let mut acc = [[0f32; NR]; MR];
        #[cfg(target_arch = "x86_64")]
        if cpu.avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA; `d < hd` rows of `cap` keys, `k0 + NR <=
            // lp <= cap` (checked above); `qt` has `hd * MR` values.
            unsafe { avx2::block::<MR, NR>(qt.as_ptr(), kt.as_ptr().wrapping_add(k0), cap, hd, &mut acc) };
        } else {
            portable::block::<MR, NR>(qt, &kt[k0..], cap, hd, &mut acc);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = cpu;
            portable::block::<MR, NR>(qt, &kt[k0..], cap, hd, &mut acc);
        }
        for (i, a) in acc.iter().enumerate() {
            out[i * lp + k0..i * lp + k0 + NR].copy_from_slice(a);
        }
        k0 += NR;
    }
}

/// `out[i] = sum_k w[k][i] v_k` for `MR` queries (`wt`: `len x MR`), `NR` value
/// dimensions at a time (`hd` a multiple of `NR`, `NR` of 8).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn weigh<const MR: usize, const NR: usize>(cpu: Cpu, wt: &[f32], len: usize, v: &[f32], kvd: usize, off: usize, hd: usize, out: &mut [f32]) {
    assert!(wt.len() >= len * MR && (len == 0 || v.len() >= (len - 1) * kvd + off + hd) && out.len() >= MR * hd && hd.is_multiple_of(NR) && NR.is_multiple_of(8));
    let mut d0 = 0;
    while d0 < hd {
        let mut acc = [[0f32; NR]; MR];
        #[cfg(target_arch = "x86_64")]
        if cpu.avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA; `len` rows of `kvd` values, each read at
            // `off + d0 .. off + d0 + NR <= off + hd` (checked above); `wt` has `len * MR`
            // weights.
            unsafe { avx2::block::<MR, NR>(wt.as_ptr(), v.as_ptr().wrapping_add(off + d0), kvd, len, &mut acc) };
        } else {
            portable::block::<MR, NR>(wt, &v[off + d0..], kvd, len, &mut acc);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = cpu;
            portable::block::<MR, NR>(wt, &v[off + d0..], kvd, len, &mut acc);
        }
        for (i, a) in acc.iter().enumerate() {
            out[i * hd + d0..i * hd + d0 + NR].copy_from_slice(a);
        }
        d0 += NR;
    }
}

/// Sum in eight independent lanes (vectorised).
#[inline]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = a.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    /// Against a direct evaluation, for a prefill and a decode step, across a cache
    /// that grows, with grouped heads and partial blocks.
    #[test]
    fn attention_matches_a_direct_evaluation() {
        let (heads, kv_heads, hd) = (6, 2, 64);
        let (dim, kvd) = (heads * hd, kv_heads * hd);
        let mut seed = 7u64;
        let mut rnd = |n: usize| -> Vec<f32> { (0..n).map(|_| testutil::rnd(&mut seed)).collect() };
        let total = 75;
        let (keys, vals) = (rnd(total * kvd), rnd(total * kvd));
        let team = Team::new(2);
        for window in [0, 5, 64] {
            let h = Heads { heads, kv_heads, head_dim: hd, window };
            let mut cache = KvCache::new(1, kvd, 8);
            let mut p0 = 0;
            for n in [70, 1, 4] {
                cache.reserve(p0 + n);
                for p in p0..p0 + n {
                    cache.put(0, p, &keys[p * kvd..(p + 1) * kvd], &vals[p * kvd..(p + 1) * kvd]);
                }
                cache.len = p0 + n;
                let q = rnd(n * dim);
                let mut out = vec![f32::NAN; n * dim];
                attention(&h, &q, dim, &cache, 0, p0, n, &mut out, &team);
                // The portable path agrees with whatever this CPU runs, to rounding.
                let mut port = vec![f32::NAN; n * dim];
                attention_with(Cpu::portable(), &h, &q, dim, &cache, 0, p0, n, &mut port, &team);
                for (a, b) in out.iter().zip(&port) {
                    assert!((a - b).abs() < 1e-5, "n {n}: {a} vs portable {b}");
                }
                for t in 0..n {
                    for hh in 0..heads {
                        let off = hh / (heads / kv_heads) * hd;
                        let qv = &q[t * dim + hh * hd..][..hd];
                        let len = p0 + t + 1;
                        let start = if window > 0 { len.saturating_sub(window) } else { 0 };
                        let dot = |p: usize| (0..hd).map(|d| qv[d] as f64 * keys[p * kvd + off + d] as f64).sum::<f64>();
                        let s: Vec<f64> = (0..len).map(|p| if p < start { f64::NEG_INFINITY } else { dot(p) }).collect();
                        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for d in 0..hd {
                            let want: f64 = (0..len).map(|p| e[p] / z * vals[p * kvd + off + d] as f64).sum();
                            let got = out[t * dim + hh * hd + d] as f64;
                            assert!((got - want).abs() < 1e-4, "n {n} token {t} head {hh} dim {d}: {got} vs {want}");
                        }
                    }
                }
                p0 += n;
            }
        }
    }

    /// Several sequences in one call, each over its own cache and in rows of its own
    /// (a prefill beside decode steps, a gap of unused rows), give exactly what one call
    /// per sequence gives; rows that belong to no sequence are left alone.
    #[test]
    fn a_batch_of_sequences_matches_one_call_each() {
        let (heads, kv_heads, hd) = (6, 2, 32);
        let (dim, kvd) = (heads * hd, kv_heads * hd);
        let mut seed = 11u64;
        let mut rnd = |n: usize| -> Vec<f32> { (0..n).map(|_| testutil::rnd(&mut seed)).collect() };
        let team = Team::new(2);
        let h = Heads { heads, kv_heads, head_dim: hd, window: 0 };
        // (cached positions before, new tokens, first row)
        let shapes = [(9, 1, 0), (0, 7, 1), (40, 1, 9), (3, 2, 10)];
        let rows = 13;
        let q_stride = dim + 5;
        let q = rnd(rows * q_stride);
        let caches: Vec<KvCache> = shapes
            .iter()
            .map(|&(p0, n, _)| {
                let mut c = KvCache::new(1, kvd, 4);
                c.reserve(p0 + n);
                for p in 0..p0 + n {
                    c.put(0, p, &rnd(kvd), &rnd(kvd));
                }
                c.len = p0 + n;
                c
            })
            .collect();
        let seqs: Vec<Seq> = shapes.iter().zip(&caches).map(|(&(p0, n, row0), cache)| Seq { cache, p0, n, row0 }).collect();
        let mut got = vec![f32::NAN; rows * dim];
        attention_batch(&h, &q, q_stride, &seqs, 0, &mut got, &team);
        for s in &seqs {
            let mut want = vec![0f32; s.n * dim];
            attention(&h, &q[s.row0 * q_stride..], q_stride, s.cache, 0, s.p0, s.n, &mut want, &team);
            assert_eq!(got[s.row0 * dim..(s.row0 + s.n) * dim].to_vec(), want, "rows {}..{}", s.row0, s.row0 + s.n);
        }
        assert!(got[8 * dim..9 * dim].iter().all(|v| v.is_nan()), "a row of no sequence was written");
        let overlapping = [Seq { cache: &caches[0], p0: 9, n: 1, row0: 3 }, Seq { cache: &caches[1], p0: 0, n: 7, row0: 1 }];
        let shared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attention_batch(&h, &q, q_stride, &overlapping, 0, &mut got, &team)));
        assert!(shared.is_err(), "sequences sharing rows are refused");
    }
}
