//! Safe forms of `matrixmultiply`'s strided products: the same arguments, with slices in
//! place of pointers, checked to hold every element the strides reach.

/// Whether a `rows x cols` matrix with strides `rs`, `cs` (non-negative) fits in `len`.
fn fits(len: usize, rows: usize, cols: usize, rs: isize, cs: isize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    rs >= 0 && cs >= 0 && (rows - 1) * (rs as usize) + (cols - 1) * (cs as usize) < len
}

/// `c = alpha · a (m, k) · b (k, n) + beta · c` in `f64`, each matrix given by a slice
/// and its row and column strides (non-negative). Panics if a stride reaches past its
/// slice, or if `c`'s strides make two of its elements the same (zero strides).
#[allow(clippy::too_many_arguments)]
pub fn dgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    rsa: isize,
    csa: isize,
    b: &[f64],
    rsb: isize,
    csb: isize,
    beta: f64,
    c: &mut [f64],
    rsc: isize,
    csc: isize,
) {
    assert!(fits(a.len(), m, k, rsa, csa) && fits(b.len(), k, n, rsb, csb) && fits(c.len(), m, n, rsc, csc), "dgemm: strides past the buffers");
    assert!(m <= 1 || rsc != 0, "dgemm: rows of c alias");
    assert!(n <= 1 || csc != 0, "dgemm: columns of c alias");
    // SAFETY: every element the strides reach is inside its slice (checked above), and
    // `c` is borrowed mutably.
    unsafe { matrixmultiply::dgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc) }
}

/// [`dgemm`] in `f32`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    beta: f32,
    c: &mut [f32],
    rsc: isize,
    csc: isize,
) {
    assert!(fits(a.len(), m, k, rsa, csa) && fits(b.len(), k, n, rsb, csb) && fits(c.len(), m, n, rsc, csc), "sgemm: strides past the buffers");
    assert!(m <= 1 || rsc != 0, "sgemm: rows of c alias");
    assert!(n <= 1 || csc != 0, "sgemm: columns of c alias");
    // SAFETY: as in `dgemm`.
    unsafe { matrixmultiply::sgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn products_and_bounds() {
        let a = [1.0, 2.0, 3.0, 4.0]; // 2 x 2
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        super::dgemm(2, 2, 2, 1.0, &a, 2, 1, &b, 2, 1, 0.0, &mut c, 2, 1);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        let mut cs = [0f32; 4];
        super::sgemm(2, 2, 2, 1.0, &[1.0, 2.0, 3.0, 4.0], 1, 2, &[5.0, 6.0, 7.0, 8.0], 2, 1, 0.0, &mut cs, 2, 1);
        assert_eq!(cs, [26.0, 30.0, 38.0, 44.0]);
        assert!(std::panic::catch_unwind(|| super::dgemm(2, 2, 3, 1.0, &a, 2, 1, &b, 2, 1, 0.0, &mut [0.0; 6], 3, 1)).is_err());
    }
}
