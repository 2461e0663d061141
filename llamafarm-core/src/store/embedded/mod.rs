//! The embedded store: tantivy (text, BM25, metadata, vectors on disk) plus an
//! in-memory vector matrix and, past [`HNSW_THRESHOLD`] chunks, an HNSW graph.
//!
//! `schema` holds the tantivy schema and analyzer, `ann` the graph, `bm25` the
//! exhaustive BM25 scorer, `snapshot` the rows file a closed store leaves for its next
//! open; this file holds the store itself (rows in memory, writes, searches, deletes).

mod ann;
mod bm25;
mod schema;
mod snapshot;

use super::{AddReport, ChunkRecord, ChunkStore, Hit, MetadataFilter, Metric, StoreStats, StoredChunk};
use crate::error::{Error, Result};
use ann::{build_ann, loaded_ann, Ann};
pub(super) use ann::{dot_i8, quantize, QuantizedCosine};
pub(super) use bm25::Bm25Scores;
pub(super) use schema::analyzer;
use schema::{fields_of, te, Fields, SEQ_FIELD, TOKENIZER};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value as _};
use tantivy::{DocAddress, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term, TERMINATED};

/// Below this many live chunks, vector search is an exact scan (fast and perfect);
/// above it an HNSW graph is built in the background and used once ready.
pub const HNSW_THRESHOLD: usize = 20_000;

const META_FILE: &str = "store.json";

/// The HNSW graph's structure, written when a graph is complete, so that a reopened store
/// searches its graph at once instead of building it again ([`FlatGraph::to_bytes`]).
const GRAPH_FILE: &str = "graph.bin";

/// Least time between two writes of the graph file while a store keeps growing (a write
/// costs about a second at a million rows); the last one is written when the store closes.
const GRAPH_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);

/// What the graph file holds.
#[derive(Default)]
struct GraphSave {
    /// Rows in the file.
    rows: usize,
    /// When it was written by this process.
    at: Option<std::time::Instant>,
    /// A complete graph is newer than the file (a write was put off).
    dirty: bool,
}

use llamafarm_kernels::mapped::MappedF32;
use llamafarm_kernels::vector::dot;

#[derive(Default)]
struct State {
    dim: Option<usize>,
    ids: Vec<Arc<str>>,
    files: Vec<Arc<str>>,
    metas: Vec<Map<String, Value>>,
    /// Row-major, `ids.len() * dim`, as given.
    vectors: Vectors,
    /// L2 norm of each row.
    norms: Vec<f32>,
    alive: Vec<bool>,
    by_id: HashMap<Arc<str>, usize>,
    /// Row of each sequence number (stores with the `seq` column).
    by_seq: HashMap<u64, usize>,
    /// Next sequence number to hand out.
    next_seq: u64,
    live: usize,
    /// Bytes of the metadata rows' JSON (their in-memory size is estimated from it).
    meta_json_bytes: usize,
    /// Bytes of the ids and file hashes.
    key_bytes: usize,
}

/// Where the rows' f32 vectors are held: a memory-mapped file beside the index
/// ([`snapshot::VECTOR_FILE`], vector stores), or the heap (text-only stores, or when the
/// file cannot be created).
enum Vectors {
    Heap(Vec<f32>),
    Mapped(MappedF32),
}

impl Default for Vectors {
    fn default() -> Self {
        Vectors::Heap(Vec::new())
    }
}

impl Vectors {
    /// An empty mapped array in the store's vector file in `dir`, or the heap if the file
    /// cannot be made there.
    fn in_dir(dir: &Path) -> Self {
        match MappedF32::create_at(&dir.join(snapshot::VECTOR_FILE)) {
            Ok(m) => Vectors::Mapped(m),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the store's vector file; keeping vectors on the heap");
                Vectors::Heap(Vec::new())
            }
        }
    }

    fn slice(&self, a: usize, b: usize) -> &[f32] {
        match self {
            Vectors::Heap(v) => &v[a..b],
            Vectors::Mapped(m) => m.slice(a, b),
        }
    }

    fn push(&mut self, v: &[f32]) {
        match self {
            Vectors::Heap(h) => h.extend_from_slice(v),
            Vectors::Mapped(m) => Self::write(m, |m| m.extend_from_slice(v)),
        }
    }

    /// Write what is on the heap to the file (at the end of a commit or a load).
    fn flush(&mut self) {
        if let Vectors::Mapped(m) = self {
            Self::write(m, MappedF32::flush);
        }
    }

    /// Run a write to the file; the first of a run of failures is logged (the values stay
    /// on the heap, and each later flush tries again).
    fn write(m: &mut MappedF32, f: impl FnOnce(&mut MappedF32) -> std::io::Result<()>) {
        let failing = m.write_failed();
        if let Err(e) = f(m) {
            if !failing {
                tracing::warn!(error = %e, "cannot write the store's vector file; new vectors stay on the heap");
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Vectors::Heap(h) => *h = Vec::new(),
            Vectors::Mapped(m) => {
                if let Err(e) = m.clear() {
                    tracing::warn!(error = %e, "cannot empty the store's vector file");
                }
            }
        }
    }

    /// Values on the heap, and bytes in the mapped file.
    fn sizes(&self) -> (usize, u64) {
        match self {
            Vectors::Heap(h) => (h.len(), 0),
            Vectors::Mapped(m) => (m.len() - m.mapped_len(), m.file_bytes()),
        }
    }
}

