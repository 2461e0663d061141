//! Project chat: OpenAI-style completions over a project's models, with its
//! prompts, retrieval from its databases (RAG), sessions and thinking.
//!
//! `project.chat().complete(&request, session, &cancel, sink)` runs one turn:
//! 1. picks the model (`request.model` among `runtime.models`, else the default);
//! 2. builds the system prompt from the config's prompt sets (a system message in the
//!    request replaces them), with `{{var}}` / `{{var | default}}` from `variables`;
//! 3. retrieves chunks for the last user message (or `rag_queries`, run concurrently,
//!    merged, deduplicated, cut to `rag_top_k`) and appends them in the original's format;
//! 4. prepends the session history, generates (streaming to `sink`), persists the turn,
//!    and records an `inference` event with a `rag_retrieval` sub-event.
//!
//! ```no_run
//! # fn main() -> llamafarm_core::Result<()> {
//! use llamafarm_core::{chat::ChatRequest, llm::{CancelFlag, ChatMessage}, LlamaFarm};
//! let lf = LlamaFarm::open("/tmp/lf")?;
//! let project = lf.projects().create("acme", "bot", None)?;
//! let req = ChatRequest { messages: vec![ChatMessage::new("user", "Hi!")], ..Default::default() };
//! let out = project.chat().complete(&req, Some("s1"), &CancelFlag::new(), &mut |_| true)?;
//! println!("{} ({} tokens)", out.generation.content, out.generation.completion_tokens);
//! # Ok(()) }
//! ```

mod session;

pub use session::{SessionCache, SessionSummary};

use crate::config::{LlamaFarmConfig, McpServerConfig, ModelConfig};
use crate::error::{Error, ResourceKind, Result};
use crate::llm::{
    self, CancelFlag, ChatMessage, ChatModelSpec, FinishReason, Generation, GenerationParams, Grammar, Sink, Tool, ToolChoice, ToolSet, ToolStep, ToolStrategy,
};
use crate::rag::{RagQuery, RagResult};
use crate::Project;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Instant;

/// Default number of chunks retrieved for chat.
pub const DEFAULT_RAG_TOP_K: usize = 5;
/// Most model turns of one chat turn that call MCP tools (then the model answers
/// without tools).
pub const MAX_TOOL_STEPS: usize = 5;
/// Default and largest `sources_limit`.
pub const DEFAULT_SOURCES_LIMIT: usize = 10;
const MAX_SOURCES_LIMIT: usize = 50;

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A chat completion request: the OpenAI fields plus LlamaFarm's extensions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation (at least one message).
    pub messages: Vec<ChatMessage>,
    /// A `runtime.models[].name` (or its model id); default: the project's default model.
    #[serde(default)]
    pub model: Option<String>,
    /// Stream Server-Sent Events (handled by the HTTP layer).
    #[serde(default)]
    pub stream: Option<bool>,
    /// 0..=2 (0 = greedy).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Answer tokens, at least 1 (default 512; thinking tokens are separate).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Nucleus sampling, (0, 1].
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Retrieval on/off (default: on when the project has a database).
    #[serde(default)]
    pub rag_enabled: Option<bool>,
    /// Database for retrieval (default: the model's `target_database`, then the project's default).
    #[serde(default)]
    pub database: Option<String>,
    /// Retrieval strategy name of the database.
    #[serde(default)]
    pub rag_retrieval_strategy: Option<String>,
    /// Chunks to retrieve (default 5).
    #[serde(default)]
    pub rag_top_k: Option<i64>,
    /// Minimum score of a chunk, 0..=1.
    #[serde(default)]
    pub rag_score_threshold: Option<f64>,
    /// Queries to retrieve with instead of the last user message (run concurrently).
    #[serde(default)]
    pub rag_queries: Option<Vec<String>>,
    /// Reasoning mode.
    #[serde(default)]
    pub think: Option<bool>,
    /// Most thinking tokens (default 1024).
    #[serde(default)]
    pub thinking_budget: Option<i64>,
    /// Values for `{{var}}` placeholders in the config's prompts.
    #[serde(default)]
    pub variables: Option<Map<String, Value>>,
    /// Return the retrieved chunks (`sources`).
    #[serde(default)]
    pub include_sources: Option<bool>,
    /// How many sources to return (default 10, at most 50).
    #[serde(default)]
    pub sources_limit: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Option<StopSequences>,
    /// Seed of sampled decoding (the same seed gives the same text on a local model).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Tools the model may call (added to the model's config `tools` and MCP tools).
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// `auto` (default), `none`, `required` or a named function.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Several calls in one reply (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// The shape of the answer (constrained decoding).
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// Return each generated token's log-probability (on engines that serve them, see
    /// [`ChatModel::serves_logprobs`](crate::llm::ChatModel::serves_logprobs)).
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs`: the most likely alternatives per token, 0 to
    /// [`MAX_TOP_LOGPROBS`](llm::MAX_TOP_LOGPROBS).
    #[serde(default)]
    pub top_logprobs: Option<i64>,
}

/// `response_format`: what the answer must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// The JSON schema (default: any JSON value).
    #[serde(default)]
    pub schema: Option<Value>,
    /// OpenAI's strict mode; the answer always follows the schema here, strict or not.
    #[serde(default)]
    pub strict: Option<bool>,
    /// What the answer is for.
    #[serde(default)]
    pub description: Option<String>,
}

impl ResponseFormat {
    /// The grammar the answer must follow (`None` for text).
    pub fn grammar(&self) -> Option<Grammar> {
        match self {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(Grammar::JsonObject),
            ResponseFormat::JsonSchema { json_schema } => Some(match &json_schema.schema {
                Some(s) => Grammar::JsonSchema(s.clone()),
                None => Grammar::JsonSchema(json!({})),
            }),
        }
    }
}

/// A text completion (OpenAI's legacy completions, for base models): each prompt is
/// continued as it is, with no chat template, on a local model of the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextCompletionRequest {
    /// A model id in the model cache (`org/repo:QUANT`).
    pub model: String,
    /// The prompts, each continued on its own (one choice each).
    pub prompts: Vec<String>,
    /// Tokens to generate per prompt, at least 1 (default 16, as OpenAI's).
    pub max_tokens: Option<i64>,
    /// 0..=2 (0 = greedy, the default).
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1].
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<i64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Seed of sampled decoding.
    pub seed: Option<u64>,
    /// Put each prompt before its continuation.
    pub echo: bool,
    /// Return each generated token's log-probability with this many alternatives
    /// (OpenAI's legacy `logprobs`), 0 to [`MAX_TOP_LOGPROBS`](llm::MAX_TOP_LOGPROBS).
    pub logprobs: Option<i64>,
}

/// One continued prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextChoice {
    /// The continuation (after the prompt when `echo`).
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Each generated token's log-probability, with [`TextCompletionRequest::logprobs`].
    pub logprobs: Option<Vec<llm::TokenLogprob>>,
}

/// The outcome of a [`TextCompletionRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextCompletion {
    /// `cmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The model id.
    pub model: String,
    /// One per prompt, in order.
    pub choices: Vec<TextChoice>,
}

