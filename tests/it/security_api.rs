//! API keys on both ports and on `/mcp`: 401 without or with a wrong key, 403 beyond a
//! key's namespaces or read-only limit, `/health/liveness` open.

use crate::support::{assert_detail, split, TestServer};
use llamafarm_http::{ApiKey, HttpOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_both_ports_and_mcp() {
    let keys = ["admin-key-123", "acme-only-456:acme", "reader-key-789::ro"].iter().map(|k| ApiKey::parse(k).unwrap()).collect();
    let s = TestServer::start_with(HttpOptions { api_keys: keys, ..Default::default() }).await;
    let call = |method: reqwest::Method, url: String, key: Option<&'static str>, body: Option<serde_json::Value>| {
        let mut r = s.http.request(method, url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move { split(r.send().await.unwrap()).await }
    };
    use reqwest::Method as M;
    let api = |p: &str| s.url(p);
    let rt = |p: &str| format!("{}{p}", s.runtime_base);

    // Open: liveness. Everything else needs a key, on both ports and /mcp.
    assert_eq!(call(M::GET, api("/health/liveness"), None, None).await.0, 200);
    let d = assert_detail(&call(M::GET, api("/v1/projects/acme"), None, None).await, 401);
    assert!(d.contains("Authorization: Bearer"), "{d}");
    assert_detail(&call(M::GET, api("/v1/projects/acme"), Some("admin-key-12X"), None).await, 401);
    assert_detail(&call(M::GET, rt("/v1/models"), None, None).await, 401);
    assert_detail(&call(M::POST, api("/mcp"), None, Some(json!({}))).await, 401);
    let r = s.http.get(api("/health")).send().await.unwrap();
    assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));

    // The admin key does everything; X-API-Key works too.
    assert_eq!(call(M::POST, api("/v1/projects/acme"), Some("admin-key-123"), Some(json!({"name": "kb"}))).await.0, 200);
    assert_eq!(call(M::POST, api("/v1/projects/beta"), Some("admin-key-123"), Some(json!({"name": "kb"}))).await.0, 200);
    let r = s.http.get(api("/v1/projects/acme")).header("x-api-key", "admin-key-123").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(call(M::GET, rt("/health"), Some("admin-key-123"), None).await.0, 200);

    // A namespace key: its namespace only; reads elsewhere; no shared-state changes, no /mcp.
    assert_eq!(call(M::GET, api("/v1/projects/acme/kb"), Some("acme-only-456"), None).await.0, 200);
    let d = assert_detail(&call(M::GET, api("/v1/projects/beta/kb"), Some("acme-only-456"), None).await, 403);
    assert!(d.contains("namespace 'beta'"), "{d}");
    assert_detail(&call(M::POST, api("/v1/models/download"), Some("acme-only-456"), Some(json!({"model_name": "a/b"}))).await, 403);
    assert_detail(&call(M::POST, api("/v1/examples/x/import-project"), Some("acme-only-456"), Some(json!({}))).await, 403);
    assert_detail(&call(M::POST, api("/mcp"), Some("acme-only-456"), Some(json!({}))).await, 403);
    assert_eq!(call(M::GET, api("/v1/models"), Some("acme-only-456"), None).await.0, 200);

    // A read-only key: reads and answer-only POSTs pass the key check; changes are 403.
    assert_eq!(call(M::GET, api("/v1/projects/beta/kb"), Some("reader-key-789"), None).await.0, 200);
    let q = call(M::POST, api("/v1/projects/acme/kb/rag/query"), Some("reader-key-789"), Some(json!({"query": "x"}))).await;
    assert_ne!(q.0, 403, "{q:?}");
    assert_ne!(q.0, 401, "{q:?}");
    let d = assert_detail(&call(M::DELETE, api("/v1/projects/acme/kb"), Some("reader-key-789"), None).await, 403);
    assert!(d.contains("read-only"), "{d}");
    assert_detail(&call(M::PUT, api("/v1/projects/acme/kb"), Some("reader-key-789"), Some(json!({"config": {}}))).await, 403);
    // The project is still there.
    assert_eq!(call(M::GET, api("/v1/projects/acme/kb"), Some("admin-key-123"), None).await.0, 200);
}
