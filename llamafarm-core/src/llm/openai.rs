//! Any OpenAI-compatible `/v1/chat/completions` endpoint, streamed (SSE), or a fleet of
//! them serving one model.
//!
//! A fleet ([`crate::fleet`]) spreads requests round-robin over its healthy servers. A
//! request that fails before its first token (no connection, a 5xx, 408 or 429, a stream
//! cut before any text) is retried on another server after a short backoff, and the failed
//! server is taken out until it answers a probe again. A failure after tokens reached the
//! client is not retried (the client has a part of an answer).

use super::think::ThinkSplitter;
use super::{CancelFlag, ChatMessage, ChatModel, FinishReason, Generation, GenerationParams, Sink, StreamEvent};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::{Duration, Instant};

/// Timeouts and retries of a remote model (`request_timeout`, `max_retries` on a
/// `runtime.models[]` entry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemotePolicy {
    /// Time for a response to start (default 600 s).
    pub timeout: Duration,
    /// Further attempts after a failure; `None`: one per other server, at least 1.
    pub max_retries: Option<u32>,
}

impl Default for RemotePolicy {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(600), max_retries: None }
    }
}

impl RemotePolicy {
    /// From a model's config, checked.
    pub fn from_config(m: &ModelConfig) -> Result<Self> {
        let timeout = match m.request_timeout {
            None => Self::default().timeout,
            Some(t) if t > 0.0 && t <= 86_400.0 => Duration::from_secs_f64(t),
            Some(t) => return Err(Error::invalid(format!("runtime.models '{}' request_timeout", m.name), format!("must be between 0 and 86400 seconds, got {t}"))),
        };
        if m.max_retries.is_some_and(|r| r > 100) {
            return Err(Error::invalid(format!("runtime.models '{}' max_retries", m.name), "must be at most 100"));
        }
        Ok(Self { timeout, max_retries: m.max_retries })
    }
}

/// A remote chat model: one OpenAI-compatible server, or a fleet.
pub struct OpenAiChatModel {
    servers: Fleet,
    model: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    policy: RemotePolicy,
}

/// How an attempt failed: may another server be tried?
enum Failed {
    Retry(Error),
    Final(Error),
}

impl OpenAiChatModel {
    /// `base_url` ends before `/chat/completions` (e.g. `http://localhost:11540/v1`).
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Self {
        Self::fleet(&[base_url.to_string()], model, api_key, RemotePolicy::default())
    }

    /// Servers of the same model (at least one URL; an empty list means OpenAI's).
    pub fn fleet(base_urls: &[String], model: &str, api_key: Option<String>, policy: RemotePolicy) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(policy.timeout.min(Duration::from_secs(10))))
            .timeout_recv_response(Some(policy.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let servers = Fleet::new(base_urls, "https://api.openai.com/v1", api_key.clone(), format!("chat model '{model}'"));
        Self { servers, model: model.to_string(), api_key, agent, policy }
    }

    fn body(&self, messages: &[ChatMessage], p: &GenerationParams) -> Value {
        let mut b = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": p.max_tokens,
        });
        let o = b.as_object_mut().expect("object");
        if let Some(t) = p.temperature {
            o.insert("temperature".into(), json!(t));
        }
        if let Some(t) = p.top_p {
            o.insert("top_p".into(), json!(t));
        }
        if let Some(k) = p.top_k {
            o.insert("top_k".into(), json!(k));
        }
        if !p.stop.is_empty() {
            o.insert("stop".into(), json!(p.stop));
        }
        if p.think {
            o.insert("think".into(), json!(true));
            o.insert("thinking_budget".into(), json!(p.thinking_budget));
        }
        // Tools go upstream as tools (the upstream's own calling), with the choice.
        if !p.tools.is_empty() {
            o.insert("tools".into(), json!(p.tools));
            if let Some(c) = &p.tool_choice {
                o.insert("tool_choice".into(), c.clone());
                // The upstream enforces the choice; no grammar of ours applies.
                return b;
            }
        }
        // A grammar goes upstream as structured output. Lark grammars have no OpenAI equivalent.
        match &p.grammar {
            Some(super::Grammar::JsonObject) => {
                o.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some(super::Grammar::JsonSchema(s)) => {
                o.insert("response_format".into(), json!({"type": "json_schema", "json_schema": {"name": "response", "schema": s}}));
            }
            Some(super::Grammar::Lark(_)) | None => {}
        }
        b
    }
}

impl ChatModel for OpenAiChatModel {
    fn id(&self) -> &str {
        &self.model
    }

    /// The upstream takes OpenAI's `tools` and tool messages itself.
    fn renders_tools(&self) -> bool {
        true
    }

    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<Error> = None;
        for attempt in 0..self.servers.attempts(self.policy.max_retries) {
            if cancel.is_cancelled() {
                break;
            }
            let Some(i) = self.servers.pick(&mut tried) else { break };
            std::thread::sleep(Fleet::backoff(attempt));
            let mut emitted = false;
            let mut counted = |ev: StreamEvent<'_>| {
                emitted = true;
                sink(ev)
            };
            match self.attempt(i, messages, params, cancel, &mut counted) {
                Ok(g) => {
                    self.servers.mark_up(i);
                    return Ok(g);
                }
                Err(Failed::Retry(e)) => {
                    self.servers.mark_down(i);
                    if emitted {
                        return Err(e);
                    }
                    tried.push(i);
                    last = Some(e);
                }
                Err(Failed::Final(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Cancelled))
    }
}

