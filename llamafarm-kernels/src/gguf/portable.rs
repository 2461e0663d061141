//! The GGUF block kernel in plain Rust: the SIMD kernels' operations in the same order,
//! so the same results bit for bit.

use super::{Group, QRow, QK, RG, TILE};

/// The kernels' arithmetic in plain Rust (the same operations in the same order, so
/// the same results bit for bit).
pub(super) fn tile(g: &Group<'_>, acts: &[QRow<'_>], acc: &mut [[f32; RG]; TILE]) {
    let gbb = if g.q8 { QK * RG } else { 16 * RG };
    for (b, w) in g.qs.chunks_exact(gbb).enumerate() {
        for (a, out) in acts.iter().zip(acc.iter_mut()) {
            let x = &a.qs[b * QK..(b + 1) * QK];
            for j in 0..RG {
                let mut s = 0i32;
                for c in 0..8 {
                    for i in 0..4 {
                        let q = if g.q8 {
                            w[c * 32 + j * 4 + i]
                        } else {
                            let byte = w[(c % 4) * 32 + j * 4 + i];
                            if c < 4 {
                                byte & 15
                            } else {
                                byte >> 4
                            }
                        };
                        s += q as i32 * x[c * 4 + i] as i32;
                    }
                }
                let (dw, mw) = (g.d[b * RG + j], g.m[b * RG + j]);
                out[j] = (s as f32).mul_add(dw * a.d[b], out[j]);
                out[j] = mw.mul_add(a.s[b], out[j]);
            }
        }
    }
}
