//! The fp32 micro-kernel on AVX-512 F: a 6 x 16 tile of `C`, one 16-lane register per
//! row, held twice (even and odd steps of `k`, summed at the end) so twelve independent
//! multiply-add chains keep both FMA units busy; per pair of steps, two loads of the
//! panel and twelve broadcasts of `A`.

use super::{MR, NR, V8};
use std::arch::x86_64::*;

/// `tile (6, 16) = sum_k a[r][k] * bp[k][..]` over `kc` steps.
///
/// # Safety
/// The CPU must have AVX-512 F. Each `ap[r]` must point at `kc` readable floats and `bp`
/// hold `2 * kc` vectors. The loop only bumps pointers and uses unaligned loads.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel(kc: usize, ap: &[*const f32; MR], bp: &[V8], tile: &mut [f32; MR * NR]) {
    let mut even = [_mm512_setzero_ps(); MR];
    let mut odd = [_mm512_setzero_ps(); MR];
    let mut b = bp.as_ptr() as *const f32;
    let mut a = *ap;
    for _ in 0..kc / 2 {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.wrapping_add(NR));
        for r in 0..MR {
            even[r] = _mm512_fmadd_ps(_mm512_set1_ps(*a[r]), b0, even[r]);
            odd[r] = _mm512_fmadd_ps(_mm512_set1_ps(*a[r].wrapping_add(1)), b1, odd[r]);
            a[r] = a[r].wrapping_add(2);
        }
        b = b.wrapping_add(2 * NR);
    }
    if kc % 2 == 1 {
        let b0 = _mm512_loadu_ps(b);
        for r in 0..MR {
            even[r] = _mm512_fmadd_ps(_mm512_set1_ps(*a[r]), b0, even[r]);
        }
    }
    let t = tile.as_mut_ptr();
    for r in 0..MR {
        _mm512_storeu_ps(t.wrapping_add(r * NR), _mm512_add_ps(even[r], odd[r]));
    }
}
