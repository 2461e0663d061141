//! Single-precision matrix products against weights packed once at load.
//!
//! `C (m, n) = A (m, k) · B (k, n)` where `B` is a model weight: it is packed into
//! panels of 16 columns (each `k x 16`, row after row) when the model loads, so no
//! call repacks it. The micro-kernel keeps a 6 x 16 tile of `C` in twelve AVX2
//! registers and, per step of `k`, loads two vectors of the panel and broadcasts six
//! values of `A` straight from its rows (no packing of `A` either), over the whole of
//! `k`, so each tile of `C` is written once (accumulating partial sums in `C` across
//! `k` blocks cost a quarter of the time in cache misses). Rows of `A` are taken in
//! blocks that stay in L2 while every panel passes over them.
//!
//! Paths, chosen at run time from the [`Cpu`]: `avx512` (AVX-512 F: the same tile, one
//! 16-lane register per row, even and odd steps of `k` in separate registers), `avx2`
//! (AVX2 with FMA, the tile above) and `portable` (the same tile in plain loops, unfused
//! multiply-adds).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use crate::Cpu;

const NR: usize = 16;
const MR: usize = 6;
/// Most rows of A per block.
const MC: usize = 96;
/// Bytes of A per block (a share of the 512 KB-1 MB L2).
const A_BLOCK_BYTES: usize = 192 * 1024;

/// Eight floats on a 32-byte boundary (one AVX register), so the kernel's loads are
/// aligned loads.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
pub(crate) struct V8(pub(crate) [f32; 8]);

/// A `(k, n)` matrix packed into 16-column panels (the last one zero-padded).
#[derive(Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// `ceil(n / 16)` panels of `k * 16` values (`k * 2` [`V8`]s).
    data: Vec<V8>,
}

impl PackedB {
    /// Pack a row-major `(k, n)` matrix.
    pub fn pack(b: &[f32], k: usize, n: usize) -> Self {
        assert!(b.len() >= k * n);
        let panels = n.div_ceil(NR);
        let mut data = vec![V8::default(); panels * k * 2];
        let fill = |p: usize, panel: &mut [V8]| {
            let c0 = p * NR;
            let w = NR.min(n - c0);
            for (kk, d) in panel.chunks_exact_mut(2).enumerate() {
                let src = &b[kk * n + c0..kk * n + c0 + w];
                if w == NR {
                    d[0].0.copy_from_slice(&src[..8]);
                    d[1].0.copy_from_slice(&src[8..]);
                } else {
                    for (j, &v) in src.iter().enumerate() {
                        d[j / 8].0[j % 8] = v;
                    }
                }
            }
        };
        Self::fill_panels(&mut data, k, fill);
        Self { k, n, data }
    }

    /// Pack the transpose of a row-major `(n, k)` matrix (a PyTorch `(out, in)`
    /// weight), i.e. the `(k, n)` matrix `w^T`, without materialising it.
    pub fn pack_transposed(w: &[f32], n: usize, k: usize) -> Self {
        assert!(w.len() >= k * n);
        let panels = n.div_ceil(NR);
        let mut data = vec![V8::default(); panels * k * 2];
        let fill = |p: usize, panel: &mut [V8]| {
            let c0 = p * NR;
            for j in 0..NR.min(n - c0) {
                let col = &w[(c0 + j) * k..(c0 + j + 1) * k];
                for (d, &v) in panel.chunks_exact_mut(2).zip(col) {
                    d[j / 8].0[j % 8] = v;
                }
            }
        };
        Self::fill_panels(&mut data, k, fill);
        Self { k, n, data }
    }

