//! Chat models: the [`ChatModel`] trait, its backends, and the process-wide
//! [`LlmEngine`] that loads, shares and unloads them.
//!
//! Backends:
//! - [`MistralRsModel`] (feature `llm-mistralrs`, on by default): a local GGUF run
//!   in-process by mistral.rs. The chat template and tokenizer come from the GGUF.
//!   The prompt is rendered and tokenised by the engine, then sent as token ids, so
//!   a logits processor can enforce the thinking budget and `max_tokens` at the
//!   token level and count tokens exactly.
//! - `LlamaCppModel` (feature `llm-llamacpp`, off by default): the same GGUF run by
//!   llama.cpp itself, selected per model with `extra_body: {engine: llamacpp}` or for
//!   the whole process with `LF_LLM_ENGINE=llamacpp`. The prompt comes from the same
//!   Jinja template ([`template`]) and the same token policy applies, so both local
//!   engines answer alike; llama.cpp's ggml kernels decode faster on CPU.
//! - [`OpenAiChatModel`]: any OpenAI-compatible `/v1/chat/completions` endpoint
//!   (providers `openai`, `ollama`, `lemonade`; an inference fleet; our own Universal
//!   Runtime), streaming included.
//!
//! Thinking (`<think>...</think>`) is split out of the text by [`think::ThinkSplitter`]
//! for every backend, so callers get the answer and the reasoning separately.

mod control;
pub mod gate;
pub mod grammar;
#[cfg(feature = "llm-llamacpp")]
mod llamacpp;
#[cfg(feature = "llm-mistralrs")]
mod mistral;
pub mod native;
mod openai;
pub mod requant;
pub mod template;
pub mod think;
pub mod tools;

pub use gate::{GenerationLimits, ModelTotals};
pub use grammar::Grammar;
#[cfg(feature = "llm-llamacpp")]
pub use llamacpp::LlamaCppModel;
#[cfg(feature = "llm-mistralrs")]
pub use mistral::MistralRsModel;
pub use native::NativeModel;
pub use openai::{OpenAiChatModel, RemotePolicy};
pub use tools::{Tool, ToolCall, ToolChoice, ToolSet, ToolStep, ToolStrategy};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model_cache::ModelCache;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answer tokens when neither the request nor the model config says (the original's default).
pub const DEFAULT_MAX_TOKENS: usize = 512;
/// Thinking tokens when `think` is on and no budget is given (the original's default).
pub const DEFAULT_THINKING_BUDGET: usize = 1024;
/// Seconds a loaded local model may sit idle before it is unloaded (`LF_MODEL_UNLOAD_TIMEOUT`).
pub const DEFAULT_UNLOAD_TIMEOUT_S: u64 = 300;

/// One chat message (OpenAI shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text. `null` content (tool-call turns) reads as empty.
    #[serde(default, deserialize_with = "content_text")]
    pub content: String,
    /// The calls an `assistant` message made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name (on `tool` messages) or the speaker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None, name: None }
    }

    /// An assistant message that made `calls`.
    pub fn tool_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self { tool_calls: Some(calls), ..Self::new("assistant", content) }
    }

    /// The result of call `id` (of tool `name`).
    pub fn tool_result(id: impl Into<String>, name: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(id.into()), name: Some(name.into()), ..Self::new("tool", content) }
    }
}

/// Accept `"text"`, `null`, or the OpenAI content-part array (`[{"type": "text", "text": ...}]`).
fn content_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(|t| t.as_str()) {
                    Some("text") => out.push_str(p.get("text").and_then(|t| t.as_str()).unwrap_or("")),
                    other => {
                        return Err(serde::de::Error::custom(format!("unsupported content part type {:?}: only text parts are accepted", other.unwrap_or("<none>"))))
                    }
                }
            }
            Ok(out)
        }
        other => Err(serde::de::Error::custom(format!("content must be a string or a list of text parts, got {other}"))),
    }
}

/// The roles a chat message may have.
pub const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

