//! Element-wise math of the encoder and the LLM: `exp`, `erf`, GELU, softmax, layer norm
//! and the row loops around them.
//!
//! `exp` and `erf` are polynomial forms (relative error about 2e-7) that are branch-free
//! and cast-free, so loops over them vectorise, instead of libm calls. The row loops run
//! in an AVX-512 context where the [`Cpu`] has it (`avx512.rs`: the same code compiled
//! 16 lanes wide; the values are the same, as Rust never contracts `a * b + c`), and the
//! reductions are written out 8 lanes wide (`avx.rs`) in the same order as the portable
//! form, so every path gives the same bits.

#[cfg(target_arch = "x86_64")]
mod avx;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::{Cpu, Feature};

/// `m[r][j] = f(m[r][j] + b[j])` for every row of `m` (`b.len()` wide).
pub fn add_rows(m: &mut [f32], b: &[f32], f: impl Fn(f32) -> f32 + Copy) {
    add_rows_with(Cpu::active(), m, b, f)
}

/// [`add_rows`] on the best path `cpu` allows.
pub fn add_rows_with(cpu: Cpu, m: &mut [f32], b: &[f32], f: impl Fn(f32) -> f32 + Copy) {
    #[cfg(target_arch = "x86_64")]
    if cpu.avx512() {
        // SAFETY: the CPU has AVX-512 F (BW, DQ and VL come with it on every CPU that
        // has it, and the body only uses F).
        return unsafe { avx512::add_rows(m, b, f) };
    }
    let _ = cpu;
    add_rows_body(m, b, f)
}

#[inline(always)]
fn add_rows_body(m: &mut [f32], b: &[f32], f: impl Fn(f32) -> f32) {
    for row in m.chunks_exact_mut(b.len().max(1)) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v = f(*v + bb);
        }
    }
}

/// Runs `body` compiled with AVX-512 enabled where `cpu` has it, so its element-wise
/// loops vectorise 16 lanes wide instead of the build's 8; `body` is inlined into that
/// context, and it computes the same values either way.
#[inline(always)]
fn wide<R>(cpu: Cpu, body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if cpu.avx512() {
        // SAFETY: the CPU has AVX-512 F (see `add_rows_with`).
        return unsafe { avx512::wide(body) };
    }
    let _ = cpu;
    body()
}

/// Layer norm of one row in place: `(x - mean) / sqrt(var + eps) · w + b`.
pub fn layer_norm(row: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    layer_norm_with(Cpu::active(), row, w, b, eps)
}

/// [`layer_norm`] on the best path `cpu` allows.
pub fn layer_norm_with(cpu: Cpu, row: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lanes_fold(cpu, row, Fold::Sum) / n;
    let mut sq = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            sq[i] += (c[i] - mean) * (c[i] - mean);
        }
    }
    let var = (chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() + sq.iter().sum::<f32>()) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, ww), bb) in row.iter_mut().zip(w).zip(b) {
        *v = (*v - mean) * inv * ww + bb;
    }
}

/// Softmax of one row in place.
pub fn softmax(row: &mut [f32]) {
    let inv = softmax_unnormalised(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `row = e^(row - max)`; returns `1 / Σ row`, the factor that would normalise it.
pub fn softmax_unnormalised(row: &mut [f32]) -> f32 {
    softmax_unnormalised_with(Cpu::active(), row)
}

/// [`softmax_unnormalised`] on the best path `cpu` allows.
pub fn softmax_unnormalised_with(cpu: Cpu, row: &mut [f32]) -> f32 {
    #[inline(always)]
    fn body(cpu: Cpu, row: &mut [f32]) -> f32 {
        let max = lanes_fold(cpu, row, Fold::Max);
        for v in row.iter_mut() {
            *v = exp_fma(*v - max);
        }
        1.0 / lanes_fold(cpu, row, Fold::Sum)
    }
    wide(cpu, || body(cpu, row))
}

/// Which reduction [`lanes_fold`] runs.
#[derive(Clone, Copy)]
enum Fold {
    Sum,
    Max,
}

impl Fold {
    fn init(self) -> f32 {
        match self {
            Fold::Sum => 0.0,
            Fold::Max => f32::NEG_INFINITY,
        }
    }

    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Fold::Sum => a + b,
            Fold::Max => {
                if a > b {
                    a
                } else {
                    b
                }
            }
        }
    }
}

