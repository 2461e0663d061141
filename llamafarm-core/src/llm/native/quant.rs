//! Quantised weight matrices and their dot-product kernels.
//!
//! Weights keep the GGUF's own 32-element blocks, repacked at load so a kernel reads
//! nibbles or bytes from one array and the block scales (already `f32`) from another:
//! - `Q4_1`: `x = d * q + m`, `q` in `0..16` (two per byte: element `j` in the low
//!   nibble of byte `j`, element `j + 16` in its high nibble);
//! - `Q8_0`: `x = d * q`, `q` an `i8`.
//!
//! Every other GGUF type is dequantised at load (candle's reference code) and
//! re-quantised to `Q8_0`, a finer grid than any 4-6 bit source.
//!
//! Activations are quantised per 32-element block to `i8` with an `f32` scale and the
//! block's sum of codes (llama.cpp's `Q8_1`), so a `Q4_1` dot product is
//! `sum_b d_w d_a (q_w . q_a) + m_w s_a` and a `Q8_0` one `sum_b d_w d_a (q_w . q_a)`:
//! llama.cpp's arithmetic. The inner `q_w . q_a` is exact integer arithmetic; on
//! x86-64 with AVX2 it is `vpmaddubsw` (unsigned nibbles times signed codes, which
//! cannot saturate) and `vpmaddwd`, everywhere else a portable loop with the same result.

use super::team::{share, Disjoint, Team};

/// Elements per block.
pub const QK: usize = 32;

/// IEEE half to single precision (GGUF block scales).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// How a matrix's blocks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 4-bit codes with a scale and a minimum per block.
    Q4_1,
    /// 8-bit codes with a scale per block.
    Q8_0,
}

/// A `rows x cols` weight matrix (one output per row; `cols` a multiple of 32).
pub struct QMatrix {
    /// Block type.
    pub kind: Kind,
    /// Outputs.
    pub rows: usize,
    /// Inputs.
    pub cols: usize,
    /// Codes, row-major: `cols / 2` bytes per row for `Q4_1`, `cols` for `Q8_0`.
    qs: Vec<u8>,
    /// Per-block scale, `rows * cols / 32`.
    d: Vec<f32>,
    /// Per-block minimum (`Q4_1` only).
    m: Vec<f32>,
}

impl QMatrix {
    /// From GGUF `Q4_1` blocks (20 bytes each: f16 d, f16 m, 16 code bytes).
    pub fn from_q4_1(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        let nb = rows * cols / QK;
        if cols % QK != 0 || bytes.len() != nb * 20 {
            return None;
        }
        let (mut qs, mut d, mut m) = (Vec::with_capacity(nb * 16), Vec::with_capacity(nb), Vec::with_capacity(nb));
        for b in bytes.chunks_exact(20) {
            d.push(f16_to_f32(u16::from_le_bytes([b[0], b[1]])));
            m.push(f16_to_f32(u16::from_le_bytes([b[2], b[3]])));
            qs.extend_from_slice(&b[4..20]);
        }
        Some(Self { kind: Kind::Q4_1, rows, cols, qs, d, m })
    }

    /// From GGUF `Q8_0` blocks (34 bytes each: f16 d, 32 codes).
    pub fn from_q8_0(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        let nb = rows * cols / QK;
        if cols % QK != 0 || bytes.len() != nb * 34 {
            return None;
        }
        let (mut qs, mut d) = (Vec::with_capacity(nb * QK), Vec::with_capacity(nb));
        for b in bytes.chunks_exact(34) {
            d.push(f16_to_f32(u16::from_le_bytes([b[0], b[1]])));
            qs.extend_from_slice(&b[2..34]);
        }
        Some(Self { kind: Kind::Q8_0, rows, cols, qs, d, m: Vec::new() })
    }