/// Sampling and length settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// 0 = greedy. `None`: the backend's default (greedy for local models).
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<usize>,
    /// Answer tokens (thinking tokens are not counted).
    pub max_tokens: usize,
    /// Reasoning on (where the model's template supports it; see [`think`]).
    pub think: bool,
    /// Most thinking tokens before the block is closed by force.
    pub thinking_budget: usize,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Seed of sampled decoding: the same seed, prompt and parameters give the same
    /// text (`None`: a fresh seed per request).
    pub seed: Option<u64>,
    /// Reuse the keys and values of an earlier request that began the same way, and
    /// keep this one's for later (llama.cpp's `cache_prompt`; default on). Off, every
    /// token of the prompt is run.
    pub cache_prompt: bool,
    /// A grammar the answer must follow (constrained decoding; thinking is off then).
    pub grammar: Option<Grammar>,
    /// Tools for the model's chat template, OpenAI-shaped (see [`tools`]); engines
    /// whose template takes none ignore them.
    pub tools: Vec<serde_json::Value>,
    /// OpenAI's `tool_choice` for an upstream that calls tools itself (OpenAI-compatible
    /// endpoints); local engines enforce a forced choice through [`grammar`](Self::grammar).
    pub tool_choice: Option<serde_json::Value>,
    /// Return each generated token's log-probability with this many of the most likely
    /// alternatives (0 to [`MAX_TOP_LOGPROBS`]); `None`: none. Engines that compute them say
    /// so in [`ChatModel::serves_logprobs`].
    pub logprobs: Option<usize>,
}

/// Most alternatives a token's log-probability may come with (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability: the natural log of its probability under the
/// model's distribution at that step (the logits' softmax, before temperature; a
/// grammar's excluded tokens have none), with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// The token's text (its bytes, lossily decoded).
    pub token: String,
    /// The token's bytes (a character may span tokens).
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens at that step, most likely first.
    pub top: Vec<TopLogprob>,
}

/// One of the most likely tokens at a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// The token's bytes.
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            temperature: None,
            top_p: None,
            top_k: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            think: false,
            thinking_budget: DEFAULT_THINKING_BUDGET,
            stop: Vec::new(),
            seed: None,
            cache_prompt: true,
            grammar: None,
            tools: Vec::new(),
            tool_choice: None,
            logprobs: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of sequence or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller went away (client disconnect).
    Cancelled,
    /// The model called tools (the calls are in [`Generation::tool_calls`]).
    ToolCalls,
}