impl State {
    fn row(&self, r: usize) -> &[f32] {
        let d = self.dim.unwrap_or(0);
        self.vectors.slice(r * d, (r + 1) * d)
    }

    fn push(&mut self, id: Arc<str>, file: Arc<str>, meta: Map<String, Value>, meta_json: usize, v: &[f32], seq: Option<u64>) {
        let r = self.ids.len();
        self.meta_json_bytes += meta_json;
        self.key_bytes += id.len() + file.len();
        if let Some(q) = seq {
            self.by_seq.insert(q, r);
            self.next_seq = self.next_seq.max(q + 1);
        }
        self.by_id.insert(id.clone(), r);
        self.ids.push(id);
        self.files.push(file);
        self.metas.push(meta);
        self.norms.push(dot(v, v).sqrt());
        self.vectors.push(v);
        self.alive.push(true);
        self.live += 1;
    }
}

/// A search hit resolved to an in-memory row, or (legacy stores) to its id.
enum RowOf {
    Row(usize),
    Id(String),
}

/// The default store. Open one per database directory; share it via `Arc`.
pub struct EmbeddedStore {
    dir: PathBuf,
    /// Kept open for the life of the store (the reader and writer hang off it).
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    metric: Metric,
    state: Arc<RwLock<State>>,
    ann: Arc<RwLock<Option<Arc<Ann>>>>,
    building: Arc<AtomicBool>,
    /// A thread is inserting new rows into the graph.
    extending: Arc<AtomicBool>,
    graph_save: Arc<Mutex<GraphSave>>,
    /// Holds text and metadata only (the keyword side of a server-backed store).
    text_only: bool,
    /// The rows file on disk describes the rows in memory (they were read from it, or
    /// it was written since the last change).
    rows_file_current: AtomicBool,
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
        Self::open_with(dir, metric, false)
    }

    /// Open or create a store that keeps no vectors: text (BM25), metadata and
    /// content only. It is the keyword side of [`super::ChromaStore`]; its vector
    /// searches find nothing and its [`ChunkStore::dimension`] is `None`.
    pub fn open_text_only(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Metric::Cosine, true)
    }

    fn open_with(dir: &Path, metric: Metric, text_only: bool) -> Result<Self> {
        let tdir = dir.join("tantivy");
        std::fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
        let meta_path = dir.join(META_FILE);
        let meta: StoreMeta = match std::fs::read(&meta_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::parse(format!("store metadata {META_FILE}"), e.to_string()))?,
            Err(_) => {
                let m = StoreMeta { metric, dimension: None };
                crate::fsutil::atomic_write(&meta_path, &serde_json::to_vec(&m).unwrap_or_default())?;
                m
            }
        };
        let mmap = tantivy::directory::MmapDirectory::open(&tdir).map_err(|e| Error::internal(format!("index dir: {e}")))?;
        // An existing index keeps the schema it was created with (older stores lack the
        // fast id column and use the stored-document path); a new one gets the current.
        let index = if Index::exists(&mmap).map_err(|e| Error::internal(format!("index dir: {e}")))? {
            Index::open(mmap).map_err(te)?
        } else {
            Index::create(mmap, schema::schema(), tantivy::IndexSettings::default()).map_err(te)?
        };
        let fields = fields_of(&index.schema())?;
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
            extending: Arc::new(AtomicBool::new(false)),
            graph_save: Arc::new(Mutex::new(GraphSave::default())),
            text_only,
            rows_file_current: AtomicBool::new(false),
        };
        store.load_state()?;
        store.load_graph();
        store.maybe_build_ann();
        Ok(store)
    }

    /// The opstamp of the index's last commit.
    fn opstamp(&self) -> Result<u64> {
        Ok(self.index.load_metas().map_err(te)?.opstamp)
    }

    /// Read every live chunk's id, file, metadata and vector from the last commit: from
    /// the rows file and the vector file when they describe it, else from the index.
    fn load_state(&self) -> Result<()> {
        let opstamp = self.opstamp()?;
        if let Some(mut st) = snapshot::read(&self.dir, opstamp, self.text_only) {
            let known = self.state.read().unwrap_or_else(|p| p.into_inner()).dim;
            if known.is_none() || known == st.dim {
                st.dim = st.dim.or(known);
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
                self.rows_file_current.store(true, Ordering::SeqCst);
                return Ok(());
            }
        }
        let searcher = self.reader.searcher();
        let vectors = if self.text_only { Vectors::default() } else { Vectors::in_dir(&self.dir) };
        let mut st = State { dim: self.state.read().unwrap_or_else(|p| p.into_inner()).dim, vectors, ..Default::default() };
        for seg in searcher.segment_readers() {
            let store = seg.get_store_reader(64).map_err(|e| Error::internal(format!("doc store: {e}")))?;
            for doc in store.iter::<TantivyDocument>(seg.alive_bitset()) {
                let doc = doc.map_err(te)?;
                let (id, file, meta, vec) = self.decode(&doc);
                if st.dim.is_none() && !vec.is_empty() {
                    st.dim = Some(vec.len());
                }
                if Some(vec.len()) != st.dim && !self.text_only {
                    tracing::warn!(chunk = %id, "skipping chunk with a vector of the wrong length");
                    continue;
                }
                let seq = self.fields.seq.and_then(|f| doc.get_first(f)).and_then(|v| v.as_u64());
                let meta_json = doc.get_first(self.fields.metadata).and_then(|v| v.as_str()).map_or(0, str::len);
                st.push(id.into(), file.into(), meta, meta_json, &vec, seq);
            }
        }
        st.vectors.flush();
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

    /// Use the graph file when it describes exactly the chunks the store holds.
    fn load_graph(&self) {
        if self.text_only {
            return;
        }
        let path = self.dir.join(GRAPH_FILE);
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let (Some(dim), rows) = (st.dim, st.ids.len()) else { return };
        if rows < HNSW_THRESHOLD || st.live != rows {
            return;
        }
        let Ok(bytes) = std::fs::read(&path) else { return };
        let t = std::time::Instant::now();
        match crate::store::graph::FlatGraph::from_bytes(&bytes, dim, rows, |id| st.by_id.get(id).copied(), |r| quantize(st.row(r))) {
            Some(flat) => {
                tracing::info!(rows, secs = t.elapsed().as_secs_f64(), "read the HNSW graph file");
                *self.ann.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(loaded_ann(flat, dim)));
                *self.graph_save.lock().unwrap_or_else(|p| p.into_inner()) = GraphSave { rows, at: None, dirty: false };
            }
            None => tracing::info!(rows, "the HNSW graph file does not match the store's chunks; building a new graph"),
        }
    }

    /// Build the HNSW graph in a background thread when the store is large enough.
    fn maybe_build_ann(&self) {
        if self.text_only {
            return;
        }
        let (live, rows, dead) = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            (st.live, st.ids.len(), st.ids.len() - st.live)
        };
        let current = self.ann.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|a| (a.rows.load(Ordering::SeqCst), a.hnsw.is_none()));
        let stale = match current {
            None => live >= HNSW_THRESHOLD,
            // A graph read from its file cannot take new rows: build one that can.
            Some((in_graph, true)) => dead > rows / 4 || rows > in_graph,
            // Rebuild when many rows are dead in the graph (new rows are inserted by
            // `extend_ann` as they come).
            Some(_) => dead > rows / 4,
        };
        if stale && !self.building.swap(true, Ordering::SeqCst) {
            // Built in a background thread from int8 copies of the rows there are now
            // (a quarter of the f32 bytes); searches stay exact until it lands.
            let (ann, building, state) = (self.ann.clone(), self.building.clone(), self.state.clone());
            let (dir, saved) = (self.dir.clone(), self.graph_save.clone());
            std::thread::spawn(move || {
                let (quantized, dim) = {
                    let st = state.read().unwrap_or_else(|p| p.into_inner());
                    ((0..st.ids.len()).map(|r| quantize(st.row(r))).collect::<Vec<_>>(), st.dim.unwrap_or(0))
                };
                let built = Arc::new(build_ann(quantized, dim));
                *ann.write().unwrap_or_else(|p| p.into_inner()) = Some(built.clone());
                building.store(false, Ordering::SeqCst);
                // Rows added while building.
                while extend_graph(&built, &state) {}
                save_graph(&dir, &built, &state, &saved, false);
            });
        }
    }

    /// Insert the rows the graph does not hold yet, in a background thread: a write
    /// returns once its commit is done, and searches scan the rows not yet in the graph
    /// exactly meanwhile. Requests that come while a thread runs are coalesced into it.
    fn extend_ann(&self) {
        let extensible = self.ann.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|a| a.hnsw.is_some());
        if !extensible || self.extending.swap(true, Ordering::SeqCst) {
            return;
        }
        let (slot, state, extending) = (self.ann.clone(), self.state.clone(), self.extending.clone());
        let (dir, saved) = (self.dir.clone(), self.graph_save.clone());
        std::thread::spawn(move || loop {
            let more = slot.read().unwrap_or_else(|p| p.into_inner()).clone().is_some_and(|ann| extend_graph(&ann, &state));
            if !more {
                extending.store(false, Ordering::SeqCst);
                // Rows appended after the last pass whose request found the flag still set.
                let behind = slot
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .is_some_and(|ann| ann.rows.load(Ordering::SeqCst) < state.read().unwrap_or_else(|p| p.into_inner()).ids.len());
                if !behind || extending.swap(true, Ordering::SeqCst) {
                    if let Some(ann) = slot.read().unwrap_or_else(|p| p.into_inner()).clone() {
                        save_graph(&dir, &ann, &state, &saved, false);
                    }
                    break;
                }
            }
        });
    }

    /// Wait until no graph build is running (tests and benchmarks).
    pub fn wait_for_index(&self) {
        let refreshing = || {
            let ann = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone();
            ann.is_some_and(|a| a.stale())
        };
        let behind = || {
            let ann = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone();
            ann.is_some_and(|a| a.rows.load(Ordering::SeqCst) < self.state.read().unwrap_or_else(|p| p.into_inner()).ids.len())
        };
        while self.building.load(Ordering::SeqCst) || self.extending.load(Ordering::SeqCst) || refreshing() || behind() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A tantivy write error as ours. tantivy's indexing thread dies on an I/O error and
    /// the commit reports only that it died, so a nearly full disk under the store
    /// (under 16 MiB free) names that as the cause.
    fn write_error(&self, e: tantivy::TantivyError) -> Error {
        let killed = matches!(e, tantivy::TantivyError::ErrorInThread(_));
        if killed && crate::system::disk_usage(&self.dir).is_ok_and(|d| d.free_bytes < 16 << 20) {
            return Error::StorageFull { what: "the search index".into() };
        }
        te(e)
    }

    /// Commit the writer, then make the commit visible to searches. Once the commit has
    /// returned the data is durable, so a failed reader reload is logged, not returned
    /// (the next reload catches up).
    fn commit(&self, w: &mut IndexWriter) -> Result<()> {
        w.commit().map_err(|e| self.write_error(e))?;
        if let Err(e) = self.reader.reload() {
            tracing::warn!(error = %e, "index reader reload failed after a commit");
        }
        Ok(())
    }

    /// Directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The in-memory rows of search hits, from the fast `seq` column (O(1) per hit), or
    /// their ids read from the stored documents on stores created before that column.
    fn rows_of(&self, searcher: &Searcher, addrs: impl Iterator<Item = DocAddress>) -> Result<Vec<RowOf>> {
        let mut cols: HashMap<u32, Option<tantivy::columnar::Column<u64>>> = HashMap::new();
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for addr in addrs {
            if self.fields.seq.is_some() {
                let col = match cols.entry(addr.segment_ord) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(searcher.segment_reader(addr.segment_ord).fast_fields().u64(SEQ_FIELD).ok()),
                };
                if let Some(&r) = col.as_ref().and_then(|c| c.first(addr.doc_id)).and_then(|q| st.by_seq.get(&q)) {
                    out.push(RowOf::Row(r));
                    continue;
                }
            }
            let doc: TantivyDocument = searcher.doc(addr).map_err(te)?;
            out.push(RowOf::Id(doc.get_first(self.fields.id).and_then(|v| v.as_str()).unwrap_or("").to_string()));
        }
        Ok(out)
    }

    /// Where the live document with this chunk id is: a term lookup in each segment's
    /// id postings (no scoring, no collector).
    fn addr_of(&self, searcher: &Searcher, id: &str) -> Result<Option<DocAddress>> {
        let term = Term::from_field_text(self.fields.id, id);
        for (ord, seg) in searcher.segment_readers().iter().enumerate() {
            let inv = seg.inverted_index(self.fields.id).map_err(te)?;
            let Some(mut postings) = inv.read_postings(&term, IndexRecordOption::Basic).map_err(|e| Error::internal(format!("index: {e}")))? else {
                continue;
            };
            let mut d = postings.doc();
            while d != TERMINATED {
                if seg.alive_bitset().is_none_or(|b| b.is_alive(d)) {
                    return Ok(Some(DocAddress::new(ord as u32, d)));
                }
                d = postings.advance();
            }
        }
        Ok(None)
    }

    fn exact(&self, st: &State, q: &[f32], qn: f32, k: usize, metric: Metric, filter: Option<&MetadataFilter>) -> Vec<(usize, f32)> {
        let n = st.ids.len();
        let score_row = |r: usize| -> Option<(usize, f32)> {
            if !st.alive[r] || filter.is_some_and(|f| !f.matches(&st.metas[r])) {
                return None;
            }
            Some((r, similarity(metric, q, qn, st.row(r), st.norms[r])))
        };
        let mut scored: Vec<(usize, f32)> = if n > 2048 {
            use rayon::prelude::*;
            (0..n).into_par_iter().filter_map(score_row).collect()
        } else {
            (0..n).filter_map(score_row).collect()
        };
        top_k(&mut scored, k);
        scored
    }
}

