use super::*;
use crate::{ErrorKind, LlamaFarm};
use serde_json::json;

const DOCS: &[(&str, &str, &str)] = &[
    ("aaaa", "neural_scaling_laws.txt", "Neural scaling laws describe how language model loss falls as a power law of compute, data and parameters."),
    ("aaaa", "neural_scaling_laws.txt", "Chinchilla showed that models should be trained on about twenty tokens per parameter for compute-optimal training."),
    ("bbbb", "cats.md", "Cats are small domesticated carnivores. A cat purrs when content and sleeps most of the day."),
    ("bbbb", "cats.md", "The domestic cat has retractable claws and keen night vision for hunting mice."),
    ("cccc", "bread.txt", "Sourdough bread is leavened with a culture of wild yeast and lactobacilli, giving it a tangy flavour."),
    ("dddd", "xylophone.txt", "The zylofonic quasar reference code is QX-7741 for the xylophone calibration manual."),
];

fn project() -> (tempfile::TempDir, crate::Project) {
    let dir = tempfile::tempdir().unwrap();
    let lf = LlamaFarm::open_with(dir.path(), crate::ModelCache::from_env()).unwrap();
    let p = lf.projects().create("t", "rag", None).unwrap();
    let chunks: Vec<NewChunk> = DOCS
        .iter()
        .enumerate()
        .map(|(i, (h, name, text))| {
            let hash = format!("{h}{}", "0".repeat(60));
            NewChunk::new(&hash, i, *text).with_metadata(json!({"document_name": name, "page": i % 2, "parser": "TextParser_Python"}).as_object().unwrap().clone())
        })
        .collect();
    let r = p.rag().add_texts("main_database", chunks).unwrap();
    assert_eq!(r.added, DOCS.len());
    (dir, p)
}

fn first_doc(resp: &RagResponse) -> &str {
    resp.results[0].metadata["document_name"].as_str().unwrap()
}

