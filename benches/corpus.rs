//! Ingestion at corpus scale: BEIR SciFact's 5,183 abstracts as 5,183 files (and the
//! same cut to their titles), uploaded through the bulk endpoint of a real server on a
//! socket and processed, against the Python pipeline a user would otherwise write
//! (`benches/peers/corpus_pipeline.py`: sentence-transformers encode at max length 256,
//! then chromadb add), in the same run, on the same files and model files, 2 threads.
//! Each file is one chunk on both sides (one text per file, truncated at 256 tokens).
//! Upload alone is also measured through `lf datasets upload DIR`, with the `lf` built
//! in the same profile as the bench (`cargo build -p llamafarm-cli` for the dev profile).
//!
//! Run: `cargo bench -p llamafarm-benches --bench corpus --profile dev` (after
//! `benches/peers/setup.sh`). `CORPUS_VARIANTS=abstracts,titles`,
//! `CORPUS_PRECISIONS=default,fp32` and `CORPUS_N=1000` (the first N documents) pick what runs.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() {
    llamafarm_benches::init();
    let Some(scifact) = llamafarm_benches::scifact_dir("corpus") else { return };
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let variants: Vec<String> = var("CORPUS_VARIANTS", "abstracts,titles").split(',').map(String::from).collect();
    let precisions: Vec<String> = var("CORPUS_PRECISIONS", "default,fp32").split(',').map(String::from).collect();
    let limit: usize = var("CORPUS_N", "0").parse().unwrap_or(0);
    let py = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    let docs: Vec<(String, String, String)> = std::fs::read_to_string(scifact.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap_or("").to_string(), v["title"].as_str().unwrap_or("").to_string(), v["text"].as_str().unwrap_or("").to_string())
        })
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let lf = llamafarm_core::LlamaFarm::open_with(work.path().join("data"), llamafarm_core::ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
    let model_dir = lf.models().resolve("sentence-transformers/all-MiniLM-L6-v2").unwrap().dir;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let base = rt.block_on(async {
        let app = llamafarm_http::api_router(lf.clone(), &llamafarm_http::HttpOptions::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    let lf_bin = std::env::current_exe().ok().and_then(|e| e.parent()?.parent().map(|d| d.join("lf"))).filter(|p| p.is_file());

    let mut rows = Vec::new();
    for variant in &variants {
        let dir = work.path().join(variant);
        std::fs::create_dir_all(&dir).unwrap();
        for (id, title, text) in &docs {
            let body = if variant == "titles" { title.clone() } else { format!("{title}\n\n{text}") };
            std::fs::write(dir.join(format!("{id}.txt")), body).unwrap();
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        println!("\n## {variant}: {} files, {:.1} MB", files.len(), files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum::<u64>() as f64 / 1e6);
        for p in &precisions {
            let model = if p == "default" { "sentence-transformers/all-MiniLM-L6-v2".to_string() } else { format!("sentence-transformers/all-MiniLM-L6-v2:{p}") };
            let name = format!("{variant}-{p}");
            setup_project(&lf, &name, &model);
            let (upload_s, process_s, chunks) = rt.block_on(run_ours(&base, &name, &files));
            let n = files.len() as f64;
            println!(
                "ours ({p}): upload {upload_s:.1} s ({:.0} files/s), process {process_s:.1} s ({:.0} files/s), {chunks} chunks, end to end {:.1} s ({:.0} files/s)",
                n / upload_s,
                n / process_s,
                upload_s + process_s,
                n / (upload_s + process_s)
            );
            rows.push((variant.clone(), p.clone(), upload_s, process_s));
        }
        if let Some(bin) = &lf_bin {
            let name = format!("{variant}-cli");
            setup_project(&lf, &name, "sentence-transformers/all-MiniLM-L6-v2");
            let t = Instant::now();
            let out = std::process::Command::new(bin)
                .args(["--server-url", &base, "datasets", "upload", "d", dir.to_str().unwrap(), "--no-process", "--namespace", "bench", "--project", &name])
                .output()
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            println!("lf datasets upload DIR: {secs:.2} s ({:.0} files/s)", files.len() as f64 / secs);
        } else {
            println!("lf datasets upload DIR: skipped (build lf in the bench's profile first, e.g. cargo build -p llamafarm-cli)");
        }
        if !py.is_file() {
            println!("peer skipped: run benches/peers/setup.sh first (or set PEERS_PYTHON)");
            continue;
        }
        let out = std::process::Command::new(&py)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/corpus_pipeline.py"))
            .arg(&model_dir)
            .arg(&dir)
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
        let peer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer: {e}: {line}\n{}", String::from_utf8_lossy(&out.stderr)));
        let f = |k: &str| peer[k].as_f64().unwrap_or(0.0);
        // The peer's pipeline: model load, read, encode, add (its interpreter's imports
        // are shown beside it, not counted; our model load is inside `process`).
        let total = f("load_s") + f("read_s") + f("encode_s") + f("add_s");
        println!(
            "peer: {total:.1} s ({:.0} files/s): model load {:.1}, read {:.1}, encode {:.1} ({:.0} files/s), chromadb add {:.1} s; {:.1} s with the imports",
            files.len() as f64 / total,
            f("load_s"),
            f("read_s"),
            f("encode_s"),
            files.len() as f64 / f("encode_s"),
            f("add_s"),
            f("total_s")
        );
        println!("\n| variant | ours | upload s | process s | ours s (files/s) | peer s (files/s) | speed-up |");
        println!("|---|---|---|---|---|---|---|");
        let n = files.len() as f64;
        for (v, p, u, pr) in rows.iter().filter(|r| &r.0 == variant) {
            println!("| {v} | {p} | {u:.1} | {pr:.1} | {:.1} ({:.0}) | {total:.1} ({:.0}) | **{:.2}x** |", u + pr, n / (u + pr), n / total, total / (u + pr));
        }
    }
}

/// A project whose database embeds with `model` and whose strategy keeps each file as
/// one chunk (as the peer encodes one text per file), with a dataset `d`.
fn setup_project(lf: &llamafarm_core::LlamaFarm, name: &str, model: &str) {
    let project = lf.projects().create("bench", name, None).unwrap();
    llamafarm_benches::chunk_by_characters(&project, model, 100_000, 0);
    project.datasets().create("d", None, "main_database", Some(false)).unwrap();
}

/// Bulk upload (1,000 files a request, read from disk), then process; returns the
/// seconds of each and the chunks written.
async fn run_ours(base: &str, project: &str, files: &[PathBuf]) -> (f64, f64, u64) {
    let http = reqwest::Client::new();
    let p = format!("{base}/v1/projects/bench/{project}");
    let t = Instant::now();
    for group in files.chunks(1000) {
        let mut form = reqwest::multipart::Form::new();
        for f in group {
            let bytes = tokio::fs::read(f).await.unwrap();
            form = form.part("files", reqwest::multipart::Part::bytes(bytes).file_name(name_of(f)));
        }
        let r = http.post(format!("{p}/datasets/d/data/bulk?auto_process=false")).multipart(form).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    }
    let upload_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let a: Value = http.post(format!("{p}/datasets/d/actions")).json(&json!({"action_type": "process"})).send().await.unwrap().json().await.unwrap();
    let task = a["task_id"].as_str().unwrap_or_else(|| panic!("{a}")).to_string();
    let rec = loop {
        let r: Value = http.get(format!("{p}/tasks/{task}")).send().await.unwrap().json().await.unwrap();
        if matches!(r["state"].as_str(), Some("SUCCESS" | "FAILURE" | "REVOKED")) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let process_s = t.elapsed().as_secs_f64();
    assert_eq!(rec["state"], "SUCCESS", "{}", rec["error"]);
    assert_eq!(
        rec["result"]["failed_files"],
        0,
        "{}",
        rec["result"]["details"].as_array().map(|d| d.iter().find(|x| x["status"] == "failed").cloned()).unwrap_or_default().unwrap_or_default()
    );
    (upload_s, process_s, rec["result"]["total_chunks"].as_u64().unwrap_or(0))
}

fn name_of(f: &Path) -> String {
    f.file_name().unwrap().to_string_lossy().to_string()
}