/// The outcome of one turn.
#[derive(Debug, Clone, Serialize)]
pub struct ChatOutcome {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The model id that answered.
    pub model: String,
    /// Text, thinking, token counts, timing.
    pub generation: Generation,
    /// The session the turn was stored in (`None` when stateless).
    pub session_id: Option<String>,
    /// Retrieved chunks (empty without RAG), best first, cut to `sources_limit`.
    pub sources: Vec<RagResult>,
    /// The `inference` event id.
    pub event_id: Option<String>,
    /// The MCP tool calls the server ran for the model during the turn, in order.
    pub tool_steps: Vec<ToolStep>,
}

/// Everything decided before generation starts (the HTTP layer uses it to send
/// headers and the sources event before the first token).
pub struct PreparedTurn {
    project: Project,
    model_cfg: ModelConfig,
    model: std::sync::Arc<dyn llm::ChatModel>,
    messages: Vec<ChatMessage>,
    new_messages: Vec<ChatMessage>,
    params: GenerationParams,
    tools: ToolSet,
    /// The MCP tools among `tools`, with their servers' configs.
    mcp: Vec<(crate::mcp::McpTool, McpServerConfig)>,
    session: Option<session::SessionHandle>,
    /// The retrieved chunks, best first.
    pub sources: Vec<RagResult>,
    sources_limit: usize,
    rag_event: Option<Value>,
    /// The turn's id (`chatcmpl-...`).
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    started: Instant,
}

impl PreparedTurn {
    /// The model id that will answer.
    pub fn model_id(&self) -> &str {
        &self.model_cfg.model
    }
    /// The session id, when stateful.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id())
    }
    /// The sources to show (cut to `sources_limit`).
    pub fn visible_sources(&self) -> &[RagResult] {
        &self.sources[..self.sources.len().min(self.sources_limit)]
    }
    /// The full prompt as sent to the model (system prompt with context, history, new messages).
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }
}

/// Chat operations of a project: `project.chat()`.
pub struct Chat {
    project: Project,
}

impl Project {
    /// Chat completions and sessions.
    pub fn chat(&self) -> Chat {
        Chat { project: self.clone() }
    }
}

