//! The attention products on AVX2 with FMA: `MR x NR` accumulators (at most eight
//! 8-float registers), one broadcast of `a` times `NR / 8` loads of `b` per step.

use std::arch::x86_64::*;

/// `acc[i][..] = sum_s a[s][i] * b[s][..]` over `steps` steps: `a` holds `MR` values
/// per step, `b` `NR` consecutive values per step, `stride` apart. Both attention
/// halves are this product (scores: queries times key rows; weighted values:
/// weights times value rows).
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must have `steps * MR` values and each `b + s * stride` `NR` (a multiple of 8).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn block<const MR: usize, const NR: usize>(a: *const f32, b: *const f32, stride: usize, steps: usize, acc: &mut [[f32; NR]; MR]) {
    // At most 8 accumulators (MR * NR / 8), unrolled by the `act!` pattern below: the
    // bounds are constants, so every branch but the live ones folds away.
    let mut c = [_mm256_setzero_ps(); 8];
    let nv = NR / 8;
    const { assert!(MR * NR <= 64 && NR.is_multiple_of(8)) };
    for s in 0..steps {
        let bs = b.wrapping_add(s * stride);
        let a_s = a.wrapping_add(s * MR);
        macro_rules! lane {
            ($k:literal) => {
                if $k < MR * nv {
                    let (i, v) = ($k / nv, $k % nv);
                    let bv = _mm256_loadu_ps(bs.wrapping_add(8 * v));
                    c[$k] = _mm256_fmadd_ps(_mm256_set1_ps(a_s.wrapping_add(i).read()), bv, c[$k]);
                }
            };
        }
        lane!(0);
        lane!(1);
        lane!(2);
        lane!(3);
        lane!(4);
        lane!(5);
        lane!(6);
        lane!(7);
    }
    for i in 0..MR {
        for v in 0..nv {
            _mm256_storeu_ps(acc[i].as_mut_ptr().wrapping_add(8 * v), c[i * nv + v]);
        }
    }
}
