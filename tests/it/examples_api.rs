//! The Examples API over the original's examples (`../shared/data/llamafarm-examples`)
//! and the ones in this repository; the cleanup endpoint; trailing slashes.

use crate::support::{assert_detail, TestServer};
use serde_json::json;
use std::path::PathBuf;

fn dirs() -> Option<Vec<PathBuf>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let original = root.join("../../shared/data/llamafarm-examples");
    if !original.is_dir() {
        eprintln!("SKIP examples_api: {} is absent", original.display());
        return None;
    }
    Some(vec![original, root.join("../examples/projects")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_import_the_originals() {
    let Some(dirs) = dirs() else { return };
    let s = TestServer::start_with_examples(dirs).await;
    let (st, v) = s.get("/v1/examples").await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<&str> = v["examples"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    for want in ["fda_rag", "quick_rag", "universal_rag", "local_notes", "support_faq"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    assert!(!ids.contains(&"ocr_and_document"), "a folder without llamafarm.yaml is not an example");
    let quick = v["examples"].as_array().unwrap().iter().find(|e| e["id"] == "quick_rag").unwrap();
    assert_eq!(quick["slug"], "quick_rag");
    assert_eq!(quick["title"], "Quick RAG");
    assert_eq!(quick["primaryModel"], "llama3.1:8b");
    assert_eq!(quick["dataset_count"], 1);
    assert_eq!(quick["data_size_bytes"], 18334 + 3515);
    assert!(quick["data_size_human"].as_str().unwrap().ends_with("KB"), "{quick}");
    let local = v["examples"].as_array().unwrap().iter().find(|e| e["id"] == "local_notes").unwrap();
    assert_eq!(local["title"], "Local Notes RAG", "the manifest's title");

    let (st, v) = s.get("/v1/examples/fda_rag/datasets").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["datasets"][0]["file_count"], 3, "{v}");
    let (_, all) = s.get("/v1/examples/datasets").await;
    assert!(all["datasets"].as_array().unwrap().len() >= 5);

    // Import as a new project: config as in the example (server-written file hashes
    // dropped), datasets, files.
    let (st, v) = s.post("/v1/examples/fda_rag/import-project", json!({ "namespace": "acme", "name": "fda", "process": false })).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["datasets"], json!(["fda_letters"]));
    assert_eq!(v["files_uploaded"], 3);
    assert_eq!(v["task_ids"], json!([]));
    let (_, ds) = s.get("/v1/projects/acme/fda/datasets").await;
    assert_eq!(ds["datasets"][0]["files"].as_array().unwrap().len(), 3, "{ds}");
    assert_detail(&s.post("/v1/examples/fda_rag/import-project", json!({ "namespace": "acme", "name": "fda" })).await, 409);
    assert_detail(&s.post("/v1/examples/nope/import-project", json!({ "namespace": "acme", "name": "x" })).await, 404);
    assert_detail(&s.post("/v1/examples/nope/import-data", json!({ "namespace": "acme", "project": "fda" })).await, 404);
    assert_detail(&s.post("/v1/examples/quick_rag/import-project", json!({ "namespace": "acme", "name": "../x" })).await, 400);
    assert_detail(&s.get("/v1/examples/..%2F..%2Fetc/datasets").await, 404);

    // Import data into an existing project, with the example's strategies; processing
    // starts a task per dataset (local models: the repo's own example).
    let (st, _) = s.post("/v1/projects/acme", json!({ "name": "mine", "config_template": "rag" })).await;
    assert_eq!(st, 200);
    let (st, v) =
        s.post("/v1/examples/local_notes/import-data", json!({ "namespace": "acme", "project": "mine", "include_strategies": true, "process": true })).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["datasets"].clone(), v["task_ids"].as_array().unwrap().len()), (json!(["notes"]), 1), "{v}");
    let (_, p) = s.get("/v1/projects/acme/mine").await;
    let dbs: Vec<&str> = p["project"]["config"]["rag"]["databases"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(dbs, ["documents_db", "notes_db"]);
    // One dataset under another name, with the project's own database and strategy.
    let (st, v) = s
        .post(
            "/v1/examples/universal_rag/import-dataset",
            json!({ "namespace": "acme", "project": "mine", "dataset": "universal_docs", "target_dataset": "more", "include_strategies": false }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, ds) = s.get("/v1/projects/acme/mine/datasets").await;
    let more = ds["datasets"].as_array().unwrap().iter().find(|d| d["name"] == "more").unwrap();
    assert_eq!((more["database"].as_str(), more["data_processing_strategy"].as_str()), (Some("documents_db"), Some("document_rag")), "{more}");
    assert_detail(&s.post("/v1/examples/universal_rag/import-dataset", json!({ "namespace": "acme", "project": "mine", "dataset": "nope" })).await, 404);

    // Trailing slashes answer as without; the cleanup endpoint removes chunks, keeps the file.
    let (st, v) = s.get("/v1/projects/acme/mine/datasets/").await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s.get("/v1/examples/").await;
    assert_eq!(st, 200);
    let hash = more["files"][0].as_str().map(str::to_string).unwrap_or_else(|| more["files"][0]["hash"].as_str().unwrap().to_string());
    let (st, v) = s.post(&format!("/v1/projects/acme/mine/datasets/more/cleanup/{hash}"), json!({})).await;
    assert_eq!((st, v["chunks_removed"].as_u64()), (200, Some(0)), "{v}");
    assert_detail(&s.post("/v1/projects/acme/mine/datasets/more/cleanup/abc", json!({})).await, 404);
}
