//! MCP server: LlamaFarm's operations as Model Context Protocol tools, through `rmcp`,
//! the official Rust SDK.
//!
//! The tools are made from the OpenAPI document the handlers generate: each operation
//! listed in [`MCP_OPERATIONS`] (the reference's MCP-tagged operations, plus project
//! chat) is one tool named by its operation id (`chat_completions` is `chat`), whose
//! input schema holds the path and query parameters and the request body's fields
//! (schemas inlined from the document's components). A call becomes the HTTP request
//! of that operation and runs through the same router, handlers and error table as a
//! REST call: the tool's result is the response body, an error result when the
//! status is 4xx or 5xx.
//!
//! Served two ways: [`service`] is the streamable HTTP endpoint `lf serve` mounts at
//! `/mcp` (calls go to the API router in-process), and [`serve_stdio`] is `lf mcp`
//! (calls go to a running server over HTTP, through a [`Dispatch`] the CLI provides).
//! File upload (`dataset_data_upload`) takes `filename` with `content` (text) or
//! `content_base64`, as MCP has no multipart.

use axum::body::Body;
use axum::http::{Method, Request};
use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The operations offered as MCP tools: the 18 the reference tags `mcp`, and project chat.
pub const MCP_OPERATIONS: &[&str] = &[
    "projects_list",
    "project_create",
    "project_get",
    "project_update",
    "project_delete",
    "models_list",
    "dataset_list",
    "dataset_strategies_list",
    "dataset_create",
    "dataset_delete",
    "dataset_actions",
    "dataset_data_upload",
    "rag_query",
    "database_create",
    "database_get",
    "database_update",
    "database_delete",
    "task_get",
    "chat_completions",
];

/// The tool name of an operation.
fn tool_name(op: &str) -> &str {
    match op {
        "chat_completions" => "chat",
        other => other,
    }
}

/// Add the `mcp` tag to the operations in [`MCP_OPERATIONS`].
pub fn tag_operations(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
            if op.operation_id.as_deref().is_some_and(|id| MCP_OPERATIONS.contains(&id)) {
                let tags = op.tags.get_or_insert_with(Vec::new);
                if !tags.iter().any(|t| t == "mcp") {
                    tags.push("mcp".into());
                }
            }
        }
    }
}

/// Sends an operation's HTTP request and returns the status and body.
pub trait Dispatch: Send + Sync + 'static {
    /// Run `req` (a path with its query, relative to the API's root).
    fn send(&self, req: Request<Vec<u8>>) -> BoxFuture<'static, Result<(u16, Vec<u8>), String>>;
}

/// Calls go to a router in this process, as requests to `host` (the address the API
/// is reachable at, so the links it answers with, such as `task_uri`, work outside).
#[derive(Clone)]
pub struct LocalDispatch {
    /// The API router.
    pub router: axum::Router,
    /// `Host` of the requests (`host:port`).
    pub host: String,
}

impl Dispatch for LocalDispatch {
    fn send(&self, req: Request<Vec<u8>>) -> BoxFuture<'static, Result<(u16, Vec<u8>), String>> {
        let router = self.router.clone();
        let host = axum::http::HeaderValue::from_str(&self.host).ok();
        Box::pin(async move {
            use tower::ServiceExt as _;
            let (mut parts, body) = req.into_parts();
            if let Some(h) = host {
                parts.headers.insert(axum::http::header::HOST, h);
            }
            let resp = router.oneshot(Request::from_parts(parts, Body::from(body))).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.map_err(|e| e.to_string())?;
            Ok((status, bytes.to_vec()))
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum BodyKind {
    None,
    /// JSON whose fields are the tool's own arguments (`flat`) or its `body` argument.
    Json {
        flat: bool,
    },
    /// A file upload.
    Multipart,
}

/// One operation as a tool.
#[derive(Debug, Clone)]
struct Op {
    tool: String,
    method: Method,
    path: String,
    path_params: Vec<String>,
    query_params: Vec<String>,
    body: BodyKind,
    description: String,
    schema: Map<String, Value>,
}

/// Replace `$ref`s to `#/components/schemas/*` by the schemas (to a depth of 8).
fn inline(v: &Value, components: &Map<String, Value>, depth: usize) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/components/schemas/");
                return match components.get(name) {
                    Some(s) if depth < 8 => inline(s, components, depth + 1),
                    _ => json!({"type": "object"}),
                };
            }
            Value::Object(m.iter().map(|(k, x)| (k.clone(), inline(x, components, depth))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| inline(x, components, depth)).collect()),
        other => other.clone(),
    }
}

