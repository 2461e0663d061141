//! Bodies of chat: the OpenAI-compatible request, the `chat.completion` answer, the
//! Server-Sent Events of a streamed answer, and sessions.

use super::rag::RagResultDto;
use llamafarm_core::chat::{ChatOutcome, ChatRequest, JsonSchemaFormat, ResponseFormat, StopSequences};
use llamafarm_core::llm::{ChatMessage, Generation, TokenLogprob, Tool, ToolCall, ToolChoice, ToolStep};
use llamafarm_core::rag::RagResult;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One chat message (OpenAI shape).
#[derive(Serialize, ToSchema)]
pub(crate) struct ChatMessageDto {
    /// `system`, `user`, `assistant` or `tool`.
    role: String,
    /// The text. In a request, `null` (tool-call turns) reads as empty, and the OpenAI
    /// content-part array (`[{"type": "text", "text": ...}]`) is accepted.
    content: String,
    /// The calls an assistant message made.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDto>>,
    /// On a `tool` message: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
    /// On a `tool` message: the tool's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl From<ChatMessage> for ChatMessageDto {
    fn from(m: ChatMessage) -> Self {
        Self { role: m.role, content: m.content, tool_calls: m.tool_calls.map(|c| c.iter().map(Into::into).collect()), tool_call_id: m.tool_call_id, name: m.name }
    }
}

/// A function a tool call names.
#[derive(Serialize, ToSchema)]
pub(crate) struct FunctionCallDto {
    name: String,
    /// The arguments: a JSON object, as a string.
    arguments: String,
}

/// A tool call (OpenAI's `tool_calls[]` item).
#[derive(Serialize, ToSchema)]
pub(crate) struct ToolCallDto {
    /// `call_...`.
    id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCallDto,
}

impl From<&ToolCall> for ToolCallDto {
    fn from(c: &ToolCall) -> Self {
        Self { id: c.id.clone(), kind: "function", function: FunctionCallDto { name: c.function.name.clone(), arguments: c.function.arguments.clone() } }
    }
}

/// An MCP tool call the server ran for the model during a project chat turn.
#[derive(Serialize, ToSchema)]
pub(crate) struct ToolStepDto {
    /// The call the model made.
    tool_call: ToolCallDto,
    /// The MCP server (`mcp.servers[].name`) that ran it.
    server: String,
    /// The result the model read (or what went wrong).
    content: String,
    /// The call succeeded.
    ok: bool,
    duration_ms: f64,
}

impl From<&ToolStep> for ToolStepDto {
    fn from(s: &ToolStep) -> Self {
        Self { tool_call: (&s.call).into(), server: s.server.clone(), content: s.content.clone(), ok: s.ok, duration_ms: s.duration_ms }
    }
}

/// A streamed piece of a tool call: the first names the call, later ones add to its
/// `arguments` (OpenAI's `delta.tool_calls[]`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ToolCallDeltaDto {
    /// Which call of the reply (0, 1, ...).
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDeltaDto,
}

/// The function part of a [`ToolCallDeltaDto`].
#[derive(Serialize, ToSchema)]
pub(crate) struct FunctionDeltaDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    arguments: String,
}

/// A function offered to the model.
#[derive(Deserialize, ToSchema)]
pub(crate) struct FunctionDefDto {
    /// Its name (letters, digits, `_`, `-`, `.`; at most 64).
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// JSON schema of the arguments (an object schema).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
    /// OpenAI's strict mode; forced calls always follow the schema here.
    #[serde(default)]
    #[allow(dead_code)]
    strict: Option<bool>,
}

/// A tool offered to the model: `{"type": "function", "function": {...}}`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ToolDto {
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    kind: String,
    function: FunctionDefDto,
}

fn function_kind() -> String {
    "function".into()
}

