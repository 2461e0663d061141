//! The fp32 micro-kernel in plain loops (any CPU).

use super::{MR, NR, V8};

/// `tile (6, 16) = sum_k a[r][k] * bp[k][..]` over `kc` steps; each `ap[r]` points at
/// `kc` readable floats (the caller's contract, see `gemm_with`).
pub(super) fn kernel(kc: usize, ap: &[*const f32; MR], bp: &[V8], tile: &mut [f32; MR * NR]) {
    tile.iter_mut().for_each(|v| *v = 0.0);
    for kk in 0..kc {
        let (b0, b1) = (&bp[kk * 2].0, &bp[kk * 2 + 1].0);
        for r in 0..MR {
            // SAFETY: `ap[r]` points at `kc` readable floats (see `gemm_with`).
            let av = unsafe { *ap[r].wrapping_add(kk) };
            for j in 0..NR {
                let bj = if j < 8 { b0[j] } else { b1[j - 8] };
                tile[r * NR + j] += av * bj;
            }
        }
    }
}