fn ops_from(doc: &Value) -> Vec<Op> {
    let components = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(id) = op["operationId"].as_str().filter(|id| MCP_OPERATIONS.contains(id)) else { continue };
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else { continue };
            let mut props = Map::new();
            let mut required: Vec<Value> = Vec::new();
            let (mut path_params, mut query_params) = (Vec::new(), Vec::new());
            for p in op["parameters"].as_array().into_iter().flatten() {
                let (Some(name), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else { continue };
                let mut schema = inline(&p["schema"], &components, 0);
                if let (Some(d), Value::Object(s)) = (p["description"].as_str(), &mut schema) {
                    s.insert("description".into(), d.into());
                }
                match place {
                    "path" => path_params.push(name.to_string()),
                    "query" => query_params.push(name.to_string()),
                    _ => continue,
                }
                props.insert(name.to_string(), schema);
                if p["required"].as_bool() == Some(true) || place == "path" {
                    required.push(name.into());
                }
            }
            let content = &op["requestBody"]["content"];
            let body = if content.get("multipart/form-data").is_some() {
                props.insert("filename".into(), json!({"type": "string", "description": "The file's name (its extension picks the parser)"}));
                props.insert("content".into(), json!({"type": "string", "description": "The file's text (or use content_base64)"}));
                props.insert("content_base64".into(), json!({"type": "string", "description": "The file's bytes, base64 (for binary files)"}));
                required.push("filename".into());
                BodyKind::Multipart
            } else if let Some(schema) = content.get("application/json").map(|c| inline(&c["schema"], &components, 0)) {
                let fields = schema["properties"].as_object().cloned().unwrap_or_default();
                let clash = fields.keys().any(|k| props.contains_key(k));
                if schema["type"] == "object" && !fields.is_empty() && !clash {
                    for (k, v) in fields {
                        props.insert(k, v);
                    }
                    required.extend(schema["required"].as_array().cloned().unwrap_or_default());
                    BodyKind::Json { flat: true }
                } else {
                    props.insert("body".into(), schema);
                    if op["requestBody"]["required"].as_bool() == Some(true) {
                        required.push("body".into());
                    }
                    BodyKind::Json { flat: false }
                }
            } else {
                BodyKind::None
            };
            if id == "chat_completions" {
                // One answer per call: the stream and session switches are the server's.
                props.remove("stream");
            }
            let description = [op["summary"].as_str(), op["description"].as_str()].into_iter().flatten().collect::<Vec<_>>().join("\n\n").trim().to_string();
            let description = if description.is_empty() { format!("{} {path}", method.as_str()) } else { description };
            let mut schema = Map::new();
            schema.insert("type".into(), "object".into());
            schema.insert("properties".into(), Value::Object(props));
            if !required.is_empty() {
                required.dedup();
                schema.insert("required".into(), Value::Array(required));
            }
            out.push(Op { tool: tool_name(id).to_string(), method, path: path.clone(), path_params, query_params, body, description, schema });
        }
    }
    out.sort_by(|a, b| a.tool.cmp(&b.tool));
    out
}

