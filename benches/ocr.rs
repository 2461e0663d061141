//! OCR quality and speed on SROIE receipts against RapidOCR and Tesseract, side by side
//! in one run.
//!
//! Data: `../shared/data/ocr/sroie-dev` (40 scanned receipts, `N.jpg` with `N.csv`
//! ground-truth lines; `SROIE_DIR` overrides). Quality: word-level precision, recall and
//! F1 of upper-cased alphanumeric tokens as multisets against the ground-truth lines
//! ([`llamafarm_core::vision::word_f1`]); speed: seconds per image (decode included on
//! every side), after one warm-up image. Threads: 2 on every side (`OCR_THREADS`).
//! Peers (`benches/peers/ocr_peers.py` in the venv from `benches/peers/setup.sh`):
//! RapidOCR 1.4.4 (PP-OCRv4 on ONNX Runtime, in-process) and Tesseract 5 (`--psm 6`,
//! Debian's `tesseract-ocr`); a peer that is not installed is skipped with a message.
//!
//! `cargo bench -p llamafarm-benches --bench ocr` (`OCR_LIMIT` images, `OCR_PEERS` a comma
//! list of peers, `PEERS_PYTHON`); with `--features ocr-tesseract`, our Tesseract engine
//! gets a row too.

use llamafarm_core::vision::{word_f1, OcrOptions, Vision};
use llamafarm_core::ModelCache;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

fn truth(csv: &std::path::Path) -> String {
    std::fs::read_to_string(csv)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            // 8 coordinates, then the text (which may hold commas).
            let mut parts = l.splitn(9, ',');
            for _ in 0..8 {
                parts.next()?;
            }
            parts.next().map(str::to_string)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Score {
    p: f64,
    r: f64,
    f1: f64,
    secs: f64,
}

fn score(texts: &[(String, f64)], truths: &[String]) -> Score {
    let n = texts.len() as f64;
    let (mut p, mut r, mut f1, mut secs) = (0.0, 0.0, 0.0, 0.0);
    for ((t, s), g) in texts.iter().zip(truths) {
        let (a, b, c) = word_f1(t, g);
        p += a;
        r += b;
        f1 += c;
        secs += s;
    }
    Score { p: p / n, r: r / n, f1: f1 / n, secs: secs / n }
}

fn main() {
    llamafarm_benches::init();
    let dir = std::env::var("SROIE_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ocr/sroie-dev"));
    if !dir.is_dir() {
        eprintln!("SKIP ocr bench: {} is absent (set SROIE_DIR)", dir.display());
        return;
    }
    let threads: usize = std::env::var("OCR_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let limit: usize = std::env::var("OCR_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let mut images: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
    images.sort();
    images.truncate(limit);
    let truths: Vec<String> = images.iter().map(|p| truth(&p.with_extension("csv"))).collect();
    println!("{} SROIE receipts, {threads} threads", images.len());

    // Ours: PP-OCRv6 small on rten, through the public API (decode + OCR).
    let vision = Vision::new(ModelCache::from_vars(|k| std::env::var_os(k)));
    let run_all = |opts: &OcrOptions| {
        let run = |p: &PathBuf| {
            let bytes = std::fs::read(p).unwrap();
            let t = Instant::now();
            let (out, _) = vision.ocr_bytes(&bytes, "receipt.jpg", opts).expect("OCR (run scripts/fetch-models.sh)");
            (out.pages[0].text.clone(), t.elapsed().as_secs_f64())
        };
        run(&images[0]);
        images.iter().map(run).collect::<Vec<(String, f64)>>()
    };
    let ours = run_all(&OcrOptions::default());
    let mut rows = vec![("llamafarm-rs (PP-OCRv6 small, rten)".to_string(), score(&ours, &truths))];
    // Built with the `ocr-tesseract` feature: Tesseract in-process through the same API.
    if cfg!(feature = "ocr-tesseract") {
        let tess = run_all(&OcrOptions { model: Some("tesseract".into()), ..Default::default() });
        rows.push(("llamafarm-rs (Tesseract 5 in-process, automatic layout)".to_string(), score(&tess, &truths)));
    }

    let py = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/ocr_peers.py");
    let peers = std::env::var("OCR_PEERS").unwrap_or_else(|_| "rapidocr,tesseract".into());
    for (engine, label) in [("rapidocr", "RapidOCR 1.4.4 (PP-OCRv4, ONNX Runtime)"), ("tesseract", "Tesseract 5 (--psm 6)")] {
        if !peers.split(',').any(|p| p.trim() == engine) {
            continue;
        }
        let cfg = json!({"engine": engine, "images": images, "threads": threads});
        let out = std::process::Command::new(&py).arg(&script).arg(cfg.to_string()).output();
        match out {
            Ok(o) if o.status.success() => {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
                let texts: Vec<(String, f64)> =
                    v.as_array().into_iter().flatten().map(|r| (r["text"].as_str().unwrap_or("").to_string(), r["secs"].as_f64().unwrap_or(0.0))).collect();
                if texts.len() == images.len() {
                    rows.push((label.to_string(), score(&texts, &truths)));
                } else {
                    eprintln!("SKIP {engine}: unexpected output");
                }
            }
            Ok(o) => eprintln!("SKIP {engine}: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed")),
            Err(e) => eprintln!("SKIP {engine}: {e} (run benches/peers/setup.sh)"),
        }
    }
    let base = rows[0].1.secs;
    println!("\n| engine | precision | recall | F1 | s/image | our speed-up over it |");
    println!("|---|---|---|---|---|---|");
    for (label, s) in &rows {
        println!("| {label} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2}x |", s.p, s.r, s.f1, s.secs, s.secs / base);
    }
}
