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

/// Process one stored file of a dataset into its database (a group of one; see
/// [`IngestPlan`] for many). `cancel` is checked between stages; a cancelled file
/// writes nothing.
pub fn process_file(project: &Project, dataset: &str, hash: &str, overrides: Option<&Map<String, Value>>, cancel: &AtomicBool) -> FileOutcome {
    let plan = match IngestPlan::new(project, dataset, overrides.cloned()) {
        Ok(p) => p,
        Err(e) => return FileOutcome::failed(hash, hash, &e),
    };
    match plan.prepare(hash, cancel) {
        Prepared::Done(o) => o,
        Prepared::Chunks(f) => plan.commit(vec![f], cancel).pop().unwrap_or_else(|| FileOutcome::failed(hash, hash, &Error::Cancelled)),
    }
}

impl FileOutcome {
    fn new(hash: &str) -> Self {
        FileOutcome {
            file_hash: hash.to_string(),
            filename: hash.to_string(),
            status: "failed".into(),
            chunks: 0,
            skipped_chunks: 0,
            parser: None,
            error: None,
            timings_ms: Map::new(),
        }
    }

    /// A failed outcome with the error's text.
    pub fn failed(hash: &str, filename: &str, e: &Error) -> Self {
        let mut o = FileOutcome::new(hash);
        o.filename = filename.to_string();
        o.error = Some(e.public_message());
        o
    }

    /// Whether the file's chunks were written by this run.
    pub fn is_processed(&self) -> bool {
        self.status == "processed"
    }
}

/// What processing needs once for all the files of a run: the config read once, the
/// dataset's strategy resolved and its database opened. [`IngestPlan::prepare`] parses
/// and chunks one file (files can be prepared concurrently); [`IngestPlan::commit`]
/// embeds the chunks of many prepared files in full batches across files and writes
/// them in one index commit, so a corpus of small files costs one commit per group,
/// not one per file.
pub struct IngestPlan {
    dataset: String,
    strategy: String,
    datasets: crate::dataset::Datasets,
    parsers: Vec<ParserChoice>,
    extractors: Vec<crate::config::ExtractorConfig>,
    db: crate::rag::OpenDb,
    overrides: Option<Map<String, Value>>,
    registry: std::sync::Arc<parse::Registry>,
}

/// A file after [`IngestPlan::prepare`].
pub enum Prepared {
    /// Parsed and chunked, waiting to be embedded and committed.
    Chunks(PreparedFile),
    /// Finished without touching the index: skipped (already indexed) or failed.
    Done(FileOutcome),
}

/// A parsed and chunked file, not yet embedded.
pub struct PreparedFile {
    outcome: FileOutcome,
    chunks: Vec<NewChunk>,
}

impl PreparedFile {
    /// Chunks waiting to be embedded.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// SHA-256 of the file.
    pub fn file_hash(&self) -> &str {
        &self.outcome.file_hash
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

fn ms(t: Instant) -> Value {
    json!(t.elapsed().as_secs_f64() * 1000.0)
}

impl IngestPlan {
    /// Resolve the dataset's strategy and open its database.
    pub fn new(project: &Project, dataset: &str, overrides: Option<Map<String, Value>>) -> Result<Self> {
        let cfg = project.config_substituted()?;
        let ds = cfg.dataset_list().iter().find(|d| d.name == dataset).cloned().ok_or_else(|| Error::missing(ResourceKind::Dataset, dataset))?;
        let (parsers, extractors) = strategy_parsers(&cfg, ds.strategy())?;
        let db = project.rag().open(&cfg, Some(&ds.database))?;
        Ok(Self {
            dataset: dataset.to_string(),
            strategy: ds.strategy().to_string(),
            datasets: project.datasets(),
            parsers,
            extractors,
            db,
            overrides,
            registry: project.llamafarm().parsers(),
        })
    }

    /// Read, parse and chunk one stored file. A file already in the database (its
    /// first chunk is there) is skipped without parsing. A parser that panics fails
    /// its file, not the run.
    pub fn prepare(&self, hash: &str, cancel: &AtomicBool) -> Prepared {
        let mut out = FileOutcome::new(hash);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prepare_inner(hash, cancel, &mut out)))
            .unwrap_or_else(|p| Err(Error::internal(format!("the parser crashed on this file: {}", panic_message(&*p)))));
        match result {
            Ok(Some(chunks)) => Prepared::Chunks(PreparedFile { outcome: out, chunks }),
            Ok(None) => Prepared::Done(out),
            Err(e) => {
                out.status = "failed".into();
                out.error = Some(match e {
                    Error::Internal(m) => crate::error::redact_paths(&m),
                    e => e.public_message(),
                });
                Prepared::Done(out)
            }
        }
    }

