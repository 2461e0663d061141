//! RAG endpoints and the runtime's embeddings/rerank over a real socket, with real models.

use crate::chroma_store::ChromaServer;
use crate::support::{assert_detail, TestServer};
use llamafarm_core::rag::NewChunk;
use serde_json::json;

const P: &str = "/v1/projects/acme/kb";

async fn seeded() -> TestServer {
    seeded_on(None).await
}

/// Three chunks in `main_database`: in the embedded store, or in a Chroma server on `chroma` (a port).
async fn seeded_on(chroma: Option<u16>) -> TestServer {
    let s = TestServer::start_with_models().await;
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "kb"})).await.0, 200);
    if let Some(port) = chroma {
        let cfg = json!({"config": {"collection_name": "kb-main", "host": "127.0.0.1", "port": port}});
        let (st, d) = s.patch(&format!("{P}/rag/databases/main_database"), cfg).await;
        assert_eq!(st, 200, "{d}");
    }
    let lf = s.lf.clone();
    tokio::task::spawn_blocking(move || {
        let rag = lf.project("acme", "kb").unwrap().rag();
        let texts = [
            ("Neural scaling laws: loss falls as a power law in compute.", "scaling.txt"),
            ("Cats purr and sleep most of the day.", "cats.txt"),
            ("The invoice number is INV-55321 for the March order.", "invoice.txt"),
        ];
        let chunks = texts
            .iter()
            .enumerate()
            .map(|(i, (t, n))| {
                let h = format!("{}{}", ["aa", "bb", "cc"][i], "0".repeat(62));
                NewChunk::new(&h, 0, *t).with_metadata(json!({"document_name": n, "kind": if i == 2 { "finance" } else { "general" }}).as_object().unwrap().clone())
            })
            .collect();
        rag.add_texts("main_database", chunks).unwrap();
    })
    .await
    .unwrap();
    s
}

#[tokio::test]
async fn rag_query_and_bad_input() {
    query_checks(&seeded().await).await;
}

/// The retrieval checks on a database whose vectors live in a `chroma run` server; the
/// ingestion pipeline writes there too, and the server going away is a 503 naming it.
#[tokio::test]
async fn retrieval_on_a_chroma_server() {
    let Some(chroma) = ChromaServer::start() else { return };
    let s = seeded_on(Some(chroma.port)).await;
    query_checks(&s).await;
    let (_, stats) = s.get(&format!("{P}/rag/stats")).await;
    assert!(stats["store"].as_str().unwrap().starts_with(&format!("chroma server 127.0.0.1:{} (collection 'kb-main'", chroma.port)), "{stats}");
    assert_eq!((stats["vector_count"].as_u64(), stats["embedding_dimension"].as_u64()), (Some(3), Some(384)));
    let (st, h) = s.get(&format!("{P}/rag/health")).await;
    assert_eq!((st, h["status"].as_str()), (200, Some("healthy")), "{h}");

    // Upload and process a file: its chunks go to the server; removing it removes them.
    let md = b"# Tides\nThe moon's gravity raises two tidal bulges on the oceans.\n".to_vec();
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(md).file_name("tides.md"));
    let resp = s.http.post(s.url(&format!("{P}/datasets/default/data?auto_process=false"))).multipart(form).send().await.unwrap();
    let up: serde_json::Value = resp.json().await.unwrap();
    let hash = up["hash"].as_str().unwrap().to_string();
    let (_, act) = s.post(&format!("{P}/datasets/default/actions"), json!({"action_type": "process"})).await;
    let task = act["task_id"].as_str().unwrap().to_string();
    let t = loop {
        let (_, t) = s.get(&format!("{P}/tasks/{task}")).await;
        if matches!(t["state"].as_str(), Some("SUCCESS" | "FAILURE")) {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(t["state"], "SUCCESS", "{t}");
    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "why are there tides", "top_k": 1, "retrieval_strategy": "vector"})).await;
    assert_eq!(r["results"][0]["metadata"]["document_name"], "tides.md", "{r}");
    let (st, rm) = s.delete(&format!("{P}/datasets/default/data/{hash}")).await;
    assert_eq!(st, 200, "{rm}");
    let (_, stats) = s.get(&format!("{P}/rag/stats")).await;
    assert_eq!(stats["vector_count"].as_u64(), Some(3));

    let port = chroma.port;
    drop(chroma);
    for strategy in ["vector", "hybrid"] {
        let d = assert_detail(&s.post(&format!("{P}/rag/query"), json!({"query": "cats", "retrieval_strategy": strategy})).await, 503);
        assert!(d.contains(&format!("Chroma server 127.0.0.1:{port}")), "{d}");
    }
}

