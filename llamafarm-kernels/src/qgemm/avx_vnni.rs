//! The int8 kernel on AVX-VNNI, the VEX-encoded 256-bit `vpdpbusd` of Intel's Alder Lake
//! and later client CPUs (which have no AVX-512): the AVX2 kernel's four 4 x 16 passes with
//! one instruction doing what `vpmaddubsw` + `vpmaddwd` + `vpaddd` do, without saturation,
//! so it takes the full 8-bit weights.

use super::avx2::passes;
use super::{MR, NR, V64};
use std::arch::x86_64::*;

/// [`passes`](super::avx2::passes) with one AVX-VNNI `vpdpbusd` in place of `vpmaddubsw` + `vpmaddwd` +
/// `vpaddd` (no i16 stage, so no saturation: any 8-bit weights are exact).
#[target_feature(enable = "avx2,avxvnni")]
pub(super) unsafe fn kernel_avx_vnni(groups: usize, ap: &[*const u32; MR], rows: usize, bp: &[V64], tile: &mut [i32; MR * NR]) {
    passes::<4, 1>(groups, ap, rows, bp, tile, |c, [av], [b]| _mm256_dpbusd_avx_epi32(c, av, b));
}