impl ToolDto {
    fn into_tool(self) -> Result<Tool, String> {
        if self.kind != "function" {
            return Err(format!("tools[].type must be 'function', got '{}'", self.kind));
        }
        let f = self.function;
        Ok(Tool { name: f.name, description: f.description, parameters: f.parameters.unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})) })
    }
}

/// `response_format.json_schema`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct JsonSchemaDto {
    /// The schema's name.
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// The JSON schema the answer follows.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// OpenAI's strict mode; the answer always follows the schema here.
    #[serde(default)]
    strict: Option<bool>,
}

/// `response_format`: `{"type": "text"}`, `{"type": "json_object"}` or
/// `{"type": "json_schema", "json_schema": {...}}`. The answer is constrained to it.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ResponseFormatDto {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaDto },
}

impl From<ResponseFormatDto> for ResponseFormat {
    fn from(r: ResponseFormatDto) -> Self {
        match r {
            ResponseFormatDto::Text => ResponseFormat::Text,
            ResponseFormatDto::JsonObject => ResponseFormat::JsonObject,
            ResponseFormatDto::JsonSchema { json_schema: j } => {
                ResponseFormat::JsonSchema { json_schema: JsonSchemaFormat { name: j.name, schema: j.schema, strict: j.strict, description: j.description } }
            }
        }
    }
}

/// `stop`: one string or several.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum StopDto {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl From<StopDto> for StopSequences {
    fn from(s: StopDto) -> Self {
        match s {
            StopDto::One(x) => StopSequences::One(x),
            StopDto::Many(v) => StopSequences::Many(v),
        }
    }
}

/// A chat completion request: the OpenAI fields plus LlamaFarm's extensions.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ChatRequestDto {
    /// The conversation (at least one message).
    #[schema(value_type = Vec<ChatMessageDto>)]
    messages: Vec<ChatMessage>,
    /// A `runtime.models[].name` (or its model id); default: the project's default model.
    /// On the runtime listener: a GGUF model id of the model cache (required).
    #[serde(default)]
    model: Option<String>,
    /// Answer as Server-Sent Events of `chat.completion.chunk`s.
    #[serde(default)]
    stream: Option<bool>,
    /// 0..=2 (0 = greedy).
    #[serde(default)]
    temperature: Option<f64>,
    /// Answer tokens, at least 1 (default 512; thinking tokens are separate).
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Nucleus sampling, (0, 1].
    #[serde(default)]
    top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default)]
    top_k: Option<i64>,
    /// Retrieval on/off (default: on when the project has a database).
    #[serde(default)]
    rag_enabled: Option<bool>,
    /// Database for retrieval (default: the model's `target_database`, then the project's default).
    #[serde(default)]
    database: Option<String>,
    /// Retrieval strategy name of the database.
    #[serde(default)]
    rag_retrieval_strategy: Option<String>,
    /// Chunks to retrieve (default 5).
    #[serde(default)]
    rag_top_k: Option<i64>,
    /// Minimum score of a chunk, 0..=1.
    #[serde(default)]
    rag_score_threshold: Option<f64>,
    /// Queries to retrieve with instead of the last user message (run concurrently).
    #[serde(default)]
    rag_queries: Option<Vec<String>>,
    /// Reasoning mode.
    #[serde(default)]
    think: Option<bool>,
    /// Most thinking tokens (default 1024).
    #[serde(default)]
    thinking_budget: Option<i64>,
    /// Values for `{{var}}` placeholders in the config's prompts.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    variables: Option<Map<String, Value>>,
    /// Return the retrieved chunks (`sources`).
    #[serde(default)]
    include_sources: Option<bool>,
    /// How many sources to return (default 10, at most 50).
    #[serde(default)]
    sources_limit: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    stop: Option<StopDto>,
    /// Seed of sampled decoding: the same seed gives the same text on a local model.
    #[serde(default)]
    seed: Option<u64>,
    /// Tools the model may call (with the model's config `tools` and its MCP servers' tools).
    #[serde(default)]
    tools: Option<Vec<ToolDto>>,
    /// `auto` (default), `none`, `required`, or `{"type": "function", "function": {"name": ...}}`.
    /// `required` and a named function are grammar-constrained: the call is valid JSON
    /// with the declared arguments on any model.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<Value>,
    /// Several calls in one reply (default true).
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    /// Constrain the answer: `json_object` or `json_schema` (the answer always parses
    /// and follows the schema).
    #[serde(default)]
    response_format: Option<ResponseFormatDto>,
    /// Return each answer token's log-probability in `choices[].logprobs` (in the last
    /// chunk when streaming). Local models on the native engine serve them; others answer 422.
    #[serde(default)]
    logprobs: Option<bool>,
    /// With `logprobs`: the most likely alternatives per token, 0..=20.
    #[serde(default)]
    top_logprobs: Option<i64>,
}

