//! Tool calling on any chat model (OpenAI's shape): the tools offered, how the model
//! is told about them, and how its reply is read back as calls.
//!
//! Two strategies ([`ToolStrategy`], the config's `tool_call_strategy`):
//! - `native_api`: the tools go to the model's own chat template (as Hugging Face's
//!   `apply_chat_template(tools=...)` passes them), which writes them in the syntax the
//!   model was trained on. A template that takes no tools falls back to `prompt_based`.
//! - `prompt_based`: the definitions and an instruction to answer with
//!   `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` go into the system
//!   prompt; earlier calls and results are written into the conversation as text.
//!
//! The reply is read with [`parse_calls`], which knows the common syntaxes
//! (`<tool_call>` blocks of Hermes/Qwen, `[TOOL_CALLS]` of Mistral, `<|python_tag|>` of
//! Llama 3.1, and a bare JSON call). With `tool_choice` `required` or a named function
//! the call is not left to the model: a [`Grammar`] built from the tools' parameter
//! schemas ([`ToolSet::forced_grammar`]) makes the reply a valid call with the declared
//! arguments on any model.
//!
//! Streaming: [`ToolStream`] sits between the engine and the caller's sink. Text that
//! cannot be a call is passed through at once; text that may be one is held until it
//! is known, and a call reaches the sink as one [`StreamEvent::ToolCall`].

use super::grammar::Grammar;
use super::{ChatMessage, StreamEvent};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A call the model made (OpenAI's `tool_calls[]` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// `call_...`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

fn function() -> String {
    "function".into()
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON object as text (OpenAI sends them as a string).
    #[serde(default, deserialize_with = "arguments_text")]
    pub arguments: String,
}

/// Arguments as a JSON string, or (as some clients send them) an object.
fn arguments_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => "{}".into(),
        v => v.to_string(),
    })
}

impl ToolCall {
    /// A call of `name` with `arguments`, under a fresh id.
    pub fn new(name: impl Into<String>, arguments: &Value) -> Self {
        Self {
            id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
            kind: function(),
            function: FunctionCall { name: name.into(), arguments: arguments.to_string() },
        }
    }

    /// The arguments as JSON (an empty object when they do not parse).
    pub fn arguments(&self) -> Value {
        serde_json::from_str(&self.function.arguments).unwrap_or_else(|_| json!({}))
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Its name (`[A-Za-z0-9_.-]`, at most 64 characters, as OpenAI's).
    pub name: String,
    /// What it does (shown to the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of its arguments (an object schema; empty means no arguments).
    #[serde(default = "empty_object")]
    pub parameters: Value,
}

fn empty_object() -> Value {
    json!({"type": "object", "properties": {}})
}

impl Tool {
    /// OpenAI's tool object (`{"type": "function", "function": {...}}`), as chat templates take it.
    pub fn openai(&self) -> Value {
        json!({"type": "function", "function": {"name": self.name, "description": self.description.clone().unwrap_or_default(), "parameters": self.parameters}})
    }

    /// Check the name and the parameter schema (which the grammar engine must compile).
    pub fn check(&self) -> Result<()> {
        self.check_name()?;
        if self.parameters.as_object().is_some_and(|m| !m.is_empty()) {
            Grammar::JsonSchema(self.parameters.clone()).check().map_err(|e| Error::invalid(format!("tools[{}].function.parameters", self.name), e.to_string()))?;
        }
        Ok(())
    }

    fn check_name(&self) -> Result<()> {
        let ok = !self.name.is_empty() && self.name.len() <= 64 && self.name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return Err(Error::invalid("tools[].function.name", format!("must be 1 to 64 letters, digits, '_', '-' or '.', got '{}'", self.name)));
        }
        if !self.parameters.is_object() {
            return Err(Error::invalid(format!("tools[{}].function.parameters", self.name), "must be a JSON schema object"));
        }
        Ok(())
    }
}

/// A tool call the server made for the model (an MCP tool) and what it gave back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStep {
    /// The call.
    pub call: ToolCall,
    /// The MCP server that ran it.
    pub server: String,
    /// The result (or what went wrong), as the model read it.
    pub content: String,
    /// The call succeeded.
    pub ok: bool,
    /// Milliseconds it took.
    pub duration_ms: f64,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the default when tools are offered).
    #[default]
    Auto,
    /// No calls: the model answers.
    None,
    /// At least one call (grammar-constrained).
    Required,
    /// A call of this function (grammar-constrained).
    Function(String),
}

