//! GGUF block-kernel throughput on SmolLM2-135M's feed-forward shape, `Q8_0` weights, for
//! every kernel this CPU runs (`cargo bench -p llamafarm-kernels --bench gguf_throughput`).

mod common;
use common::rand;
use llamafarm_kernels::gguf::{Kernel, QActs, QMatrix};
use llamafarm_kernels::team::Team;
use llamafarm_kernels::Cpu;

fn main() {
    let (rows, cols) = (3072, 576);
    let m = QMatrix::q8_0_from_f32(&rand(rows * cols, 1), rows, cols).expect("shape");
    for threads in [1, 2] {
        let team = Team::new(threads);
        for n in [1, 4, 40, 297] {
            let a = QActs::quantize(&rand(n * cols, 2), cols);
            let mut out = vec![0f32; n * rows];
            for k in [Kernel::Portable, Kernel::Avx2, Kernel::Vnni] {
                if !k.runs_on(Cpu::detected()) {
                    continue;
                }
                let reps = (2000 / n).max(3);
                let t0 = std::time::Instant::now();
                for _ in 0..reps {
                    m.matmul_with(k, &a, &mut out, &team);
                }
                let s = t0.elapsed().as_secs_f64() / reps as f64;
                println!("threads {threads} n {n:>3} {k:?}: {:.2} ms, {:.1} GMAC/s", s * 1e3, (rows * cols * n) as f64 / s / 1e9);
            }
        }
    }
}