impl FinishReason {
    /// The OpenAI string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// A piece of streamed output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StreamEvent<'a> {
    /// Reasoning text (inside `<think>`).
    Thinking(&'a str),
    /// Answer text.
    Content(&'a str),
    /// A tool call, whole (when it is known to be one).
    ToolCall(&'a ToolCall),
    /// A tool call the server ran for the model (project chat with MCP tools), with its result.
    ToolResult(&'a ToolStep),
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// The answer, without the thinking block.
    pub content: String,
    /// The reasoning, when there was a thinking block.
    pub thinking: Option<String>,
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens whose keys and values came from an earlier request with the same
    /// beginning (prefix reuse) instead of being run again.
    pub cached_tokens: usize,
    /// Tokens generated (thinking included).
    pub completion_tokens: usize,
    /// Of those, tokens of the thinking block.
    pub reasoning_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Milliseconds to the first generated token.
    pub ttft_ms: Option<f64>,
    /// Milliseconds for the whole generation.
    pub duration_ms: f64,
    /// The tools the model called (then `finish_reason` is [`FinishReason::ToolCalls`]).
    pub tool_calls: Vec<ToolCall>,
    /// Each generated token's log-probability, with
    /// [`GenerationParams::logprobs`] (thinking tokens included).
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A flag the caller sets to stop a generation early (checked every token).
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A fresh, unset flag.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the generation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Callback for streamed output; return `false` to stop generating (client gone).
pub type Sink<'a> = &'a mut dyn FnMut(StreamEvent<'_>) -> bool;

/// A chat model. Implementations are shared by all requests and thread-safe;
/// concurrent calls are batched or queued by the backend, never interleaved.
pub trait ChatModel: Send + Sync {
    /// The model id (`org/repo:QUANT`, or the remote model name).
    fn id(&self) -> &str;
    /// Generate a reply to `messages`, streaming pieces to `sink` as they arrive.
    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation>;
    /// Whether [`generate`](Self::generate) returns [`Generation::logprobs`] when
    /// [`GenerationParams::logprobs`] asks for them.
    fn serves_logprobs(&self) -> bool {
        false
    }

    /// Continue `prompt` as it is, with no chat template (OpenAI's legacy completions,
    /// for base models): the model's BOS is added where its vocabulary asks for it.
    fn continue_text(&self, prompt: &str, params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let _ = (prompt, params, cancel, sink);
        Err(Error::unavailable(format!("model '{}'", self.id()), "its engine does not continue raw prompts (text completions run on the native engine)"))
    }

    /// Whether the model's chat template takes `tools` and tool messages itself
    /// (the `native_api` strategy); otherwise they are written into the prompt.
    fn renders_tools(&self) -> bool {
        false
    }
}

/// Generate with tools offered (see [`tools`]): the tools go to the template or the
/// system prompt, a forced call is grammar-constrained, and the reply is read back as
/// calls. Without active tools this is [`ChatModel::generate`] (with the conversation's
/// earlier calls written as text where the template takes none).
pub fn generate_with_tools(
    model: &dyn ChatModel,
    messages: &[ChatMessage],
    params: &GenerationParams,
    set: &ToolSet,
    cancel: &CancelFlag,
    sink: Sink<'_>,
) -> Result<Generation> {
    let has_tool_turns = messages.iter().any(|m| m.role == "tool" || m.tool_calls.is_some());
    let native = model.renders_tools() && set.strategy == ToolStrategy::NativeApi;
    if !set.active() {
        let plain;
        let msgs = if has_tool_turns && !model.renders_tools() {
            plain = tools::as_plain_messages(messages);
            &plain[..]
        } else {
            messages
        };
        return model.generate(msgs, params, cancel, sink);
    }
    // A forced function needs only its own definition in the prompt.
    let narrowed;
    let set = match &set.choice {
        ToolChoice::Function(n) => {
            narrowed = ToolSet { tools: set.tools.iter().filter(|t| &t.name == n).cloned().collect(), ..set.clone() };
            &narrowed
        }
        _ => set,
    };
    let mut p = params.clone();
    let msgs = if native {
        p.tools = set.tools.iter().map(Tool::openai).collect();
        p.tool_choice = match &set.choice {
            ToolChoice::Auto => None,
            c => serde_json::to_value(c).ok(),
        };
        messages.to_vec()
    } else {
        let mut m = tools::as_plain_messages(messages);
        let text = set.instructions();
        match m.first_mut() {
            Some(first) if first.role == "system" => first.content = format!("{}\n\n{text}", first.content),
            _ => m.insert(0, ChatMessage::new("system", text)),
        }
        m
    };
    let forced = set.forced_grammar();
    if let Some(g) = &forced {
        p.grammar = Some(g.clone());
        p.think = false;
    }
    let mut stream = tools::ToolStream::new(&set.tools, forced.is_some());
    let mut pass = |ev: StreamEvent<'_>| match ev {
        StreamEvent::Content(t) => stream.push(t, sink),
        other => sink(other),
    };
    let mut g = model.generate(&msgs, &p, cancel, &mut pass)?;
    // Calls the model's endpoint returned as calls (an OpenAI-compatible upstream).
    let native_calls = std::mem::take(&mut g.tool_calls);
    let (content, mut calls) = stream.finish(sink);
    if calls.is_empty() && !native_calls.is_empty() {
        for c in &native_calls {
            sink(StreamEvent::ToolCall(c));
        }
        calls = native_calls;
    }
    g.content = content;
    if !calls.is_empty() {
        g.tool_calls = if set.parallel { calls } else { calls.into_iter().take(1).collect() };
        if g.finish_reason != FinishReason::Cancelled {
            g.finish_reason = FinishReason::ToolCalls;
        }
    }
    Ok(g)
}

/// The in-process engine that runs a local GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalEngine {
    /// The default: [`Native`](Self::Native) for the GGUFs it runs (see
    /// [`NativeModel::supports`]), mistral.rs for the rest.
    Auto,
    /// Our own engine ([`native`]): llama-architecture GGUFs with a byte-level BPE vocabulary.
    Native,
    /// mistral.rs (feature `llm-mistralrs`, on by default): every architecture it knows.
    MistralRs,
    /// llama.cpp (feature `llm-llamacpp`).
    LlamaCpp,
}

impl LocalEngine {
    /// Parse `auto` / `native` / `mistralrs` / `mistral.rs` / `llamacpp` / `llama.cpp`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace(['.', '-', '_'], "").as_str() {
            "auto" | "default" => Ok(Self::Auto),
            "native" | "llamafarm" | "lf" => Ok(Self::Native),
            "mistralrs" | "mistral" => Ok(Self::MistralRs),
            "llamacpp" | "llama" => Ok(Self::LlamaCpp),
            other => Err(Error::invalid("engine", format!("'{other}' is not a local LLM engine: use auto, native, mistralrs or llamacpp"))),
        }
    }

    /// The name used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::MistralRs => "mistralrs",
            Self::LlamaCpp => "llamacpp",
        }
    }

    /// The engine that runs `gguf`: `Auto` resolved (native where it can, else
    /// mistral.rs, else llama.cpp, whichever this build has).
    pub fn resolve(self, gguf: &std::path::Path) -> Self {
        match self {
            Self::Auto if NativeModel::supports(gguf) => Self::Native,
            Self::Auto if cfg!(feature = "llm-mistralrs") => Self::MistralRs,
            Self::Auto if cfg!(feature = "llm-llamacpp") => Self::LlamaCpp,
            Self::Auto => Self::Native,
            e => e,
        }
    }
}

