//! Ingestion: a stored file -> parser (chosen by the dataset's processing strategy)
//! -> chunks -> extractor metadata -> embeddings -> the database's index.

pub mod chunk;
pub mod extract;
pub mod parse;

use crate::config::{LlamaFarmConfig, ParserConfig, ParserRef};
use crate::error::{Error, ResourceKind, Result};
use crate::rag::NewChunk;
use crate::Project;
use chunk::ChunkConfig;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What happened to one file.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FileOutcome {
    /// SHA-256 of the file.
    pub file_hash: String,
    /// Its uploaded name.
    pub filename: String,
    /// `processed`, `skipped` (already indexed) or `failed`.
    pub status: String,
    /// Chunks written to the index.
    pub chunks: usize,
    /// Chunks already present (deduplicated).
    pub skipped_chunks: usize,
    /// The parser used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time spent per stage, in milliseconds.
    #[serde(default)]
    pub timings_ms: Map<String, Value>,
}

/// A parser of the strategy, resolved.
#[derive(Debug, Clone)]
struct ParserChoice {
    kind: String,
    config: ParserConfig,
}

/// The parsers of a strategy, component references resolved, ordered by priority.
fn strategy_parsers(cfg: &LlamaFarmConfig, strategy: &str) -> Result<(Vec<ParserChoice>, Vec<crate::config::ExtractorConfig>)> {
    let strategies = cfg.rag.as_ref().and_then(|r| r.data_processing_strategies.clone()).unwrap_or_default();
    let Some(s) = strategies.iter().find(|s| s.name == strategy) else {
        if strategy == crate::config::BUILTIN_STRATEGY {
            // The built-in universal strategy.
            let p = ParserConfig { kind: Some("UniversalParser".into()), ..Default::default() };
            return Ok((vec![ParserChoice { kind: "UniversalParser".into(), config: p }], vec![]));
        }
        return Err(Error::missing(ResourceKind::Strategy, strategy));
    };
    let comps = cfg.components();
    let mut out = Vec::new();
    for p in &s.parsers {
        let pc = match p {
            ParserRef::Inline(pc) => pc.clone(),
            ParserRef::Named(n) => comps
                .parsers
                .iter()
                .flatten()
                .find(|c| c.name.as_deref() == Some(n.as_str()))
                .cloned()
                .ok_or_else(|| Error::missing_in(ResourceKind::Parser, n.as_str(), format!("(named by strategy '{strategy}')")))?,
        };
        out.push(ParserChoice { kind: pc.kind.clone().unwrap_or_else(|| "UniversalParser".into()), config: pc });
    }
    out.sort_by_key(|p| p.config.priority.unwrap_or(50));
    Ok((out, s.extractors.clone().unwrap_or_default()))
}

fn matches(p: &ParserConfig, file_name: &str, mime: &str) -> bool {
    let ext = Path::new(file_name).extension().and_then(|e| e.to_str()).map(|e| format!(".{}", e.to_ascii_lowercase()));
    let by_ext = p.file_extensions.as_ref().filter(|l| !l.is_empty()).map(|l| ext.as_ref().is_some_and(|e| l.iter().any(|x| x.eq_ignore_ascii_case(e))));
    let by_glob = p.file_include_patterns.as_ref().filter(|l| !l.is_empty()).map(|l| l.iter().any(|g| extract::glob(g, file_name)));
    let by_mime = p.mime_types.as_ref().filter(|l| !l.is_empty()).map(|l| l.iter().any(|m| m == mime));
    match (by_ext, by_glob, by_mime) {
        (None, None, None) => true, // no filter: handles anything it can parse
        (a, b, c) => a == Some(true) || b == Some(true) || c == Some(true),
    }
}

/// A parser's settings with the upload's `parser_overrides` (keys are parser types or `*`) applied.
fn effective_config(p: &ParserConfig, overrides: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut cfg = p.config.clone().unwrap_or_default();
    if let Some(o) = overrides {
        for key in ["*", p.kind.as_deref().unwrap_or("")] {
            if let Some(Value::Object(m)) = o.get(key) {
                cfg.extend(m.clone());
            }
        }
    }
    cfg
}