    /// Run `fill(panel index, panel)` over every panel, on the rayon pool when the
    /// matrix is large.
    fn fill_panels(data: &mut [V8], k: usize, fill: impl Fn(usize, &mut [V8]) + Sync) {
        if k == 0 {
            return;
        }
        if data.len() * 8 >= 1 << 17 && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            data.par_chunks_mut(k * 2).enumerate().for_each(|(p, panel)| fill(p, panel));
        } else {
            data.chunks_mut(k * 2).enumerate().for_each(|(p, panel)| fill(p, panel));
        }
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

/// `c (m, n) = a (m, k) · b`, all row-major and contiguous; `c` is overwritten.
pub fn gemm(m: usize, a: &[f32], b: &PackedB, c: &mut [f32]) {
    gemm_with(Cpu::active(), m, a, b, c)
}

/// [`gemm`] on the best path `cpu` allows (AVX-512 F, AVX2 with FMA, else portable).
pub fn gemm_with(cpu: Cpu, m: usize, a: &[f32], b: &PackedB, c: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    assert!(a.len() >= m * k && c.len() >= m * n, "gemm: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let panels = n.div_ceil(NR);
    // Rows per block: the block of A (mc x k) stays in L2 while every panel of B
    // passes over it; each panel (k x 16) stays in L2 across the block's row groups.
    let mc = ((A_BLOCK_BYTES / 4 / k) / MR * MR).clamp(MR, MC);
    let mut tile = [0.0f32; MR * NR];
    let mut pad: Vec<f32> = Vec::new();
    for i0 in (0..m).step_by(mc) {
        let rows_in_block = mc.min(m - i0);
        for p in 0..panels {
            let bp = &b.data[p * k * 2..(p + 1) * k * 2];
            let c0 = p * NR;
            let w = NR.min(n - c0);
            for r0 in (i0..i0 + rows_in_block).step_by(MR) {
                let rows = MR.min(i0 + rows_in_block - r0);
                // Row pointers of A; a short group reads zero rows from a pad.
                let mut ap = [std::ptr::null::<f32>(); MR];
                if rows < MR {
                    pad.clear();
                    pad.resize(MR * k, 0.0);
                    pad[..rows * k].copy_from_slice(&a[r0 * k..(r0 + rows) * k]);
                    for (r, a_r) in ap.iter_mut().enumerate() {
                        *a_r = pad[r * k..(r + 1) * k].as_ptr();
                    }
                } else {
                    for (r, a_r) in ap.iter_mut().enumerate() {
                        *a_r = a[(r0 + r) * k..(r0 + r + 1) * k].as_ptr();
                    }
                }
                kernel(cpu, k, &ap, bp, &mut tile);
                for r in 0..rows {
                    let at = (r0 + r) * n + c0;
                    if w == NR {
                        // A fixed-size copy: inline moves, not a `memcpy` call per row.
                        let dst: &mut [f32; NR] = (&mut c[at..at + NR]).try_into().expect("NR columns");
                        let src: &[f32; NR] = tile[r * NR..(r + 1) * NR].try_into().expect("NR columns");
                        *dst = *src;
                    } else {
                        c[at..at + w].copy_from_slice(&tile[r * NR..r * NR + w]);
                    }
                }
            }
        }
    }
}

/// `tile (6, 16) = sum_k a[r][k] * bp[k][..]` over `kc` steps, on `cpu`'s best path.
#[inline]
fn kernel(cpu: Cpu, kc: usize, ap: &[*const f32; MR], bp: &[V8], tile: &mut [f32; MR * NR]) {
    assert!(bp.len() >= kc * 2);
    #[cfg(target_arch = "x86_64")]
    if cpu.avx512() {
        // SAFETY: the CPU has AVX-512 F (a `Cpu` never holds a feature it lacks). Each
        // `ap[r]` points at `kc` readable floats (a row slice of A or the zero pad, checked
        // by the slicing in `gemm_with`), `bp` holds `2 * kc` `V8`s (asserted).
        unsafe { avx512::kernel(kc, ap, bp, tile) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if cpu.avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (a `Cpu` never holds a feature it lacks). Each
        // `ap[r]` points at `kc` readable floats (a row slice of A or the zero pad, checked
        // by the slicing in `gemm_with`), `bp` holds `2 * kc` aligned `V8`s (asserted).
        unsafe { avx2::kernel(kc, ap, bp, tile) };
        return;
    }
    let _ = cpu;
    portable::kernel(kc, ap, bp, tile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_naive_product_on_odd_shapes() {
        let mut s = 12345u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(m, k, n) in &[(1, 1, 1), (5, 7, 16), (6, 300, 40), (13, 257, 33), (97, 600, 48), (200, 384, 1152), (7, 1536, 384)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let pb = PackedB::pack(&b, k, n);
            let mut c = vec![f32::NAN; m * n];
            gemm(m, &a, &pb, &mut c);
            // The same matrix packed from its transpose gives the same product.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut c2 = vec![f32::NAN; m * n];
            gemm(m, &a, &PackedB::pack_transposed(&bt, n, k), &mut c2);
            assert_eq!(c, c2);
            // The portable path, and AVX2 on a CPU that also has AVX-512, give the same
            // product up to the fused roundings and the order of the sums.
            let mut cp = vec![f32::NAN; m * n];
            gemm_with(Cpu::portable(), m, &a, &pb, &mut cp);
            let no512 = Cpu::detected().restricted(&crate::KernelOptions { no_avx512: true, ..Default::default() });
            let mut c2 = vec![f32::NAN; m * n];
            gemm_with(no512, m, &a, &pb, &mut c2);
            for ((x, y), z) in c.iter().zip(&cp).zip(&c2) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "({m},{k},{n}): {x} vs portable {y}");
                assert!((z - y).abs() <= 1e-5 * (1.0 + y.abs()), "({m},{k},{n}): avx2 {z} vs portable {y}");
            }
            if !Cpu::detected().avx2_fma() {
                eprintln!("no AVX2/FMA here: only the portable path ran");
            } else if !Cpu::detected().avx512() {
                eprintln!("no AVX-512 here: the AVX2 and portable paths ran");
            }
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum();
                    let got = c[i * n + j] as f64;
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "({m},{k},{n}) at ({i},{j}): {got} vs {want}");
                }
            }
        }
    }
}