impl OpenAiChatModel {
    /// One request to server `i`.
    fn attempt(
        &self,
        i: usize,
        messages: &[ChatMessage],
        params: &GenerationParams,
        cancel: &CancelFlag,
        sink: Sink<'_>,
    ) -> std::result::Result<Generation, Failed> {
        let t0 = Instant::now();
        let url = format!("{}/chat/completions", self.servers.url(i));
        let mut req = self.agent.post(&url).header("Accept", "text/event-stream");
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let resp = req
            .send_json(self.body(messages, params))
            .map_err(|e| Failed::Retry(Error::unavailable(format!("chat endpoint {url}"), format!("unreachable: {e}"))))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.into_body().read_to_string().unwrap_or_default();
            let msg =
                serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"]["message"].as_str().or(v["detail"].as_str()).map(str::to_string)).unwrap_or(text);
            let e = Error::unavailable(format!("chat endpoint {url}"), format!("answered {status}: {msg}"));
            let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err(if retry { Failed::Retry(e) } else { Failed::Final(e) });
        }
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        let mut splitter = ThinkSplitter::new(false);
        let mut direct_thinking = String::new();
        let mut finish: Option<String> = None;
        let mut usage: Option<Value> = None;
        let mut ttft: Option<f64> = None;
        let mut chunks = 0usize;
        let mut gone = false;
        let mut calls: Vec<super::ToolCall> = Vec::new();
        for line in reader.lines() {
            if cancel.is_cancelled() || gone {
                break;
            }
            let line = line.map_err(|e| Failed::Retry(Error::unavailable(format!("chat endpoint {url}"), format!("stream broke: {e}"))))?;
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                break;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
            if let Some(msg) = v["error"]["message"].as_str() {
                return Err(Failed::Retry(Error::unavailable(format!("chat endpoint {url}"), msg)));
            }
            if v["usage"].is_object() {
                usage = Some(v["usage"].clone());
            }
            let Some(choice) = v["choices"].get(0) else { continue };
            let delta = &choice["delta"];
            let reasoning = delta["reasoning_content"].as_str().or(delta["reasoning"].as_str()).unwrap_or("");
            let content = delta["content"].as_str().unwrap_or("");
            if !reasoning.is_empty() || !content.is_empty() {
                chunks += 1;
                ttft.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1000.0);
            }
            if !reasoning.is_empty() {
                direct_thinking.push_str(reasoning);
                gone |= !sink(StreamEvent::Thinking(reasoning));
            }
            if !content.is_empty() {
                splitter.push(content, &mut |ev| gone |= !sink(ev));
            }
            // Streamed tool calls: the first delta of each names it, later ones add arguments.
            for c in delta["tool_calls"].as_array().into_iter().flatten() {
                let i = c["index"].as_u64().unwrap_or(calls.len() as u64) as usize;
                while calls.len() <= i {
                    calls.push(super::ToolCall::new("", &json!({})));
                    calls.last_mut().expect("pushed").function.arguments.clear();
                }
                if let Some(id) = c["id"].as_str() {
                    calls[i].id = id.to_string();
                }
                if let Some(n) = c["function"]["name"].as_str() {
                    calls[i].function.name.push_str(n);
                }
                if let Some(a) = c["function"]["arguments"].as_str() {
                    calls[i].function.arguments.push_str(a);
                }
            }
            if let Some(r) = choice["finish_reason"].as_str() {
                finish = Some(r.to_string());
            }
        }
        if gone {
            cancel.cancel();
        }
        splitter.finish(&mut |ev| {
            let _ = sink(ev);
        });
        let (content, mut thinking) = splitter.into_parts();
        if !direct_thinking.is_empty() {
            thinking = Some(direct_thinking.trim().to_string());
        }
        let u = |k: &str| usage.as_ref().and_then(|u| u[k].as_u64()).map(|x| x as usize);
        let approx_prompt = messages.iter().map(|m| m.content.len() / 4 + 4).sum();
        let completion_tokens = u("completion_tokens").unwrap_or(chunks);
        let reasoning_tokens = usage.as_ref().and_then(|u| u["completion_tokens_details"]["reasoning_tokens"].as_u64()).map(|x| x as usize).unwrap_or(0);
        Ok(Generation {
            content,
            thinking,
            prompt_tokens: u("prompt_tokens").unwrap_or(approx_prompt),
            cached_tokens: 0,
            completion_tokens,
            reasoning_tokens,
            finish_reason: if cancel.is_cancelled() {
                FinishReason::Cancelled
            } else if finish.as_deref() == Some("length") {
                FinishReason::Length
            } else {
                FinishReason::Stop
            },
            ttft_ms: ttft,
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
            tool_calls: calls.into_iter().filter(|c| !c.function.name.is_empty()).collect(),
            logprobs: None,
        })
    }
}
