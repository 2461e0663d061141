//! Shared by the benches: inputs and timing.
#![allow(dead_code)]

/// `n` deterministic values in [-0.5, 0.5).
pub fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Multiply-adds per second, in billions, of `reps` calls of a `(m, k, n)` product.
pub fn gmacs(m: usize, k: usize, n: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let t = std::time::Instant::now();
    for _ in 0..reps {
        f();
    }
    (m * k * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
}
