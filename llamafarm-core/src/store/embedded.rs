//! The embedded store: tantivy (text, BM25, metadata, vectors on disk) plus an
//! in-memory vector matrix and, past [`HNSW_THRESHOLD`] chunks, an HNSW graph.

use super::{AddReport, ChunkRecord, ChunkStore, Hit, MetadataFilter, Metric, StoreStats, StoredChunk};
use crate::error::{Error, Result};
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::prelude::Distance;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value as _, STORED, STRING};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Below this many live chunks, vector search is an exact scan (fast and perfect);
/// above it an HNSW graph is built in the background and used once ready.
pub const HNSW_THRESHOLD: usize = 20_000;

const TOKENIZER: &str = "lf_en";
const META_FILE: &str = "store.json";

fn te(e: tantivy::TantivyError) -> Error {
    Error::Internal(format!("index: {e}"))
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    file_hash: Field,
    content: Field,
    metadata: Field,
    vector: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqsAndPositions))
        .set_stored();
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        file_hash: b.add_text_field("file_hash", STRING | STORED),
        content: b.add_text_field("content", text),
        metadata: b.add_text_field("metadata", STORED),
        vector: b.add_bytes_field("vector", STORED),
    };
    (b.build(), f)
}

fn analyzer() -> TextAnalyzer {
    let mut b = TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).dynamic();
    if let Some(sw) = StopWordFilter::new(Language::English) {
        b = b.filter_dynamic(sw);
    }
    b.filter_dynamic(Stemmer::new(Language::English)).build()
}

/// Cosine distance on pre-normalised vectors, clamped at 0 (hnsw_rs's `DistDot`
/// asserts on the tiny negative values rounding produces).
#[derive(Default, Clone, Copy)]
struct NormalizedCosine;

