//! Model downloads: `lf`'s hub client against `huggingface_hub`'s `hf_hub_download`
//! (PyPI, the peers venv), the same 100 MB file from the same loopback hub
//! (`llamafarm_tests::hub::HubServer`: model info, resolve with a 302 to a CDN path),
//! each into a fresh cache; median of `HUB_RUNS` (default 5), alternating. Ours checks
//! the sha256 while it writes; `huggingface_hub` does not.
//!
//! Run: `benches/peers/setup.sh && cargo bench -p llamafarm-benches --bench hub_download`.

use llamafarm_core::model_cache::{Downloads, Hub, ModelCache};
use std::path::PathBuf;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("HUB_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let mb: usize = std::env::var("HUB_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let python = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let hub = rt.block_on(llamafarm_tests::hub::HubServer::start());
    let mut x = 0x2545_f491_u32;
    let bytes: Vec<u8> = (0..mb << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    hub.add_repo("bench/weights", vec![("model.safetensors", llamafarm_tests::hub::Source::Bytes(bytes))]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/hf_download.py");
    let client = Hub::new(&hub.endpoint, None);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(dir.path());
        let t = Instant::now();
        let d = Downloads::default().download(&client, &cache, "bench/weights", &mut |_| {}).unwrap();
        ours.push(t.elapsed().as_secs_f64());
        assert_eq!(d.bytes_fetched, (mb << 20) as u64);
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args(["bench/weights", "model.safetensors"])
            .arg(dir.path())
            .env("HF_ENDPOINT", &hub.endpoint)
            .output()
            .expect("peers venv python (benches/peers/setup.sh)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        theirs.push(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap());
    }
    let (o, t) = (median(ours), median(theirs));
    println!("## Download of one {mb} MB file from a loopback hub, median of {runs}");
    println!("| client | seconds | MB/s | ratio |");
    println!("|---|---|---|---|");
    println!("| lf (ureq, sha256 checked) | {o:.3} | {:.0} | {:.2}x |", mb as f64 / o, t / o);
    println!("| huggingface_hub 2.4.0 hf_hub_download | {t:.3} | {:.0} | 1.00x |", mb as f64 / t);
    drop(rt);
}
