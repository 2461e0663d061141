//! Ingestion throughput over real documents (`../shared/data/docs`: PDF, DOCX, HTML,
//! Markdown), split into parse / chunk / embed / index, side by side in the same run
//! with the Python pipeline a user would otherwise write (`benches/peers/ingest_pipeline.py`:
//! pypdf / python-docx / BeautifulSoup + sentence-transformers + chromadb), on equal
//! terms: same model files, max sequence length 256, chunk size 1000, overlap 200.
//!
//! Run: `cargo bench -p llamafarm-benches --bench ingest` (after `benches/peers/setup.sh`
//! for the peer). `INGEST_FOLDERS=pdf,markdown` picks folders; `INGEST_ROUNDS=3` runs
//! ours and the peer three times, interleaved, and reports the median speed-up.

use llamafarm_core::task::TaskState;
use llamafarm_core::{LlamaFarm, ModelCache};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    // The `LF_*` kernel and batching switches, as `lf` maps them.
    llamafarm_core::embed::configure(llamafarm_core::embed::EmbedOptions::from_vars(|n| std::env::var(n).ok()));
    llamafarm_core::system::tune_allocator();
    let root = std::env::var("DOCS_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/docs"));
    if !root.is_dir() {
        eprintln!("SKIP ingest bench: {} is absent (set DOCS_DIR)", root.display());
        return;
    }
    let folders: Vec<String> = std::env::var("INGEST_FOLDERS").unwrap_or_else(|_| "pdf,docx,html,markdown".into()).split(',').map(String::from).collect();
    let work = tempfile::tempdir().unwrap();
    let lf = LlamaFarm::open_with(work.path(), ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
    // INGEST_PRECISIONS=default,fp32,int8 (the default) runs ours once per embedding
    // precision: `default` is the model id without a suffix (bf16 where the CPU has
    // AVX-512 BF16, int8 where it has VNNI or AVX2, else fp32), the others are `model:fp32`, `model:bf16`, `model:int8`.
    let precisions: Vec<String> = std::env::var("INGEST_PRECISIONS").unwrap_or_else(|_| "default,fp32,int8".into()).split(',').map(String::from).collect();
    // INGEST_ROUNDS=N repeats ours and the peer N times, interleaved, and ends with each
    // pairing's speed-ups and their median (a shared machine's speed drifts by more than
    // the margins worth reporting).
    let rounds: usize = std::env::var("INGEST_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let py = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    let mut ratios: Vec<((String, String), Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        if rounds > 1 {
            println!("\n## Round {} of {rounds}", round + 1);
        }
        let mut runs = Vec::new();
        for p in &precisions {
            let base = "sentence-transformers/all-MiniLM-L6-v2";
            let model = if p == "default" { base.to_string() } else { format!("{base}:{p}") };
            let model = model.as_str();
            println!("\nours, embedding model {model} ({}):\n", llamafarm_core::embed::split_precision(model).1.name());
            runs.push((p.clone(), run_ours(&lf, &root, &folders, &format!("{p}-{round}"), model)));
        }
        if !py.is_file() {
            println!("\npeer skipped: run benches/peers/setup.sh first (or set PEERS_PYTHON)");
            continue;
        }
        let rows = run_peer(&lf, &py, &root, &folders);
        println!("\n| folder | ours | peer files | peer chunks | peer s (parse / chunk / embed / index) | ours s | speed-up |");
        println!("|---|---|---|---|---|---|---|");
        for (tag, ours) in &runs {
            for (r, (f, secs, chunks)) in rows.iter().zip(ours) {
                let ps = r["total_s"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "| {f} | {tag} | {} ({} failed) | {} | {ps:.1} ({:.1} / {:.2} / {:.1} / {:.2}) | {secs:.1} ({chunks} chunks) | {:.2}x |",
                    r["files"],
                    r["failed"],
                    r["chunks"],
                    r["parse_s"].as_f64().unwrap_or(0.0),
                    r["chunk_s"].as_f64().unwrap_or(0.0),
                    r["embed_s"].as_f64().unwrap_or(0.0),
                    r["index_s"].as_f64().unwrap_or(0.0),
                    ps / secs
                );
                let key = (f.clone(), tag.clone());
                match ratios.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(ps / secs),
                    None => ratios.push((key, vec![ps / secs])),
                }
            }
        }
    }
    if rounds > 1 && !ratios.is_empty() {
        println!("\n| folder | ours | speed-up per round | median |");
        println!("|---|---|---|---|");
        for ((f, tag), v) in &ratios {
            let each: Vec<String> = v.iter().map(|r| format!("{r:.2}x")).collect();
            println!("| {f} | {tag} | {} | **{:.2}x** |", each.join(", "), median(v));
        }
    }
}