    fn prepare_inner(&self, hash: &str, cancel: &AtomicBool, out: &mut FileOutcome) -> Result<Option<Vec<NewChunk>>> {
        let (dataset, overrides) = (self.dataset.as_str(), self.overrides.as_ref());
        let meta = self.datasets.file_meta(dataset, hash)?;
        out.filename = meta.original_file_name.clone();
        let file_name = crate::dataset::safe_file_name(&meta.original_file_name);
        let t = Instant::now();
        // Already indexed (its first chunk is in the database): skip without reading it.
        let first_id = NewChunk::new(hash, 0, "").id;
        let existing = crate::store::ChunkStore::get(self.db.store.as_ref(), std::slice::from_ref(&first_id))?;
        if !existing.is_empty() {
            out.status = "skipped".into();
            out.parser = existing[0].metadata.get("parser").and_then(|v| v.as_str()).map(String::from);
            out.skipped_chunks = existing[0].metadata.get("total_chunks").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
            return Ok(None);
        }
        let path = self.datasets.file_path(dataset, hash);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if bytes.is_empty() {
            return Err(Error::invalid("file", format!("'{file_name}' is empty")));
        }

        // Try matching parsers by priority; a failure falls through to the parser's
        // `fallback_parser`, then to the next match.
        let mut doc = None;
        let mut errors = Vec::new();
        let mut used: Option<ParserConfig> = None;
        let candidates: Vec<&ParserChoice> = self.parsers.iter().filter(|p| matches(&p.config, &file_name, &meta.mime_type)).collect();
        'outer: for p in &candidates {
            let mut kinds = vec![p.kind.clone()];
            if let Some(f) = &p.config.fallback_parser {
                kinds.push(f.clone());
            }
            for kind in kinds {
                let opts = parse::ParseOptions::from_config(&kind, &effective_config(&p.config, overrides));
                let input = parse::ParseInput::new(&bytes, &file_name).with_options(opts);
                match self.registry.for_file(&kind, &file_name).and_then(|parser| parser.parse(&input)) {
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
            None if candidates.is_empty() => return Err(Error::invalid("file", format!("'{file_name}' is accepted by no parser of strategy '{}'", self.strategy))),
            None => return Err(Error::invalid("file", format!("'{file_name}' could not be parsed: {}", errors.join("; ")))),
        };
        out.timings_ms.insert("parse".into(), ms(t));
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
            if let Some(e) = &doc.ocr_engine {
                m.insert("ocr_engine".into(), json!(e));
            }
            if let Some(lines) = c.page.and_then(|p| doc.ocr_lines.iter().find(|(n, _)| *n == p)).map(|(_, l)| l) {
                let boxes: Vec<Value> =
                    lines.iter().filter(|l| c.text.contains(l.text.as_str())).map(|l| json!({"text": l.text, "bbox": l.bbox, "confidence": l.confidence})).collect();
                if !boxes.is_empty() {
                    m.insert("ocr_boxes".into(), Value::Array(boxes));
                }
            }
            if let Some(h) = &c.heading {
                m.insert("section".into(), json!(h));
            }
            extract::run(&self.extractors, &file_name, &c.text, &mut m);
            new_chunks.push(NewChunk::new(hash, i, c.text).with_metadata(m));
        }
        out.timings_ms.insert("chunk".into(), ms(t));
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        Ok(Some(new_chunks))
    }

    /// Embed the chunks of `files` together (full batches across files) and write
    /// them in one index commit; returns each file's outcome, in order. The group is
    /// durable as a whole or not at all: a file is `processed` only once the commit
    /// holding its chunks has returned. When the group fails, its files are retried
    /// one at a time so a bad file fails alone. A cancel before the commit returns no
    /// outcomes (nothing was written).
    pub fn commit(&self, files: Vec<PreparedFile>, cancel: &AtomicBool) -> Vec<FileOutcome> {
        if files.is_empty() || cancel.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let n = files.len();
        match self.commit_group(files, cancel) {
            Ok(outcomes) => outcomes,
            Err((Error::Cancelled, _)) => Vec::new(),
            Err((e, files)) if n == 1 => files
                .into_iter()
                .map(|mut f| {
                    f.outcome.status = "failed".into();
                    f.outcome.error = Some(e.public_message());
                    f.outcome
                })
                .collect(),
            Err((_, files)) => files.into_iter().flat_map(|f| self.commit(vec![f], cancel)).collect(),
        }
    }

