//! Vector dot products for the vector store's exact scan and its ANN graph.
//!
//! `avx2.rs`: explicit 8-lane fused multiply-adds with two accumulators for `f32`
//! (LLVM leaves the plain loop scalar, as it may not reorder float additions, which
//! made the exact scan and every HNSW distance several times slower), and 16 lanes of
//! sign-extended `i8` into `vpmaddwd` for the quantised codes. `portable.rs`: plain
//! loops. The integer dot is exact on every path; the float one differs in rounding.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;

use crate::Cpu;

/// Dot product of `f32` vectors (over the shorter length).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with(Cpu::active(), a, b)
}

/// [`dot`] on the best path `cpu` allows (AVX2 with FMA, else portable).
#[inline]
pub fn dot_with(cpu: Cpu, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if cpu.avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; the slices have equal lengths.
        return unsafe { avx2::dot(a, b) };
    }
    let _ = cpu;
    portable::dot(a, b)
}

/// Integer dot product of `i8` vectors (over the shorter length).
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_with(Cpu::active(), a, b)
}

/// [`dot_i8`] on the best path `cpu` allows (AVX2, else portable); every path gives
/// the same integer.
#[inline]
pub fn dot_i8_with(cpu: Cpu, a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if cpu.has(crate::Feature::Avx2) {
        // SAFETY: the CPU has AVX2; the slices have equal lengths.
        return unsafe { avx2::dot_i8(a, b) };
    }
    let _ = cpu;
    portable::dot_i8(a, b)
}

/// Asks for every cache line of `p` to be loaded (a hint; a no-op off x86-64).
#[inline(always)]
pub fn prefetch(p: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    for line in p.chunks(64) {
        // SAFETY: a prefetch is a hint; it never faults, and the pointer is in bounds
        // (SSE, part of every x86-64).
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_agree() {
        let cpu = Cpu::detected();
        if !cpu.avx2_fma() {
            eprintln!("no AVX2/FMA here: only the portable path runs");
        }
        let mut s = 3u64;
        for n in [0, 1, 7, 15, 16, 17, 33, 100, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|_| crate::testutil::rnd(&mut s)).collect();
            let b: Vec<f32> = (0..n + 3).map(|_| crate::testutil::rnd(&mut s)).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            for p in [cpu, Cpu::portable()] {
                let got = dot_with(p, &a, &b) as f64;
                assert!((got - want).abs() < 1e-4, "n {n} {p:?}: {got} vs {want}");
            }
            let ai: Vec<i8> = a.iter().map(|x| (x * 255.0) as i8).collect();
            let bi: Vec<i8> = b.iter().map(|x| (x * 255.0) as i8).collect();
            let want: i32 = ai.iter().zip(&bi).map(|(x, y)| *x as i32 * *y as i32).sum();
            assert_eq!(dot_i8_with(cpu, &ai, &bi), want, "n {n}");
            assert_eq!(dot_i8_with(Cpu::portable(), &ai, &bi), want, "n {n}");
        }
        assert_eq!(dot_i8(&[1, -2, 3], &[4, 5, -6]), 4 - 10 - 18);
        let long: Vec<i8> = (0..100).map(|i| (i * 37 % 255 - 127) as i8).collect();
        assert_eq!(dot_i8(&long, &long), long.iter().map(|x| *x as i32 * *x as i32).sum::<i32>());
        assert_eq!(dot_i8(&[-128; 40], &[-128; 40]), 40 * 128 * 128);
        prefetch(&long);
    }
}
