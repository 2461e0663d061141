//! The GGUF block kernel on AVX-512 VNNI with VL: `vpdpbusd` on 256-bit registers (the
//! interleaved layout keeps eight rows in the eight 32-bit lanes; 512-bit registers would
//! need sixteen rows per group), one instruction per four codes of each of the eight rows.
//! Weight codes are unsigned (`Q4_1` nibbles, `Q8_0` codes stored plus 128), activation
//! codes signed, so `vpdpbusd` takes them as they are; the `128 · Σ x` the biased `Q8_0`
//! codes add is cancelled by their offset `m = -128 d`.

use super::{Group, QRow, QK, RG, TILE};
use std::arch::x86_64::*;

/// `vpdpbusd`: unsigned times signed bytes, four per lane, summed into `i32`.
#[target_feature(enable = "avx512vnni,avx512vl")]
#[inline]
unsafe fn dp_vnni(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, w, x)
}

/// Narrow byte codes: `vpdpbusd` takes them as it takes any unsigned codes (two chains,
/// elements `0..16` and `16..32`).
#[target_feature(enable = "avx512vnni,avx512vl")]
#[inline]
unsafe fn dq8n_vnni(w: &[__m256i; 8], x: &[i32; 8]) -> (__m256i, __m256i) {
    let bc = |c: usize| _mm256_set1_epi32(x[c]);
    let z = _mm256_setzero_si256();
    let (mut s0, mut s1) = (dp_vnni(z, w[0], bc(0)), dp_vnni(z, w[4], bc(4)));
    s0 = dp_vnni(s0, w[1], bc(1));
    s1 = dp_vnni(s1, w[5], bc(5));
    s0 = dp_vnni(s0, w[2], bc(2));
    s1 = dp_vnni(s1, w[6], bc(6));
    s0 = dp_vnni(s0, w[3], bc(3));
    s1 = dp_vnni(s1, w[7], bc(7));
    (s0, s1)
}

/// A nibble block's dot products: the two halves' chains, added.
#[target_feature(enable = "avx512vnni,avx512vl")]
#[inline]
unsafe fn dq4_vnni(w: &[__m256i; 8], x: &[i32; 8]) -> __m256i {
    let (s0, s1) = dq8n_vnni(w, x);
    _mm256_add_epi32(s0, s1)
}

#[inline(always)]
fn keep(w: __m256i) -> __m256i {
    w
}

tile_kernel!(tile_vnni, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma", dq4_vnni, keep, dp_vnni, dq8n_vnni, false);
