//! The bf16 micro-kernel on AVX-512 BF16 (`vdpbf16ps`: 32 bf16 products summed in pairs
//! into 16 fp32 lanes per instruction, twice the multiply-adds of an fp32 FMA): an 8 x 32
//! tile of `C` in sixteen registers, each row's pair word broadcast; and the rounding of
//! 16 floats at a time (`vcvtneps2bf16`).

use super::{MR, NR, V64};
use std::arch::x86_64::*;

/// Rounds the leading multiple of 16 of `row` into `dst` (bf16 values in order);
/// returns how many floats it did.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn round_bf16(row: &[f32], dst: &mut [u32]) -> usize {
    let n16 = row.len() / 16 * 16;
    assert!(dst.len() * 2 >= n16);
    let (src, out) = (row.as_ptr(), dst.as_mut_ptr() as *mut __m256i);
    for i in 0..n16 / 16 {
        let v = _mm512_loadu_ps(src.add(i * 16));
        // `__m256bh` and `__m256i` are the same 32 bytes.
        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
        _mm256_storeu_si256(out.add(i), h);
    }
    n16
}

/// `tile (8, 32) = Σ_q a[r][q] · bp[q]` over `pairs` pairs of bf16.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and BF16; each `ap[r]` must point at `pairs` readable
/// words and `bp` hold `2 * pairs` aligned vectors.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn kernel_bf16(pairs: usize, ap: &[*const u32; MR], bp: &[V64], tile: &mut [f32; MR * NR]) {
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    let mut b = bp.as_ptr();
    let mut a = *ap;
    for _ in 0..pairs {
        // Aligned loads and pointer bumps only. `__m512i` and `__m512bh` are the same
        // 64 bytes; the transmutes reinterpret them.
        let b0: __m512bh = std::mem::transmute(_mm512_load_si512(b as *const __m512i));
        let b1: __m512bh = std::mem::transmute(_mm512_load_si512(b.wrapping_add(1) as *const __m512i));
        for r in 0..MR {
            // The row's pair word in all 16 lanes (a float broadcast of the same bits).
            let av: __m512bh = std::mem::transmute(_mm512_broadcastss_ps(_mm_load_ss(a[r] as *const f32)));
            c[r][0] = _mm512_dpbf16_ps(c[r][0], av, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], av, b1);
            a[r] = a[r].wrapping_add(1);
        }
        b = b.wrapping_add(2);
    }
    let t = tile.as_mut_ptr();
    for r in 0..MR {
        _mm512_storeu_ps(t.wrapping_add(r * NR), c[r][0]);
        _mm512_storeu_ps(t.wrapping_add(r * NR + 16), c[r][1]);
    }
}
