//! The int8 products in plain loops (any CPU): the same integers as every SIMD kernel.

use super::{MR, NR, V64};

/// `tile (8, 32) = Σ_g a[r][g] · bp[g]` over `groups` groups of 4 bytes; each `ap[r]`
/// points at `groups` readable words (the caller's contract, see `qgemm_with`).
pub(super) fn kernel(groups: usize, ap: &[*const u32; MR], bp: &[V64], tile: &mut [i32; MR * NR]) {
    tile.iter_mut().for_each(|v| *v = 0);
    for g in 0..groups {
        let (b0, b1) = (&bp[g * 2].0, &bp[g * 2 + 1].0);
        for r in 0..MR {
            // SAFETY: `ap[r]` points at `groups` readable, aligned words (see `qgemm_with`).
            let av = unsafe { ap[r].wrapping_add(g).read() }.to_le_bytes();
            let row = &mut tile[r * NR..(r + 1) * NR];
            for j in 0..NR {
                let bq = if j < 16 { &b0[j * 4..j * 4 + 4] } else { &b1[(j - 16) * 4..(j - 16) * 4 + 4] };
                row[j] += (0..4).map(|t| av[t] as i32 * bq[t] as i32).sum::<i32>();
            }
        }
    }
}