#[test]
fn strategies_find_the_right_documents() {
    let (_d, p) = project();
    let rag = p.rag();
    // Default strategy of the default template: hybrid.
    let r = rag.query(&RagQuery::new("how does loss scale with compute?")).unwrap();
    assert_eq!(r.retrieval_strategy_used, "hybrid_search");
    assert_eq!(r.database_used, "main_database");
    assert_eq!(first_doc(&r), "neural_scaling_laws.txt");
    assert!(r.processing_time_ms > 0.0);
    assert!(r.results.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(r.results[0].chunk_id.starts_with("aaaa000000000000_"));
    assert_eq!(r.results[0].document_id, format!("aaaa{}", "0".repeat(60)));

    // Vector only: semantic match without shared words.
    let mut q = RagQuery::new("feline pets that purr");
    q.retrieval_strategy = Some("basic_search".into());
    let r = rag.query(&q).unwrap();
    assert_eq!(first_doc(&r), "cats.md");
    assert!(r.results[0].score > 0.5 && r.results[0].score <= 1.0);

    // BM25 only: an exact rare token that embeddings blur.
    let mut q = RagQuery::new("QX-7741");
    q.retrieval_strategy = Some("bm25".into());
    let r = rag.query(&q).unwrap();
    assert_eq!(r.total_results, 1);
    assert_eq!(first_doc(&r), "xylophone.txt");

    // Hybrid by alpha weighting; alpha 0 = BM25, alpha 1 = vectors.
    for (alpha, method) in [(0.0, "rank_fusion"), (1.0, "weighted_average"), (0.3, "weighted_average")] {
        let mut q = RagQuery::new("zylofonic quasar code");
        q.retrieval_strategy = Some("hybrid".into());
        q.hybrid_alpha = Some(alpha);
        let r = rag.query(&q).unwrap();
        assert_eq!(first_doc(&r), "xylophone.txt", "alpha {alpha} {method}");
    }

    // top_k, threshold, filters, max_tokens.
    let mut q = RagQuery::new("cats");
    q.top_k = Some(2);
    q.retrieval_strategy = Some("vector".into());
    assert_eq!(rag.query(&q).unwrap().total_results, 2);
    q.score_threshold = Some(0.99);
    assert_eq!(rag.query(&q).unwrap().total_results, 0);
    q.score_threshold = None;
    q.metadata_filters = Some(json!({"document_name": "bread.txt"}));
    let r = rag.query(&q).unwrap();
    assert_eq!((r.total_results, first_doc(&r)), (1, "bread.txt"));
    q.metadata_filters = None;
    q.max_tokens = Some(3);
    assert!(rag.query(&q).unwrap().results[0].content.chars().count() <= 12);

    // Multi-query and filtered strategies by type; cross-encoder falls back with a note.
    let mut q = RagQuery::new("What is sourdough and how do cats hunt?");
    q.retrieval_strategy = Some("MultiQueryStrategy".into());
    q.top_k = Some(4);
    let r = rag.query(&q).unwrap();
    let names: Vec<&str> = r.results.iter().map(|x| x.metadata["document_name"].as_str().unwrap()).collect();
    assert!(names.contains(&"bread.txt") && names.contains(&"cats.md"), "{names:?}");
    let mut q = RagQuery::new("cat claws");
    q.rerank_model = Some("no-such/cross-encoder".into());
    let r = rag.query(&q).unwrap();
    assert_eq!(first_doc(&r), "cats.md");
    assert!(r.notes.iter().any(|n| n.contains("embedding similarity")), "{:?}", r.notes);
    assert!((r.results[0].score - 1.0).abs() < 1e-6, "min-max normalised");
}

#[test]
fn bad_queries_are_4xx() {
    let (_d, p) = project();
    let rag = p.rag();
    let kind = |q: RagQuery| rag.query(&q).unwrap_err().kind();
    assert_eq!(kind(RagQuery::new("  ")), ErrorKind::Invalid);
    for k in [0, 100000, -1] {
        assert_eq!(kind(RagQuery { top_k: Some(k), ..RagQuery::new("x") }), ErrorKind::Invalid);
    }
    assert_eq!(kind(RagQuery { database: Some("nope".into()), ..RagQuery::new("x") }), ErrorKind::NotFound);
    assert_eq!(kind(RagQuery { retrieval_strategy: Some("nope".into()), ..RagQuery::new("x") }), ErrorKind::NotFound);
    assert_eq!(kind(RagQuery { metadata_filters: Some(json!(["a"])), ..RagQuery::new("x") }), ErrorKind::Invalid);
    assert_eq!(kind(RagQuery { metadata_filters: Some(json!({"a": {"$gt": "b"}})), ..RagQuery::new("x") }), ErrorKind::Invalid);
    assert_eq!(kind(RagQuery { score_threshold: Some(1.5), ..RagQuery::new("x") }), ErrorKind::Invalid);
    assert_eq!(kind(RagQuery { hybrid_alpha: Some(-0.1), ..RagQuery::new("x") }), ErrorKind::Invalid);
    assert_eq!(kind(RagQuery { distance_metric: Some("hamming".into()), ..RagQuery::new("x") }), ErrorKind::Invalid);
}

#[test]
fn stats_health_documents_and_database_crud() {
    let (_d, p) = project();
    let rag = p.rag();
    let s = rag.stats(None).unwrap();
    assert_eq!((s.vector_count, s.document_count, s.embedding_dimension), (6, 4, Some(384)));
    assert!(s.storage_bytes > 0 && s.storage_human.ends_with("KB"));
    assert_eq!(s.chunk_count, 6);
    assert!(s.index_bytes > 0 && s.index_bytes <= s.storage_bytes);
    // The six 384-dimensional f32 vectors (9 KB) are in the mapped file; metadata and
    // keys are on the heap.
    assert_eq!(s.mapped_bytes, 6 * 384 * 4);
    assert!(s.memory_bytes > 1_000 && s.memory_bytes < 200_000, "{}", s.memory_bytes);
    let h = rag.health(None).unwrap();
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    assert!(h.components["embeddings"]["latency"].as_f64().unwrap() > 0.0);

    let docs = rag.documents("main_database", 10).unwrap();
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0].filename.as_deref(), Some("neural_scaling_laws.txt"));
    assert_eq!(docs[0].chunk_count, 2);
    assert_eq!(rag.documents("main_database", 1).unwrap().len(), 1);

    // Create, conflict, patch (name/type immutable), delete with and without data.
    let new_db: DatabaseConfig = serde_json::from_value(json!({
        "name": "second_db", "type": "ChromaStore",
        "embedding_strategies": [{"name": "e", "type": "SentenceTransformerEmbedder", "config": {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}}],
        "retrieval_strategies": [{"name": "kw", "type": "BM25Retriever", "default": true}]
    })).unwrap();
    let created = rag.create_database(new_db.clone()).unwrap();
    assert!(!created.is_default);
    assert_eq!(rag.create_database(new_db).unwrap_err().kind(), ErrorKind::Conflict);
    rag.add_texts("second_db", vec![NewChunk::new("eeee", 0, "keyword retrieval with bm25")]).unwrap();
    let r = rag.query(&RagQuery { database: Some("second_db".into()), ..RagQuery::new("bm25") }).unwrap();
    assert_eq!((r.retrieval_strategy_used.as_str(), r.total_results), ("kw", 1));

    let patched = rag.update_database("second_db", json!({"config": {"collection_name": "c2"}}).as_object().unwrap()).unwrap();
    assert_eq!(patched.config.config.unwrap()["collection_name"], "c2");
    assert_eq!(rag.update_database("second_db", json!({"type": "QdrantStore"}).as_object().unwrap()).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(rag.update_database("second_db", json!({"name": "x"}).as_object().unwrap()).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(rag.update_database("second_db", json!({"default_retrieval_strategy": "ghost"}).as_object().unwrap()).unwrap_err().kind(), ErrorKind::Invalid);

    // The default dataset depends on main_database.
    let e = rag.delete_database("main_database", true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.to_string().contains("'default'"), "{e}");
    let (removed, deleted) = rag.delete_database("second_db", false).unwrap();
    assert_eq!((removed.name.as_str(), deleted), ("second_db", false));
    assert!(rag.store_dir("second_db").exists(), "delete_collection=false keeps the data");
    assert_eq!(rag.database("second_db").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn embedder_dimension_mismatch_is_an_error() {
    let (_d, p) = project();
    // Declared 768 for a 384-dimensional model.
    p.update_config(|c| {
        let db = &mut c.rag.as_mut().unwrap().databases.as_mut().unwrap()[0];
        db.embedding_strategies.as_mut().unwrap()[0].config.as_mut().unwrap().insert("dimension".into(), json!(768));
        Ok(())
    })
    .unwrap();
    let e = p.rag().query(&RagQuery::new("x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.to_string().contains("dimension"), "{e}");
}
