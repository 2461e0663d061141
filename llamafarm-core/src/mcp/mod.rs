//! MCP client: a project's `mcp.servers` as tools for its models.
//!
//! Each server is connected on first use (stdio servers are started with their
//! `command`, `args` and `env`; `http` servers are reached over streamable HTTP at
//! `base_url` with their `headers`, and `sse` servers over the older HTTP+SSE transport
//! (`mcp/sse.rs`), or streamable HTTP where `base_url` opens no event stream), through
//! `rmcp`, the official Rust SDK, on a small runtime of its own. A connection is kept per
//! project and server, and replaced when the server's config changes or the connection
//! fails (a crashed server is started again on the next call). A kept connection's tools
//! are listed again when the last listing is older than [`RELIST_AFTER`], so a server that
//! adds or drops tools while it runs is seen within that time, on every protocol version
//! (a `tools/list_changed` notification needs a subscription on the newest one).
//!
//! Failures never hang a chat: connecting and each call have a time limit, and a
//! server that cannot be reached, crashes, times out or answers with an error gives
//! the model an error result ([`ToolOutcome::ok`] false) it can read.

mod sse;

use crate::config::McpServerConfig;
use crate::error::{Error, Result};
use crate::llm::Tool;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Time to start or reach a server and list its tools.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Time one tool call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Age of a connection's tool listing past which the next use lists the tools again.
pub const RELIST_AFTER: Duration = Duration::from_secs(30);

type Client = RunningService<RoleClient, ()>;

struct Conn {
    /// The server's config as it was connected (a changed config reconnects).
    config: String,
    client: Arc<Client>,
    /// The tools, and when they were listed.
    tools: Mutex<(Vec<Tool>, std::time::Instant)>,
}

/// A tool of an MCP server, as offered to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// The server's `name` in the config.
    pub server: String,
    /// The tool.
    pub tool: Tool,
}

/// What a tool call gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The text for the model (the result, or what went wrong).
    pub content: String,
    /// The call succeeded.
    pub ok: bool,
    /// Milliseconds it took.
    pub duration_ms: f64,
}

