//! The Models Cache API on the API port: `/v1/models*`.

use super::call;
use crate::dto::models::*;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use llamafarm_core::Error;
use std::convert::Infallible;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(loaded_models))
        .routes(routes!(download_model))
        .routes(routes!(validate_download))
        .routes(routes!(quantizations))
        .routes(routes!(delete_model))
        .routes(routes!(delete_model_single))
}

fn check_provider(p: Option<&str>) -> Result<(), ApiError> {
    match p.map(str::trim).filter(|p| !p.is_empty()) {
        None | Some("universal") | Some("huggingface") => Ok(()),
        Some(other) => {
            Err(Error::invalid("provider", format!("'{other}' has no model cache here: llamafarm-rs manages the Hugging Face cache (provider 'universal')")).into())
        }
    }
}

/// The chat models in memory (with the size of their weights) and the server's
/// resident memory. Not in the original: its web app had no place to see them.
#[utoipa::path(get, path = "/v1/models/loaded", tag = "models", responses((status = 200, body = LoadedModelList)))]
async fn loaded_models(State(st): State<AppState>) -> ApiResult<Json<LoadedModelList>> {
    let loaded = call(&st, |lf| Ok(lf.llm().loaded())).await?;
    Ok(Json(LoadedModelList::new(loaded, llamafarm_core::system::resident_bytes())))
}

/// Models in the cache (the Hugging Face layout), with size, last change and revisions.
#[utoipa::path(get, path = "/v1/models", tag = "models", params(ProviderParam),
    responses((status = 200, body = CachedModelList), (status = 422, body = ErrorBody)))]
async fn list_models(State(st): State<AppState>, Query(q): Query<ProviderParam>) -> ApiResult<Json<CachedModelList>> {
    check_provider(q.provider.as_deref())?;
    Ok(Json(call(&st, |lf| Ok(lf.model_hub().list())).await?.into()))
}

/// Download a model into the cache, streaming `progress` events, then `complete` or
/// `error`. Resumes a partial download; a second request for a model being downloaded
/// follows the first. The hub's 404 for an unknown repo is a 404 here, before the stream.
#[utoipa::path(post, path = "/v1/models/download", tag = "models", request_body = DownloadRequest,
    responses((status = 200, description = "SSE stream of download events", body = DownloadEvent, content_type = "text/event-stream"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn download_model(State(st): State<AppState>, Json(req): Json<DownloadRequest>) -> ApiResult<Response> {
    check_provider(req.provider.as_deref())?;
    let id = req.model_name.trim().to_string();
    let check_id = id.clone();
    let check = call(&st, move |lf| lf.model_hub().validate_download(&check_id)).await?;
    if !check.can_download {
        return Err(Error::unavailable(format!("model '{id}'"), check.message).into());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let lf = st.lf.clone();
    let ev = |e: &DownloadEvent| Event::default().data(serde_json::to_string(e).unwrap_or_default());
    tokio::task::spawn_blocking(move || {
        let out = lf.model_hub().download(&id, &mut |p| {
            let _ = tx.try_send(ev(&DownloadEvent::from(p)));
        });
        let last = match out {
            Ok(d) => DownloadEvent::from(d),
            Err(e) => {
                let e = ApiError::from(e);
                if e.status().is_server_error() {
                    tracing::error!(detail = ?e, "model download failed");
                }
                DownloadEvent::Error { message: e.detail().to_string(), status: e.status().as_u16() }
            }
        };
        let _ = tx.blocking_send(ev(&last));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Whether a model fits on disk: its size from the hub's file listing (less what is
/// cached already) against the free space where the cache is.
#[utoipa::path(post, path = "/v1/models/validate-download", tag = "models", request_body = DownloadRequest,
    responses((status = 200, body = ValidateDownloadResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn validate_download(State(st): State<AppState>, Json(req): Json<DownloadRequest>) -> ApiResult<Json<ValidateDownloadResponse>> {
    check_provider(req.provider.as_deref())?;
    Ok(Json(call(&st, move |lf| lf.model_hub().validate_download(req.model_name.trim())).await?.into()))
}

/// The GGUF quantisations a hub repo offers, smallest first.
#[utoipa::path(get, path = "/v1/models/{org}/{name}/quantizations", tag = "models",
    params(("org" = String, Path, description = "Owner of the repo"), ("name" = String, Path, description = "Repo name")),
    responses((status = 200, body = QuantizationList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn quantizations(State(st): State<AppState>, Path((org, name)): Path<(String, String)>) -> ApiResult<Json<QuantizationList>> {
    Ok(Json(call(&st, move |lf| lf.model_hub().quantizations(&format!("{org}/{name}"))).await?.into()))
}

/// Delete a model from the cache. Chat models of that repo in memory are unloaded
/// first (listed in `unloaded`); a model being downloaded is refused (503).
#[utoipa::path(delete, path = "/v1/models/{org}/{name}", tag = "models",
    params(("org" = String, Path, description = "Owner of the repo"), ("name" = String, Path, description = "Repo name"), ProviderParam),
    responses((status = 200, body = DeleteModelResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_model(
    State(st): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    Query(q): Query<ProviderParam>,
) -> ApiResult<Json<DeleteModelResponse>> {
    check_provider(q.provider.as_deref())?;
    Ok(Json(call(&st, move |lf| lf.model_hub().delete(&format!("{org}/{name}"))).await?.into()))
}

/// Delete a model whose id has no owner part.
#[utoipa::path(delete, path = "/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "Repo name"), ProviderParam),
    responses((status = 200, body = DeleteModelResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_model_single(State(st): State<AppState>, Path(name): Path<String>, Query(q): Query<ProviderParam>) -> ApiResult<Json<DeleteModelResponse>> {
    check_provider(q.provider.as_deref())?;
    Ok(Json(call(&st, move |lf| lf.model_hub().delete(&name)).await?.into()))
}
