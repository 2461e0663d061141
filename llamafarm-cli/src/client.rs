//! A small JSON client for the LlamaFarm API. Server errors surface as their `detail`.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::time::Duration;

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    show: Show,
}

/// What to do with requests that change something (every method but GET).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Show {
    /// Send them.
    #[default]
    Send,
    /// Print each as a curl command and send nothing.
    Curl,
    /// Print what would be sent and send nothing.
    DryRun,
}

/// The error that ends a command after `--curl` / `--dry-run` printed its request.
#[derive(Debug)]
pub struct NotSent;

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request not sent (--curl / --dry-run)")
    }
}

impl std::error::Error for NotSent {}

/// `resp` if it is a 2xx; else its `detail` (or its body) as the error.
async fn success(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let detail = body["detail"].as_str().map(str::to_string).unwrap_or(text);
    Err(anyhow!("{detail} (HTTP {})", status.as_u16()))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub use llamafarm_core::paths::encode_segment;

impl Client {
    /// A client that sends `api_key` as `Authorization: Bearer` on every request.
    pub fn with_key(base: &str, api_key: Option<&str>) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(k) = api_key.filter(|k| !k.is_empty()) {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| anyhow!("LF_API_KEY holds characters a header cannot carry"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).default_headers(headers).build()?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), http, show: Show::Send })
    }

    /// With `--curl` / `--dry-run` behaviour.
    pub fn showing(mut self, show: Show) -> Self {
        self.show = show;
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Under `--curl` / `--dry-run`, print the request and stop with [`NotSent`].
    fn intercept(&self, method: &str, path: &str, body: Option<&Value>, files: &[&std::path::Path]) -> Result<()> {
        let url = format!("{}{path}", self.base);
        match self.show {
            Show::Send => Ok(()),
            Show::Curl => {
                let mut cmd = format!("curl -X {method} {}", shell_quote(&url));
                if let Some(b) = body {
                    cmd.push_str(&format!(" -H 'Content-Type: application/json' -d {}", shell_quote(&b.to_string())));
                }
                for f in files {
                    cmd.push_str(&format!(" -F {}", shell_quote(&format!("file=@{}", f.display()))));
                }
                println!("{cmd}");
                Err(NotSent.into())
            }
            Show::DryRun => {
                println!("[dry-run] {method} {url}");
                if let Some(b) = body {
                    println!("{}", serde_json::to_string_pretty(b).unwrap_or_default());
                }
                for f in files {
                    println!("  file: {}", f.display());
                }
                Err(NotSent.into())
            }
        }
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
        self.intercept("POST", path, Some(body), &[])?;
        self.send(self.http.post(format!("{}{path}", self.base)).json(body), path).await
    }

    /// Multipart upload of one file as field `file` (streamed from disk).
    pub async fn upload(&self, path: &str, file: &std::path::Path, overrides: Option<&Value>) -> Result<Value> {
        self.intercept("POST", path, None, &[file])?;
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
        self.intercept("POST", path, None, &[file])?;
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
        self.intercept("POST", path, None, &files.iter().map(|f| f.as_path()).collect::<Vec<_>>())?;
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
        self.intercept("POST", path, Some(body), &[])?;
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e, path))?;
        success(resp).await
    }

    /// GET a body and stream it into the file `out`, through a temporary file beside it
    /// that is synced and renamed over `out` once the whole body has arrived (a cut
    /// transfer leaves `out` as it was). Returns the bytes and the lines written.
    pub async fn download_to(&self, path: &str, out: &std::path::Path) -> Result<(u64, u64)> {
        use tokio::io::AsyncWriteExt;
        let mut resp = success(self.http.get(format!("{}{path}", self.base)).send().await.map_err(|e| self.transport_error(e, path))?).await?;
        let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "download".into());
        let tmp = out.with_file_name(format!(".{name}.part"));
        let written = async {
            let mut f = tokio::fs::File::create(&tmp).await.with_context(|| format!("creating {}", tmp.display()))?;
            let (mut bytes, mut lines) = (0u64, 0u64);
            while let Some(piece) = resp.chunk().await.map_err(|e| anyhow!("the transfer from {}{path} was cut off: {e}", self.base))? {
                f.write_all(&piece).await.with_context(|| format!("writing {}", tmp.display()))?;
                bytes += piece.len() as u64;
                lines += piece.iter().filter(|&&b| b == b'\n').count() as u64;
            }
            f.sync_all().await?;
            tokio::fs::rename(&tmp, out).await.with_context(|| format!("renaming to {}", out.display()))?;
            Ok::<_, anyhow::Error>((bytes, lines))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written
    }

    /// POST a file's bytes, streamed from disk, with its content type.
    pub async fn post_file(&self, path: &str, file: &std::path::Path, content_type: &str) -> Result<Value> {
        self.intercept("POST", path, None, &[file])?;
        let f = tokio::fs::File::open(file).await.map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 << 10));
        self.send(self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).header("content-length", len).body(body), path).await
    }

    /// PUT a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.intercept("PUT", path, Some(body), &[])?;
        self.send(self.http.put(format!("{}{path}", self.base)).json(body), path).await
    }

    /// GET that answers `None` for a 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.to_string().ends_with("(HTTP 404)") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the server answers its liveness probe.
    pub async fn alive(&self) -> bool {
        self.http.get(format!("{}/health/liveness", self.base)).timeout(Duration::from_secs(3)).send().await.is_ok_and(|r| r.status().is_success())
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.intercept("DELETE", path, None, &[])?;
        self.send(self.http.delete(format!("{}{path}", self.base)), path).await
    }
}