/// Replace `{{var}}` and `{{var | default}}`; unknown variables without a default stay as written.
pub fn substitute_variables(text: &str, vars: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start + 2..].find("}}") else { break };
        let inner = &rest[start + 2..start + 2 + end];
        out.push_str(&rest[..start]);
        let (name, default) = match inner.split_once('|') {
            Some((n, d)) => (n.trim(), Some(d.trim().trim_matches(|c| c == '"' || c == '\''))),
            None => (inner.trim(), None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.');
        match (valid, vars.get(name), default) {
            (true, Some(Value::String(s)), _) => out.push_str(s),
            (true, Some(v), _) if !v.is_null() => out.push_str(&v.to_string()),
            (true, _, Some(d)) => out.push_str(d),
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &rest[start + 2 + end + 2..];
    }
    out.push_str(rest);
    out
}

fn num(cfg: &Option<Map<String, Value>>, key: &str) -> Option<f64> {
    cfg.as_ref().and_then(|m| m.get(key)).and_then(|v| v.as_f64())
}

/// The original's context block, appended to the system prompt.
pub fn render_context(chunks: &[RagResult]) -> String {
    let mut s = String::from(
        "# EXTRA INFORMATION AND CONTEXT\n## Project Chat Context\n\
         The following information has been retrieved from your knowledge base and may help answer the user's question. \
         Use it when it is relevant and say which source it came from. \
         NEVER include the <chunk>, <chunk_name>, or <chunk_content> tags in your answer.\n\n<chunks>\n",
    );
    for (i, c) in chunks.iter().enumerate() {
        let name = c
            .metadata
            .get("source")
            .or_else(|| c.metadata.get("filename"))
            .or_else(|| c.metadata.get("document_name"))
            .and_then(|v| v.as_str())
            .unwrap_or(&c.document_id);
        let name = std::path::Path::new(name).file_name().and_then(|n| n.to_str()).unwrap_or(name);
        let page = c.metadata.get("page_number").or_else(|| c.metadata.get("page")).and_then(|v| v.as_i64());
        let page = page.map(|p| format!(", Page {p}")).unwrap_or_default();
        s.push_str(&format!(
            "<chunk>\n  <chunk_name>Source {}: \"{name}\"{page}, Relevance: {:.3}</chunk_name>\n  <chunk_content>{}</chunk_content>\n</chunk>\n",
            i + 1,
            c.score,
            c.content.trim()
        ));
    }
    s.push_str("</chunks>");
    s
}

/// Sampling settings from a request, falling back to a model's `model_api_parameters`.
pub fn generation_params(req: &ChatRequest, api: &Option<Map<String, Value>>) -> GenerationParams {
    let max_tokens = req.max_tokens.map(|m| m as usize).or_else(|| num(api, "max_tokens").map(|m| m as usize)).unwrap_or(llm::DEFAULT_MAX_TOKENS);
    GenerationParams {
        temperature: req.temperature.or_else(|| num(api, "temperature")),
        top_p: req.top_p.or_else(|| num(api, "top_p")),
        top_k: req.top_k.map(|k| k as usize).or_else(|| num(api, "top_k").map(|k| k as usize)),
        max_tokens: max_tokens.max(1),
        think: req.think.unwrap_or(false),
        thinking_budget: req.thinking_budget.map(|b| b as usize).unwrap_or(llm::DEFAULT_THINKING_BUDGET),
        stop: match &req.stop {
            Some(StopSequences::One(s)) if !s.is_empty() => vec![s.clone()],
            Some(StopSequences::Many(v)) => v.iter().filter(|s| !s.is_empty()).cloned().collect(),
            _ => Vec::new(),
        },
        seed: req.seed,
        cache_prompt: true,
        grammar: req.response_format.as_ref().and_then(ResponseFormat::grammar),
        tools: Vec::new(),
        tool_choice: None,
        logprobs: (req.logprobs == Some(true)).then(|| req.top_logprobs.unwrap_or(0).max(0) as usize),
    }
}

/// `top_logprobs` (or the legacy completions' `logprobs`) as `field` gave it: 0 to
/// [`llm::MAX_TOP_LOGPROBS`].
fn check_top_logprobs(field: &str, n: Option<i64>) -> Result<()> {
    match n {
        Some(n) if !(0..=llm::MAX_TOP_LOGPROBS as i64).contains(&n) => Err(Error::invalid(field, format!("must be 0 to {}, got {n}", llm::MAX_TOP_LOGPROBS))),
        _ => Ok(()),
    }
}

/// A request for log-probabilities on a model whose engine does not compute them is the
/// caller's error, named with the model.
fn check_logprobs_served(model: &dyn llm::ChatModel, params: &GenerationParams) -> Result<()> {
    if params.logprobs.is_some() && !model.serves_logprobs() {
        return Err(Error::invalid(
            "logprobs",
            format!("are not returned for '{}': its engine does not expose its logits (the native engine, the default for local GGUF models, does)", model.id()),
        ));
    }
    Ok(())
}

/// The tools of a request: its own and those of the model's config (`tools`), with its
/// `tool_choice`, `parallel_tool_calls` and the model's `tool_call_strategy`.
pub fn tool_set(req: &ChatRequest, model: Option<&ModelConfig>) -> Result<ToolSet> {
    let mut tools = req.tools.clone();
    for t in model.and_then(|m| m.tools.as_ref()).into_iter().flatten() {
        if !tools.iter().any(|x| x.name == t.name) {
            let parameters = t.parameters.clone().map(Value::Object).unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tools.push(Tool { name: t.name.clone(), description: t.description.clone(), parameters });
        }
    }
    let strategy = match model.and_then(|m| m.tool_call_strategy.as_deref()) {
        Some(s) => ToolStrategy::parse(s)?,
        None => ToolStrategy::NativeApi,
    };
    let set = ToolSet { tools, choice: req.tool_choice.clone().unwrap_or_default(), parallel: req.parallel_tool_calls.unwrap_or(true), strategy };
    // A choice may name an MCP tool, known only once the servers are connected.
    ToolSet { choice: ToolChoice::Auto, ..set.clone() }.validate()?;
    Ok(set)
}

fn validate_request(req: &ChatRequest) -> Result<()> {
    llm::validate_messages(&req.messages)?;
    if let Some(g) = req.response_format.as_ref().and_then(ResponseFormat::grammar) {
        g.check()?;
    }
    if let Some(ResponseFormat::JsonSchema { json_schema }) = &req.response_format {
        if json_schema.name.trim().is_empty() {
            return Err(Error::invalid("response_format.json_schema.name", "is required"));
        }
    }
    llm::validate_params(req.temperature, req.top_p, req.max_tokens, req.thinking_budget)?;
    check_top_logprobs("top_logprobs", req.top_logprobs)?;
    if req.top_logprobs.is_some() && req.logprobs != Some(true) {
        return Err(Error::invalid("top_logprobs", "needs logprobs: true"));
    }
    if let Some(k) = req.top_k {
        if k < 0 {
            return Err(Error::invalid("top_k", format!("must not be negative, got {k}")));
        }
    }
    Ok(())
}

impl TextCompletionRequest {
    fn params(&self) -> GenerationParams {
        GenerationParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k.map(|k| k as usize),
            max_tokens: self.max_tokens.unwrap_or(16).max(1) as usize,
            stop: self.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            seed: self.seed,
            logprobs: self.logprobs.map(|n| n.max(0) as usize),
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<&str> {
        let id = self.model.trim();
        if id.is_empty() {
            return Err(Error::invalid("model", "is required"));
        }
        if self.prompts.is_empty() {
            return Err(Error::invalid("prompt", "is required (a string or a list of strings)"));
        }
        if self.prompts.len() > 64 {
            return Err(Error::invalid("prompt", format!("lists {} prompts; at most 64 are continued per request", self.prompts.len())));
        }
        llm::validate_params(self.temperature, self.top_p, self.max_tokens, None)?;
        if self.top_k.is_some_and(|k| k < 0) {
            return Err(Error::invalid("top_k", "must not be negative"));
        }
        check_top_logprobs("logprobs", self.logprobs)?;
        if self.echo && self.logprobs.is_some() {
            return Err(Error::invalid("logprobs", "with echo would need the prompt's log-probabilities, which are not computed; leave out one of them"));
        }
        Ok(id)
    }
}

impl crate::LlamaFarm {
    /// Check a text completion request and load its model (so a stream can start with a
    /// real status code).
    pub fn complete_text_check(&self, req: &TextCompletionRequest) -> Result<()> {
        let id = req.validate()?;
        let model = self.llm().get(&ChatModelSpec::local(id, self.llm().settings()), false, self.models())?;
        check_logprobs_served(&*model, &req.params())
    }

    /// Continue each prompt of `req` (see [`TextCompletionRequest`]); `sink` gets each
    /// piece with its choice's index (the echoed prompt first), and returning `false`
    /// stops.
    pub fn complete_text(&self, req: &TextCompletionRequest, cancel: &CancelFlag, sink: &mut dyn FnMut(usize, &str) -> bool) -> Result<TextCompletion> {
        let id = req.validate()?;
        let model = self.llm().get(&ChatModelSpec::local(id, self.llm().settings()), false, self.models())?;
        let params = req.params();
        check_logprobs_served(&*model, &params)?;
        let mut choices = Vec::with_capacity(req.prompts.len());
        for (i, prompt) in req.prompts.iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            if req.echo && !sink(i, prompt) {
                cancel.cancel();
            }
            let g = model.continue_text(prompt, &params, cancel, &mut |ev| match ev {
                llm::StreamEvent::Content(t) | llm::StreamEvent::Thinking(t) => sink(i, t),
                llm::StreamEvent::ToolCall(_) | llm::StreamEvent::ToolResult(_) => true,
            })?;
            let text = if req.echo { format!("{prompt}{}", g.content) } else { g.content };
            choices.push(TextChoice {
                text,
                finish_reason: g.finish_reason,
                prompt_tokens: g.prompt_tokens,
                completion_tokens: g.completion_tokens,
                logprobs: g.logprobs,
            });
        }
        Ok(TextCompletion { id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()), created: chrono::Utc::now().timestamp(), model: id.to_string(), choices })
    }

    /// Check a runtime completion request and load its model (so a stream can start
    /// with a real status code).
    pub fn complete_with_model_check(&self, req: &ChatRequest) -> Result<()> {
        validate_request(req)?;
        tool_set(req, None)?.validate()?;
        let id = req.model.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| Error::invalid("model", "is required"))?;
        let model = self.llm().get(&ChatModelSpec::local(id, self.llm().settings()), false, self.models())?;
        check_logprobs_served(&*model, &generation_params(req, &None))
    }

    /// A plain OpenAI completion on the Universal Runtime: `req.model` is a model id
    /// (`org/repo:QUANT` in the model cache), no project, no RAG, no session.
    pub fn complete_with_model(&self, req: &ChatRequest, cancel: &CancelFlag, sink: Sink<'_>) -> Result<ChatOutcome> {
        validate_request(req)?;
        let id = req.model.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| Error::invalid("model", "is required"))?;
        let tools = tool_set(req, None)?;
        tools.validate()?;
        let model = self.llm().get(&ChatModelSpec::local(id, self.llm().settings()), false, self.models())?;
        let params = generation_params(req, &None);
        check_logprobs_served(&*model, &params)?;
        let generation = llm::generate_with_tools(&*model, &req.messages, &params, &tools, cancel, sink)?;
        Ok(ChatOutcome {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: chrono::Utc::now().timestamp(),
            model: id.to_string(),
            generation,
            session_id: None,
            sources: Vec::new(),
            event_id: None,
            tool_steps: Vec::new(),
        })
    }
}

