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

#[inline(always)]
fn keep(w: __m256i) -> __m256i {
    w
}

tile_kernel!(tile_vnni, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma", dp_vnni, keep, dp_vnni, false);
