//! A small JSON client for the LlamaFarm API. Server errors surface as their `detail`.

use anyhow::{anyhow, Result};
use serde_json::Value;
use std::time::Duration;

pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// Percent-encode one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), http })
    }

    fn transport_error(&self, e: reqwest::Error, path: &str) -> anyhow::Error {
        if e.is_connect() {
            anyhow!("cannot reach the LlamaFarm server at {} (start it with `lf serve`)", self.base)
        } else {
            anyhow!("request to {}{path} failed: {e}", self.base)
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> Result<Value> {
        let resp = req.send().await.map_err(|e| self.transport_error(e, path))?;
        let status = resp.status();
        let text = resp.text().await?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !status.is_success() {
            let detail = match &body["detail"] {
                Value::String(s) => s.clone(),
                Value::Null => text,
                other => other.to_string(),
            };
            return Err(anyhow!("{detail} (HTTP {})", status.as_u16()));
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body), path).await
    }

    /// Multipart upload of one file as field `file` (streamed from disk).
    pub async fn upload(&self, path: &str, file: &std::path::Path, overrides: Option<&Value>) -> Result<Value> {
        let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "upload".into());
        let f = tokio::fs::File::open(file).await.map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        let part = reqwest::multipart::Part::stream_with_length(body, len).file_name(name);
        let mut form = reqwest::multipart::Form::new().part("file", part);
        if let Some(o) = overrides {
            form = form.text("parser_overrides", o.to_string());
        }
        self.send(self.http.post(format!("{}{path}", self.base)).multipart(form), path).await
    }

    /// Multipart upload of one file as field `file` with text fields beside it.
    pub async fn upload_form(&self, path: &str, file: &std::path::Path, fields: &[(&str, String)]) -> Result<Value> {
        let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "upload".into());
        let bytes = tokio::fs::read(file).await.map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let mut form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.clone());
        }
        self.send(self.http.post(format!("{}{path}", self.base)).multipart(form), path).await
    }

    /// Multipart upload of many files as repeated `files` fields, each streamed from
    /// disk (a file is opened when its part is built, so only this request's files are open).
    pub async fn upload_many(&self, path: &str, files: &[std::path::PathBuf]) -> Result<Value> {
        let mut form = reqwest::multipart::Form::new();
        for file in files {
            let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "upload".into());
            let f = tokio::fs::File::open(file).await.map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
            form = form.part("files", reqwest::multipart::Part::stream_with_length(body, len).file_name(name));
        }
        self.send(self.http.post(format!("{}{path}", self.base)).multipart(form), path).await
    }

    /// POST and return the raw response (for streams); non-2xx answers become their `detail`.
    pub async fn post_raw(&self, path: &str, body: &Value, headers: &[(&str, String)]) -> Result<reqwest::Response> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e, path))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let detail = body["detail"].as_str().map(str::to_string).unwrap_or(text);
            return Err(anyhow!("{detail} (HTTP {})", status.as_u16()));
        }
        Ok(resp)
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)), path).await
    }
}