impl Distance<f32> for NormalizedCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four accumulators so LLVM vectorises (AVX2/FMA with target-cpu=x86-64-v3).
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for j in 0..8 {
            acc[j] += a[i * 8 + j] * b[i * 8 + j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[derive(Default)]
struct State {
    dim: Option<usize>,
    ids: Vec<Arc<str>>,
    files: Vec<Arc<str>>,
    metas: Vec<Map<String, Value>>,
    /// Row-major, `ids.len() * dim`, as given.
    vectors: Vec<f32>,
    /// L2 norm of each row.
    norms: Vec<f32>,
    alive: Vec<bool>,
    by_id: HashMap<Arc<str>, usize>,
    live: usize,
}

impl State {
    fn row(&self, r: usize) -> &[f32] {
        let d = self.dim.unwrap_or(0);
        &self.vectors[r * d..(r + 1) * d]
    }

    fn push(&mut self, id: Arc<str>, file: Arc<str>, meta: Map<String, Value>, v: &[f32]) {
        let r = self.ids.len();
        self.by_id.insert(id.clone(), r);
        self.ids.push(id);
        self.files.push(file);
        self.metas.push(meta);
        self.norms.push(dot(v, v).sqrt());
        self.vectors.extend_from_slice(v);
        self.alive.push(true);
        self.live += 1;
    }
}

struct Ann {
    hnsw: Hnsw<'static, f32, NormalizedCosine>,
    /// Rows `0..rows` are in the graph (rows added later are inserted, or scanned exactly).
    rows: std::sync::atomic::AtomicUsize,
    /// Serialises inserts.
    insert: Mutex<()>,
}

/// The default store. Open one per database directory; share it via `Arc`.
pub struct EmbeddedStore {
    dir: PathBuf,
    /// Kept open for the life of the store (the reader and writer hang off it).
    #[allow(dead_code)]
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    metric: Metric,
    state: Arc<RwLock<State>>,
    ann: Arc<RwLock<Option<Arc<Ann>>>>,
    building: Arc<AtomicBool>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoreMeta {
    metric: Metric,
    #[serde(default)]
    dimension: Option<usize>,
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Metric::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown metric {s}")))
    }
}

impl EmbeddedStore {
    /// Open or create the store in `dir`. `metric` applies at creation; an existing
    /// store keeps the metric it was created with.
    pub fn open(dir: &Path, metric: Metric) -> Result<Self> {
        let tdir = dir.join("tantivy");
        std::fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
        let meta_path = dir.join(META_FILE);
        let meta: StoreMeta = match std::fs::read(&meta_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Parse { what: meta_path.display().to_string(), message: e.to_string() })?,
            Err(_) => {
                let m = StoreMeta { metric, dimension: None };
                crate::fsutil::atomic_write(&meta_path, &serde_json::to_vec(&m).unwrap_or_default())?;
                m
            }
        };
        let (schema, fields) = schema();
        let mmap = tantivy::directory::MmapDirectory::open(&tdir).map_err(|e| Error::Internal(format!("index dir: {e}")))?;
        let index = Index::open_or_create(mmap, schema).map_err(te)?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let writer: IndexWriter = index.writer_with_num_threads(1, 64 * 1024 * 1024).map_err(te)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(te)?;
        let store = Self {
            dir: dir.to_path_buf(),
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            metric: meta.metric,
            state: Arc::new(RwLock::new(State { dim: meta.dimension, ..Default::default() })),
            ann: Arc::new(RwLock::new(None)),
            building: Arc::new(AtomicBool::new(false)),
        };
        store.load_state()?;
        store.maybe_build_ann();
        Ok(store)
    }

    /// Read every live chunk's id, file, metadata and vector from the last commit.
    fn load_state(&self) -> Result<()> {
        let searcher = self.reader.searcher();
        let mut st = State { dim: self.state.read().unwrap_or_else(|p| p.into_inner()).dim, ..Default::default() };
        for seg in searcher.segment_readers() {
            let store = seg.get_store_reader(64).map_err(|e| Error::Internal(format!("doc store: {e}")))?;
            for doc in store.iter::<TantivyDocument>(seg.alive_bitset()) {
                let doc = doc.map_err(te)?;
                let (id, file, meta, vec) = self.decode(&doc);
                if st.dim.is_none() && !vec.is_empty() {
                    st.dim = Some(vec.len());
                }
                if Some(vec.len()) != st.dim {
                    tracing::warn!(chunk = %id, "skipping chunk with a vector of the wrong length");
                    continue;
                }
                st.push(id.into(), file.into(), meta, &vec);
            }
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
        Ok(())
    }

    fn decode(&self, doc: &TantivyDocument) -> (String, String, Map<String, Value>, Vec<f32>) {
        let s = |f: Field| doc.get_first(f).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let meta = serde_json::from_str::<Map<String, Value>>(&s(self.fields.metadata)).unwrap_or_default();
        let vec = doc
            .get_first(self.fields.vector)
            .and_then(|v| v.as_bytes())
            .map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            .unwrap_or_default();
        (s(self.fields.id), s(self.fields.file_hash), meta, vec)
    }

    fn to_stored(&self, doc: &TantivyDocument) -> StoredChunk {
        let s = |f: Field| doc.get_first(f).and_then(|v| v.as_str()).unwrap_or("").to_string();
        StoredChunk {
            id: s(self.fields.id),
            file_hash: s(self.fields.file_hash),
            content: s(self.fields.content),
            metadata: serde_json::from_str(&s(self.fields.metadata)).unwrap_or_default(),
        }
    }

    fn save_meta(&self, dim: Option<usize>) -> Result<()> {
        let m = StoreMeta { metric: self.metric, dimension: dim };
        crate::fsutil::atomic_write(&self.dir.join(META_FILE), &serde_json::to_vec(&m).unwrap_or_default())
    }

    /// Build the HNSW graph in a background thread when the store is large enough.
    fn maybe_build_ann(&self) {
        let (live, rows, dead) = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            (st.live, st.ids.len(), st.ids.len() - st.live)
        };
        let current = self.ann.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|a| a.rows.load(Ordering::SeqCst));
        let stale = match current {
            None => live >= HNSW_THRESHOLD,
            // Rebuild when many rows are dead in the graph (new rows are inserted as they come).
            Some(covered) => rows.saturating_sub(covered) > covered / 2 || dead > rows / 4,
        };
        if stale && !self.building.swap(true, Ordering::SeqCst) {
            // Built from a snapshot in a background thread; searches stay exact until it lands.
            let snapshot = {
                let st = self.state.read().unwrap_or_else(|p| p.into_inner());
                (st.vectors.clone(), st.norms.clone(), st.dim.unwrap_or(0), st.ids.len())
            };
            let (ann, building, state) = (self.ann.clone(), self.building.clone(), self.state.clone());
            std::thread::spawn(move || {
                let built = Arc::new(build_ann(snapshot.0, snapshot.1, snapshot.2, snapshot.3));
                // Catch up with rows added while building, then swap the graph in.
                let _g = built.insert.lock().unwrap_or_else(|p| p.into_inner());
                let tail: Vec<(Vec<f32>, usize)> = {
                    let st = state.read().unwrap_or_else(|p| p.into_inner());
                    (snapshot.3..st.ids.len())
                        .map(|r| {
                            let n = st.norms[r].max(1e-12);
                            (st.row(r).iter().map(|x| x / n).collect(), r)
                        })
                        .collect()
                };
                if !tail.is_empty() {
                    let data: Vec<(&Vec<f32>, usize)> = tail.iter().map(|(v, r)| (v, *r)).collect();
                    built.hnsw.parallel_insert(&data);
                    built.rows.store(snapshot.3 + tail.len(), Ordering::SeqCst);
                }
                drop(_g);
                *ann.write().unwrap_or_else(|p| p.into_inner()) = Some(built);
                building.store(false, Ordering::SeqCst);
            });
        }
    }

    /// Insert rows `from..` into the graph when it already covers everything before them.
    fn extend_ann(&self, from: usize) {
        let Some(ann) = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let _g = ann.insert.lock().unwrap_or_else(|p| p.into_inner());
        if ann.rows.load(Ordering::SeqCst) != from {
            return; // a gap: the tail is scanned exactly until the next rebuild
        }
        let (rows, dim) = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            let dim = st.dim.unwrap_or(0);
            let rows: Vec<(Vec<f32>, usize)> = (from..st.ids.len())
                .map(|r| {
                    let n = st.norms[r].max(1e-12);
                    (st.row(r).iter().map(|x| x / n).collect(), r)
                })
                .collect();
            (rows, dim)
        };
        if rows.is_empty() || dim == 0 {
            return;
        }
        let data: Vec<(&Vec<f32>, usize)> = rows.iter().map(|(v, r)| (v, *r)).collect();
        ann.hnsw.parallel_insert(&data);
        ann.rows.store(from + rows.len(), Ordering::SeqCst);
    }

    /// Wait until no graph build is running (tests and benchmarks).
    pub fn wait_for_index(&self) {
        while self.building.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn commit(&self, w: &mut IndexWriter) -> Result<()> {
        w.commit().map_err(te)?;
        self.reader.reload().map_err(te)
    }

    /// Directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn exact(&self, st: &State, q: &[f32], qn: f32, k: usize, metric: Metric, filter: Option<&MetadataFilter>) -> Vec<(usize, f32)> {
        let n = st.ids.len();
        let score_row = |r: usize| -> Option<(usize, f32)> {
            if !st.alive[r] || filter.is_some_and(|f| !f.matches(&st.metas[r])) {
                return None;
            }
            Some((r, similarity(metric, q, qn, st.row(r), st.norms[r])))
        };
        let mut scored: Vec<(usize, f32)> = if n > 8192 {
            use rayon::prelude::*;
            (0..n).into_par_iter().filter_map(score_row).collect()
        } else {
            (0..n).filter_map(score_row).collect()
        };
        top_k(&mut scored, k);
        scored
    }
}