async fn query_checks(s: &TestServer) {
    let (st, r) = s.post(&format!("{P}/rag/query"), json!({"query": "how does loss scale with compute", "top_k": 2})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["database_used"], "main_database");
    assert_eq!(r["retrieval_strategy_used"], "hybrid_search");
    assert_eq!(r["total_results"], 2);
    assert_eq!(r["results"][0]["metadata"]["document_name"], "scaling.txt");
    assert!(r["processing_time_ms"].as_f64().unwrap() > 0.0);
    assert!(r["results"][0]["chunk_id"].as_str().unwrap().ends_with("_0000"));
    assert!(r.get("notes").is_none(), "empty notes are omitted");

    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "INV-55321", "retrieval_strategy": "bm25"})).await;
    assert_eq!(r["results"][0]["metadata"]["document_name"], "invoice.txt");
    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "pets", "metadata_filters": {"kind": "finance"}, "retrieval_strategy": "vector"})).await;
    assert_eq!(r["total_results"], 1);

    for (body, status) in [
        (json!({"query": ""}), 422),
        (json!({"query": "x", "top_k": 0}), 422),
        (json!({"query": "x", "top_k": 100000}), 422),
        (json!({"query": "x", "top_k": "five"}), 422),
        (json!({"query": "x", "database": "nope"}), 404),
        (json!({"query": "x", "retrieval_strategy": "nope"}), 404),
        (json!({"query": "x", "metadata_filters": "kind=finance"}), 422),
        (json!({"query": "x", "metadata_filters": {"kind": {"$gt": "a"}}}), 422),
        (json!({"query": "x", "score_threshold": 2}), 422),
        (json!({"top_k": 3}), 422),
    ] {
        assert_detail(&s.post(&format!("{P}/rag/query"), body.clone()).await, status);
    }
    assert_detail(&s.post("/v1/projects/acme/nope/rag/query", json!({"query": "x"})).await, 404);
}