impl TryFrom<ChatRequestDto> for ChatRequest {
    type Error = String;
    fn try_from(r: ChatRequestDto) -> Result<Self, String> {
        let tools = r.tools.unwrap_or_default().into_iter().map(ToolDto::into_tool).collect::<Result<Vec<_>, _>>()?;
        let tool_choice = r.tool_choice.as_ref().map(ToolChoice::from_value).transpose().map_err(|e| e.to_string())?;
        Ok(ChatRequest {
            messages: r.messages,
            model: r.model,
            stream: r.stream,
            temperature: r.temperature,
            max_tokens: r.max_tokens,
            top_p: r.top_p,
            top_k: r.top_k,
            rag_enabled: r.rag_enabled,
            database: r.database,
            rag_retrieval_strategy: r.rag_retrieval_strategy,
            rag_top_k: r.rag_top_k,
            rag_score_threshold: r.rag_score_threshold,
            rag_queries: r.rag_queries,
            think: r.think,
            thinking_budget: r.thinking_budget,
            variables: r.variables,
            include_sources: r.include_sources,
            sources_limit: r.sources_limit,
            stop: r.stop.map(Into::into),
            seed: r.seed,
            tools,
            tool_choice,
            parallel_tool_calls: r.parallel_tool_calls,
            response_format: r.response_format.map(Into::into),
            logprobs: r.logprobs,
            top_logprobs: r.top_logprobs,
        })
    }
}

/// `stream_options` of the OpenAI API.
#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default)]
    include_usage: bool,
}

/// Body of the chat completion routes: the request plus `stream_options`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct CompletionRequest {
    #[serde(flatten)]
    req: ChatRequestDto,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

impl CompletionRequest {
    /// The core request, and whether a final `usage` chunk was asked for (a bad tool
    /// definition or `tool_choice` is the message of a 422).
    pub(crate) fn into_parts(self) -> Result<(ChatRequest, bool), String> {
        Ok((self.req.try_into()?, self.stream_options.is_some_and(|o| o.include_usage)))
    }
}

/// Reasoning-token details of [`Usage`].
#[derive(Serialize, ToSchema)]
pub(crate) struct CompletionTokensDetails {
    reasoning_tokens: usize,
}

/// Cached-token details of [`Usage`] (OpenAI's `prompt_tokens_details`).
#[derive(Serialize, ToSchema)]
pub(crate) struct PromptTokensDetails {
    /// Prompt tokens whose keys and values were reused from an earlier request.
    cached_tokens: usize,
}

/// Token counts of a turn.
#[derive(Serialize, ToSchema)]
pub(crate) struct Usage {
    prompt_tokens: usize,
    /// Present when part of the prompt was reused from an earlier request.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptTokensDetails>,
    /// Answer tokens (thinking tokens not included).
    completion_tokens: usize,
    total_tokens: usize,
    /// Present when the model thought.
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionTokensDetails>,
}

