//! Embedding throughput probe: `cargo run --release -p llamafarm-examples --example embed_speed [N] [MODEL]`
//! (MODEL defaults to all-MiniLM-L6-v2; append `:int8` for the int8 path).
use std::io::BufRead;
fn main() -> anyhow::Result<()> {
    // The `LF_*` kernel and batching switches, as `lf` maps them.
    llamafarm_core::embed::configure(llamafarm_core::embed::EmbedOptions::from_vars(|n| std::env::var(n).ok()));
    llamafarm_core::system::tune_allocator();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let cache = llamafarm_core::ModelCache::from_vars(|k| std::env::var_os(k));
    let lf = llamafarm_core::LlamaFarm::open_with(std::env::temp_dir().join("lf-embed-speed"), cache)?;
    let model = std::env::args().nth(2).unwrap_or_else(|| "sentence-transformers/all-MiniLM-L6-v2".into());
    let e = lf.embedder(&model)?;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ir/scifact/corpus.jsonl");
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let texts: Vec<String> = f
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            format!("{} {}", v["title"].as_str().unwrap_or(""), v["text"].as_str().unwrap_or(""))
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let toks: usize = refs.iter().map(|t| e.count_tokens(t).unwrap_or(0)).sum();
    let t = std::time::Instant::now();
    e.embed(&refs)?;
    let dt = t.elapsed().as_secs_f64();
    println!("{model}: {n} docs, {toks} tokens, {dt:.2} s: {:.1} docs/s, {:.0} tokens/s", n as f64 / dt, toks as f64 / dt);
    Ok(())
}
