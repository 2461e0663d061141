//! Anomaly detection quality and speed on ADBench (cardio, thyroid, shuttle, breastw)
//! against scikit-learn, side by side in one run.
//!
//! Split: row `i` is a test row when `i % 10 >= 7` (30 %). Pipeline on both sides:
//! the scaler (`ANOMALY_SCALING`: robust, the default, standard, minmax or none) fitted
//! on the training split, the detector fitted on all training
//! rows (labels unused, contamination 0.1, one-class SVM `nu` 0.1, `gamma = scale`,
//! LOF 20 neighbours in novelty mode, 100 trees), test rows scored; ROC-AUC of the
//! raw scores, and fit + score wall time (best of `ANOMALY_REPEAT`, default 3);
//! scikit-learn's `n_jobs` is this machine's thread count, as ours.
//! Peer: `benches/peers/sklearn_anomaly.py` in the venv from `benches/peers/setup.sh`.
//!
//! `cargo bench -p llamafarm-benches --bench ml_anomaly` (`ADBENCH_DIR`, `ANOMALY_DATASETS`,
//! `PEERS_PYTHON` override).

use llamafarm_core::ml::anomaly::{npz, roc_auc, AnomalyModel, AnomalyRow, Backend, FitOptions, Scaling};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

const FILES: [(&str, &str); 4] = [("cardio", "6_cardio.npz"), ("thyroid", "38_thyroid.npz"), ("shuttle", "32_shuttle.npz"), ("breastw", "4_breastw.npz")];

struct Row {
    dataset: String,
    backend: Backend,
    auc: f64,
    secs: f64,
}

fn main() {
    let root =
        std::env::var("ADBENCH_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/anomaly/adbench"));
    if !root.is_dir() {
        eprintln!("SKIP ml_anomaly bench: {} is absent (set ADBENCH_DIR)", root.display());
        return;
    }
    let repeat: usize = std::env::var("ANOMALY_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let wanted: Vec<String> =
        std::env::var("ANOMALY_DATASETS").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_else(|_| FILES.iter().map(|f| f.0.to_string()).collect());
    let scaling = match std::env::var("ANOMALY_SCALING").as_deref() {
        Ok("standard") => Scaling::Standard,
        Ok("minmax") => Scaling::MinMax,
        Ok("none") => Scaling::None,
        _ => Scaling::Robust,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("threads: {threads} (scikit-learn n_jobs the same), repeat {repeat}, scaling {scaling}");
    let mut ours = Vec::new();
    for (name, file) in FILES.iter().filter(|f| wanted.iter().any(|w| w == f.0)) {
        let x = npz::read_npz(&root.join(file), "X").expect("X");
        let y = npz::read_npz(&root.join(file), "y").expect("y");
        let rows = x.rows();
        let (mut train, mut test, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rows.into_iter().enumerate() {
            if i % 10 >= 7 {
                test.push(AnomalyRow::Values(r));
                labels.push(y.data[i]);
            } else {
                train.push(AnomalyRow::Values(r));
            }
        }
        println!(
            "{name}: {} train, {} test, {} features, {:.1} % anomalies in test",
            train.len(),
            test.len(),
            x.shape[1],
            100.0 * labels.iter().sum::<f64>() / labels.len() as f64
        );
        for backend in [Backend::IsolationForest, Backend::OneClassSvm, Backend::LocalOutlierFactor, Backend::Ecod, Backend::Hbos] {
            let mut best = f64::INFINITY;
            let mut auc = 0.0;
            for _ in 0..repeat {
                let t0 = Instant::now();
                let opts = FitOptions { nu: Some(0.1), contamination: 0.1, scaling, ..FitOptions::with_backend(backend) };
                let m = AnomalyModel::fit(name, &train, &opts).expect("fit");
                let s = m.raw_scores(&test, None).expect("score");
                best = best.min(t0.elapsed().as_secs_f64());
                auc = roc_auc(&s, &labels);
            }
            println!("  ours {backend:<22} AUC {auc:.4}  fit+score {best:.3} s");
            ours.push(Row { dataset: name.to_string(), backend, auc, secs: best });
        }
    }

    let py = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    if !py.is_file() {
        println!("\npeers skipped: run benches/peers/setup.sh first (or set PEERS_PYTHON)");
        return;
    }
    let names: Vec<&str> = FILES.iter().map(|f| f.0).filter(|n| wanted.iter().any(|w| w == n)).collect();
    let out = std::process::Command::new(&py)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/sklearn_anomaly.py"))
        .arg(&root)
        .arg(names.join(","))
        .args(["--nu", "0.1", "--repeat", &repeat.to_string(), "--scaler", scaling.as_str(), "--threads", &threads.to_string()])
        .output()
        .expect("run python");
    let peer: Vec<Value> = match serde_json::from_slice(out.stdout.trim_ascii()) {
        Ok(v) => v,
        Err(_) => {
            println!("sklearn peer failed: {}", String::from_utf8_lossy(&out.stderr));
            return;
        }
    };
    let version = peer.first().and_then(|p| p["sklearn"].as_str()).unwrap_or("?").to_string();
    println!("\n| dataset | backend | ROC-AUC ours | ROC-AUC sklearn {version} | AUC diff | fit+score ours (s) | sklearn (s) | speed-up |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &ours {
        let p = peer.iter().find(|p| p["dataset"] == r.dataset.as_str() && p["backend"] == r.backend.as_str());
        match p {
            Some(p) => {
                let (pa, pt) = (p["auc"].as_f64().unwrap_or(f64::NAN), p["fit_score_s"].as_f64().unwrap_or(f64::NAN));
                println!("| {} | {} | {:.4} | {:.4} | {:+.4} | {:.3} | {:.3} | {:.2}x |", r.dataset, r.backend, r.auc, pa, r.auc - pa, r.secs, pt, pt / r.secs);
            }
            None => println!("| {} | {} | {:.4} | - | - | {:.3} | - | - |", r.dataset, r.backend, r.auc, r.secs),
        }
    }
}
