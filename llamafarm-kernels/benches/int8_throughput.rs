//! Throughput of the encoder's largest product, on one thread, for every int8 kernel this
//! CPU runs (and the AVX2 one with 8-bit activations) against fp32: the best of 5
//! interleaved rounds, as the speed of a shared VM drifts
//! (`cargo bench -p llamafarm-kernels --bench int8_throughput`).

mod common;
use common::{gmacs, rand};
use llamafarm_kernels::gemm::{gemm, PackedB};
use llamafarm_kernels::qgemm::{int8_kernel, qgemm_with, runs_on, Int8Kernel, QPackedB, QRows, PREFERENCE};
use llamafarm_kernels::Cpu;

fn main() {
    let (m, k, n) = (512, 384, 1536);
    let (a, b) = (rand(m * k, 5), rand(k * n, 6));
    let pb = PackedB::pack(&b, k, n);
    let mut qa = QRows::default();
    let mut c = vec![0f32; m * n];
    // (name, packed weights, kernel, activation levels)
    let mut runs: Vec<(String, QPackedB, Int8Kernel, u8)> = Vec::new();
    for kind in PREFERENCE.into_iter().filter(|&k| runs_on(k, Cpu::detected())) {
        let qb = QPackedB::quantize_for(&b, k, n, kind);
        if kind == Int8Kernel::Avx2 {
            runs.push(("avx2, 8-bit activations".into(), qb.clone(), kind, 255));
        }
        let top = if kind == Int8Kernel::Avx2 { 127 } else { 255 };
        runs.push((kind.name().into(), qb, kind, top));
    }
    let (mut f32r, mut best) = (0f64, vec![0f64; runs.len()]);
    for _ in 0..5 {
        f32r = f32r.max(gmacs(m, k, n, 8, || gemm(m, &a, &pb, &mut c)));
        for ((_, qb, kind, top), best) in runs.iter().zip(&mut best) {
            let q = gmacs(m, k, n, 8, || {
                qa.quantize_to(&a, m, k, *top);
                qgemm_with(m, &qa, qb, &mut c, *kind);
            });
            *best = best.max(q);
        }
    }
    println!("fp32 {f32r:.1} GMAC/s (default int8 kernel: {})", int8_kernel().name());
    for ((name, ..), q) in runs.iter().zip(&best) {
        println!("int8 ({name}) {q:.1} GMAC/s: {:.2}x fp32", q / f32r);
    }
}
