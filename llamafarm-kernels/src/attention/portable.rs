//! The attention products in plain loops (fused multiply-adds, as the AVX2 path).

/// `acc[i][..] = sum_s a[s][i] * b[s][..]` over `steps` steps: `a` holds `MR` values per
/// step, `b` `NR` consecutive values per step, `stride` apart.
pub(super) fn block<const MR: usize, const NR: usize>(a: &[f32], b: &[f32], stride: usize, steps: usize, acc: &mut [[f32; NR]; MR]) {
    *acc = [[0f32; NR]; MR];
    for s in 0..steps {
        let (a_s, b_s) = (&a[s * MR..(s + 1) * MR], &b[s * stride..s * stride + NR]);
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = a_s[i].mul_add(b_s[j], acc[i][j]);
            }
        }
    }
}