fn build_ann(vectors: Vec<f32>, norms: Vec<f32>, dim: usize, rows: usize) -> Ann {
    let t = std::time::Instant::now();
    let hnsw: Hnsw<'static, f32, NormalizedCosine> = Hnsw::new(24, rows.max(1), 16, 200, NormalizedCosine);
    let normalized: Vec<Vec<f32>> = (0..rows)
        .map(|r| {
            let n = norms[r].max(1e-12);
            vectors[r * dim..(r + 1) * dim].iter().map(|x| x / n).collect()
        })
        .collect();
    let data: Vec<(&Vec<f32>, usize)> = normalized.iter().zip(0..rows).collect();
    hnsw.parallel_insert(&data);
    let mut hnsw = hnsw;
    hnsw.set_searching_mode(true);
    tracing::info!(rows, secs = t.elapsed().as_secs_f64(), "built HNSW graph");
    Ann { hnsw, rows: std::sync::atomic::AtomicUsize::new(rows), insert: Mutex::new(()) }
}

/// Similarity in 0..1 with the original's distance-to-score conversions.
fn similarity(metric: Metric, q: &[f32], qn: f32, v: &[f32], vn: f32) -> f32 {
    match metric {
        Metric::Cosine => {
            let cos = if qn == 0.0 || vn == 0.0 { 0.0 } else { dot(q, v) / (qn * vn) };
            1.0 - (1.0 - cos) / 2.0
        }
        Metric::L2 => {
            let d: f32 = q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
            1.0 / (1.0 + d / 100.0)
        }
        Metric::Ip => ((1.0 + dot(q, v)) / 2.0).clamp(0.0, 1.0),
        Metric::Manhattan => {
            let d: f32 = q.iter().zip(v).map(|(a, b)| (a - b).abs()).sum();
            1.0 / (1.0 + d)
        }
    }
}