fn chunk_config(p: &ParserConfig, overrides: Option<&Map<String, Value>>) -> ChunkConfig {
    let cfg = effective_config(p, overrides);
    let u = |k: &str, d: usize| cfg.get(k).and_then(|v| v.as_u64()).map(|v| v as usize).unwrap_or(d);
    let default_strategy = match p.kind.as_deref().unwrap_or("") {
        k if k.starts_with("PDF") => "paragraphs",
        k if k.starts_with("CSV") || k.starts_with("Excel") => "rows",
        k if k.starts_with("Markdown") => "sections",
        k if k.starts_with("Docx") => "paragraphs",
        k if k.starts_with("Text") => "sentences",
        _ => "sections",
    };
    ChunkConfig {
        strategy: cfg.get("chunk_strategy").and_then(|v| v.as_str()).unwrap_or(default_strategy).to_string(),
        chunk_size: u("chunk_size", 1000).max(1),
        chunk_overlap: u("chunk_overlap", 100),
        min_chunk_size: u("min_chunk_size", 50),
        max_chunk_size: u("max_chunk_size", 8000).max(1),
    }
}

/// Process one stored file of a dataset into its database. `cancel` is checked
/// between stages; a cancelled file writes nothing.
pub fn process_file(project: &Project, dataset: &str, hash: &str, overrides: Option<&Map<String, Value>>, cancel: &AtomicBool) -> FileOutcome {
    let mut out = FileOutcome {
        file_hash: hash.to_string(),
        filename: hash.to_string(),
        status: "failed".into(),
        chunks: 0,
        skipped_chunks: 0,
        parser: None,
        error: None,
        timings_ms: Map::new(),
    };
    match process_inner(project, dataset, hash, overrides, cancel, &mut out) {
        Ok(()) => {}
        Err(e) => {
            out.status = "failed".into();
            out.error = Some(e.to_string());
        }
    }
    out
}