impl From<&Generation> for Usage {
    fn from(g: &Generation) -> Self {
        Self {
            prompt_tokens: g.prompt_tokens,
            prompt_tokens_details: (g.cached_tokens > 0).then_some(PromptTokensDetails { cached_tokens: g.cached_tokens }),
            completion_tokens: g.completion_tokens,
            total_tokens: g.prompt_tokens + g.completion_tokens,
            completion_tokens_details: (g.reasoning_tokens > 0).then_some(CompletionTokensDetails { reasoning_tokens: g.reasoning_tokens }),
        }
    }
}

/// The model's reasoning, when it thought.
#[derive(Serialize, ToSchema)]
pub(crate) struct Thinking {
    content: String,
    tokens: usize,
}

impl Thinking {
    fn of(g: &Generation) -> Option<Self> {
        g.thinking.as_ref().map(|t| Self { content: t.clone(), tokens: g.reasoning_tokens })
    }
}

/// One of the most likely tokens at a step.
#[derive(Serialize, ToSchema)]
pub(crate) struct TopLogprobDto {
    token: String,
    /// Natural log of its probability.
    logprob: f32,
    /// The token's UTF-8 bytes (a character may span tokens).
    bytes: Vec<u8>,
}

/// A generated token's log-probability, with the most likely alternatives at its step.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenLogprobDto {
    token: String,
    /// Natural log of its probability (the model's softmax, before temperature).
    logprob: f32,
    /// The token's UTF-8 bytes.
    bytes: Vec<u8>,
    /// Most likely first; `top_logprobs` of them.
    top_logprobs: Vec<TopLogprobDto>,
}

impl From<&TokenLogprob> for TokenLogprobDto {
    fn from(t: &TokenLogprob) -> Self {
        Self {
            token: t.token.clone(),
            logprob: t.logprob,
            bytes: t.bytes.clone(),
            top_logprobs: t.top.iter().map(|x| TopLogprobDto { token: x.token.clone(), logprob: x.logprob, bytes: x.bytes.clone() }).collect(),
        }
    }
}

/// `choices[].logprobs`: one entry per generated token.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChoiceLogprobs {
    content: Vec<TokenLogprobDto>,
    /// Always `null` (no refusals).
    #[schema(value_type = Option<Vec<TokenLogprobDto>>)]
    refusal: Option<Vec<TokenLogprobDto>>,
}

impl ChoiceLogprobs {
    fn of(g: &Generation) -> Option<Self> {
        g.logprobs.as_ref().map(|l| Self { content: l.iter().map(Into::into).collect(), refusal: None })
    }
}

/// The assistant's message of a `chat.completion`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AssistantMessage {
    /// Always `assistant`.
    role: &'static str,
    /// The answer; `null` when the model only called tools.
    content: Option<String>,
    /// The tools the model called (`finish_reason: tool_calls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDto>>,
}

/// The one choice of a `chat.completion`.
#[derive(Serialize, ToSchema)]
pub(crate) struct CompletionChoice {
    index: usize,
    message: AssistantMessage,
    /// With `logprobs`, else `null`.
    logprobs: Option<ChoiceLogprobs>,
    /// `stop`, `length` or `cancelled`.
    finish_reason: &'static str,
}

/// A whole answer (`stream` off).
#[derive(Serialize, ToSchema)]
pub(crate) struct ChatCompletion {
    /// `chatcmpl-...`.
    id: String,
    /// Always `chat.completion`.
    object: &'static str,
    /// Unix seconds.
    created: i64,
    /// The model id that answered.
    model: String,
    choices: Vec<CompletionChoice>,
    usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking>,
    /// The retrieved chunks, with `include_sources`.
    #[serde(skip_serializing_if = "Option::is_none")]
    sources: Option<Vec<RagResultDto>>,
    /// The MCP tool calls the server ran for the model before it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_steps: Option<Vec<ToolStepDto>>,
}

