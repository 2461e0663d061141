//! `lf mcp`: LlamaFarm's operations as MCP tools over stdin and stdout, for desktop MCP
//! clients. The tools come from the API's OpenAPI document (the same set `lf serve`
//! offers at `/mcp`); each call is sent to the running server over HTTP.

use anyhow::{anyhow, Result};
use axum::http::Request;
use futures::future::BoxFuture;
use llamafarm_http::mcp::Dispatch;
use std::sync::Arc;

/// Sends each tool call to the server at `base`.
struct Remote {
    base: String,
    http: reqwest::Client,
}

impl Dispatch for Remote {
    fn send(&self, req: Request<Vec<u8>>) -> BoxFuture<'static, std::result::Result<(u16, Vec<u8>), String>> {
        let url = format!("{}{}", self.base, req.uri());
        let mut b = self.http.request(req.method().clone(), &url);
        for (k, v) in req.headers() {
            if k != "host" {
                b = b.header(k.as_str(), v.as_bytes());
            }
        }
        let b = b.body(req.into_body());
        let base = self.base.clone();
        Box::pin(async move {
            let resp = b.send().await.map_err(|e| format!("cannot reach the LlamaFarm server at {base} (start it with `lf serve`): {e}"))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok((status, body.to_vec()))
        })
    }
}

/// Serve MCP on stdio until the client closes it.
pub(crate) async fn mcp(server_url: &str, api_key: Option<&str>) -> Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = api_key {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| anyhow!("LF_API_KEY holds characters a header cannot carry"))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let http = reqwest::Client::builder().default_headers(headers).build()?;
    let dispatch = Arc::new(Remote { base: server_url.trim_end_matches('/').to_string(), http });
    llamafarm_http::mcp::serve_stdio(&llamafarm_http::api_openapi(), dispatch).await.map_err(|e| anyhow!(e))
}
