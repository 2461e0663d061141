//! The fp32 micro-kernel on AVX2 with FMA: a 6 x 16 tile of `C` in twelve registers;
//! per step of `k`, two aligned loads of the panel and six broadcasts of `A`.

use super::{MR, NR, V8};
use std::arch::x86_64::*;

/// `tile (6, 16) = sum_k a[r][k] * bp[k][..]` over `kc` steps.
///
/// # Safety
/// The CPU must have AVX2 and FMA. Each `ap[r]` must point at `kc` readable floats and
/// `bp` hold `2 * kc` vectors. The loop only bumps pointers and uses aligned loads.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel(kc: usize, ap: &[*const f32; MR], bp: &[V8], tile: &mut [f32; MR * NR]) {
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    let mut b = bp.as_ptr() as *const f32;
    let mut a = *ap;
    for _ in 0..kc {
        let b0 = _mm256_load_ps(b);
        let b1 = _mm256_load_ps(b.wrapping_add(8));
        for r in 0..MR {
            let av = _mm256_broadcastss_ps(_mm_load_ss(a[r]));
            c[r][0] = _mm256_fmadd_ps(av, b0, c[r][0]);
            c[r][1] = _mm256_fmadd_ps(av, b1, c[r][1]);
            a[r] = a[r].wrapping_add(1);
        }
        b = b.wrapping_add(NR);
    }
    let t = tile.as_mut_ptr();
    for r in 0..MR {
        _mm256_storeu_ps(t.wrapping_add(r * NR), c[r][0]);
        _mm256_storeu_ps(t.wrapping_add(r * NR + 8), c[r][1]);
    }
}