impl ChatCompletion {
    pub(crate) fn new(o: ChatOutcome, include_sources: bool) -> Self {
        let g = &o.generation;
        Self {
            id: o.id.clone(),
            object: "chat.completion",
            created: o.created,
            model: o.model.clone(),
            choices: vec![CompletionChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: (g.tool_calls.is_empty() || !g.content.is_empty()).then(|| g.content.clone()),
                    tool_calls: (!g.tool_calls.is_empty()).then(|| g.tool_calls.iter().map(Into::into).collect()),
                },
                logprobs: ChoiceLogprobs::of(g),
                finish_reason: g.finish_reason.as_str(),
            }],
            usage: g.into(),
            thinking: Thinking::of(g),
            sources: include_sources.then(|| o.sources.into_iter().map(Into::into).collect()),
            tool_steps: (!o.tool_steps.is_empty()).then(|| o.tool_steps.iter().map(Into::into).collect()),
        }
    }
}

/// What a chunk adds to the answer. The first chunk carries `role` (and an empty
/// `content`), the last an empty delta with `finish_reason`.
#[derive(Serialize, ToSchema, Default)]
pub(crate) struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// Answer text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    /// Thinking text.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    /// Tool calls: one delta names a call, the next carries its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDeltaDto>>,
}

impl Delta {
    pub(crate) fn start() -> Self {
        Self { role: Some("assistant"), content: Some(String::new()), ..Self::default() }
    }
    /// The two deltas of call number `index`: its id and name, then its arguments.
    pub(crate) fn tool_call(index: usize, c: &ToolCall) -> [Self; 2] {
        let head = ToolCallDeltaDto {
            index,
            id: Some(c.id.clone()),
            kind: Some("function"),
            function: FunctionDeltaDto { name: Some(c.function.name.clone()), arguments: String::new() },
        };
        let args = ToolCallDeltaDto { index, id: None, kind: None, function: FunctionDeltaDto { name: None, arguments: c.function.arguments.clone() } };
        [Self { tool_calls: Some(vec![head]), ..Self::default() }, Self { tool_calls: Some(vec![args]), ..Self::default() }]
    }
    pub(crate) fn content(c: &str) -> Self {
        Self { content: Some(c.into()), ..Self::default() }
    }
    pub(crate) fn reasoning(t: &str) -> Self {
        Self { reasoning_content: Some(t.into()), ..Self::default() }
    }
}

/// The one choice of a chunk.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChunkChoice {
    index: usize,
    delta: Delta,
    /// With `logprobs`, in the last chunk: every generated token's; else `null`.
    logprobs: Option<ChoiceLogprobs>,
    /// `null` until the last chunk: `stop`, `length` or `cancelled`.
    finish_reason: Option<&'static str>,
}

/// One Server-Sent Event of a streamed answer (`object: chat.completion.chunk`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ChatCompletionChunk {
    /// `chatcmpl-...`, the same in every chunk of a stream.
    id: String,
    /// Always `chat.completion.chunk`.
    object: &'static str,
    /// Unix seconds.
    created: i64,
    model: String,
    /// One choice; empty in the `usage` chunk.
    choices: Vec<ChunkChoice>,
    /// In the last chunk, when the model thought.
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking>,
    /// In a final extra chunk, with `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    /// In a chunk with no choices: an MCP tool call the server ran, as it happens.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_step: Option<Box<ToolStepDto>>,
}

/// The fields every chunk of one stream shares.
pub(crate) struct ChunkHead {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) model: String,
}

