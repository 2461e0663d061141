//! MCP's HTTP+SSE transport (protocol version 2024-11-05), client side, for
//! `transport: sse` servers.
//!
//! rmcp, the SDK the rest of the MCP client uses, has only the streamable HTTP transport
//! that replaced this one, and many servers still speak only this one, so it is written
//! here on rmcp's [`Transport`] trait. A GET on the server's URL opens an event stream
//! whose first `endpoint` event names the URL to POST each client message to; the
//! server's answers and notifications arrive as `message` events on that stream.

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use std::future::Future;

/// A connection over the HTTP+SSE transport.
pub(super) struct SseTransport {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    rx: tokio::sync::mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Why a message could not be posted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct SseError(String);

impl SseTransport {
    /// Open the event stream at `url` (with `headers` on every request) and wait for its
    /// `endpoint` event. `Ok(None)` when the URL answers, but not with an event stream:
    /// a streamable HTTP server, which the caller reaches that way instead.
    pub(super) async fn connect(url: &str, headers: HeaderMap) -> Result<Option<Self>, String> {
        let base = reqwest::Url::parse(url).map_err(|e| format!("has a base_url that is not a URL ({e})"))?;
        let http = reqwest::Client::new();
        let resp = http
            .get(base.clone())
            .headers(headers.clone())
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .send()
            .await
            .map_err(|e| format!("at {url} could not be reached: {e}"))?;
        let event_stream = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        if !resp.status().is_success() || !event_stream {
            return Ok(None);
        }
        let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
        let endpoint = loop {
            match events.next().await {
                Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => break ev.data.unwrap_or_default(),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("at {url} broke its event stream: {e}")),
                None => return Err(format!("at {url} closed its event stream before naming its message endpoint")),
            }
        };
        let endpoint = base.join(endpoint.trim()).map_err(|e| format!("at {url} named a message endpoint that is not a URL ({e})"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let reader = tokio::spawn(async move {
            while let Some(Ok(ev)) = events.next().await {
                if !matches!(ev.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let Some(data) = ev.data else { continue };
                match serde_json::from_str(&data) {
                    Ok(msg) => {
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "an MCP server sent an event that is not a JSON-RPC message; skipped"),
                }
            }
        });
        Ok(Some(Self { http, endpoint, headers, rx, reader }))
    }
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseError;

    fn send(&mut self, item: TxJsonRpcMessage<RoleClient>) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let body = serde_json::to_vec(&item);
        let req = self.http.post(self.endpoint.clone()).headers(self.headers.clone()).header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        async move {
            let body = body.map_err(|e| SseError(format!("could not encode a message: {e}")))?;
            let resp = req.body(body).send().await.map_err(|e| SseError(format!("could not post a message: {e}")))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(SseError(format!("answered a posted message with {}", resp.status())))
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.rx.recv()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), SseError>> + Send {
        self.reader.abort();
        std::future::ready(Ok(()))
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
