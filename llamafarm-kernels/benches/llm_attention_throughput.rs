//! The native LLM's causal attention (SmolLM2-135M's shape: 9 heads, 3 KV heads of 64)
//! over a 512-position cache, decoding one token and prefilling 64, on each path this CPU
//! runs (`cargo bench -p llamafarm-kernels --bench llm_attention_throughput`).

mod common;
use common::rand;
use llamafarm_kernels::attention::{attention_with, Heads, KvCache};
use llamafarm_kernels::team::Team;
use llamafarm_kernels::Cpu;

fn main() {
    let (heads, kv_heads, hd, total) = (9, 3, 64, 512);
    let h = Heads { heads, kv_heads, head_dim: hd, window: 0 };
    let (dim, kvd) = (heads * hd, kv_heads * hd);
    let (keys, vals) = (rand(total * kvd, 1), rand(total * kvd, 2));
    let mut cache = KvCache::new(1, kvd, total);
    for p in 0..total {
        cache.put(0, p, &keys[p * kvd..(p + 1) * kvd], &vals[p * kvd..(p + 1) * kvd]);
    }
    cache.len = total;
    let team = Team::new(1);
    for (name, cpu) in [("best", Cpu::detected()), ("portable", Cpu::portable())] {
        for n in [1, 64] {
            let q = rand(n * dim, 3);
            let mut out = vec![0f32; n * dim];
            let reps = 2000 / n;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                attention_with(cpu, &h, &q, dim, &cache, 0, total - n, n, &mut out, &team);
            }
            println!("{name}: {n} tokens, {:.1} us per call", t.elapsed().as_secs_f64() / reps as f64 * 1e6);
        }
    }
}
