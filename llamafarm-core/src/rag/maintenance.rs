//! Maintenance of a database's index: compact, clear, delete documents, reindex, and a
//! portable export/import of its chunks with their vectors.
//!
//! The export is JSON Lines: a header line
//! `{"format": "llamafarm-rag-export", "version": 1, "database", "embedding_model",
//! "dimension", "metric", "chunks"}`, then one chunk per line (`id`, `file_hash`, `content`,
//! `metadata`, `vector`). An import checks the header against the target database's
//! embedder (same model id and dimension, else 422) before it writes anything.

use super::Rag;
use crate::error::{Error, Result};
use crate::store::ChunkRecord;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, Read, Seek, Write};

/// The `format` of an export's header line.
pub const EXPORT_FORMAT: &str = "llamafarm-rag-export";

/// Which documents [`Rag::delete_documents`] removes (any that match one of the lists).
#[derive(Debug, Clone, Default)]
pub struct DocumentSelector {
    /// Documents by id (the file hash).
    pub ids: Vec<String>,
    /// Documents by file name (`document_name` / `filename` / `source` metadata).
    pub filenames: Vec<String>,
    /// Documents with a chunk whose metadata has each of these values.
    pub metadata: Map<String, Value>,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Chunks added.
    pub imported: usize,
    /// Chunks already present (same id).
    pub skipped: usize,
    /// Distinct documents among the chunks read.
    pub documents: usize,
}

const BATCH: usize = 512;

impl Rag {
    /// Merge the text index's segments and purge deletions. Returns the segments merged.
    pub fn compact(&self, database: &str) -> Result<usize> {
        self.optimize(database)
    }

    /// Delete every chunk of a database (its datasets and files stay). Returns the chunks deleted.
    pub fn clear(&self, database: &str) -> Result<usize> {
        let cfg = self.config()?;
        let db = Self::database_config(&cfg, Some(database))?;
        let store = self.store_of(&db)?;
        store.clear()
    }

    /// Delete the documents that `sel` names. Returns `(documents, chunks)` deleted.
    pub fn delete_documents(&self, database: &str, sel: &DocumentSelector) -> Result<(usize, usize)> {
        if sel.ids.is_empty() && sel.filenames.is_empty() && sel.metadata.is_empty() {
            return Err(Error::invalid("selector", "names no document: give ids, filenames or a metadata filter"));
        }
        let cfg = self.config()?;
        let db = Self::database_config(&cfg, Some(database))?;
        let store = self.store_of(&db)?;
        let mut hashes: BTreeSet<String> = sel.ids.iter().cloned().collect();
        if !sel.filenames.is_empty() || !sel.metadata.is_empty() {
            for c in store.list(usize::MAX, 0)? {
                let m = &c.metadata;
                let name = ["document_name", "filename", "source"].iter().find_map(|k| m.get(*k).and_then(|v| v.as_str()));
                let by_name = name.is_some_and(|n| sel.filenames.iter().any(|f| f == n));
                let by_meta = !sel.metadata.is_empty()
                    && sel.metadata.iter().all(|(k, v)| m.get(k).is_some_and(|x| x == v || x.as_str().is_some_and(|s| Some(s) == v.as_str())));
                if by_name || by_meta {
                    hashes.insert(c.file_hash.clone());
                }
            }
        }
        let (mut docs, mut chunks) = (0, 0);
        for h in &hashes {
            let n = store.delete_file(h)?;
            if n > 0 {
                docs += 1;
                chunks += n;
            }
        }
        Ok((docs, chunks))
    }

    /// Re-embed every file of the datasets that feed `database`: its index is cleared,
    /// then a processing task per dataset runs. Returns the task ids.
    pub fn reindex(&self, database: &str) -> Result<Vec<String>> {
        let cfg = self.config()?;
        Self::database_config(&cfg, Some(database))?;
        self.clear(database)?;
        let tasks = self.project.llamafarm().tasks();
        let mut ids = Vec::new();
        for d in cfg.dataset_list().iter().filter(|d| d.database == database) {
            let files = d.files.clone().unwrap_or_default();
            if !files.is_empty() {
                ids.push(tasks.submit_process(&self.project, &d.name, files, None)?);
            }
        }
        Ok(ids)
    }