impl ChunkHead {
    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices,
            thinking: None,
            usage: None,
            tool_step: None,
        }
    }
    /// A chunk with no choices carrying an MCP tool call the server ran.
    pub(crate) fn tool_step(&self, s: &ToolStep) -> ChatCompletionChunk {
        let mut c = self.chunk(vec![]);
        c.tool_step = Some(Box::new(s.into()));
        c
    }
    /// A chunk carrying `delta`.
    pub(crate) fn delta(&self, delta: Delta) -> ChatCompletionChunk {
        self.chunk(vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None }])
    }
    /// The last chunk: an empty delta, the finish reason, the log-probabilities and the
    /// thinking if any.
    pub(crate) fn finish(&self, g: &Generation) -> ChatCompletionChunk {
        let mut c =
            self.chunk(vec![ChunkChoice { index: 0, delta: Delta::default(), logprobs: ChoiceLogprobs::of(g), finish_reason: Some(g.finish_reason.as_str()) }]);
        c.thinking = Thinking::of(g);
        c
    }
    /// The `usage` chunk (no choices).
    pub(crate) fn usage(&self, g: &Generation) -> ChatCompletionChunk {
        let mut c = self.chunk(vec![]);
        c.usage = Some(g.into());
        c
    }
}

/// The first event of a stream with `include_sources`: `{"type": "sources", "sources": [...]}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SourcesEvent {
    /// Always `sources`.
    #[serde(rename = "type")]
    kind: &'static str,
    sources: Vec<RagResultDto>,
}

impl SourcesEvent {
    pub(crate) fn new(sources: &[RagResult]) -> Self {
        Self { kind: "sources", sources: sources.iter().map(Into::into).collect() }
    }
}

/// The error of a stream that failed after it started.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamError {
    message: String,
    /// Always `server_error`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The HTTP status the error would have had.
    code: u16,
}

/// The event of a stream that failed after it started (OpenAI's `error` plus `detail`).
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamErrorEvent {
    error: StreamError,
    detail: String,
}

impl StreamErrorEvent {
    pub(crate) fn new(message: String, code: u16) -> Self {
        Self { error: StreamError { message: message.clone(), kind: "server_error", code }, detail: message }
    }
}

/// An event of a streamed answer: an optional first [`SourcesEvent`], then
/// [`ChatCompletionChunk`]s (or a [`StreamErrorEvent`]), then the literal `data: [DONE]`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ChatStreamEvent {
    /// A chunk of the answer.
    Chunk(ChatCompletionChunk),
    /// The retrieved chunks, first.
    Sources(SourcesEvent),
    /// Generation failed.
    Error(StreamErrorEvent),
}

/// `GET .../chat/sessions/{session_id}/history`.
#[derive(Serialize, ToSchema)]
pub(crate) struct History {
    messages: Vec<ChatMessageDto>,
}

impl From<Vec<ChatMessage>> for History {
    fn from(m: Vec<ChatMessage>) -> Self {
        Self { messages: m.into_iter().map(Into::into).collect() }
    }
}

/// `DELETE .../chat/sessions/{session_id}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionDeleted {
    message: String,
}

impl SessionDeleted {
    pub(crate) fn new(session_id: &str) -> Self {
        Self { message: format!("Session {session_id} deleted") }
    }
}

/// `DELETE .../chat/sessions`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionsDeleted {
    message: String,
    /// Sessions deleted.
    count: usize,
}

impl From<usize> for SessionsDeleted {
    fn from(count: usize) -> Self {
        Self { message: format!("Deleted {count} session(s)"), count }
    }
}

/// Body of `POST .../embeddings` on a project.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ProjectEmbeddingsRequest {
    /// A local model id; default: the embedder of the project's default database.
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) input: super::runtime::EmbeddingInput,
    /// Only `float` (the default) and `base64`.
    #[serde(default)]
    pub(crate) encoding_format: Option<String>,
}

/// `prompt` of a text completion: one string or several.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PromptDto {
    /// One prompt.
    One(String),
    /// Several, one choice each.
    Many(Vec<String>),
}

