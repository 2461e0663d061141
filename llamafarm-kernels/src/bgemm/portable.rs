//! The bf16 micro-kernel in plain loops (any CPU): the same sums to fp32 rounding.

use super::{from_bf16, MR, NR, V64};

/// `tile (8, 32) = Σ_q a[r][q] · bp[q]` over `pairs` pairs of bf16; each `ap[r]` points
/// at `pairs` readable words (the caller's contract, see `bgemm_with`).
pub(super) fn kernel(pairs: usize, ap: &[*const u32; MR], bp: &[V64], tile: &mut [f32; MR * NR]) {
    tile.iter_mut().for_each(|v| *v = 0.0);
    for q in 0..pairs {
        let (b0, b1) = (&bp[q * 2].0, &bp[q * 2 + 1].0);
        for r in 0..MR {
            // SAFETY: `ap[r]` points at `pairs` readable words (see `bgemm_with`).
            let aw = unsafe { ap[r].add(q).read() };
            let (lo, hi) = (from_bf16(aw as u16), from_bf16((aw >> 16) as u16));
            let row = &mut tile[r * NR..(r + 1) * NR];
            for (j, t) in row.iter_mut().enumerate() {
                let bw = if j < 16 { b0[j] } else { b1[j - 16] };
                *t += lo * from_bf16(bw as u16) + hi * from_bf16((bw >> 16) as u16);
            }
        }
    }
}