/// A reduction over 8 independent lanes, then across the lanes (the same order on every
/// path, so the vector and scalar forms give the same bits). The vector form is written
/// out (`avx.rs`): LLVM left both folds scalar (`f32::max`'s NaN rule blocks `vmaxps`,
/// and the sum stayed unvectorised), a third of the softmax's time.
#[inline(always)]
fn lanes_fold(cpu: Cpu, v: &[f32], fold: Fold) -> f32 {
    let mut acc = [fold.init(); 8];
    let mut chunks = v.chunks_exact(8);
    #[cfg(target_arch = "x86_64")]
    if cpu.has(Feature::Avx2) {
        // SAFETY: the CPU has AVX2 (so AVX); each load reads one whole 8-float chunk.
        acc = unsafe { avx::fold8(&mut chunks, fold) };
    }
    let _ = cpu;
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] = fold.apply(acc[i], c[i]);
        }
    }
    let mut r = fold.init();
    for &x in chunks.remainder().iter().chain(acc.iter()) {
        r = fold.apply(r, x);
    }
    r
}

/// `e^x` by range reduction and a degree-6 polynomial (relative error about 2e-7);
/// branch-free and cast-free, so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// [`exp`] with its multiply-adds fused where the build has FMA (half the instructions,
/// one rounding each; values differ from [`exp`] in the last bits), for the encoder's
/// softmax and GELU.
#[inline(always)]
pub fn exp_fma(x: f32) -> f32 {
    exp_with::<true>(x)
}

/// `a · b + c`, fused when `FUSED` and the build targets FMA (without the instruction,
/// `mul_add` is a slow library call, so it stays plain there).
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED && cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn exp_with<const FUSED: bool>(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let m = madd::<FUSED>;
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer n with a plain add; n sits in the low
    // mantissa bits of `y`.
    let y = m(x, std::f32::consts::LOG2_E, MAGIC);
    let n = y - MAGIC;
    // x - n ln2, in two parts for accuracy.
    let r = m(n, 2.121_944_4e-4, m(n, -0.693_359_4, x));
    let p = m(r, m(r, m(r, m(r, m(r, m(r, 0.001_388_889, 0.008_333_334), 0.041_666_668), 0.166_666_67), 0.5), 1.0), 1.0);
    // 2^n: the exponent field is n + 127.
    let two_n = f32::from_bits(y.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    p * two_n
}

/// `erf(z)` from Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub fn erf(z: f32) -> f32 {
    let a = z.abs();
    let m = madd::<true>;
    let t = 1.0 / m(0.327_591_1, a, 1.0);
    let poly = t * m(t, m(t, m(t, m(t, 1.061_405_4, -1.453_152_1), 1.421_413_7), -0.284_496_74), 0.254_829_6);
    let erf_abs = m(-poly, exp_fma(-a * a), 1.0);
    if z < 0.0 {
        -erf_abs
    } else {
        erf_abs
    }
}

/// Exact-form GELU, `x/2 (1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation of GELU (`gelu_new`).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    // tanh(u) = 1 - 2 / (e^{2u} + 1)
    let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn math_kernels_are_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 / 50.0;
            let (e, want) = (exp(x), x.exp());
            assert!(((e - want) / want).abs() < 1e-6, "exp({x}) = {e}, want {want}");
            let e = exp_fma(x);
            assert!(((e - want) / want).abs() < 1e-6, "exp_fma({x}) = {e}, want {want}");
        }
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 / 200.0).collect();
        let want: Vec<f32> = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap().gelu_erf().unwrap().to_vec1().unwrap();
        for (x, w) in xs.iter().zip(want) {
            let g = gelu_erf(*x);
            assert!((g - w).abs() < 1e-6, "gelu({x}) = {g}, want {w}");
        }
        let mut row = [1.0f32, 2.0, 3.0, -1e30];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[3] < 1e-30);
    }

    #[test]
    fn every_path_gives_the_same_bits() {
        let cpu = Cpu::detected();
        if !cpu.avx512() && !cpu.has(Feature::Avx2) {
            eprintln!("neither AVX-512 nor AVX2 here: only the portable path runs");
        }
        let paths = [cpu, cpu.without(Feature::Avx512f), Cpu::portable()];
        let mut s = 41u64;
        for n in [1, 7, 8, 9, 31, 64, 100, 384] {
            let row: Vec<f32> = (0..n).map(|_| crate::testutil::rnd(&mut s) * 20.0).collect();
            let w: Vec<f32> = (0..n).map(|_| crate::testutil::rnd(&mut s) + 1.0).collect();
            let b: Vec<f32> = (0..n).map(|_| crate::testutil::rnd(&mut s)).collect();
            type Out = (Vec<f32>, f32, Vec<f32>, Vec<f32>);
            let outs: Vec<Out> = paths
                .iter()
                .map(|&p| {
                    let mut sm = row.clone();
                    let inv = softmax_unnormalised_with(p, &mut sm);
                    let mut ln = row.clone();
                    layer_norm_with(p, &mut ln, &w, &b, 1e-12);
                    let mut ar = [row.clone(), row.clone()].concat();
                    add_rows_with(p, &mut ar, &b, gelu_erf);
                    (sm, inv, ln, ar)
                })
                .collect();
            for o in &outs[1..] {
                assert_eq!(o, &outs[0], "n {n}");
            }
        }
    }
}
