//! The GGUF block kernel on AVX2 with FMA: `vpmaddubsw` (unsigned times signed bytes,
//! summed in pairs into i16) then `vpmaddwd` by ones (pairs into i32). `Q4_1` nibbles
//! (at most 15) never saturate the pair sums; `Q8_0` codes are first unbiased to signed
//! values and multiplied sign-corrected (`vpsignb`), so no `128 · Σ x` term is added and
//! the activations' code sums put it back for the offset `m = -128 d`.

use super::{Group, QRow, QK, RG, TILE};
use std::arch::x86_64::*;

/// `vpmaddubsw` then `vpmaddwd` (`dp_avx2_signed` below, for byte codes).
#[inline(always)]
unsafe fn dp_avx2(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)))
}

/// A nibble block's dot products with the 16-bit pair sums of all eight vectors added
/// before one `vpmaddwd` widens them: a lane of the 16-bit sum holds 16 products of a
/// nibble (at most 15) and a code (at most 127 in magnitude), at most 30,480 in
/// magnitude, so it never wraps and the integers equal the per-vector widening's. Nine
/// multiply-pipe instructions per block and activation row instead of sixteen.
#[inline(always)]
unsafe fn dq4_avx2(w: &[__m256i; 8], x: &[i32; 8]) -> __m256i {
    let p = |c: usize| _mm256_maddubs_epi16(w[c], _mm256_set1_epi32(x[c]));
    let a = _mm256_add_epi16(_mm256_add_epi16(p(0), p(1)), _mm256_add_epi16(p(2), p(3)));
    let b = _mm256_add_epi16(_mm256_add_epi16(p(4), p(5)), _mm256_add_epi16(p(6), p(7)));
    _mm256_madd_epi16(_mm256_add_epi16(a, b), _mm256_set1_epi16(1))
}

/// Narrow byte codes' dot products (codes below 64 multiplied as they are): a 16-bit
/// pair sum is at most `2 · 63 · 127 = 16002` in magnitude, so two vectors' sums add in
/// 16 bits before `vpmaddwd` widens them, still exact. Elements `0..16` (vectors 0..4)
/// and `16..32` (4..8).
#[inline(always)]
unsafe fn dq8n_avx2(w: &[__m256i; 8], x: &[i32; 8]) -> (__m256i, __m256i) {
    let p = |c: usize| _mm256_maddubs_epi16(w[c], _mm256_set1_epi32(x[c]));
    let pair = |c: usize| _mm256_madd_epi16(_mm256_add_epi16(p(c), p(c + 1)), _mm256_set1_epi16(1));
    (_mm256_add_epi32(pair(0), pair(2)), _mm256_add_epi32(pair(4), pair(6)))
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

tile_kernel!(tile_avx2, "avx2,fma", dq4_avx2, unbias, dp_avx2_signed, dq8n_avx2, true);

/// Float weights (`K`: 0 `F32`, 1 `F16`, 2 `BF16`) times unquantised activations: eight
/// rows' values of a column converted to `f32` in one register, multiplied with the
/// column's broadcast activation into two chains (even and odd columns) per activation
/// row; the order of `portable::float_tile`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn float_tile<const T: usize, const K: u8>(w: &[u8], xs: &[&[f32]], acc: &mut [[f32; RG]; TILE]) {
    const { assert!(T >= 1 && T <= TILE) };
    let cols = xs[0].len();
    let eb = if K == 0 { 4 } else { 2 };
    assert!(xs.len() == T && xs.iter().all(|x| x.len() == cols) && cols.is_multiple_of(2) && w.len() == cols * RG * eb);
    let load = |c: usize| -> __m256 {
        let p = w.as_ptr().wrapping_add(c * RG * eb);
        match K {
            0 => _mm256_loadu_ps(p as *const f32),
            1 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)))),
        }
    };
    let xp: [*const f32; TILE] = std::array::from_fn(|t| xs[t.min(T - 1)].as_ptr());
    let mut even = [_mm256_setzero_ps(); TILE];
    let mut odd = [_mm256_setzero_ps(); TILE];
    let mut c = 0;
    while c < cols {
        let (w0, w1) = (load(c), load(c + 1));
        // One activation row (written out per row: a loop over `T` stays a loop, with the
        // sums in memory).
        macro_rules! act {
            ($t:literal) => {
                if $t < T {
                    even[$t] = _mm256_fmadd_ps(w0, _mm256_set1_ps(*xp[$t].wrapping_add(c)), even[$t]);
                    odd[$t] = _mm256_fmadd_ps(w1, _mm256_set1_ps(*xp[$t].wrapping_add(c + 1)), odd[$t]);
                }
            };
        }
        act!(0);
        act!(1);
        act!(2);
        act!(3);
        c += 2;
    }
    for t in 0..T {
        _mm256_storeu_ps(acc[t].as_mut_ptr(), _mm256_add_ps(even[t], odd[t]));
    }
}