/// Percent-encode a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Op {
    /// The HTTP request of a call with `args`.
    fn request(&self, args: &Map<String, Value>) -> Result<Request<Vec<u8>>, String> {
        let mut path = self.path.clone();
        for p in &self.path_params {
            let v = args.get(p).filter(|v| !v.is_null()).ok_or_else(|| format!("missing argument '{p}'"))?;
            path = path.replace(&format!("{{{p}}}"), &encode(&text(v)));
        }
        let query: Vec<String> =
            self.query_params.iter().filter_map(|q| args.get(q).filter(|v| !v.is_null()).map(|v| format!("{q}={}", encode(&text(v))))).collect();
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let mut b = Request::builder().method(self.method.clone()).uri(path).header("host", "localhost");
        let body = match &self.body {
            BodyKind::None => Vec::new(),
            BodyKind::Json { flat } => {
                let v = if *flat {
                    let own: Map<String, Value> = args
                        .iter()
                        .filter(|(k, _)| !self.path_params.contains(k) && !self.query_params.contains(k) && k.as_str() != "stream")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Value::Object(own)
                } else {
                    args.get("body").cloned().unwrap_or_else(|| json!({}))
                };
                b = b.header("content-type", "application/json");
                if self.tool == "chat" {
                    b = b.header("x-no-session", "1");
                }
                serde_json::to_vec(&v).map_err(|e| e.to_string())?
            }
            BodyKind::Multipart => {
                use base64::Engine as _;
                let name = args.get("filename").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or("missing argument 'filename'")?;
                let bytes = match (args.get("content").and_then(Value::as_str), args.get("content_base64").and_then(Value::as_str)) {
                    (_, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| format!("content_base64 is not base64: {e}"))?,
                    (Some(t), None) => t.as_bytes().to_vec(),
                    (None, None) => return Err("give the file as 'content' (text) or 'content_base64'".into()),
                };
                let boundary = format!("lf-mcp-{}", uuid::Uuid::new_v4().simple());
                let safe: String = name.chars().filter(|c| *c != '"' && *c != '\r' && *c != '\n').collect();
                let mut body =
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                        .into_bytes();
                body.extend_from_slice(&bytes);
                body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                b = b.header("content-type", format!("multipart/form-data; boundary={boundary}"));
                body
            }
        };
        b.body(body).map_err(|e| e.to_string())
    }
}

/// The MCP server's handler (see the module docs).
#[derive(Clone)]
pub struct McpServer {
    ops: Arc<Vec<Op>>,
    dispatch: Arc<dyn Dispatch>,
}

impl McpServer {
    /// Tools from `openapi` (a generated OpenAPI document), calls through `dispatch`.
    pub fn new(openapi: &utoipa::openapi::OpenApi, dispatch: Arc<dyn Dispatch>) -> Self {
        let doc = serde_json::to_value(openapi).unwrap_or_default();
        Self { ops: Arc::new(ops_from(&doc)), dispatch }
    }

    /// The tool names, sorted.
    pub fn tool_names(&self) -> Vec<String> {
        self.ops.iter().map(|o| o.tool.clone()).collect()
    }

    /// Run tool `name` with `args`: the response body, and whether it succeeded.
    pub async fn call(&self, name: &str, args: Map<String, Value>) -> Result<(Value, bool), String> {
        let op = self.ops.iter().find(|o| o.tool == name).ok_or_else(|| format!("unknown tool '{name}'"))?;
        let req = op.request(&args)?;
        let (status, body) = self.dispatch.send(req).await?;
        let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((value, status < 400))
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("llamafarm", llamafarm_core::system::VERSION))
            .with_instructions("LlamaFarm: projects, datasets, RAG and chat on local models. Tools are the REST API's operations; rag_query answers with chunks, chat with the project's model.")
    }

    async fn list_tools(&self, _request: Option<PaginatedRequestParams>, _context: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
        let tools = self.ops.iter().map(|o| rmcp::model::Tool::new(o.tool.clone(), o.description.clone(), o.schema.clone())).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(&self, request: CallToolRequestParams, _context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        if !self.ops.iter().any(|o| o.tool == request.name) {
            return Err(ErrorData::invalid_params(format!("unknown tool '{}'", request.name), None));
        }
        let args = request.arguments.unwrap_or_default();
        let result = match self.call(&request.name, args).await {
            Ok((value, true)) => {
                let mut r = CallToolResult::success(vec![ContentBlock::text(serde_json::to_string_pretty(&value).unwrap_or_default())]);
                if value.is_object() {
                    r.structured_content = Some(value);
                }
                r
            }
            Ok((value, false)) => {
                let detail = value.get("detail").map(text).unwrap_or_else(|| text(&value));
                CallToolResult::error(vec![ContentBlock::text(detail)])
            }
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
        };
        Ok(result.into())
    }
}