/// A text completion request (OpenAI's legacy `/v1/completions`): each prompt is
/// continued as it is, with no chat template (for base models).
#[derive(Deserialize, ToSchema)]
pub(crate) struct TextCompletionRequestDto {
    /// A GGUF model id of the model cache (e.g. `unsloth/gemma-3-270m-GGUF:Q4_K_M`).
    #[serde(default)]
    model: Option<String>,
    /// The text to continue, or a list of them.
    #[serde(default)]
    prompt: Option<PromptDto>,
    /// Tokens to generate, at least 1 (default 16).
    #[serde(default)]
    max_tokens: Option<i64>,
    /// 0..=2 (default 0: greedy).
    #[serde(default)]
    temperature: Option<f64>,
    /// Nucleus sampling, (0, 1].
    #[serde(default)]
    top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default)]
    top_k: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    stop: Option<StopDto>,
    /// Seed of sampled decoding: the same seed gives the same text.
    #[serde(default)]
    seed: Option<u64>,
    /// Answer as Server-Sent Events of `text_completion` chunks, ending with `data: [DONE]`.
    #[serde(default)]
    stream: Option<bool>,
    /// Put the prompt before the continuation in `text`.
    #[serde(default)]
    echo: Option<bool>,
    /// Return each generated token's log-probability with this many alternatives,
    /// 0..=20 (not with `echo`). Local models on the native engine serve them.
    #[serde(default)]
    logprobs: Option<i64>,
    /// Choices per prompt: 1 only.
    #[serde(default)]
    n: Option<i64>,
    /// A `usage` chunk before `[DONE]` when streaming.
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

impl TextCompletionRequestDto {
    /// The core request, whether to stream, and whether a final `usage` chunk was asked
    /// for; an option we do not serve is an error naming it.
    pub(crate) fn into_parts(self) -> Result<(llamafarm_core::chat::TextCompletionRequest, bool, bool), String> {
        if self.n.is_some_and(|n| n != 1) {
            return Err("n must be 1 (one choice per prompt)".into());
        }
        let prompts = match self.prompt {
            Some(PromptDto::One(p)) => vec![p],
            Some(PromptDto::Many(v)) => v,
            None => Vec::new(),
        };
        let stop = match self.stop {
            Some(StopDto::One(s)) => vec![s],
            Some(StopDto::Many(v)) => v,
            None => Vec::new(),
        };
        let req = llamafarm_core::chat::TextCompletionRequest {
            model: self.model.unwrap_or_default(),
            prompts,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stop,
            seed: self.seed,
            echo: self.echo.unwrap_or(false),
            logprobs: self.logprobs,
        };
        Ok((req, self.stream == Some(true), self.stream_options.is_some_and(|o| o.include_usage)))
    }
}

/// The legacy completions' `logprobs` of a choice: per generated token, its text, its
/// log-probability, the most likely alternatives and its character offset in `text`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TextLogprobsDto {
    tokens: Vec<String>,
    token_logprobs: Vec<f32>,
    /// Per token: alternative token -> log-probability, most likely first.
    #[schema(value_type = Vec<Object>)]
    top_logprobs: Vec<TopMap>,
    text_offset: Vec<usize>,
}

/// Alternatives as a JSON object in their order (the values as the `f32`s they are, so they
/// print as `token_logprobs` does).
pub(crate) struct TopMap(Vec<(String, f32)>);

impl Serialize for TopMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl TextLogprobsDto {
    fn of(l: &[TokenLogprob]) -> Self {
        let mut offset = 0;
        let mut text_offset = Vec::with_capacity(l.len());
        for t in l {
            text_offset.push(offset);
            offset += t.token.chars().count();
        }
        Self {
            tokens: l.iter().map(|t| t.token.clone()).collect(),
            token_logprobs: l.iter().map(|t| t.logprob).collect(),
            top_logprobs: l.iter().map(|t| TopMap(t.top.iter().map(|x| (x.token.clone(), x.logprob)).collect())).collect(),
            text_offset,
        }
    }
}

/// One choice of a `text_completion`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TextChoiceDto {
    text: String,
    index: usize,
    /// With `logprobs` (in a stream, in the choice's last chunk), else `null`.
    logprobs: Option<TextLogprobsDto>,
    /// `stop` or `length` (`null` in a stream until the choice's last chunk).
    finish_reason: Option<&'static str>,
}