/// Similarity in 0..1 with the original's distance-to-score conversions.
pub(in crate::store) fn similarity(metric: Metric, q: &[f32], qn: f32, v: &[f32], vn: f32) -> f32 {
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
        let (dim, fresh, skipped_ids) = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            let dim = st.dim.unwrap_or(chunks[0].vector.len());
            let mut seen = HashSet::new();
            let (fresh, dups): (Vec<ChunkRecord>, Vec<ChunkRecord>) =
                chunks.into_iter().partition(|c| !st.by_id.contains_key(c.id.as_str()) && seen.insert(c.id.clone()));
            (dim, fresh, dups.into_iter().map(|c| c.id).collect::<Vec<_>>())
        };
        if dim == 0 && !self.text_only {
            return Err(Error::invalid("embedding", "is empty and cannot be stored"));
        }
        for c in fresh.iter().filter(|_| !self.text_only) {
            if c.vector.len() != dim {
                return Err(Error::invalid(
                    "embedding dimension",
                    format!("mismatch: the index holds {dim}-dimensional vectors, chunk '{}' has {}", c.id, c.vector.len()),
                ));
            }
            if c.vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid("embedding", format!("of chunk '{}' has a non-finite value", c.id)));
            }
        }
        let added = fresh.len();
        if added > 0 {
            self.changing();
        }
        let seq0 = self.state.read().unwrap_or_else(|p| p.into_inner()).next_seq;
        let mut meta_lens = Vec::with_capacity(fresh.len());
        let written = (|| -> Result<()> {
            for (i, c) in fresh.iter().enumerate() {
                let mut doc = TantivyDocument::default();
                if let Some(f) = self.fields.seq {
                    doc.add_u64(f, seq0 + i as u64);
                }
                doc.add_text(self.fields.id, &c.id);
                doc.add_text(self.fields.file_hash, &c.file_hash);
                doc.add_text(self.fields.content, &c.content);
                let meta_json = serde_json::to_string(&c.metadata).unwrap_or_default();
                meta_lens.push(meta_json.len());
                doc.add_text(self.fields.metadata, meta_json);
                if !self.text_only {
                    let bytes: Vec<u8> = c.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    doc.add_bytes(self.fields.vector, &bytes);
                }
                w.add_document(doc).map_err(|e| self.write_error(e))?;
            }
            if self.state.read().unwrap_or_else(|p| p.into_inner()).dim.is_none() && !self.text_only {
                self.save_meta(Some(dim))?;
            }
            self.commit(&mut w)
        })();
        if let Err(e) = written {
            // Drop what this batch staged in the writer, so a later commit cannot publish
            // documents that memory does not hold.
            let _ = w.rollback();
            return Err(e);
        }
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            if !self.text_only {
                st.dim = Some(dim);
            }
            let with_seq = self.fields.seq.is_some();
            for (i, c) in fresh.into_iter().enumerate() {
                let v: &[f32] = if self.text_only { &[] } else { &c.vector };
                st.push(c.id.into(), c.file_hash.into(), c.metadata, meta_lens[i], v, with_seq.then_some(seq0 + i as u64));
            }
            st.vectors.flush();
        }
        drop(w);
        self.extend_ann();
        self.maybe_build_ann();
        Ok(AddReport { added, skipped: total - added, skipped_ids })
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
        self.changing();
        w.delete_term(Term::from_field_text(self.fields.file_hash, file_hash));
        if let Err(e) = self.commit(&mut w) {
            let _ = w.rollback();
            return Err(e);
        }
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
        self.forget_graph_file();
        self.maybe_build_ann();
        Ok(rows.len())
    }

    fn clear(&self) -> Result<usize> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.state.read().unwrap_or_else(|p| p.into_inner()).live;
        self.changing();
        w.delete_all_documents().map_err(te)?;
        self.commit(&mut w)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            let (dim, next_seq, mut vectors) = (st.dim, st.next_seq, std::mem::take(&mut st.vectors));
            vectors.clear();
            *st = State { dim, next_seq, vectors, ..Default::default() };
        }
        *self.ann.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.forget_graph_file();
        Ok(n)
    }

    fn vector_search(&self, query: &[f32], k: usize, metric: Metric, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let Some(dim) = st.dim else { return Ok(Vec::new()) };
        if query.len() != dim {
            return Err(Error::invalid("embedding dimension", format!("mismatch: the query vector has {} dimensions, the index holds {dim}", query.len())));
        }
        let k = k.max(1);
        let qn = dot(query, query).sqrt();
        let ann = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone();
        let filter = filter.filter(|f| !f.is_empty());
        // The graph holds cosine geometry; other metrics, filters and rows not yet in
        // the graph are served exactly.
        let flat = ann.as_ref().map(|a| a.flat());
        let covered = flat.as_ref().map(|f| f.n.min(st.ids.len())).unwrap_or(0);
        let use_ann = flat.is_some() && metric == Metric::Cosine && filter.is_none() && covered > 0;
        let rows: Vec<(usize, f32)> = if use_ann {
            let graph = flat.unwrap_or_else(|| unreachable!());
            let qv = quantize(query);
            // No filter in the walk (a filtered walk explores far more of the graph).
            // Deleted rows are dropped afterwards from a slightly wider search,
            // and a few extra candidates absorb the int8 graph's ranking noise (all are
            // re-scored on the f32 vectors).
            let dead = st.ids.len() - st.live;
            let want = if dead == 0 { (k + 8).min(covered) } else { (k * 2 + 10).min(covered) };
            let ef = (want * 2).max(64);
            let mut found: Vec<(usize, f32)> = graph
                .search(&qv, want, ef)
                .into_iter()
                .filter(|&(r, _)| r < covered && st.alive[r])
                .map(|(r, _)| (r, similarity(metric, query, qn, st.row(r), st.norms[r])))
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
        let mut a = self.index.tokenizers().get(TOKENIZER).unwrap_or_else(analyzer);
        let mut stream = a.token_stream(query);
        while stream.advance() {
            tokens.push(stream.token().text.clone());
        }
        tokens.sort();
        tokens.dedup();
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let filter = filter.filter(|f| !f.is_empty());
        let mut want = if filter.is_some() { k * 4 } else { k };
        // Term at a time over the raw postings while they are short enough (see `Bm25Scores`);
        // tantivy's block-max WAND (an OR of the terms) past that.
        let scores = Bm25Scores::compute(&searcher, self.fields.content, &tokens)?;
        let wand = scores.is_none().then(|| {
            let clauses: Vec<(Occur, Box<dyn Query>)> = tokens
                .iter()
                .map(|t| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(Term::from_field_text(self.fields.content, t), IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
                .collect();
            BooleanQuery::new(clauses)
        });
        loop {
            let top = match (&scores, &wand) {
                (Some(s), _) => s.top(want),
                (None, Some(q)) => searcher.search(q, &TopDocs::with_limit(want).order_by_score()).map_err(te)?,
                (None, None) => Vec::new(),
            };
            let exhausted = top.len() < want;
            let rows = self.rows_of(&searcher, top.iter().map(|(_, a)| *a))?;
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            let mut hits = Vec::new();
            for ((score, _), row) in top.into_iter().zip(rows) {
                let (id, r) = match row {
                    RowOf::Row(r) if r < st.ids.len() => (st.ids[r].to_string(), Some(r)),
                    RowOf::Row(_) => continue,
                    RowOf::Id(id) => {
                        let r = st.by_id.get(id.as_str()).copied();
                        (id, r)
                    }
                };
                if let Some(f) = filter {
                    // Metadata is in memory: no stored-document read per candidate.
                    if !r.is_some_and(|r| f.matches(&st.metas[r])) {
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
            return Err(Error::invalid("embedding dimension", format!("mismatch: query has {} dimensions", query.len())));
        }
        let qn = dot(query, query).sqrt();
        Ok(ids.iter().map(|id| st.by_id.get(id.as_str()).map(|&r| similarity(metric, query, qn, st.row(r), st.norms[r]))).collect())
    }

    fn vectors(&self, ids: &[String]) -> Result<Vec<Option<Vec<f32>>>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        Ok(ids.iter().map(|id| st.by_id.get(id.as_str()).map(|&r| st.row(r).to_vec())).collect())
    }

    fn get(&self, ids: &[String]) -> Result<Vec<StoredChunk>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(addr) = self.addr_of(&searcher, id)? {
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

    fn ids(&self) -> Result<Vec<String>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        Ok((0..st.ids.len()).filter(|&r| st.alive[r]).map(|r| st.ids[r].to_string()).collect())
    }

    fn stats(&self) -> Result<StoreStats> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let files: HashSet<&str> = (0..st.ids.len()).filter(|&r| st.alive[r]).map(|r| &*st.files[r]).collect();
        let ann = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone();
        let graph_rows = ann.as_ref().map_or(0, |a| a.flat().n);
        let memory_bytes = memory_estimate(&st, ann.as_ref().map_or(0, |a| a.rows.load(Ordering::SeqCst)));
        let mapped_bytes = st.vectors.sizes().1;
        let text_index_bytes = dir_size(&self.dir.join("tantivy"));
        let ann = ann.is_some();
        Ok(StoreStats {
            vector_count: st.live,
            document_count: files.len(),
            storage_bytes: dir_size(&self.dir),
            embedding_dimension: st.dim,
            ann_index: ann,
            graph_rows,
            tombstones: st.ids.len() - st.live,
            text_index_bytes,
            memory_bytes,
            mapped_bytes,
        })
    }

    fn optimize(&self) -> Result<usize> {
        // Background merges (tantivy's log merge policy) may hold some of the segments;
        // then the merge request is refused and retried once they finish.
        for _ in 0..200 {
            // A segment holding half the documents or more (an earlier bulk load) is left
            // alone: rewriting it after every small upload would cost O(index) per task.
            // The segments added since are merged with each other.
            let mut metas = self.index.searchable_segment_metas().map_err(te)?;
            let total: u64 = metas.iter().map(|m| m.num_docs() as u64).sum();
            metas.sort_by_key(|m| std::cmp::Reverse(m.num_docs()));
            if metas.first().is_some_and(|m| 2 * m.num_docs() as u64 >= total) && metas.len() > 1 {
                metas.remove(0);
            }
            let ids: Vec<_> = metas.iter().map(|m| m.id()).collect();
            if ids.len() <= 1 {
                return Ok(0);
            }
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            match w.merge(&ids).wait() {
                Ok(_) => {
                    let _ = w.garbage_collect_files().wait();
                    drop(w);
                    self.reader.reload().map_err(te)?;
                    return Ok(ids.len());
                }
                Err(e) => {
                    drop(w);
                    tracing::debug!(error = %e, "segment merge deferred");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        Ok(0)
    }

    fn dimension(&self) -> Option<usize> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).dim
    }

    fn persist(&self) {
        self.save_rows();
        self.save_graph_now();
    }

    fn metric(&self) -> Metric {
        self.metric
    }
}

impl EmbeddedStore {
    /// Whether this store read its rows from the rows file (tests).
    #[cfg(test)]
    pub(in crate::store) fn opened_from_rows_file(&self) -> bool {
        self.rows_file_current.load(Ordering::SeqCst)
    }

    /// The rows are about to change: the rows file stops describing them. Its removal is
    /// a safeguard (the file also names the index commit it describes, which a write
    /// moves on), so a failed one is logged, not returned.
    fn changing(&self) {
        if self.rows_file_current.swap(false, Ordering::SeqCst) {
            if let Err(e) = snapshot::remove(&self.dir) {
                tracing::warn!(error = %e, "could not remove the store's rows file");
            }
        }
    }

    /// Write the rows file if the rows changed since the store opened (or since it was
    /// last written), so that the next open need not read every row from the index.
    /// Not when a quarter or more of the rows are dead (the next open then reads the
    /// index, which holds only the live ones), nor when vectors are still on the heap.
    fn save_rows(&self) {
        if self.rows_file_current.load(Ordering::SeqCst) || !self.dir.join("tantivy").is_dir() {
            return;
        }
        let t = std::time::Instant::now();
        // Writes take the writer first and commit before they change the rows: holding
        // it, the rows and the index commit read below agree.
        let _writes = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.rows_file_current.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if (st.ids.len() - st.live) * 4 > st.ids.len() {
            return;
        }
        match (&mut st.vectors, self.text_only) {
            (Vectors::Mapped(m), false) => {
                if let Err(e) = m.sync() {
                    tracing::warn!(error = %e, "cannot sync the store's vector file; the next open reads the index");
                    return;
                }
            }
            (Vectors::Heap(h), true) if h.is_empty() => {}
            _ => return,
        }
        let opstamp = match self.opstamp() {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the index's commit; the store's rows file is not written");
                return;
            }
        };
        let st = &*st;
        let vectors = match &st.vectors {
            Vectors::Mapped(m) => Some(m),
            Vectors::Heap(_) => None,
        };
        match snapshot::write(&self.dir, st, vectors, opstamp) {
            Ok(()) => {
                self.rows_file_current.store(true, Ordering::SeqCst);
                tracing::debug!(rows = st.live, secs = t.elapsed().as_secs_f64(), "wrote the store's rows file");
            }
            Err(e) => tracing::warn!(error = %e, "could not write the store's rows file; the next open reads the index"),
        }
    }

    /// Write the graph file now if a write was put off.
    fn save_graph_now(&self) {
        let dirty = self.graph_save.lock().unwrap_or_else(|p| p.into_inner()).dirty;
        if dirty {
            if let Some(ann) = self.ann.read().unwrap_or_else(|p| p.into_inner()).clone() {
                save_graph(&self.dir, &ann, &self.state, &self.graph_save, true);
            }
        }
    }

    /// Chunks were deleted: the graph file describes the store no more.
    fn forget_graph_file(&self) {
        let mut saved = self.graph_save.lock().unwrap_or_else(|p| p.into_inner());
        *saved = GraphSave { at: saved.at, ..GraphSave::default() };
        let path = self.dir.join(GRAPH_FILE);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, "could not remove the HNSW graph file");
            }
        }
    }
}

