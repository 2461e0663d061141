//! Optional API keys on both ports and on `/mcp`: `Authorization: Bearer <key>`.
//!
//! With no key configured everything is open (the original's behaviour, on a loopback
//! bind). With keys, every request but `/health/liveness` and CORS preflights needs one:
//! a missing or unknown key is a 401, a key used beyond its limits a 403. Keys are
//! compared in constant time (`subtle`) and never logged.
//!
//! A key may be limited:
//! - to namespaces: it reaches `/v1/projects/{ns}/...` of those namespaces only, model
//!   inference on the runtime port, and reads (GET) elsewhere; it cannot change shared
//!   state (model downloads and deletes, example imports, project creation elsewhere) or
//!   use `/mcp` (whose tools reach every namespace);
//! - to reading: GET, plus the POSTs that only compute an answer (queries, chat,
//!   completions, embeddings, rerank, OCR, extraction, NER, predictions); no `/mcp`.

use crate::error::{ApiError, Code};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// One API key and its limits.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The secret.
    pub key: String,
    /// Namespaces it may reach (`None`: all).
    pub namespaces: Option<Vec<String>>,
    /// Reads and answer-only calls only.
    pub read_only: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("key", &"***").field("namespaces", &self.namespaces).field("read_only", &self.read_only).finish()
    }
}

impl ApiKey {
    /// Parse `KEY`, `KEY:ns1,ns2`, `KEY:ns1,ns2:ro` or `KEY::ro`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.trim().splitn(3, ':');
        let key = parts.next().unwrap_or("").to_string();
        if key.len() < 8 {
            return Err("an API key must have at least 8 characters".into());
        }
        let namespaces = match parts.next() {
            None | Some("") => None,
            Some(ns) => Some(ns.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect()),
        };
        let read_only = match parts.next() {
            None | Some("") => false,
            Some("ro") | Some("read-only") | Some("readonly") => true,
            Some(other) => return Err(format!("unknown key limit '{other}' (use ro)")),
        };
        Ok(Self { key, namespaces, read_only })
    }
}

/// The key set the middleware checks.
#[derive(Clone, Default)]
pub(crate) struct Keys(pub(crate) Arc<Vec<ApiKey>>);

fn find<'a>(keys: &'a [ApiKey], given: &str) -> Option<(usize, &'a ApiKey)> {
    // Compare with every key (no early exit), each in constant time.
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        if bool::from(k.key.as_bytes().ct_eq(given.as_bytes())) {
            found = Some((i, k));
        }
    }
    found
}

/// POSTs that compute an answer without changing stored state.
fn answer_only(path: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "/rag/query",
        "/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/ner",
        "/v1/ocr",
        "/v1/documents/extract",
        "/v1/vision/ocr",
        "/v1/vision/documents/extract",
        "/predict",
        "/score",
        "/detect",
        "/v1/classify",
        "/v1/models/validate-download",
    ];
    SUFFIXES.iter().any(|s| path.ends_with(s))
}