    /// Quantise `f32` rows to `Q8_0` (scale `amax / 127`, codes rounded to nearest).
    pub fn q8_0_from_f32(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if cols % QK != 0 || w.len() != rows * cols {
            return None;
        }
        let nb = rows * cols / QK;
        let (mut qs, mut d) = (Vec::with_capacity(nb * QK), Vec::with_capacity(nb));
        for blk in w.chunks_exact(QK) {
            let amax = blk.iter().fold(0f32, |a, x| a.max(x.abs()));
            let s = amax / 127.0;
            let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
            d.push(s);
            qs.extend(blk.iter().map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8));
        }
        Some(Self { kind: Kind::Q8_0, rows, cols, qs, d, m: Vec::new() })
    }

    fn code_bytes(&self) -> usize {
        match self.kind {
            Kind::Q4_1 => self.cols / 2,
            Kind::Q8_0 => self.cols,
        }
    }

    /// Row `r` as `f32` (embedding lookups).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        let cb = self.code_bytes();
        let qs = &self.qs[r * cb..(r + 1) * cb];
        for b in 0..nb {
            let d = self.d[r * nb + b];
            let o = &mut out[b * QK..(b + 1) * QK];
            match self.kind {
                Kind::Q4_1 => {
                    let m = self.m[r * nb + b];
                    let q = &qs[b * 16..(b + 1) * 16];
                    for j in 0..16 {
                        o[j] = d * (q[j] & 15) as f32 + m;
                        o[j + 16] = d * (q[j] >> 4) as f32 + m;
                    }
                }
                Kind::Q8_0 => {
                    for (x, &q) in o.iter_mut().zip(&qs[b * QK..(b + 1) * QK]) {
                        *x = d * q as i8 as f32;
                    }
                }
            }
        }
    }

    /// Append `other`'s rows (same kind and width).
    pub fn append_rows(&mut self, other: QMatrix) {
        assert!(self.kind == other.kind && self.cols == other.cols, "stacking different matrices");
        self.rows += other.rows;
        self.qs.extend(other.qs);
        self.d.extend(other.d);
        self.m.extend(other.m);
    }

    /// Bytes held (codes and scales).
    pub fn bytes(&self) -> usize {
        self.qs.len() + 4 * (self.d.len() + self.m.len())
    }

    /// Row `r`'s codes, scales and (`Q4_1`) minimums.
    #[inline]
    fn row_parts(&self, r: usize) -> (&[u8], &[f32], &[f32]) {
        let (nb, cb) = (self.cols / QK, self.code_bytes());
        let m = if self.m.is_empty() { &[][..] } else { &self.m[r * nb..(r + 1) * nb] };
        (&self.qs[r * cb..(r + 1) * cb], &self.d[r * nb..(r + 1) * nb], m)
    }

    /// Dot product of row `r` with one quantised activation row.
    #[inline]
    pub fn dot(&self, r: usize, a: &QRow<'_>) -> f32 {
        let (qs, d, m) = self.row_parts(r);
        match self.kind {
            Kind::Q4_1 => {
                let mut s = dot_q4_1(qs, d, a);
                for (mb, sa) in m.iter().zip(a.s) {
                    s += mb * sa;
                }
                s
            }
            Kind::Q8_0 => dot_q8_0(qs, d, a),
        }
    }

    /// Dot products of row `r` with four activation rows at once (prefill): the
    /// weight block is loaded and unpacked once for all four.
    #[inline]
    pub fn dot4(&self, r: usize, a: [&QRow<'_>; 4]) -> [f32; 4] {
        let (qs, d, m) = self.row_parts(r);
        match self.kind {
            Kind::Q4_1 => {
                let mut s = dot4_q4_1(qs, d, a);
                for (j, sj) in s.iter_mut().enumerate() {
                    for (mb, sa) in m.iter().zip(a[j].s) {
                        *sj += mb * sa;
                    }
                }
                s
            }
            Kind::Q8_0 => {
                [dot_q8_0(qs, d, a[0]), dot_q8_0(qs, d, a[1]), dot_q8_0(qs, d, a[2]), dot_q8_0(qs, d, a[3])]
            }
        }
    }

    /// `out[t * rows + r] = row r . activation t` for every activation row of `a`, the
    /// rows split over `team` (each weight row is read once and used for every
    /// activation row while it is in cache).
    pub fn matmul(&self, a: &QActs, out: &mut [f32], team: &Team) {
        let n = a.n;
        assert_eq!(a.cols, self.cols, "activation width");
        assert_eq!(out.len(), n * self.rows, "output size");
        let parts = team.threads();
        if n == 1 {
            let a0 = a.row(0);
            let d = Disjoint::new(out);
            team.run(&|p| {
                let r = share(self.rows, parts, p);
                // SAFETY: `share` gives each part its own rows.
                let o = unsafe { d.range(r.clone()) };
                for (x, row) in o.iter_mut().zip(r) {
                    *x = self.dot(row, &a0);
                }
            });
            return;
        }
        // Several activation rows: work out the transpose (rows x n), then lay it out.
        let mut t = vec![0f32; self.rows * n];
        let d = Disjoint::new(&mut t);
        team.run(&|p| {
            let r = share(self.rows, parts, p);
            // SAFETY: as above, `n` values per row.
            let o = unsafe { d.range(r.start * n..r.end * n) };
            let rows_a: Vec<QRow<'_>> = (0..n).map(|tk| a.row(tk)).collect();
            for (orow, row) in o.chunks_mut(n).zip(r) {
                let mut quads = orow.chunks_exact_mut(4);
                for (q, ra) in (&mut quads).zip(rows_a.chunks_exact(4)) {
                    q.copy_from_slice(&self.dot4(row, [&ra[0], &ra[1], &ra[2], &ra[3]]));
                }
                for (x, ra) in quads.into_remainder().iter_mut().zip(&rows_a[n / 4 * 4..]) {
                    *x = self.dot(row, ra);
                }
            }
        });
        for r in 0..self.rows {
            for tk in 0..n {
                out[tk * self.rows + r] = t[r * n + tk];
            }
        }
    }
}

