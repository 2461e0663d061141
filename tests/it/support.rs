//! Test helpers: an in-process server on an ephemeral port, and the `lf` binary.

use llamafarm_core::{LlamaFarm, ModelCache};
use llamafarm_http::HttpOptions;
use std::net::SocketAddr;

/// A running API server (and runtime) on 127.0.0.1 with a fresh data directory.
pub struct TestServer {
    pub base: String,
    pub runtime_base: String,
    pub lf: LlamaFarm,
    pub _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(HttpOptions::default()).await
    }

    pub async fn start_with(opts: HttpOptions) -> Self {
        Self::start_full(opts, false).await
    }

    /// With the real model cache (`scripts/fetch-models.sh` fills it).
    pub async fn start_with_models() -> Self {
        Self::start_full(HttpOptions::default(), true).await
    }

    /// With the real model cache and `opts`.
    pub async fn start_with_models_and(opts: HttpOptions) -> Self {
        Self::start_full(opts, true).await
    }

    /// With an empty model cache that downloads from the hub at `endpoint`.
    pub async fn start_with_hub(endpoint: &str) -> Self {
        Self::start_inner(HttpOptions::default(), false, Some(endpoint)).await
    }

    async fn start_full(opts: HttpOptions, real_models: bool) -> Self {
        Self::start_inner(opts, real_models, None).await
    }

    /// With example projects from `dirs`.
    pub async fn start_with_examples(dirs: Vec<std::path::PathBuf>) -> Self {
        Self::start_inner_with(HttpOptions::default(), false, None, dirs).await
    }

    async fn start_inner(opts: HttpOptions, real_models: bool, hub: Option<&str>) -> Self {
        Self::start_inner_with(opts, real_models, hub, Vec::new()).await
    }

    /// Real models, the hub at `hub`, examples from `examples`.
    pub async fn start_custom(real_models: bool, hub: Option<&str>, examples: Vec<std::path::PathBuf>) -> Self {
        Self::start_inner_with(HttpOptions::default(), real_models, hub, examples).await
    }

    /// Real models, `opts`, and `limits` on the generations of each model.
    pub async fn start_limited(opts: HttpOptions, limits: llamafarm_core::llm::GenerationLimits) -> Self {
        Self::start_built(opts, true, None, Vec::new(), |b| b.generation_limits(limits)).await
    }

    async fn start_inner_with(opts: HttpOptions, real_models: bool, hub: Option<&str>, examples: Vec<std::path::PathBuf>) -> Self {
        Self::start_built(opts, real_models, hub, examples, |b| b).await
    }

    async fn start_built(
        opts: HttpOptions,
        real_models: bool,
        hub: Option<&str>,
        examples: Vec<std::path::PathBuf>,
        configure: impl FnOnce(llamafarm_core::LlamaFarmBuilder) -> llamafarm_core::LlamaFarmBuilder,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // By default an empty model cache, so "model missing" paths are exercised.
        let cache = if real_models { ModelCache::from_vars(|k| std::env::var_os(k)) } else { ModelCache::new(dir.path().join("hub")) };
        let mut b = LlamaFarm::builder(dir.path().join("data")).model_cache(cache).examples_dirs(examples);
        if let Some(h) = hub {
            b = b.hub(llamafarm_core::model_cache::Hub::new(h, None));
        }
        let lf = configure(b).open().unwrap();
        let api = spawn(llamafarm_http::api_router(lf.clone(), &opts)).await;
        let rt = spawn(llamafarm_http::runtime_router(lf.clone(), &opts)).await;
        Self { base: format!("http://{api}"), runtime_base: format!("http://{rt}"), lf, _dir: dir, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET returning (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        split(r).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        split(self.http.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        split(self.http.put(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        split(self.http.patch(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn runtime_post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        split(self.http.post(format!("{}{path}", self.runtime_base)).json(&body).send().await.unwrap()).await
    }

    /// POST answered with SSE: the status and each `data:` payload as JSON.
    pub async fn post_sse(&self, path: &str, body: serde_json::Value) -> (u16, Vec<serde_json::Value>) {
        sse_events(self.http.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    /// [`post_sse`](Self::post_sse) on the runtime listener.
    pub async fn runtime_sse(&self, path: &str, body: serde_json::Value) -> (u16, Vec<serde_json::Value>) {
        sse_events(self.http.post(format!("{}{path}", self.runtime_base)).json(&body).send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        split(self.http.delete(self.url(path)).send().await.unwrap()).await
    }
}

/// The status of an SSE answer and each `data:` payload as JSON.
async fn sse_events(r: reqwest::Response) -> (u16, Vec<serde_json::Value>) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let events = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim())
        .filter(|d| *d != "[DONE]" && !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| serde_json::json!({ "raw": d })))
        .collect();
    (status, events)
}

async fn spawn(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // With connection info, as `lf serve` (the rate limit keys on the peer address).
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

/// Status and JSON body; a non-JSON body fails the test (every answer must be JSON).
pub async fn split(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}, content-type {ctype}: body is not JSON: {text}"));
    (status, v)
}

/// Assert an error response: the status and a `{"detail": "<string>"}` body.
pub fn assert_detail(got: &(u16, serde_json::Value), status: u16) -> String {
    assert_eq!(got.0, status, "body: {}", got.1);
    let detail = got.1["detail"].as_str().unwrap_or_else(|| panic!("no string detail in {}", got.1));
    assert!(!detail.is_empty());
    let code = got.1["code"].as_str().unwrap_or_else(|| panic!("no string code in {}", got.1));
    assert!(!code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}", got.1);
    let extra = usize::from(got.1.get("request_id").is_some());
    assert_eq!(got.1.as_object().unwrap().len(), 2 + extra, "only `detail`, `code` (and `request_id`) expected: {}", got.1);
    detail.to_string()
}