impl Chat {
    fn pick_model(cfg: &LlamaFarmConfig, requested: Option<&str>) -> Result<ModelConfig> {
        let models = cfg.models();
        match requested.map(str::trim).filter(|s| !s.is_empty()) {
            Some(name) => models.iter().find(|m| m.name == name).or_else(|| models.iter().find(|m| m.model == name)).cloned().ok_or_else(|| {
                Error::missing_in(
                    ResourceKind::Model,
                    name,
                    format!(
                        "(available: {})",
                        if models.is_empty() { "none".to_string() } else { models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ") }
                    ),
                )
            }),
            None => cfg.default_model().ok_or_else(|| Error::invalid("runtime.models", "is empty: the project has no models configured")),
        }
    }

    fn rag_for(&self, cfg: &LlamaFarmConfig, model: &ModelConfig, req: &ChatRequest) -> Result<(Vec<RagResult>, Option<Value>)> {
        let has_dbs = !cfg.databases().is_empty();
        let enabled = req.rag_enabled.or(model.rag_enabled).unwrap_or(has_dbs);
        if !enabled {
            return Ok((Vec::new(), None));
        }
        let explicit = req.rag_enabled == Some(true) || req.database.is_some() || req.rag_retrieval_strategy.is_some();
        let database = req.database.clone().or_else(|| model.target_database.clone()).or_else(|| cfg.default_database().map(|d| d.name.clone()));
        let Some(database) = database else {
            return if explicit { Err(Error::invalid("rag_enabled", "is true but the project has no databases")) } else { Ok((Vec::new(), None)) };
        };
        if cfg.database(&database).is_none() {
            return Err(Error::missing(ResourceKind::Database, database));
        }
        let top_k = match req.rag_top_k {
            Some(k) if !(1..=100).contains(&k) => return Err(Error::invalid("rag_top_k", format!("must be between 1 and 100, got {k}"))),
            Some(k) => k as usize,
            None => DEFAULT_RAG_TOP_K,
        };
        if let Some(t) = req.rag_score_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::invalid("rag_score_threshold", format!("must be between 0 and 1, got {t}")));
            }
        }
        let queries: Vec<String> = match &req.rag_queries {
            Some(q) if !q.is_empty() => {
                if q.len() > 10 {
                    return Err(Error::invalid("rag_queries", "takes at most 10 queries"));
                }
                q.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
            }
            _ => req.messages.iter().rev().find(|m| m.role == "user").map(|m| vec![m.content.clone()]).unwrap_or_default(),
        };
        if queries.is_empty() {
            return Ok((Vec::new(), None));
        }
        let t = Instant::now();
        let rag = self.project.rag();
        let results: Vec<Result<crate::rag::RagResponse>> = std::thread::scope(|s| {
            let handles: Vec<_> = queries
                .iter()
                .map(|q| {
                    let rq = RagQuery {
                        query: q.clone(),
                        database: Some(database.clone()),
                        retrieval_strategy: req.rag_retrieval_strategy.clone(),
                        top_k: Some(top_k as i64),
                        score_threshold: req.rag_score_threshold,
                        ..Default::default()
                    };
                    let rag = &rag;
                    s.spawn(move || rag.query(&rq))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::internal("retrieval thread panicked")))).collect()
        });
        let mut merged: Vec<RagResult> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut strategy = String::new();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(resp) => {
                    strategy = resp.retrieval_strategy_used.clone();
                    for c in resp.results {
                        // The original dedups on the first 200 characters.
                        let key: String = c.content.chars().take(200).collect();
                        if seen.insert(key) {
                            merged.push(c);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if merged.is_empty() && !errors.is_empty() && explicit {
            return Err(errors.remove(0));
        }
        merged.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal));
        merged.truncate(top_k);
        let event = json!({
            "type": "rag_retrieval",
            "database": database,
            "strategy": strategy,
            "queries": queries,
            "results": merged.len(),
            "top_k": top_k,
            "duration_ms": t.elapsed().as_secs_f64() * 1000.0,
            "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        });
        Ok((merged, Some(event)))
    }

    /// Decide everything for one turn (model, prompt, retrieval, session) without generating.
    /// `session`: `Some(id)` for a stateful turn, `None` for stateless.
    pub fn prepare(&self, req: &ChatRequest, session: Option<&str>) -> Result<PreparedTurn> {
        let started = Instant::now();
        validate_request(req)?;
        let sources_limit = match req.sources_limit {
            Some(n) if !(1..=MAX_SOURCES_LIMIT as i64).contains(&n) => {
                return Err(Error::invalid("sources_limit", format!("must be between 1 and {MAX_SOURCES_LIMIT}, got {n}")))
            }
            Some(n) => n as usize,
            None => DEFAULT_SOURCES_LIMIT,
        };
        let cfg = self.project.config_substituted()?;
        let model_cfg = Self::pick_model(&cfg, req.model.as_deref())?;
        let spec = ChatModelSpec::from_config(&model_cfg, self.project.llamafarm().llm().settings())?;
        let lf = self.project.llamafarm();
        // Loaded here (first use), so a missing model is an error before any streaming.
        let model = lf.llm().get(&spec, model_cfg.keep_loaded.unwrap_or(false), lf.models())?;
        let vars = req.variables.clone().unwrap_or_default();

        // Config prompts: the model's prompt sets (all sets when it names none).
        let sets = cfg.prompts.clone().unwrap_or_default();
        let chosen: Vec<_> = match &model_cfg.prompts {
            Some(names) => names.iter().filter_map(|n| sets.iter().find(|s| &s.name == n)).cloned().collect(),
            None => sets,
        };
        let mut system_parts: Vec<String> = Vec::new();
        let mut seeded: Vec<ChatMessage> = Vec::new();
        for m in chosen.iter().flat_map(|s| s.messages.iter()) {
            let content = substitute_variables(&m.content, &vars);
            if m.role == "system" {
                system_parts.push(content.trim().to_string());
            } else {
                seeded.push(ChatMessage::new(m.role.clone(), content));
            }
        }
        let request_system: Vec<String> = req.messages.iter().filter(|m| m.role == "system").map(|m| substitute_variables(&m.content, &vars)).collect();
        if !request_system.is_empty() {
            system_parts = request_system;
        }
        let (sources, rag_event) = self.rag_for(&cfg, &model_cfg, req)?;
        if !sources.is_empty() {
            system_parts.push(render_context(&sources));
        }

        let session = match session {
            Some(id) => Some(self.project.llamafarm().sessions().open(&self.project, id)?),
            None => None,
        };
        let history = session.as_ref().map(|s| s.history()).unwrap_or_default();
        let new_messages: Vec<ChatMessage> = req.messages.iter().filter(|m| m.role != "system").cloned().collect();
        let mut messages = Vec::new();
        if !system_parts.is_empty() {
            messages.push(ChatMessage::new("system", system_parts.join("\n\n")));
        }
        if history.is_empty() {
            messages.extend(seeded);
        }
        messages.extend(history);
        messages.extend(new_messages.iter().cloned());

        let params = generation_params(req, &model_cfg.model_api_parameters);
        check_logprobs_served(&*model, &params)?;
        let mut tools = tool_set(req, Some(&model_cfg))?;
        // The MCP servers' tools the model may use (`mcp_servers`: omitted = all, empty = none).
        let mut mcp = Vec::new();
        if tools.choice != ToolChoice::None {
            let all = cfg.mcp.as_ref().and_then(|m| m.servers.clone()).unwrap_or_default();
            let servers: Vec<McpServerConfig> = match &model_cfg.mcp_servers {
                None => all,
                Some(names) => all.into_iter().filter(|s| names.contains(&s.name)).collect(),
            };
            if !servers.is_empty() {
                let scope = format!("{}/{}", self.project.namespace(), self.project.name());
                for t in lf.mcp().tools(&scope, &servers) {
                    if tools.tools.iter().any(|x| x.name == t.tool.name) {
                        continue;
                    }
                    if let Err(e) = t.tool.check() {
                        tracing::warn!(server = %t.server, tool = %t.tool.name, error = %e, "MCP tool left out");
                        continue;
                    }
                    tools.tools.push(t.tool.clone());
                    let server = servers.iter().find(|s| s.name == t.server).cloned().unwrap_or_default();
                    mcp.push((t, server));
                }
            }
        }
        tools.validate()?;
        Ok(PreparedTurn {
            project: self.project.clone(),
            model_cfg,
            model,
            messages,
            new_messages,
            params,
            tools,
            mcp,
            session,
            sources,
            sources_limit,
            rag_event,
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: chrono::Utc::now().timestamp(),
            started,
        })
    }

    /// Generate, running the model's MCP tool calls and giving it their results, until it
    /// answers (or calls a tool the caller must run), at most [`MAX_TOOL_STEPS`] times.
    fn generate_with_mcp(turn: &PreparedTurn, cancel: &CancelFlag, sink: Sink<'_>) -> Result<(Generation, Vec<ToolStep>)> {
        let mut messages = turn.messages.clone();
        let mut set = turn.tools.clone();
        let mut steps: Vec<ToolStep> = Vec::new();
        let mut total: Option<Generation> = None;
        let scope = format!("{}/{}", turn.project.namespace(), turn.project.name());
        let is_mcp = |name: &str| turn.mcp.iter().find(|(t, _)| t.tool.name == name);
        for round in 0..=MAX_TOOL_STEPS {
            if round == MAX_TOOL_STEPS {
                set.choice = ToolChoice::None;
            }
            // MCP calls are run here, so they reach the caller as results, not as calls to make.
            let mut pass = |ev: llm::StreamEvent<'_>| match ev {
                llm::StreamEvent::ToolCall(c) if is_mcp(&c.function.name).is_some() => true,
                other => sink(other),
            };
            let mut g = llm::generate_with_tools(&*turn.model, &messages, &turn.params, &set, cancel, &mut pass)?;
            if let Some(t) = &total {
                g.prompt_tokens += t.prompt_tokens;
                g.completion_tokens += t.completion_tokens;
                g.reasoning_tokens += t.reasoning_tokens;
                g.cached_tokens += t.cached_tokens;
                g.ttft_ms = t.ttft_ms;
                g.duration_ms += t.duration_ms;
            }
            let (mcp_calls, client_calls): (Vec<_>, Vec<_>) = g.tool_calls.iter().cloned().partition(|c| is_mcp(&c.function.name).is_some());
            if mcp_calls.is_empty() || cancel.is_cancelled() {
                return Ok((g, steps));
            }
            messages.push(ChatMessage::tool_calls(g.content.clone(), mcp_calls.clone()));
            for c in mcp_calls {
                let Some((t, server)) = is_mcp(&c.function.name) else { continue };
                let out = turn.project.llamafarm().mcp().call(&scope, server, &t.tool.name, c.arguments());
                messages.push(ChatMessage::tool_result(c.id.clone(), c.function.name.clone(), out.content.clone()));
                let step = ToolStep { call: c, server: t.server.clone(), content: out.content, ok: out.ok, duration_ms: out.duration_ms };
                sink(llm::StreamEvent::ToolResult(&step));
                steps.push(step);
            }
            if !client_calls.is_empty() {
                g.tool_calls = client_calls;
                return Ok((g, steps));
            }
            // A forced call was made: now the model answers.
            if matches!(set.choice, ToolChoice::Required | ToolChoice::Function(_)) {
                set.choice = ToolChoice::None;
            }
            g.tool_calls.clear();
            total = Some(g);
        }
        Err(Error::internal("tool loop ended without an answer"))
    }

    /// Run a prepared turn: load the model (first use), generate (running MCP tool
    /// calls), persist, record the event.
    pub fn run(turn: PreparedTurn, cancel: &CancelFlag, sink: Sink<'_>) -> Result<ChatOutcome> {
        let gen_result = Self::generate_with_mcp(&turn, cancel, sink);
        let (generation, tool_steps) = match gen_result {
            Ok(x) => x,
            Err(e) => {
                let _ = turn.project.events().record(
                    "inference",
                    json!({"model": turn.model_cfg.model, "status": "error"}),
                    json!({"error": e.public_message(), "model_name": turn.model_cfg.name}),
                    turn.rag_event.clone().into_iter().collect(),
                );
                return Err(e);
            }
        };
        if let Some(s) = &turn.session {
            if generation.finish_reason != FinishReason::Cancelled {
                let mut add = turn.new_messages.clone();
                add.push(if generation.tool_calls.is_empty() {
                    ChatMessage::new("assistant", generation.content.clone())
                } else {
                    ChatMessage::tool_calls(generation.content.clone(), generation.tool_calls.clone())
                });
                s.append(&add)?;
            }
        }
        let total_ms = turn.started.elapsed().as_secs_f64() * 1000.0;
        let event_id = turn
            .project
            .events()
            .record(
                "inference",
                json!({
                    "model": turn.model_cfg.model,
                    "prompt_tokens": generation.prompt_tokens,
                    "completion_tokens": generation.completion_tokens,
                    "duration_ms": total_ms,
                    "ttft_ms": generation.ttft_ms,
                    "finish_reason": generation.finish_reason.as_str(),
                }),
                json!({
                    "id": turn.id,
                    "model_name": turn.model_cfg.name,
                    "model": turn.model_cfg.model,
                    "provider": turn.model_cfg.provider,
                    "session_id": turn.session_id(),
                    "prompt_tokens": generation.prompt_tokens,
                    "completion_tokens": generation.completion_tokens,
                    "reasoning_tokens": generation.reasoning_tokens,
                    "generation_ms": generation.duration_ms,
                    "ttft_ms": generation.ttft_ms,
                    "total_ms": total_ms,
                    "finish_reason": generation.finish_reason.as_str(),
                    "think": turn.params.think,
                    "tool_calls": generation.tool_calls,
                    "tool_steps": tool_steps,
                }),
                turn.rag_event.clone().into_iter().collect(),
            )
            .ok();
        let sources = turn.visible_sources().to_vec();
        Ok(ChatOutcome {
            id: turn.id.clone(),
            created: turn.created,
            model: turn.model_cfg.model.clone(),
            session_id: turn.session_id().map(str::to_string),
            generation,
            sources,
            event_id,
            tool_steps,
        })
    }

    /// Prepare and run in one call.
    pub fn complete(&self, req: &ChatRequest, session: Option<&str>, cancel: &CancelFlag, sink: Sink<'_>) -> Result<ChatOutcome> {
        let turn = self.prepare(req, session)?;
        Self::run(turn, cancel, sink)
    }

    /// A session's stored messages (404 when it does not exist).
    pub fn history(&self, session_id: &str) -> Result<Vec<ChatMessage>> {
        self.project.llamafarm().sessions().history(&self.project, session_id)
    }

    /// Delete one session (404 when it does not exist).
    pub fn delete_session(&self, session_id: &str) -> Result<()> {
        self.project.llamafarm().sessions().delete(&self.project, session_id)
    }

    /// Delete every session of the project; returns how many there were.
    pub fn delete_all_sessions(&self) -> Result<usize> {
        self.project.llamafarm().sessions().delete_all(&self.project)
    }

    /// Session ids stored for the project.
    pub fn sessions(&self) -> Result<Vec<String>> {
        self.project.llamafarm().sessions().list(&self.project)
    }

    /// The project's sessions with their sizes and titles, the most recent first.
    pub fn session_summaries(&self) -> Result<Vec<SessionSummary>> {
        self.project.llamafarm().sessions().summaries(&self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables() {
        let vars: Map<String, Value> = serde_json::from_value(json!({"name": "Ada", "n": 3})).unwrap();
        assert_eq!(substitute_variables("Hi {{name}}, {{ n }} items", &vars), "Hi Ada, 3 items");
        assert_eq!(substitute_variables("{{missing | friend}}!", &vars), "friend!");
        assert_eq!(substitute_variables("{{missing | \"quoted\"}}", &vars), "quoted");
        assert_eq!(substitute_variables("keep {{unknown}} and {{ broken", &vars), "keep {{unknown}} and {{ broken");
    }

    #[test]
    fn context_format() {
        let mut md = Map::new();
        md.insert("source".into(), json!("/x/y/report.pdf"));
        md.insert("page_number".into(), json!(3));
        let c = RagResult { content: " text ".into(), score: 0.8123, metadata: md, chunk_id: "c".into(), document_id: "d".into() };
        let s = render_context(&[c]);
        assert!(s.starts_with("# EXTRA INFORMATION AND CONTEXT\n## Project Chat Context\n"));
        assert!(s.contains("<chunk_name>Source 1: \"report.pdf\", Page 3, Relevance: 0.812</chunk_name>"), "{s}");
        assert!(s.contains("<chunk_content>text</chunk_content>"));
    }
}