/// Quantised activations: `n` rows of `cols` (a multiple of 32).
pub struct QActs {
    /// Rows.
    pub n: usize,
    /// Width.
    pub cols: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// One row of [`QActs`].
pub struct QRow<'a> {
    qs: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
}

impl QActs {
    /// Quantise `x` (`n x cols`, row-major) per 32-element block.
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        assert!(cols % QK == 0 && x.len() % cols == 0, "activation shape");
        let nb = x.len() / QK;
        let (mut qs, mut d, mut s) = (vec![0i8; x.len()], Vec::with_capacity(nb), Vec::with_capacity(nb));
        for (blk, q) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let sc = amax / 127.0;
            let inv = if sc > 0.0 { 1.0 / sc } else { 0.0 };
            let mut sum = 0i32;
            for (o, v) in q.iter_mut().zip(blk) {
                let c = (v * inv).round() as i8;
                *o = c;
                sum += c as i32;
            }
            d.push(sc);
            s.push(sc * sum as f32);
        }
        Self { n: x.len() / cols, cols, qs, d, s }
    }

    /// Row `t`.
    pub fn row(&self, t: usize) -> QRow<'_> {
        let nb = self.cols / QK;
        QRow { qs: &self.qs[t * self.cols..(t + 1) * self.cols], d: &self.d[t * nb..(t + 1) * nb], s: &self.s[t * nb..(t + 1) * nb] }
    }
}

/// `sum_b d_w[b] d_a[b] (q_w . q_a)` over `Q4_1` code bytes (the `m` term is the caller's).
#[inline]
fn dot_q4_1(qs: &[u8], d: &[f32], a: &QRow<'_>) -> f32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    // SAFETY: the features are enabled at compile time; each load reads one whole chunk
    // (16 code bytes, 32 activation codes). Chunks rather than `ptr.add`, which is a
    // checked call in debug builds and forces the accumulator through memory.
    unsafe {
        use std::arch::x86_64::*;
        let low = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (((q, x), &dw), &da) in qs.chunks_exact(16).zip(a.qs.chunks_exact(QK)).zip(d).zip(a.d) {
            let q = _mm_loadu_si128(q.as_ptr() as *const __m128i);
            let lo = _mm_and_si128(q, low);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), low);
            let w = _mm256_set_m128i(hi, lo);
            let x = _mm256_loadu_si256(x.as_ptr() as *const __m256i);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da), acc);
        }
        hsum(acc)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    {
        let mut s = 0f32;
        for (b, (&db, &da)) in d.iter().zip(a.d).enumerate() {
            let q = &qs[b * 16..(b + 1) * 16];
            let x = &a.qs[b * QK..(b + 1) * QK];
            let mut i = 0i32;
            for j in 0..16 {
                i += (q[j] & 15) as i32 * x[j] as i32 + (q[j] >> 4) as i32 * x[j + 16] as i32;
            }
            s += db * da * i as f32;
        }
        s
    }
}

/// [`dot_q4_1`] for four activation rows.
#[inline]
fn dot4_q4_1(qs: &[u8], d: &[f32], a: [&QRow<'_>; 4]) -> [f32; 4] {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    // SAFETY: as in `dot_q4_1`; the four activation rows have the same width.
    unsafe {
        use std::arch::x86_64::*;
        let low = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let blocks = qs
            .chunks_exact(16)
            .zip(d)
            .zip(a[0].qs.chunks_exact(QK).zip(a[0].d))
            .zip(a[1].qs.chunks_exact(QK).zip(a[1].d))
            .zip(a[2].qs.chunks_exact(QK).zip(a[2].d))
            .zip(a[3].qs.chunks_exact(QK).zip(a[3].d));
        for (((((q, &dw), x0), x1), x2), x3) in blocks {
            let q = _mm_loadu_si128(q.as_ptr() as *const __m128i);
            let lo = _mm_and_si128(q, low);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), low);
            let w = _mm256_set_m128i(hi, lo);
            for (acc, (x, &da)) in acc.iter_mut().zip([x0, x1, x2, x3]) {
                let x = _mm256_loadu_si256(x.as_ptr() as *const __m256i);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da), *acc);
            }
        }
        [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    {
        [dot_q4_1(qs, d, a[0]), dot_q4_1(qs, d, a[1]), dot_q4_1(qs, d, a[2]), dot_q4_1(qs, d, a[3])]
    }
}

