//! The int8 kernels on AVX2 (`vpmaddubsw` + `vpmaddwd`), the pass structure the AVX-VNNI
//! kernel shares, and the vectorised steps of the quantisers.
//!
//! `vpmaddubsw` saturates at i16, so weights packed for these kernels use **7 bits**
//! (-63..=63: `2 · 255 · 63 < 2^15`, so no pair ever saturates and the integer sums stay
//! exact). Activations multiplied with such weights are quantised to **7 bits** too
//! (0..=127; [`crate::KernelOptions::int8_act8`] keeps 8): then a pair is at most
//! `2 · 127 · 63 = 16002`, so two groups' `vpmaddubsw` results add in i16 (`vpaddw`)
//! before one `vpmaddwd` widens them, three multiply-pipe instructions per 64 products
//! instead of four, still exact (in eight 2 x 16 passes, so the two groups' weight
//! vectors fit the registers).

use super::{MR, NR, V64};
use std::arch::x86_64::*;

/// `tile (8, 32)` in passes of `R x 16` (`R` rows, 16 columns): per step of `G` groups of 4
/// bytes, each group's two 16-column weight vectors, and each of the `R` rows' 4 bytes of
/// each group broadcast to every lane; `step(acc, rows, weights)` adds one row's products
/// of the `G` groups with 8 columns to `acc`. The `2R` accumulators, the `2G` weight
/// vectors, the broadcast rows and the step's temporaries fit the 16 ymm registers (4 x 16
/// with one group a step, 2 x 16 with two). A last step short of `G` groups gets zero rows
/// and weights for the missing ones. Rows past `rows` (fewer than `R` of them) are
/// skipped. Inlined into each kernel, so it is compiled with that kernel's instruction set.
#[inline(always)]
pub(super) unsafe fn passes<const R: usize, const G: usize>(
    groups: usize,
    ap: &[*const u32; MR],
    rows: usize,
    bp: &[V64],
    tile: &mut [i32; MR * NR],
    step: impl Fn(__m256i, [__m256i; G], [__m256i; G]) -> __m256i,
) {
    let t = tile.as_mut_ptr();
    for half in 0..2 {
        for r0 in (0..rows.min(MR)).step_by(R) {
            let mut c = [[_mm256_setzero_si256(); 2]; R];
            // Bytes of this half's 16 columns: the second 64-byte vector of each group.
            let mut b = (bp.as_ptr() as *const u8).wrapping_add(half * 64);
            let mut a: [*const u32; R] = std::array::from_fn(|r| ap[r0 + r]);
            // One step of `here` (at most `G`) groups. Inlined into the loop below with
            // `here == G`, its group loops unroll and everything stays in registers.
            let mut step_groups = |here: usize| {
                let (mut b0, mut b1) = ([_mm256_setzero_si256(); G], [_mm256_setzero_si256(); G]);
                for g in 0..here.min(G) {
                    b0[g] = _mm256_load_si256(b.wrapping_add(g * 128) as *const __m256i);
                    b1[g] = _mm256_load_si256(b.wrapping_add(g * 128 + 32) as *const __m256i);
                }
                for r in 0..R {
                    // Each group's 4 bytes of the row in every lane (a float broadcast of the same bits).
                    let mut av = [_mm256_setzero_si256(); G];
                    for (g, v) in av.iter_mut().enumerate().take(here) {
                        *v = _mm256_castps_si256(_mm256_broadcast_ss(&*(a[r].wrapping_add(g) as *const f32)));
                    }
                    c[r][0] = step(c[r][0], av, b0);
                    c[r][1] = step(c[r][1], av, b1);
                    a[r] = a[r].wrapping_add(here);
                }
                b = b.wrapping_add(128 * here);
            };
            for _ in 0..groups / G {
                step_groups(G);
            }
            if !groups.is_multiple_of(G) {
                step_groups(groups % G);
            }
            for r in 0..R {
                let row = t.wrapping_add((r0 + r) * NR + half * 16);
                _mm256_storeu_si256(row as *mut __m256i, c[r][0]);
                _mm256_storeu_si256(row.wrapping_add(8) as *mut __m256i, c[r][1]);
            }
        }
    }
}

/// [`passes`] with `vpmaddubsw` (u8 · i8 pairs into i16), `vpmaddwd` by ones (pairs
/// of i16 into i32) and `vpaddd`: one of each per 32 products.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn kernel_avx2(groups: usize, ap: &[*const u32; MR], rows: usize, bp: &[V64], tile: &mut [i32; MR * NR]) {
    let ones = _mm256_set1_epi16(1);
    passes::<4, 1>(groups, ap, rows, bp, tile, |c, [av], [b]| _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b), ones)));
}

