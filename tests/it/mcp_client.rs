//! The MCP client against a real MCP server (rmcp's streamable HTTP server on loopback)
//! whose tools change while it runs.

use llamafarm_core::config::McpServerConfig;
use llamafarm_core::mcp::McpClients;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Offers a tool per name in `names`; each answers with its own name.
#[derive(Clone)]
struct Changing {
    names: Arc<Mutex<Vec<String>>>,
}

impl ServerHandler for Changing {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(&self, _r: Option<PaginatedRequestParams>, _c: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({"type": "object", "properties": {}}).as_object().unwrap().clone();
        let tools = self.names.lock().unwrap().iter().map(|n| rmcp::model::Tool::new(n.clone(), format!("the {n} tool"), Arc::new(schema.clone()))).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(&self, r: CallToolRequestParams, _c: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("{} answered", r.name))]).into())
    }
}

/// A kept connection lists its tools again once its listing is older than the client's
/// `relist_after`, so a tool the server adds while it runs is offered, and one it drops
/// is no longer offered.
#[tokio::test]
async fn a_server_that_changes_its_tools_is_seen_without_a_restart() {
    use rmcp::transport::streamable_http_server::{session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService};
    let names = Arc::new(Mutex::new(vec!["first".to_string()]));
    let handler = Changing { names: names.clone() };
    let service = StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(LocalSessionManager::default()), StreamableHttpServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await });
    let server: McpServerConfig = serde_json::from_value(serde_json::json!({"name": "changing", "transport": "http", "base_url": url})).unwrap();
    tokio::task::spawn_blocking(move || {
        let clients = McpClients::with_timeouts(Duration::from_secs(10), Duration::from_secs(10)).relist_after(Duration::from_millis(300));
        let names_of = |c: &McpClients| c.tools("acme/p", std::slice::from_ref(&server)).into_iter().map(|t| t.tool.name).collect::<Vec<_>>();
        assert_eq!(names_of(&clients), ["first"]);
        names.lock().unwrap().push("second".into());
        // Within `relist_after` the kept listing is used.
        assert_eq!(names_of(&clients), ["first"]);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(names_of(&clients), ["first", "second"]);
        let out = clients.call("acme/p", &server, "second", serde_json::json!({}));
        assert!(out.ok && out.content == "second answered", "{out:?}");
        names.lock().unwrap().remove(0);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(names_of(&clients), ["second"]);
        // `transport: sse` at a URL that opens no event stream is reached over streamable
        // HTTP (the HTTP+SSE transport itself runs against the Python SDK's server in
        // scripts/sdk/check_mcp.py).
        let mut sse = server.clone();
        sse.transport = "sse".into();
        let tools = clients.tools("acme/sse", std::slice::from_ref(&sse));
        assert_eq!(tools.into_iter().map(|t| t.tool.name).collect::<Vec<_>>(), ["second"]);
    })
    .await
    .unwrap();
}