impl Drop for EmbeddedStore {
    /// Write the rows file, and the graph file if a write was put off.
    fn drop(&mut self) {
        self.save_rows();
        self.save_graph_now();
    }
}

/// Write the graph file for `ann` when it holds every row of `state` and the file is
/// older: at once the first time, then at most every [`GRAPH_SAVE_INTERVAL`] (`force`:
/// now). The write is atomic; a failed one only costs a rebuild at the next open.
fn save_graph(dir: &Path, ann: &Ann, state: &RwLock<State>, saved: &Mutex<GraphSave>, force: bool) {
    if ann.hnsw.is_none() {
        return;
    }
    let flat = ann.flat();
    let ids: Vec<Arc<str>> = {
        let st = state.read().unwrap_or_else(|p| p.into_inner());
        // Only a graph of every row, with none deleted, describes the store.
        if flat.n != st.ids.len() || st.live != st.ids.len() || flat.n < HNSW_THRESHOLD {
            return;
        }
        st.ids.clone()
    };
    let mut s = saved.lock().unwrap_or_else(|p| p.into_inner());
    if s.rows == flat.n && !s.dirty {
        return;
    }
    if !force && s.at.is_some_and(|t| t.elapsed() < GRAPH_SAVE_INTERVAL) {
        s.dirty = true;
        return;
    }
    let t = std::time::Instant::now();
    match crate::fsutil::atomic_write(&dir.join(GRAPH_FILE), &flat.to_bytes(&ids)) {
        Ok(()) => {
            tracing::debug!(rows = flat.n, secs = t.elapsed().as_secs_f64(), "wrote the HNSW graph file");
            *s = GraphSave { rows: flat.n, at: Some(std::time::Instant::now()), dirty: false };
        }
        Err(e) => tracing::warn!(error = %e, "could not write the HNSW graph file"),
    }
}