fn deny(code: Code, detail: String) -> Response {
    let mut r = ApiError::with_code(code, detail).into_response();
    if code == Code::Unauthorized {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Why `key` may not make this request, if it may not.
fn refuse(key: &ApiKey, method: &Method, path: &str, runtime: bool) -> Option<String> {
    let reading = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mcp = path == "/mcp" || path.starts_with("/mcp/");
    if mcp && (key.read_only || key.namespaces.is_some()) {
        return Some("this API key may not use /mcp (its tools reach every namespace and can change data)".into());
    }
    if path.starts_with("/v1/internal/") && (key.read_only || key.namespaces.is_some()) {
        return Some("this API key may not use the worker endpoints (/v1/internal/...): they read any dataset and write any index".into());
    }
    if path == "/metrics" && key.namespaces.is_some() {
        return Some("this API key is limited to namespaces: /metrics names the stores of every namespace".into());
    }
    if key.read_only && !reading && !answer_only(path) {
        return Some(format!("this API key is read-only: {method} {path} changes data"));
    }
    if let Some(allowed) = &key.namespaces {
        let project_ns = path.strip_prefix("/v1/projects/").and_then(|r| r.split('/').next()).filter(|n| !n.is_empty());
        match project_ns {
            Some(ns) => {
                let ns = llamafarm_core::paths::decode_segment(ns);
                if !allowed.contains(&ns) {
                    return Some(format!("this API key may not reach namespace '{ns}'"));
                }
            }
            None if reading || runtime || answer_only(path) => {}
            None => return Some(format!("this API key is limited to namespaces {}: {method} {path} is outside them", allowed.join(", "))),
        }
    }
    None
}

/// Middleware: check the bearer key of each request against `keys` (no keys: open).
pub(crate) async fn require_key(State((keys, runtime)): State<(Keys, bool)>, mut req: Request, next: Next) -> Response {
    let open = req.uri().path() == "/health/liveness" || (!runtime && crate::web::is_public(req.method(), req.uri().path(), req.headers()));
    if keys.0.is_empty() || req.method() == Method::OPTIONS || open {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim));
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return deny(Code::Unauthorized, "An API key is required: send `Authorization: Bearer <key>` (lf sends LF_API_KEY)".into());
    };
    let Some((index, key)) = find(&keys.0, given) else {
        return deny(Code::Unauthorized, "Invalid API key".into());
    };
    if let Some(why) = refuse(key, req.method(), req.uri().path(), runtime) {
        return deny(Code::Forbidden, why);
    }
    req.extensions_mut().insert(crate::limits::KeyIndex(index));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(ApiKey::parse("abcdefgh").unwrap(), ApiKey { key: "abcdefgh".into(), namespaces: None, read_only: false });
        let k = ApiKey::parse("abcdefgh:acme,beta:ro").unwrap();
        assert_eq!((k.namespaces.as_deref(), k.read_only), (Some(&["acme".to_string(), "beta".to_string()][..]), true));
        assert!(ApiKey::parse("abcdefgh::ro").unwrap().namespaces.is_none());
        assert!(ApiKey::parse("short").is_err());
        assert!(ApiKey::parse("abcdefgh:acme:write").is_err());
        assert!(!format!("{k:?}").contains("abcdefgh"), "keys are never printed");
    }

    #[test]
    fn limits() {
        let ro = ApiKey::parse("abcdefgh::ro").unwrap();
        assert!(refuse(&ro, &Method::GET, "/v1/projects/acme/p", false).is_none());
        assert!(refuse(&ro, &Method::POST, "/v1/projects/acme/p/rag/query", false).is_none());
        assert!(refuse(&ro, &Method::PUT, "/v1/projects/acme/p", false).is_some());
        assert!(refuse(&ro, &Method::POST, "/mcp", false).is_some());
        assert!(refuse(&ro, &Method::GET, "/metrics", false).is_none(), "a read-only key may read the metrics");
        assert!(refuse(&ro, &Method::GET, "/v1/internal/projects/a/b/datasets/d/files/h", false).is_some(), "workers need a full key");
        let ns = ApiKey::parse("abcdefgh:acme").unwrap();
        assert!(refuse(&ns, &Method::PUT, "/v1/projects/acme/p", false).is_none());
        assert!(refuse(&ns, &Method::GET, "/v1/projects/other/p", false).is_some());
        assert!(refuse(&ns, &Method::GET, "/v1/projects/%61cme/p", false).is_none(), "percent-encoded names are decoded");
        assert!(refuse(&ns, &Method::POST, "/v1/models/download", false).is_some());
        assert!(refuse(&ns, &Method::POST, "/v1/chat/completions", true).is_none());
        assert!(refuse(&ns, &Method::GET, "/v1/models", false).is_none());
        assert!(refuse(&ns, &Method::GET, "/metrics", true).is_some(), "the metrics name every namespace's stores");
        let keys = vec![ro.clone(), ns.clone()];
        assert!(find(&keys, "abcdefgh").is_some() && find(&keys, "abcdefgX").is_none() && find(&keys, "").is_none());
    }
}