/// How a local GGUF is run: the engine and the original's llama.cpp settings from
/// the model's `extra_body` (`n_ctx`, `n_batch`, `n_threads`, `use_mmap`, `use_mlock`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalOptions {
    /// Which engine runs it (`extra_body.engine`, else [`LlmSettings::engine`]).
    pub engine: LocalEngine,
    /// Context window (default: the model's training context).
    pub n_ctx: Option<u32>,
    /// Prompt-processing batch (default 512).
    pub n_batch: Option<u32>,
    /// CPU threads (default: all cores).
    pub n_threads: Option<i32>,
    /// Memory-map the file (default true).
    pub use_mmap: Option<bool>,
    /// Lock the weights in RAM (default false).
    pub use_mlock: Option<bool>,
    /// Re-quantise slow weight types on load (`extra_body.requantize: q8_0`; see [`requant`]).
    pub requantize: Option<String>,
}

impl LocalOptions {
    /// Defaults with `engine`.
    pub fn with_engine(engine: LocalEngine) -> Self {
        Self { engine, n_ctx: None, n_batch: None, n_threads: None, use_mmap: None, use_mlock: None, requantize: None }
    }

    /// Read `extra_body` over the defaults with `engine` (wrong types are a clear
    /// error; unknown keys pass through).
    pub fn from_extra_body(extra: Option<&crate::config::ConfigMap>, engine: LocalEngine) -> Result<Self> {
        let mut o = Self::with_engine(engine);
        let Some(x) = extra else { return Ok(o) };
        let num = |k: &str| -> Result<Option<u64>> {
            match x.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n >= 1 && *n <= u32::MAX as u64)
                    .map(Some)
                    .ok_or_else(|| Error::invalid(format!("extra_body.{k}"), format!("must be a positive integer, got {v}"))),
            }
        };
        let flag = |k: &str| -> Result<Option<bool>> {
            match x.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_bool().map(Some).ok_or_else(|| Error::invalid(format!("extra_body.{k}"), format!("must be true or false, got {v}"))),
            }
        };
        if let Some(v) = x.get("engine") {
            let s = v.as_str().ok_or_else(|| Error::invalid("extra_body.engine", format!("must be a string, got {v}")))?;
            o.engine = LocalEngine::parse(s)?;
        }
        o.n_ctx = num("n_ctx")?.map(|n| n as u32);
        o.n_batch = num("n_batch")?.map(|n| n as u32);
        o.n_threads = num("n_threads")?.map(|n| n.min(1024) as i32);
        o.use_mmap = flag("use_mmap")?;
        o.use_mlock = flag("use_mlock")?;
        if let Some(v) = x.get("requantize").filter(|v| !v.is_null()) {
            let s = v.as_str().ok_or_else(|| Error::invalid("extra_body.requantize", format!("must be a string, got {v}")))?;
            requant::parse_target(s)?;
            o.requantize = Some(s.trim().to_ascii_lowercase());
        }
        Ok(o)
    }
}

/// Where a configured model runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatModelSpec {
    /// A GGUF in the model cache, run in-process.
    LocalGguf {
        /// Model id as configured.
        id: String,
        /// Engine and settings.
        options: LocalOptions,
    },
    /// An OpenAI-compatible endpoint, or a fleet of them serving the same model.
    Http {
        /// Base URLs ending before `/chat/completions` (e.g. `http://localhost:11434/v1`);
        /// more than one: a fleet of servers of the same model.
        base_urls: Vec<String>,
        /// Model name sent upstream.
        model: String,
        /// Bearer token.
        api_key: Option<String>,
        /// Timeouts and retries.
        policy: RemotePolicy,
    },
}

impl ChatModelSpec {
    /// Map a `runtime.models[]` entry (`${VAR}`s already substituted); `settings`
    /// give the engine and API key where the entry names none.
    pub fn from_config(m: &ModelConfig, settings: &LlmSettings) -> Result<Self> {
        let urls = |default: &str, map: &dyn Fn(String) -> String| -> Vec<String> {
            let mut v: Vec<String> = m.base_url.iter().chain(m.base_urls.iter().flatten()).map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
            let mut seen = std::collections::HashSet::new();
            v.retain(|u| seen.insert(u.clone()));
            if v.is_empty() {
                v.push(default.to_string());
            }
            v.into_iter().map(map).collect()
        };
        let policy = RemotePolicy::from_config(m)?;
        let keep = |u: String| u;
        match m.provider.as_str() {
            // The Universal Runtime is us: run the model in this process.
            "universal" => Ok(ChatModelSpec::LocalGguf { id: m.model.clone(), options: LocalOptions::from_extra_body(m.extra_body.as_ref(), settings.engine)? }),
            "openai" => Ok(ChatModelSpec::Http {
                base_urls: urls("https://api.openai.com/v1", &keep),
                model: m.model.clone(),
                api_key: m.api_key.clone().or_else(|| settings.openai_api_key.clone()),
                policy,
            }),
            "ollama" => Ok(ChatModelSpec::Http {
                base_urls: urls("http://localhost:11434", &|u| crate::embed::openai_base(&u)),
                model: m.model.clone(),
                api_key: m.api_key.clone(),
                policy,
            }),
            "lemonade" => {
                Ok(ChatModelSpec::Http { base_urls: urls("http://localhost:8000/api/v1", &keep), model: m.model.clone(), api_key: m.api_key.clone(), policy })
            }
            other => Err(Error::invalid("provider", format!("'{other}' of model '{}' is unknown", m.name))),
        }
    }

