//! The OpenAPI documents of both listeners: every operation answers success with a
//! typed body (a named schema), and every schema reference resolves.

use crate::support::TestServer;
use serde_json::Value;

/// Operations whose success has no body. Each entry is `(method, path)`.
/// (`/openapi.json` and `/docs` are served beside the document, not described in it.)
const NO_BODY: &[(&str, &str)] = &[];

/// Operations that also stream Server-Sent Events on success.
const STREAMING: &[(&str, &str)] = &[("post", "/v1/projects/{namespace}/{project}/chat/completions"), ("post", "/v1/chat/completions"), ("post", "/v1/completions")];

/// Operations whose success body is not JSON, with its content type.
const OTHER_BODY: &[(&str, &str, &str)] = &[
    ("post", "/v1/models/download", "text/event-stream"),
    ("get", "/v1/projects/{namespace}/{project}/rag/databases/{database}/export", "application/x-ndjson"),
    ("get", "/metrics", "text/plain"),
    ("get", "/v1/internal/projects/{namespace}/{project}/datasets/{dataset}/files/{hash}", "application/octet-stream"),
    ("get", "/v1/projects/{namespace}/{project}/llamafarm.yaml", "application/yaml"),
];

/// A typed body: a reference to a named schema, or an array of them.
fn is_named(schema: &Value) -> bool {
    schema.get("$ref").is_some() || (schema["type"] == "array" && schema["items"].get("$ref").is_some())
}

/// Every `$ref` under `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The problems of one document, as `METHOD path: what`.
fn problems(doc: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let schemas = &doc["components"]["schemas"];
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let at = format!("{} {path}", method.to_uppercase());
            let ok: Vec<(&String, &Value)> = op["responses"].as_object().unwrap().iter().filter(|(s, _)| s.starts_with('2')).collect();
            if ok.is_empty() {
                bad.push(format!("{at}: no 2xx response"));
            }
            if NO_BODY.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            for (status, resp) in ok {
                if status == "204" {
                    continue;
                }
                if let Some((.., ctype)) = OTHER_BODY.iter().find(|(m, p, _)| *m == method && *p == path) {
                    if resp["content"][*ctype]["schema"].as_object().is_none() {
                        bad.push(format!("{at}: {status} has no {ctype} schema"));
                    }
                    continue;
                }
                match resp["content"]["application/json"]["schema"].as_object() {
                    Some(_) if is_named(&resp["content"]["application/json"]["schema"]) => {}
                    Some(_) => bad.push(format!("{at}: {status} body is not a named schema: {}", resp["content"])),
                    None => bad.push(format!("{at}: {status} has no application/json schema")),
                }
                if STREAMING.contains(&(method.as_str(), path.as_str())) && !is_named(&resp["content"]["text/event-stream"]["schema"]) {
                    bad.push(format!("{at}: {status} has no text/event-stream schema"));
                }
            }
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        if schemas.get(name).is_none() {
            bad.push(format!("dangling reference {r}"));
        }
    }
    bad
}

#[tokio::test]
async fn every_operation_has_a_typed_success_body() {
    let s = TestServer::start().await;
    for base in [&s.base, &s.runtime_base] {
        let doc: Value = s.http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(doc["paths"].as_object().is_some_and(|p| p.len() > 5), "{base}: {doc}");
        let bad = problems(&doc);
        assert!(bad.is_empty(), "{base}/openapi.json:\n{}", bad.join("\n"));
    }
    // The library's own copy of the API document agrees.
    let lib = serde_json::to_value(llamafarm_http::api_openapi()).unwrap();
    assert!(problems(&lib).is_empty());
}

#[tokio::test]
async fn the_stream_chunk_is_a_documented_schema() {
    let s = TestServer::start().await;
    let doc: Value = s.http.get(format!("{}/openapi.json", s.runtime_base)).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let chunk = &schemas["ChatCompletionChunk"]["properties"];
    for field in ["id", "object", "created", "model", "choices", "usage"] {
        assert!(chunk.get(field).is_some(), "ChatCompletionChunk lacks {field}: {chunk}");
    }
    let stream = &doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"]["$ref"];
    assert_eq!(stream, "#/components/schemas/ChatStreamEvent");
}

#[test]
fn the_checker_sees_an_untyped_body() {
    let doc = serde_json::json!({
        "paths": {"/x": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}}},
                          "delete": {"responses": {"404": {}}}}},
        "components": {"schemas": {}}
    });
    let bad = problems(&doc);
    assert_eq!(bad.len(), 2, "{bad:?}");
}
