//! Retrieval quality and speed on BEIR SciFact (test split), through the public
//! library API: nDCG@10 and recall@100 per strategy, embedding throughput, index
//! build time and size, query latency p50/p99.
//!
//! Run: `cargo bench -p llamafarm-benches --bench scifact`
//! Data: `../shared/data/ir/scifact` (or `SCIFACT_DIR`); skipped with a message when absent.
//! Peers side by side: `benches/peers/run_rag_peers.sh` (sentence-transformers, chromadb).

use llamafarm_core::rag::eval::{ndcg_at, recall_at};
use llamafarm_core::rag::RagQuery;
use llamafarm_core::store::{ChunkRecord, ChunkStore, EmbeddedStore, Metric};
use llamafarm_core::{LlamaFarm, ModelCache};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

fn read_jsonl(p: &PathBuf) -> Vec<Value> {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    std::io::BufReader::new(f).lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(&l).unwrap()).collect()
}

/// One chunk per abstract (id = file hash = the document id), added in batches of 1000.
fn index_corpus(rag: &llamafarm_core::rag::Rag, corpus: &[Value], texts: &[String], vectors: &[Vec<f32>]) {
    let records: Vec<ChunkRecord> = corpus
        .iter()
        .zip(texts)
        .zip(vectors)
        .map(|((d, text), v)| {
            let id = d["_id"].as_str().unwrap().to_string();
            ChunkRecord { id: id.clone(), file_hash: id, content: text.clone(), metadata: Default::default(), vector: v.clone() }
        })
        .collect();
    for batch in records.chunks(1000) {
        rag.add_records("main_database", batch.to_vec()).unwrap();
    }
}

use llamafarm_benches::pct;

