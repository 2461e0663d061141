//! bfloat16 matrix products for the encoder's linear layers (its default precision on
//! CPUs with AVX-512 BF16) and its attention.
//!
//! `C (m, n) ≈ A (m, k) · B (k, n)` with both factors rounded to bfloat16 (round to
//! nearest even: fp32's exponent, 8 bits of mantissa) and every product accumulated
//! in fp32. This is PyTorch's CPU `autocast(bfloat16)` numerics for a linear layer.
//! - `B`, a model weight, is rounded and packed once at load into panels of 32
//!   columns: for every pair of rows `(2q, 2q+1)` of `k`, 32 columns of two bf16
//!   (128 bytes, two 64-byte vectors; lane `j` holds `b[2q][j]` in its low half and
//!   `b[2q+1][j]` in its high half).
//! - `A`, the activations, is rounded at each call into the same pairs, one 32-bit
//!   word per pair of columns.
//!
//! The AVX-512 BF16 micro-kernel (`vdpbf16ps`: 32 bf16 products summed in pairs into
//! 16 fp32 lanes per instruction, twice the multiply-adds of an fp32 FMA) keeps an
//! 8 x 32 tile of `C` in sixteen registers and broadcasts each row's pair word; a
//! portable loop computes the same sums (to fp32 rounding) on other CPUs.
//!
//! On CPUs with AMX (Intel Sapphire Rapids and later), [`bgemm`] computes `C` in
//! blocks of 32 x 32 on the tile unit instead ([`has_amx`]): four 16 x 16 fp32
//! accumulator tiles, two 16 x 32 tiles of `A` and two 16-pair tiles of `B` per step
//! of 32 along `k`, each `tdpbf16ps` doing 8,192 multiply-adds. Both packings are
//! already the layouts the tiles load (a row of `A` is its bf16 values in order; a
//! pair row of a `B` panel is 16 columns of two bf16, 64 bytes), so the tiles read
//! them in place with a stride. Rows and columns past the last full block, and a `k`
//! that is not a multiple of 32, go to the AVX-512 kernel.
//!
//! One file per instruction set: `amx.rs` (tiles, the block product, the AMX routes of
//! [`bgemm`] and [`attention`]), `avx512_bf16.rs` (the micro-kernel and the rounding),
//! `portable.rs`.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
mod portable;

#[cfg(target_arch = "x86_64")]
pub use amx::amx_ceilings;

use crate::Cpu;

const NR: usize = 32;
const MR: usize = 8;
/// Most rows of A per block.
const MC: usize = 128;
/// Bytes of A per block (a share of L2).
const A_BLOCK_BYTES: usize = 256 * 1024;

/// 16 words of two bf16 each (low half: the even row of `k`) on a 64-byte boundary
/// (one AVX-512 register).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct V64([u32; 16]);

/// Two floats rounded to bf16 and packed in one word, `lo` in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// `x` rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as its bits.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff).wrapping_add((b >> 16) & 1) >> 16;
    // A NaN keeps its sign and a quiet mantissa bit (rounding could carry it to inf).
    let nan = (b >> 16) | 0x40;
    (if x.is_nan() { nan } else { rounded }) as u16
}

/// The fp32 value of bfloat16 bits.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Whether the active [`Cpu`] runs the AVX-512 BF16 kernel (AVX-512 F, BW and BF16, not
/// turned off by [`KernelOptions::no_bf16`](crate::KernelOptions::no_bf16) or
/// [`KernelOptions::no_avx512`](crate::KernelOptions::no_avx512)).
pub fn has_bf16() -> bool {
    Cpu::active().avx512_bf16()
}

/// Whether [`bgemm`] runs its full blocks on AMX: the active [`Cpu`] has AMX-TILE and
/// AMX-BF16 with the tile data state granted, and the AVX-512 BF16 kernel (which covers
/// the edges); [`KernelOptions::no_amx`](crate::KernelOptions::no_amx) says no.
pub fn has_amx() -> bool {
    Cpu::active().amx()
}

/// A `(k, n)` matrix rounded to bf16 and packed into 32-column panels of row pairs
/// (the last panel zero-padded, and an odd `k` padded with a zero row).
#[derive(Clone)]
pub struct BPackedB {
    k: usize,
    n: usize,
    /// `ceil(k / 2)`.
    pairs: usize,
    /// `ceil(n / 32)` panels of `pairs * 2` vectors.
    data: Vec<V64>,
}