impl ToolChoice {
    /// OpenAI's value: `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name": ...}}`.
    pub fn from_value(v: &Value) -> Result<Self> {
        match v {
            Value::String(s) => match s.as_str() {
                "auto" => Ok(Self::Auto),
                "none" => Ok(Self::None),
                "required" | "any" => Ok(Self::Required),
                other => Err(Error::invalid("tool_choice", format!("must be auto, none, required or a function, got '{other}'"))),
            },
            Value::Object(m) => {
                let name = m.get("function").and_then(|f| f.get("name")).or_else(|| m.get("name")).and_then(Value::as_str);
                name.map(|n| Self::Function(n.to_string()))
                    .ok_or_else(|| Error::invalid("tool_choice", "names no function: use {\"type\": \"function\", \"function\": {\"name\": ...}}"))
            }
            Value::Null => Ok(Self::Auto),
            other => Err(Error::invalid("tool_choice", format!("must be a string or an object, got {other}"))),
        }
    }
}

impl Serialize for ToolChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::None => s.serialize_str("none"),
            Self::Required => s.serialize_str("required"),
            Self::Function(n) => json!({"type": "function", "function": {"name": n}}).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::from_value(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `tool_call_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolStrategy {
    /// Through the model's chat template (the default).
    #[default]
    NativeApi,
    /// Through the system prompt.
    PromptBased,
}

impl ToolStrategy {
    /// `native_api` or `prompt_based`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "native_api" | "native" => Ok(Self::NativeApi),
            "prompt_based" | "prompt" => Ok(Self::PromptBased),
            other => Err(Error::invalid("tool_call_strategy", format!("must be native_api or prompt_based, got '{other}'"))),
        }
    }
}

/// The tools of one generation and how they are offered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolSet {
    /// The tools (request tools, config tools, MCP tools).
    pub tools: Vec<Tool>,
    /// `tool_choice`.
    pub choice: ToolChoice,
    /// Several calls in one reply (OpenAI's `parallel_tool_calls`, default true).
    pub parallel: bool,
    /// How they are offered.
    pub strategy: ToolStrategy,
}

impl ToolSet {
    /// Check names, schemas and the choice against the tools.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.tools {
            t.check()?;
            if !seen.insert(t.name.as_str()) {
                return Err(Error::invalid("tools", format!("name '{}' more than once", t.name)));
            }
        }
        match &self.choice {
            ToolChoice::Function(n) if !self.tools.iter().any(|t| &t.name == n) => Err(Error::invalid(
                "tool_choice",
                format!("names function '{n}', which is not among the tools ({})", self.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")),
            )),
            ToolChoice::Required if self.tools.is_empty() => Err(Error::invalid("tool_choice", "is 'required' but no tools are given")),
            _ => Ok(()),
        }
    }

    /// Whether the model is offered any tool.
    pub fn active(&self) -> bool {
        !self.tools.is_empty() && self.choice != ToolChoice::None
    }

    /// The grammar of a forced call (`required` or a named function): a JSON object
    /// `{"name": ..., "arguments": {...}}` whose arguments follow the tool's schema.
    pub fn forced_grammar(&self) -> Option<Grammar> {
        let one = |t: &Tool| {
            let mut params =
                if t.parameters.as_object().is_some_and(|m| !m.is_empty()) { t.parameters.clone() } else { json!({"type": "object", "properties": {}}) };
            // Only the declared arguments (OpenAI's strict mode), unless the schema says otherwise.
            if let Some(m) = params.as_object_mut() {
                m.entry("additionalProperties").or_insert(Value::Bool(false));
            }
            json!({"type": "object", "properties": {"name": {"const": t.name}, "arguments": params}, "required": ["name", "arguments"], "additionalProperties": false})
        };
        match &self.choice {
            ToolChoice::Function(n) => self.tools.iter().find(|t| &t.name == n).map(|t| Grammar::JsonSchema(one(t))),
            ToolChoice::Required => Some(Grammar::JsonSchema(json!({"anyOf": self.tools.iter().map(one).collect::<Vec<_>>()}))),
            _ => None,
        }
    }

    /// The system-prompt text of the `prompt_based` strategy.
    pub fn instructions(&self) -> String {
        let mut s = String::from("# Tools\nYou can call these tools. Each is a JSON object with its name, what it does and the JSON schema of its arguments:\n");
        for t in &self.tools {
            s.push_str(&json!({"name": t.name, "description": t.description.clone().unwrap_or_default(), "parameters": t.parameters}).to_string());
            s.push('\n');
        }
        s.push_str("\nTo call a tool, reply with only:\n<tool_call>{\"name\": \"<tool name>\", \"arguments\": {<the arguments as JSON>}}</tool_call>\n");
        if self.parallel {
            s.push_str("You may write several <tool_call> blocks to call several tools. ");
        }
        s.push_str("Results come back in the next message. When you need no tool, answer the user directly.");
        s
    }
}

/// Write tool calls and tool results into plain messages, for a template that does not
/// take them: an assistant's calls become `<tool_call>` blocks, a tool result becomes a
/// user message, and consecutive messages of one role are merged (templates such as
/// Gemma's require roles to alternate).
pub fn as_plain_messages(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for m in messages {
        let plain = match m.role.as_str() {
            "assistant" if m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) => {
                let mut text = m.content.clone();
                for c in m.tool_calls.iter().flatten() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&format!("<tool_call>{}</tool_call>", json!({"name": c.function.name, "arguments": c.arguments()})));
                }
                ChatMessage::new("assistant", text)
            }
            "tool" => {
                let name = m.name.clone().or_else(|| {
                    let id = m.tool_call_id.as_deref()?;
                    messages.iter().flat_map(|x| x.tool_calls.iter().flatten()).find(|c| c.id == id).map(|c| c.function.name.clone())
                });
                let label = name.map(|n| format!("Result of the tool {n}")).unwrap_or_else(|| "Tool result".into());
                ChatMessage::new("user", format!("<tool_response>\n{label}:\n{}\n</tool_response>", m.content))
            }
            _ => ChatMessage::new(m.role.clone(), m.content.clone()),
        };
        match out.last_mut() {
            Some(prev) if prev.role == plain.role && plain.role != "system" => {
                prev.content.push_str("\n\n");
                prev.content.push_str(&plain.content);
            }
            _ => out.push(plain),
        }
    }
    out
}

/// Check the tool parts of a conversation: every tool result answers an earlier call
/// (by `tool_call_id`), and every call's arguments are a JSON object.
pub fn validate_messages(messages: &[ChatMessage]) -> Result<()> {
    let mut ids = std::collections::HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        for (j, c) in m.tool_calls.iter().flatten().enumerate() {
            if m.role != "assistant" {
                return Err(Error::invalid(format!("messages[{i}].tool_calls"), "are only allowed on assistant messages"));
            }
            if c.function.name.is_empty() {
                return Err(Error::invalid(format!("messages[{i}].tool_calls[{j}].function.name"), "is required"));
            }
            match serde_json::from_str::<Value>(&c.function.arguments) {
                Ok(Value::Object(_)) => {}
                _ => {
                    return Err(Error::invalid(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        format!("must be a JSON object, got {:?}", c.function.arguments.chars().take(80).collect::<String>()),
                    ))
                }
            }
            ids.insert(c.id.as_str());
        }
        if m.role == "tool" {
            match m.tool_call_id.as_deref() {
                None | Some("") => return Err(Error::invalid(format!("messages[{i}].tool_call_id"), "is required on a tool message")),
                Some(id) if !ids.contains(id) => {
                    return Err(Error::invalid(format!("messages[{i}].tool_call_id"), format!("'{id}' answers no earlier assistant tool call")))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

const MARKERS: &[&str] = &["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function_call>"];

/// One call written as JSON: `{"name", "arguments" | "parameters"}` (also OpenAI's
/// `{"function": {...}}`), for a known tool.
fn call_from_json(v: &Value, tools: &[Tool]) -> Option<ToolCall> {
    let v = v.get("function").filter(|f| f.is_object()).unwrap_or(v);
    let name = v.get("name")?.as_str()?;
    let tool = tools.iter().find(|t| t.name == name)?;
    let args = match v.get("arguments").or_else(|| v.get("parameters")) {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object)?,
        Some(a @ Value::Object(_)) => a.clone(),
        None | Some(Value::Null) => json!({}),
        Some(_) => return None,
    };
    Some(ToolCall::new(tool.name.clone(), &args))
}

/// The JSON values at the start of `s`, one after another (whitespace, commas and
/// semicolons between them).
fn json_values(s: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    loop {
        let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let used = it.byte_offset();
                out.push(v);
                rest = rest[used..].trim_start_matches(|c: char| c.is_whitespace() || c == ',' || c == ';');
            }
            _ => return out,
        }
    }
}

fn calls_in(values: Vec<Value>, tools: &[Tool]) -> Vec<ToolCall> {
    values
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a,
            v => vec![v],
        })
        .filter_map(|v| call_from_json(&v, tools))
        .collect()
}

fn strip_fence(s: &str) -> &str {
    let t = s.trim();
    match t.strip_prefix("```") {
        Some(r) => {
            let r = r.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            r.strip_suffix("```").unwrap_or(r).trim()
        }
        None => t,
    }
}

