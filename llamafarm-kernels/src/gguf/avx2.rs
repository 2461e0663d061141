//! The GGUF block kernel on AVX2 with FMA: `vpmaddubsw` (unsigned times signed bytes,
//! summed in pairs into i16) then `vpmaddwd` by ones (pairs into i32). `Q4_1` nibbles
//! (at most 15) never saturate the pair sums; `Q8_0` codes are first unbiased to signed
//! values and multiplied sign-corrected (`vpsignb`), so no `128 · Σ x` term is added and
//! the activations' code sums put it back for the offset `m = -128 d`.

use super::{Group, QRow, QK, RG, TILE};
use std::arch::x86_64::*;

/// `vpmaddubsw` then `vpmaddwd`: nibbles (at most 15) times codes (at most 127 in
/// magnitude) cannot saturate the 16-bit pair sums.
#[inline(always)]
unsafe fn dp_avx2(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)))
}

/// Biased `Q8_0` codes back to signed ones.
#[inline(always)]
unsafe fn unbias(w: __m256i) -> __m256i {
    _mm256_xor_si256(w, _mm256_set1_epi8(-128))
}

/// Signed times signed through `vpmaddubsw`: |w| times x with w's sign (|w| <= 128
/// and |x| <= 127, so the pair sums stay within `i16`).
#[inline(always)]
unsafe fn dp_avx2_signed(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    dp_avx2(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

tile_kernel!(tile_avx2, "avx2,fma", dp_avx2, unbias, dp_avx2_signed, true);
