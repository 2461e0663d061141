//! The dot products on AVX2 (and FMA for `f32`).

use std::arch::x86_64::*;

/// `Σ a[i] b[i]` over equal lengths: 16 values a step into two 8-lane accumulators.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Chunks, not `ptr.add`: every load reads 8 floats from a chunk of at least 8.
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let (x, y) = (x.as_ptr(), y.as_ptr());
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(y), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x.wrapping_add(8)), _mm256_loadu_ps(y.wrapping_add(8)), s1);
    }
    let v = _mm256_add_ps(s0, s1);
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    let mut s = _mm_cvtss_f32(h);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `Σ a[i] b[i]` of `i8` vectors of equal length: 16 lanes sign-extended to i16, `vpmaddwd`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = _mm256_setzero_si256();
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.as_ptr() as *const __m128i));
        let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(y.as_ptr() as *const __m128i));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
    }
    let h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256::<1>(acc));
    let h = _mm_add_epi32(h, _mm_shuffle_epi32::<0b01_00_11_10>(h));
    let h = _mm_add_epi32(h, _mm_shuffle_epi32::<0b10_11_00_01>(h));
    let mut s = _mm_cvtsi128_si32(h);
    for (x, y) in ra.iter().zip(rb) {
        s += *x as i32 * *y as i32;
    }
    s
}
