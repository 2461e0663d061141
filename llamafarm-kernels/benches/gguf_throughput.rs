//! GGUF weight-kernel throughput on SmolLM2-135M's feed-forward shape, for `Q4_1`, `Q5_0` and
//! `Q8_0` codes and `F16`, `BF16` and `F32` weights, on every kernel this CPU runs
//! (`cargo bench -p llamafarm-kernels --bench gguf_throughput`).

mod common;
use common::rand;
use llamafarm_kernels::gguf::{Kernel, QActs, QMatrix};
use llamafarm_kernels::team::Team;
use llamafarm_kernels::Cpu;

fn main() {
    let (rows, cols) = (3072, 576);
    let w = rand(rows * cols, 1);
    let f32_bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16_bytes: Vec<u8> = w.iter().flat_map(|v| half_bits(*v).to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = w.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
    // `Q4_1` blocks as GGUF stores them: scale and minimum as halves, then 16 bytes of nibbles.
    let q4_1_bytes: Vec<u8> = (0..rows * cols / 32)
        .flat_map(|b| {
            let mut block = Vec::with_capacity(20);
            block.extend(half_bits(0.01 + (b % 7) as f32 * 0.001).to_le_bytes());
            block.extend(half_bits(-0.08).to_le_bytes());
            block.extend((0..16).map(|i| ((b * 31 + i * 17) % 256) as u8));
            block
        })
        .collect();
    // `Q5_0` blocks: the scale as a half, 32 high bits, 16 bytes of low nibbles.
    let q5_0_bytes: Vec<u8> = (0..rows * cols / 32)
        .flat_map(|b| {
            let mut block = half_bits(0.01 + (b % 5) as f32 * 0.001).to_le_bytes().to_vec();
            block.extend((0..20).map(|i| ((b * 29 + i * 13) % 256) as u8));
            block
        })
        .collect();
    let matrices = [
        ("Q4_1", QMatrix::from_gguf("Q4_1", &q4_1_bytes, rows, cols).expect("shape")),
        ("Q5_0", QMatrix::from_gguf("Q5_0", &q5_0_bytes, rows, cols).expect("shape")),
        ("Q8_0", QMatrix::q8_0_from_f32(&w, rows, cols).expect("shape")),
        ("F16", QMatrix::from_gguf("F16", &f16_bytes, rows, cols).expect("shape")),
        ("BF16", QMatrix::from_gguf("BF16", &bf16_bytes, rows, cols).expect("shape")),
        ("F32", QMatrix::from_gguf("F32", &f32_bytes, rows, cols).expect("shape")),
    ];
    for (name, m) in &matrices {
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
                    println!(
                        "{name:<4} threads {threads} n {n:>3} {k:?}: {:.3} ms, {:.1} GMAC/s, weights read at {:.1} GB/s",
                        s * 1e3,
                        (rows * cols * n) as f64 / s / 1e9,
                        m.bytes() as f64 / s / 1e9
                    );
                }
            }
        }
    }
}

/// `f32` to IEEE half bits, rounding to nearest even (normal range; the bench's values are
/// within it).
fn half_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    let man = b & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}
