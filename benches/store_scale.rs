//! A large embedded store: SciFact's abstracts repeated with per-copy noise (three
//! noise words appended to the text, N(0, 0.05) noise on the normalised vector) up to
//! `STORE_CHUNKS` chunks (default 1,000,000), written in commits of 5,000 as grouped
//! ingestion writes them. Reports the write rate, peak resident memory, the store's own
//! memory estimate, size on disk, the time to close (the rows file written) and to reopen
//! after a restart (from the rows and graph files; from the index when the rows file is
//! gone; without the graph file until the HNSW graph is rebuilt), and query latency
//! p50/p99 for BM25, vector and hybrid over the 300 SciFact test queries.
//!
//! Run: `cargo bench -p llamafarm-benches --bench store_scale` (`STORE_CHUNKS=200000` for a smaller
//! store; `STORE_WAIT_REBUILD=1` also waits for the graph after the restart and measures again).
//! `STORE_CHROMA=host:port` first writes the same chunks to a [`ChromaStore`] on that
//! `chroma run` server and measures its write rate and query latency, then the embedded
//! store as usual.

use llamafarm_core::store::{ChromaConfig, ChromaStore, ChunkRecord, ChunkStore, EmbeddedStore, Metric};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

fn rss_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Resident memory split into the heap's (anonymous) pages and mapped files' pages.
fn rss_split() -> String {
    format!("anonymous {} MB, file-backed {} MB", rss_kb("RssAnon:") / 1024, rss_kb("RssFile:") / 1024)
}

use llamafarm_benches::pct;

