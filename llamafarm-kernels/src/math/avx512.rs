//! The element-wise loops compiled in an AVX-512 context (16 lanes wide). Each is the
//! portable body, inlined into a function with the features enabled.

/// `body` compiled with AVX-512.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, DQ and VL.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(super) unsafe fn wide<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// [`super::add_rows`] with AVX-512: its own function rather than `wide`, as LLVM left a
/// closure around this loop out of line, compiled 8 lanes wide.
///
/// # Safety
/// As [`wide`].
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(super) unsafe fn add_rows(m: &mut [f32], b: &[f32], f: impl Fn(f32) -> f32) {
    super::add_rows_body(m, b, f)
}
