//! Time of one head of the encoder's attention (MiniLM's shape: heads of 32, 256 tokens)
//! on one thread in each arithmetic this CPU runs: the best of 7 interleaved rounds
//! (`cargo bench -p llamafarm-kernels --bench attention_throughput`). fp32: both products
//! on `gemm`; int8: the scores on `qgemm` (Q and K quantised per call), the rest fp32;
//! bf16: `bgemm::attention`.

mod common;
use common::rand;
use llamafarm_kernels::bgemm::{self, AttnScratch};
use llamafarm_kernels::gemm::{gemm, PackedB};
use llamafarm_kernels::math::softmax_unnormalised;
use llamafarm_kernels::qgemm::{int8_kernel, qgemm, QPackedB, QRows};

fn main() {
    let (len, d, reps) = (256, 32, 48);
    let (q, k, v) = (rand(len * d, 1), rand(len * d, 2), rand(len * d, 3));
    let mut p = vec![0f32; len * len];
    let mut o = vec![0f32; len * d];
    let mut inv = Vec::new();
    let (mut qa, mut keys) = (QRows::default(), QPackedB::empty(int8_kernel()));
    let mut scratch = AttnScratch::default();
    let mut finish = |p: &mut Vec<f32>, o: &mut Vec<f32>| {
        inv.clear();
        for row in p.chunks_exact_mut(len) {
            inv.push(softmax_unnormalised(row));
        }
        gemm(len, p, &PackedB::pack(&v, len, d), o);
        for (orow, i) in o.chunks_exact_mut(d).zip(&inv) {
            orow.iter_mut().for_each(|x| *x *= i);
        }
    };
    let mut best = [f64::INFINITY; 3];
    for _ in 0..7 {
        let t = std::time::Instant::now();
        for _ in 0..reps {
            gemm(len, &q, &PackedB::pack_transposed(&k, len, d), &mut p);
            finish(&mut p, &mut o);
        }
        best[0] = best[0].min(t.elapsed().as_secs_f64() / reps as f64);
        let t = std::time::Instant::now();
        for _ in 0..reps {
            keys.pack_keys(&k, len, d);
            qa.quantize_for(&q, len, d, &keys);
            qgemm(len, &qa, &keys, &mut p);
            finish(&mut p, &mut o);
        }
        best[1] = best[1].min(t.elapsed().as_secs_f64() / reps as f64);
        if bgemm::has_bf16() {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                bgemm::attention(&q, &k, &v, len, d, &mut o, &mut scratch, softmax_unnormalised);
            }
            best[2] = best[2].min(t.elapsed().as_secs_f64() / reps as f64);
        }
    }
    for (name, b) in ["F32", "Int8", "Bf16"].iter().zip(&best) {
        if b.is_finite() {
            println!("{name}: {:.1} us per head ({} int8 kernel): {:.2}x fp32", b * 1e6, int8_kernel().name(), best[0] / b);
        }
    }
}
