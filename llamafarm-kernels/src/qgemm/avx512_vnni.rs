//! The int8 kernel on AVX-512 VNNI (`vpdpbusd`: 64 u8 x i8 products summed into 16 i32
//! lanes per instruction, four times the multiply-adds of an fp32 FMA): an 8 x 32
//! micro-kernel over panels of 4-byte groups, two 64-byte weight vectors and eight row
//! broadcasts per group.

use super::{MR, NR, V64};
use std::arch::x86_64::*;

/// `tile (8, 32) = Σ_g a[r][g] · bp[g]` over `groups` groups of 4 bytes.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI; each `ap[r]` must point at `groups`
/// readable words and `bp` hold `2 * groups` aligned vectors.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn kernel_vnni(groups: usize, ap: &[*const u32; MR], bp: &[V64], tile: &mut [i32; MR * NR]) {
    let mut c = [[_mm512_setzero_si512(); 2]; MR];
    let mut b = bp.as_ptr();
    let mut a = *ap;
    for _ in 0..groups {
        // Aligned loads and pointer bumps only: debug builds add no checks that spill.
        let b0 = _mm512_load_si512(b as *const __m512i);
        let b1 = _mm512_load_si512(b.wrapping_add(1) as *const __m512i);
        for r in 0..MR {
            // Broadcast the row's 4 bytes to all 16 lanes (a float load of the same bits).
            let av = _mm512_castps_si512(_mm512_broadcastss_ps(_mm_load_ss(a[r] as *const f32)));
            c[r][0] = _mm512_dpbusd_epi32(c[r][0], av, b0);
            c[r][1] = _mm512_dpbusd_epi32(c[r][1], av, b1);
            a[r] = a[r].wrapping_add(1);
        }
        b = b.wrapping_add(2);
    }
    let t = tile.as_mut_ptr();
    for r in 0..MR {
        _mm512_storeu_si512(t.wrapping_add(r * NR) as *mut __m512i, c[r][0]);
        _mm512_storeu_si512(t.wrapping_add(r * NR + 16) as *mut __m512i, c[r][1]);
    }
}