fn main() {
    llamafarm_benches::init();
    let Some(dir) = llamafarm_benches::scifact_dir("scifact") else { return };
    let corpus = read_jsonl(&dir.join("corpus.jsonl"));
    let queries: HashMap<String, String> =
        read_jsonl(&dir.join("queries.jsonl")).into_iter().map(|q| (q["_id"].as_str().unwrap().to_string(), q["text"].as_str().unwrap().to_string())).collect();
    let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for line in std::fs::read_to_string(dir.join("qrels/test.tsv")).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 3 {
            qrels.entry(f[0].into()).or_default().insert(f[1].into(), f[2].parse().unwrap_or(0));
        }
    }
    let mut qids: Vec<&String> = qrels.keys().collect();
    qids.sort_by_key(|q| q.parse::<u64>().unwrap_or(0));

    let work = tempfile::tempdir().unwrap();
    let lf = LlamaFarm::open_with(work.path(), ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
    let project = lf.projects().create("bench", "scifact", None).unwrap();
    // A second hybrid strategy that fuses by alpha-weighted min-max scores.
    project
        .update_config(|c| {
            let db = &mut c.rag.as_mut().unwrap().databases.as_mut().unwrap()[0];
            // The fp32 reference index (the reduced precisions get their own below).
            let es: llamafarm_core::config::EmbeddingStrategyConfig = serde_json::from_value(serde_json::json!({
                "name": "fp32", "type": "UniversalEmbedder", "config": {"model": "sentence-transformers/all-MiniLM-L6-v2:fp32"}
            }))
            .unwrap();
            db.embedding_strategies = Some(vec![es]);
            db.embedding_strategy = None;
            db.default_embedding_strategy = Some("fp32".into());
            let weighted: llamafarm_core::config::RetrievalStrategyConfig = serde_json::from_value(serde_json::json!({
                "name": "hybrid_weighted", "type": "HybridUniversalStrategy",
                "config": {"combination_method": "weighted_average", "hybrid_alpha": 0.5}
            }))
            .unwrap();
            db.retrieval_strategies.as_mut().unwrap().push(weighted);
            let rrf: llamafarm_core::config::RetrievalStrategyConfig = serde_json::from_value(serde_json::json!({
                "name": "hybrid_rrf", "type": "HybridUniversalStrategy", "config": {"combination_method": "rank_fusion"}
            }))
            .unwrap();
            db.retrieval_strategies.as_mut().unwrap().push(rrf);
            Ok(())
        })
        .unwrap();
    let rag = project.rag();
    println!(
        "SciFact: {} documents, {} test queries; model all-MiniLM-L6-v2 (max 256 tokens), fp32, {} threads",
        corpus.len(),
        qids.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    // Embed the whole corpus once (throughput), then index the vectors through the library.
    let texts: Vec<String> =
        corpus.iter().map(|d| format!("{} {}", d["title"].as_str().unwrap_or(""), d["text"].as_str().unwrap_or("")).trim().to_string()).collect();
    let embedder = lf.embedder("sentence-transformers/all-MiniLM-L6-v2:fp32").unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Corpus vectors are cached between runs (SCIFACT_FRESH=1 recomputes); throughput is
    // then measured on the first 512 abstracts.
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-cache/scifact-minilm-{}.json", texts.len()));
    let cached: Option<Vec<Vec<f32>>> =
        if std::env::var("SCIFACT_FRESH").is_ok() { None } else { std::fs::read(&cache).ok().and_then(|b| serde_json::from_slice(&b).ok()) };
    let (vectors, eps) = match cached {
        Some(v) if std::env::var("SCIFACT_ONLY").is_ok_and(|v| v == "latency") => (v, f64::NAN),
        Some(v) => {
            let t = Instant::now();
            embedder.embed(&refs[..512]).unwrap();
            let eps = 512.0 / t.elapsed().as_secs_f64();
            println!("embedding throughput: {eps:.1} docs/s (first 512 abstracts; corpus vectors from {})", cache.display());
            (v, eps)
        }
        None => {
            let t = Instant::now();
            let v = embedder.embed(&refs).unwrap();
            let embed_s = t.elapsed().as_secs_f64();
            let eps = texts.len() as f64 / embed_s;
            println!("embedding throughput: {eps:.1} docs/s ({} abstracts in {embed_s:.1} s)", texts.len());
            let _ = std::fs::create_dir_all(cache.parent().unwrap());
            let _ = std::fs::write(&cache, serde_json::to_vec(&v).unwrap());
            (v, eps)
        }
    };

    let t = Instant::now();
    index_corpus(&rag, &corpus, &texts, &vectors);
    let build = t.elapsed().as_secs_f64();
    let stats = rag.stats(None).unwrap();
    println!(
        "index build (excluding embedding): {build:.2} s for {} chunks; on disk {} ({:.0} bytes/chunk)",
        stats.vector_count,
        stats.storage_human,
        stats.storage_bytes as f64 / stats.vector_count.max(1) as f64
    );

    println!("\n| strategy | nDCG@10 | recall@100 | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let runs: Vec<(&str, Box<dyn Fn(&str) -> RagQuery>)> = vec![
        ("bm25", Box::new(|q: &str| RagQuery { retrieval_strategy: Some("bm25".into()), top_k: Some(100), ..RagQuery::new(q) })),
        ("vector", Box::new(|q: &str| RagQuery { retrieval_strategy: Some("vector".into()), top_k: Some(100), ..RagQuery::new(q) })),
        ("hybrid (RRF)", Box::new(|q: &str| RagQuery { retrieval_strategy: Some("hybrid_rrf".into()), top_k: Some(100), ..RagQuery::new(q) })),
        ("hybrid (alpha 0.5, min-max)", Box::new(|q: &str| RagQuery { retrieval_strategy: Some("hybrid_weighted".into()), top_k: Some(100), ..RagQuery::new(q) })),
        (
            "hybrid (alpha) + rerank (embedding fallback)",
            Box::new(|q: &str| RagQuery {
                retrieval_strategy: Some("hybrid_weighted".into()),
                rerank_model: Some("cross-encoder/ms-marco-MiniLM-L-6-v2".into()),
                top_k: Some(100),
                ..RagQuery::new(q)
            }),
        ),
    ];
    let only_latency = std::env::var("SCIFACT_ONLY").is_ok_and(|v| v == "latency");
    for (name, make) in runs.iter().filter(|_| !only_latency) {
        let (mut ndcg, mut rec, mut lat) = (0.0, 0.0, Vec::new());
        for qid in &qids {
            let q = make(&queries[*qid]);
            let t = Instant::now();
            let r = rag.query(&q).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let ranked: Vec<String> = r.results.iter().map(|x| x.chunk_id.clone()).collect();
            ndcg += ndcg_at(&ranked, &qrels[*qid], 10);
            rec += recall_at(&ranked, &qrels[*qid], 100);
        }
        let n = qids.len() as f64;
        println!("| {name} | {:.4} | {:.4} | {:.2} | {:.2} |", ndcg / n, rec / n, pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    }
    println!("\n(latencies include embedding the query; top_k = 100)");

    // The reduced precisions (`model:bf16`, the default where the CPU has AVX-512 BF16,
    // and `model:int8`): throughput on the same 512 abstracts, agreement with fp32, and
    // retrieval quality from a second index built with their vectors
    // (SCIFACT_REDUCED=int8 picks some, SCIFACT_REDUCED=0 skips them).
    let mut reduced_eps: Vec<(&str, f64)> = Vec::new();
    let reduced = std::env::var("SCIFACT_REDUCED").unwrap_or_else(|_| "bf16,int8".into());
    for tag in ["bf16", "int8"] {
        if only_latency || reduced == "0" {
            break;
        }
        if !reduced.split(',').any(|t| t == tag) {
            continue;
        }
        let qid8 = format!("sentence-transformers/all-MiniLM-L6-v2:{tag}");
        let e8 = lf.embedder(&qid8).unwrap();
        let t = Instant::now();
        let first = e8.embed(&refs[..512.min(refs.len())]).unwrap();
        let eps8 = first.len() as f64 / t.elapsed().as_secs_f64();
        reduced_eps.push((tag, eps8));
        let cos: Vec<f64> = first.iter().zip(&vectors).map(|(a, b)| llamafarm_core::embed::cosine(a, b) as f64).collect();
        let (cmin, cmean) = (cos.iter().cloned().fold(1.0, f64::min), cos.iter().sum::<f64>() / cos.len() as f64);
        let kernel = if tag == "int8" {
            llamafarm_core::embed::int8_kernel().name()
        } else if llamafarm_core::embed::has_bf16() {
            "avx512-bf16"
        } else {
            "portable"
        };
        println!(
            "\n{tag} embeddings ({kernel} kernel): {eps8:.1} docs/s on the first 512 abstracts = {:.2}x our fp32 ({eps:.1}); cosine to fp32 min {cmin:.5}, mean {cmean:.6}",
            eps8 / eps
        );
        let cache8 = cache.with_file_name(format!("scifact-minilm-{tag}-{}.json", texts.len()));
        let v8: Vec<Vec<f32>> = match std::fs::read(&cache8).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(v) if std::env::var("SCIFACT_FRESH").is_err() => v,
            _ => {
                let v = e8.embed(&refs).unwrap();
                let _ = std::fs::write(&cache8, serde_json::to_vec(&v).unwrap());
                v
            }
        };
        let p8 = lf.projects().create("bench", &format!("scifact-{tag}"), None).unwrap();
        p8.update_config(|c| {
            let db = &mut c.rag.as_mut().unwrap().databases.as_mut().unwrap()[0];
            let es: llamafarm_core::config::EmbeddingStrategyConfig = serde_json::from_value(serde_json::json!({
                "name": tag, "type": "UniversalEmbedder", "config": {"model": qid8}
            }))
            .unwrap();
            db.embedding_strategies = Some(vec![es]);
            db.embedding_strategy = None;
            db.default_embedding_strategy = Some(tag.into());
            let rrf: llamafarm_core::config::RetrievalStrategyConfig = serde_json::from_value(serde_json::json!({
                "name": "hybrid_rrf", "type": "HybridUniversalStrategy", "config": {"combination_method": "rank_fusion"}
            }))
            .unwrap();
            db.retrieval_strategies.as_mut().unwrap().push(rrf);
            Ok(())
        })
        .unwrap();
        let rag8 = p8.rag();
        index_corpus(&rag8, &corpus, &texts, &v8);
        println!("\n| {tag} index ({tag} corpus and query vectors) | nDCG@10 | recall@100 |");
        println!("|---|---|---|");
        for (name, strategy) in [("vector", "vector"), ("hybrid (RRF)", "hybrid_rrf")] {
            let (mut ndcg, mut rec) = (0.0, 0.0);
            for qid in &qids {
                let q = RagQuery { retrieval_strategy: Some(strategy.into()), top_k: Some(100), ..RagQuery::new(&queries[*qid]) };
                let r = rag8.query(&q).unwrap();
                let ranked: Vec<String> = r.results.iter().map(|x| x.chunk_id.clone()).collect();
                ndcg += ndcg_at(&ranked, &qrels[*qid], 10);
                rec += recall_at(&ranked, &qrels[*qid], 100);
            }
            let n = qids.len() as f64;
            println!("| {name} | {:.4} | {:.4} |", ndcg / n, rec / n);
        }
    }

    // Store-level query latency with precomputed query vectors (what the Chroma peer measures).
    let qtexts: Vec<&str> = qids.iter().map(|q| queries[*q].as_str()).collect();
    let qvecs = embedder.embed(&qtexts).unwrap();
    let out_dir = work.path().join("peer-io");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("vectors.json"), serde_json::to_vec(&vectors).unwrap()).unwrap();
    std::fs::write(out_dir.join("queries.json"), serde_json::to_vec(&qvecs).unwrap()).unwrap();
    std::fs::write(out_dir.join("ours_first512.json"), serde_json::to_vec(&vectors[..512.min(vectors.len())]).unwrap()).unwrap();

    println!("\n| chunks | ours vector p50 / p99 ms | ours hybrid (BM25+vector, RRF) p50 / p99 ms | HNSW |");
    println!("|---|---|---|---|");
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut noise = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        ((rng >> 11) as f32 / (1u64 << 53) as f32 - 0.5) * 0.1732 // ~N(0, 0.05) spread
    };
    let mut ours = Vec::new();
    // SCIFACT_SIZES=5000 (comma-separated) limits the latency runs; the peer runs the same sizes.
    let sizes: Vec<usize> =
        std::env::var("SCIFACT_SIZES").ok().map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect()).unwrap_or_else(|| vec![5_000, 100_000]);
    for &size in &sizes {
        let sdir = work.path().join(format!("store-{size}"));
        let store = EmbeddedStore::open(&sdir, Metric::Cosine).unwrap();
        let mut recs = Vec::with_capacity(size);
        for i in 0..size {
            let b = i % vectors.len();
            let mut v = vectors[b].clone();
            if i >= vectors.len() {
                v.iter_mut().for_each(|x| *x += noise());
                llamafarm_core::embed::normalize(&mut v);
            }
            recs.push(ChunkRecord { id: format!("c{i}"), file_hash: format!("f{}", i / 10), content: texts[b].clone(), metadata: Default::default(), vector: v });
        }
        let t = Instant::now();
        for batch in recs.chunks(5000) {
            store.add(batch.to_vec()).unwrap();
        }
        store.wait_for_index();
        let merged = store.optimize().unwrap();
        let build = t.elapsed().as_secs_f64();
        println!("({size}: {merged} text-index segments merged into one after the bulk load)");
        let (mut vl, mut hl, mut kl, mut gl, mut v50) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut recall_hits = 0usize;
        for (qv, qt) in qvecs.iter().zip(&qtexts) {
            // Recall@10 of the store's vector search against an exact scan of the same vectors.
            let found: HashSet<String> = store.vector_search(qv, 10, Metric::Cosine, None).unwrap().into_iter().map(|h| h.id).collect();
            let mut exact: Vec<(f32, usize)> = recs.iter().enumerate().map(|(i, r)| (r.vector.iter().zip(qv.iter()).map(|(a, b)| a * b).sum::<f32>(), i)).collect();
            exact.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
            recall_hits += exact[..10].iter().filter(|(_, i)| found.contains(&recs[*i].id)).count();
            let t = Instant::now();
            store.vector_search(qv, 50, Metric::Cosine, None).unwrap();
            v50.push(t.elapsed().as_secs_f64() * 1000.0);
            // Parts of the hybrid on their own (BM25 top 50; fetching 10 chunks).
            let t = Instant::now();
            let kw = store.keyword_search(qt, 50, None).unwrap();
            kl.push(t.elapsed().as_secs_f64() * 1000.0);
            let some: Vec<String> = kw.iter().take(10).map(|h| h.id.clone()).collect();
            let t = Instant::now();
            store.get(&some).unwrap();
            gl.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            store.vector_search(qv, 10, Metric::Cosine, None).unwrap();
            vl.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let (v, k) = store.hybrid_candidates(Some(qv), Some(qt), 50, Metric::Cosine, None).unwrap();
            let mut fused: HashMap<String, f32> = HashMap::new();
            for list in [&v, &k] {
                for (r, h) in list.iter().enumerate() {
                    *fused.entry(h.id.clone()).or_default() += 1.0 / (61.0 + r as f32);
                }
            }
            let mut top: Vec<(String, f32)> = fused.into_iter().collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            let ids: Vec<String> = top.into_iter().take(10).map(|x| x.0).collect();
            store.get(&ids).unwrap();
            hl.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let st = store.stats().unwrap();
        let row = (size, pct(&mut vl, 0.5), pct(&mut vl, 0.99), pct(&mut hl, 0.5), pct(&mut hl, 0.99));
        println!(
            "| {size} | {:.2} / {:.2} | {:.2} / {:.2} | {} (build {build:.1} s, {:.0} bytes/chunk; parts p50: vector top 50 {:.2} ms, BM25 top 50 {:.2} ms, fetch 10 {:.2} ms; vector recall@10 vs exact {:.3}) |",
            row.1,
            row.2,
            row.3,
            row.4,
            st.ann_index,
            st.storage_bytes as f64 / size as f64,
            pct(&mut v50, 0.5),
            pct(&mut kl, 0.5),
            pct(&mut gl, 0.5),
            recall_hits as f64 / (10 * qvecs.len()) as f64
        );
        ours.push(row);
    }

    // Peers, in the same run, on the same vectors and model files.
    let py = std::env::var("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/peers-venv/bin/python"));
    if !py.is_file() {
        println!("\npeers skipped: run benches/peers/setup.sh first (or set PEERS_PYTHON)");
        return;
    }
    let peers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers");
    let model_dir = lf.models().resolve("sentence-transformers/all-MiniLM-L6-v2").unwrap().dir;
    if only_latency {
        println!("(SCIFACT_ONLY=latency: embedding peer skipped)");
    }
    let st_out = std::process::Command::new(if only_latency { "true" } else { py.to_str().unwrap_or("python3") })
        .arg(peers.join("st_embed.py"))
        .arg(&model_dir)
        .arg(dir.join("corpus.jsonl"))
        // SCIFACT_PEER_N=512 runs the peer on the same first 512 abstracts ours is timed on.
        .args(["--n", &std::env::var("SCIFACT_PEER_N").unwrap_or_else(|_| texts.len().to_string()), "--ours"])
        .arg(out_dir.join("ours_first512.json"))
        .output()
        .unwrap();
    let st: Value = serde_json::from_slice(st_out.stdout.trim_ascii()).unwrap_or(Value::Null);
    if let Some(peer_eps) = st["docs_per_s"].as_f64() {
        println!(
            "\nembeddings: ours {eps:.1} docs/s vs sentence-transformers (torch {}) {peer_eps:.1} docs/s = {:.2}x; cosine agreement min {:.5}, mean {:.6}",
            st["torch"].as_str().unwrap_or("?"),
            eps / peer_eps,
            st["cosine_min"].as_f64().unwrap_or(0.0),
            st["cosine_mean"].as_f64().unwrap_or(0.0)
        );
        for (tag, e) in &reduced_eps {
            println!("embeddings, {tag}: ours {e:.1} docs/s vs sentence-transformers fp32 {peer_eps:.1} docs/s = {:.2}x", e / peer_eps);
        }
    } else {
        println!("\nsentence-transformers peer failed: {}", String::from_utf8_lossy(&st_out.stderr));
    }
    let ch_out = std::process::Command::new(&py)
        .arg(peers.join("chroma_query.py"))
        .arg("--vectors")
        .arg(out_dir.join("vectors.json"))
        .arg("--queries")
        .arg(out_dir.join("queries.json"))
        .args(["--sizes", &sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")])
        .output()
        .unwrap();
    match serde_json::from_slice::<Vec<Value>>(ch_out.stdout.trim_ascii()) {
        Ok(rows) => {
            for (r, o) in rows.iter().zip(&ours) {
                let p50 = r["p50_ms"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "query latency at {}: chromadb {} vector-only p50 {:.2} / p99 {:.2} ms (build {:.1} s); ours hybrid p50 {:.2} ms = {:.2}x of chroma's vector-only p50, ours vector p50 = {:.2}x",
                    r["size"], r["version"].as_str().unwrap_or("?"), p50, r["p99_ms"].as_f64().unwrap_or(f64::NAN), r["build_s"].as_f64().unwrap_or(0.0),
                    o.3, o.3 / p50, o.1 / p50
                );
            }
        }
        Err(_) => println!("chromadb peer failed: {}", String::from_utf8_lossy(&ch_out.stderr)),
    }
}
