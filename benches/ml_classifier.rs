//! SetFit few-shot classification on Banking77 (77 intents): accuracy on the test
//! split and fit time, ours vs the Python `setfit` package
//! (`benches/peers/setfit_peer.py`) on the same base model files (all-MiniLM-L6-v2
//! from the Hugging Face cache), the same sampled examples and the same
//! num_iterations / batch size, in the same run.
//!
//! Run: `cargo bench -p llamafarm-benches --bench ml_classifier` (after
//! `benches/peers/setup.sh` for the peer).
//! Data: `../shared/data/classification/banking77` (or `BANKING77_DIR`), `train.csv` /
//! `test.csv` with `text,category`; skipped with a message when absent.
//! Settings (environment):
//! - `ML_CLS_SHOTS` examples per class, comma-separated (default `8,16`);
//! - `ML_CLS_ITERATIONS` num_iterations (default 20); `ML_CLS_BATCH` batch size (16);
//! - `ML_CLS_TEST_ROWS` cap on test rows, a seeded sample (default 0 = all 3,080);
//! - `ML_CLS_SEED` (42); `ML_CLS_PEER=0` skips the peer; `PEERS_PYTHON` picks its python.

use llamafarm_core::ml::classifier::{FitOptions, TrainingExample};
use llamafarm_core::{LlamaFarm, ModelCache};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Rows of a two-column CSV (`text,category`) with RFC 4180 quoting.
fn read_csv(path: &Path) -> Vec<(String, String)> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = data.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (false, '\r') => {}
            (false, '\n') => {
                fields.push(std::mem::take(&mut cur));
                if fields.len() == 2 {
                    rows.push((fields[0].clone(), fields[1].clone()));
                }
                fields.clear();
            }
            (false, c) => cur.push(c),
        }
    }
    if !cur.is_empty() || !fields.is_empty() {
        fields.push(cur);
        if fields.len() == 2 {
            rows.push((fields[0].clone(), fields[1].clone()));
        }
    }
    if rows.first().map(|r| r.0 == "text") == Some(true) {
        rows.remove(0);
    }
    rows
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn write_jsonl(path: &Path, rows: &[(String, String)]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (t, l) in rows {
        writeln!(f, "{}", serde_json::json!({"text": t, "label": l})).unwrap();
    }
}

struct Side {
    accuracy: f64,
    fit_s: f64,
    predict_s: f64,
}

fn run_peer(
    model_dir: &Path,
    train: &[(String, String)],
    test: &[(String, String)],
    iters: usize,
    batch: usize,
    seed: u64,
    work: &Path,
) -> Result<(Side, String), String> {
    let py = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    if !py.exists() {
        return Err("run benches/peers/setup.sh first (or set PEERS_PYTHON)".into());
    }
    let (tp, sp) = (work.join("train.jsonl"), work.join("test.jsonl"));
    write_jsonl(&tp, train);
    write_jsonl(&sp, test);
    let out = std::process::Command::new(&py)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/setfit_peer.py"))
        .arg(model_dir)
        .arg(&tp)
        .arg(&sp)
        .arg(iters.to_string())
        .arg(batch.to_string())
        .arg(seed.to_string())
        .current_dir(work)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("peer printed no JSON")?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    Ok((
        Side { accuracy: v["accuracy"].as_f64().unwrap_or(0.0), fit_s: v["fit_s"].as_f64().unwrap_or(0.0), predict_s: v["predict_s"].as_f64().unwrap_or(0.0) },
        v["versions"].as_str().unwrap_or("").to_string(),
    ))
}