impl BPackedB {
    /// Round and pack a row-major `(k, n)` matrix.
    pub fn pack(b: &[f32], k: usize, n: usize) -> Self {
        Self::pack_padded(b, k, n, k)
    }

    /// [`Self::pack`] of `b`'s `k` rows followed by zero rows up to `k_total` (`>= k`).
    fn pack_padded(b: &[f32], k: usize, n: usize, k_total: usize) -> Self {
        assert!(b.len() >= k * n && k_total >= k);
        let mut out = Self::zeroed(k_total, n);
        let (pairs, panels) = (out.pairs, n.div_ceil(NR));
        for (p, panel) in out.data.chunks_exact_mut(pairs * 2).enumerate().take(panels) {
            let c0 = p * NR;
            let w = NR.min(n - c0);
            // Pairs past `k`'s stay zero.
            for q in 0..k.div_ceil(2) {
                let r0 = &b[2 * q * n + c0..2 * q * n + c0 + w];
                // An odd `k` pairs its last row with zeros.
                let r1 = if 2 * q + 1 < k { &b[(2 * q + 1) * n + c0..(2 * q + 1) * n + c0 + w] } else { &[][..] };
                for j in 0..w {
                    panel[q * 2 + j / 16].0[j % 16] = pair(r0[j], r1.get(j).copied().unwrap_or(0.0));
                }
            }
        }
        out
    }

    /// Round and pack the transpose of a row-major `(n, k)` matrix (the `(k, n)`
    /// matrix `w^T`), without materialising it: lane `j` of pair `q` is the word of
    /// `w`'s row `j` at position `q`, the row rounded as [`BRows`] rounds one.
    pub fn pack_transposed(w: &[f32], n: usize, k: usize) -> Self {
        assert!(w.len() >= k * n);
        let mut out = Self::zeroed(k, n);
        let pairs = out.pairs;
        if pairs == 0 {
            return out;
        }
        let mut rows = BRows::default();
        rows.round(w, n, k);
        for (p, panel) in out.data.chunks_exact_mut(pairs * 2).enumerate() {
            let c0 = p * NR;
            for j in 0..NR.min(n - c0) {
                let src = &rows.words[(c0 + j) * pairs..(c0 + j + 1) * pairs];
                for (q, &word) in src.iter().enumerate() {
                    panel[q * 2 + j / 16].0[j % 16] = word;
                }
            }
        }
        out
    }

    fn zeroed(k: usize, n: usize) -> Self {
        let pairs = k.div_ceil(2);
        Self { k, n, pairs, data: vec![V64::default(); n.div_ceil(NR) * pairs * 2] }
    }

    /// Rows (`k`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (`n`).
    pub fn n(&self) -> usize {
        self.n
    }
}

/// Rows of `A` rounded to bf16 pairs: row `r` is `pairs` words, word `q` holding
/// `a[r][2q]` in its low half and `a[r][2q+1]` (or zero past `k`) in its high half.
#[derive(Default)]
pub struct BRows {
    words: Vec<u32>,
}

impl BRows {
    /// Round `a (m, k)`, reusing the buffer. A row's words are its bf16 values in
    /// order (little-endian), so with AVX-512 BF16 each 16 floats are one `vcvtneps2bf16`.
    pub fn round(&mut self, a: &[f32], m: usize, k: usize) {
        assert!(a.len() >= m * k);
        let pairs = k.div_ceil(2);
        self.words.clear();
        self.words.resize(m * pairs, 0);
        for (dst, row) in self.words.chunks_exact_mut(pairs.max(1)).zip(a.chunks_exact(k.max(1))).take(m) {
            round_row(row, dst);
        }
    }
}

/// Round one row into `row.len().div_ceil(2)` words of `dst` (an odd length pads
/// its last word with zero).
fn round_row(row: &[f32], dst: &mut [u32]) {
    let pairs = row.len().div_ceil(2);
    assert!(dst.len() >= pairs);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_bf16() {
        // SAFETY: the CPU has AVX-512 F/BW/BF16 (checked); `dst` has room for
        // `row.len()` bf16 (asserted).
        done = unsafe { avx512_bf16::round_bf16(row, dst) };
    }
    let mut src = row[done..].chunks_exact(2);
    for (w, pr) in dst[done / 2..].iter_mut().zip(&mut src) {
        *w = pair(pr[0], pr[1]);
    }
    if let [last] = src.remainder() {
        dst[pairs - 1] = pair(*last, 0.0);
    }
}