/// The middle value (the mean of the middle two for an even count); NaN for none.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The Python pipeline over the same folders, same model files and chunking: one JSON row
/// per folder (empty, with its stderr printed, if it failed).
fn run_peer(lf: &LlamaFarm, py: &std::path::Path, root: &std::path::Path, folders: &[String]) -> Vec<Value> {
    let model_dir = lf.models().resolve("sentence-transformers/all-MiniLM-L6-v2").unwrap().dir;
    let mut cmd = std::process::Command::new(py);
    cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/ingest_pipeline.py")).arg(&model_dir);
    for f in folders {
        cmd.arg(root.join(f));
    }
    let out = cmd.args(["--chunk-size", "1000", "--chunk-overlap", "200"]).output().unwrap();
    serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_else(|_| {
        println!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        Vec::new()
    })
}

/// Upload and process every folder into a fresh project whose database embeds with
/// `model`; returns (folder, seconds, chunks) per folder.
fn run_ours(lf: &LlamaFarm, root: &std::path::Path, folders: &[String], tag: &str, model: &str) -> Vec<(String, f64, usize)> {
    let project = lf.projects().create("bench", &format!("ingest-{tag}"), None).unwrap();
    // Same chunking as the peer: characters, 1000 / 200.
    llamafarm_benches::chunk_by_characters(&project, model, 1000, 200);
    println!("| folder | files | failed | chunks | MB | ours s | upload s | files/s | chunks/s | MB/s | parse / chunk / embed / index s (summed per file) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ours = Vec::new();
    for f in folders {
        let dir = root.join(f);
        let mut files: Vec<PathBuf> = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    files.push(e.path());
                }
            }
        }
        files.sort();
        let ds = format!("ds_{f}");
        project.datasets().create(&ds, None, "main_database", Some(false)).unwrap();
        let bytes: u64 = files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
        let t = Instant::now();
        let mut hashes = Vec::new();
        for p in &files {
            let content = std::fs::read(p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            hashes.push(project.datasets().upload_bytes(&ds, &name, &content).unwrap().hash);
        }
        let upload_s = t.elapsed().as_secs_f64();
        let id = lf.tasks().submit_process(&project, &ds, hashes, None).unwrap();
        let rec = loop {
            let r = llamafarm_core::task::load(project.dir(), &id).unwrap();
            if r.state.is_final() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(rec.state, TaskState::Success);
        let chunks: usize = rec.outcomes.iter().map(|o| o.chunks).sum();
        let failed = rec.outcomes.iter().filter(|o| o.status == "failed").count();
        let stage = |k: &str| rec.outcomes.iter().filter_map(|o| o.timings_ms.get(k).and_then(|v| v.as_f64())).sum::<f64>() / 1000.0;
        let mb = bytes as f64 / 1e6;
        println!(
            "| {f} | {} | {failed} | {chunks} | {mb:.1} | {secs:.1} | {upload_s:.2} | {:.2} | {:.1} | {:.3} | {:.1} / {:.2} / {:.1} / {:.2} |",
            files.len(),
            files.len() as f64 / secs,
            chunks as f64 / secs,
            mb / secs,
            stage("parse"),
            stage("chunk"),
            stage("embed"),
            stage("index")
        );
        for o in rec.outcomes.iter().filter(|o| o.status == "failed") {
            println!("    failed {}: {}", o.filename, o.error.clone().unwrap_or_default());
        }
        ours.push((f.clone(), secs, chunks));
    }

    ours
}