    /// Write a database's chunks, with their vectors and the embedding model's id, to `out`,
    /// a batch at a time (memory holds the ids and one batch). Returns the chunks written.
    /// Chunks deleted while the export runs are left out; the header's `chunks` counts
    /// those there were when it began.
    pub fn export(&self, database: &str, out: &mut dyn Write) -> Result<usize> {
        let cfg = self.config()?;
        let db = self.open(&cfg, Some(database))?;
        let ids = db.store.ids()?;
        let io = |e: std::io::Error| Error::internal(format!("writing the export: {e}"));
        let header = json!({
            "format": EXPORT_FORMAT, "version": 1, "database": database,
            "embedding_model": db.embedder.model_id(), "dimension": db.store.dimension().unwrap_or(db.embedder.dimension()),
            "metric": format!("{:?}", db.store.metric()).to_lowercase(), "chunks": ids.len(),
        });
        writeln!(out, "{header}").map_err(io)?;
        let mut written = 0;
        for batch in ids.chunks(BATCH) {
            let chunks = db.store.get(batch)?;
            let wanted: Vec<String> = chunks.iter().map(|c| c.id.clone()).collect();
            let vectors = db.store.vectors(&wanted)?;
            for (c, v) in chunks.into_iter().zip(vectors) {
                let Some(v) = v else { continue };
                let line = json!({ "id": c.id, "file_hash": c.file_hash, "content": c.content, "metadata": c.metadata, "vector": v });
                writeln!(out, "{line}").map_err(io)?;
                written += 1;
            }
        }
        out.flush().map_err(io)?;
        Ok(written)
    }

    /// Read an export into `database`. Refused before anything is written when the
    /// export's embedding model or dimension differ from the database's, or when any line
    /// is bad: every line is parsed and checked first, its record written to an unnamed
    /// spool file in the database's directory (binary, so it is not parsed again), then
    /// the spool is read back in batches, so memory holds one batch and the documents'
    /// hashes whatever the export's size.
    pub fn import(&self, database: &str, input: &mut dyn BufRead) -> Result<ImportReport> {
        let cfg = self.config()?;
        let db = self.open(&cfg, Some(database))?;
        let mut lines = input.lines();
        let bad = |what: String| Error::invalid("export", what);
        let header: Value = match lines.next() {
            Some(Ok(l)) => serde_json::from_str(&l).map_err(|e| bad(format!("has no header line: {e}")))?,
            Some(Err(e)) => return Err(bad(format!("could not be read: {e}"))),
            None => return Err(bad("is empty".into())),
        };
        if header["format"] != EXPORT_FORMAT {
            return Err(bad(format!("is not a LlamaFarm RAG export (format must be '{EXPORT_FORMAT}')")));
        }
        let model = header["embedding_model"].as_str().unwrap_or("");
        if model != db.embedder.model_id() {
            return Err(Error::invalid(
                "embedding_model",
                format!(
                    "of the export is '{model}', database '{database}' embeds with '{}': re-embed the documents instead (upload and process)",
                    db.embedder.model_id()
                ),
            ));
        }
        let dim = header["dimension"].as_u64().unwrap_or(0) as usize;
        let want = db.store.dimension().unwrap_or(db.embedder.dimension());
        if want != 0 && dim != want {
            return Err(Error::invalid("dimension", format!("of the export is {dim}, database '{database}' holds {want}")));
        }
        let record = |line: &str, n: usize| -> Result<ChunkRecord> {
            let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("line {n}: {e}")))?;
            let vector: Vec<f32> = serde_json::from_value(v["vector"].clone()).map_err(|e| bad(format!("line {n}: vector: {e}")))?;
            if vector.len() != dim {
                return Err(bad(format!("line {n}: the vector has {} dimensions, the header says {dim}", vector.len())));
            }
            let s = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| bad(format!("line {n}: no string `{k}`")));
            Ok(ChunkRecord {
                id: s("id")?,
                file_hash: s("file_hash")?,
                content: s("content")?,
                metadata: v["metadata"].as_object().cloned().unwrap_or_default(),
                vector,
            })
        };
        // Check every line first, so a bad line writes nothing; the good ones go to the spool.
        let dir = self.store_dir(database);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let spool_io = |e: std::io::Error| Error::io(&dir, e);
        let mut spool = std::io::BufWriter::new(tempfile::tempfile_in(&dir).map_err(spool_io)?);
        let mut files = BTreeSet::new();
        for (i, line) in lines.enumerate() {
            let line = line.map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
            if line.trim().is_empty() {
                continue;
            }
            let r = record(&line, i + 2)?;
            spool_record(&mut spool, &r).map_err(spool_io)?;
            files.insert(r.file_hash);
        }
        let mut spool = spool.into_inner().map_err(|e| spool_io(e.into_error()))?;
        spool.seek(std::io::SeekFrom::Start(0)).map_err(spool_io)?;
        let mut report = ImportReport { documents: files.len(), ..Default::default() };
        let mut batch = Vec::with_capacity(BATCH);
        let add = |batch: &mut Vec<ChunkRecord>, report: &mut ImportReport| -> Result<()> {
            let r = db.store.add(std::mem::take(batch))?;
            report.imported += r.added;
            report.skipped += r.skipped;
            Ok(())
        };
        let mut spool = std::io::BufReader::new(spool);
        while let Some(r) = unspool_record(&mut spool).map_err(spool_io)? {
            batch.push(r);
            if batch.len() == BATCH {
                add(&mut batch, &mut report)?;
            }
        }
        if !batch.is_empty() {
            add(&mut batch, &mut report)?;
        }
        db.store.optimize()?;
        Ok(report)
    }
}