/// The MCP connections of a library instance (`lf.mcp()`).
pub struct McpClients {
    connect_timeout: Duration,
    call_timeout: Duration,
    relist_after: Duration,
    rt: OnceLock<std::result::Result<tokio::runtime::Runtime, String>>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// One connect at a time per key.
    connecting: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn str_map(m: &Option<crate::config::ConfigMap>) -> Vec<(String, String)> {
    m.iter()
        .flatten()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

impl Default for McpClients {
    fn default() -> Self {
        Self::with_timeouts(CONNECT_TIMEOUT, CALL_TIMEOUT)
    }
}

impl McpClients {
    /// Connections whose start (and tool listing) may take `connect`, and each call `call`.
    pub fn with_timeouts(connect: Duration, call: Duration) -> Self {
        Self {
            connect_timeout: connect,
            call_timeout: call,
            relist_after: RELIST_AFTER,
            rt: OnceLock::new(),
            conns: Default::default(),
            connecting: Default::default(),
        }
    }

    /// List a kept connection's tools again once its listing is older than `after`
    /// (default [`RELIST_AFTER`]).
    pub fn relist_after(mut self, after: Duration) -> Self {
        self.relist_after = after;
        self
    }

    async fn list(client: Arc<Client>) -> std::result::Result<Vec<Tool>, String> {
        let tools = client.list_all_tools().await.map_err(|e| format!("did not list its tools: {e}"))?;
        Ok(tools
            .into_iter()
            .map(|t| Tool { name: t.name.to_string(), description: t.description.map(|d| d.to_string()), parameters: Value::Object((*t.input_schema).clone()) })
            .collect())
    }

    /// The tools of a kept connection, listed again when the listing is old. A failed
    /// listing drops the connection (the next use connects afresh) and gives `None`.
    fn current_tools(&self, key: &str, conn: &Conn) -> Option<Vec<Tool>> {
        let (tools, at) = lock(&conn.tools).clone();
        if at.elapsed() < self.relist_after {
            return Some(tools);
        }
        let why = match self.run(self.connect_timeout, Self::list(conn.client.clone())) {
            Ok(Some(Ok(fresh))) => {
                *lock(&conn.tools) = (fresh.clone(), std::time::Instant::now());
                return Some(fresh);
            }
            Ok(Some(Err(e))) => e,
            Ok(None) => format!("did not list its tools within {:.1} s", self.connect_timeout.as_secs_f64()),
            Err(e) => e.to_string(),
        };
        tracing::warn!(server = %key, error = %why, "MCP server dropped; it is connected again on its next use");
        self.forget(key);
        None
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.rt
            .get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("lf-mcp").enable_all().build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::internal(format!("MCP runtime: {e}")))
    }

    /// Run `fut` on the MCP runtime and wait for it, at most `limit`.
    fn run<T: Send + 'static>(&self, limit: Duration, fut: impl std::future::Future<Output = T> + Send + 'static) -> Result<Option<T>> {
        let rt = self.runtime()?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let out = tokio::time::timeout(limit, fut).await.ok();
            let _ = tx.send(out);
        });
        Ok(rx.recv().ok().flatten())
    }

    async fn connect(s: McpServerConfig) -> std::result::Result<(Arc<Client>, Vec<Tool>), String> {
        let client = match s.transport.as_str() {
            "stdio" => {
                let command = s.command.clone().filter(|c| !c.trim().is_empty()).ok_or("has no command")?;
                let mut cmd = tokio::process::Command::new(&command);
                cmd.args(s.args.clone().unwrap_or_default()).envs(str_map(&s.env)).kill_on_drop(true);
                let transport = rmcp::transport::TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .map(|(t, _)| t)
                    .map_err(|e| format!("could not start '{command}': {e}"))?;
                ().serve(transport).await.map_err(|e| format!("did not answer MCP's initialize: {e}"))?
            }
            "http" | "sse" | "streamable_http" | "streamable-http" => {
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                let url = s.base_url.clone().filter(|u| !u.trim().is_empty()).ok_or("has no base_url")?;
                let mut headers = http::HeaderMap::new();
                for (k, v) in str_map(&s.headers) {
                    let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header '{k}' is not a valid header name"))?;
                    let value = http::HeaderValue::from_str(&v).map_err(|_| format!("header '{k}' has a value that is not valid in a header"))?;
                    headers.insert(name, value);
                }
                // `sse`: the HTTP+SSE transport, or streamable HTTP where the URL answers
                // with no event stream.
                if s.transport == "sse" {
                    if let Some(t) = sse::SseTransport::connect(&url, headers.clone()).await? {
                        let client = ().serve(t).await.map_err(|e| format!("at {url} did not answer MCP's initialize: {e}"))?;
                        return Self::listed(client).await;
                    }
                }
                let auth = headers.remove(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok().map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_string()));
                let mut cfg =
                    StreamableHttpClientTransportConfig::with_uri(url.clone()).custom_headers(headers.into_iter().filter_map(|(k, v)| Some((k?, v))).collect());
                if let Some(a) = auth {
                    cfg = cfg.auth_header(a);
                }
                let transport = rmcp::transport::StreamableHttpClientTransport::from_config(cfg);
                ().serve(transport).await.map_err(|e| format!("at {url} did not answer MCP's initialize: {e}"))?
            }
            other => return Err(format!("has transport '{other}': use stdio, http or sse")),
        };
        Self::listed(client).await
    }

    async fn listed(client: Client) -> std::result::Result<(Arc<Client>, Vec<Tool>), String> {
        let client = Arc::new(client);
        let tools = Self::list(client.clone()).await?;
        Ok((client, tools))
    }

    fn conn(&self, key: &str, s: &McpServerConfig) -> Result<Arc<Conn>> {
        let config = serde_json::to_string(s).unwrap_or_default();
        let current = |me: &Self| lock(&me.conns).get(key).filter(|c| c.config == config).cloned();
        if let Some(c) = current(self) {
            return Ok(c);
        }
        let gate = lock(&self.connecting).entry(key.to_string()).or_default().clone();
        let _g = lock(&gate);
        if let Some(c) = current(self) {
            return Ok(c);
        }
        let what = || format!("MCP server '{}'", s.name);
        let (client, tools) = self
            .run(self.connect_timeout, Self::connect(s.clone()))?
            .ok_or_else(|| Error::unavailable(what(), format!("did not start or answer within {:.1} s", self.connect_timeout.as_secs_f64())))?
            .map_err(|e| Error::unavailable(what(), e))?;
        let conn = Arc::new(Conn { config, client, tools: Mutex::new((tools, std::time::Instant::now())) });
        if let Some(old) = lock(&self.conns).insert(key.to_string(), conn.clone()) {
            self.close(old);
        }
        Ok(conn)
    }

    fn close(&self, old: Arc<Conn>) {
        if let Ok(rt) = self.runtime() {
            let client = old.client.clone();
            rt.spawn(async move { client.cancellation_token().cancel() });
        }
    }

    fn forget(&self, key: &str) {
        if let Some(old) = lock(&self.conns).remove(key) {
            self.close(old);
        }
    }

    /// The tools of `servers` (connecting them as needed), for project `scope`. A server
    /// that cannot be reached is left out, with a warning in the log; the others' tools
    /// are still offered. A name two servers share is offered once (the first).
    pub fn tools(&self, scope: &str, servers: &[McpServerConfig]) -> Vec<McpTool> {
        let mut out: Vec<McpTool> = Vec::new();
        for s in servers {
            let key = format!("{scope}/{}", s.name);
            // A kept connection whose listing fails is dropped: connect once more.
            let tools = match self.conn(&key, s) {
                Ok(c) => match self.current_tools(&key, &c) {
                    Some(t) => Ok(t),
                    None => self.conn(&key, s).map(|c| lock(&c.tools).0.clone()),
                },
                Err(e) => Err(e),
            };
            match tools {
                Ok(tools) => {
                    for t in tools {
                        if !out.iter().any(|x| x.tool.name == t.name) {
                            out.push(McpTool { server: s.name.clone(), tool: t });
                        }
                    }
                }
                Err(e) => tracing::warn!(server = %s.name, error = %e, "MCP server left out"),
            }
        }
        out
    }

    /// Call `tool` on server `s` with `arguments`. Failures (the server down, crashed,
    /// too slow, or answering with an error) are an outcome with `ok` false, never an
    /// error of the chat.
    pub fn call(&self, scope: &str, s: &McpServerConfig, tool: &str, arguments: Value) -> ToolOutcome {
        let t0 = std::time::Instant::now();
        let key = format!("{scope}/{}", s.name);
        let done = |content: String, ok: bool| ToolOutcome { content, ok, duration_ms: t0.elapsed().as_secs_f64() * 1000.0 };
        let conn = match self.conn(&key, s) {
            Ok(c) => c,
            Err(e) => return done(format!("error: {e}"), false),
        };
        let args = match arguments {
            Value::Object(m) => m,
            Value::Null => Default::default(),
            other => return done(format!("error: the arguments of '{tool}' must be a JSON object, got {other}"), false),
        };
        let client = conn.client.clone();
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let result = self.run(self.call_timeout, async move { client.call_tool(params).await });
        match result {
            Ok(Some(Ok(r))) => {
                let mut text: Vec<String> = r
                    .content
                    .iter()
                    .map(|c| {
                        let v = serde_json::to_value(c).unwrap_or_default();
                        v.get("text").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| v.to_string())
                    })
                    .collect();
                if text.is_empty() {
                    if let Some(sc) = &r.structured_content {
                        text.push(sc.to_string());
                    }
                }
                let failed = r.is_error == Some(true);
                let body = text.join("\n");
                done(if failed { format!("error: {body}") } else { body }, !failed)
            }
            Ok(Some(Err(e))) => {
                // The connection may be gone (a crashed server): start afresh next time.
                self.forget(&key);
                done(format!("error: MCP server '{}' failed the call: {e}", s.name), false)
            }
            Ok(None) => {
                self.forget(&key);
                done(format!("error: MCP server '{}' did not answer within {:.1} s", s.name, self.call_timeout.as_secs_f64()), false)
            }
            Err(e) => done(format!("error: {e}"), false),
        }
    }

    /// Close every connection (stdio servers are stopped).
    pub fn shutdown(&self) {
        let all: Vec<_> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in all {
            self.close(c);
        }
    }
}

impl Drop for McpClients {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(Ok(rt)) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