/// The streamable HTTP service `lf serve` mounts at `/mcp`: tools from `openapi`, calls
/// to `api` in-process. `public`: the API's `host:port` when known (accepted as a `Host`
/// besides loopback, against DNS rebinding, and the `Host` the calls are made to).
pub fn service(
    openapi: &utoipa::openapi::OpenApi,
    api: axum::Router,
    public: Option<String>,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<McpServer, rmcp::transport::streamable_http_server::session::local::LocalSessionManager> {
    use rmcp::transport::streamable_http_server::{session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService};
    let host = public.clone().unwrap_or_else(|| "localhost".into());
    let server = McpServer::new(openapi, Arc::new(LocalDispatch { router: api, host }));
    let mut allowed: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into(), "[::1]".into()];
    allowed.extend(public);
    let config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed);
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config)
}

/// Serve MCP over this process's stdin and stdout (`lf mcp`) until the client leaves:
/// tools from `openapi`, calls through `dispatch`.
pub async fn serve_stdio(openapi: &utoipa::openapi::OpenApi, dispatch: Arc<dyn Dispatch>) -> Result<(), String> {
    let server = McpServer::new(openapi, dispatch);
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| format!("MCP over stdio: {e}"))?;
    running.waiting().await.map_err(|e| format!("MCP over stdio: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_operation_is_a_tool_with_a_schema() {
        let mut doc = crate::api_openapi();
        tag_operations(&mut doc);
        let server = McpServer::new(&doc, Arc::new(LocalDispatch { router: axum::Router::new(), host: "localhost".into() }));
        let names = server.tool_names();
        assert_eq!(names.len(), MCP_OPERATIONS.len(), "{names:?}");
        for op in MCP_OPERATIONS {
            assert!(names.iter().any(|n| n == tool_name(op)), "{op}");
        }
        let rag = server.ops.iter().find(|o| o.tool == "rag_query").unwrap();
        let props = rag.schema["properties"].as_object().unwrap();
        for k in ["namespace", "project", "query", "top_k"] {
            assert!(props.contains_key(k), "{k}: {props:?}");
        }
        assert_eq!(rag.body, BodyKind::Json { flat: true });
        let up = server.ops.iter().find(|o| o.tool == "dataset_data_upload").unwrap();
        assert_eq!(up.body, BodyKind::Multipart);
        let req =
            up.request(&serde_json::from_value(json!({"namespace": "a b", "project": "p", "dataset": "d", "filename": "x.txt", "content": "hi"})).unwrap()).unwrap();
        assert_eq!(req.uri().path(), "/v1/projects/a%20b/p/datasets/d/data");
        assert!(String::from_utf8_lossy(req.body()).contains("filename=\"x.txt\""));
        assert!(up.request(&Map::new()).unwrap_err().contains("missing argument"));
        let v = serde_json::to_value(&doc).unwrap();
        assert!(v["paths"]["/v1/projects/{namespace}/{project}/rag/query"]["post"]["tags"].as_array().unwrap().iter().any(|t| t == "mcp"));
    }
}