#[tokio::test]
async fn rag_health_stats_databases_documents() {
    let s = seeded().await;
    let (st, h) = s.get(&format!("{P}/rag/health")).await;
    assert_eq!(st, 200);
    assert_eq!(h["status"], "healthy", "{h}");
    assert!(h["components"]["vector_store"]["latency"].as_f64().is_some());
    let (_, stats) = s.get(&format!("{P}/rag/stats?database=main_database")).await;
    assert_eq!((stats["vector_count"].as_u64(), stats["embedding_dimension"].as_u64()), (Some(3), Some(384)));
    assert!(stats["storage_human"].is_string() && stats["storage_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["chunk_count"].as_u64(), Some(3));
    assert!(stats["memory_bytes"].as_u64().unwrap() > 0 && stats["memory_human"].is_string() && stats["index_bytes"].as_u64().unwrap() > 0);
    // The three 384-dimensional vectors are read through the mapped file.
    assert_eq!(stats["mapped_bytes"].as_u64(), Some(3 * 384 * 4), "{stats}");
    assert!(stats["mapped_human"].is_string());
    assert_detail(&s.get(&format!("{P}/rag/stats?database=ghost")).await, 404);

    let (_, dbs) = s.get(&format!("{P}/rag/databases")).await;
    assert_eq!(dbs["default_database"], "main_database");
    assert_eq!(dbs["databases"][0]["is_default"], true);
    assert_eq!(dbs["databases"][0]["retrieval_strategies"][0]["is_default"], true);

    let (st, db) = s.get(&format!("{P}/rag/databases/main_database")).await;
    assert_eq!(st, 200);
    assert_eq!(db["dependent_datasets"], json!(["default"]));

    let new_db = json!({"name": "notes_db", "type": "ChromaStore",
        "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder", "config": {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}}],
        "retrieval_strategies": [{"name": "basic", "type": "BasicSimilarityStrategy", "config": {"top_k": 5}, "default": true}]});
    let (st, created) = s.post(&format!("{P}/rag/databases"), new_db.clone()).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["database"]["name"], "notes_db");
    assert_detail(&s.post(&format!("{P}/rag/databases"), new_db).await, 409);
    assert_detail(&s.post(&format!("{P}/rag/databases"), json!({"name": "Bad Name", "type": "ChromaStore"})).await, 422);
    assert_detail(&s.post(&format!("{P}/rag/databases"), json!({"name": "x_db", "type": "MongoStore"})).await, 422);

    let (st, patched) = s.patch(&format!("{P}/rag/databases/notes_db"), json!({"config": {"collection_name": "notes"}})).await;
    assert_eq!(st, 200, "{patched}");
    assert_eq!(patched["config"]["collection_name"], "notes");
    assert_detail(&s.patch(&format!("{P}/rag/databases/notes_db"), json!({"type": "QdrantStore"})).await, 422);
    assert_detail(&s.patch(&format!("{P}/rag/databases/ghost"), json!({})).await, 404);

    let d = assert_detail(&s.delete(&format!("{P}/rag/databases/main_database")).await, 409);
    assert!(d.contains("['default']"), "{d}");
    let (st, del) = s.delete(&format!("{P}/rag/databases/notes_db?delete_collection=false")).await;
    assert_eq!(st, 200);
    assert_eq!(del["collection_deleted"], false);
    assert_detail(&s.delete(&format!("{P}/rag/databases/notes_db")).await, 404);

    let (st, docs) = s.get(&format!("{P}/rag/databases/main_database/documents?limit=2")).await;
    assert_eq!(st, 200);
    assert_eq!(docs.as_array().unwrap().len(), 2);
    assert_eq!(docs[0]["chunk_count"], 1);
    assert_eq!(docs[0]["filename"], "scaling.txt");
    for bad in ["0", "1001", "x"] {
        let r = s.get(&format!("{P}/rag/databases/main_database/documents?limit={bad}")).await;
        assert!(r.0 == 422 || r.0 == 400, "{r:?}");
    }
}