/// Insert into `ann` every row of `state` it does not hold yet (rows are only ever
/// appended, and the graph holds rows `0..ann.rows`); returns whether any were inserted.
fn extend_graph(ann: &Arc<Ann>, state: &RwLock<State>) -> bool {
    let Some(hnsw) = &ann.hnsw else { return false };
    let _g = ann.insert.lock().unwrap_or_else(|p| p.into_inner());
    let from = ann.rows.load(Ordering::SeqCst);
    let rows: Vec<(Vec<i8>, usize)> = {
        let st = state.read().unwrap_or_else(|p| p.into_inner());
        if st.dim.unwrap_or(0) == 0 {
            return false;
        }
        // At most 20,000 rows a pass, so the flat copy searches walk is refreshed as it grows.
        (from..st.ids.len().min(from + 20_000)).map(|r| (quantize(st.row(r)), r)).collect()
    };
    if rows.is_empty() {
        return false;
    }
    let data: Vec<(&Vec<i8>, usize)> = rows.iter().map(|(v, r)| (v, *r)).collect();
    ann::graph_pool().install(|| hnsw.parallel_insert(&data));
    ann.rows.store(from + rows.len(), Ordering::SeqCst);
    drop(_g);
    ann.refresh_now();
    true
}

/// Resident bytes of a store's in-memory side, estimated from its parts: the f32
/// vectors on the heap (not those in the mapped file) and the norms, ids and file
/// hashes, the parsed metadata (about three times its JSON), the lookup maps, and for
/// each of `graph_rows` rows in the HNSW graph its int8 vector twice (graph and flat
/// copy) and its neighbour lists.
fn memory_estimate(st: &State, graph_rows: usize) -> u64 {
    let rows = st.ids.len();
    let dim = st.dim.unwrap_or(0);
    let vectors = st.vectors.sizes().0 * 4 + rows * 4 + rows; // heap vectors, norms, alive flags
    let keys = st.key_bytes + rows * 2 * 32; // string bytes + Arc headers and pointers
    let metas = st.meta_json_bytes * 3 + rows * 48;
    let maps = (st.by_id.len() + st.by_seq.len()) * 48;
    let graph = graph_rows * (2 * (dim + 4) + 2 * 16 * 16 + 2 * 16 * 4 + 64);
    (vectors + keys + metas + maps + graph) as u64
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
