//! The bad-input corpus: over a hundred hostile requests against both ports of one
//! server. Each must answer a 4xx with a JSON `{"detail", "code"}` body that names no
//! server path and carries no internals, within a time bound, and the server must keep
//! serving afterwards. Cases by kind: path traversal in every kind of path parameter,
//! malformed, deeply nested and mistyped JSON, huge strings and arrays, NaN/inf, wrong
//! vector dimensions, invalid UTF-8, broken multipart, a 1 MB header, a slow-loris body.
//! Hostile documents (zip bombs in DOCX and XLSX, a PDF declaring a million pages, file
//! names that try to escape) are uploaded and processed: each fails alone, with a
//! reason, and nothing is written outside the data directory.

use crate::support::{split, TestServer};
use llamafarm_http::HttpOptions;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const P: &str = "/v1/projects/acme/kb";

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
    /// A multipart upload: (field name, file name, bytes).
    File(&'static str, String, Vec<u8>),
}

#[derive(Clone)]
struct Case {
    kind: &'static str,
    method: reqwest::Method,
    runtime: bool,
    path: String,
    body: Body,
    header: Option<(&'static str, String)>,
}

fn case(kind: &'static str, method: &str, path: impl Into<String>, body: Body) -> Case {
    Case { kind, method: method.parse().unwrap(), runtime: false, path: path.into(), body, header: None }
}

fn rt(mut c: Case) -> Case {
    c.runtime = true;
    c
}

fn raw_json(s: impl Into<Vec<u8>>) -> Body {
    Body::Raw("application/json", s.into())
}

/// Segments that try to climb out of a directory or smuggle separators, percent-encoded
/// so that the client sends them as they are (not as dot segments it would resolve).
const TRAVERSAL: [&str; 5] = ["..%2F..%2Fetc%2Fpasswd", "..%5C..%5Cboot.ini", "a%00b", "%2Fetc%2Fpasswd", "x%0Ay"];

fn corpus() -> Vec<Case> {
    let mut v = Vec::new();
    // Path traversal, in every kind of path parameter on both ports.
    let templates: [(&str, &str, bool); 17] = [
        ("GET", "/v1/projects/{}", false),
        ("GET", "/v1/projects/acme/{}", false),
        ("DELETE", "/v1/projects/acme/kb/datasets/{}", false),
        ("DELETE", "/v1/projects/acme/kb/datasets/notes/data/{}", false),
        ("POST", "/v1/projects/acme/kb/datasets/notes/cleanup/{}", false),
        ("GET", "/v1/projects/acme/kb/rag/databases/{}", false),
        ("GET", "/v1/projects/acme/kb/tasks/{}", false),
        ("GET", "/v1/projects/acme/kb/chat/sessions/{}/history", false),
        ("GET", "/v1/projects/acme/kb/event_logs/{}", false),
        ("DELETE", "/v1/ml/anomaly/models/{}", false),
        ("DELETE", "/v1/ml/classifier/models/{}", false),
        ("GET", "/v1/models/{}/x/quantizations", false),
        ("DELETE", "/v1/models/{}", false),
        ("POST", "/v1/examples/{}/import-project", false),
        ("GET", "/v1/files/{}", true),
        ("DELETE", "/v1/anomaly/models/{}", true),
        ("DELETE", "/v1/classifier/models/{}", true),
    ];
    for (method, t, runtime) in templates {
        for seg in TRAVERSAL {
            let body = if method == "POST" { Body::Json(json!({})) } else { Body::None };
            let mut c = case("path traversal", method, t.replace("{}", seg), body);
            c.runtime = runtime;
            v.push(c);
        }
    }
    // Malformed JSON.
    for body in ["{", "{\"name\": }", "[1, 2", "nul", "{\"name\": \"kb\",}", "\u{feff}{}", ""] {
        v.push(case("malformed JSON", "POST", "/v1/projects/acme", raw_json(body)));
    }
    v.push(case("malformed JSON", "POST", format!("{P}/rag/query"), raw_json("{\"query\": \"x\"")));
    v.push(rt(case("malformed JSON", "POST", "/v1/chat/completions", raw_json("{\"model\": 1"))));
    // Deeply nested JSON (past serde_json's recursion limit).
    let deep = |n: usize| format!("{{\"query\": {}1{}}}", "[".repeat(n), "]".repeat(n));
    v.push(case("nested JSON", "POST", format!("{P}/rag/query"), raw_json(deep(100_000))));
    v.push(case("nested JSON", "POST", "/v1/projects/acme", raw_json(format!("{{\"name\": \"kb\", \"x\": {}0{}}}", "{\"a\":".repeat(50_000), "}".repeat(50_000)))));
    v.push(rt(case("nested JSON", "POST", "/v1/embeddings", raw_json(format!("{{\"input\": {}\"a\"{}}}", "[".repeat(10_000), "]".repeat(10_000))))));
    // Wrong types.
    for (path, body) in [
        ("/v1/projects/acme".to_string(), json!({"name": 5})),
        ("/v1/projects/acme".to_string(), json!(["kb"])),
        (format!("{P}/rag/query"), json!({"query": ["a"]})),
        (format!("{P}/rag/query"), json!({"query": "a", "top_k": "ten"})),
        (format!("{P}/rag/query"), json!({"query": "a", "top_k": -3})),
        (format!("{P}/chat/completions"), json!({"messages": "hi"})),
        (format!("{P}/chat/completions"), json!({"messages": [{"role": 7, "content": "x"}]})),
        (format!("{P}/datasets"), json!({"name": {"a": 1}})),
        ("/v1/ml/anomaly/fit".to_string(), json!({"data": {"a": 1}})),
        ("/v1/ml/classifier/fit".to_string(), json!({"model": "c", "training_data": "none"})),
        ("/v1/models/download".to_string(), json!({"model_name": 42})),
    ] {
        v.push(case("wrong types", "POST", path, Body::Json(body)));
    }
    v.push(rt(case("wrong types", "POST", "/v1/rerank", Body::Json(json!({"query": 1, "documents": "a"})))));
    v.push(rt(case("wrong types", "POST", "/v1/embeddings", Body::Json(json!({"input": 3.5})))));
    v.push(rt(case("wrong types", "POST", "/v1/chat/completions", Body::Json(json!({"model": "x", "messages": [], "temperature": "hot"})))));
    v.push(case("wrong types", "PUT", P, Body::Json(json!({"config": "not a map"}))));
    // Huge strings and arrays.
    let mb = |n: usize| "a".repeat(n << 20);
    v.push(case("huge string", "POST", "/v1/projects/acme", Body::Json(json!({"name": mb(1)}))));
    v.push(case("huge string", "POST", format!("{P}/datasets"), Body::Json(json!({"name": mb(2), "database": "main_database"}))));
    v.push(case("huge string", "POST", format!("{P}/rag/query"), Body::Json(json!({"query": "x", "database": mb(1)}))));
    v.push(case("huge string", "GET", format!("/v1/projects/{}", "n".repeat(8 << 10)), Body::None));
    v.push(case("huge array", "POST", "/v1/ml/anomaly/fit", Body::Json(json!({"data": vec![vec![1.0; 3]; 1], "schema": {}}))));
    v.push(case("huge array", "POST", "/v1/ml/anomaly/fit", Body::Json(json!({"data": [vec![0.5f64; 200_000], [1.0]]}))));
    v.push(rt(case("huge array", "POST", "/v1/rerank", Body::Json(json!({"query": "q", "documents": vec!["d"; 1], "top_n": 0})))));
    v.push(rt(case("huge array", "POST", "/v1/embeddings", Body::Json(json!({"input": vec!["x"; 200_000], "model": "nope/none"})))));
    v.push(rt(case(
        "huge array",
        "POST",
        "/v1/chat/completions",
        Body::Json(json!({"model": "nope/none", "messages": vec![json!({"role": "user", "content": "x"}); 100_000]})),
    )));
    // NaN and infinity (not JSON), out-of-range numbers.
    for body in
        [r#"{"data": [[1.0, NaN], [1, 2]]}"#, r#"{"data": [[Infinity, 1], [1, 2]]}"#, r#"{"data": [[1e999, 1], [1, 2]]}"#, r#"{"data": [[-1e999, 1], [1, 2]]}"#]
    {
        v.push(case("NaN/inf", "POST", "/v1/ml/anomaly/fit", raw_json(body)));
    }
    v.push(case("NaN/inf", "POST", format!("{P}/rag/query"), raw_json(r#"{"query": "x", "top_k": 1e400}"#)));
    v.push(rt(case("NaN/inf", "POST", "/v1/chat/completions", raw_json(r#"{"model": "x", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}"#))));
    v.push(case("NaN/inf", "POST", "/v1/ml/anomaly/fit", Body::Json(json!({"data": [[1], [2]], "contamination": 1e308}))));
    // Wrong vector dimensions (the model `dims` is fitted on 3 features in setup).
    v.push(case("vector dimensions", "POST", "/v1/ml/anomaly/score", Body::Json(json!({"model": "dims", "data": [[1, 2]]}))));
    v.push(case("vector dimensions", "POST", "/v1/ml/anomaly/detect", Body::Json(json!({"model": "dims", "data": [[1, 2, 3, 4, 5]]}))));
    v.push(case("vector dimensions", "POST", "/v1/ml/anomaly/score", Body::Json(json!({"model": "dims", "data": [[1, 2, 3], [1]]}))));
    let import = |header: Value, line: Value| {
        let body = format!("{header}\n{line}\n").into_bytes();
        case("vector dimensions", "POST", format!("{P}/rag/databases/main_database/import"), Body::Raw("application/x-ndjson", body))
    };
    let header = |dim: usize| {
        json!({"format": "llamafarm-rag-export", "version": 1, "database": "main_database",
            "embedding_model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": dim, "metric": "cosine", "chunks": 1})
    };
    let chunk = |n: usize| json!({"id": "c1", "file_hash": "f", "content": "x", "metadata": {}, "vector": vec![0.1; n]});
    v.push(import(header(384), chunk(2)));
    v.push(import(header(7), chunk(7)));
    v.push(import(header(384), json!({"id": "c1", "file_hash": "f", "content": "x", "metadata": {}, "vector": vec!["a"; 384]})));
    // Invalid UTF-8.
    v.push(case("invalid UTF-8", "POST", "/v1/projects/acme", raw_json(b"{\"name\": \"k\xff\xfeb\"}".to_vec())));
    v.push(case("invalid UTF-8", "POST", format!("{P}/rag/query"), raw_json(b"{\"query\": \"\xc3\x28\"}".to_vec())));
    v.push(rt(case("invalid UTF-8", "POST", "/v1/embeddings", raw_json(b"{\"input\": \"\xed\xa0\x80\"}".to_vec()))));
    v.push(case("invalid UTF-8", "POST", "/v1/ml/anomaly/fit", raw_json(b"\xff\xff\xff".to_vec())));
    // Wrong or missing content types, broken multipart.
    v.push(case("content type", "POST", "/v1/projects/acme", Body::Raw("text/plain", b"{\"name\": \"kb\"}".to_vec())));
    v.push(case("multipart", "POST", format!("{P}/datasets/notes/data"), Body::Raw("multipart/form-data", b"--x\r\n\r\n".to_vec())));
    v.push(case("multipart", "POST", format!("{P}/datasets/notes/data"), Body::Raw("multipart/form-data; boundary=zzz", b"garbage with no parts".to_vec())));
    v.push(case("multipart", "POST", format!("{P}/datasets/notes/data"), Body::File("wrong_field", "a.txt".into(), b"hello".to_vec())));
    v.push(case(
        "multipart",
        "POST",
        format!("{P}/datasets/notes/data/bulk"),
        Body::Raw("multipart/form-data; boundary=q", b"--q\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\nno end".to_vec()),
    ));
    v.push(rt(case("multipart", "POST", "/v1/files", Body::Raw("multipart/form-data", Vec::new()))));
    v.push(case("multipart", "POST", format!("{P}/datasets/notes/data"), Body::File("file", "a\u{0}b.txt".into(), b"nul in the name".to_vec())));
    v.push(case("multipart", "POST", "/v1/vision/ocr", Body::File("file", "x.png".into(), b"not an image at all".to_vec())));
    v.push(rt(case("multipart", "POST", "/v1/ocr", Body::Json(json!({"images": ["%%% not base64 %%%"]})))));
    // A 1 MB header.
    let mut big = case("1 MB header", "GET", "/v1/projects/acme", Body::None);
    big.header = Some(("x-padding", "a".repeat(1 << 20)));
    v.push(big);
    let mut auth = case("1 MB header", "GET", "/v1/projects/acme", Body::None);
    auth.header = Some(("authorization", format!("Bearer {}", "b".repeat(1 << 20))));
    v.push(auth);
    v
}

/// A detail must not show where the server keeps its files, nor internals.
fn assert_clean(detail: &str, data_dir: &str, what: &str) {
    for bad in [data_dir, "/tmp/", "/root", "/home/", "panicked", "backtrace", "src/", ".rs:", "RUST_BACKTRACE"] {
        assert!(!detail.contains(bad), "{what}: the detail shows {bad:?}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_input_is_a_clean_4xx_and_the_server_keeps_serving() {
    // Real models, so requests get past model loading to their own checks.
    let s = TestServer::start_limited(HttpOptions { request_timeout: Some(Duration::from_secs(3)), ..Default::default() }, Default::default()).await;
    let data_dir = s.lf.data_dir().display().to_string();
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "kb"})).await.0, 200);
    assert_eq!(s.post(&format!("{P}/datasets"), json!({"name": "notes", "database": "main_database"})).await.0, 200);
    let grid: Vec<Value> = (0..30).map(|i| json!([i as f64, (i * 7 % 11) as f64, 1.0])).collect();
    assert_eq!(s.post("/v1/ml/anomaly/fit", json!({"model": "dims", "data": grid, "overwrite": true})).await.0, 200);

    let cases = corpus();
    assert!(cases.len() >= 80, "{} cases", cases.len());
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for c in &cases {
        let base = if c.runtime { &s.runtime_base } else { &s.base };
        let what = format!("[{}] {} {}{}", c.kind, c.method, if c.runtime { "runtime " } else { "" }, &c.path[..c.path.len().min(120)]);
        let mut r = s.http.request(c.method.clone(), format!("{base}{}", c.path));
        r = match c.body.clone() {
            Body::None => r,
            Body::Json(j) => r.json(&j),
            Body::Raw(ct, b) => r.header("content-type", ct).body(b),
            Body::File(field, name, bytes) => r.multipart(reqwest::multipart::Form::new().part(field, reqwest::multipart::Part::bytes(bytes).file_name(name))),
        };
        if let Some((k, val)) = &c.header {
            r = r.header(*k, val.as_str());
        }
        let t = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(20), r.send()).await.unwrap_or_else(|_| panic!("{what}: no answer in 20 s"));
        let resp = resp.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{what}: status {status}");
        if status == 431 {
            // hyper refuses a header block over its buffer before any handler runs: a
            // 431 with no body is all it sends.
            *kinds.entry(c.kind).or_default() += 1;
            continue;
        }
        let (status, body) = split(resp).await;
        let detail = body["detail"].as_str().unwrap_or_else(|| panic!("{what}: {status} without a detail: {body}"));
        assert!(!detail.is_empty() && body["code"].is_string(), "{what}: {body}");
        assert_clean(detail, &data_dir, &what);
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: took {:?}", t.elapsed());
        *kinds.entry(c.kind).or_default() += 1;
    }
    eprintln!("bad-input cases by kind: {kinds:?} ({} in all)", cases.len());

    // A slow-loris body: 408 once the time limit passes.
    let trickle = futures::stream::unfold(0u32, |i| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (i < 40).then(|| (Ok::<_, std::io::Error>(vec![b' ']), i + 1))
    });
    let t = Instant::now();
    let r = s.http.post(s.url(&format!("{P}/rag/query"))).header("content-type", "application/json").body(reqwest::Body::wrap_stream(trickle)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 408);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    // Still serving, and nothing was created by the corpus.
    assert_eq!(s.get("/health").await.0, 200);
    let (st, projects) = s.get("/v1/projects/acme").await;
    assert_eq!(st, 200);
    assert_eq!(projects["total"], 1, "{projects}");
}

async fn upload(s: &TestServer, name: &str, bytes: Vec<u8>) -> Value {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    let (st, v) = split(s.http.post(s.url(&format!("{P}/datasets/notes/data?auto_process=false"))).multipart(form).send().await.unwrap()).await;
    assert_eq!(st, 200, "{name}: {v}");
    v
}

/// A zip whose one entry inflates to `size` bytes of spaces.
fn zip_bomb(entry: &str, size: usize) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).compression_level(Some(1)).large_file(true);
    w.start_file(entry, opts).unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..(size >> 20) {
        w.write_all(&chunk).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A one-page PDF whose page tree claims a million pages.
fn million_page_pdf() -> Vec<u8> {
    let objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        "<< /Length 44 >>\nstream\nBT /F1 12 Tf 72 720 Td (Hello pages) Tj ET\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).as_bytes());
    pdf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_documents_fail_alone_and_nothing_escapes_the_data_directory() {
    let s = TestServer::start_with_models().await;
    let outside = s._dir.path().to_path_buf();
    let before: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "kb"})).await.0, 200);
    assert_eq!(s.post(&format!("{P}/datasets"), json!({"name": "notes", "database": "main_database"})).await.0, 200);

    let t = Instant::now();
    let docx = upload(&s, "bomb.docx", zip_bomb("word/document.xml", 300 << 20)).await;
    let xlsx = upload(&s, "bomb.xlsx", zip_bomb("xl/worksheets/sheet1.xml", 300 << 20)).await;
    let pdf = upload(&s, "million.pdf", million_page_pdf()).await;
    // File names that try to escape are only labels: the file is stored by its hash.
    for name in ["../../../escape.txt", "/etc/passwd", "..\\..\\win.txt", "%2e%2e%2fenc.txt", &"n".repeat(5000)] {
        let v = upload(&s, name, format!("text of {}", name.len()).into_bytes()).await;
        assert_eq!(v["hash"].as_str().map(str::len), Some(64), "{v}");
    }
    let (st, task) = s.post(&format!("{P}/datasets/notes/actions"), json!({"action_type": "process"})).await;
    assert_eq!(st, 200, "{task}");
    let id = task["task_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let done = loop {
        let (_, t) = s.get(&format!("{P}/tasks/{id}")).await;
        if matches!(t["state"].as_str(), Some("SUCCESS" | "FAILURE")) {
            break t;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "still running: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(t.elapsed() < Duration::from_secs(120), "{:?}", t.elapsed());
    let text = done.to_string();
    // The bombs fail with their reason; the others are processed.
    for h in [&docx, &xlsx] {
        let hash = h["hash"].as_str().unwrap();
        assert!(text.contains(hash), "{hash} not in {text}");
    }
    assert!(text.contains("decompress to more than 256 MiB"), "{text}");
    assert!(!text.contains(&s.lf.data_dir().display().to_string()), "{text}");
    // The PDF's claim of a million pages is not believed: its one page is read.
    let (_, files) = s.get(&format!("{P}/datasets")).await;
    assert!(files.to_string().contains(pdf["hash"].as_str().unwrap()), "{files}");
    // The server answers, and nothing new appeared beside the data directory.
    assert_eq!(s.get("/health").await.0, 200);
    let after: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    assert!(!outside.join("escape.txt").exists() && !outside.parent().unwrap().join("escape.txt").exists());
}