/// Read the calls in a reply: the text outside them, and the calls (of known tools
/// only). `None` when the reply calls nothing.
pub fn parse_calls(text: &str, tools: &[Tool]) -> Option<(String, Vec<ToolCall>)> {
    if tools.is_empty() {
        return None;
    }
    // `<tool_call>...</tool_call>` blocks (the last may be unclosed).
    for (open, close) in [("<tool_call>", "</tool_call>"), ("<function_call>", "</function_call>")] {
        if let Some(first) = text.find(open) {
            let mut calls = Vec::new();
            let mut rest = &text[first..];
            while let Some(at) = rest.find(open) {
                let body = &rest[at + open.len()..];
                let (inner, next) = match body.find(close) {
                    Some(e) => (&body[..e], &body[e + close.len()..]),
                    None => (body, ""),
                };
                calls.extend(calls_in(json_values(strip_fence(inner)), tools));
                rest = next;
            }
            if !calls.is_empty() {
                return Some((text[..first].trim().to_string(), calls));
            }
        }
    }
    for marker in ["[TOOL_CALLS]", "<|python_tag|>"] {
        if let Some(at) = text.find(marker) {
            let calls = calls_in(json_values(strip_fence(&text[at + marker.len()..])), tools);
            if !calls.is_empty() {
                return Some((text[..at].trim().to_string(), calls));
            }
        }
    }
    // A reply that is only a JSON call (or a list of them).
    let body = strip_fence(text);
    if body.starts_with('{') || body.starts_with('[') {
        let calls = calls_in(json_values(body), tools);
        if !calls.is_empty() {
            return Some((String::new(), calls));
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not yet known whether the reply is a call.
    Undecided,
    /// Plain text: passed through (a `<tool_call>` later in it is still caught).
    Text,
    /// A call, or text that may be one: held to the end.
    Held,
}

/// Separates tool calls from streamed text (see the module docs).
pub struct ToolStream<'t> {
    tools: &'t [Tool],
    forced: bool,
    mode: Mode,
    buf: String,
    /// Text already passed on.
    sent: String,
}

impl<'t> ToolStream<'t> {
    /// `forced`: the reply is a grammar-constrained call (held whole, read as JSON).
    pub fn new(tools: &'t [Tool], forced: bool) -> Self {
        Self { tools, forced, mode: if forced { Mode::Held } else { Mode::Undecided }, buf: String::new(), sent: String::new() }
    }

    /// Take a piece of answer text; passes on what is known to be text.
    pub fn push(&mut self, text: &str, sink: &mut dyn FnMut(StreamEvent<'_>) -> bool) -> bool {
        self.buf.push_str(text);
        if self.mode == Mode::Undecided {
            let t = self.buf.trim_start();
            if t.is_empty() {
                return true;
            }
            let starts_call = t.starts_with('{') || t.starts_with('[') || t.starts_with("```") || MARKERS.iter().any(|m| t.starts_with(m));
            let may_start = MARKERS.iter().any(|m| m.starts_with(t)) || "```".starts_with(t);
            self.mode = if starts_call {
                Mode::Held
            } else if may_start {
                return true;
            } else {
                Mode::Text
            };
        }
        if self.mode != Mode::Text {
            return true;
        }
        // Text: pass on all but a tail that may begin a marker.
        if let Some(at) = MARKERS.iter().filter_map(|m| self.buf.find(m)).min() {
            let before: String = self.buf[..at].to_string();
            self.buf.drain(..at);
            self.mode = Mode::Held;
            return self.emit(&before, sink);
        }
        let mut keep = 0;
        for m in MARKERS {
            for (i, _) in m.char_indices().skip(1) {
                if i > keep && self.buf.ends_with(&m[..i]) {
                    keep = i;
                }
            }
        }
        let cut = self.buf.len() - keep;
        let out: String = self.buf[..cut].to_string();
        self.buf.drain(..cut);
        self.emit(&out, sink)
    }

    fn emit(&mut self, text: &str, sink: &mut dyn FnMut(StreamEvent<'_>) -> bool) -> bool {
        if text.is_empty() {
            return true;
        }
        self.sent.push_str(text);
        sink(StreamEvent::Content(text))
    }

    /// The end of the reply: the calls found (each passed to `sink`), and the whole
    /// answer text without them.
    pub fn finish(mut self, sink: &mut dyn FnMut(StreamEvent<'_>) -> bool) -> (String, Vec<ToolCall>) {
        let held = std::mem::take(&mut self.buf);
        let parsed = if self.forced { Some((String::new(), calls_in(json_values(&held), self.tools))) } else { parse_calls(&held, self.tools) };
        match parsed {
            Some((before, calls)) if !calls.is_empty() => {
                self.emit(&before, sink);
                for c in &calls {
                    sink(StreamEvent::ToolCall(c));
                }
                (self.sent.trim().to_string(), calls)
            }
            _ => {
                self.emit(&held, sink);
                (self.sent, Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        vec![
            Tool {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            },
            Tool { name: "now".into(), description: None, parameters: empty_object() },
        ]
    }

    #[test]
    fn parses_the_common_syntaxes() {
        let t = tools();
        for text in [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "```json\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}\n```",
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}",
        ] {
            let (before, calls) = parse_calls(text, &t).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(before, "");
            assert_eq!(calls.len(), 1, "{text}");
            assert_eq!(calls[0].function.name, "get_weather");
            assert_eq!(calls[0].arguments(), json!({"city": "Paris"}));
            assert!(calls[0].id.starts_with("call_"));
        }
        let (before, calls) =
            parse_calls("Let me look.\n<tool_call>{\"name\": \"now\"}</tool_call><tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}", &t)
                .unwrap();
        assert_eq!(before, "Let me look.");
        assert_eq!(calls.iter().map(|c| c.function.name.as_str()).collect::<Vec<_>>(), ["now", "get_weather"]);
        // Unknown tools and plain JSON answers are not calls.
        assert!(parse_calls("{\"name\": \"rm_rf\", \"arguments\": {}}", &t).is_none());
        assert!(parse_calls("{\"answer\": 4}", &t).is_none());
        assert!(parse_calls("The weather is nice.", &t).is_none());
    }

    fn stream(pieces: &[&str], forced: bool) -> (Vec<String>, String, Vec<ToolCall>) {
        let t = tools();
        let mut events = Vec::new();
        let mut ts = ToolStream::new(&t, forced);
        let mut sink = |e: StreamEvent<'_>| {
            events.push(match e {
                StreamEvent::Content(c) => format!("text:{c}"),
                StreamEvent::ToolCall(c) => format!("call:{}", c.function.name),
                StreamEvent::Thinking(c) => format!("think:{c}"),
                StreamEvent::ToolResult(s) => format!("result:{}", s.content),
            });
            true
        };
        for p in pieces {
            ts.push(p, &mut sink);
        }
        let (text, calls) = ts.finish(&mut sink);
        (events, text, calls)
    }

    #[test]
    fn streams_text_at_once_and_holds_calls() {
        let (ev, text, calls) = stream(&["The ", "sky ", "is blue."], false);
        assert_eq!(ev, ["text:The ", "text:sky ", "text:is blue."]);
        assert_eq!(text, "The sky is blue.");
        assert!(calls.is_empty());
        let (ev, _, calls) = stream(&["<tool", "_call>{\"name\": \"now\", ", "\"arguments\": {}}</tool_call>"], false);
        assert_eq!(ev, ["call:now"]);
        assert_eq!(calls.len(), 1);
        let (ev, text, _) = stream(&["Checking. <tool_", "call>{\"name\": \"now\"}</tool_call>"], false);
        assert_eq!(ev, ["text:Checking. ", "call:now"]);
        assert_eq!(text, "Checking.");
        // JSON that is no call comes out as text at the end.
        let (ev, text, calls) = stream(&["{\"a\": ", "1}"], false);
        assert_eq!(ev, ["text:{\"a\": 1}"]);
        assert_eq!((text.as_str(), calls.len()), ("{\"a\": 1}", 0));
        let (ev, _, _) = stream(&["{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}"], true);
        assert_eq!(ev, ["call:get_weather"]);
    }

    #[test]
    fn forced_grammar_and_validation() {
        let set = ToolSet { tools: tools(), choice: ToolChoice::Function("get_weather".into()), parallel: true, strategy: ToolStrategy::NativeApi };
        set.validate().unwrap();
        let Some(Grammar::JsonSchema(s)) = set.forced_grammar() else { panic!() };
        assert_eq!(s["properties"]["name"]["const"], "get_weather");
        Grammar::JsonSchema(s).check().unwrap();
        let bad = ToolSet { choice: ToolChoice::Function("nope".into()), ..set.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("not among the tools"));
        assert!(ToolChoice::from_value(&json!("sometimes")).is_err());
        assert_eq!(ToolChoice::from_value(&json!({"type": "function", "function": {"name": "x"}})).unwrap(), ToolChoice::Function("x".into()));
    }

    #[test]
    fn conversations_are_checked_and_flattened() {
        let call = ToolCall::new("now", &json!({}));
        let mut asst = ChatMessage::new("assistant", "");
        asst.tool_calls = Some(vec![call.clone()]);
        let mut result = ChatMessage::new("tool", "12:00");
        result.tool_call_id = Some(call.id.clone());
        let msgs = vec![ChatMessage::new("user", "time?"), asst.clone(), result.clone(), ChatMessage::new("user", "thanks")];
        validate_messages(&msgs).unwrap();
        let mut orphan = result.clone();
        orphan.tool_call_id = Some("call_unknown".into());
        assert!(validate_messages(&[ChatMessage::new("user", "x"), orphan]).unwrap_err().to_string().contains("answers no earlier"));
        let mut bad = asst.clone();
        bad.tool_calls.as_mut().unwrap()[0].function.arguments = "{not json".into();
        assert!(validate_messages(&[bad]).is_err());
        let plain = as_plain_messages(&msgs);
        assert_eq!(plain.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["user", "assistant", "user"]);
        assert!(plain[1].content.starts_with("<tool_call>{") && plain[1].content.contains("\"name\":\"now\""), "{}", plain[1].content);
        assert!(plain[2].content.contains("Result of the tool now:\n12:00") && plain[2].content.ends_with("thanks"));
    }
}
