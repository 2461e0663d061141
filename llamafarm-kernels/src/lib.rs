//! LlamaFarm's compute kernels: every line of instruction-set code and every `unsafe`
//! block of the library that is not a foreign call lives here, behind safe functions.
//!
//! # What is here
//! - [`gemm`]: fp32 matrix products against weights packed once at load.
//! - [`bgemm`]: bf16 products and attention (AVX-512 BF16, AMX tiles).
//! - [`qgemm`]: int8 products (AVX-512 VNNI, AVX-VNNI, AVX2 with 7-bit operands).
//! - [`gguf`]: GGUF `Q4_1`/`Q8_0` block matrices and their products for the native LLM.
//! - [`attention`]: the native LLM's KV cache and causal attention.
//! - [`math`]: `exp`, `erf`, GELU, softmax, layer norm.
//! - [`vector`]: dot products of `f32` and `i8` vectors, prefetch.
//! - [`mapped`]: a growable `f32` array in a memory-mapped scratch file (the vector
//!   store's rows).
//! - [`team`]: a spinning thread team for the LLM's short products.
//! - [`par`]: safe helpers for parallel writes and for joining from outside rayon.
//! - [`blas`]: bounds-checked strided products (`matrixmultiply` behind slices).
//!
//! # Choosing a path
//! Where there are several paths, each instruction set has its own file in the
//! module's folder (`qgemm/avx512_vnni.rs`, `qgemm/avx2.rs`, `qgemm/portable.rs`, ...),
//! its functions compiled with `#[target_feature(enable = ...)]`, and the module picks
//! one at run time from a [`Cpu`] value: [`Cpu::detected`] (what the processor has,
//! found once), less what [`KernelOptions`] turns off ([`Cpu::active`]). The portable
//! paths are compiled and tested on every target; the x86 files exist on x86-64 only.
//! Most modules offer `*_with` functions that take the `Cpu` (or kernel) to use, so a
//! caller or a test can run any path the machine supports; a `Cpu` value never holds a
//! feature the processor lacks, so every path these functions run is safe.
//!
//! # Options
//! [`configure`] installs [`KernelOptions`] for the process (no environment variable is
//! read here: the CLI maps its `LF_*` variables to the options). Call it before models
//! load, since weights are packed for the int8 kernel chosen then.
//!
//! # Baseline
//! The workspace builds x86-64 code for `x86-64-v3` (AVX2, FMA, BMI2, F16C, ...), which
//! the compiler may use anywhere; [`missing_baseline`] tells a binary whether the
//! processor has that baseline, before anything else runs.

#![warn(missing_docs)]

pub mod attention;
pub mod bgemm;
pub mod blas;
mod cpu;
pub mod gemm;
pub mod gguf;
pub mod mapped;
pub mod math;
pub mod par;
pub mod qgemm;
pub mod team;
pub mod vector;

pub use cpu::{configure, missing_baseline, options, Cpu, Feature, KernelOptions};

/// Helpers shared by the product kernels' tests.
#[cfg(test)]
pub(crate) mod testutil {
    /// A deterministic value in [-0.5, 0.5) from an LCG state.
    pub(crate) fn rnd(s: &mut u64) -> f32 {
        *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// Relative Frobenius error of `got (m, n)` against the exact `a (m, k) · b (k, n)`.
    pub(crate) fn rel_error(got: &[f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> f64 {
        let (mut num, mut den) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum();
                num += (got[i * n + j] as f64 - want).powi(2);
                den += want * want;
            }
        }
        (num / den).sqrt()
    }
}