    /// Embed the chunks of `files` together without writing them anywhere: each file's
    /// outcome (`processed`, with its embedding time) and its chunk records, for a store
    /// in another process (an `lf worker` sends them to the API server). When the group
    /// fails, its files are embedded one at a time so a bad file fails alone.
    pub fn embed(&self, files: Vec<PreparedFile>) -> Vec<(FileOutcome, Vec<crate::store::ChunkRecord>)> {
        if files.is_empty() {
            return Vec::new();
        }
        let t = Instant::now();
        let texts: Vec<&str> = files.iter().flat_map(|f| f.chunks.iter().map(|c| c.content.as_str())).collect();
        let total = texts.len();
        match self.db.embedder.embed(&texts) {
            Ok(vectors) => {
                let embed_ms = t.elapsed().as_secs_f64() * 1000.0;
                let mut vectors = vectors.into_iter();
                files
                    .into_iter()
                    .map(|f| {
                        let mut o = f.outcome;
                        o.status = "processed".into();
                        o.chunks = f.chunks.len();
                        o.timings_ms.insert("embed".into(), json!(embed_ms * f.chunks.len() as f64 / total.max(1) as f64));
                        let records = f
                            .chunks
                            .into_iter()
                            .map(|c| crate::store::ChunkRecord {
                                id: c.id,
                                file_hash: c.file_hash,
                                content: c.content,
                                metadata: c.metadata,
                                vector: vectors.next().unwrap_or_default(),
                            })
                            .collect();
                        (o, records)
                    })
                    .collect()
            }
            Err(e) if files.len() == 1 => files
                .into_iter()
                .map(|f| {
                    let mut o = f.outcome;
                    o.status = "failed".into();
                    o.error = Some(e.public_message());
                    (o, Vec::new())
                })
                .collect(),
            Err(_) => files.into_iter().flat_map(|f| self.embed(vec![f])).collect(),
        }
    }

    fn commit_group(&self, files: Vec<PreparedFile>, cancel: &AtomicBool) -> std::result::Result<Vec<FileOutcome>, (Error, Vec<PreparedFile>)> {
        let total: usize = files.iter().map(|f| f.chunks.len()).sum();
        let group_files = files.len();
        let t = Instant::now();
        let vectors = {
            let texts: Vec<&str> = files.iter().flat_map(|f| f.chunks.iter().map(|c| c.content.as_str())).collect();
            match self.db.embedder.embed(&texts) {
                Ok(v) => v,
                Err(e) => return Err((e, files)),
            }
        };
        let embed_ms = t.elapsed().as_secs_f64() * 1000.0;
        if cancel.load(Ordering::SeqCst) {
            return Err((Error::Cancelled, files));
        }
        let t = Instant::now();
        let mut vectors = vectors.into_iter();
        let records: Vec<crate::store::ChunkRecord> = files
            .iter()
            .flat_map(|f| f.chunks.iter())
            .map(|c| crate::store::ChunkRecord {
                id: c.id.clone(),
                file_hash: c.file_hash.clone(),
                content: c.content.clone(),
                metadata: c.metadata.clone(),
                vector: vectors.next().unwrap_or_default(),
            })
            .collect();
        let report = match crate::store::ChunkStore::add(self.db.store.as_ref(), records) {
            Ok(r) => r,
            Err(e) => return Err((e, files)),
        };
        let index_ms = t.elapsed().as_secs_f64() * 1000.0;
        let skipped: std::collections::HashSet<&str> = report.skipped_ids.iter().map(String::as_str).collect();
        Ok(files
            .into_iter()
            .map(|f| {
                let mut o = f.outcome;
                let dup = f.chunks.iter().filter(|c| skipped.contains(c.id.as_str())).count();
                o.chunks = f.chunks.len() - dup;
                o.skipped_chunks = dup;
                o.status = if o.chunks == 0 && dup > 0 { "skipped" } else { "processed" }.into();
                // The group's embedding and commit time, shared out by chunk count.
                let share = f.chunks.len() as f64 / total.max(1) as f64;
                o.timings_ms.insert("embed".into(), json!(embed_ms * share));
                o.timings_ms.insert("index".into(), json!(index_ms * share));
                o.timings_ms.insert("group_files".into(), json!(group_files));
                o
            })
            .collect())
    }
}
