//! The GGUF block kernel in plain Rust: the SIMD kernels' operations in the same order,
//! so the same results bit for bit.

use super::{Group, Kind, QRow, QK, RG, TILE};

/// The kernels' arithmetic in plain Rust (the same operations in the same order, so
/// the same results bit for bit).
pub(super) fn tile(g: &Group<'_>, acts: &[QRow<'_>], acc: &mut [[f32; RG]; TILE]) {
    let gbb = if g.q8 { QK * RG } else { 16 * RG };
    for (b, w) in g.qs.chunks_exact(gbb).enumerate() {
        for (a, out) in acts.iter().zip(acc.iter_mut()) {
            let x = &a.qs[b * QK..(b + 1) * QK];
            for j in 0..RG {
                // Elements 0..16 and 16..32.
                let (mut s0, mut s1) = (0i32, 0i32);
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
                        let p = q as i32 * x[c * 4 + i] as i32;
                        if c < 4 {
                            s0 += p;
                        } else {
                            s1 += p;
                        }
                    }
                }
                let (dw, mw) = (g.d[b * RG + j], g.m[b * RG + j]);
                if g.halves {
                    let (dw2, mw2) = (g.d2[b * RG + j], g.m2[b * RG + j]);
                    out[j] = (s0 as f32).mul_add(dw * a.d[b], out[j]);
                    out[j] = (s1 as f32).mul_add(dw2 * a.d[b], out[j]);
                    out[j] = mw.mul_add(a.s_lo[b], out[j]);
                    out[j] = mw2.mul_add(a.s_hi[b], out[j]);
                } else {
                    out[j] = ((s0 + s1) as f32).mul_add(dw * a.d[b], out[j]);
                    out[j] = mw.mul_add(a.s[b], out[j]);
                }
            }
        }
    }
}

/// The float kernel's arithmetic in plain Rust: per activation row and weight row, fused
/// multiply-adds of even columns into one sum and odd ones into another, then their sum
/// (the SIMD kernel's order, so the same results bit for bit).
pub(super) fn float_tile(kind: Kind, w: &[u8], xs: &[&[f32]], acc: &mut [[f32; RG]; TILE]) {
    for (x, out) in xs.iter().zip(acc.iter_mut()) {
        let mut sums = [[0f32; RG]; 2];
        for (c, &xc) in x.iter().enumerate() {
            for (j, s) in sums[c % 2].iter_mut().enumerate() {
                *s = kind.float_at(w, c * RG + j).mul_add(xc, *s);
            }
        }
        for (j, o) in out.iter_mut().enumerate() {
            *o = sums[0][j] + sums[1][j];
        }
    }
}