    /// A local GGUF with the default engine of `settings`.
    pub fn local(id: &str, settings: &LlmSettings) -> Self {
        ChatModelSpec::LocalGguf { id: id.to_string(), options: LocalOptions::with_engine(settings.engine) }
    }

    fn key(&self) -> String {
        match self {
            ChatModelSpec::LocalGguf { id, options } => format!("local:{id}|{options:?}"),
            ChatModelSpec::Http { base_urls, model, policy, .. } => format!("http:{}|{model}|{policy:?}", base_urls.join(",")),
        }
    }
}

struct Loaded {
    model: Arc<dyn ChatModel>,
    /// The admission gate of a local model (the same object as `model`).
    gate: Option<Arc<gate::Gated>>,
    last_used: Instant,
    keep_loaded: bool,
    local: bool,
    /// Size of the weights file of a local model.
    weights_bytes: Option<u64>,
}

/// A model currently in memory.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModel {
    /// Model id.
    pub id: String,
    /// `local` (in-process) or `http`.
    pub kind: &'static str,
    /// Seconds since it was last used.
    pub idle_s: u64,
    /// Exempt from idle unloading.
    pub keep_loaded: bool,
    /// Generations running now (local models).
    pub running: usize,
    /// Generations waiting for a slot (local models).
    pub queued: usize,
    /// Size of the weights file of a local model (its weights are held in memory);
    /// `None` for a model behind an HTTP server.
    pub weights_bytes: Option<u64>,
}

/// The chat settings of a library instance (set on [`crate::LlamaFarmBuilder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmSettings {
    /// The engine of local GGUFs whose `extra_body` names none (default [`LocalEngine::Auto`]).
    pub engine: LocalEngine,
    /// Idle time after which a local model is unloaded (default [`DEFAULT_UNLOAD_TIMEOUT_S`]).
    pub unload_after: Duration,
    /// The key for `provider: openai` models that set no `api_key`.
    pub openai_api_key: Option<String>,
    /// Route llama.cpp's own log to `tracing` (default off; the first load decides for the process).
    pub llamacpp_log: bool,
    /// The directory under whose `requantized/` re-quantised copies of GGUF files are
    /// written (`LlamaFarm` sets its data directory; default: the system's temporary
    /// directory). The model cache itself is never written.
    pub work_dir: std::path::PathBuf,
    /// Bounds on the concurrent and queued generations of each local model.
    pub limits: GenerationLimits,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            engine: LocalEngine::Auto,
            unload_after: Duration::from_secs(DEFAULT_UNLOAD_TIMEOUT_S),
            openai_api_key: None,
            llamacpp_log: false,
            work_dir: std::env::temp_dir(),
            limits: GenerationLimits::default(),
        }
    }
}

/// A model as the runtime lists it: in memory, or only in the model cache.
#[derive(Debug, Clone)]
pub struct ListedModel {
    /// Model id.
    pub id: String,
    /// Its state when it is in memory.
    pub loaded: Option<LoadedModel>,
}

/// Loads chat models on first use, shares them, unloads idle local ones.
pub struct LlmEngine {
    loaded: Mutex<HashMap<String, Loaded>>,
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    reaper: std::sync::Once,
    settings: LlmSettings,
    /// Counts of local models since the process started: (loads, unloads, the totals
    /// of models unloaded since, by id).
    history: Mutex<(u64, u64, HashMap<String, ModelTotals>)>,
}

/// What the local chat models have done since the process started ([`LlmEngine::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmStats {
    /// Local model loads.
    pub loads: u64,
    /// Local model unloads (idle, or by a delete).
    pub unloads: u64,
    /// Per model id (loaded now or earlier), sorted by id.
    pub models: Vec<(String, ModelTotals)>,
}

