//! OCR, document extraction and the runtime's files over a real socket, with the real
//! PP-OCRv6 models; bad input of every kind is a 4xx `{"detail"}` and the server keeps
//! serving.

use crate::support::{assert_detail, split, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn receipt() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/llamafarm-examples/ocr_and_document/receipt.png");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent (the shared evaluation data)", p.display());
        None
    }
}

fn b64(bytes: &[u8]) -> String {
    // A small encoder so the test does not need a base64 crate.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn multipart(s: &TestServer, path: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    split(s.http.post(s.url(path)).multipart(form).send().await.unwrap()).await
}

fn file_part(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(name.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_over_the_api_and_the_runtime() {
    let Some(path) = receipt() else { return };
    let s = TestServer::start_with_models().await;
    let png = std::fs::read(&path).unwrap();

    // API: multipart upload, boxes on.
    let form = reqwest::multipart::Form::new().part("file", file_part(png.clone(), "receipt.png")).text("model", "easyocr").text("return_boxes", "true");
    let (st, v) = multipart(&s, "/v1/vision/ocr", form).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["object"].as_str(), v["model"].as_str(), v["usage"]["images_processed"].as_u64()), (Some("list"), Some("easyocr"), Some(1)));
    assert_eq!(v["engine"], "PP-OCRv6_small");
    let text = v["data"][0]["text"].as_str().unwrap();
    assert!(text.contains("$39.59") && text.contains("APPROVED"), "{text}");
    let boxes = v["data"][0]["boxes"].as_array().unwrap();
    assert!(boxes.len() > 20 && boxes.iter().all(|b| b["x2"].as_f64() > b["x1"].as_f64() && b["confidence"].as_f64().unwrap() > 0.0), "{boxes:?}");

    // API: base64 images field (a data URL) in the form.
    let form = reqwest::multipart::Form::new().text("images", json!([format!("data:image/png;base64,{}", b64(&png))]).to_string());
    let (st, v) = multipart(&s, "/v1/vision/ocr", form).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "surya");
    assert!(v["data"][0].get("boxes").is_none());

    // Runtime: JSON with base64, then a stored file by id.
    let (st, v) = s.runtime_post("/v1/ocr", json!({"model": "surya", "images": [b64(&png)], "languages": ["en"]})).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"][0]["text"].as_str().unwrap().contains("Subtotal"));
    let form = reqwest::multipart::Form::new().part("file", file_part(png.clone(), "receipt.png")).text("convert_pdf", "true").text("pdf_dpi", "150");
    let (st, f) = split(s.http.post(format!("{}/v1/files", s.runtime_base)).multipart(form).send().await.unwrap()).await;
    assert_eq!(st, 200, "{f}");
    let id = f["id"].as_str().unwrap().to_string();
    assert_eq!((f["object"].as_str(), f["page_count"].as_u64(), f["content_type"].as_str()), (Some("file"), Some(1), Some("image/png")));
    let (st, list) = split(s.http.get(format!("{}/v1/files", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!((st, list["data"][0]["id"].as_str()), (200, Some(id.as_str())));
    let (st, imgs) = split(s.http.get(format!("{}/v1/files/{id}/images", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!((imgs["data"][0]["width"].as_u64(), imgs["data"][0]["mime_type"].as_str()), (Some(600), Some("image/png")));
    let (st, v) = s.runtime_post("/v1/ocr", json!({"file_id": id, "return_boxes": true})).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"][0]["boxes"].as_array().unwrap().iter().any(|b| b["text"].as_str().unwrap().contains("Greenville")));
    let (st, _) = split(s.http.delete(format!("{}/v1/files/{id}", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!(st, 200);
    let got = split(s.http.get(format!("{}/v1/files/{id}", s.runtime_base)).send().await.unwrap()).await;
    assert_detail(&got, 404);
    let got = s.runtime_post("/v1/ocr", json!({"file_id": id})).await;
    assert_detail(&got, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_extraction_runs_the_ocr_pipelines() {
    let Some(path) = receipt() else { return };
    let s = TestServer::start_with_models().await;
    let png = std::fs::read(&path).unwrap();
    // extraction without a schema: the receipt's labelled rows.
    let form = reqwest::multipart::Form::new()
        .part("file", file_part(png.clone(), "receipt.png"))
        .text("model", "naver-clova-ix/donut-base-finetuned-cord-v2")
        .text("task", "extraction");
    let (st, v) = multipart(&s, "/v1/vision/documents/extract", form).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["task"].as_str(), v["pipeline"].as_str(), v["model"].as_str()),
        (Some("extraction"), Some("ocr+layout"), Some("naver-clova-ix/donut-base-finetuned-cord-v2"))
    );
    assert!(v["note"].as_str().unwrap().contains("not run by this server"), "{v}");
    let fields = v["data"][0]["fields"].as_array().unwrap();
    let total = fields.iter().find(|f| f["key"] == "Total").unwrap_or_else(|| panic!("{fields:?}"));
    assert_eq!(total["value"], "$39.59");
    assert!(total["confidence"].as_f64().unwrap() > 0.5 && total["bbox"].as_array().unwrap().len() == 4);

    // classification: labels ranked by embedding similarity.
    let (st, v) = s
        .runtime_post("/v1/documents/extract", json!({"images": [b64(&png)], "task": "classification", "prompts": ["shopping receipt", "poem about the sea"]}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["text"], "shopping receipt", "{v}");
    let scores = v["data"][0]["all_scores"].as_object().unwrap();
    assert!((scores.values().map(|x| x.as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 1e-4);

    // vqa: the local LLM answers from the page text; fields pair questions and answers.
    let (st, v) = s.runtime_post("/v1/documents/extract", json!({"images": [b64(&png)], "task": "vqa", "prompts": ["What is the total?"]})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["pipeline"], "ocr+llm");
    let f = v["data"][0]["fields"].as_array().unwrap();
    assert_eq!((f[0]["key"].as_str(), f[0]["value"].as_str(), f[1]["key"].as_str()), (Some("question"), Some("What is the total?"), Some("answer")));
    assert!(f[1]["value"].as_str().is_some_and(|a| !a.is_empty()), "{v}");

    // extraction with a schema: one answer per page, decoded under the schema's grammar,
    // so it has exactly the schema's keys and a typed field holds its type.
    let schema = json!({"type": "object", "properties": {"total": {"type": "string"}, "store_name": {}, "item_count": {"type": "integer"}}});
    let (st, v) = s.runtime_post("/v1/documents/extract", json!({"images": [b64(&png)], "task": "extraction", "schema": schema})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["pipeline"], "ocr+llm+json");
    let f = v["data"][0]["fields"].as_array().unwrap();
    assert_eq!(f.iter().map(|f| f["key"].as_str().unwrap()).collect::<Vec<_>>(), ["total", "store_name", "item_count"], "{v}");
    assert!(f[2]["value"].as_str().unwrap().parse::<i64>().is_ok(), "an integer field holds an integer: {v}");
    let bad = json!({"images": [b64(&png)], "task": "extraction", "schema": {"properties": {"total": {"type": "no-such-type"}}}});
    let (st, v) = s.runtime_post("/v1/documents/extract", bad).await;
    assert_eq!(st, 422, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("schema"), "{v}");

    // vqa needs questions; classification needs two labels; tasks are checked.
    assert_detail(&s.runtime_post("/v1/documents/extract", json!({"images": [b64(&png)], "task": "vqa"})).await, 422);
    assert_detail(&s.runtime_post("/v1/documents/extract", json!({"images": [b64(&png)], "task": "classification", "prompts": ["one"]})).await, 422);
    assert_detail(&s.runtime_post("/v1/documents/extract", json!({"images": [b64(&png)], "task": "summarize"})).await, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_clear_4xx_and_the_server_keeps_serving() {
    let s = TestServer::start_with_models().await;
    let png_header_20000 = {
        // A PNG header declaring 20000x20000 pixels: refused from the header, never decoded.
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let crc = {
            let mut c = 0xFFFF_FFFFu32;
            for &b in &ihdr {
                c ^= b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
            }
            !c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc.to_be_bytes());
        // An empty first IDAT chunk (its CRC is that of the bytes "IDAT").
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        png.extend_from_slice(&0x35AF061Eu32.to_be_bytes());
        png
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", Vec::new(), "empty"),
        ("cut.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb".to_vec(), "decode"),
        ("huge.png", png_header_20000, "megapixels"),
        ("notes.txt", b"plain text is not an image".to_vec(), "not a supported file type"),
        (
            "nopages.pdf",
            b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF".to_vec(),
            "PDF",
        ),
    ];
    for (name, bytes, needle) in cases {
        let form = reqwest::multipart::Form::new().part("file", file_part(bytes.clone(), name));
        let got = multipart(&s, "/v1/vision/ocr", form).await;
        let d = assert_detail(&got, 422);
        assert!(d.contains(needle), "{name}: {d}");
        let got = s.runtime_post("/v1/ocr", json!({"images": [b64(&bytes)]})).await;
        assert_detail(&got, 422);
    }
    let got = s.runtime_post("/v1/ocr", json!({"images": ["not base64 !!!"]})).await;
    assert_eq!(assert_detail(&got, 422), "images[0] is not valid base64");
    assert_detail(&s.runtime_post("/v1/ocr", json!({})).await, 422);
    assert_detail(&s.runtime_post("/v1/ocr", json!({"images": [], "model": "gpt-4o"})).await, 422);
    let got = s.runtime_post("/v1/ocr", json!({"file_id": "file_000000000000000000000000"})).await;
    assert_detail(&got, 404);
    assert_detail(&multipart(&s, "/v1/vision/ocr", reqwest::multipart::Form::new().text("model", "surya")).await, 422);
    assert_detail(&split(s.http.get(format!("{}/v1/files/..%2F..%2Fetc", s.runtime_base)).send().await.unwrap()).await, 404);
    // Still serving.
    let (st, _) = s.get("/health").await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_a_dataset_are_ocrd_chunked_and_queryable() {
    let Some(path) = receipt() else { return };
    let s = TestServer::start_with_models().await;
    const P: &str = "/v1/projects/acme/scans";
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "scans"})).await.0, 200);
    let (st, d) = s.post(&format!("{P}/datasets"), json!({"name": "receipts", "database": "main_database"})).await;
    assert_eq!(st, 200, "{d}");
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/docs/pdf-edge-cases/pypdf-cmyk-image.pdf");
    let mut files = vec![("receipt.png", std::fs::read(&path).unwrap())];
    if photo.exists() {
        // An image-only PDF of a landscape photo: no text to find, the file fails alone.
        files.push(("photo.pdf", std::fs::read(&photo).unwrap()));
    }
    for (name, bytes) in files {
        let form = reqwest::multipart::Form::new().part("file", file_part(bytes, name));
        let (st, up) = split(s.http.post(s.url(&format!("{P}/datasets/receipts/data?auto_process=false"))).multipart(form).send().await.unwrap()).await;
        assert_eq!(st, 200, "{up}");
    }
    let (st, act) = s.post(&format!("{P}/datasets/receipts/actions"), json!({"action_type": "process"})).await;
    assert_eq!(st, 200, "{act}");
    let task = act["task_id"].as_str().unwrap().to_string();
    let t = loop {
        let (_, t) = s.get(&format!("{P}/tasks/{task}")).await;
        if matches!(t["state"].as_str(), Some("SUCCESS" | "FAILURE")) {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(t["result"]["processed_files"], 1, "{t}");
    if photo.exists() {
        assert_eq!(t["result"]["failed_files"], 1, "{t}");
        assert!(t.to_string().contains("OCR found no text"), "{t}");
    }
    let (st, r) = s.post(&format!("{P}/rag/query"), json!({"query": "receipt total subtotal", "top_k": 1})).await;
    assert_eq!(st, 200, "{r}");
    let hit = &r["results"][0];
    assert!(hit["content"].as_str().unwrap().contains("$39.59"), "{r}");
    assert_eq!((hit["metadata"]["page"].as_u64(), hit["metadata"]["ocr_engine"].as_str()), (Some(1), Some("PP-OCRv6_small")), "{hit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ner_without_a_model_is_a_clear_503_and_bad_requests_422() {
    let s = TestServer::start().await;
    let d = assert_detail(&s.runtime_post("/v1/ner", json!({"model": "dslim/bert-base-NER", "texts": ["John works at Google"]})).await, 503);
    assert!(d.contains("dslim/bert-base-NER") && d.contains("model cache"), "{d}");
    assert_detail(&s.runtime_post("/v1/ner", json!({"model": "dslim/bert-base-NER", "texts": []})).await, 422);
    assert_detail(&s.runtime_post("/v1/ner", json!({"model": "", "texts": ["x"]})).await, 422);
    assert_detail(&s.runtime_post("/v1/ner", json!({"texts": ["x"]})).await, 422);
}

/// `model: tesseract` runs Tesseract itself when the `ocr-tesseract` feature is built:
/// over the API's multipart form and the runtime's JSON, with boxes, and a language
/// whose data is not installed is a 422 naming the package to install.
#[cfg(feature = "ocr-tesseract")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tesseract_runs_when_built_in() {
    let s = TestServer::start().await;
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../llamafarm-core/tests/fixtures/scan-crop.png")).unwrap();
    let form = reqwest::multipart::Form::new().part("file", file_part(png.clone(), "strip.png")).text("model", "tesseract").text("return_boxes", "true");
    let (st, v) = multipart(&s, "/v1/vision/ocr", form).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["model"].as_str(), v["engine"].as_str()), (Some("tesseract"), Some("tesseract")));
    assert!(v["data"][0]["text"].as_str().unwrap().contains("Debit"), "{v}");
    assert!(v["data"][0]["boxes"].as_array().is_some_and(|b| !b.is_empty()), "{v}");
    let (st, v) = s.runtime_post("/v1/ocr", json!({"model": "tesseract", "images": [b64(&png)], "languages": ["en"]})).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"][0]["text"].as_str().unwrap().contains("4922"), "{v}");
    let got = s.runtime_post("/v1/ocr", json!({"model": "tesseract", "images": [b64(&png)], "languages": ["yi"]})).await;
    if got.0 != 200 {
        assert_detail(&got, 422);
        assert!(got.1["detail"].as_str().unwrap().contains("tesseract-ocr-yid"), "{}", got.1);
    }
}