/// `sum_b d_w[b] d_a[b] (q_w . q_a)` over `Q8_0` codes.
#[inline]
fn dot_q8_0(qs: &[u8], d: &[f32], a: &QRow<'_>) -> f32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    // SAFETY: as in `dot_q4_1`, with 32 code bytes per block on both sides.
    unsafe {
        use std::arch::x86_64::*;
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (((w, x), &dw), &da) in qs.chunks_exact(QK).zip(a.qs.chunks_exact(QK)).zip(d).zip(a.d) {
            let w = _mm256_loadu_si256(w.as_ptr() as *const __m256i);
            let x = _mm256_loadu_si256(x.as_ptr() as *const __m256i);
            // Signed times signed through vpmaddubsw: |w| times x with w's sign
            // (|w| <= 127 and |x| <= 127, so pairs stay within i16).
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da), acc);
        }
        hsum(acc)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    {
        let mut s = 0f32;
        for (b, (&db, &da)) in d.iter().zip(a.d).enumerate() {
            let i: i32 = qs[b * QK..(b + 1) * QK].iter().zip(&a.qs[b * QK..(b + 1) * QK]).map(|(&w, &x)| w as i8 as i32 * x as i32).sum();
            s += db * da * i as f32;
        }
        s
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
#[inline]
unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    #[test]
    fn half_floats_convert_exactly() {
        for (h, f) in [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x0000, 0.0), (0x3555, 0.333_251_95), (0x0001, 5.960_464_5e-8), (0x7bff, 65504.0)] {
            assert_eq!(f16_to_f32(h), f, "{h:#x}");
        }
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
    }

    /// Our blocks decode to candle's dequantised values, and our dot products match an
    /// exact evaluation of the same quantised operands.
    #[test]
    fn kernels_match_candle_dequantisation_and_exact_sums() {
        let (rows, cols) = (70, 96);
        let w = rand(rows * cols, 3);
        // Six activation rows: one group of four (`dot4`) and two single ones.
        let x = rand(6 * cols, 9);
        let wt = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu).unwrap();
        for dt in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&wt, dt).unwrap();
            let bytes = q.data().unwrap();
            let m = match dt {
                GgmlDType::Q4_1 => QMatrix::from_q4_1(&bytes, rows, cols).unwrap(),
                _ => QMatrix::from_q8_0(&bytes, rows, cols).unwrap(),
            };
            let deq: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                m.row_f32(r, &mut row);
                assert_eq!(row, deq[r * cols..(r + 1) * cols], "{dt:?} row {r}");
            }
            let a = QActs::quantize(&x, cols);
            let mut out = vec![0f32; 6 * rows];
            let team = super::super::team::Team::new(2);
            m.matmul(&a, &mut out, &team);
            let mut one = vec![0f32; rows];
            m.matmul(&QActs::quantize(&x[cols..2 * cols], cols), &mut one, &team);
            for t in 0..6 {
                // The activation codes, decoded.
                let ar = a.row(t);
                let xa: Vec<f32> = (0..cols).map(|i| ar.d[i / QK] * ar.qs[i] as f32).collect();
                for r in 0..rows {
                    let exact: f64 = (0..cols).map(|i| deq[r * cols + i] as f64 * xa[i] as f64).sum();
                    let got = out[t * rows + r] as f64;
                    assert!((got - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{dt:?} t{t} r{r}: {got} vs {exact}");
                    // And close to the unquantised product.
                    let full: f64 = (0..cols).map(|i| w[r * cols + i] as f64 * x[t * cols + i] as f64).sum();
                    assert!((got - full).abs() < 0.6, "{dt:?}: {got} vs {full}");
                }
            }
            assert_eq!(one, out[rows..2 * rows], "one row alone equals the batched row");
        }
        let f = QMatrix::q8_0_from_f32(&w, rows, cols).unwrap();
        let mut row = vec![0f32; cols];
        f.row_f32(5, &mut row);
        assert!(row.iter().zip(&w[5 * cols..6 * cols]).all(|(a, b)| (a - b).abs() <= 1.0 / 127.0 / 2.0 + 1e-6));
        assert!(QMatrix::from_q4_1(&[0u8; 19], 1, 32).is_none());
    }
}