/// Token counts of a text completion (all prompts together).
#[derive(Serialize, ToSchema)]
pub(crate) struct TextUsage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

/// A text completion, whole or one streamed chunk of it.
#[derive(Serialize, ToSchema)]
pub(crate) struct TextCompletionDto {
    /// `cmpl-...`.
    id: String,
    /// Always `text_completion`.
    object: &'static str,
    /// Unix seconds.
    created: i64,
    model: String,
    choices: Vec<TextChoiceDto>,
    /// Whole answers; in a stream only the last chunk when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<TextUsage>,
}

impl TextCompletionDto {
    /// A chunk of a stream with `text` for choice `index`.
    pub(crate) fn chunk(id: &str, created: i64, model: &str, index: usize, text: &str) -> Self {
        Self {
            id: id.to_string(),
            object: "text_completion",
            created,
            model: model.to_string(),
            choices: vec![TextChoiceDto { text: text.to_string(), index, logprobs: None, finish_reason: None }],
            usage: None,
        }
    }

    /// The last chunk of choice `index`: its finish reason and log-probabilities.
    pub(crate) fn finish_chunk(id: &str, created: i64, model: &str, index: usize, c: &llamafarm_core::chat::TextChoice) -> Self {
        let mut chunk = Self::chunk(id, created, model, index, "");
        chunk.choices[0].finish_reason = Some(c.finish_reason.as_str());
        chunk.choices[0].logprobs = c.logprobs.as_deref().map(TextLogprobsDto::of);
        chunk
    }

    /// The `usage` of `c`.
    pub(crate) fn usage(c: &llamafarm_core::chat::TextCompletion) -> TextUsage {
        let (p, g) = c.choices.iter().fold((0, 0), |(p, g), x| (p + x.prompt_tokens, g + x.completion_tokens));
        TextUsage { prompt_tokens: p, completion_tokens: g, total_tokens: p + g }
    }

    /// The last chunk of a stream: usage only (OpenAI's `include_usage`).
    pub(crate) fn usage_chunk(c: &llamafarm_core::chat::TextCompletion) -> Self {
        Self { id: c.id.clone(), object: "text_completion", created: c.created, model: c.model.clone(), choices: Vec::new(), usage: Some(Self::usage(c)) }
    }
}

impl From<llamafarm_core::chat::TextCompletion> for TextCompletionDto {
    fn from(c: llamafarm_core::chat::TextCompletion) -> Self {
        let usage = Some(Self::usage(&c));
        Self {
            choices: c
                .choices
                .into_iter()
                .enumerate()
                .map(|(index, x)| TextChoiceDto {
                    logprobs: x.logprobs.as_deref().map(TextLogprobsDto::of),
                    text: x.text,
                    index,
                    finish_reason: Some(x.finish_reason.as_str()),
                })
                .collect(),
            id: c.id,
            object: "text_completion",
            created: c.created,
            model: c.model,
            usage,
        }
    }
}

/// One session of `GET .../chat/sessions`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionInfo {
    session_id: String,
    /// Stored messages.
    message_count: usize,
    /// The first user message, cut to 80 characters.
    title: String,
    /// When the history was last written (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
}

/// `GET .../chat/sessions`: the project's sessions, the most recent first.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionList {
    total: usize,
    sessions: Vec<SessionInfo>,
}

impl From<Vec<llamafarm_core::chat::SessionSummary>> for SessionList {
    fn from(v: Vec<llamafarm_core::chat::SessionSummary>) -> Self {
        let sessions: Vec<SessionInfo> = v
            .into_iter()
            .map(|s| SessionInfo {
                session_id: s.id,
                message_count: s.messages,
                title: s.title,
                updated_at: s.updated.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })
            .collect();
        Self { total: sessions.len(), sessions }
    }
}