fn main() {
    llamafarm_benches::init();
    let Some(dir) = llamafarm_benches::scifact_dir("store_scale") else { return };
    let size: usize = std::env::var("STORE_CHUNKS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let lines = std::fs::read_to_string(dir.join("corpus.jsonl")).unwrap();
    let texts: Vec<String> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|d| format!("{} {}", d["title"].as_str().unwrap_or(""), d["text"].as_str().unwrap_or("")).trim().to_string())
        .collect();
    let queries: Vec<String> = std::fs::read_to_string(dir.join("queries.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap_or("").to_string())
        .take(300)
        .collect();
    let work = tempfile::tempdir().unwrap();
    let lf = llamafarm_core::LlamaFarm::open_with(work.path().join("data"), llamafarm_core::ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
    let embedder = lf.embedder("sentence-transformers/all-MiniLM-L6-v2").unwrap();
    let t = Instant::now();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs).unwrap();
    let qrefs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let qvecs = embedder.embed(&qrefs).unwrap();
    println!("embedded {} abstracts and {} queries in {:.1} s; RSS {} MB", texts.len(), queries.len(), t.elapsed().as_secs_f64(), rss_kb("VmRSS:") / 1024);

    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng >> 11
    };
    let vocab: Vec<&str> = texts.iter().flat_map(|t| t.split_whitespace()).filter(|w| w.len() > 3 && w.chars().all(char::is_alphabetic)).take(50_000).collect();
    let sdir = work.path().join("store");
    let base_rss = rss_kb("VmRSS:");
    let mut make_batch = |i: usize, n: usize| -> Vec<ChunkRecord> {
        (i..i + n)
            .map(|c| {
                let b = c % texts.len();
                let mut v = vectors[b].clone();
                let mut content = texts[b].clone();
                if c >= texts.len() {
                    v.iter_mut().for_each(|x| *x += ((next() as f32 / (1u64 << 53) as f32) - 0.5) * 0.1732);
                    llamafarm_core::embed::normalize(&mut v);
                    for _ in 0..3 {
                        content.push(' ');
                        content.push_str(vocab[next() as usize % vocab.len()]);
                    }
                }
                let metadata = json!({"document_name": format!("doc-{}.txt", c / 3), "chunk_index": c % 3, "source_dataset": "bench"}).as_object().unwrap().clone();
                ChunkRecord { id: format!("c{c}"), file_hash: format!("f{}", c / 3), content, metadata, vector: v }
            })
            .collect()
    };
    if let Ok(server) = std::env::var("STORE_CHROMA") {
        let (host, port) = server.rsplit_once(':').expect("STORE_CHROMA is host:port");
        let cfg = ChromaConfig::new(host, port.parse().expect("a port"), &format!("store-scale-{size}"));
        let store = ChromaStore::open(&sdir, cfg, Metric::Cosine).unwrap();
        let t = Instant::now();
        for i in (0..size).step_by(5000) {
            store.add(make_batch(i, 5000.min(size - i))).unwrap();
        }
        let write_s = t.elapsed().as_secs_f64();
        println!("Chroma server {server}: wrote {size} chunks in {write_s:.0} s ({:.0} chunks/s)", size as f64 / write_s);
        latency(&store, &qvecs, &queries, "on the Chroma server");
        store.clear().unwrap();
    }
    let store = EmbeddedStore::open(&sdir, Metric::Cosine).unwrap();
    let t = Instant::now();
    let mut i = 0;
    while i < size {
        let n = 5000.min(size - i);
        store.add(make_batch(i, n)).unwrap();
        i += n;
        if i % 100_000 == 0 {
            println!("  {i} chunks: {:.0} s, RSS {} MB ({})", t.elapsed().as_secs_f64(), rss_kb("VmRSS:") / 1024, rss_split());
        }
    }
    let write_s = t.elapsed().as_secs_f64();
    store.optimize().unwrap();
    let t2 = Instant::now();
    store.wait_for_index();
    let graph_s = t2.elapsed().as_secs_f64();
    let st = store.stats().unwrap();
    println!(
        "wrote {size} chunks in {write_s:.0} s ({:.0} chunks/s); HNSW ready ({} rows) {graph_s:.0} s after the last commit; peak RSS {} MB (now: store part about {} MB, {}; its estimate {} MB on the heap, {} MB of vectors in its mapped file); on disk {} MB ({:.0} bytes/chunk)",
        size as f64 / write_s,
        st.graph_rows,
        rss_kb("VmHWM:") / 1024,
        (rss_kb("VmRSS:").saturating_sub(base_rss)) / 1024,
        rss_split(),
        st.memory_bytes >> 20,
        st.mapped_bytes >> 20,
        st.storage_bytes >> 20,
        st.storage_bytes as f64 / size as f64
    );
    latency(&store, &qvecs, &queries, "after the load");
    let t = Instant::now();
    drop(store);
    let mb = |f: &str| std::fs::metadata(sdir.join(f)).map_or(0, |m| m.len() >> 20);
    println!(
        "closed in {:.1} s (the rows file written); graph file {} MB, rows file {} MB, vector file {} MB",
        t.elapsed().as_secs_f64(),
        mb("graph.bin"),
        mb("rows.bin"),
        mb("vectors.f32")
    );

    let t = Instant::now();
    let store = EmbeddedStore::open(&sdir, Metric::Cosine).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let graph_rows = store.stats().unwrap().graph_rows;
    println!(
        "reopened in {open_s:.1} s (rows from the rows file, vectors mapped; {graph_rows} rows of HNSW graph read from its file); RSS {} MB ({})",
        rss_kb("VmRSS:") / 1024,
        rss_split()
    );
    latency(&store, &qvecs[..50], &queries[..50], "right after the restart (50 queries)");
    // The same restart without the rows file (after a crash, or from an older release):
    // every row read back from the index and its vector written to the vector file.
    drop(store);
    std::fs::remove_file(sdir.join("rows.bin")).ok();
    let t = Instant::now();
    let store = EmbeddedStore::open(&sdir, Metric::Cosine).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    println!(
        "reopened without the rows file in {open_s:.1} s (every row read back from the index; {} rows of HNSW graph read from its file)",
        store.stats().unwrap().graph_rows
    );
    latency(&store, &qvecs[..50], &queries[..50], "right after that restart (50 queries)");
    // The same restart without the graph file (as before it existed): vector search is an
    // exact scan until the graph is rebuilt in the background, competing with the build
    // for the cores (50 queries: that phase is slow).
    drop(store);
    std::fs::remove_file(sdir.join("graph.bin")).ok();
    let t = Instant::now();
    let store = EmbeddedStore::open(&sdir, Metric::Cosine).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    println!("reopened without the graph file in {open_s:.1} s; {} rows of graph", store.stats().unwrap().graph_rows);
    latency(&store, &qvecs[..50], &queries[..50], "right after that restart, while the graph rebuilds (50 queries)");
    if std::env::var("STORE_WAIT_REBUILD").is_ok_and(|v| v == "1") {
        store.wait_for_index();
        println!("HNSW rebuilt {:.0} s after the reopen", t.elapsed().as_secs_f64() - open_s);
        latency(&store, &qvecs, &queries, "after the rebuild");
    }
}

fn latency(store: &dyn ChunkStore, qvecs: &[Vec<f32>], queries: &[String], when: &str) {
    let (mut bm, mut vec, mut hy) = (Vec::new(), Vec::new(), Vec::new());
    for (qv, qt) in qvecs.iter().zip(queries) {
        let t = Instant::now();
        store.keyword_search(qt, 10, None).unwrap();
        bm.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        store.vector_search(qv, 10, Metric::Cosine, None).unwrap();
        vec.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let (v, k) = store.hybrid_candidates(Some(qv), Some(qt), 50, Metric::Cosine, None).unwrap();
        let mut fused: HashMap<&str, f32> = HashMap::new();
        for list in [&v, &k] {
            for (r, h) in list.iter().enumerate() {
                *fused.entry(h.id.as_str()).or_default() += 1.0 / (61.0 + r as f32);
            }
        }
        let mut top: Vec<(&str, f32)> = fused.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ids: Vec<String> = top.into_iter().take(10).map(|x| x.0.to_string()).collect();
        store.get(&ids).unwrap();
        hy.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "query latency {when}, p50 / p99 ms: BM25 top 10 {:.2} / {:.2}; vector top 10 {:.2} / {:.2}; hybrid (top 50 + 50, RRF, fetch 10) {:.2} / {:.2}",
        pct(&mut bm, 0.5),
        pct(&mut bm, 0.99),
        pct(&mut vec, 0.5),
        pct(&mut vec, 0.99),
        pct(&mut hy, 0.5),
        pct(&mut hy, 0.99)
    );
}