fn main() {
    llamafarm_core::system::tune_allocator();
    // RUST_LOG=info prints the fit's phases (fine-tuning, embedding, head).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).try_init();
    }
    let dir = std::env::var("BANKING77_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/classification/banking77"));
    if !dir.join("train.csv").is_file() || !dir.join("test.csv").is_file() {
        eprintln!("SKIP ml_classifier bench: {} is absent (set BANKING77_DIR)", dir.display());
        return;
    }
    let cache = ModelCache::from_vars(|k| std::env::var_os(k));
    let base = llamafarm_core::ml::classifier::DEFAULT_BASE_MODEL;
    let model = match cache.resolve(base) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP ml_classifier bench: {e}");
            return;
        }
    };
    let shots: Vec<usize> = std::env::var("ML_CLS_SHOTS").unwrap_or_else(|_| "8,16".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let iters = env_usize("ML_CLS_ITERATIONS", 20);
    let batch = env_usize("ML_CLS_BATCH", 16);
    let test_cap = env_usize("ML_CLS_TEST_ROWS", 0);
    let seed = env_usize("ML_CLS_SEED", 42) as u64;
    let peer_on = std::env::var("ML_CLS_PEER").map(|v| v != "0").unwrap_or(true);

    let train_rows = read_csv(&dir.join("train.csv"));
    let mut test_rows = read_csv(&dir.join("test.csv"));
    if test_cap > 0 && test_cap < test_rows.len() {
        Rng(seed ^ 0x7e57).shuffle(&mut test_rows);
        test_rows.truncate(test_cap);
    }
    let mut by_class: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, l)) in train_rows.iter().enumerate() {
        by_class.entry(l.clone()).or_default().push(i);
    }
    println!(
        "Banking77: {} train rows, {} classes, {} test rows; num_iterations {iters}, batch {batch}, seed {seed}, {} threads",
        train_rows.len(),
        by_class.len(),
        test_rows.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let mut table = Vec::new();
    let mut versions = String::new();
    for &n in &shots {
        let mut rng = Rng(seed);
        let mut sample: Vec<(String, String)> = Vec::new();
        for idx in by_class.values() {
            let mut idx = idx.clone();
            rng.shuffle(&mut idx);
            sample.extend(idx.iter().take(n).map(|&i| train_rows[i].clone()));
        }
        let work = tempfile::tempdir().unwrap();
        let lf = LlamaFarm::open_with(work.path().join("data"), ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
        let examples: Vec<TrainingExample> = sample.iter().map(|(t, l)| TrainingExample::new(t, l)).collect();
        let opts = FitOptions { num_iterations: iters, batch_size: batch, seed, overwrite: true, ..Default::default() };
        let t0 = Instant::now();
        let fit = lf.ml().classifier().fit("banking77", &examples, &opts).unwrap();
        let fit_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let texts: Vec<String> = test_rows.iter().map(|r| r.0.clone()).collect();
        let pred = lf.ml().classifier().predict(&fit.name, &texts).unwrap();
        let predict_s = t1.elapsed().as_secs_f64();
        let correct = pred.predictions.iter().zip(&test_rows).filter(|(p, r)| p.label == r.1).count();
        let ours = Side { accuracy: correct as f64 / test_rows.len().max(1) as f64, fit_s, predict_s };
        println!(
            "ours {n}-shot: accuracy {:.4}, fit {:.1} s ({} pairs, {} steps, loss {:.4} -> {:.4}), predict {:.1} s",
            ours.accuracy, ours.fit_s, fit.num_pairs, fit.steps, fit.initial_loss, fit.final_loss, ours.predict_s
        );
        let peer = if peer_on {
            match run_peer(&model.dir, &sample, &test_rows, iters, batch, seed, work.path()) {
                Ok((p, v)) => {
                    println!("setfit {n}-shot: accuracy {:.4}, fit {:.1} s, predict {:.1} s", p.accuracy, p.fit_s, p.predict_s);
                    versions = v;
                    Some(p)
                }
                Err(e) => {
                    println!("peer failed/skipped: {e}");
                    None
                }
            }
        } else {
            None
        };
        table.push((n, sample.len(), ours, peer));
    }
    println!("\n| shots/class | train examples | test rows | ours accuracy | setfit accuracy | diff (points) | ours fit s | setfit fit s | fit speed-up | ours predict s | setfit predict s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, m, o, p) in &table {
        match p {
            Some(p) => println!(
                "| {n} | {m} | {} | {:.2} % | {:.2} % | {:+.2} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.1} |",
                test_rows.len(),
                o.accuracy * 100.0,
                p.accuracy * 100.0,
                (o.accuracy - p.accuracy) * 100.0,
                o.fit_s,
                p.fit_s,
                p.fit_s / o.fit_s.max(1e-9),
                o.predict_s,
                p.predict_s
            ),
            None => println!("| {n} | {m} | {} | {:.2} % | - | - | {:.1} | - | - | {:.1} | - |", test_rows.len(), o.accuracy * 100.0, o.fit_s, o.predict_s),
        }
    }
    if !versions.is_empty() {
        println!("\npeer: {versions}");
    }
}