/// Keep the `k` best (highest score) in descending order.
fn top_k(v: &mut Vec<(usize, f32)>, k: usize) {
    if v.len() > k {
        v.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
    }
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

impl ChunkStore for EmbeddedStore {
    fn add(&self, chunks: Vec<ChunkRecord>) -> Result<AddReport> {
        if chunks.is_empty() {
            return Ok(AddReport::default());
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let total = chunks.len();
        let (dim, fresh) = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            let dim = st.dim.unwrap_or(chunks[0].vector.len());
            let mut seen = HashSet::new();
            let fresh: Vec<ChunkRecord> =
                chunks.into_iter().filter(|c| !st.by_id.contains_key(c.id.as_str()) && seen.insert(c.id.clone())).collect();
            (dim, fresh)
        };
        if dim == 0 {
            return Err(Error::Invalid("cannot store an empty embedding vector".into()));
        }
        for c in &fresh {
            if c.vector.len() != dim {
                return Err(Error::Invalid(format!(
                    "embedding dimension mismatch: the index holds {dim}-dimensional vectors, chunk '{}' has {}",
                    c.id,
                    c.vector.len()
                )));
            }
            if c.vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::Invalid(format!("chunk '{}' has a non-finite embedding value", c.id)));
            }
        }
        let added = fresh.len();
        for c in &fresh {
            let mut doc = TantivyDocument::default();
            doc.add_text(self.fields.id, &c.id);
            doc.add_text(self.fields.file_hash, &c.file_hash);
            doc.add_text(self.fields.content, &c.content);
            doc.add_text(self.fields.metadata, serde_json::to_string(&c.metadata).unwrap_or_default());
            let bytes: Vec<u8> = c.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            doc.add_bytes(self.fields.vector, &bytes);
            w.add_document(doc).map_err(te)?;
        }
        let first = self.state.read().unwrap_or_else(|p| p.into_inner()).dim.is_none();
        if first {
            self.save_meta(Some(dim))?;
        }
        self.commit(&mut w)?;
        let first_new = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.dim = Some(dim);
            let first = st.ids.len();
            for c in fresh {
                st.push(c.id.into(), c.file_hash.into(), c.metadata, &c.vector);
            }
            first
        };
        drop(w);
        self.extend_ann(first_new);
        self.maybe_build_ann();
        Ok(AddReport { added, skipped: total - added })
    }

    fn delete_file(&self, file_hash: &str) -> Result<usize> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<usize> = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            (0..st.ids.len()).filter(|&r| st.alive[r] && &*st.files[r] == file_hash).collect()
        };
        if rows.is_empty() {
            return Ok(0);
        }
        w.delete_term(Term::from_field_text(self.fields.file_hash, file_hash));
        self.commit(&mut w)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            for &r in &rows {
                st.alive[r] = false;
                let id = st.ids[r].clone();
                st.by_id.remove(&id);
                st.live -= 1;
            }
        }
        drop(w);
        self.maybe_build_ann();
        Ok(rows.len())
    }

    fn clear(&self) -> Result<usize> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.state.read().unwrap_or_else(|p| p.into_inner()).live;
        w.delete_all_documents().map_err(te)?;
        self.commit(&mut w)?;
        let dim = self.state.read().unwrap_or_else(|p| p.into_inner()).dim;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State { dim, ..Default::default() };
        *self.ann.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(n)
    }

    fn vector_search(&self, query: &[f32], k: usize, metric: Metric, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let Some(dim) = st.dim else { return Ok(Vec::new()) };
        if query.len() != dim {
            return Err(Error::Invalid(format!(
                "embedding dimension mismatch: the query vector has {} dimensions, the index holds {dim}",
                query.len()
            )));
        }
        let k = k.max(1);
        let qn = dot(query, query).sqrt();
        let ann = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone();
        let filter = filter.filter(|f| !f.is_empty());
        // The graph holds cosine geometry; other metrics, filters and rows not yet in
        // the graph are served exactly.
        let covered = ann.as_ref().map(|a| a.rows.load(Ordering::SeqCst).min(st.ids.len())).unwrap_or(0);
        let use_ann = ann.is_some() && metric == Metric::Cosine && filter.is_none() && covered > 0;
        let rows: Vec<(usize, f32)> = if use_ann {
            let a = ann.unwrap_or_else(|| unreachable!());
            let qn1 = qn.max(1e-12);
            let qv: Vec<f32> = query.iter().map(|x| x / qn1).collect();
            // No filter closure: hnsw_rs explores (almost) the whole graph when given
            // one. Deleted rows are dropped afterwards from a slightly wider search.
            let dead = st.ids.len() - st.live;
            let want = if dead == 0 { k } else { (k * 2 + 10).min(covered) };
            let ef = (want * 2).max(64);
            let mut found: Vec<(usize, f32)> = a
                .hnsw
                .search(&qv, want, ef)
                .into_iter()
                .filter(|n| n.d_id < covered && st.alive[n.d_id])
                .map(|n| (n.d_id, similarity(metric, query, qn, st.row(n.d_id), st.norms[n.d_id])))
                .collect();
            if found.len() < k.min(st.live) && dead > 0 {
                // Too many deleted neighbours: fall back to the exact scan.
                self.exact(&st, query, qn, k, metric, None)
            } else {
                // Rows added since the graph was built: exact.
                for r in covered..st.ids.len() {
                    if st.alive[r] {
                        found.push((r, similarity(metric, query, qn, st.row(r), st.norms[r])));
                    }
                }
                top_k(&mut found, k);
                found
            }
        } else {
            self.exact(&st, query, qn, k, metric, filter)
        };
        Ok(rows.into_iter().map(|(r, s)| Hit { id: st.ids[r].to_string(), score: s }).collect())
    }

    fn keyword_search(&self, query: &str, k: usize, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        let searcher = self.reader.searcher();
        // Free text, no query syntax: analyse it like the content and OR the terms.
        let mut tokens = Vec::new();
        let mut a = analyzer();
        let mut stream = a.token_stream(query);
        while stream.advance() {
            tokens.push(stream.token().text.clone());
        }
        tokens.sort();
        tokens.dedup();
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = tokens
            .iter()
            .map(|t| {
                let q: Box<dyn Query> =
                    Box::new(TermQuery::new(Term::from_field_text(self.fields.content, t), IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        let q = BooleanQuery::new(clauses);
        let filter = filter.filter(|f| !f.is_empty());
        let mut want = if filter.is_some() { k * 4 } else { k };
        loop {
            let top = searcher.search(&q, &TopDocs::with_limit(want).order_by_score()).map_err(te)?;
            let exhausted = top.len() < want;
            let mut hits = Vec::new();
            for (score, addr) in top {
                let doc: TantivyDocument = searcher.doc(addr).map_err(te)?;
                let id = doc.get_first(self.fields.id).and_then(|v| v.as_str()).unwrap_or("").to_string();
                if let Some(f) = filter {
                    let meta: Map<String, Value> = doc
                        .get_first(self.fields.metadata)
                        .and_then(|v| v.as_str())
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_default();
                    if !f.matches(&meta) {
                        continue;
                    }
                }
                hits.push(Hit { id, score });
                if hits.len() == k {
                    break;
                }
            }
            if hits.len() >= k || exhausted || want >= 100_000 {
                return Ok(hits);
            }
            want *= 4;
        }
    }

    fn similarities(&self, query: &[f32], ids: &[String], metric: Metric) -> Result<Vec<Option<f32>>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        if st.dim.is_some_and(|d| d != query.len()) {
            return Err(Error::Invalid(format!("embedding dimension mismatch: query has {} dimensions", query.len())));
        }
        let qn = dot(query, query).sqrt();
        Ok(ids
            .iter()
            .map(|id| st.by_id.get(id.as_str()).map(|&r| similarity(metric, query, qn, st.row(r), st.norms[r])))
            .collect())
    }

    fn get(&self, ids: &[String]) -> Result<Vec<StoredChunk>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let q = TermQuery::new(Term::from_field_text(self.fields.id, id), IndexRecordOption::Basic);
            if let Some((_, addr)) = searcher.search(&q, &TopDocs::with_limit(1).order_by_score()).map_err(te)?.into_iter().next() {
                let doc: TantivyDocument = searcher.doc(addr).map_err(te)?;
                out.push(self.to_stored(&doc));
            }
        }
        Ok(out)
    }

    fn list(&self, limit: usize, offset: usize) -> Result<Vec<StoredChunk>> {
        let ids: Vec<String> = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            (0..st.ids.len()).filter(|&r| st.alive[r]).skip(offset).take(limit).map(|r| st.ids[r].to_string()).collect()
        };
        self.get(&ids)
    }

    fn stats(&self) -> Result<StoreStats> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let files: HashSet<&str> = (0..st.ids.len()).filter(|&r| st.alive[r]).map(|r| &*st.files[r]).collect();
        let ann = self.ann.read().unwrap_or_else(|p| p.into_inner()).is_some();
        Ok(StoreStats {
            vector_count: st.live,
            document_count: files.len(),
            storage_bytes: dir_size(&self.dir),
            embedding_dimension: st.dim,
            ann_index: ann,
            tombstones: st.ids.len() - st.live,
        })
    }

    fn dimension(&self) -> Option<usize> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }
}

/// Bytes under a directory.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                match e.metadata() {
                    Ok(m) if m.is_dir() => stack.push(e.path()),
                    Ok(m) => total += m.len(),
                    Err(_) => {}
                }
            }
        }
    }
    total
}
