//! Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint, or a fleet of them
//! ([`crate::fleet`]): a request that fails for want of a server (no connection, a 5xx,
//! 408 or 429, an unreadable answer) is retried on another after a short backoff, and
//! the failed server is taken out until it answers a probe again.

use super::Embedder;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A client of `POST {base_url}/embeddings` (OpenAI, Ollama, vLLM, our own runtime) on
/// one server or several.
pub struct HttpEmbedder {
    servers: Fleet,
    /// Further attempts after a failure (`None`: one per other server, at least 1).
    max_retries: Option<u32>,
    model: String,
    api_key: Option<String>,
    batch_size: usize,
    /// 0 until known (declared by config or learned from the first response).
    dim: AtomicUsize,
    agent: ureq::Agent,
}

impl HttpEmbedder {
    /// A client; `dimension` is checked against every response when given.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>, dimension: Option<usize>, batch_size: usize, timeout_s: u64) -> Self {
        Self::fleet(&[base_url.to_string()], model, api_key, dimension, batch_size, timeout_s, None)
    }

    /// Servers of the same model; `max_retries` further attempts after a failure
    /// (default: one per other server, at least 1).
    pub fn fleet(
        base_urls: &[String],
        model: &str,
        api_key: Option<String>,
        dimension: Option<usize>,
        batch_size: usize,
        timeout_s: u64,
        max_retries: Option<u32>,
    ) -> Self {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(timeout_s.max(1)))).http_status_as_error(false).build().into();
        Self {
            servers: Fleet::new(base_urls, "https://api.openai.com/v1", api_key.clone(), format!("embedding model '{model}'")),
            max_retries,
            model: model.to_string(),
            api_key,
            batch_size: batch_size.max(1),
            dim: AtomicUsize::new(dimension.unwrap_or(0)),
            agent,
        }
    }

    /// Ask the endpoint for one vector to learn the dimension (when the config gave none).
    pub fn probe_dimension(&self) -> Result<usize> {
        if self.dim.load(Ordering::Relaxed) == 0 {
            self.embed(&["dimension probe"])?;
        }
        Ok(self.dim.load(Ordering::Relaxed))
    }

    /// One batch, on the servers in turn until one answers.
    fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<Error> = None;
        for attempt in 0..self.servers.attempts(self.max_retries) {
            let Some(i) = self.servers.pick(&mut tried) else { break };
            std::thread::sleep(Fleet::backoff(attempt));
            match self.attempt(i, texts) {
                Ok(v) => {
                    self.servers.mark_up(i);
                    return Ok(v);
                }
                Err((e, true)) => {
                    self.servers.mark_down(i);
                    tried.push(i);
                    last = Some(e);
                }
                Err((e, false)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable(format!("embedding model '{}'", self.model), "has no server")))
    }

    /// One request to server `i`; an error says whether another server may be tried.
    fn attempt(&self, i: usize, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, (Error, bool)> {
        let url = format!("{}/embeddings", self.servers.url(i));
        let retry = |e: Error| (e, true);
        let fail = |e: Error| (e, false);
        let mut req = self.agent.post(&url);
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req
            .send_json(json!({"model": self.model, "input": texts, "encoding_format": "float"}))
            .map_err(|e| retry(Error::unavailable(format!("embedding endpoint {url}"), format!("unreachable: {e}"))))?;
        let status = resp.status();
        let body: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| retry(Error::unavailable(format!("embedding endpoint {url}"), format!("sent an unreadable answer ({status}): {e}"))))?;
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().or(body["detail"].as_str()).map(str::to_string).unwrap_or_else(|| body.to_string());
            let e = Error::unavailable(format!("embedding endpoint {url}"), format!("answered {status}: {msg}"));
            let again = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err((e, again));
        }
        let mut data: Vec<(usize, Vec<f32>)> = body["data"]
            .as_array()
            .ok_or_else(|| fail(Error::unavailable(format!("embedding endpoint {url}"), "no `data` array in the answer")))?
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let idx = d["index"].as_u64().map(|x| x as usize).unwrap_or(i);
                let v = d["embedding"].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect()).unwrap_or_default();
                (idx, v)
            })
            .collect();
        data.sort_by_key(|(i, _)| *i);
        if data.len() != texts.len() {
            return Err(fail(Error::unavailable(format!("embedding endpoint {url}"), format!("returned {} vectors for {} inputs", data.len(), texts.len()))));
        }
        let vecs: Vec<Vec<f32>> = data.into_iter().map(|(_, v)| v).collect();
        for v in &vecs {
            let want = self.dim.load(Ordering::Relaxed);
            if want == 0 {
                self.dim.store(v.len(), Ordering::Relaxed);
            } else if v.len() != want {
                return Err(fail(Error::invalid(
                    "embedding dimension",
                    format!("mismatch: model '{}' returned {} dimensions, expected {want}", self.model, v.len()),
                )));
            }
        }
        Ok(vecs)
    }
}

impl Embedder for HttpEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dim.load(Ordering::Relaxed)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            out.extend(self.request(chunk)?);
        }
        Ok(out)
    }
}