impl Default for LlmEngine {
    fn default() -> Self {
        Self::new(LlmSettings::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LlmEngine {
    /// An engine with `settings`.
    pub fn new(settings: LlmSettings) -> Self {
        Self { loaded: Mutex::new(HashMap::new()), loading: Mutex::new(HashMap::new()), reaper: std::sync::Once::new(), settings, history: Mutex::default() }
    }

    /// Its settings.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// The model for `spec`, loading it on first use (one load even under concurrent first calls).
    pub fn get(self: &Arc<Self>, spec: &ChatModelSpec, keep_loaded: bool, models: &ModelCache) -> Result<Arc<dyn ChatModel>> {
        let key = spec.key();
        if let Some(m) = self.touch(&key, keep_loaded) {
            return Ok(m);
        }
        let gate = lock(&self.loading).entry(key.clone()).or_default().clone();
        let _g = lock(&gate);
        if let Some(m) = self.touch(&key, keep_loaded) {
            return Ok(m);
        }
        let (model, gate, weights_bytes): (Arc<dyn ChatModel>, Option<Arc<gate::Gated>>, Option<u64>) = match spec {
            ChatModelSpec::LocalGguf { id, options } => {
                let (m, bytes) = load_local(id, options, models, &self.settings)?;
                let g = Arc::new(gate::Gated::new(m, self.settings.limits));
                (g.clone(), Some(g), Some(bytes))
            }
            ChatModelSpec::Http { base_urls, model, api_key, policy } => (Arc::new(OpenAiChatModel::fleet(base_urls, model, api_key.clone(), *policy)), None, None),
        };
        let local = gate.is_some();
        lock(&self.loaded).insert(key, Loaded { model: model.clone(), gate, last_used: Instant::now(), keep_loaded, local, weights_bytes });
        if local {
            lock(&self.history).0 += 1;
            self.start_reaper();
        }
        Ok(model)
    }

    fn touch(&self, key: &str, keep_loaded: bool) -> Option<Arc<dyn ChatModel>> {
        let mut map = lock(&self.loaded);
        let e = map.get_mut(key)?;
        e.last_used = Instant::now();
        e.keep_loaded |= keep_loaded;
        Some(e.model.clone())
    }

    /// Every model: those in memory first (by id), then the others of the model cache.
    pub fn list_models(&self, cache: &ModelCache) -> Vec<ListedModel> {
        let loaded = self.loaded();
        let cached: Vec<ListedModel> =
            cache.list().into_iter().filter(|m| !loaded.iter().any(|l| l.id == m.id)).map(|m| ListedModel { id: m.id, loaded: None }).collect();
        loaded.into_iter().map(|l| ListedModel { id: l.id.clone(), loaded: Some(l) }).chain(cached).collect()
    }

    /// Models in memory.
    pub fn loaded(&self) -> Vec<LoadedModel> {
        let map = lock(&self.loaded);
        let mut v: Vec<LoadedModel> = map
            .values()
            .map(|l| {
                let (running, queued) = l.gate.as_ref().map_or((0, 0), |g| g.load());
                LoadedModel {
                    id: l.model.id().to_string(),
                    kind: if l.local { "local" } else { "http" },
                    idle_s: l.last_used.elapsed().as_secs(),
                    keep_loaded: l.keep_loaded,
                    running,
                    queued,
                    weights_bytes: l.weights_bytes,
                }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Unload the chat models whose id names `repo` (`org/name`, any quantisation);
    /// returns their ids.
    pub fn unload_repo(&self, repo: &str) -> Vec<String> {
        let mut map = lock(&self.loaded);
        let mut gone = Vec::new();
        let mut retired = Vec::new();
        map.retain(|_, l| {
            let hit = l.local && crate::model_cache::ModelRef::parse(l.model.id()).is_ok_and(|r| r.repo == repo);
            if hit {
                gone.push(l.model.id().to_string());
                retired.extend(l.gate.clone());
            }
            !hit
        });
        drop(map);
        self.retire(&retired);
        gone.sort();
        gone
    }

    /// Keep the counts of unloaded models.
    fn retire(&self, gates: &[Arc<gate::Gated>]) {
        let mut h = lock(&self.history);
        for g in gates {
            h.1 += 1;
            h.2.entry(g.id().to_string()).or_default().add(&g.totals());
        }
    }

    /// What the local chat models have done since the process started.
    pub fn stats(&self) -> LlmStats {
        let live: Vec<(String, ModelTotals)> = lock(&self.loaded).values().filter_map(|l| l.gate.as_ref().map(|g| (g.id().to_string(), g.totals()))).collect();
        let h = lock(&self.history);
        let mut models = h.2.clone();
        for (id, t) in live {
            models.entry(id).or_default().add(&t);
        }
        let mut models: Vec<(String, ModelTotals)> = models.into_iter().collect();
        models.sort_by(|a, b| a.0.cmp(&b.0));
        LlmStats { loads: h.0, unloads: h.1, models }
    }

    /// Unload local models idle for longer than `max_idle` (and not in use, not `keep_loaded`).
    /// Returns how many were unloaded.
    pub fn unload_idle(&self, max_idle: Duration) -> usize {
        let mut map = lock(&self.loaded);
        let before = map.len();
        // In use: someone holds the model besides this map (whose gate is a second handle).
        let in_use = |l: &Loaded| Arc::strong_count(&l.model) > 1 + usize::from(l.gate.is_some());
        let mut retired = Vec::new();
        map.retain(|_, l| {
            let keep = !l.local || l.keep_loaded || l.last_used.elapsed() < max_idle || in_use(l);
            if !keep {
                retired.extend(l.gate.clone());
            }
            keep
        });
        let n = before - map.len();
        drop(map);
        self.retire(&retired);
        n
    }

    fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            let weak = Arc::downgrade(self);
            let every = (self.settings.unload_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
            let spawned = std::thread::Builder::new().name("lf-model-reaper".into()).spawn(move || loop {
                std::thread::sleep(every);
                let Some(engine) = weak.upgrade() else { return };
                let n = engine.unload_idle(engine.settings.unload_after);
                if n > 0 {
                    tracing::info!(unloaded = n, "unloaded idle chat models");
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start the idle-model reaper: idle chat models stay loaded until restart");
            }
        });
    }
}

/// Load a local GGUF model; returns it and the size of the weights file it read.
fn load_local(id: &str, options: &LocalOptions, models: &ModelCache, settings: &LlmSettings) -> Result<(Arc<dyn ChatModel>, u64)> {
    let llamacpp_log = settings.llamacpp_log;
    #[cfg(not(feature = "llm-llamacpp"))]
    let _ = llamacpp_log;
    let resolved = models.resolve(id)?;
    let gguf = resolved.gguf.ok_or_else(|| Error::ModelMissing {
        model: id.into(),
        reason: "its snapshot has no GGUF file".into(),
        fetch_hint: crate::model_cache::FETCH_COMMAND.into(),
    })?;
    let gguf = match &options.requantize {
        Some(t) => requant::requantized(&gguf, requant::parse_target(t)?, &settings.work_dir.join("requantized"))?,
        None => gguf,
    };
    let bytes = std::fs::metadata(&gguf).map(|m| m.len()).unwrap_or(0);
    let model: Arc<dyn ChatModel> = match options.engine.resolve(&gguf) {
        LocalEngine::Native => Arc::new(NativeModel::load(id, &gguf, options)?),
        #[cfg(feature = "llm-mistralrs")]
        LocalEngine::MistralRs => Arc::new(MistralRsModel::load(id, &gguf)?),
        #[cfg(feature = "llm-llamacpp")]
        LocalEngine::LlamaCpp => Arc::new(LlamaCppModel::load(id, &gguf, options, llamacpp_log)?),
        #[allow(unreachable_patterns)]
        engine => {
            return Err(Error::unavailable(
                format!("model '{id}'"),
                format!(
                    "this build has no {} engine (build llamafarm-core with the `llm-{}` feature), \
             or configure an OpenAI-compatible provider",
                    engine.as_str(),
                    engine.as_str()
                ),
            ))
        }
    };
    Ok((model, bytes))
}

/// Most messages one chat request may carry (far past any context window here).
pub const MAX_MESSAGES: usize = 4096;

/// Check a generation request's settings (the 422s of the API).
pub fn validate_params(temperature: Option<f64>, top_p: Option<f64>, max_tokens: Option<i64>, thinking_budget: Option<i64>) -> Result<()> {
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) || t.is_nan() {
            return Err(Error::invalid("temperature", format!("must be between 0 and 2, got {t}")));
        }
    }
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(Error::invalid("top_p", format!("must be in (0, 1], got {p}")));
        }
    }
    if let Some(m) = max_tokens {
        if m < 1 {
            return Err(Error::invalid("max_tokens", format!("must be at least 1, got {m}")));
        }
        if m > 1_000_000 {
            return Err(Error::invalid("max_tokens", format!("must be at most 1000000, got {m}")));
        }
    }
    if let Some(b) = thinking_budget {
        if !(1..=1_000_000).contains(&b) {
            return Err(Error::invalid("thinking_budget", format!("must be between 1 and 1000000, got {b}")));
        }
    }
    Ok(())
}

/// Check messages: at least one, known roles.
pub fn validate_messages(messages: &[ChatMessage]) -> Result<()> {
    if messages.is_empty() {
        return Err(Error::invalid("messages", "must contain at least one message"));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(Error::invalid("messages", format!("may hold at most {MAX_MESSAGES} messages, got {}", messages.len())));
    }
    for (i, m) in messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(Error::invalid(format!("messages[{i}].role"), format!("must be one of {}, got '{}'", ROLES.join(", "), m.role)));
        }
    }
    tools::validate_messages(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_accepts_strings_null_and_text_parts() {
        let m: ChatMessage = serde_json::from_str(r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#).unwrap();
        assert_eq!(m.content, "ab");
        let m: ChatMessage = serde_json::from_str(r#"{"role":"assistant","content":null}"#).unwrap();
        assert_eq!(m.content, "");
        assert!(serde_json::from_str::<ChatMessage>(r#"{"role":"user","content":[{"type":"image_url"}]}"#).is_err());
        assert!(serde_json::from_str::<ChatMessage>(r#"{"role":"user","content":5}"#).is_err());
    }

    #[test]
    fn validation_rejects_bad_settings() {
        assert!(validate_params(Some(2.5), None, None, None).is_err());
        assert!(validate_params(Some(-0.1), None, None, None).is_err());
        assert!(validate_params(Some(0.0), Some(1.0), Some(1), Some(1)).is_ok());
        assert!(validate_params(None, None, Some(0), None).is_err());
        assert!(validate_params(None, Some(0.0), None, None).is_err());
        assert!(validate_params(None, None, None, Some(0)).is_err());
        assert!(validate_messages(&[]).is_err());
        assert!(validate_messages(&[ChatMessage::new("wizard", "x")]).is_err());
        assert!(validate_messages(&[ChatMessage::new("user", "x")]).is_ok());
    }

    #[test]
    fn specs_from_config() {
        let m = ModelConfig { name: "m".into(), provider: "ollama".into(), model: "llama3".into(), ..Default::default() };
        assert_eq!(
            ChatModelSpec::from_config(&m, &LlmSettings::default()).unwrap(),
            ChatModelSpec::Http { base_urls: vec!["http://localhost:11434/v1".into()], model: "llama3".into(), api_key: None, policy: Default::default() }
        );
        let m = ModelConfig {
            name: "m".into(),
            provider: "openai".into(),
            model: "x".into(),
            base_url: Some("http://a:1/v1".into()),
            base_urls: Some(vec!["http://b:2/v1".into(), "http://a:1/v1".into()]),
            request_timeout: Some(30.0),
            max_retries: Some(5),
            ..Default::default()
        };
        let ChatModelSpec::Http { base_urls, policy, .. } = ChatModelSpec::from_config(&m, &LlmSettings::default()).unwrap() else { panic!("not http") };
        assert_eq!(base_urls, vec!["http://a:1/v1", "http://b:2/v1"], "base_url first, duplicates once");
        assert_eq!((policy.timeout, policy.max_retries), (Duration::from_secs(30), Some(5)));
        let bad = ModelConfig { request_timeout: Some(0.0), ..m };
        assert!(ChatModelSpec::from_config(&bad, &LlmSettings::default()).is_err());
        let m = ModelConfig { name: "m".into(), provider: "universal".into(), model: "a/b:Q4_1".into(), ..Default::default() };
        let ChatModelSpec::LocalGguf { id, options } = ChatModelSpec::from_config(&m, &LlmSettings::default()).unwrap() else { panic!("not local") };
        assert_eq!(id, "a/b:Q4_1");
        assert_eq!(options.n_ctx, None);
        let extra: crate::config::ConfigMap =
            serde_json::from_str(r#"{"engine": "llama.cpp", "n_ctx": 2048, "n_threads": 2, "use_mmap": false, "cache_type_k": "q8_0"}"#).unwrap();
        let o = LocalOptions::from_extra_body(Some(&extra), LocalEngine::Auto).unwrap();
        assert_eq!((o.engine, o.n_ctx, o.n_threads, o.use_mmap), (LocalEngine::LlamaCpp, Some(2048), Some(2), Some(false)));
        for (name, e) in [("native", LocalEngine::Native), ("auto", LocalEngine::Auto), ("mistral.rs", LocalEngine::MistralRs)] {
            assert_eq!(LocalEngine::parse(name).unwrap(), e);
        }
        let extra: crate::config::ConfigMap = serde_json::from_str(r#"{"requantize": "Q8_0"}"#).unwrap();
        assert_eq!(LocalOptions::from_extra_body(Some(&extra), LocalEngine::Auto).unwrap().requantize.as_deref(), Some("q8_0"));
        for bad in [r#"{"requantize": "q2_k"}"#, r#"{"engine": "vllm"}"#, r#"{"n_ctx": -1}"#, r#"{"n_batch": "big"}"#, r#"{"use_mlock": 1}"#] {
            let extra: crate::config::ConfigMap = serde_json::from_str(bad).unwrap();
            assert!(LocalOptions::from_extra_body(Some(&extra), LocalEngine::Auto).is_err(), "{bad}");
        }
    }
}