/// Scratch of [`attention`], reused between calls.
#[derive(Default)]
pub struct AttnScratch {
    q: BRows,
    scores: Vec<f32>,
    probs: Vec<u32>,
    inv: Vec<f32>,
    /// One block's unnormalised output (the AMX route).
    obuf: Vec<f32>,
}

/// One head of attention in bf16, `out (len, d) = softmax(q kᵀ) v`, with `q` (already
/// scaled), `k` and `v` row-major `(len, d)` and `softmax(row)` the caller's: it must
/// turn a row of scores into unnormalised weights and return their normaliser.
///
/// Eight query rows at a time: their scores against every key (one kernel call per
/// 32 keys), the softmax, the weights rounded to bf16 and their product with `v` all
/// stay in L1, so nothing of size `len²` is written (the plain route, [`bgemm`] twice,
/// writes and re-reads the whole `len x len` matrix per head).
///
/// With AMX ([`has_amx`]) and `d` a multiple of 32, 32 query rows at a time on the tile
/// unit instead (`amx::attention_amx`).
pub fn attention(q: &[f32], k: &[f32], v: &[f32], len: usize, d: usize, out: &mut [f32], s: &mut AttnScratch, softmax: impl Fn(&mut [f32]) -> f32) {
    attention_with(q, k, v, len, d, out, s, softmax, has_amx());
}

#[allow(clippy::too_many_arguments)]
/// [`attention`] on AMX when `amx` and the CPU has it, else on the AVX-512 BF16 kernel
/// where the active [`Cpu`] has it, else on the portable loop.
pub fn attention_with(q: &[f32], k: &[f32], v: &[f32], len: usize, d: usize, out: &mut [f32], s: &mut AttnScratch, softmax: impl Fn(&mut [f32]) -> f32, amx: bool) {
    assert!(q.len() >= len * d && k.len() >= len * d && v.len() >= len * d && out.len() >= len * d);
    if len == 0 || d == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if amx && Cpu::detected().amx() && d.is_multiple_of(2 * AMX_PAIRS) {
        // SAFETY: the CPU has AMX with tile data permitted (checked); shapes asserted.
        unsafe { amx::attention_amx(q, k, v, len, d, out, s, &softmax) };
        return;
    }
    let _ = amx;
    let simd = has_bf16();
    s.inv.resize(MR, 0.0);
    let kt = BPackedB::pack_transposed(k, len, d);
    let vb = BPackedB::pack(v, len, d);
    s.q.round(q, len, d);
    let (qpairs, kpanels) = (kt.pairs, len.div_ceil(NR));
    let (vpairs, vpanels) = (vb.pairs, d.div_ceil(NR));
    let lp = kpanels * NR;
    s.scores.resize(MR * lp, 0.0);
    s.probs.clear();
    s.probs.resize(MR * vpairs, 0);
    let qpad = vec![0u32; qpairs];
    let mut tile = [0f32; MR * NR];
    for r0 in (0..len).step_by(MR) {
        let rows = MR.min(len - r0);
        let mut ap = [qpad.as_ptr(); MR];
        for (r, a_r) in ap.iter_mut().enumerate().take(rows) {
            *a_r = s.q.words[(r0 + r) * qpairs..(r0 + r + 1) * qpairs].as_ptr();
        }
        for p in 0..kpanels {
            kernel(qpairs, &ap, &kt.data[p * qpairs * 2..(p + 1) * qpairs * 2], &mut tile, simd);
            store_tile(&mut s.scores, lp, 0, rows, p * NR, NR, &tile);
        }
        for r in 0..rows {
            let row = &mut s.scores[r * lp..r * lp + len];
            s.inv[r] = softmax(row);
            round_row(row, &mut s.probs[r * vpairs..(r + 1) * vpairs]);
        }
        // Rows past `rows` keep whatever they held: their products are never stored.
        let mut pp = [s.probs.as_ptr(); MR];
        for (r, p_r) in pp.iter_mut().enumerate() {
            *p_r = s.probs[r * vpairs..(r + 1) * vpairs].as_ptr();
        }
        for p in 0..vpanels {
            let (c0, w) = (p * NR, NR.min(d - p * NR));
            kernel(vpairs, &pp, &vb.data[p * vpairs * 2..(p + 1) * vpairs * 2], &mut tile, simd);
            for r in 0..rows {
                let (dst, inv) = (&mut out[(r0 + r) * d + c0..(r0 + r) * d + c0 + w], s.inv[r]);
                for (o, t) in dst.iter_mut().zip(&tile[r * NR..r * NR + w]) {
                    *o = t * inv;
                }
            }
        }
    }
}