#[tokio::test]
async fn runtime_embeddings_and_rerank() {
    let s = TestServer::start_with_models().await;
    let model = "sentence-transformers/all-MiniLM-L6-v2";
    // `:fp32` is the reference numerics (sentence-transformers' golden values); the
    // plain id is the CPU's native precision (bf16 with AVX-512 BF16), checked below.
    let (st, r) = s.runtime_post("/v1/embeddings", json!({"model": format!("{model}:fp32"), "input": ["This is an example sentence", "hi"]})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "list");
    assert_eq!(r["data"][1]["index"], 1);
    let v = r["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(v.len(), 384);
    assert!((v[0].as_f64().unwrap() - 0.067657).abs() < 1e-4);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() >= 9);

    // base64 (what the OpenAI SDKs request) decodes to the same floats.
    let (_, b) = s.runtime_post("/v1/embeddings", json!({"model": model, "input": "This is an example sentence", "encoding_format": "base64"})).await;
    let s64 = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(s64.len(), (384 * 4 * 4 / 3), "base64 of 1536 bytes");

    // The reduced precisions (`model:int8`, `model:bf16`) and the plain id: same shape,
    // nearly the same vector, and not the fp32 one (another kernel ran).
    let f0: Vec<f64> = v.iter().map(|x| x.as_f64().unwrap()).collect();
    use llamafarm_core::embed::Precision;
    let native = Precision::native();
    // The AVX2 kernel (an AVX2-only CPU) quantises weights and activations to 7 bits: this
    // short sentence comes out at 0.988 there, and SciFact's retrieval is fp32's
    // (docs/benchmarks.md, "Reduced precisions"); the VNNI kernels' 8 bits give 0.99+.
    let int8_cos = if llamafarm_core::system::embedding_kernels()["int8"] == "avx2" { 0.985 } else { 0.99 };
    let native_cos = if native == Precision::Int8 { int8_cos } else { 0.998 };
    for (id, min_cos, differs) in
        [(format!("{model}:int8"), int8_cos, true), (format!("{model}:bf16"), 0.998, true), (model.to_string(), native_cos, native != Precision::F32)]
    {
        let (st, q) = s.runtime_post("/v1/embeddings", json!({"model": id, "input": ["This is an example sentence", "hi"]})).await;
        assert_eq!(st, 200, "{q}");
        let q0: Vec<f64> = q["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(q0.len(), 384);
        let cos =
            q0.iter().zip(&f0).map(|(a, b)| a * b).sum::<f64>() / (q0.iter().map(|a| a * a).sum::<f64>().sqrt() * f0.iter().map(|a| a * a).sum::<f64>().sqrt());
        assert!(cos > min_cos, "{id} vs fp32 cosine {cos}");
        assert_eq!(cos < 0.999_999, differs, "{id} vs fp32 cosine {cos}");
    }
    let d = assert_detail(&s.runtime_post("/v1/embeddings", json!({"model": "nobody/nothing:int8", "input": "x"})).await, 503);
    assert!(d.contains("nobody/nothing"), "{d}");

    assert_detail(&s.runtime_post("/v1/embeddings", json!({"model": model, "input": []})).await, 422);
    assert_detail(&s.runtime_post("/v1/embeddings", json!({"model": model})).await, 422);
    assert_detail(&s.runtime_post("/v1/embeddings", json!({"model": model, "input": "x", "dimensions": 12})).await, 422);
    let d = assert_detail(&s.runtime_post("/v1/embeddings", json!({"model": "nobody/nothing", "input": "x"})).await, 503);
    assert!(d.contains("lf models pull nobody/nothing"), "{d}");
    assert_detail(&s.runtime_post("/v1/embeddings", json!({"model": "../../etc", "input": "x"})).await, 422);

    let (st, rr) = s
        .runtime_post(
            "/v1/rerank",
            json!({"model": model, "query": "feline pets", "documents": ["stock prices fell", "cats purr when happy"], "return_documents": true, "top_n": 1}),
        )
        .await;
    assert_eq!(st, 200, "{rr}");
    assert_eq!(rr["results"].as_array().unwrap().len(), 1);
    assert_eq!(rr["results"][0]["index"], 1);
    assert_eq!(rr["results"][0]["document"]["text"], "cats purr when happy");
    assert_eq!(rr["method"], "bi-encoder");
    assert_detail(&s.runtime_post("/v1/rerank", json!({"model": model, "query": "", "documents": ["a"]})).await, 422);
    assert_detail(&s.runtime_post("/v1/rerank", json!({"model": model, "query": "q", "documents": []})).await, 422);
}

#[tokio::test]
async fn missing_models_are_503_with_the_fetch_command() {
    let s = TestServer::start().await; // empty model cache
    s.post("/v1/projects/acme", json!({"name": "kb"})).await;
    let d = assert_detail(&s.post(&format!("{P}/rag/query"), json!({"query": "x"})).await, 503);
    assert!(d.contains("scripts/fetch-models.sh"), "{d}");
    let (st, h) = s.get(&format!("{P}/rag/health")).await;
    assert_eq!(st, 200);
    assert_eq!(h["status"], "degraded", "{h}");
}

/// `OpenAIEmbedder` is a real HTTP client: point it at our own runtime listener.
#[tokio::test]
async fn openai_embedder_talks_to_our_runtime() {
    let s = TestServer::start_with_models().await;
    s.post("/v1/projects/acme", json!({"name": "remote", "config_template": "server"})).await;
    let db = json!({"name": "remote_db", "type": "ChromaStore",
        "embedding_strategies": [{"name": "remote", "type": "OpenAIEmbedder",
            "config": {"base_url": format!("{}/v1", s.runtime_base), "model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384, "api_key": "unused"}}],
        "retrieval_strategies": [{"name": "basic", "type": "BasicSimilarityStrategy", "default": true}]});
    let (st, body) = s.post("/v1/projects/acme/remote/rag/databases", db).await;
    assert_eq!(st, 201, "{body}");
    let lf = s.lf.clone();
    tokio::task::spawn_blocking(move || {
        let rag = lf.project("acme", "remote").unwrap().rag();
        rag.add_texts("remote_db", vec![NewChunk::new("ab", 0, "Cats purr."), NewChunk::new("cd", 0, "Stocks fell sharply.")]).unwrap();
    })
    .await
    .unwrap();
    let (st, r) = s.post("/v1/projects/acme/remote/rag/query", json!({"query": "feline", "database": "remote_db", "top_k": 1})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["results"][0]["content"], "Cats purr.");

    // A wrong declared dimension is caught on the first response.
    let bad = json!({"name": "bad_db", "type": "ChromaStore",
        "embedding_strategies": [{"name": "remote", "type": "OllamaEmbedder",
            "config": {"base_url": s.runtime_base.clone(), "model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 768}}]});
    assert_eq!(s.post("/v1/projects/acme/remote/rag/databases", bad).await.0, 201);
    let d = assert_detail(&s.post("/v1/projects/acme/remote/rag/query", json!({"query": "x", "database": "bad_db"})).await, 422);
    assert!(d.contains("dimension"), "{d}");
    // An unreachable endpoint is a 503, not a hang or a 500.
    let down = json!({"name": "down_db", "type": "ChromaStore",
        "embedding_strategies": [{"name": "remote", "type": "OpenAIEmbedder", "config": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "dimension": 8}}]});
    assert_eq!(s.post("/v1/projects/acme/remote/rag/databases", down).await.0, 201);
    assert_detail(&s.post("/v1/projects/acme/remote/rag/query", json!({"query": "x", "database": "down_db"})).await, 503);
}

/// A remote embedder on a fleet: one server never up, one stopped after five queries; every
/// query answers from the server left.
#[tokio::test]
async fn an_embedder_fleet_loses_no_query_when_a_server_stops() {
    let s = TestServer::start_with_models().await;
    s.post("/v1/projects/acme", json!({"name": "fleet", "config_template": "server"})).await;
    // A second runtime port on the same library instance, to be stopped.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = format!("http://{}/v1", listener.local_addr().unwrap());
    let router = llamafarm_http::runtime_router(s.lf.clone(), &Default::default());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let db = json!({"name": "fleet_db", "type": "ChromaStore",
        "embedding_strategies": [{"name": "remote", "type": "OpenAIEmbedder",
            "config": {"base_url": format!("{}/v1", s.runtime_base), "base_urls": ["http://127.0.0.1:9/v1", second],
                       "model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384, "api_key": "unused"}}],
        "retrieval_strategies": [{"name": "basic", "type": "BasicSimilarityStrategy", "default": true}]});
    let (st, body) = s.post("/v1/projects/acme/fleet/rag/databases", db).await;
    assert_eq!(st, 201, "{body}");
    let lf = s.lf.clone();
    tokio::task::spawn_blocking(move || {
        let rag = lf.project("acme", "fleet").unwrap().rag();
        rag.add_texts("fleet_db", vec![NewChunk::new("ab", 0, "Cats purr."), NewChunk::new("cd", 0, "Stocks fell sharply.")]).unwrap();
    })
    .await
    .unwrap();
    for i in 0..20 {
        if i == 5 {
            server.abort();
        }
        let (st, r) = s.post("/v1/projects/acme/fleet/rag/query", json!({"query": format!("feline {i}"), "database": "fleet_db", "top_k": 1})).await;
        assert_eq!(st, 200, "query {i}: {r}");
        assert_eq!(r["results"][0]["content"], "Cats purr.");
    }
    let bad = json!({"name": "bad_fleet", "type": "ChromaStore",
        "embedding_strategies": [{"name": "remote", "type": "OpenAIEmbedder", "config": {"base_url": "http://127.0.0.1:9/v1", "base_urls": "http://x", "model": "m"}}]});
    assert_eq!(s.post("/v1/projects/acme/fleet/rag/databases", bad).await.0, 201);
    let d = assert_detail(&s.post("/v1/projects/acme/fleet/rag/query", json!({"query": "x", "database": "bad_fleet"})).await, 422);
    assert!(d.contains("base_urls"), "{d}");
}

async fn export(s: &TestServer, db: &str) -> String {
    let r = s.http.get(s.url(&format!("{P}/rag/databases/{db}/export"))).send().await.unwrap();
    assert_eq!(r.status(), 200, "export of {db}");
    r.text().await.unwrap()
}

async fn import(s: &TestServer, db: &str, body: String) -> serde_json::Value {
    let r = s.http.post(s.url(&format!("{P}/rag/databases/{db}/import"))).header("content-type", "application/x-ndjson").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "import into {db}");
    r.json().await.unwrap()
}

/// The chunks of an export (its first line, the header, names the database) by id:
/// content, metadata and the vector as f32.
fn chunk_lines(export: &str) -> std::collections::BTreeMap<String, (serde_json::Value, serde_json::Value, Vec<f32>)> {
    export
        .lines()
        .skip(1)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let vector = v["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (v["id"].as_str().unwrap().to_string(), (v["content"].clone(), v["metadata"].clone(), vector))
        })
        .collect()
}

fn same_chunks(got: &str, want: &str) {
    let (got, want) = (chunk_lines(got), chunk_lines(want));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (id, (content, meta, vector)) in &want {
        let g = &got[id];
        assert_eq!((&g.0, &g.1), (content, meta), "{id}");
        let diff = g.2.iter().zip(vector).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // A Chroma cosine collection stores its vectors normalised again (rounding at 1e-8).
        assert!(g.2.len() == vector.len() && diff < 1e-6, "{id}: vectors differ by up to {diff}");
    }
}

/// A database moves between the embedded store and a Chroma server, both ways, by export
/// and import: the same chunks, metadata and vectors, and the same answers to queries.
#[tokio::test]
async fn an_export_moves_a_database_between_the_embedded_store_and_a_chroma_server() {
    let Some(chroma) = ChromaServer::start() else { return };
    let s = seeded().await;
    let first = export(&s, "main_database").await;
    assert_eq!(chunk_lines(&first).len(), 3);
    let (st, main) = s.get(&format!("{P}/rag/databases/main_database")).await;
    assert_eq!(st, 200, "{main}");
    let mut db = main.as_object().unwrap().clone();
    db.remove("dependent_datasets");
    db.insert("name".into(), json!("remote"));
    db.insert("config".into(), json!({"host": "127.0.0.1", "port": chroma.port, "collection_name": "kb-remote"}));
    let (st, body) = s.post(&format!("{P}/rag/databases"), serde_json::Value::Object(db.clone())).await;
    assert_eq!(st, 201, "{body}");
    let r = import(&s, "remote", first.clone()).await;
    assert_eq!(r["imported"], 3, "{r}");
    let (_, stats) = s.get(&format!("{P}/rag/stats?database=remote")).await;
    assert!(stats["store"].as_str().unwrap().starts_with("chroma server"), "{stats}");
    assert_eq!(stats["vector_count"].as_u64(), Some(3), "{stats}");
    for q in ["cats", "invoice number", "scaling laws"] {
        let top = |db: &'static str| {
            let s = &s;
            async move {
                let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": q, "top_k": 3, "database": db, "retrieval_strategy": "vector"})).await;
                r["results"].as_array().unwrap().iter().map(|h| (h["metadata"]["document_name"].clone(), h["score"].as_f64().unwrap())).collect::<Vec<_>>()
            }
        };
        let (local, remote) = (top("main_database").await, top("remote").await);
        assert_eq!(local.len(), 3, "{q}");
        for (a, b) in local.iter().zip(&remote) {
            assert_eq!(a.0, b.0, "{q}: {local:?} vs {remote:?}");
            assert!((a.1 - b.1).abs() < 1e-4, "{q}: {local:?} vs {remote:?}");
        }
    }
    // Out of the Chroma server again: the same chunks and vectors, then into a new
    // embedded database, which exports the same as the first.
    let second = export(&s, "remote").await;
    same_chunks(&second, &first);
    db.insert("name".into(), json!("again"));
    db.insert("config".into(), json!({}));
    let (st, body) = s.post(&format!("{P}/rag/databases"), serde_json::Value::Object(db)).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(import(&s, "again", second).await["imported"], 3);
    same_chunks(&export(&s, "again").await, &first);
}

/// An export is streamed out and an import streamed in, so a database larger than the
/// request body limit moves in one request each way; a bad last line still writes nothing.
#[tokio::test]
async fn a_database_larger_than_the_body_limit_moves_in_one_streamed_request() {
    let s = TestServer::start_with_models_and(llamafarm_http::HttpOptions { body_limit: 64 << 10, ..Default::default() }).await;
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "kb"})).await.0, 200);
    let lf = s.lf.clone();
    tokio::task::spawn_blocking(move || {
        let rag = lf.project("acme", "kb").unwrap().rag();
        let chunks = (0..150)
            .map(|i| {
                let h = format!("{i:02x}{}", "0".repeat(62));
                NewChunk::new(&h, 0, format!("Note {i}: llamas number {i} graze near lake {}.", i % 7))
                    .with_metadata(json!({"document_name": format!("n{i}.txt")}).as_object().unwrap().clone())
            })
            .collect();
        rag.add_texts("main_database", chunks).unwrap();
    })
    .await
    .unwrap();
    let r = s.http.get(s.url(&format!("{P}/rag/databases/main_database/export"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none(), "the export is streamed: {:?}", r.headers());
    let first = r.text().await.unwrap();
    assert!(first.len() > 8 * (64 << 10), "{} bytes", first.len());
    assert_eq!(chunk_lines(&first).len(), 150);
    let (_, main) = s.get(&format!("{P}/rag/databases/main_database")).await;
    let mut db = main.as_object().unwrap().clone();
    db.remove("dependent_datasets");
    db.insert("name".into(), json!("copy"));
    let (st, body) = s.post(&format!("{P}/rag/databases"), serde_json::Value::Object(db)).await;
    assert_eq!(st, 201, "{body}");
    // A bad last line: refused, nothing written.
    let bad = format!("{first}{{\"id\": \"x\"}}\n");
    let r = s.http.post(s.url(&format!("{P}/rag/databases/copy/import"))).header("content-type", "application/x-ndjson").body(bad).send().await.unwrap();
    let st = r.status().as_u16();
    let d = r.text().await.unwrap();
    assert_eq!(st, 422, "{d}");
    assert!(d.contains("line 152"), "{d}");
    let (_, stats) = s.get(&format!("{P}/rag/stats?database=copy")).await;
    assert_eq!(stats["vector_count"], 0, "{stats}");
    // The whole export in one request, sent in pieces without a length.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = first.as_bytes().chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
    let r = s.http.post(s.url(&format!("{P}/rag/databases/copy/import"))).header("content-type", "application/x-ndjson").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!((v["imported"].as_u64(), v["documents"].as_u64()), (Some(150), Some(150)), "{v}");
    same_chunks(&export(&s, "copy").await, &first);
    // Other requests keep the limit.
    let d = assert_detail(&s.post(&format!("{P}/rag/query"), json!({"query": "x".repeat(70_000)})).await, 413);
    assert!(d.contains("too large"), "{d}");
}