fn process_inner(project: &Project, dataset: &str, hash: &str, overrides: Option<&Map<String, Value>>, cancel: &AtomicBool, out: &mut FileOutcome) -> Result<()> {
    let cfg = project.config_substituted()?;
    let ds = cfg.dataset_list().iter().find(|d| d.name == dataset).cloned().ok_or_else(|| Error::missing(ResourceKind::Dataset, dataset))?;
    let datasets = project.datasets();
    let meta = datasets.file_meta(dataset, hash)?;
    out.filename = meta.original_file_name.clone();
    let file_name = crate::dataset::safe_file_name(&meta.original_file_name);
    let t = Instant::now();
    let path = datasets.file_path(dataset, hash);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if bytes.is_empty() {
        return Err(Error::invalid("file", format!("'{file_name}' is empty")));
    }
    let (parsers, extractors) = strategy_parsers(&cfg, ds.strategy())?;
    // Already indexed (its first chunk is in the database): skip without re-parsing.
    let rag = project.rag();
    let db = rag.open(&cfg, Some(&ds.database))?;
    let first_id = NewChunk::new(hash, 0, "").id;
    let existing = crate::store::ChunkStore::get(db.store.as_ref(), std::slice::from_ref(&first_id))?;
    if !existing.is_empty() {
        out.status = "skipped".into();
        out.parser = existing[0].metadata.get("parser").and_then(|v| v.as_str()).map(String::from);
        out.skipped_chunks = existing[0].metadata.get("total_chunks").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
        return Ok(());
    }

    // Try matching parsers by priority; a failure falls through to the parser's
    // `fallback_parser`, then to the next match.
    let mut doc = None;
    let mut errors = Vec::new();
    let mut used: Option<ParserConfig> = None;
    let candidates: Vec<&ParserChoice> = parsers.iter().filter(|p| matches(&p.config, &file_name, &meta.mime_type)).collect();
    'outer: for p in &candidates {
        let mut kinds = vec![p.kind.clone()];
        if let Some(f) = &p.config.fallback_parser {
            kinds.push(f.clone());
        }
        for kind in kinds {
            let opts = parse::ParseOptions::from_config(&kind, &effective_config(&p.config, overrides));
            let input = parse::ParseInput::new(&bytes, &file_name).with_options(opts);
            match parse::Registry::global().for_file(&kind, &file_name).and_then(|parser| parser.parse(&input)) {
                Ok(d) if !d.sections.is_empty() => {
                    out.parser = Some(kind.clone());
                    used = Some(p.config.clone());
                    doc = Some(d);
                    break 'outer;
                }
                Ok(_) => errors.push(format!("{kind}: no text found")),
                Err(e) => errors.push(format!("{kind}: {e}")),
            }
        }
    }
    let doc = match doc {
        Some(d) => d,
        None if candidates.is_empty() => return Err(Error::invalid("file", format!("'{file_name}' is accepted by no parser of strategy '{}'", ds.strategy()))),
        None => return Err(Error::invalid("file", format!("'{file_name}' could not be parsed: {}", errors.join("; ")))),
    };
    out.timings_ms.insert("parse".into(), json!(t.elapsed().as_secs_f64() * 1000.0));
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::Cancelled);
    }

    let t = Instant::now();
    let ccfg = chunk_config(used.as_ref().unwrap_or(&ParserConfig::default()), overrides);
    let chunks = chunk::chunk(&doc, &ccfg);
    if chunks.is_empty() {
        return Err(Error::invalid("file", format!("'{file_name}' produced no chunks")));
    }
    let total = chunks.len();
    let processed_at = chrono::Utc::now().to_rfc3339();
    let ext = Path::new(&file_name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let mut new_chunks = Vec::with_capacity(total);
    for (i, c) in chunks.into_iter().enumerate() {
        let mut m = Map::new();
        m.insert("document_name".into(), json!(meta.original_file_name));
        m.insert("document_type".into(), json!(ext));
        m.insert("document_size".into(), json!(meta.size));
        m.insert("mime_type".into(), json!(meta.mime_type));
        m.insert("file_hash".into(), json!(hash));
        m.insert("source_dataset".into(), json!(dataset));
        m.insert("processed_at".into(), json!(processed_at));
        m.insert("chunk_index".into(), json!(i));
        m.insert("chunk_label".into(), json!(format!("{}/{total}", i + 1)));
        m.insert("total_chunks".into(), json!(total));
        m.insert(
            "chunk_position".into(),
            json!(if total == 1 {
                "only"
            } else if i == 0 {
                "start"
            } else if i + 1 == total {
                "end"
            } else {
                "middle"
            }),
        );
        m.insert("character_count".into(), json!(c.text.chars().count()));
        m.insert("word_count".into(), json!(c.text.split_whitespace().count()));
        m.insert("sentence_count".into(), json!(chunk::sentences(&c.text).len()));
        m.insert("parser".into(), json!(out.parser));
        m.insert("chunk_strategy".into(), json!(ccfg.strategy));
        if let Some(p) = c.page {
            m.insert("page".into(), json!(p));
        }
        if let Some(n) = doc.page_count {
            m.insert("page_count".into(), json!(n));
        }
        if let Some(h) = &c.heading {
            m.insert("section".into(), json!(h));
        }
        extract::run(&extractors, &file_name, &c.text, &mut m);
        new_chunks.push(NewChunk::new(hash, i, c.text).with_metadata(m));
    }
    out.timings_ms.insert("chunk".into(), json!(t.elapsed().as_secs_f64() * 1000.0));
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::Cancelled);
    }

    let t = Instant::now();
    let texts: Vec<&str> = new_chunks.iter().map(|c| c.content.as_str()).collect();
    let vectors = db.embedder.embed(&texts)?;
    out.timings_ms.insert("embed".into(), json!(t.elapsed().as_secs_f64() * 1000.0));
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::Cancelled);
    }
    let t = Instant::now();
    let records = new_chunks
        .into_iter()
        .zip(vectors)
        .map(|(c, vector)| crate::store::ChunkRecord { id: c.id, file_hash: c.file_hash, content: c.content, metadata: c.metadata, vector })
        .collect();
    let report = crate::store::ChunkStore::add(db.store.as_ref(), records)?;
    out.timings_ms.insert("index".into(), json!(t.elapsed().as_secs_f64() * 1000.0));
    out.chunks = report.added;
    out.skipped_chunks = report.skipped;
    out.status = if report.added == 0 && report.skipped > 0 { "skipped" } else { "processed" }.into();
    Ok(())
}
