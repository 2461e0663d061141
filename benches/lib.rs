//! Benchmarks live in the bench targets of this package; this library holds what
//! several of them share.

use serde_json::json;
use std::path::PathBuf;

/// What every bench does first: apply the `LF_*` kernel and batching switches as `lf`
/// maps them, and tune the allocator as `lf serve` does.
pub fn init() {
    llamafarm_core::embed::configure(llamafarm_core::embed::EmbedOptions::from_vars(|n| std::env::var(n).ok()));
    llamafarm_core::system::tune_allocator();
}

/// BEIR SciFact beside the repository (`../shared/data/ir/scifact`, or `SCIFACT_DIR`);
/// `None`, after a SKIP line naming `bench`, when it is absent.
pub fn scifact_dir(bench: &str) -> Option<PathBuf> {
    let dir = std::env::var("SCIFACT_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ir/scifact"));
    if dir.join("corpus.jsonl").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIP {bench} bench: {} is absent (set SCIFACT_DIR)", dir.display());
        None
    }
}

/// The `p` quantile (0..1) of `v`, which it sorts.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Set a project made from the default template to chunk by characters
/// (`chunk_size`, `chunk_overlap`), run no extractors, and embed its database with `model`.
pub fn chunk_by_characters(project: &llamafarm_core::Project, model: &str, chunk_size: usize, chunk_overlap: usize) {
    project
        .update_config(|c| {
            let rag = c.rag.as_mut().unwrap();
            let s = &mut rag.data_processing_strategies.as_mut().unwrap()[0];
            if let llamafarm_core::config::ParserRef::Inline(p) = &mut s.parsers[0] {
                let cfg = p.config.get_or_insert_with(Default::default);
                cfg.insert("chunk_strategy".into(), json!("characters"));
                cfg.insert("chunk_size".into(), json!(chunk_size));
                cfg.insert("chunk_overlap".into(), json!(chunk_overlap));
                cfg.insert("max_chunk_size".into(), json!(chunk_size.max(8000)));
            }
            s.extractors = None;
            let db = &mut rag.databases.as_mut().unwrap()[0];
            let es: llamafarm_core::config::EmbeddingStrategyConfig =
                serde_json::from_value(json!({"name": "emb", "type": "UniversalEmbedder", "config": {"model": model}})).unwrap();
            db.embedding_strategies = Some(vec![es]);
            db.embedding_strategy = None;
            db.default_embedding_strategy = Some("emb".into());
            Ok(())
        })
        .unwrap();
}
