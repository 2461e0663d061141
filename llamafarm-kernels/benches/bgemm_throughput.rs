//! Throughput of the encoder's largest product in bf16 against fp32, on one thread
//! (`cargo bench -p llamafarm-kernels --bench bgemm_throughput`).

mod common;
use common::{gmacs, rand};
use llamafarm_kernels::bgemm::{bgemm, bgemm_with, has_amx, has_bf16, BPackedB, BRows, Bf16Kernel};
use llamafarm_kernels::gemm::{gemm, PackedB};

fn main() {
    let (m, k, n) = (256, 384, 1536);
    let (a, b) = (rand(m * k, 1), rand(k * n, 2));
    let (pb, pf) = (BPackedB::pack(&b, k, n), PackedB::pack(&b, k, n));
    let mut c = vec![0f32; m * n];
    let mut rows = BRows::default();
    let reps = 50;
    let bf = gmacs(m, k, n, reps, || bgemm(m, &a, &pb, &mut c, &mut rows));
    let f32r = gmacs(m, k, n, reps, || gemm(m, &a, &pf, &mut c));
    println!("one thread: bf16 {bf:.1} GMAC/s, fp32 {f32r:.1} GMAC/s ({:.2}x), AVX-512 BF16: {}, AMX: {}", bf / f32r, has_bf16(), has_amx());
    if has_amx() {
        let avx = gmacs(m, k, n, reps, || {
            rows.round(&a, m, k);
            bgemm_with(m, &rows, &pb, &mut c, Bf16Kernel::Avx512)
        });
        println!("one thread: bf16 AVX-512 kernel {avx:.1} GMAC/s ({:.2}x fp32); AMX {:.2}x AVX-512", avx / f32r, bf / avx);
    }
}