/// [`kernel_avx2`] for 7-bit activations: two groups' `vpmaddubsw` results are added in
/// i16 (`vpaddw`) before one `vpmaddwd`, so 64 products take three multiply-pipe
/// instructions instead of four. Exact because each pair is at most `2 · 127 · 63 = 16002`
/// in magnitude, so two of them stay below `2^15`. Passes of 2 x 16: four weight vectors
/// a step, and with 4 rows the 17 live vectors would spill one accumulator.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn kernel_avx2_7bit(groups: usize, ap: &[*const u32; MR], rows: usize, bp: &[V64], tile: &mut [i32; MR * NR]) {
    let ones = _mm256_set1_epi16(1);
    passes::<2, 2>(groups, ap, rows, bp, tile, |c, [a0, a1], [b0, b1]| {
        let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(a0, b0), _mm256_maddubs_epi16(a1, b1));
        _mm256_add_epi32(c, _mm256_madd_epi16(pairs, ones))
    });
}

/// The 8-wide steps of `quantize_symmetric`: `out[i] = round(row[i] · inv)` clamped to
/// `±levels` (ties to even, the default MXCSR mode of `cvtps`) over the leading multiple
/// of 8; returns `(values done, Σ out over them)`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_symmetric(row: &[f32], inv: f32, levels: f32, out: &mut [i8]) -> (usize, i32) {
    let n = row.len().min(out.len());
    let mut done = 0;
    let (vi, lo, hi) = (_mm256_set1_ps(inv), _mm256_set1_ps(-levels), _mm256_set1_ps(levels));
    let mut acc = _mm256_setzero_si256();
    while done + 8 <= n {
        let x = _mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().wrapping_add(done)), vi);
        let q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(x, lo), hi));
        acc = _mm256_add_epi32(acc, q);
        let p8 = _mm256_packs_epi16(_mm256_packs_epi32(q, q), _mm256_setzero_si256());
        let a = _mm_cvtsi128_si32(_mm256_castsi256_si128(p8)) as u32;
        let b = _mm_cvtsi128_si32(_mm256_extracti128_si256(p8, 1)) as u32;
        let o = out.as_mut_ptr().wrapping_add(done) as *mut u8;
        std::ptr::copy_nonoverlapping(a.to_le_bytes().as_ptr(), o, 4);
        std::ptr::copy_nonoverlapping(b.to_le_bytes().as_ptr(), o.wrapping_add(4), 4);
        done += 8;
    }
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
    (done, lanes.iter().sum::<i32>())
}

/// The 8-wide part of `min_max`: `(min, max)` of `lo`, `hi` and every whole chunk of 8.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn min_max(chunks: &mut std::slice::ChunksExact<'_, f32>, mut lo: f32, mut hi: f32) -> (f32, f32) {
    let (mut l, mut h) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for c in chunks {
        let x = _mm256_loadu_ps(c.as_ptr());
        l = _mm256_min_ps(l, x);
        h = _mm256_max_ps(h, x);
    }
    let (mut la, mut ha) = ([0f32; 8], [0f32; 8]);
    _mm256_storeu_ps(la.as_mut_ptr(), l);
    _mm256_storeu_ps(ha.as_mut_ptr(), h);
    lo = la.iter().fold(lo, |a, &b| a.min(b));
    hi = ha.iter().fold(hi, |a, &b| a.max(b));
    (lo, hi)
}

/// The vector steps of `quantize_row`: `out[i] = clamp(row[i] · inv + zr, 0, top)`
/// truncated, with fused multiply-adds, over the leading multiple of 8; returns how many.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quantize_row(row: &[f32], inv: f32, zr: f32, top: f32, out: &mut [u8]) -> usize {
    let n = row.len().min(out.len());
    let mut done = 0;
    let (vi, vz, v0, vtop) = (_mm256_set1_ps(inv), _mm256_set1_ps(zr), _mm256_setzero_ps(), _mm256_set1_ps(top));
    let q = |at: usize| {
        let x = _mm256_loadu_ps(row.as_ptr().wrapping_add(at));
        _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_fmadd_ps(x, vi, vz), v0), vtop))
    };
    // 32 values a step into one 32-byte store: the packs work within 128-bit halves,
    // leaving the 4-byte runs of values in the order 0-3, 8-11, 16-19, 24-27, 4-7,
    // 12-15, 20-23, 28-31, which one permute undoes.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    while done + 32 <= n {
        let ab = _mm256_packus_epi32(q(done), q(done + 8));
        let cd = _mm256_packus_epi32(q(done + 16), q(done + 24));
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
        _mm256_storeu_si256(out.as_mut_ptr().wrapping_add(done) as *mut __m256i, bytes);
        done += 32;
    }
    while done + 8 <= n {
        let q = q(done);
        let p16 = _mm256_packus_epi32(q, q);
        let p8 = _mm256_packus_epi16(p16, p16);
        let a = _mm_cvtsi128_si32(_mm256_castsi256_si128(p8)) as u32;
        let b = _mm_cvtsi128_si32(_mm256_extracti128_si256(p8, 1)) as u32;
        out[done..done + 4].copy_from_slice(&a.to_le_bytes());
        out[done + 4..done + 8].copy_from_slice(&b.to_le_bytes());
        done += 8;
    }
    done
}