/// Append a checked record to the import spool: each string and the vector length-prefixed,
/// the metadata as JSON, the vector as little-endian `f32`.
fn spool_record(w: &mut impl Write, r: &ChunkRecord) -> std::io::Result<()> {
    let meta = Value::Object(r.metadata.clone()).to_string();
    for s in [&r.id, &r.file_hash, &r.content, &meta] {
        w.write_all(&(s.len() as u64).to_le_bytes())?;
        w.write_all(s.as_bytes())?;
    }
    w.write_all(&(r.vector.len() as u64).to_le_bytes())?;
    let bytes: Vec<u8> = r.vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    w.write_all(&bytes)
}

/// The next record [`spool_record`] wrote; `None` at the end of the spool.
fn unspool_record(r: &mut impl Read) -> std::io::Result<Option<ChunkRecord>> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("import spool: {what}"));
    // The first length: a clean end of the spool ends the records.
    let mut first = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match r.read(&mut first[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(invalid("truncated")),
            n => got += n,
        }
    }
    let string = |b: Vec<u8>| String::from_utf8(b).map_err(|_| invalid("not UTF-8"));
    let id = string(read_bytes(r, u64::from_le_bytes(first))?)?;
    let (file_hash, content, meta) = (string(field(r, 1)?)?, string(field(r, 1)?)?, string(field(r, 1)?)?);
    let bytes = field(r, 4)?;
    let vector = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let metadata = match serde_json::from_str(&meta) {
        Ok(Value::Object(m)) => m,
        _ => return Err(invalid("metadata")),
    };
    Ok(Some(ChunkRecord { id, file_hash, content, metadata, vector }))
}

/// A length-prefixed field of `len * unit` bytes.
fn field(r: &mut impl Read, unit: u64) -> std::io::Result<Vec<u8>> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    let len = unit.checked_mul(u64::from_le_bytes(b)).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "import spool: a field's length"))?;
    read_bytes(r, len)
}

fn read_bytes(r: &mut impl Read, len: u64) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    r.take(len).read_to_end(&mut b)?;
    if b.len() as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "import spool: truncated"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_records_read_back_whole_and_a_cut_spool_is_an_error() {
        let rec = |i: usize| ChunkRecord {
            id: format!("c{i}"),
            file_hash: "ab".repeat(32),
            content: format!("täxt\t{i}\n\"quoted\""),
            metadata: json!({"page": i, "name": "a.pdf"}).as_object().cloned().unwrap(),
            vector: vec![0.1 * i as f32, -1e-30, f32::MAX, 0.0],
        };
        let mut spool = Vec::new();
        for i in 0..3 {
            spool_record(&mut spool, &rec(i)).unwrap();
        }
        let mut r = &spool[..];
        for i in 0..3 {
            let got = unspool_record(&mut r).unwrap().unwrap();
            let want = rec(i);
            assert_eq!((got.id, got.file_hash, got.content, got.metadata, got.vector), (want.id, want.file_hash, want.content, want.metadata, want.vector));
        }
        assert!(unspool_record(&mut r).unwrap().is_none(), "the end of the spool");
        for cut in [3, 12, spool.len() / 3 - 2] {
            let mut r = &spool[..cut];
            assert!(unspool_record(&mut r).is_err(), "a spool cut at {cut} bytes");
        }
    }
}
