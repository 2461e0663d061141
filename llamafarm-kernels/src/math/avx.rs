//! The 8-lane reductions with AVX.

use super::Fold;
use std::arch::x86_64::*;

/// Folds every whole chunk of 8 into 8 lanes (lane `i` takes element `i` of each chunk,
/// in order), starting from `fold`'s identity.
///
/// # Safety
/// The CPU must have AVX.
#[target_feature(enable = "avx")]
#[inline]
pub(super) unsafe fn fold8(chunks: &mut std::slice::ChunksExact<'_, f32>, fold: Fold) -> [f32; 8] {
    let mut a = _mm256_set1_ps(fold.init());
    for c in chunks {
        let x = _mm256_loadu_ps(c.as_ptr());
        a = match fold {
            Fold::Sum => _mm256_add_ps(a, x),
            Fold::Max => _mm256_max_ps(a, x),
        };
    }
    let mut acc = [0f32; 8];
    _mm256_storeu_ps(acc.as_mut_ptr(), a);
    acc
}