/// `c (m, n) = bf16(a) · b` with fp32 sums; `a` is `(m, k)` row-major and `c` is
/// overwritten. `rows` is scratch for the rounded `a`.
pub fn bgemm(m: usize, a: &[f32], b: &BPackedB, c: &mut [f32], rows: &mut BRows) {
    rows.round(a, m, b.k);
    let kind = if has_amx() {
        Bf16Kernel::Amx
    } else if has_bf16() {
        Bf16Kernel::Avx512
    } else {
        Bf16Kernel::Portable
    };
    bgemm_with(m, rows, b, c, kind);
}

/// Which kernel [`bgemm_with`] runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bf16Kernel {
    /// Plain loops (any CPU).
    Portable,
    /// AVX-512 BF16, 8 x 32.
    Avx512,
    /// AMX for full 32 x 32 blocks, AVX-512 for the rest.
    Amx,
}

/// `c (m, n) = a · b` from rows already rounded, on `kind` (a kernel the CPU lacks runs
/// as the next it has: AMX, AVX-512 BF16, portable).
pub fn bgemm_with(m: usize, a: &BRows, b: &BPackedB, c: &mut [f32], kind: Bf16Kernel) {
    let (n, pairs) = (b.n, b.pairs);
    assert!(a.words.len() >= m * pairs && c.len() >= m * n, "bgemm: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if pairs == 0 {
        c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let simd = kind != Bf16Kernel::Portable;
    // Rows below `amx_rows` are done on the tiles (whole blocks of 32, `k` a multiple of 32).
    #[allow(unused_mut)]
    let mut amx_rows = 0;
    #[cfg(target_arch = "x86_64")]
    if kind == Bf16Kernel::Amx && Cpu::detected().amx() && pairs % AMX_PAIRS == 0 {
        amx_rows = m / AMX_ROWS * AMX_ROWS;
        if amx_rows > 0 {
            // SAFETY: the CPU has AMX-TILE/BF16 and the process may use tile data (checked);
            // `a` holds `m >= amx_rows` rows of `pairs` words and `c` `m * n` floats (asserted).
            unsafe { amx::bgemm_amx(amx_rows, a, b, c) };
        }
        let tail = m - amx_rows;
        if tail > 0 {
            // The last rows go through the tiles too, padded with zero rows to a whole
            // block: the AVX-512 kernel sums in another order, so a row's result would
            // otherwise depend on whether it fell into a block, that is on the batch it
            // came in. This way each row's result is the same in any batch.
            let mut pa = BRows { words: vec![0; AMX_ROWS * pairs] };
            pa.words[..tail * pairs].copy_from_slice(&a.words[amx_rows * pairs..m * pairs]);
            let mut pc = vec![0f32; AMX_ROWS * n];
            // SAFETY: as above; `pa` holds one block of `pairs` words per row, `pc` one block of `n` floats.
            unsafe { amx::bgemm_amx(AMX_ROWS, &pa, b, &mut pc) };
            c[amx_rows * n..m * n].copy_from_slice(&pc[..tail * n]);
            amx_rows = m;
        }
    }
    if amx_rows == m {
        return;
    }
    let panels = n.div_ceil(NR);
    let mc = ((A_BLOCK_BYTES / (4 * pairs)) / MR * MR).clamp(MR, MC);
    let mut tile = [0f32; MR * NR];
    let pad = vec![0u32; pairs];
    for i0 in (amx_rows..m).step_by(mc) {
        let rows_in_block = mc.min(m - i0);
        for p in 0..panels {
            let bp = &b.data[p * pairs * 2..(p + 1) * pairs * 2];
            let c0 = p * NR;
            let w = NR.min(n - c0);
            for r0 in (i0..i0 + rows_in_block).step_by(MR) {
                let rows = MR.min(i0 + rows_in_block - r0);
                let mut ap = [pad.as_ptr(); MR];
                for (r, a_r) in ap.iter_mut().enumerate().take(rows) {
                    *a_r = a.words[(r0 + r) * pairs..(r0 + r + 1) * pairs].as_ptr();
                }
                kernel(pairs, &ap, bp, &mut tile, simd);
                store_tile(c, n, r0, rows, c0, w, &tile);
            }
        }
    }
}

/// Rows of one AMX block (two 16-row tiles of `A`).
const AMX_ROWS: usize = 32;
/// Pairs of `k` per AMX step (a tile row of `A` is 32 bf16, 64 bytes).
const AMX_PAIRS: usize = 16;

/// Writes the first `rows` rows and `w` columns of `tile` into `c` at `(r0, c0)`. A
/// full-width row is a fixed-size copy (inline moves, not a `memcpy` call per row).
#[inline]
fn store_tile(c: &mut [f32], n: usize, r0: usize, rows: usize, c0: usize, w: usize, tile: &[f32; MR * NR]) {
    for r in 0..rows {
        let at = (r0 + r) * n + c0;
        if w == NR {
            let dst: &mut [f32; NR] = (&mut c[at..at + NR]).try_into().expect("NR columns");
            let src: &[f32; NR] = tile[r * NR..(r + 1) * NR].try_into().expect("NR columns");
            *dst = *src;
        } else {
            c[at..at + w].copy_from_slice(&tile[r * NR..r * NR + w]);
        }
    }
}
/// `tile (8, 32) = Σ_q a[r][q] · bp[q]` over `pairs` pairs of bf16, on the AVX-512 BF16
/// kernel when `simd` and the CPU has it, else the portable loop.
#[inline]
fn kernel(pairs: usize, ap: &[*const u32; MR], bp: &[V64], tile: &mut [f32; MR * NR], simd: bool) {
    assert!(bp.len() >= pairs * 2);
    #[cfg(target_arch = "x86_64")]
    if simd && Cpu::detected().avx512_bf16() {
        // SAFETY: the CPU has AVX-512 F/BW/BF16 (checked just above). Each `ap[r]`
        // points at `pairs` readable words (a row of `BRows` or the zero pad, sliced in
        // `bgemm_with`) and `bp` holds `2 * pairs` aligned vectors (asserted).
        unsafe { avx512_bf16::kernel_bf16(pairs, ap, bp, tile) };
        return;
    }
    let _ = simd;
    portable::kernel(pairs, ap, bp, tile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rel_error, rnd};

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        // Just above halfway rounds up.
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0 + 1.0 / 65536.0)), 1.0 + 1.0 / 128.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: goes up to even.
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY, "rounds up past the largest bf16");
        for i in 0..10_000 {
            let x = (i as f32 - 5000.0) * 0.37;
            assert!((from_bf16(to_bf16(x)) - x).abs() <= x.abs() / 256.0, "{x}");
        }
        // Rows (the vector path where the CPU has it, then the scalar tail) round the same
        // way, an odd length padding its last word with zero.
        let a: Vec<f32> = (0..2 * 37).map(|i| (i as f32 - 30.0) * 1.001_953_1 + 1.0 / 256.0).collect();
        let mut rows = BRows::default();
        rows.round(&a, 2, 37);
        assert_eq!(rows.words.len(), 2 * 19);
        for r in 0..2 {
            for t in 0..38 {
                let w = rows.words[r * 19 + t / 2];
                let h = if t % 2 == 0 { w as u16 } else { (w >> 16) as u16 };
                let want = if t < 37 { to_bf16(a[r * 37 + t]) } else { 0 };
                assert_eq!(h, want, "row {r} value {t}");
            }
        }
    }

    #[test]
    fn bf16_product_is_close_to_fp32_and_kernels_agree() {
        let mut s = 7u64;
        // (97, 384, 1152): three AMX row blocks and a tail of 1; (64, 64, 40): a partial
        // last panel through the AMX buffer; (40, 48, 32): a `k` AMX does not take.
        for &(m, k, n) in &[(1, 1, 1), (5, 7, 16), (9, 300, 40), (13, 257, 33), (97, 384, 1152), (20, 1536, 384), (64, 64, 40), (40, 48, 32), (160, 1536, 64)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd(&mut s) * 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd(&mut s) * 0.2).collect();
            let pb = BPackedB::pack(&b, k, n);
            // The same matrix packed from its transpose is the same packing.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let pt = BPackedB::pack_transposed(&bt, n, k);
            assert!(pt.data.iter().zip(&pb.data).all(|(x, y)| x.0 == y.0) && pt.data.len() == pb.data.len());
            // Packing with zero rows added is packing the matrix padded with zeros.
            let kz = k.next_multiple_of(32) + 2;
            let padded = BPackedB::pack_padded(&b, k, n, kz);
            let zeros = BPackedB::pack(&[b.clone(), vec![0.0; (kz - k) * n]].concat(), kz, n);
            assert!(padded.pairs == zeros.pairs && padded.data.len() == zeros.data.len());
            assert!(padded.data.iter().zip(&zeros.data).all(|(x, y)| x.0 == y.0));
            let mut ra = BRows::default();
            ra.round(&a, m, k);
            let mut portable = vec![f32::NAN; m * n];
            bgemm_with(m, &ra, &pb, &mut portable, Bf16Kernel::Portable);
            let mut fast = vec![f32::NAN; m * n];
            bgemm(m, &a, &pb, &mut fast, &mut BRows::default());
            let mut avx512 = vec![f32::NAN; m * n];
            bgemm_with(m, &ra, &pb, &mut avx512, if has_bf16() { Bf16Kernel::Avx512 } else { Bf16Kernel::Portable });
            if !has_bf16() {
                eprintln!("no AVX-512 BF16 here: only the portable kernel is checked");
            } else if !has_amx() {
                eprintln!("no AMX here: the AVX-512 BF16 and portable kernels are checked");
            }
            for i in 0..m {
                for j in 0..n {
                    // Exact sum of the bf16-rounded factors: both kernels are within fp32
                    // rounding of it.
                    let (mut exact, mut mag) = (0f64, 0f64);
                    for t in 0..k {
                        let p = from_bf16(to_bf16(a[i * k + t])) as f64 * from_bf16(to_bf16(b[t * n + j])) as f64;
                        exact += p;
                        mag += p.abs();
                    }
                    for (name, got) in [("portable", portable[i * n + j]), ("fast", fast[i * n + j]), ("avx512", avx512[i * n + j])] {
                        assert!((got as f64 - exact).abs() <= 2e-5 * mag + 1e-30, "{name} ({m},{k},{n}) at ({i},{j}): {got} vs {exact}");
                    }
                }
            }
            // Against the fp32 product: relative Frobenius error of bf16 rounding (~0.3 %).
            if k >= 32 {
                let e = rel_error(&fast, &a, &b, m, k, n);
                assert!(e < 0.01, "({m},{k},{n}): relative error {e}");
            }
        }
    }

    /// A row's product does not depend on the rows beside it: alone, in a tail, or in a
    /// whole block, it is the same to the bit (vectors stay the same however texts are
    /// batched).
    #[test]
    fn each_row_is_the_same_in_any_batch() {
        let mut s = 11u64;
        let (m, k, n) = (70, 384, 96);
        let a: Vec<f32> = (0..m * k).map(|_| rnd(&mut s)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rnd(&mut s) * 0.2).collect();
        let pb = BPackedB::pack(&b, k, n);
        let mut all = vec![0f32; m * n];
        bgemm(m, &a, &pb, &mut all, &mut BRows::default());
        for (r0, rows) in [(0, 1), (5, 3), (31, 2), (64, 6), (33, 37)] {
            let mut part = vec![0f32; rows * n];
            bgemm(rows, &a[r0 * k..(r0 + rows) * k], &pb, &mut part, &mut BRows::default());
            let same = part.iter().zip(&all[r0 * n..(r0 + rows) * n]).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "rows {r0}..{} differ when batched apart", r0 + rows);
        }
    }

    #[test]
    fn amx_attention_agrees_with_the_avx512_route() {
        if !has_amx() {
            eprintln!("no AMX here: nothing to compare");
            return;
        }
        let mut s = 11u64;
        let softmax = |row: &mut [f32]| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0.0;
            row.iter_mut().for_each(|v| {
                *v = (*v - m).exp();
                sum += *v;
            });
            1.0 / sum
        };
        for &(len, d) in &[(1, 32), (31, 32), (33, 64), (100, 32), (256, 32)] {
            let q: Vec<f32> = (0..len * d).map(|_| rnd(&mut s) * 0.7).collect();
            let k: Vec<f32> = (0..len * d).map(|_| rnd(&mut s) * 4.0).collect();
            let v: Vec<f32> = (0..len * d).map(|_| rnd(&mut s) * 2.0).collect();
            let (mut a, mut b) = (vec![f32::NAN; len * d], vec![f32::NAN; len * d]);
            attention_with(&q, &k, &v, len, d, &mut a, &mut AttnScratch::default(), softmax, true);
            attention_with(&q, &k, &v, len, d, &mut b, &mut AttnScratch::default(), softmax, false);
            for (x, y) in a.iter().zip(&b) {
                // Same rounding of every factor; only the fp32 summation order differs
                // (which may move a weight by one bf16 step).
                assert!((x - y).abs() < 1e-2, "len {len}, d {d}: AMX {x} vs AVX-512 {y}");
            }
        }
    }
}
